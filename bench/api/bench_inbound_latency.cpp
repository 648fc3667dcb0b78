// Push-to-delivery latency through the inbound path: a real docker-registry
// notifies basewatch (distribution format, polling every hour, settle 0s),
// basewatch HEADs the tag and sends the rebuild webhook to a real receiver.
// Measured per push: from the end of the manifest PUT (the push is complete)
// and from the start of the push (blobs + manifest), to the webhook's arrival.
//   bench_inbound_latency [pushes=200]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "tests/integration/helpers.h"

using namespace bw::testing;
using namespace std::chrono_literals;
using Ms = std::chrono::duration<double, std::milli>;

namespace {

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

void report(const char* what, const std::vector<double>& v) {
  std::printf("%-28s n=%zu p50=%.1f ms p90=%.1f ms p99=%.1f ms max=%.1f ms\n", what, v.size(), pct(v, 50), pct(v, 90),
              pct(v, 99), *std::max_element(v.begin(), v.end()));
}

}  // namespace

int main(int argc, char** argv) {
  int pushes = argc > 1 ? std::atoi(argv[1]) : 200;
  TempDir dir("bw-bench-inbound");
  int port = free_port();
  RegistryOptions opts;
  opts.notify_url = "http://127.0.0.1:" + std::to_string(port) + "/hooks/registry";
  opts.notify_headers = {{"Authorization", "Bearer bench-secret"}};
  opts.notify_ignore_actions = {"pull"};
  opts.log_level = "warn";
  LocalRegistry registry(opts);
  registry.push_image("bench/base", "1", "release 0");
  Receiver receiver;
  dir.write("secret", "bench-secret\n");
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(port) + "\n"
      "log: {level: info}\n"
      "poll: {interval: 1h, jitter: 0%, settle: 0s}\n"
      "registries:\n  " + registry.host() + ": {insecure: true}\n"
      "watch:\n  - ref: " + registry.host() + "/bench/base:1\n    triggers: [ci]\n"
      "triggers:\n  ci: {type: webhook, url: " + receiver.url("/rebuild") + "}\n"
      "inbound:\n  - {name: registry, path: /hooks/registry, format: distribution, secret_file: secret}\n");
  auto bw = start_basewatch(config, port, dir.path() + "/basewatch.log");
  if (!wait_until([&] {
        auto images = get_json(port, "/v1/images");
        return images.is_array() && images.size() == 1 && !images[0]["digest"].is_null();
      }, 30s)) {
    std::fprintf(stderr, "no baseline\n%s\n", bw->log().c_str());
    return 1;
  }
  std::vector<double> from_done, from_start;
  for (int i = 1; i <= pushes; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    registry.push_image("bench/base", "1", "release " + std::to_string(i));
    auto t1 = std::chrono::steady_clock::now();
    if (!receiver.wait_for(static_cast<size_t>(i), 10s)) {
      std::fprintf(stderr, "push %d: no delivery within 10 s\n", i);
      return 1;
    }
    auto at = receiver.requests().back().at;
    from_done.push_back(Ms(at - t1).count());
    from_start.push_back(Ms(at - t0).count());
    std::this_thread::sleep_for(20ms);
  }
  report("push complete -> webhook", from_done);
  report("push start -> webhook", from_start);
  return 0;
}
