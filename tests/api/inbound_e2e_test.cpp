// Inbound hooks on the real binary: a real docker-registry notifies
// basewatch (polling set to an hour, so only the hook can explain a quick
// delivery); the other formats' documented payloads are posted as their
// senders would, and the registry's HEAD decides what fires.
#include <catch2/catch.hpp>

#include <csignal>

#include "tests/api/helpers.h"
#include "util/crypto.h"

using namespace bw::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string metric_line(const std::string& metrics, const std::string& prefix) {
  auto at = metrics.find(prefix);
  if (at == std::string::npos) return "";
  return metrics.substr(at, metrics.find('\n', at) - at);
}

double metric_value(const std::string& metrics, const std::string& series) {
  std::string line = metric_line(metrics, series + " ");
  return line.empty() ? 0 : std::stod(line.substr(series.size() + 1));
}

}  // namespace

TEST_CASE("a push to a real registry fires through the distribution hook within seconds, marked webhook",
          "[integration][api][inbound]") {
  TempDir dir("bw-inbound");
  int api_port = free_port();
  const std::string secret = "registry-hook-secret";
  RegistryOptions opts;
  opts.notify_url = "http://127.0.0.1:" + std::to_string(api_port) + "/hooks/registry";
  opts.notify_headers = {{"Authorization", "Bearer " + secret}};
  LocalRegistry registry(opts);
  std::string d1 = registry.push_image("team/base", "1", "release one");

  Receiver receiver;
  dir.write("inbound-secret", secret + "\n");
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
      "log: {level: debug}\n"
      "poll: {interval: 1h, jitter: 0%, settle: 0s}\n"
      "registries:\n  " + registry.host() + ": {insecure: true}\n"
      "watch:\n  - ref: " + registry.host() + "/team/base:1\n    triggers: [ci]\n"
      "triggers:\n  ci: {type: webhook, url: " + receiver.url("/rebuild") + "}\n"
      "inbound:\n  - name: local\n    path: /hooks/registry\n    format: distribution\n    secret_file: inbound-secret\n");
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  const std::string ref = registry.host() + "/team/base:1";
  REQUIRE(wait_until([&] {
    auto images = get_json(api_port, "/v1/images");
    return images.is_array() && images.size() == 1 && images[0]["digest"] == d1;
  }, 20s));

  auto pushed_at = std::chrono::steady_clock::now();
  std::string d2 = registry.push_image("team/base", "1", "release two");
  REQUIRE(receiver.wait_for(1, 10s));
  auto latency = std::chrono::steady_clock::now() - pushed_at;
  CHECK(latency < 10s);  // the poll interval is an hour: only the hook explains this
  auto body = json::parse(receiver.requests()[0].body);
  REQUIRE(body["changes"].size() == 1);
  CHECK(body["changes"][0]["ref"] == ref);
  CHECK(body["changes"][0]["old_digest"] == d1);
  CHECK(body["changes"][0]["new_digest"] == d2);
  CHECK(body["changes"][0]["source"] == "webhook");

  // basewatch's own HEAD reaches the registry's notifications as a pull,
  // which comes back to the hook and must fire nothing.
  std::string metrics;
  REQUIRE(wait_until([&] {
    metrics = http_call(api_port, "GET", "/metrics").body;
    return metric_value(metrics, "basewatch_inbound_notifications_total{format=\"distribution\",outcome=\"ignored\"}") >= 1;
  }, 10s));
  CHECK(metric_value(metrics, "basewatch_inbound_notifications_total{format=\"distribution\",outcome=\"accepted\"}") >= 1);
  std::this_thread::sleep_for(1500ms);  // anything more would have come by now
  CHECK(receiver.count() == 1);
  auto events = get_json(api_port, "/v1/events");
  REQUIRE(events.is_array());
  REQUIRE(events.size() == 1);
  CHECK(events[0]["outcome"] == "fired");
  CHECK(events[0]["source"] == "webhook");
  auto status = get_json(api_port, "/v1/status");
  REQUIRE(status["inbound"].size() == 1);
  CHECK(status["inbound"][0]["name"] == "local");
  CHECK(status["inbound"][0]["accepted"].get<int>() >= 1);
  CHECK(status["inbound"][0]["rejected"] == 0);

  bw->signal(SIGTERM);
  REQUIRE(bw->wait(10s).has_value());
}

