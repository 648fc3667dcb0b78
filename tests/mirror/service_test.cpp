// `mirrors:` in the real `basewatch serve`, between an upstream behind token
// auth and a mirror behind htpasswd: a moved upstream is copied before the
// rebuild of a project that builds FROM the mirror fires; the first sight
// fills a missing mirror without a delivery; a mirror that is down holds
// the delivery (visibly) until it is back; drift and a deleted mirror tag
// are repaired; an upstream outage leaves the mirror alone.
#include <catch2/catch.hpp>

#include <csignal>

#include "tests/integration/helpers.h"
#include "tests/mirror/mirror_helpers.h"

using namespace bw::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Service {
  Registries& r;
  Receiver receiver;
  int api_port = free_port();
  std::string config;
  std::unique_ptr<Process> bw;

  explicit Service(Registries& regs, const std::string& dockerfile_from, const std::string& extra = "") : r(regs) {
    r.dir.write("web/Dockerfile", "FROM " + dockerfile_from + "\nRUN echo built\n");
    config = r.dir.write("service.yaml",
                         "database: " + r.dir.path() + "/basewatch.db\n"
                         "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
                         "log: {level: debug}\n"
                         "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
                         "retry: {initial: 1s, max: 2s}\n" +
                             r.registries_yaml() +
                             "mirrors:\n"
                             "  - {from: " + r.upstream_proxy.host() + "/library/*, to: " + r.mirror_proxy.host() + "/hub/library/*}\n"
                             "projects:\n"
                             "  - {name: web, dockerfile: web/Dockerfile, triggers: [ci]}\n"
                             "triggers:\n"
                             "  ci: {type: webhook, url: '" + receiver.url("/hooks/rebuild") + "', timeout: 5s}\n" + extra);
  }
  void start() {
    bw = start_basewatch(config, api_port, r.dir.path() + "/serve.log");
    REQUIRE(bw->running());
  }
  json mirror_row(const std::string& mirror) const {
    auto list = get_json(api_port, "/v1/mirrors");
    if (!list.is_array()) return nullptr;
    for (const auto& m : list) {
      if (m.value("mirror", "") == mirror) return m;
    }
    return nullptr;
  }
  bool mirror_state(const std::string& mirror, const std::string& state, const std::string& digest) const {
    json m = mirror_row(mirror);
    return m.is_object() && m.value("state", "") == state && m.value("mirror_digest", json()) == digest;
  }
  ~Service() {
    if (bw && bw->running()) {
      bw->signal(SIGTERM);
      bw->wait(10s);
    }
  }
};

std::string mirror_digest(const Registries& r, const std::string& repo, const std::string& tag) {
  return r.mirror->head_digest(repo, tag, "pusher", k_mirror_password);
}

}  // namespace

TEST_CASE("serve: a moved upstream is copied to the mirror before the rebuild of a project FROM the mirror fires",
          "[integration][mirror][serve]") {
  Registries r;
  Pushed v1 = push_multiarch(*r.upstream, "library/alpine", "3.20", {"linux/amd64", "linux/arm64"}, {300'000, 100'000}, 11);
  Service s(r, r.mirrored("hub/library/alpine:3.20"));
  // What the mirror holds when the delivery arrives: the copy must be there first.
  std::mutex mutex;
  std::vector<std::string> held_at_delivery;
  s.receiver.set_handler([&](const ReceivedRequest&) {
    std::lock_guard lock(mutex);
    held_at_delivery.push_back(mirror_digest(r, "hub/library/alpine", "3.20"));
    return std::make_pair(200, std::string("ok"));
  });
  s.start();
  const std::string mirror = r.mirrored("hub/library/alpine:3.20");
  // First sight: the missing mirror is filled, like a baseline, with no delivery.
  REQUIRE(wait_until([&] { return s.mirror_state(mirror, "in-sync", v1.digest); }, 30s));
  CHECK(mirror_digest(r, "hub/library/alpine", "3.20") == v1.digest);
  CHECK(skopeo_raw(r, mirror) == v1.body);
  json row = s.mirror_row(mirror);
  CHECK(row["upstream"] == r.up("library/alpine:3.20"));
  CHECK(row["upstream_digest"] == v1.digest);
  CHECK(row["last_copy"]["blobs_uploaded"].get<int>() > 0);
  CHECK(row["last_error"].is_null());
  CHECK(row["waiting_deliveries"] == 0);
  std::this_thread::sleep_for(1500ms);
  CHECK(s.receiver.count() == 0);

  // A security fix upstream: copied, then the rebuild fires, once.
  Pushed v2 = push_multiarch(*r.upstream, "library/alpine", "3.20", {"linux/amd64", "linux/arm64"}, {300'000, 100'000}, 12);
  REQUIRE(s.receiver.wait_for(1, 30s));
  std::this_thread::sleep_for(1500ms);
  REQUIRE(s.receiver.count() == 1);
  {
    std::lock_guard lock(mutex);
    REQUIRE(held_at_delivery.size() == 1);
    CHECK(held_at_delivery[0] == v2.digest);
  }
  json body = json::parse(s.receiver.requests()[0].body);
  REQUIRE(body["changes"].size() == 1);
  const json& change = body["changes"][0];
  CHECK(change["ref"] == r.up("library/alpine:3.20"));
  CHECK(change["old_digest"] == v1.digest);
  CHECK(change["new_digest"] == v2.digest);
  CHECK(change["mirror"] == json{{"ref", mirror}, {"digest", v2.digest}});
  CHECK(change["upstream"] == json{{"ref", r.up("library/alpine:3.20")}});
  CHECK(skopeo_copy_all(r, mirror));
  REQUIRE(wait_until([&] { return s.mirror_state(mirror, "in-sync", v2.digest); }, 10s));

  auto status = get_json(s.api_port, "/v1/status");
  CHECK(status["counts"]["mirrors"] == 1);
  CHECK(status["counts"]["mirrors_out_of_sync"] == 0);
  httplib::Client c("127.0.0.1", s.api_port);
  auto metrics = c.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("basewatch_mirror_copies_total{outcome=\"copied\"} 2") != std::string::npos);
  CHECK(metrics->body.find("basewatch_mirror_bytes_total{how=\"uploaded\"}") != std::string::npos);
  CHECK(metrics->body.find("basewatch_mirrors_out_of_sync 0") != std::string::npos);
}

