#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "registry/client.h"
#include "util/files.h"
#include "util/metrics.h"
#include "tests/unit/fake_registry.h"

using namespace bw;
using bw::testing::FakeRegistry;

namespace {
oci::Platform plat(const std::string& s) { return *oci::parse_platform(s); }
oci::Reference ref(const std::string& s) { return *oci::parse_reference(s); }
// A client of registry.example.com (team/app:1 exists) with
// requests_per_minute set; its sleeps advance a fake clock and are recorded.
struct Paced {
  explicit Paced(int per_minute) : client(http, clock, {settings(per_minute)}) {
    reg.put_manifest("team/app", "1", "v1");
    client.set_sleeper([this](Millis d) {
      waits.push_back(d);
      clock.advance(d);
    });
  }
  static registry::RegistrySettings settings(int per_minute) {
    registry::RegistrySettings s;
    s.host = "registry.example.com";
    s.requests_per_minute = per_minute;
    return s;
  }
  FakeRegistry reg;
  net::FakeHttpClient http{[this](const net::Request& r) { return reg.handle(r); }};
  FakeClock clock;
  registry::Client client;
  std::vector<Millis> waits;
};

}  // namespace

TEST_CASE("resolve sends HEAD with the full Accept set and reads the digest", "[unit][registry]") {
  FakeRegistry reg;
  std::string d = reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto res = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
  REQUIRE(res.ok());
  CHECK(res->digest == d);
  CHECK_FALSE(res->index);
  CHECK(res->platforms.at("linux/amd64") == d);
  auto reqs = http.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "HEAD");
  CHECK(reqs[0].url == "https://registry.example.com/v2/team/app/manifests/1");
  std::string accept;
  for (const auto& [k, v] : reqs[0].headers) if (k == "Accept") accept = v;
  CHECK(accept.find("application/vnd.oci.image.index.v1+json") != std::string::npos);
  CHECK(accept.find("application/vnd.oci.image.manifest.v1+json") != std::string::npos);
  CHECK(accept.find("application/vnd.docker.distribution.manifest.list.v2+json") != std::string::npos);
  CHECK(accept.find("application/vnd.docker.distribution.manifest.v2+json") != std::string::npos);
}

TEST_CASE("an index is read once when its digest moved, and not again while unchanged", "[unit][registry]") {
  FakeRegistry reg;
  std::string amd = reg.put_blob("amd64 v1", "application/vnd.oci.image.manifest.v1+json");
  std::string arm = reg.put_blob("arm64 v1", "application/vnd.oci.image.manifest.v1+json");
  std::string idx = reg.put_index("library/alpine", "3.20", {{"linux/amd64", amd}, {"linux/arm64/v8", arm}}, "att1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto r1 = client.resolve(ref("alpine:3.20"), {plat("linux/amd64"), plat("linux/arm64")});
  REQUIRE(r1.ok());
  CHECK(r1->index);
  CHECK(r1->digest == idx);
  CHECK(r1->platforms.at("linux/amd64") == amd);
  CHECK(r1->platforms.at("linux/arm64") == arm);  // arm64/v8 in the index is arm64
  CHECK(reg.heads == 1);
  CHECK(reg.gets == 1);
  CHECK(http.requests()[0].url == "https://registry-1.docker.io/v2/library/alpine/manifests/3.20");

  registry::Known known{r1->digest, r1->platforms};
  auto r2 = client.resolve(ref("alpine:3.20"), {plat("linux/amd64"), plat("linux/arm64")}, &known);
  REQUIRE(r2.ok());
  CHECK(r2->platforms == r1->platforms);
  CHECK(reg.heads == 2);
  CHECK(reg.gets == 1);  // HEAD only while unchanged
}

TEST_CASE("anonymous bearer flow: 401 challenge, token, retry; the token is cached", "[unit][registry]") {
  FakeRegistry reg;
  reg.require_token = true;
  reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::Client client(http, clock, {});
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 1);
  auto reqs = http.requests();
  REQUIRE(reqs.size() == 3);  // HEAD (401), token, HEAD
  CHECK(reqs[1].url == "https://auth.example.com/token?service=registry.example.com&scope=repository%3Ateam%2Fapp%3Apull");
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 1);  // cached
  CHECK(http.requests().size() == 4);  // the token went up front: one HEAD
  clock.advance(std::chrono::seconds(295));  // within the renew margin of 300 s
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 2);
}

