// The pure part of the inbound hooks: each sender's documented payload
// parsed to exact notices, the errors named to the letter, authentication
// per sender, and the duplicate window driven by a FakeClock.
#include <catch2/catch.hpp>

#include <string>

#include "api/inbound.h"
#include "util/crypto.h"

using namespace bw;
using namespace bw::api::inbound;

namespace {

const std::string k_d1 = "sha256:" + std::string(64, 'a');
const std::string k_d2 = "sha256:" + std::string(64, 'b');

Parsed ok(const std::string& format, const std::string& body) {
  auto r = parse(format, body);
  INFO(format << ": " << (r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  return *r;
}

std::string fails(const std::string& format, const std::string& body) {
  auto r = parse(format, body);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::invalid);
  return r.error().message;
}

}  // namespace

TEST_CASE("distribution: tag pushes become notices; pulls, blobs and deletes are ignored", "[api][inbound]") {
  // As registry 2.8 posts them: a blob push, a manifest push by tag, and the
  // pull that a HEAD produces.
  std::string body = R"({"events":[
    {"id":"1","timestamp":"2026-11-28T12:00:00Z","action":"push",
     "target":{"mediaType":"application/octet-stream","size":10,"digest":")" + k_d2 + R"(","length":10,
               "repository":"team/alpine","url":"http://127.0.0.1:5000/v2/team/alpine/blobs/)" + k_d2 + R"("},
     "request":{"id":"r1","addr":"127.0.0.1:40000","host":"127.0.0.1:5000","method":"PUT","useragent":"x"},
     "actor":{},"source":{"addr":"h:5000","instanceID":"i"}},
    {"id":"2","timestamp":"2026-11-28T12:00:00Z","action":"push",
     "target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,"digest":")" + k_d1 + R"(",
               "length":528,"repository":"team/alpine","url":"http://127.0.0.1:5000/v2/team/alpine/manifests/)" + k_d1 + R"(",
               "tag":"3.20"},
     "request":{"id":"r2","addr":"127.0.0.1:40000","host":"127.0.0.1:5000","method":"PUT","useragent":"x"}},
    {"id":"3","action":"pull","target":{"repository":"team/alpine","tag":"3.20","digest":")" + k_d1 + R"("},
     "request":{"host":"127.0.0.1:5000","method":"HEAD"}},
    {"id":"4","action":"delete","target":{"repository":"team/alpine","digest":")" + k_d1 + R"("},
     "request":{"host":"127.0.0.1:5000","method":"DELETE"}}
  ]})";
  auto p = ok("distribution", body);
  REQUIRE(p.notices.size() == 1);
  CHECK(p.notices[0] == Notice{"127.0.0.1:5000/team/alpine:3.20", k_d1});
  CHECK(p.ignored == 3);
}

TEST_CASE("distribution: the host comes from target.url when request.host is missing; Docker Hub names normalise",
          "[api][inbound]") {
  auto p = ok("distribution", R"({"events":[{"action":"push","target":{"repository":"library/alpine","tag":"3.20",
      "url":"https://registry-1.docker.io/v2/library/alpine/manifests/3.20"}}]})");
  REQUIRE(p.notices.size() == 1);
  CHECK(p.notices[0] == Notice{"docker.io/library/alpine:3.20", ""});
  CHECK(p.ignored == 0);
}