namespace {

// One sender: how it posts (path, query, headers) a payload naming repo:tag
// (and a digest where its format carries one).
struct Sender {
  std::string format;
  std::string repo;
  std::function<std::string(const std::string& host, const std::string& tag, const std::string& digest)> payload;
  std::function<std::map<std::string, std::string>(const std::string& body)> headers;
  std::string query;
};

}  // namespace

TEST_CASE("acr, harbor, quay and generic hooks: a HEAD decides, duplicates collapse, forgeries fire nothing",
          "[integration][api][inbound]") {
  TempDir dir("bw-formats");
  int api_port = free_port();
  const std::string secret = "s3cret";
  LocalRegistry registry;
  Receiver receiver;
  dir.write("secret", secret + "\n");
  std::string bearer = "Bearer " + secret;
  std::vector<Sender> senders{
      {"acr", "team/acr",
       [](const std::string& host, const std::string& tag, const std::string& digest) {
         return json{{"id", "cb8c3971"}, {"timestamp", "2026-11-28T12:00:00Z"}, {"action", "push"},
                     {"target", {{"mediaType", "application/vnd.docker.distribution.manifest.v2+json"}, {"size", 524},
                                 {"digest", digest}, {"length", 524}, {"repository", "team/acr"}, {"tag", tag}}},
                     {"request", {{"id", "3cbb6949"}, {"host", host}, {"method", "PUT"}, {"useragent", "docker/24"}}}}.dump();
       },
       [&](const std::string&) { return std::map<std::string, std::string>{{"Authorization", bearer}}; }, ""},
      {"harbor", "team/harbor",
       [](const std::string& host, const std::string& tag, const std::string& digest) {
         return json{{"type", "PUSH_ARTIFACT"}, {"occur_at", 1680501893}, {"operator", "admin"},
                     {"event_data", {{"resources", json::array({{{"digest", digest}, {"tag", tag},
                                                                 {"resource_url", host + "/team/harbor:" + tag}}})},
                                     {"repository", {{"name", "harbor"}, {"namespace", "team"}, {"repo_full_name", "team/harbor"},
                                                     {"repo_type", "private"}}}}}}.dump();
       },
       [&](const std::string&) { return std::map<std::string, std::string>{{"Authorization", secret}}; }, ""},
      {"quay", "team/quay",
       [](const std::string& host, const std::string& tag, const std::string&) {
         return json{{"name", "quay"}, {"repository", "team/quay"}, {"namespace", "team"}, {"docker_url", host + "/team/quay"},
                     {"homepage", "https://quay.io/repository/team/quay"}, {"updated_tags", {tag}}}.dump();
       },
       [](const std::string&) { return std::map<std::string, std::string>{}; }, "?token=" + secret},
      {"generic", "team/generic",
       [](const std::string& host, const std::string& tag, const std::string& digest) {
         return json{{"ref", host + "/team/generic:" + tag}, {"digest", digest}}.dump();
       },
       [&](const std::string& body) {
         return std::map<std::string, std::string>{{"X-Basewatch-Signature-256", "sha256=" + bw::hmac_sha256_hex(secret, body)}};
       },
       ""},
  };
  std::map<std::string, std::string> baseline;
  std::string watch, inbound;
  for (const auto& s : senders) {
    baseline[s.format] = registry.push_image(s.repo, "1", s.format + " one");
    watch += "  - ref: " + registry.host() + "/" + s.repo + ":1\n    triggers: [ci]\n";
    inbound += "  - {name: " + s.format + ", path: /hooks/" + s.format + ", format: " + s.format + ", secret_file: secret}\n";
  }
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
      "log: {level: debug}\n"
      "poll: {interval: 1h, jitter: 0%, settle: 0s}\n"
      "registries:\n  " + registry.host() + ": {insecure: true}\n"
      "watch:\n" + watch +
      "triggers:\n  ci: {type: webhook, url: " + receiver.url("/rebuild") + "}\n"
      "inbound:\n" + inbound);
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] {
    auto images = get_json(api_port, "/v1/images");
    if (!images.is_array() || images.size() != senders.size()) return false;
    for (const auto& i : images) {
      if (i["digest"].is_null()) return false;
    }
    return true;
  }, 20s));

  const std::string forged_digest = "sha256:" + std::string(64, 'f');
  size_t fired = 0;
  for (const auto& s : senders) {
    INFO(s.format);
    const std::string ref = registry.host() + "/" + s.repo + ":1";
    const std::string path = "/hooks/" + s.format + s.query;
    auto post = [&](const std::string& body) {
      return http_call(api_port, "POST", path, body, s.headers(body));
    };

    // A forged notice: the tag did not move (and the digest is not there). It
    // is accepted and checked with a HEAD (a digest the registry does not show
    // is checked again six times within 1.6 s, for registries that notify
    // before they move the tag), and nothing fires.
    size_t heads = heads_served(registry, s.repo, "1");
    auto forged = post(s.payload(registry.host(), "1", forged_digest));
    REQUIRE(forged.status == 202);
    CHECK(forged.json()["outcome"] == "accepted");
    CHECK(forged.json()["checks"] == json::array({ref}));
    REQUIRE(wait_until([&] { return heads_served(registry, s.repo, "1") > heads; }, 10s));
    std::this_thread::sleep_for(1800ms);  // the follow-up checks are done
    CHECK(heads_served(registry, s.repo, "1") <= heads + 7);
    CHECK(receiver.count() == fired);

    // The real push: the HEAD sees the new digest and the delivery goes out.
    std::string d2 = registry.push_image(s.repo, "1", s.format + " two");
    std::string real_body = s.payload(registry.host(), "1", d2);
    auto real = post(real_body);
    REQUIRE(real.status == 202);
    CHECK(real.json()["outcome"] == "accepted");
    REQUIRE(receiver.wait_for(fired + 1, 10s));
    auto delivered = json::parse(receiver.requests()[fired].body);
    ++fired;
    CHECK(delivered["changes"][0]["ref"] == ref);
    CHECK(delivered["changes"][0]["old_digest"] == baseline[s.format]);
    CHECK(delivered["changes"][0]["new_digest"] == d2);
    CHECK(delivered["changes"][0]["source"] == "webhook");

    std::this_thread::sleep_for(700ms);  // a follow-up that ran before the check saw the new digest is done

    // The sender fans out: the same notice again is collapsed (no HEAD).
    // Without a digest (Quay) a repeat is collapsed only while its check is
    // pending, so repeats after the check may cost a HEAD, never a delivery.
    heads = heads_served(registry, s.repo, "1");
    for (int i = 0; i < 3; ++i) {
      auto dup = post(real_body);
      REQUIRE(dup.status == 202);
      if (s.format == "quay") {
        CHECK((dup.json()["outcome"] == "duplicate" || dup.json()["outcome"] == "accepted"));
      } else {
        CHECK(dup.json()["outcome"] == "duplicate");
        CHECK(dup.json()["duplicates"] == json::array({ref}));
      }
    }
    if (s.format != "quay") CHECK(heads_served(registry, s.repo, "1") == heads);
  }
  std::this_thread::sleep_for(1s);
  CHECK(receiver.count() == senders.size());
  auto events = get_json(api_port, "/v1/events");
  REQUIRE(events.is_array());
  CHECK(events.size() == senders.size());
  for (const auto& e : events) CHECK(e["source"] == "webhook");

  bw->signal(SIGTERM);
  REQUIRE(bw->wait(10s).has_value());
}