TEST_CASE("refused credentials are reported clearly, without the password", "[unit][registry]") {
  FakeRegistry reg;
  reg.require_token = true;
  reg.token_user = "bot";
  reg.token_password = "right";
  reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::RegistrySettings s;
  s.host = "registry.example.com";
  s.username = "bot";
  s.password = "wrong-password";
  registry::Client client(http, clock, {s});
  auto res = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().kind == ErrorKind::unauthorized);
  CHECK(res.error().message == "registry.example.com: credentials refused by the token service (HTTP 401)");
  CHECK(client.status()[0].last_error.find("wrong-password") == std::string::npos);
}

TEST_CASE("status codes of a failed HEAD become error kinds; 429 pauses the registry", "[unit][registry]") {
  int status = 404;
  std::string retry_after;
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    net::Response r;
    r.status = status;
    if (!retry_after.empty()) r.headers.emplace("retry-after", retry_after);
    r.headers.emplace("ratelimit-remaining", "87;w=21600");
    return r;
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto res = client.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  CHECK(res.error().kind == ErrorKind::not_found);
  CHECK(res.error().message == "docker.io/library/alpine:3.20: not found");
  status = 503;
  CHECK(client.resolve(ref("alpine:3.20"), {plat("linux/amd64")}).error().kind == ErrorKind::server);
  status = 429;
  retry_after = "120";
  res = client.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  CHECK(res.error().kind == ErrorKind::rate_limited);
  CHECK(client.available_at("docker.io") == clock.now() + std::chrono::seconds(120));
  size_t before = http.requests().size();
  // While paused, nothing is sent at all, and no GET ever replaces the HEAD.
  CHECK(client.resolve(ref("alpine:3.20"), {plat("linux/amd64")}).error().kind == ErrorKind::rate_limited);
  CHECK(http.requests().size() == before);
  for (const auto& r : http.requests()) CHECK(r.method == "HEAD");
  CHECK(client.status()[0].ratelimit_remaining == 87);
  CHECK(client.status()[0].ratelimit_window_seconds == 21600);
}

TEST_CASE("no Docker-Content-Digest: GET and hash the body, except on Docker Hub", "[unit][registry]") {
  std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    net::Response res;
    res.status = 200;
    res.headers.emplace("content-type", "application/vnd.oci.image.manifest.v1+json");
    if (r.method == "GET") res.body = body;
    return res;
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto res = client.resolve(ref("static.example.com/team/app:1"), {plat("linux/amd64")});
  REQUIRE(res.ok());
  CHECK(res->digest == sha256_digest(body));
  auto hub = client.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  REQUIRE_FALSE(hub.ok());
  CHECK(hub.error().message == "docker.io/library/alpine:3.20: no Docker-Content-Digest in the HEAD answer");
  int gets = 0;
  for (const auto& r : http.requests()) gets += r.method == "GET" && r.url.find("registry-1.docker.io") != std::string::npos;
  CHECK(gets == 0);
}

TEST_CASE("every request is counted by registry, method and outcome", "[unit][registry][metrics]") {
  Metrics::global().reset();
  FakeRegistry reg;
  reg.require_token = true;
  std::string amd = reg.put_blob("amd64 m", "application/vnd.oci.image.manifest.v1+json");
  reg.put_index("team/app", "1", {{"linux/amd64", amd}});
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::Client client(http, clock, {});
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  REQUIRE_FALSE(client.resolve(ref("registry.example.com/team/app:missing"), {plat("linux/amd64")}).ok());
  auto value = [](const std::string& method, const std::string& outcome) {
    return Metrics::global().counter_value("basewatch_registry_requests_total",
                                           {{"registry", "registry.example.com"}, {"method", method}, {"outcome", outcome}});
  };
  CHECK(value("HEAD", "unauthorized") == 1);
  CHECK(value("TOKEN", "ok") == 1);
  CHECK(value("HEAD", "ok") == 1);
  CHECK(value("GET", "ok") == 1);
  CHECK(value("HEAD", "not_found") == 1);
  CHECK(Metrics::global().render().find("# HELP basewatch_registry_requests_total Registry requests by registry, method and outcome.") !=
        std::string::npos);
}

