// No registry holds up another: a registry that accepts connections and
// never answers sits beside a healthy one that changes. Each reference falls
// due on its own and a slow request holds one worker, so the healthy change
// is delivered within its poll interval and a second, every time, while the
// hung requests wait out their timeouts (15 s each).
#include <catch2/catch.hpp>

#include <csignal>

#include "tests/integration/helpers.h"
#include "tests/support/fault_proxy.h"

using namespace bw::testing;
using namespace std::chrono_literals;


TEST_CASE("a hung registry never holds up a change on a healthy one", "[integration][scheduling]") {
  LocalRegistry healthy;
  healthy.push_image("team/app", "1", "release 1");
  SilentListener hung;
  Receiver receiver;
  TempDir dir("bw-hung");
  int api_port = free_port();
  dir.write("app/Dockerfile", "FROM " + healthy.host() + "/team/app:1\n");
  std::string watch;
  for (int i = 0; i < 6; ++i) watch += "  - ref: " + hung.host() + "/team/stuck" + std::to_string(i) + ":1\n";
  std::string config = dir.write("config.yaml",
                                 "database: " + dir.path() + "/basewatch.db\n"
                                 "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
                                 "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
                                 "registries:\n"
                                 "  " + healthy.host() + ": {insecure: true}\n"
                                 "  " + hung.host() + ": {insecure: true}\n"
                                 "watch:\n" + watch +
                                 "projects:\n"
                                 "  - {name: app, dockerfile: app/Dockerfile, triggers: [ci]}\n"
                                 "triggers:\n"
                                 "  ci: {type: webhook, url: '" + receiver.url("/hook") + "'}\n");
  auto bw = start_basewatch(config, api_port, dir.path() + "/serve.log");
  REQUIRE(bw->running());
  // The baseline comes while the hung registry's requests are all waiting.
  auto started = std::chrono::steady_clock::now();
  REQUIRE(wait_until([&] {
    auto images = get_json(api_port, "/v1/images?ref=" + healthy.host() + "/team/app:1");
    return images.is_array() && !images.empty() && images[0]["digest"].is_string();
  }, 10s));
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  for (int round = 2; round <= 4; ++round) {
    size_t before = receiver.count();
    healthy.push_image("team/app", "1", "release " + std::to_string(round));
    auto pushed = std::chrono::steady_clock::now();
    INFO("round " << round);
    REQUIRE(receiver.wait_for(before + 1, 30s));
    auto took = receiver.requests()[before].at - pushed;
    // Its poll interval (1 s) and a second, with room for a loaded machine;
    // a cycle that waited for the hung requests would take 15 s.
    CHECK(took < 4s);
  }
  // Meanwhile the hung references are reported as what they are.
  auto images = get_json(api_port, "/v1/images?ref=" + hung.host() + "/team/stuck0:1");
  REQUIRE(images.is_array());
  bw->signal(SIGTERM);
  CHECK(bw->wait(30s).has_value());
}
