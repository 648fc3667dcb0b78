// What the serve loop pays every 2 s to notice Dockerfile edits
// (watcher::stale_reason when nothing changed), and what one rebuild of the
// model costs when something did (watcher::build_model), for N projects
// listed one by one plus N more under one `dockerfiles:` glob.
//   bench_rescan [N=500]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <unistd.h>

#include "config/config.h"
#include "watcher/model.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 500;
  fs::path root = fs::temp_directory_path() / ("bw-bench-rescan-" + std::to_string(::getpid()));
  fs::create_directories(root);
  std::string yaml = "database: ':memory:'\nprojects:\n";
  for (int i = 0; i < n; ++i) {
    fs::create_directories(root / "one" / std::to_string(i));
    fs::create_directories(root / "glob" / ("svc" + std::to_string(i)));
    std::string df = "ARG BASE=alpine:3." + std::to_string(i % 20) + "\nFROM golang:1.23 AS build\nRUN make\n"
                     "FROM ${BASE}\nCOPY --from=build /out /app\n";
    std::ofstream(root / "one" / std::to_string(i) / "Dockerfile") << df;
    std::ofstream(root / "glob" / ("svc" + std::to_string(i)) / "Dockerfile") << df;
    yaml += "  - name: p" + std::to_string(i) + "\n    dockerfile: one/" + std::to_string(i) + "/Dockerfile\n";
  }
  yaml += "  - dockerfiles: glob/*/Dockerfile\n";
  auto cfg = bw::config::parse(yaml, (root / "config.yaml").string());
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().message.c_str());
    return 1;
  }
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  auto model = bw::watcher::build_model(*cfg);
  auto t1 = clock::now();
  if (!model) return 1;
  // Files written just now are "racily clean" (hashed) for 3 s: let them age
  // so the steady state (stat only) is what is measured, then both.
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  constexpr int k_rounds = 20;
  auto t2 = clock::now();
  for (int r = 0; r < k_rounds; ++r) {
    if (!bw::watcher::stale_reason(*model).empty()) return 1;
  }
  auto t3 = clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("%d Dockerfiles (%d listed + %d under one glob), %zu watched references\n", 2 * n, n, n, model->items.size());
  std::printf("build_model (a rebuild):          %8.2f ms\n", ms(t1 - t0));
  std::printf("stale_reason, nothing changed:    %8.2f ms per rescan (every 2 s)\n", ms(t3 - t2) / k_rounds);
  // One file edited: found, then the rebuild.
  std::ofstream(root / "one" / "7" / "Dockerfile") << "FROM debian:12\n";
  auto t4 = clock::now();
  std::string why = bw::watcher::stale_reason(*model);
  auto t5 = clock::now();
  std::printf("stale_reason, one file edited:    %8.2f ms (%s)\n", ms(t5 - t4), why.empty() ? "MISSED" : "found");
  fs::remove_all(root);
  return why.empty() ? 1 : 0;
}