TEST_CASE("distribution: unreadable bodies name the problem", "[api][inbound]") {
  CHECK(fails("distribution", "{nope") == "body is not valid JSON");
  CHECK(fails("distribution", "[1]") == "body must be a JSON object");
  CHECK(fails("distribution", R"({"events":{}})") == "\"events\" must be a list");
  CHECK(fails("distribution", R"({"events":[7]})") == "events[0]: expected an object");
  CHECK(fails("distribution", R"({"events":[{"target":{}}]})") == "events[0].action: expected a string");
  CHECK(fails("distribution", R"({"events":[{"action":"push","target":{"tag":"1"},"request":{"host":"r.io"}}]})") ==
        "events[0].target.repository: expected a string");
  CHECK(fails("distribution", R"({"events":[{"action":"push","target":{"tag":"1","repository":"a"}}]})") ==
        "events[0].request.host: expected a string");
  CHECK(fails("distribution", R"({"events":[{"action":"push","target":{"tag":"1","repository":"Team/A"},"request":{"host":"r.io"}}]})") ==
        "events[0]: invalid reference \"r.io/Team/A:1\": repository name must be lowercase");
  CHECK(fails("distribution", R"({"events":[{"action":"push","target":{"tag":"bad tag","repository":"a"},"request":{"host":"r.io"}}]})") ==
        "events[0]: \"bad tag\" is not a valid tag");
  CHECK(fails("distribution", R"({"events":[{"action":"push","target":{"tag":"1","repository":"a","digest":"md5:1"},"request":{"host":"r.io"}}]})") ==
        "events[0]: \"md5:1\" is not a valid digest");
  CHECK(fails("distribution", R"({"events":[{"action":"push","target":{"tag":"1","repository":"a"},"request":{"host":"nodots"}}]})") ==
        "events[0]: \"nodots\" is not a registry host");
  CHECK(fails("distribution", R"({"events":[{"action":"push","target":{"tag":7}}]})") == "events[0].target.tag: expected a string");
}

TEST_CASE("dockerhub: the documented payload names docker.io, no digest", "[api][inbound]") {
  auto p = ok("dockerhub", R"({"callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
    "push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest","images":[]},
    "repository":{"comment_count":0,"date_created":1417494799,"description":"","is_official":false,"is_private":true,
      "name":"testhook","namespace":"svendowideit","owner":"svendowideit","repo_name":"svendowideit/testhook",
      "repo_url":"https://registry.hub.docker.com/u/svendowideit/testhook/","star_count":0,"status":"Active"}})");
  REQUIRE(p.notices.size() == 1);
  CHECK(p.notices[0] == Notice{"docker.io/svendowideit/testhook:latest", ""});
  // Namespace and name when repo_name is absent; official images live in library/.
  auto q = ok("dockerhub", R"({"push_data":{"tag":"3.20"},"repository":{"namespace":"library","name":"alpine"}})");
  REQUIRE(q.notices.size() == 1);
  CHECK(q.notices[0].ref == "docker.io/library/alpine:3.20");
  CHECK(fails("dockerhub", R"({"repository":{}})") == "push_data: expected an object");
  CHECK(fails("dockerhub", R"({"push_data":{"tag":"x"},"repository":{"name":"a"}})") == "repository.namespace: expected a string");
}

TEST_CASE("acr: push with request.host; chart pushes and deletes ignored", "[api][inbound]") {
  auto p = ok("acr", R"({"id":"cb8c3971-9adc-488b-bdd8-43cbb4974ff5","timestamp":"2017-11-17T16:52:01.343145347Z","action":"push",
    "target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":524,"digest":")" + k_d1 + R"(",
      "length":524,"repository":"hello-world","tag":"v1"},
    "request":{"id":"3cbb6949-7549-4fa1-86cd-a6d5451dffc7","host":"myregistry.azurecr.io","method":"PUT","useragent":"docker/17.09.0-ce"}})");
  REQUIRE(p.notices.size() == 1);
  CHECK(p.notices[0] == Notice{"myregistry.azurecr.io/hello-world:v1", k_d1});
  CHECK(ok("acr", R"({"action":"chart_push","target":{"repository":"c","tag":"1"},"request":{"host":"r.azurecr.io"}})").ignored == 1);
  CHECK(ok("acr", R"({"action":"delete","target":{"repository":"c","digest":")" + k_d1 + R"("},"request":{"host":"r.azurecr.io"}})").notices.empty());
  CHECK(fails("acr", R"({"action":"push","target":{"repository":"c","tag":"1"}})") == "request: expected an object");
}

