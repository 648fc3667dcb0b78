// `basewatch impact` for a base used by 10,000 projects (PROJECTS), written
// as real Dockerfiles and a config in a temporary folder:
//   - 1% platform bases FROM debian:bookworm-slim, each producing an image;
//   - 9% runtimes FROM one of those bases, each producing an image;
//   - the rest services (one `dockerfiles:` glob), each with a build stage
//     FROM debian:bookworm-slim and its runtime stage FROM one of the runtimes.
// So debian:bookworm-slim reaches every project, directly or through chains.
//
// The query after start, in process: the config read and the model built
// once (config::load, watcher::build_model: what serve holds), then
// Graph::impact of the shared base, of one platform base and of one
// runtime, RUNS times each (best / median). Then the whole one-shot CLI,
// `basewatch impact -c FILE REF`, CLI_RUNS times (process start to exit:
// the config, 10,000 Dockerfiles scanned, the graph, the query, the output).
//
//   bench_impact [PROJECTS=10000] [RUNS=50] [CLI_RUNS=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "tests/support/support.h"
#include "watcher/model.h"

using namespace bw;
using namespace bw::testing;
using steady = std::chrono::steady_clock;

namespace {

struct Timing {
  std::vector<double> ms;
  double best() const { return *std::min_element(ms.begin(), ms.end()); }
  double median() const {
    auto v = ms;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

double ms_since(steady::time_point t0) { return std::chrono::duration<double, std::milli>(steady::now() - t0).count(); }

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

}  // namespace

int main(int argc, char** argv) {
  int projects = argc > 1 ? std::atoi(argv[1]) : 10'000;
  int runs = argc > 2 ? std::atoi(argv[2]) : 50;
  int cli_runs = argc > 3 ? std::atoi(argv[3]) : 5;
  if (projects < 100 || runs < 1 || cli_runs < 0) {
    std::fprintf(stderr, "usage: bench_impact [PROJECTS>=100] [RUNS>=1] [CLI_RUNS>=0]\n");
    return 2;
  }
  const int n_base = projects / 100, n_runtime = projects * 9 / 100, n_service = projects - n_base - n_runtime;
  const std::string shared = "docker.io/library/debian:bookworm-slim";
  auto base_image = [](int i) { return "registry.example.com/platform/base-" + std::to_string(i) + ":latest"; };
  auto runtime_image = [](int i) { return "registry.example.com/platform/runtime-" + std::to_string(i) + ":latest"; };

  TempDir dir("bw-bench-impact");
  std::string yaml = "database: " + dir.path() + "/impact.db\nprojects:\n";
  for (int i = 0; i < n_base; ++i) {
    std::string file = dir.write("platform/base-" + std::to_string(i) + "/Dockerfile",
                                 "FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y ca-certificates\n");
    yaml += "  - {name: base-" + std::to_string(i) + ", dockerfile: " + file + ", image: " + base_image(i) + "}\n";
  }
  for (int i = 0; i < n_runtime; ++i) {
    std::string file = dir.write("platform/runtime-" + std::to_string(i) + "/Dockerfile",
                                 "ARG BASE=" + base_image(i % n_base) + "\nFROM ${BASE}\nRUN adduser -D app\nUSER app\n");
    yaml += "  - {name: runtime-" + std::to_string(i) + ", dockerfile: " + file + ", image: " + runtime_image(i) + "}\n";
  }
  for (int i = 0; i < n_service; ++i) {
    dir.write("services/svc-" + std::to_string(i) + "/Dockerfile",
              "# syntax=docker/dockerfile:1\n"
              "FROM debian:bookworm-slim AS build\nWORKDIR /src\nCOPY . .\nRUN make\n"
              "FROM " + runtime_image(i % n_runtime) + "\nCOPY --from=build /src/out /app\nCMD [\"/app\"]\n");
  }
  yaml += "  - {dockerfiles: " + dir.path() + "/services/**/Dockerfile}\n";
  std::string config_path = dir.write("config.yaml", yaml);
  std::printf("bench_impact: %d projects (%d bases, %d runtimes, %d services); load %s\n", projects, n_base, n_runtime,
              n_service, load_average().c_str());

  auto t0 = steady::now();
  auto cfg = config::load(config_path);
  if (!cfg) {
    std::fprintf(stderr, "config: %s\n", cfg.error().message.c_str());
    return 1;
  }
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::fprintf(stderr, "model: %s\n", model.error().message.c_str());
    return 1;
  }
  std::printf("start (config + model of %zu projects, %zu watched references): %.0f ms\n", model->projects.size(),
              model->items.size(), ms_since(t0));

  struct Query {
    std::string name, ref;
    Timing t;
    size_t plan = 0;
  };
  std::vector<Query> queries{{"the shared base (" + shared + ")", shared, {}, 0},
                             {"one platform base (base-0)", base_image(0), {}, 0},
                             {"one runtime (runtime-0)", runtime_image(0), {}, 0}};
  for (int r = 0; r < runs; ++r) {
    for (auto& q : queries) {
      auto start = steady::now();
      auto plan = model->graph->impact(q.ref);
      q.t.ms.push_back(ms_since(start));
      q.plan = plan.size();
    }
  }
  std::printf("Graph::impact, %d runs (best / median ms):\n", runs);
  for (const auto& q : queries) {
    std::printf("  %-56s %7.3f / %7.3f  (%zu projects)\n", q.name.c_str(), q.t.best(), q.t.median(), q.plan);
  }
  if (queries[0].plan != static_cast<size_t>(projects)) {
    std::fprintf(stderr, "the shared base reaches %zu projects, not %d\n", queries[0].plan, projects);
    return 1;
  }

  if (cli_runs > 0) {
    Timing cli;
    size_t lines = 0;
    for (int r = 0; r < cli_runs; ++r) {
      auto start = steady::now();
      RunResult res = run({BASEWATCH_BINARY, "impact", "-c", config_path, "debian:bookworm-slim"}, {}, "",
                          std::chrono::minutes(5));
      cli.ms.push_back(ms_since(start));
      if (res.status != 0) {
        std::fprintf(stderr, "basewatch impact: exit %d: %s\n", res.status, res.errors.c_str());
        return 1;
      }
      lines = static_cast<size_t>(std::count(res.output.begin(), res.output.end(), '\n'));
    }
    std::printf("basewatch impact -c FILE debian:bookworm-slim (whole process), %d runs: %.0f / %.0f ms (%zu lines)\n",
                cli_runs, cli.best(), cli.median(), lines);
  }
  return 0;
}