TEST_CASE("a token the registry refuses is dropped and a fresh one fetched once", "[unit][registry]") {
  FakeRegistry reg;
  reg.require_token = true;
  reg.put_manifest("team/app", "1", "v1");
  bool revoke = false;
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    if (revoke && r.url.find("/token?") == std::string::npos) {
      // The registry no longer accepts the cached token: one 401, then fine.
      revoke = false;
      net::Response res;
      res.status = 401;
      res.headers.emplace("www-authenticate", R"(Bearer realm="https://auth.example.com/token",service="registry.example.com")");
      return res;
    }
    return reg.handle(r);
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 1);
  revoke = true;
  auto res = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
  REQUIRE(res.ok());
  CHECK(reg.token_requests == 2);  // not the cached one again
  CHECK(res->requests == 3);       // HEAD 401, token, HEAD
}

TEST_CASE("anonymous access refused twice is reported with what to configure", "[unit][registry]") {
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    net::Response res;
    if (r.url.find("/token") != std::string::npos) {
      res.status = 200;
      res.body = R"({"token":"anon","expires_in":300})";
      return res;
    }
    res.status = 401;
    res.headers.emplace("www-authenticate", R"(Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:org/private:pull")");
    return res;
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto res = client.resolve(ref("ghcr.io/org/private:1"), {plat("linux/amd64")});
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().kind == ErrorKind::unauthorized);
  CHECK(res.error().message ==
        "ghcr.io/org/private:1: anonymous access refused (Bearer); set registries.ghcr.io.username and password_file, or docker_config");
  CHECK(http.requests().size() == 3);  // HEAD, token, HEAD, and no more
}

TEST_CASE("a realm that is not https is refused unless the registry is insecure", "[unit][registry]") {
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    net::Response res;
    res.status = 401;
    res.headers.emplace("www-authenticate", R"(Bearer realm="http://auth.example.com/token?secret=x",service="s")");
    return res;
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto res = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().message ==
        "registry.example.com: refusing token realm http://auth.example.com/token?<redacted> (https required unless the registry is marked insecure)");
  CHECK(http.requests().size() == 1);
}

