// `basewatch serve` against a real registry and receiver: a broken
// Dockerfile never stops the others from being watched (its error shows in
// /v1/status until it is fixed), and a base pinned by digest whose tag moves
// is reported as a stale pin without firing a rebuild that would not pick the
// new base up.
#include <catch2/catch.hpp>

#include <csignal>

#include "tests/cli/cli_helpers.h"

using namespace bw::testing;
using json = nlohmann::json;

namespace {

std::string serve_config(const TempDir& dir, int api_port, const LocalRegistry& registry, const Receiver& receiver,
                         const std::string& projects) {
  return dir.write("config.yaml",
                   "database: " + dir.path() + "/basewatch.db\n"
                   "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
                   "log: {level: debug}\n"
                   "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
                   "registries:\n"
                   "  " + registry.host() + ": {insecure: true}\n"
                   "projects:\n" + projects +
                   "triggers:\n"
                   "  ci: {type: webhook, url: '" + receiver.url("/hooks/rebuild") + "', timeout: 5s}\n");
}

bool has_digest(int api_port, const std::string& ref, const std::string& digest) {
  auto images = get_json(api_port, "/v1/images");
  if (!images.is_array()) return false;
  for (const auto& i : images) {
    if (i.value("ref", "") == ref && i.value("digest", json()) == digest) return true;
  }
  return false;
}

void stop(Process& bw) {
  bw.signal(SIGTERM);
  auto code = bw.wait(std::chrono::seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

}  // namespace

TEST_CASE("serve: a broken Dockerfile shows in /v1/status and never stops the others being watched",
          "[cli][serve][integration]") {
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "release one");
  std::string n1 = registry.push_image("team/node", "20", "node one");
  Receiver receiver;
  TempDir dir("bw-cli-serve");
  int api_port = free_port();
  dir.write("good/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20\n");
  std::string broken = dir.write("broken/Dockerfile", "FROM " + registry.host() + "/team/node:20\nRUN <<EOF\necho open\n");
  std::string config = serve_config(dir, api_port, registry, receiver,
                                    "  - {name: good, dockerfile: good/Dockerfile, triggers: [ci]}\n"
                                    "  - {name: broken, dockerfile: broken/Dockerfile, triggers: [ci]}\n");

  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  INFO(bw->log());
  std::string alpine = registry.host() + "/team/alpine:3.20";
  std::string node = registry.host() + "/team/node:20";

  REQUIRE(wait_until([&] { return has_digest(api_port, alpine, d1); }, std::chrono::seconds(20)));
  auto status = get_json(api_port, "/v1/status");
  REQUIRE(status.is_object());
  CHECK(status["errors"] == json::array({broken + ":2: unterminated heredoc"}));
  CHECK(status["counts"]["projects"] == 2);
  CHECK(status["counts"]["references"] == 1);  // node:20 is only in the broken file

  // The good project is still watched: its base moves, its trigger fires.
  std::string d2 = registry.push_image("team/alpine", "3.20", "release two");
  REQUIRE(receiver.wait_for(1, std::chrono::seconds(20)));
  auto body = json::parse(receiver.requests().at(0).body, nullptr, false);
  REQUIRE(body.is_object());
  CHECK(body["project"]["name"] == "good");
  CHECK(body["changes"][0]["new_digest"] == d2);

  // Fixing the file is noticed while serving: the error goes, its base is watched.
  dir.write("broken/Dockerfile", "FROM " + registry.host() + "/team/node:20\nRUN <<EOF\necho closed\nEOF\n");
  REQUIRE(wait_until([&] {
    auto s = get_json(api_port, "/v1/status");
    return s.is_object() && s["errors"].empty() && has_digest(api_port, node, n1);
  }, std::chrono::seconds(20)));
  CHECK(get_json(api_port, "/v1/status")["counts"]["references"] == 2);
  stop(*bw);
}

TEST_CASE("serve: a pinned base whose tag moves is a stale pin, and no delivery fires", "[cli][serve][integration]") {
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "release one");
  Receiver receiver;
  TempDir dir("bw-cli-serve");
  int api_port = free_port();
  dir.write("pinned/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20@" + d1 + " AS runtime\n");
  std::string config = serve_config(dir, api_port, registry, receiver,
                                    "  - {name: pinned, dockerfile: pinned/Dockerfile, triggers: [ci]}\n");

  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  INFO(bw->log());
  std::string ref = registry.host() + "/team/alpine:3.20";
  // The tag is watched (not the digest, which can never move).
  REQUIRE(wait_until([&] { return has_digest(api_port, ref, d1); }, std::chrono::seconds(20)));
  auto images = get_json(api_port, "/v1/images");
  REQUIRE(images.size() == 1);
  CHECK(images[0]["dependents"] == json::array({"pinned"}));
  CHECK(get_json(api_port, "/v1/status")["stale_pins"] == json::array());  // on its pin: not stale

  std::string d2 = registry.push_image("team/alpine", "3.20", "release two");
  REQUIRE(d2 != d1);
  REQUIRE(wait_until([&] {
    auto events = get_json(api_port, "/v1/events");
    return events.is_array() && !events.empty();
  }, std::chrono::seconds(20)));
  auto events = get_json(api_port, "/v1/events");
  REQUIRE(events.size() == 1);
  CHECK(events[0]["ref"] == ref);
  CHECK(events[0]["outcome"] == "stale-pin");
  CHECK(events[0]["old_digest"] == d1);
  CHECK(events[0]["new_digest"] == d2);
  CHECK(events[0]["deliveries"] == json::array());
  CHECK(has_digest(api_port, ref, d2));
  // Status names the stale pin: which project, which base, the pin and where the tag is now.
  auto stale = get_json(api_port, "/v1/status")["stale_pins"];
  REQUIRE(stale.size() == 1);
  CHECK(stale[0] == json{{"project", "pinned"}, {"ref", ref}, {"line", 1}, {"pinned", d1}, {"current", d2}});

  // Two more poll cycles: still nothing sent or queued.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  CHECK(receiver.count() == 0);
  auto deliveries = get_json(api_port, "/v1/deliveries");
  REQUIRE(deliveries.is_array());
  CHECK(deliveries.empty());
  CHECK(get_json(api_port, "/v1/events").size() == 1);
  stop(*bw);
}