TEST_CASE("harbor: PUSH_ARTIFACT resources, host from resource_url", "[api][inbound]") {
  auto p = ok("harbor", R"({"type":"PUSH_ARTIFACT","occur_at":1680501893,"operator":"admin",
    "event_data":{"resources":[
        {"digest":")" + k_d1 + R"(","tag":"3.20","resource_url":"harbor.example.com/library/alpine:3.20"},
        {"digest":")" + k_d2 + R"(","tag":"","resource_url":"harbor.example.com/library/alpine@)" + k_d2 + R"("}],
      "repository":{"date_created":1680501893,"name":"alpine","namespace":"library","repo_full_name":"library/alpine","repo_type":"private"}}})");
  REQUIRE(p.notices.size() == 1);
  CHECK(p.notices[0] == Notice{"harbor.example.com/library/alpine:3.20", k_d1});
  CHECK(p.ignored == 1);
  CHECK(ok("harbor", R"({"type":"PULL_ARTIFACT","event_data":{}})").ignored == 1);
  CHECK(fails("harbor", R"({"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":"a/b"}}})") ==
        "event_data.resources: expected a list");
  CHECK(fails("harbor", R"({"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":"a/b"},"resources":[{"tag":"1"}]}})") ==
        "event_data.resources[0].resource_url: expected a string");
}

TEST_CASE("harbor: its documented push by digest (the digest in resources[].tag) is an untagged push, ignored", "[api][inbound]") {
  // Harbor's own PUSH_ARTIFACT example for an artifact pushed by digest.
  auto p = ok("harbor", R"({"type":"PUSH_ARTIFACT","occur_at":1586922308,"operator":"admin",
    "event_data":{"resources":[{"digest":")" + k_d1 + R"(","tag":")" + k_d1 + R"(",
        "resource_url":"hub.harbor.com/test-webhook/debian:)" + k_d1 + R"("}],
      "repository":{"date_created":1586922308,"name":"debian","namespace":"test-webhook",
        "repo_full_name":"test-webhook/debian","repo_type":"private"}}})");
  CHECK(p.notices.empty());
  CHECK(p.ignored == 1);
}

TEST_CASE("ghcr: registry_package published with a tag; untagged manifests and pings ignored", "[api][inbound]") {
  auto p = ok("ghcr", R"({"action":"published","registry_package":{"id":1,"name":"Hello-World","namespace":"Octo-Org",
    "ecosystem":"CONTAINER","package_type":"CONTAINER","owner":{"login":"Octo-Org"},
    "package_version":{"id":2,"version":")" + k_d1 + R"(","container_metadata":{"tag":{"name":"v1","digest":")" + k_d1 + R"("},
      "labels":{},"manifest":{}},"package_url":"ghcr.io/octo-org/hello-world:v1"},
    "registry":{"name":"GitHub Container Registry","url":"https://ghcr.io/octo-org"}},
    "repository":{"full_name":"octo-org/hello-world"},"sender":{"login":"octocat"}})");
  REQUIRE(p.notices.size() == 1);
  CHECK(p.notices[0] == Notice{"ghcr.io/octo-org/hello-world:v1", k_d1});
  // The per-platform manifests of the same push arrive untagged.
  auto untagged = ok("ghcr", R"({"action":"published","registry_package":{"name":"x","namespace":"o","package_type":"CONTAINER",
    "package_version":{"container_metadata":{"tag":{"name":"","digest":")" + k_d2 + R"("}}}}})");
  CHECK(untagged.notices.empty());
  CHECK(untagged.ignored == 1);
  CHECK(ok("ghcr", R"({"zen":"Keep it logically awesome.","hook_id":1})").ignored == 1);
  CHECK(ok("ghcr", R"({"action":"published","registry_package":{"name":"x","namespace":"o","package_type":"npm","package_version":{}}})").ignored == 1);
  // The `package` event carries the same fields under "package".
  auto pkg = ok("ghcr", R"({"action":"updated","package":{"name":"x","owner":{"login":"O"},"package_type":"container",
    "package_version":{"container_metadata":{"tag":{"name":"latest","digest":")" + k_d2 + R"("}}}}})");
  REQUIRE(pkg.notices.size() == 1);
  CHECK(pkg.notices[0] == Notice{"ghcr.io/o/x:latest", k_d2});
  CHECK(fails("ghcr", R"({"action":"published"})") == "registry_package: expected an object");
}

