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
  FakeRegistry reg;
  reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::RegistrySettings s;
  s.host = "registry.example.com";
  s.requests_per_minute = 30;  // one every 2 s
  registry::Client client(http, clock, {s});
  std::vector<Millis> waits;
  client.set_sleeper([&](Millis d) {
    waits.push_back(d);
    clock.advance(d);
  });
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