TEST_CASE("docker config credentials: registry token sent as is, identity token via the refresh grant", "[unit][registry]") {
  FakeRegistry reg;
  reg.put_manifest("team/app", "1", "v1");
  std::vector<std::string> seen_auth;
  std::string token_body;
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    net::Response res;
    std::string auth;
    for (const auto& [k, v] : r.headers) if (k == "Authorization") auth = v;
    if (r.url == "https://auth.example.com/token") {
      token_body = r.body;
      res.status = 200;
      res.body = R"({"access_token":"from-refresh","expires_in":300})";
      return res;
    }
    seen_auth.push_back(auth);
    if (auth != "Bearer raw-registry-token" && auth != "Bearer from-refresh") {
      res.status = 401;
      res.headers.emplace("www-authenticate", R"(Bearer realm="https://auth.example.com/token",service="svc")");
      return res;
    }
    return reg.handle(r);
  });
  FakeClock clock;
  std::string dir = "/tmp/bw-unit-dockercfg-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  write_file_atomic(dir + "/a.json", R"({"auths":{"registry.example.com":{"registrytoken":"raw-registry-token"}}})");
  write_file_atomic(dir + "/b.json", R"({"auths":{"registry.example.com":{"identitytoken":"refresh-secret"}}})");
  registry::RegistrySettings s;
  s.host = "registry.example.com";
  s.docker_config = dir + "/a.json";
  {
    registry::Client client(http, clock, {s});
    auto res = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
    REQUIRE(res.ok());
    CHECK(seen_auth == std::vector<std::string>{"", "Bearer raw-registry-token"});
  }
  seen_auth.clear();
  s.docker_config = dir + "/b.json";
  {
    registry::Client client(http, clock, {s});
    auto res = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
    REQUIRE(res.ok());
    CHECK(seen_auth == std::vector<std::string>{"", "Bearer from-refresh"});
    CHECK(token_body == "grant_type=refresh_token&client_id=basewatch&refresh_token=refresh-secret&service=svc"
                        "&scope=repository%3Ateam%2Fapp%3Apull");
    for (const auto& st : client.status()) CHECK(st.last_error.find("refresh-secret") == std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("server errors and timeouts in a row pause the registry; other registries go on", "[unit][registry]") {
  FakeRegistry good;
  std::string d = good.put_manifest("team/app", "1", "v1");
  int sick_requests = 0;
  bool sick_timeout = false;
  bool healed = false;
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    if (r.url.find("sick.example.com") != std::string::npos) {
      ++sick_requests;
      if (healed) return good.handle(r);
      if (sick_timeout) return make_error(ErrorKind::timeout, "HEAD https://sick.example.com/v2/...: Read");
      net::Response res;
      res.status = 503;
      return res;
    }
    return good.handle(r);
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  for (int i = 0; i < 2; ++i) {
    auto res = client.resolve(::ref("sick.example.com/team/app:" + std::to_string(i)), {plat("linux/amd64")});
    CHECK(res.error().kind == ErrorKind::server);
  }
  sick_timeout = true;
  auto third = client.resolve(ref("sick.example.com/team/app:2"), {plat("linux/amd64")});
  CHECK(third.error().kind == ErrorKind::timeout);
  CHECK(sick_requests == 3);
  // Paused now: the rest of the cycle fails fast, without a request.
  TimePoint until = client.available_at("sick.example.com");
  CHECK(until >= clock.now() + Millis(1600));
  CHECK(until <= clock.now() + Millis(2400));
  auto fast = client.resolve(ref("sick.example.com/team/app:3"), {plat("linux/amd64")});
  CHECK(fast.error().kind == ErrorKind::timeout);
  CHECK(fast.error().message.find("3 failures in a row") != std::string::npos);
  CHECK(sick_requests == 3);
  // Another registry is not affected.
  auto other = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
  REQUIRE(other.ok());
  CHECK(other->digest == d);
  // After the pause one request goes out; another failure doubles the pause.
  clock.advance(Millis(2500));
  REQUIRE_FALSE(client.resolve(ref("sick.example.com/team/app:4"), {plat("linux/amd64")}).ok());
  CHECK(sick_requests == 4);
  CHECK(client.available_at("sick.example.com") >= clock.now() + Millis(3200));
  auto st = client.status();
  for (const auto& s : st) {
    if (s.host == "sick.example.com") {
      CHECK(s.consecutive_failures == 4);
      CHECK(s.last_error_kind == "timeout");
    }
  }
  // A success closes the breaker.
  healed = true;
  clock.advance(Millis(10'000));
  REQUIRE(client.resolve(ref("sick.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  for (const auto& s : client.status()) {
    if (s.host == "sick.example.com") CHECK(s.consecutive_failures == 0);
  }
}

TEST_CASE("requests_per_minute spaces requests; next_request_at shows the slot", "[unit][registry]") {
  Paced p(30);  // one every 2 s
  auto& client = p.client;
  auto& clock = p.clock;
  auto& waits = p.waits;
  for (int i = 0; i < 3; ++i) REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(waits == std::vector<Millis>{Millis(2000), Millis(2000)});
  auto st = client.status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].next_request_at == to_unix_ms(clock.now() + Millis(2000)));
  CHECK(client.available_at("registry.example.com") == clock.now() + Millis(2000));
}

TEST_CASE("a HEAD without a media type reads the manifest once when the digest moved", "[unit][registry]") {
  FakeRegistry reg;
  std::string amd = reg.put_blob("amd64 v", "application/vnd.oci.image.manifest.v1+json");
  std::string arm = reg.put_blob("arm64 v", "application/vnd.oci.image.manifest.v1+json");
  std::string idx = reg.put_index("team/app", "1", {{"linux/amd64", amd}, {"linux/arm64", arm}});
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    auto res = reg.handle(r);
    if (res && r.method == "HEAD") res->headers.erase("content-type");
    return res;
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto r1 = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/arm64")});
  REQUIRE(r1.ok());
  CHECK(r1->index);
  CHECK(r1->digest == idx);
  CHECK(r1->platforms.at("linux/arm64") == arm);  // not the index digest
  CHECK(reg.gets == 1);
  registry::Known known{r1->digest, r1->platforms};
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/arm64")}, &known).ok());
  CHECK(reg.gets == 1);
}

TEST_CASE("docker.io: no GET after a failed HEAD, a 429, or a missing digest", "[unit][registry]") {
  int status = 500;
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    net::Response r;
    r.status = status;
    if (status == 429) r.headers.emplace("retry-after", "Sun, 06 Nov 2050 08:49:37 GMT");
    return r;
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  for (int s : {500, 401, 403, 404, 200, 429}) {
    status = s;
    auto res = client.resolve(ref("library/alpine:3.20"), {plat("linux/amd64")});
    CHECK_FALSE(res.ok());
  }
  for (const auto& r : http.requests()) CHECK(r.method == "HEAD");
  CHECK(client.available_at("docker.io") == *parse_http_date("Sun, 06 Nov 2050 08:49:37 GMT"));
}

TEST_CASE("an index resolved for no platform is not read", "[unit][registry]") {
  FakeRegistry reg;
  std::string amd = reg.put_blob("amd64 n", "application/vnd.oci.image.manifest.v1+json");
  std::string idx = reg.put_index("library/alpine", "3.20", {{"linux/amd64", amd}});
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::Client client(http, clock, {});
  auto res = client.resolve(ref("alpine:3.20"), {});
  REQUIRE(res.ok());
  CHECK(res->digest == idx);
  CHECK(res->index);
  CHECK(res->platforms.empty());
  CHECK(reg.gets == 0);
}

TEST_CASE("per-registry concurrency bounds the requests in flight to that registry", "[unit][registry]") {
  FakeRegistry reg;
  reg.put_manifest("team/app", "1", "v1");
  std::mutex m;
  std::condition_variable cv;
  int in_flight = 0, max_in_flight = 0;
  net::FakeHttpClient http([&](const net::Request& r) {
    {
      std::unique_lock lock(m);
      max_in_flight = std::max(max_in_flight, ++in_flight);
      cv.notify_all();
      // Hold the request until a second one is in flight (bounded), so that
      // a broken limit would let a third in.
      cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return in_flight >= 2; });
    }
    auto res = reg.handle(r);
    std::lock_guard lock(m);
    --in_flight;
    return res;
  });
  FakeClock clock;
  registry::RegistrySettings s;
  s.host = "registry.example.com";
  s.concurrency = 2;
  registry::Client client(http, clock, {s});
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      if (client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok == 6);
  CHECK(max_in_flight == 2);
}

namespace {

std::string authorization_of(const net::Request& r) {
  for (const auto& [k, v] : r.headers) {
    if (k == "Authorization") return v;
  }
  return "";
}

registry::RegistrySettings with_password(const std::string& host, const std::string& user, const std::string& password) {
  registry::RegistrySettings s;
  s.host = host;
  s.username = user;
  s.password = password;
  return s;
}

}  // namespace

TEST_CASE("update_settings: the next resolve authenticates with the new password, not the old token", "[unit][registry][reload]") {
  FakeRegistry reg;
  reg.require_token = true;
  reg.token_user = "bot";
  reg.token_password = "old-secret";
  std::string d = reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  auto s = with_password("registry.example.com", "bot", "old-secret");
  registry::Client client(http, clock, {s});
  auto r = ref("registry.example.com/team/app:1");
  REQUIRE(client.resolve(r, {plat("linux/amd64")}).ok());
  REQUIRE(client.resolve(r, {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 1);  // cached

  // The password is rotated at the registry and in the secret file, then SIGHUP.
  reg.token_password = "new-secret";
  s.password = "new-secret";
  CHECK(client.update_settings({s}) == std::vector<std::string>{"registry.example.com"});
  size_t before = http.requests().size();
  auto res = client.resolve(r, {plat("linux/amd64")});
  REQUIRE(res.ok());
  CHECK(res->digest == d);
  CHECK(reg.token_requests == 2);  // the token of the old password is not reused
  auto reqs = http.requests();
  REQUIRE(reqs.size() == before + 2);  // a token up front (the challenge is still known), then the HEAD
  CHECK(reqs[before].url.find("https://auth.example.com/token?") == 0);
  CHECK(authorization_of(reqs[before]) == "Basic " + base64_encode("bot:new-secret"));
  REQUIRE(reg.issued().size() == 2);
  CHECK(authorization_of(reqs[before + 1]) == "Bearer " + reg.issued()[1]);
  REQUIRE(client.resolve(r, {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 2);  // the new token is cached in turn

  // Back to the old password: refused at once (no token of the new one is
  // used for it either), and no secret in the error or the status.
  s.password = "old-secret";
  CHECK(client.update_settings({s}) == std::vector<std::string>{"registry.example.com"});
  auto refused = client.resolve(r, {plat("linux/amd64")});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind == ErrorKind::unauthorized);
  CHECK(refused.error().message == "registry.example.com: credentials refused by the token service (HTTP 401)");
  CHECK(reg.token_requests == 3);
  for (const auto& st : client.status()) {
    CHECK(st.last_error.find("secret") == std::string::npos);
  }
}

TEST_CASE("update_settings keeps the state of hosts whose settings did not change", "[unit][registry][reload]") {
  FakeRegistry reg;
  reg.require_token = true;  // tokens for anyone (no token_user): the client's credentials decide its cache
  reg.put_manifest("team/app", "1", "v1");
  bool limited = false;
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    if (limited && r.url.find("limited.example.com") != std::string::npos) {
      net::Response res;
      res.status = 429;
      res.headers.emplace("retry-after", "120");
      return res;
    }
    auto res = reg.handle(r);
    if (res) res->headers.emplace("ratelimit-remaining", "87;w=21600");
    return res;
  });
  FakeClock clock;
  auto changed = with_password("changed.example.com", "bot", "one");
  auto same = with_password("same.example.com", "bot", "one");
  auto paused = with_password("limited.example.com", "bot", "one");
  paused.requests_per_minute = 600;
  registry::Client client(http, clock, {changed, same, paused});
  client.set_sleeper([&](Millis d) { clock.advance(d); });
  for (const auto* host : {"changed.example.com", "same.example.com", "limited.example.com"}) {
    REQUIRE(client.resolve(::ref(std::string(host) + "/team/app:1"), {plat("linux/amd64")}).ok());
  }
  CHECK(reg.token_requests == 3);
  limited = true;
  REQUIRE_FALSE(client.resolve(ref("limited.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  TimePoint limited_until = client.available_at("limited.example.com");
  CHECK(limited_until == clock.now() + std::chrono::seconds(120));
  std::map<std::string, registry::RegistryStatus> before;
  for (const auto& st : client.status()) before[st.host] = st;

  changed.password = "two";
  CHECK(client.update_settings({changed, same, paused}) == std::vector<std::string>{"changed.example.com"});
  std::map<std::string, registry::RegistryStatus> after;
  for (const auto& st : client.status()) after[st.host] = st;
  REQUIRE(after.size() == 3);
  for (const auto& [host, st] : after) {
    INFO(host);
    CHECK(st.requests == before[host].requests);
    CHECK(st.ratelimit_remaining == 87);
    CHECK(st.ratelimit_window_seconds == 21600);
    CHECK(st.paused_until == before[host].paused_until);
    CHECK(st.next_request_at == before[host].next_request_at);
    CHECK(st.last_error == before[host].last_error);
  }
  CHECK(client.available_at("limited.example.com") == limited_until);  // Retry-After still holds
  REQUIRE_FALSE(client.resolve(ref("limited.example.com/team/app:1"), {plat("linux/amd64")}).ok());

  // The unchanged host goes on with its cached token; the changed one fetches one.
  size_t sent = http.requests().size();
  REQUIRE(client.resolve(ref("same.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 3);
  CHECK(http.requests().size() == sent + 1);
  REQUIRE(client.resolve(ref("changed.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(reg.token_requests == 4);
  CHECK(authorization_of(http.requests()[sent + 1]) == "Basic " + base64_encode("bot:two"));
}

TEST_CASE("update_settings: a removed host is anonymous again, a new host gets its settings", "[unit][registry][reload]") {
  FakeRegistry reg;
  reg.require_token = true;
  reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::Client client(http, clock, {with_password("registry.example.com", "bot", "pw")});
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  REQUIRE(http.requests().size() == 3);
  CHECK(authorization_of(http.requests()[1]) == "Basic " + base64_encode("bot:pw"));

  registry::RegistrySettings added;
  added.host = "new.example.com";
  added.insecure = true;
  CHECK(client.update_settings({added}) == std::vector<std::string>{"new.example.com", "registry.example.com"});
  size_t sent = http.requests().size();
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  auto reqs = http.requests();
  REQUIRE(reqs.size() == sent + 2);  // an anonymous token, the HEAD
  CHECK(reqs[sent].url.find("https://auth.example.com/token?") == 0);
  CHECK(authorization_of(reqs[sent]).empty());
  REQUIRE(client.resolve(ref("new.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(http.requests()[sent + 2].url == "http://new.example.com/v2/team/app/manifests/1");
  // The same settings again: nothing changed.
  CHECK(client.update_settings({added}).empty());
}

TEST_CASE("update_settings: requests_per_minute and concurrency apply to the next requests", "[unit][registry][reload]") {
  FakeRegistry reg;
  reg.put_manifest("team/app", "1", "v1");
  auto r = ref("registry.example.com/team/app:1");

  SECTION("requests_per_minute") {
    Paced p(30);  // one every 2 s
    auto& client = p.client;
    auto& clock = p.clock;
    auto& waits = p.waits;
    auto s = Paced::settings(30);
    for (int i = 0; i < 2; ++i) REQUIRE(client.resolve(r, {plat("linux/amd64")}).ok());
    CHECK(waits == std::vector<Millis>{Millis(2000)});
    s.requests_per_minute = 120;  // one every 500 ms, counted from the last request
    CHECK(client.update_settings({s}) == std::vector<std::string>{"registry.example.com"});
    CHECK(client.available_at("registry.example.com") == clock.now() + Millis(500));
    REQUIRE(client.resolve(r, {plat("linux/amd64")}).ok());
    CHECK(waits == std::vector<Millis>{Millis(2000), Millis(500)});
    s.requests_per_minute = 0;
    client.update_settings({s});
    for (int i = 0; i < 3; ++i) REQUIRE(client.resolve(r, {plat("linux/amd64")}).ok());
    CHECK(waits.size() == 2);
    CHECK(client.status()[0].next_request_at == 0);
  }

  SECTION("concurrency: a request waiting for a slot goes once the limit is raised") {
    std::mutex m;
    std::condition_variable cv;
    int in_flight = 0;
    bool release = false;
    net::FakeHttpClient http([&](const net::Request& q) {
      std::unique_lock lock(m);
      ++in_flight;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return release; });
      --in_flight;
      lock.unlock();
      return reg.handle(q);
    });
    FakeClock clock;
    registry::RegistrySettings s;
    s.host = "registry.example.com";
    s.concurrency = 1;
    registry::Client client(http, clock, {s});
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&] {
        if (client.resolve(r, {plat("linux/amd64")}).ok()) ++ok;
      });
    }
    bool one_in_flight, two_in_flight;
    {
      std::unique_lock lock(m);
      one_in_flight = cv.wait_for(lock, std::chrono::seconds(10), [&] { return in_flight == 1; });
    }
    CHECK(one_in_flight);
    s.concurrency = 2;
    client.update_settings({s});
    {
      std::unique_lock lock(m);
      two_in_flight = cv.wait_for(lock, std::chrono::seconds(10), [&] { return in_flight == 2; });
      release = true;
      cv.notify_all();
    }
    for (auto& t : threads) t.join();
    CHECK(two_in_flight);
    CHECK(ok == 2);
  }
}

TEST_CASE("update_settings: a changed CA or insecure flag lifts the failure breaker, not a Retry-After",
          "[unit][registry][reload]") {
  FakeRegistry reg;
  std::string d = reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    net::Response res;
    if (r.url.rfind("https://sick.example.com/", 0) == 0) {
      return make_error(ErrorKind::network, "HEAD " + net::redact_url(r.url) + ": SSL server verification failed");
    }
    if (r.url.find("limited.example.com") != std::string::npos) {
      res.status = 429;
      res.headers.emplace("retry-after", "120");
      return res;
    }
    return reg.handle(r);
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  for (int i = 0; i < 3; ++i) CHECK_FALSE(client.resolve(ref("sick.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  REQUIRE_FALSE(client.resolve(ref("limited.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(client.available_at("sick.example.com") > clock.now());  // paused after 3 failures in a row
  TimePoint limited_until = client.available_at("limited.example.com");
  CHECK(limited_until == clock.now() + std::chrono::seconds(120));

  registry::RegistrySettings sick, limited;
  sick.host = "sick.example.com";
  sick.insecure = true;
  limited.host = "limited.example.com";
  limited.ca_file = "/etc/basewatch/ca.pem";
  CHECK(client.update_settings({sick, limited}) == std::vector<std::string>{"limited.example.com", "sick.example.com"});
  CHECK(client.available_at("sick.example.com") <= clock.now());
  auto res = client.resolve(ref("sick.example.com/team/app:1"), {plat("linux/amd64")});
  REQUIRE(res.ok());
  CHECK(res->digest == d);
  CHECK(http.requests().back().url == "http://sick.example.com/v2/team/app/manifests/1");
  CHECK(client.available_at("limited.example.com") == limited_until);
}

TEST_CASE("update_settings while other threads resolve: each resolve succeeds or is refused, nothing else",
          "[unit][registry][reload]") {
  FakeRegistry reg;
  reg.require_token = true;
  reg.token_user = "bot";
  reg.token_password = "right";
  std::string d = reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  auto settings = [](const std::string& password, int concurrency, int rpm) {
    auto s = with_password("registry.example.com", "bot", password);
    s.concurrency = concurrency;
    s.requests_per_minute = rpm;
    return std::vector<registry::RegistrySettings>{s};
  };
  registry::Client client(http, clock, settings("right", 0, 0));
  client.set_sleeper([](Millis) {});
  const std::string refused_message = "registry.example.com: credentials refused by the token service (HTTP 401)";
  std::atomic<bool> done{false};
  std::atomic<int> ok{0}, refused{0};
  std::mutex m;
  std::vector<std::string> unexpected;
  auto resolver = [&] {
    for (int i = 0; !done || i < 100; ++i) {
      auto res = client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")});
      if (res.ok() && res->digest == d) {
        ++ok;
      } else if (!res.ok() && res.error().kind == ErrorKind::unauthorized && res.error().message == refused_message) {
        ++refused;
      } else {
        std::lock_guard lock(m);
        unexpected.push_back(res.ok() ? "digest " + res->digest : res.error().message);
      }
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(resolver);
  threads.emplace_back(resolver);
  threads.emplace_back([&] {  // the API: status and the scheduler's look at the budget
    while (!done) {
      for (const auto& st : client.status()) {
        if (st.last_error.find("wrong") != std::string::npos) {
          std::lock_guard lock(m);
          unexpected.push_back("a secret in last_error");
        }
      }
      (void)client.available_at("registry.example.com");
    }
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < 100; ++i) {
    switch (i % 4) {
      case 0: client.update_settings(settings("wrong", 1, 600)); break;
      case 1: client.update_settings({}); break;  // removed: anonymous, also refused by the token service
      case 2: client.update_settings(settings("right", 2, 0)); break;
      default: client.update_settings(settings("right", 0, 60)); break;
    }
    // Let a few resolves end under each setting (bounded, in case one hangs).
    int seen = ok + refused;
    while (ok + refused < seen + 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  }
  done = true;
  for (auto& t : threads) t.join();
  INFO((unexpected.empty() ? std::string() : unexpected.front()));
  CHECK(unexpected.empty());
  INFO("ok " << ok << ", refused " << refused);
  CHECK(ok > 0);  // both outcomes were seen: the settings really changed under the resolves
  CHECK(refused > 0);
  // Settled on the right password: the next resolve succeeds.
  client.update_settings(settings("right", 0, 0));
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
}

TEST_CASE("send asks for push and mount scopes in one token; credentials stay with the registry's origin", "[unit][registry]") {
  FakeRegistry reg;
  reg.require_token = true;
  reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) -> Result<net::Response> {
    if (r.url.rfind("https://elsewhere.example.com/", 0) == 0) {
      net::Response res;
      res.status = 202;
      return res;
    }
    return reg.handle(r);
  });
  FakeClock clock;
  registry::Client client(http, clock, {});
  // The registry's Bearer challenge is learned from a pull first.
  REQUIRE(client.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  registry::Client::Access access;
  access.repository = "mirror/app";
  access.push = true;
  access.mount_from = {"team/app"};
  net::Request req;
  req.method = "POST";
  req.url = "/v2/mirror/app/blobs/uploads/?mount=sha256%3Aabc&from=team%2Fapp";
  auto res = client.send("registry.example.com", access, req, "mount");
  REQUIRE(res.ok());
  auto reqs = http.requests();
  REQUIRE(reqs.size() >= 5);
  // The token for it: pull,push on the destination and pull on the mount source.
  CHECK(reqs[3].url == "https://auth.example.com/token?service=registry.example.com&scope=repository%3Amirror%2Fapp%3Apull%2Cpush"
                       "&scope=repository%3Ateam%2Fapp%3Apull");
  CHECK(reqs[4].url == "https://registry.example.com/v2/mirror/app/blobs/uploads/?mount=sha256%3Aabc&from=team%2Fapp");
  bool authorized = false;
  for (const auto& [k, v] : reqs[4].headers) authorized = authorized || (k == "Authorization" && v.rfind("Bearer ", 0) == 0);
  CHECK(authorized);
  // An absolute URL on another origin (an upload Location elsewhere) gets no credentials.
  net::Request away;
  away.method = "PATCH";
  away.url = "https://elsewhere.example.com/upload/1";
  REQUIRE(client.send("registry.example.com", access, away, "patch").ok());
  auto last = http.requests().back();
  CHECK(last.url == away.url);
  for (const auto& [k, v] : last.headers) CHECK(k != "Authorization");
}