TEST_CASE("quay: repo_push with updated_tags (list or the older object form)", "[api][inbound]") {
  auto p = ok("quay", R"({"name":"repository","repository":"mynamespace/repository","namespace":"mynamespace",
    "docker_url":"quay.io/mynamespace/repository","homepage":"https://quay.io/repository/mynamespace/repository",
    "updated_tags":["latest","1.0"]})");
  REQUIRE(p.notices.size() == 2);
  CHECK(p.notices[0] == Notice{"quay.io/mynamespace/repository:latest", ""});
  CHECK(p.notices[1] == Notice{"quay.io/mynamespace/repository:1.0", ""});
  auto q = ok("quay", R"({"repository":"ns/r","docker_url":"quay.example.com:8443/ns/r","updated_tags":{"latest":"b750fe79269d"}})");
  REQUIRE(q.notices.size() == 1);
  CHECK(q.notices[0].ref == "quay.example.com:8443/ns/r:latest");
  CHECK(fails("quay", R"({"repository":"ns/r","updated_tags":"latest"})") == "updated_tags: expected a list");
  CHECK(fails("quay", R"({"repository":"ns/r","updated_tags":[1]})") == "updated_tags[0]: expected a string");
}

TEST_CASE("generic: ref or refs, digest optional", "[api][inbound]") {
  auto p = ok("generic", R"({"ref":"alpine:3.20","digest":")" + k_d1 + R"("})");
  REQUIRE(p.notices.size() == 1);
  CHECK(p.notices[0] == Notice{"docker.io/library/alpine:3.20", k_d1});
  auto q = ok("generic", R"({"refs":["ghcr.io/o/a:1","r.io/b:2@)" + k_d2 + R"("]})");
  REQUIRE(q.notices.size() == 2);
  CHECK(q.notices[0] == Notice{"ghcr.io/o/a:1", ""});
  CHECK(q.notices[1] == Notice{"r.io/b:2", k_d2});
  CHECK(fails("generic", "{}") == "expected {\"ref\": \"registry/name:tag\"} or {\"refs\": [...]}");
  CHECK(fails("generic", R"({"ref":"Alpine"})") == "ref: invalid reference \"Alpine\": repository name must be lowercase");
  CHECK(fails("generic", R"({"ref":"r.io/a@)" + k_d1 + R"("})") == "ref: \"r.io/a@" + k_d1 + "\" names no tag");
  CHECK(fails("generic", R"({"refs":[1]})") == "refs[0]: expected a string");
  CHECK(fails("generic", R"({"ref":"a:1","digest":"sha256:xyz"})") == "ref: \"sha256:xyz\" is not a valid digest");
}

TEST_CASE("every sender authenticates its own way, compared in constant time", "[api][inbound]") {
  const std::string secret = "hook-secret";
  const std::string body = R"({"ref":"alpine:3.20"})";
  auto check = [&](const std::string& format, const Credentials& c) {
    auto st = authenticate(format, secret, c, body);
    return st ? std::string("ok") : st.error().message;
  };
  Credentials bearer;
  bearer.authorization = "Bearer hook-secret";
  Credentials bare;
  bare.authorization = "hook-secret";
  Credentials wrong_bearer;
  wrong_bearer.authorization = "Bearer nope";
  Credentials token;
  token.token = "hook-secret";
  Credentials wrong_token;
  wrong_token.token = "hook-secre";
  Credentials hub;
  hub.hub_signature = "sha256=" + hmac_sha256_hex(secret, body);
  Credentials hub_upper;
  hub_upper.hub_signature = "SHA256=" + hmac_sha256_hex(secret, body);
  Credentials hub_wrong;
  hub_wrong.hub_signature = "sha256=" + hmac_sha256_hex("other", body);
  Credentials bw_sig;
  bw_sig.bw_signature = "sha256=" + hmac_sha256_hex(secret, body);
  Credentials none;

  for (const char* f : {"distribution", "acr", "harbor"}) {
    INFO(f);
    CHECK(check(f, bearer) == "ok");
    CHECK(check(f, bare) == "ok");
    CHECK(check(f, wrong_bearer) == "wrong secret");
    CHECK(check(f, none) == "missing secret: send Authorization: Bearer <secret>");
    CHECK(check(f, token) == "missing secret: send Authorization: Bearer <secret>");
  }
  for (const char* f : {"dockerhub", "quay"}) {
    INFO(f);
    CHECK(check(f, token) == "ok");
    CHECK(check(f, wrong_token) == "wrong secret");
    CHECK(check(f, bearer) == "missing secret: add ?token=<secret> to the hook URL");
  }
  CHECK(check("ghcr", hub) == "ok");
  CHECK(check("ghcr", hub_upper) == "ok");
  CHECK(check("ghcr", hub_wrong) == "wrong secret");
  CHECK(check("ghcr", bearer) == "missing secret: send X-Hub-Signature-256 (the hook's secret)");
  CHECK(check("generic", bearer) == "ok");
  CHECK(check("generic", hub) == "ok");
  CHECK(check("generic", bw_sig) == "ok");
  CHECK(check("generic", hub_wrong) == "wrong secret");
  CHECK(check("generic", none) == "missing secret: send Authorization: Bearer <secret> or X-Basewatch-Signature-256");
  // A signature over another body is refused.
  CHECK_FALSE(authenticate("ghcr", secret, hub, body + " ").ok());
  CHECK(authenticate("ghcr", secret, hub, body).ok());
  // No secret configured: open (the HEAD check still decides).
  CHECK(authenticate("distribution", "", none, body).ok());
  CHECK(authenticate("distribution", secret, none, body).error().kind == ErrorKind::unauthorized);
}

