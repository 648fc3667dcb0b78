// The whole path on real parts: a tag on a real registry moves, basewatch
// serve notices on its own poll, and a signed webhook reaches a real
// receiver: exactly one delivery, with the right digests, none for the baseline.
#include <catch2/catch.hpp>

#include <csignal>

#include "tests/integration/helpers.h"
#include "util/crypto.h"

using namespace bw::testing;
using json = nlohmann::json;

TEST_CASE("a moved tag on a real registry fires exactly one signed webhook", "[integration][e2e]") {
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "release one");
  REQUIRE(d1.rfind("sha256:", 0) == 0);

  Receiver receiver;
  TempDir dir("bw-e2e");
  int api_port = free_port();
  dir.write("web/Dockerfile", "# syntax is not used here\nARG TAG=3.20\nFROM " + registry.host() +
                                  "/team/alpine:${TAG} AS runtime\nRUN echo hello\n");
  std::string secret = "s3cret-for-test";
  dir.write("hook-secret", secret + "\n");
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
      "log: {level: debug}\n"
      "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
      "registries:\n"
      "  " + registry.host() + ": {insecure: true}\n"
      "projects:\n"
      "  - name: web\n"
      "    dockerfile: web/Dockerfile\n"
      "    triggers: [ci]\n"
      "triggers:\n"
      "  ci:\n"
      "    type: webhook\n"
      "    url: " + receiver.url("/hooks/rebuild") + "\n"
      "    secret_file: hook-secret\n"
      "    headers: {X-Team: web}\n"
      "    timeout: 5s\n");

  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  std::string ref = registry.host() + "/team/alpine:3.20";

  // Baseline: the first sight is recorded, nothing is sent.
  REQUIRE(wait_until([&] {
    auto images = get_json(api_port, "/v1/images");
    return images.is_array() && images.size() == 1 && images[0]["digest"] == d1;
  }, std::chrono::seconds(20)));
  auto images = get_json(api_port, "/v1/images");
  CHECK(images[0]["ref"] == ref);
  CHECK(images[0]["platforms"]["linux/amd64"] == d1);
  CHECK(images[0]["dependents"] == json::array({"web"}));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // two more poll cycles, unchanged
  CHECK(receiver.count() == 0);

  std::string d2 = registry.push_image("team/alpine", "3.20", "release two");
  REQUIRE(d2 != d1);
  REQUIRE(receiver.wait_for(1, std::chrono::seconds(20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // nothing more comes
  auto requests = receiver.requests();
  REQUIRE(requests.size() == 1);
  const auto& r = requests[0];
  CHECK(r.method == "POST");
  CHECK(r.path == "/hooks/rebuild");
  CHECK(r.headers.at("content-type") == "application/json");
  CHECK(r.headers.at("x-basewatch-event") == "base.updated");
  CHECK(r.headers.at("x-team") == "web");
  CHECK(r.headers.at("user-agent").rfind("basewatch/", 0) == 0);
  CHECK(r.headers.at("x-basewatch-signature-256") == "sha256=" + bw::hmac_sha256_hex(secret, r.body));

  auto body = json::parse(r.body);
  CHECK(body["type"] == "base.updated");
  CHECK(body["delivery_id"] == r.headers.at("x-basewatch-delivery"));
  CHECK(body["project"]["name"] == "web");
  REQUIRE(body["changes"].size() == 1);
  CHECK(body["changes"][0]["ref"] == ref);
  CHECK(body["changes"][0]["old_digest"] == d1);
  CHECK(body["changes"][0]["new_digest"] == d2);
  CHECK(body["changes"][0]["platforms"]["linux/amd64"]["old"] == d1);
  CHECK(body["changes"][0]["platforms"]["linux/amd64"]["new"] == d2);
  CHECK(body["changes"][0]["source"] == "poll");
  CHECK(body["plan"] == json::array({"web"}));

  auto deliveries = get_json(api_port, "/v1/deliveries?state=delivered");
  REQUIRE(deliveries.is_array());
  CHECK(deliveries.size() == 1);
  auto status = get_json(api_port, "/v1/status");
  CHECK(status["counts"]["delivered"] == 1);
  CHECK(status["counts"]["references"] == 1);

  bw->signal(SIGTERM);
  auto code = bw->wait(std::chrono::seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}
