#include <catch2/catch.hpp>

#include "registry/client.h"
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
