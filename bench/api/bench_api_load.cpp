// The API under load: basewatch watching N tags (default 10,000) on a real
// docker-registry, every one checked once, then wrk against /v1/status,
// /v1/images (whole), pages of it (?limit=100 at the start and the end, one
// ?ref=) and the dashboard (one page of 200). Prints each answer's size and
// wrk's summary (requests/s, latency percentiles).
//   bench_api_load [refs=10000] [seconds=10] [connections=16] [threads=2]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/integration/helpers.h"

using namespace bw::testing;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  int refs = argc > 1 ? std::atoi(argv[1]) : 10'000;
  std::string seconds = argc > 2 ? argv[2] : "10";
  std::string connections = argc > 3 ? argv[3] : "16";
  std::string threads = argc > 4 ? argv[4] : "2";
  TempDir dir("bw-bench-api");
  RegistryOptions opts;
  opts.log_level = "error";
  LocalRegistry registry(opts);
  registry.push_image("bench/base", "t0", "one image, many tags");
  std::string media_type;
  std::string manifest = registry.get_manifest("bench/base", "t0", &media_type);
  httplib::Client reg("127.0.0.1", registry.port());
  std::string watch;
  for (int i = 0; i < refs; ++i) {
    std::string tag = "t" + std::to_string(i);
    if (i > 0) {
      auto res = reg.Put(("/v2/bench/base/manifests/" + tag).c_str(), manifest, media_type.c_str());
      if (!res || res->status != 201) {
        std::fprintf(stderr, "tagging %s failed\n", tag.c_str());
        return 1;
      }
    }
    watch += "  - ref: " + registry.host() + "/bench/base:" + tag + "\n";
  }
  std::fprintf(stderr, "%d tags pushed\n", refs);
  int port = free_port();
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(port) + "\n"
      "log: {level: info}\n"
      "poll: {interval: 1h, concurrency: 16}\n"
      "registries:\n  " + registry.host() + ": {insecure: true}\n"
      "watch:\n" + watch);
  auto t0 = std::chrono::steady_clock::now();
  auto bw = start_basewatch(config, port, dir.path() + "/basewatch.log");
  bool checked = wait_until([&] {
    auto status = get_json(port, "/v1/status");
    return status.is_object() && !status["last_poll"].is_null();
  }, 600s);
  if (!checked) {
    std::fprintf(stderr, "first poll did not finish\n%s\n", bw->log().c_str());
    return 1;
  }
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto images = get_json(port, "/v1/images");
  std::printf("%zu references watched, first check of all took %.1f s; /v1/images is %zu bytes\n", images.size(), secs,
              images.dump().size());
  std::string last = std::to_string(refs > 100 ? refs - 100 : 0);
  std::string one = "/v1/images?ref=" + registry.host() + "/bench/base:t" + std::to_string(refs / 2);
  // The whole list last: requests still queued when its wrk stops would
  // slow the start of the next run.
  std::vector<std::string> paths{"/v1/status", "/v1/images?limit=100", "/v1/images?limit=100&offset=" + last, one, "/", "/v1/images"};
  for (const auto& path : paths) {
    httplib::Client api("127.0.0.1", port);
    api.set_read_timeout(30, 0);
    auto answer = api.Get(path.c_str());
    std::printf("%s: %d, %zu bytes, X-Total-Count %s\n", path.c_str(), answer ? answer->status : 0, answer ? answer->body.size() : 0,
                answer ? answer->get_header_value("X-Total-Count").c_str() : "-");
  }
  for (const auto& path : paths) {
    std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
    auto r = run({"wrk", "-t" + threads, "-c" + connections, "-d" + seconds + "s", "--latency", url}, {}, "", 300s);
    std::printf("== wrk -t%s -c%s -d%ss --latency %s\n%s%s\n", threads.c_str(), connections.c_str(), seconds.c_str(), path.c_str(),
                r.output.c_str(), r.errors.c_str());
  }
  return 0;
}