TEST_CASE("inbound hooks refuse wrong secrets, unreadable and oversized bodies with exact JSON errors",
          "[integration][api][inbound]") {
  TempDir dir("bw-refuse");
  int api_port = free_port();
  const std::string secret = "s3cret";
  dir.write("secret", secret + "\n");
  LocalRegistry registry;
  registry.push_image("team/x", "1", "x");
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
      "poll: {interval: 1h}\n"
      "registries:\n  " + registry.host() + ": {insecure: true}\n"
      "watch:\n  - ref: " + registry.host() + "/team/x:1\n"
      "inbound:\n"
      "  - {name: reg, path: /hooks/reg, format: distribution, secret_file: secret}\n"
      "  - {name: hub, path: /hooks/hub, format: dockerhub, secret_file: secret}\n"
      "  - {name: gh, path: /hooks/gh, format: ghcr, secret_file: secret}\n");
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());

  const std::string hub_body = R"({"push_data":{"pushed_at":1417566161,"pusher":"p","tag":"3.20"},)"
                               R"("repository":{"repo_name":"library/alpine","namespace":"library","name":"alpine"}})";
  auto r = http_call(api_port, "POST", "/hooks/reg", R"({"events":[]})");
  CHECK(r.status == 401);
  CHECK(r.body == R"({"detail":"missing secret: send Authorization: Bearer <secret>","error":"unauthorized"})");
  r = http_call(api_port, "POST", "/hooks/reg", R"({"events":[]})", {{"Authorization", "Bearer wrong"}});
  CHECK(r.status == 401);
  CHECK(r.body == R"({"detail":"wrong secret","error":"unauthorized"})");
  r = http_call(api_port, "POST", "/hooks/hub?token=wrong", hub_body);
  CHECK(r.status == 401);
  CHECK(r.body == R"({"detail":"wrong secret","error":"unauthorized"})");
  r = http_call(api_port, "POST", "/hooks/gh", "{}", {{"X-Hub-Signature-256", "sha256=" + bw::hmac_sha256_hex("nope", "{}")}});
  CHECK(r.status == 401);
  CHECK(r.body == R"({"detail":"wrong secret","error":"unauthorized"})");

  r = http_call(api_port, "POST", "/hooks/reg", "{\"events\": [", {{"Authorization", "Bearer " + secret}});
  CHECK(r.status == 400);
  CHECK(r.content_type == "application/json");
  CHECK(r.body == R"({"detail":"body is not valid JSON","error":"invalid notification"})");
  r = http_call(api_port, "POST", "/hooks/reg", R"({"events":[{"action":"push","target":{"tag":"1"}}]})",
                {{"Authorization", "Bearer " + secret}});
  CHECK(r.status == 400);
  CHECK(r.body == R"({"detail":"events[0].target.repository: expected a string","error":"invalid notification"})");

  std::string big = R"({"events":[],"pad":")" + std::string(1 << 20, 'x') + "\"}";
  r = http_call(api_port, "POST", "/hooks/reg", big, {{"Authorization", "Bearer " + secret}});
  CHECK(r.status == 413);
  CHECK(r.body == R"({"detail":"the limit is 1048576 bytes","error":"payload too large"})");

  r = http_call(api_port, "POST", "/hooks/nowhere", "{}");
  CHECK(r.status == 404);
  CHECK(r.body == R"({"detail":"/hooks/nowhere","error":"not found"})");

  // Docker Hub and GitHub name registries basewatch does not watch here: accepted, nothing checked.
  r = http_call(api_port, "POST", "/hooks/hub?token=" + secret, hub_body);
  CHECK(r.status == 202);
  CHECK(r.body == R"({"checks":[],"duplicates":[],"ignored":0,"outcome":"ignored","unwatched":["docker.io/library/alpine:3.20"]})");
  std::string gh_body = R"({"action":"published","registry_package":{"name":"app","namespace":"org","package_type":"CONTAINER",)"
                        R"("package_version":{"container_metadata":{"tag":{"name":"v1","digest":"sha256:)" +
                        std::string(64, 'a') + R"("}}}}})";
  r = http_call(api_port, "POST", "/hooks/gh", gh_body, {{"X-Hub-Signature-256", "sha256=" + bw::hmac_sha256_hex(secret, gh_body)},
                                                         {"X-GitHub-Event", "registry_package"}});
  CHECK(r.status == 202);
  CHECK(r.json()["unwatched"] == json::array({"ghcr.io/org/app:v1"}));

  std::string metrics = http_call(api_port, "GET", "/metrics").body;
  CHECK(metric_value(metrics, "basewatch_inbound_notifications_total{format=\"distribution\",outcome=\"unauthorized\"}") == 2);
  CHECK(metric_value(metrics, "basewatch_inbound_notifications_total{format=\"distribution\",outcome=\"invalid\"}") == 2);
  CHECK(metric_value(metrics, "basewatch_inbound_notifications_total{format=\"distribution\",outcome=\"too_large\"}") == 1);
  CHECK(metric_value(metrics, "basewatch_inbound_notifications_total{format=\"dockerhub\",outcome=\"ignored\"}") == 1);
  CHECK(metric_value(metrics, "basewatch_inbound_notifications_total{format=\"ghcr\",outcome=\"unauthorized\"}") == 1);

  bw->signal(SIGTERM);
  REQUIRE(bw->wait(10s).has_value());
}