TEST_CASE("notices with a digest collapse by (ref, digest) within the window", "[api][inbound]") {
  FakeClock clock;
  Deduper dedupe(Millis(10'000));
  Notice a{"r.io/a:1", k_d1};
  Notice a2{"r.io/a:1", k_d2};
  Notice b{"r.io/b:1", k_d1};
  CHECK(dedupe.first_sight(a, clock.now()));
  CHECK_FALSE(dedupe.first_sight(a, clock.now()));
  CHECK_FALSE(dedupe.first_sight(a, clock.now(), clock.now()));  // checked since: the digest is still known
  CHECK(dedupe.first_sight(a2, clock.now()));  // another digest is news
  CHECK(dedupe.first_sight(b, clock.now()));
  clock.advance(Millis(9'999));
  CHECK_FALSE(dedupe.first_sight(a, clock.now()));  // still inside the window of the first sight
  clock.advance(Millis(1));
  CHECK(dedupe.first_sight(a, clock.now()));  // the window passed
  clock.advance(Millis(60'000));
  CHECK(dedupe.first_sight(b, clock.now()));  // swept and seen again
  CHECK_FALSE(dedupe.first_sight(b, clock.now()));
}

TEST_CASE("notices without a digest collapse only while their check is pending", "[api][inbound]") {
  FakeClock clock;
  Deduper dedupe(Millis(10'000));
  Notice hub{"docker.io/library/alpine:3.20", ""};
  TimePoint never{};
  TimePoint first = clock.now();
  CHECK(dedupe.first_sight(hub, clock.now(), never));
  clock.advance(Millis(5));
  CHECK_FALSE(dedupe.first_sight(hub, clock.now(), never));  // Docker Hub's fan-out, check not run yet
  CHECK_FALSE(dedupe.first_sight(hub, clock.now(), first - Millis(1'001)));  // last check was before the first sight
  CHECK(dedupe.first_sight(hub, clock.now(), first - Millis(1'000)));  // a poll stamped just before it served the notice
  clock.advance(Millis(5));
  first = clock.now();
  CHECK(dedupe.first_sight(hub, clock.now(), first));
  clock.advance(Millis(5));
  CHECK(dedupe.first_sight(hub, clock.now(), first));  // the check ran: a new notice may be a new push
  TimePoint second = clock.now();
  clock.advance(Millis(5));
  CHECK_FALSE(dedupe.first_sight(hub, clock.now(), second - Millis(2'000)));  // the second one's check is pending
  CHECK(dedupe.first_sight(hub, clock.now(), second));
}

TEST_CASE("unknown formats are refused", "[api][inbound]") {
  CHECK(known_format("quay"));
  CHECK_FALSE(known_format("jfrog"));
  CHECK(fails("jfrog", "{}") == "unknown format \"jfrog\"");
}