TEST_CASE("serve: a mirror that is down holds the rebuild until the copy is in; drift and a deleted tag are repaired",
          "[integration][mirror][serve]") {
  Registries r;
  Pushed v1 = push_layered_image(*r.upstream, "library/node", "20", "linux/amd64", {50'000}, 21);
  Service s(r, r.mirrored("hub/library/node:20"));
  s.start();
  const std::string mirror = r.mirrored("hub/library/node:20");
  REQUIRE(wait_until([&] { return s.mirror_state(mirror, "in-sync", v1.digest); }, 30s));

  // The mirror goes down; upstream moves.
  r.mirror_proxy.before([](const ReceivedRequest&) {
    Receiver::Reply reply;
    reply.status = 503;
    reply.body = R"({"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]})";
    reply.headers.emplace("Content-Type", "application/json");
    return std::optional<Receiver::Reply>(reply);
  });
  Pushed v2 = push_layered_image(*r.upstream, "library/node", "20", "linux/amd64", {50'000}, 22);
  REQUIRE(wait_until([&] {
    json m = s.mirror_row(mirror);
    return m.is_object() && m["state"] == "failed" && m["waiting_deliveries"] == 1;
  }, 30s));
  json row = s.mirror_row(mirror);
  CHECK(row["last_error"].get<std::string>().find("HTTP 503") != std::string::npos);
  CHECK(s.receiver.count() == 0);
  auto waiting = get_json(s.api_port, "/v1/deliveries?state=pending");
  REQUIRE(waiting.is_array());
  REQUIRE(waiting.size() == 1);
  CHECK(waiting[0]["waiting_for"]["mirror"] == mirror);
  CHECK(mirror_digest(r, "hub/library/node", "20") == v1.digest);  // the last good copy stays

  // Back: the copy goes in, then the delivery.
  r.mirror_proxy.clear_faults();
  REQUIRE(s.receiver.wait_for(1, 30s));
  CHECK(mirror_digest(r, "hub/library/node", "20") == v2.digest);
  CHECK(json::parse(s.receiver.requests()[0].body)["changes"][0]["mirror"]["digest"] == v2.digest);
  REQUIRE(wait_until([&] { return s.mirror_state(mirror, "in-sync", v2.digest); }, 10s));

  // Someone pushes other content over the mirror's tag: drift, repaired.
  Pushed other = push_layered_image(*r.mirror, "hub/library/node", "20", "linux/amd64", {1000}, 23);
  REQUIRE(wait_until([&] { return mirror_digest(r, "hub/library/node", "20") == v2.digest; }, 30s));
  CHECK(other.digest != v2.digest);
  // The tag is deleted: missing, filled again.
  r.mirror->delete_manifest("hub/library/node", v2.digest);
  CHECK(mirror_digest(r, "hub/library/node", "20").empty());
  REQUIRE(wait_until([&] { return mirror_digest(r, "hub/library/node", "20") == v2.digest; }, 30s));
  REQUIRE(wait_until([&] { return s.mirror_state(mirror, "in-sync", v2.digest); }, 10s));
  // Neither is an upstream change: nothing more was rebuilt.
  CHECK(s.receiver.count() == 1);
  auto events = get_json(s.api_port, "/v1/events");
  REQUIRE(events.is_array());
  CHECK(events.size() == 1);
}

TEST_CASE("serve: an upstream outage leaves the mirror's last good copy alone", "[integration][mirror][serve]") {
  Registries r;
  Pushed v1 = push_layered_image(*r.upstream, "library/redis", "7", "linux/amd64", {20'000}, 31);
  Service s(r, r.up("library/redis:7"));  // this project names the upstream: it does not wait for copies
  s.start();
  const std::string mirror = r.mirrored("hub/library/redis:7");
  REQUIRE(wait_until([&] { return s.mirror_state(mirror, "in-sync", v1.digest); }, 30s));
  r.upstream_proxy.before([](const ReceivedRequest&) {
    Receiver::Reply reply;
    reply.status = 502;
    return std::optional<Receiver::Reply>(reply);
  });
  r.mirror_proxy.forget();
  std::this_thread::sleep_for(4s);
  // The upstream failed every check; the mirror was not asked, nor written.
  CHECK(r.mirror_proxy.count("PUT") == 0);
  CHECK(r.mirror_proxy.count("HEAD") == 0);
  CHECK(mirror_digest(r, "hub/library/redis", "7") == v1.digest);
  CHECK(s.mirror_state(mirror, "in-sync", v1.digest));
  auto images = get_json(s.api_port, "/v1/images");
  REQUIRE(images.is_array());
  CHECK(images[0]["last_error"].get<std::string>().find("HTTP 502") != std::string::npos);
}
