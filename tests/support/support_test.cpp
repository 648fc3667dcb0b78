// Proves the test support library against the real docker-registry, real
// HTTP servers and real processes.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <vector>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <iostream>
#include <nlohmann/json.hpp>

#include "tests/support/support.h"
#include "util/crypto.h"

using namespace bw::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

// No docker-registry is left running with this config (our own processes
// only: the config path is unique to one LocalRegistry).
bool no_registry_left(const std::string& config_path) {
  RunResult r = run({"pgrep", "-f", "docker-registry serve " + config_path});
  return r.status == 1;
}

// The process is gone or a zombie (its parent, init, may not have reaped it yet).
bool gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

// The decoded JSON header of a JWT.
json jwt_header(const std::string& token) {
  std::string part = token.substr(0, token.find('.'));
  part += std::string((4 - part.size() % 4) % 4, '=');
  RunResult r = run({"sh", "-c", "tr '_-' '/+' | base64 -d"}, {}, part);
  return json::parse(r.output);
}

std::string bearer_challenge_realm(const std::string& challenge) {
  auto pos = challenge.find("realm=\"");
  if (pos == std::string::npos) return "";
  pos += 7;
  return challenge.substr(pos, challenge.find('"', pos) - pos);
}

}  // namespace

TEST_CASE("TempDir writes files and cleans up", "[support]") {
  std::string path;
  {
    TempDir dir("bwsupport");
    path = dir.path();
    REQUIRE(std::filesystem::is_directory(path));
    std::string file = dir.write("a/b/c.txt", "hello");
    CHECK(file == path + "/a/b/c.txt");
    CHECK(std::filesystem::file_size(file) == 5);
  }
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("free_port gives distinct usable ports", "[support]") {
  int a = free_port();
  int b = free_port();
  CHECK(a > 0);
  CHECK(b > 0);
}

TEST_CASE("run captures stdout, stderr, status, stdin and times out", "[support]") {
  RunResult r = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(r.status == 3);
  CHECK(r.output == "out\n");
  CHECK(r.errors == "err\n");

  r = run({"cat"}, {}, "piped input");
  CHECK(r.status == 0);
  CHECK(r.output == "piped input");

  r = run({"sh", "-c", "printf %s \"$BW_SUPPORT_X\""}, {{"BW_SUPPORT_X", "value 1"}});
  CHECK(r.output == "value 1");

  // Large stdin the child never reads: no SIGPIPE death, no hang.
  r = run({"true"}, {}, std::string(1 << 20, 'x'));
  CHECK(r.status == 0);

  // Large output on both streams at once does not deadlock.
  r = run({"sh", "-c", "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2"});
  CHECK(r.output.size() == 300000);
  CHECK(r.errors.size() == 300000);

  auto t0 = std::chrono::steady_clock::now();
  r = run({"sleep", "30"}, {}, "", 300ms);
  CHECK(r.status == -1);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);

  r = run({"/nonexistent/program"});
  CHECK(r.status == 127);
  CHECK(r.errors.find("cannot execute") != std::string::npos);

  r = run({"sh", "-c", "kill -TERM $$"});
  CHECK(r.status == 128 + SIGTERM);
}

TEST_CASE("Process logs, signals, waits and cleans up its group", "[support]") {
  TempDir dir;
  const std::string log = dir.path() + "/p.log";
  {
    Process p({"sh", "-c", "echo started $BW_SUPPORT_Y; echo oops >&2; exit 7"}, {{"BW_SUPPORT_Y", "yes"}}, log);
    auto status = p.wait(5s);
    REQUIRE(status);
    CHECK(*status == 7);
    CHECK_FALSE(p.running());
    CHECK(p.log() == "started yes\noops\n");
  }
  {
    Process p({"sleep", "30"}, {}, log);
    CHECK(p.running());
    CHECK_FALSE(p.wait(100ms));
    p.signal(SIGTERM);
    auto status = p.wait(5s);
    REQUIRE(status);
    CHECK(*status == 128 + SIGTERM);
  }
  // A child that ignores SIGTERM and has a grandchild: the destructor kills both.
  std::string marker = dir.path() + "/grandchild-marker";
  pid_t pid = 0;
  {
    Process p({"sh", "-c", "trap '' TERM; sleep 31 & echo $! > " + marker + "; wait"}, {}, log);
    pid = p.pid();
    REQUIRE(wait_until([&] { return std::filesystem::exists(marker) && std::filesystem::file_size(marker) > 0; }, 5s));
  }
  CHECK(gone(pid));
  RunResult left = run({"pgrep", "-f", "sleep 31"});
  CHECK(left.output.empty());

  // The leader dies on SIGTERM at once, a grandchild ignores it: the group
  // still goes, without the 5 s grace period.
  std::string marker2 = dir.path() + "/grandchild-marker-2";
  pid_t grandchild = 0;
  auto t0 = std::chrono::steady_clock::now();
  {
    Process p({"sh", "-c", "(trap '' TERM; exec sleep 32) & echo $! > " + marker2 + "; wait"}, {}, log);
    REQUIRE(wait_until([&] { return std::filesystem::exists(marker2) && std::filesystem::file_size(marker2) > 0; }, 5s));
    grandchild = std::stoi(run({"cat", marker2}).output);
    CHECK(::kill(grandchild, 0) == 0);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 4s);
  CHECK(wait_until([&] { return gone(grandchild); }, 2s));
  CHECK(run({"pgrep", "-f", "sleep 32"}).output.empty());

  CHECK_THROWS_AS(Process({"/nonexistent/program"}, {}, log), std::runtime_error);
}

TEST_CASE("memory_of and cpu_seconds_of read a process from /proc", "[support]") {
  Memory before = memory_of(getpid());
  CHECK(before.rss_kb > 0);
  CHECK(before.hwm_kb >= before.rss_kb);
  // 64 MiB touched: the resident set and its high-water mark grow by it.
  std::vector<char> block(64u << 20, 1);
  Memory after = memory_of(getpid());
  CHECK(after.rss_kb >= before.rss_kb + 60'000);
  CHECK(after.hwm_kb >= after.rss_kb);
  // 0.2 s of CPU by the C library's count (however loaded the machine):
  // /proc says the same, to its 10 ms ticks.
  double cpu0 = cpu_seconds_of(getpid());
  std::clock_t c0 = std::clock();
  auto t0 = std::chrono::steady_clock::now();
  volatile uint64_t spin = 0;
  while (std::clock() - c0 < CLOCKS_PER_SEC / 5 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30)) {
    spin = spin + static_cast<uint64_t>(block[spin % block.size()]);
  }
  CHECK(cpu_seconds_of(getpid()) - cpu0 >= 0.17);
  CHECK(memory_of(-1).rss_kb == 0);  // no such process: nothing read
  CHECK(cpu_seconds_of(-1) == 0);
}

TEST_CASE("wait_until", "[support]") {
  int n = 0;
  CHECK(wait_until([&] { return ++n >= 3; }, 1s));
  CHECK_FALSE(wait_until([] { return false; }, 50ms));
}

TEST_CASE("LocalRegistry: push_image digest equals the HEAD digest; new content moves the tag", "[support][registry]") {
  std::string config;
  {
    LocalRegistry registry;
    config = registry.config_path();
    std::cerr << "docker-registry started in " << registry.startup_time().count() << " ms\n";
    CHECK(registry.host() == "127.0.0.1:" + std::to_string(registry.port()));

    std::string d1 = registry.push_image("library/alpine", "3.19", "hello v1");
    CHECK(d1.rfind("sha256:", 0) == 0);
    CHECK(d1.size() == 71);
    CHECK(registry.head_digest("library/alpine", "3.19") == d1);

    HeadResult head = registry.head_manifest("library/alpine", "3.19");
    CHECK(head.status == 200);
    CHECK(head.content_type == "application/vnd.docker.distribution.manifest.v2+json");

    // The same content again: same digest (deterministic tar and config).
    CHECK(registry.push_image("library/alpine", "3.19", "hello v1") == d1);

    std::string d2 = registry.push_image("library/alpine", "3.19", "hello v2");
    CHECK(d2 != d1);
    CHECK(registry.head_digest("library/alpine", "3.19") == d2);
    // The old manifest is still there by digest.
    CHECK(registry.head_digest("library/alpine", d1) == d1);

    // The pushed manifest references a real tar layer.
    json manifest = json::parse(registry.get_manifest("library/alpine", d2));
    CHECK(manifest["schemaVersion"] == 2);
    CHECK(manifest["layers"].size() == 1);

    // OCI manifests.
    std::string d3 = registry.push_image("team/app", "oci", "oci content", "linux/arm64/v8", true);
    head = registry.head_manifest("team/app", "oci");
    CHECK(head.status == 200);
    CHECK(head.digest == d3);
    CHECK(head.content_type == "application/vnd.oci.image.manifest.v1+json");

    CHECK(registry.head_digest("library/alpine", "missing").empty());
    CHECK(registry.head_manifest("library/alpine", "missing").status == 404);

    registry.delete_manifest("library/alpine", d2);
    CHECK(registry.head_manifest("library/alpine", "3.19").status == 404);

    // Stop and restart on the same port with the same storage.
    int port = registry.port();
    registry.stop();
    CHECK_FALSE(registry.running());
    CHECK(registry.head_manifest("team/app", "oci").status == 0);
    registry.start();
    CHECK(registry.port() == port);
    CHECK(registry.head_digest("team/app", "oci") == d3);
    CHECK(registry.log().find("listening on") != std::string::npos);
  }
  CHECK(no_registry_left(config));
}

TEST_CASE("LocalRegistry: the pushed layer is a valid tar", "[support][registry]") {
  LocalRegistry registry;
  std::string digest = registry.push_image("x/tar", "t", "file content here\n");
  json manifest = json::parse(registry.get_manifest("x/tar", digest));
  std::string layer_digest = manifest["layers"][0]["digest"];
  // Fetch the blob and let the real tar read it.
  httplib::Client client(registry.url());
  auto res = client.Get(("/v2/x/tar/blobs/" + layer_digest).c_str());
  REQUIRE(res);
  REQUIRE(res->status == 200);
  CHECK(bw::sha256_digest(res->body) == layer_digest);
  TempDir dir;
  std::string tar = dir.write("layer.tar", res->body);
  RunResult list = run({"tar", "-tvf", tar});
  CHECK(list.status == 0);
  CHECK(list.output.find("content.txt") != std::string::npos);
  RunResult extract = run({"tar", "-xOf", tar, "content.txt"});
  CHECK(extract.status == 0);
  CHECK(extract.output == "file content here\n");
  // The config's diff_ids name the layer.
  std::string config_digest = manifest["config"]["digest"];
  res = client.Get(("/v2/x/tar/blobs/" + config_digest).c_str());
  REQUIRE(res);
  json config = json::parse(res->body);
  CHECK(config["os"] == "linux");
  CHECK(config["architecture"] == "amd64");
  CHECK(config["rootfs"]["diff_ids"][0] == layer_digest);
}

TEST_CASE("LocalRegistry: indexes from platform manifests", "[support][registry]") {
  LocalRegistry registry;
  const std::string repo = "library/debian";
  std::string amd64 = registry.push_platform_manifest(repo, "debian amd64 v1", "linux/amd64");
  std::string arm64 = registry.push_platform_manifest(repo, "debian arm64 v1", "linux/arm64/v8");
  CHECK(amd64 != arm64);
  CHECK(registry.head_digest(repo, amd64) == amd64);

  SECTION("OCI index with attestations") {
    std::string index = registry.push_index(repo, "bookworm", {{"linux/amd64", amd64}, {"linux/arm64/v8", arm64}}, "salt-1");
    HeadResult head = registry.head_manifest(repo, "bookworm");
    CHECK(head.status == 200);
    CHECK(head.digest == index);
    CHECK(head.content_type == "application/vnd.oci.image.index.v1+json");

    std::string media_type;
    json body = json::parse(registry.get_manifest(repo, "bookworm", &media_type));
    CHECK(media_type == "application/vnd.oci.image.index.v1+json");
    REQUIRE(body["manifests"].size() == 3);
    CHECK(body["manifests"][0]["digest"] == amd64);
    CHECK(body["manifests"][0]["platform"]["architecture"] == "amd64");
    CHECK(body["manifests"][1]["digest"] == arm64);
    CHECK(body["manifests"][1]["platform"]["variant"] == "v8");
    CHECK(body["manifests"][2]["platform"]["os"] == "unknown");
    CHECK(body["manifests"][2]["annotations"]["vnd.docker.reference.type"] == "attestation-manifest");
    CHECK(body["manifests"][2]["annotations"]["vnd.docker.reference.digest"] == amd64);

    // Regenerated attestations move the index digest, not the platform ones.
    std::string index2 = registry.push_index(repo, "bookworm", {{"linux/amd64", amd64}, {"linux/arm64/v8", arm64}}, "salt-2");
    CHECK(index2 != index);
    CHECK(registry.head_digest(repo, "bookworm") == index2);
    json body2 = json::parse(registry.get_manifest(repo, index2));
    CHECK(body2["manifests"][0]["digest"] == amd64);
    CHECK(body2["manifests"][2]["digest"] != body["manifests"][2]["digest"]);

    // One platform changes: the index moves, the other platform stays.
    std::string arm64_v2 = registry.push_platform_manifest(repo, "debian arm64 v2", "linux/arm64/v8");
    std::string index3 = registry.push_index(repo, "bookworm", {{"linux/amd64", amd64}, {"linux/arm64/v8", arm64_v2}}, "salt-2");
    CHECK(index3 != index2);
    json body3 = json::parse(registry.get_manifest(repo, "bookworm"));
    CHECK(body3["manifests"][0]["digest"] == amd64);
    CHECK(body3["manifests"][1]["digest"] == arm64_v2);
  }
  SECTION("Docker manifest list without attestations") {
    std::string list = registry.push_index(repo, "list", {{"linux/amd64", amd64}, {"linux/arm64/v8", arm64}}, "", false);
    HeadResult head = registry.head_manifest(repo, "list");
    CHECK(head.status == 200);
    CHECK(head.digest == list);
    CHECK(head.content_type == "application/vnd.docker.distribution.manifest.list.v2+json");
    json body = json::parse(registry.get_manifest(repo, "list"));
    CHECK(body["manifests"].size() == 2);
    CHECK(body["manifests"][0]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json");
  }
}

TEST_CASE("LocalRegistry with htpasswd refuses anonymous HEAD", "[support][registry]") {
  RegistryOptions options;
  options.htpasswd = {{"alice", "s3cret"}, {"bob", "hunter2"}};
  LocalRegistry registry(options);
  std::string digest = registry.push_image("private/app", "1.0", "private content");  // pushes as alice
  HeadResult anonymous = registry.head_manifest("private/app", "1.0");
  CHECK(anonymous.status == 401);
  CHECK(anonymous.www_authenticate.find("Basic") == 0);
  CHECK(registry.head_digest("private/app", "1.0").empty());
  CHECK(registry.head_digest("private/app", "1.0", "alice", "s3cret") == digest);
  CHECK(registry.head_digest("private/app", "1.0", "bob", "hunter2") == digest);
  CHECK(registry.head_digest("private/app", "1.0", "alice", "wrong").empty());
}

TEST_CASE("Receiver records requests and answers the configured status", "[support][receiver]") {
  Receiver receiver;
  CHECK(receiver.url("/hook") == "http://127.0.0.1:" + std::to_string(receiver.port()) + "/hook");
  httplib::Client client("127.0.0.1", receiver.port());
  auto res = client.Post("/hook?x=1&y=two", {{"X-Basewatch-Signature", "sha256=abc"}}, R"({"a":1})", "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  REQUIRE(receiver.wait_for(1, 2s));
  auto requests = receiver.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "POST");
  CHECK(requests[0].path == "/hook");
  CHECK(requests[0].query == "x=1&y=two");
  CHECK(requests[0].headers.at("x-basewatch-signature") == "sha256=abc");
  CHECK(requests[0].headers.at("content-type") == "application/json");
  CHECK(requests[0].headers.count("remote_addr") == 0);
  CHECK(requests[0].body == R"({"a":1})");

  receiver.set_status(503);
  res = client.Put("/other", "body", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 503);
  res = client.Head("/head");
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(receiver.count() == 3);
  CHECK(receiver.requests()[2].method == "HEAD");

  receiver.set_handler([](const ReceivedRequest& r) {
    return std::pair<int, std::string>(r.path == "/ok" ? 204 : 418, "from handler");
  });
  res = client.Delete("/ok");
  REQUIRE(res);
  CHECK(res->status == 204);
  res = client.Get("/teapot");
  REQUIRE(res);
  CHECK(res->status == 418);
  CHECK(res->body == "from handler");

  receiver.set_reply_handler([](const ReceivedRequest&) {
    Receiver::Reply reply;
    reply.status = 429;
    reply.body = R"({"errors":[{"code":"TOOMANYREQUESTS"}]})";
    reply.headers = {{"Retry-After", "7"}, {"Content-Type", "application/json"}};
    return reply;
  });
  res = client.Patch("/limited", "", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 429);
  CHECK(res->get_header_value("Retry-After") == "7");
  CHECK(res->get_header_value("Content-Type") == "application/json");

  // wait_for times out when nothing comes.
  CHECK_FALSE(receiver.wait_for(100, 100ms));

  auto t0 = std::chrono::steady_clock::now();
  receiver.stop();
  receiver.stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  httplib::Client after("127.0.0.1", receiver.port());
  after.set_connection_timeout(1, 0);
  CHECK_FALSE(after.Get("/"));
}

TEST_CASE("Registry notifications reach a Receiver", "[support][registry][receiver]") {
  Receiver receiver;
  RegistryOptions options;
  options.notify_url = receiver.url("/events");
  options.notify_headers = {{"Authorization", "Bearer notify-secret"}};
  options.notify_ignore_actions = {"pull"};
  LocalRegistry registry(options);
  std::string digest = registry.push_image("library/nginx", "1.25", "nginx");
  auto tag_pushed = [&](const std::string& tag, const std::string& want) {
    for (const auto& r : receiver.requests()) {
      const json body = json::parse(r.body);
      for (const auto& event : body["events"]) {
        if (event["action"] == "push" && event["target"].value("tag", "") == tag &&
            event["target"]["digest"] == want) {
          return true;
        }
      }
    }
    return false;
  };
  REQUIRE(wait_until([&] { return tag_pushed("1.25", digest); }, 10s));
  // A pull (HEAD counts as one), ignored by the config; then a barrier push:
  // the sender delivers in order, so a pull event would have come before it.
  CHECK(registry.head_digest("library/nginx", "1.25") == digest);
  std::string barrier = registry.push_image("library/nginx", "barrier", "barrier");
  REQUIRE(wait_until([&] { return tag_pushed("barrier", barrier); }, 10s));
  for (const auto& r : receiver.requests()) {
    CHECK(r.method == "POST");
    CHECK(r.path == "/events");
    CHECK(r.headers.at("authorization") == "Bearer notify-secret");
    CHECK(r.headers.at("content-type").find("application/vnd.docker.distribution.events.v1+json") == 0);
    const json body = json::parse(r.body);
    for (const auto& event : body["events"]) {
      INFO(event.dump(1));
      CHECK(event["action"] != "pull");
    }
  }
}

TEST_CASE("The harness's own pushes make no pull events; a HEAD makes one", "[support][registry][receiver]") {
  Receiver receiver;
  RegistryOptions options;
  options.notify_url = receiver.url("/events");
  LocalRegistry registry(options);
  auto events = [&](const std::string& action) {
    std::vector<json> out;
    for (const auto& r : receiver.requests()) {
      const json body = json::parse(r.body);
      for (const auto& event : body["events"]) {
        if (event["action"] == action) out.push_back(event);
      }
    }
    return out;
  };
  auto tag_pushed = [&](const std::string& tag) {
    for (const auto& event : events("push")) {
      if (event["target"].value("tag", "") == tag) return true;
    }
    return false;
  };
  std::string amd64 = registry.push_platform_manifest("library/busybox", "bb amd64", "linux/amd64");
  std::string arm = registry.push_platform_manifest("library/busybox", "bb arm", "linux/arm/v7");
  std::string index = registry.push_index("library/busybox", "1.36", {{"linux/amd64", amd64}, {"linux/arm/v7", arm}}, "s");
  REQUIRE(wait_until([&] { return tag_pushed("1.36"); }, 10s));
  CHECK(events("pull").empty());
  CHECK(registry.head_digest("library/busybox", "1.36") == index);
  REQUIRE(wait_until([&] { return events("pull").size() == 1; }, 10s));
  CHECK(events("pull")[0]["request"]["method"] == "HEAD");
  CHECK(events("pull")[0]["target"]["digest"] == index);
}

TEST_CASE("TokenIssuer against a registry in token mode", "[support][registry][token]") {
  auto mode = GENERATE(TokenIssuerOptions::KeyRef::x5c, TokenIssuerOptions::KeyRef::kid);
  INFO("key ref " << (mode == TokenIssuerOptions::KeyRef::x5c ? "x5c" : "kid"));
  TokenIssuerOptions issuer_options;
  issuer_options.key_ref = mode;
  TokenIssuer issuer(issuer_options);
  issuer.start();
  CHECK(issuer.realm().rfind("http://127.0.0.1:", 0) == 0);
  CHECK(issuer.key_id().size() == 59);  // 12 groups of 4 and 11 colons

  LocalRegistry registry(issuer.registry_options());
  // Pushing goes through the token flow by itself.
  std::string digest = registry.push_image("library/redis", "7", "redis");
  CHECK(issuer.tokens_issued() >= 1);

  HeadResult anonymous = registry.head_manifest("library/redis", "7");
  CHECK(anonymous.status == 401);
  CHECK(anonymous.www_authenticate.find("Bearer ") == 0);
  std::string realm = bearer_challenge_realm(anonymous.www_authenticate);
  CHECK(realm == issuer.realm());

  const size_t before = issuer.token_requests();
  httplib::Client client(realm.substr(0, realm.find('/', 7)));
  auto res = client.Get(("/token?service=" + issuer.service() + "&scope=repository%3Alibrary%2Fredis%3Apull").c_str());
  REQUIRE(res);
  REQUIRE(res->status == 200);
  CHECK(issuer.token_requests() == before + 1);
  json answer = json::parse(res->body);
  CHECK(answer["expires_in"] == 300);
  CHECK(answer["token"] == answer["access_token"]);
  CHECK(answer.contains("issued_at"));
  std::string token = answer["token"];
  json header = jwt_header(token);
  CHECK(header["alg"] == "RS256");
  if (mode == TokenIssuerOptions::KeyRef::x5c) {
    CHECK(header["x5c"].size() == 1);
    CHECK_FALSE(header.contains("kid"));
  } else {
    CHECK(header["kid"] == issuer.key_id());
    CHECK_FALSE(header.contains("x5c"));
  }

  HeadResult with_token = registry.head_manifest("library/redis", "7", "Bearer " + token);
  INFO(registry.log().substr(registry.log().size() > 3000 ? registry.log().size() - 3000 : 0));
  CHECK(with_token.status == 200);
  CHECK(with_token.digest == digest);

  // A pull token for another repository does not open this one.
  std::string other = issuer.make_token("repository:library/other:pull");
  CHECK(registry.head_manifest("library/redis", "7", "Bearer " + other).status == 401);
  // Nor does a token for another audience.
  std::string wrong_aud = issuer.make_token("repository:library/redis:pull", "", "another-service");
  CHECK(registry.head_manifest("library/redis", "7", "Bearer " + wrong_aud).status == 401);
  // A token signed by another issuer's key is refused.
  TokenIssuer stranger(issuer_options);
  CHECK(registry.head_manifest("library/redis", "7", "Bearer " + stranger.make_token("repository:library/redis:pull"))
            .status == 401);
}

TEST_CASE("TokenIssuer with required credentials", "[support][token]") {
  TokenIssuerOptions options;
  options.user = "robot";
  options.password = "pw";
  TokenIssuer issuer(options);
  issuer.start();
  httplib::Client client(issuer.realm().substr(0, issuer.realm().find('/', 7)));
  auto res = client.Get("/token?service=basewatch-test-registry&scope=repository%3Aa%3Apull");
  REQUIRE(res);
  CHECK(res->status == 401);
  CHECK(issuer.tokens_issued() == 0);
  client.set_basic_auth("robot", "wrong");
  res = client.Get("/token?service=basewatch-test-registry&scope=repository%3Aa%3Apull");
  REQUIRE(res);
  CHECK(res->status == 401);
  client.set_basic_auth("robot", "pw");
  res = client.Get("/token?service=basewatch-test-registry&scope=repository%3Aa%3Apull");
  REQUIRE(res);
  CHECK(res->status == 200);
  // OAuth2 password grant.
  httplib::Client form(issuer.realm().substr(0, issuer.realm().find('/', 7)));
  res = form.Post("/token", "grant_type=password&username=robot&password=pw&service=s&scope=repository%3Aa%3Apull",
                  "application/x-www-form-urlencoded");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(issuer.tokens_issued() == 2);
  CHECK(issuer.token_requests() == 4);

  // The JWT's parts.
  std::string token = json::parse(res->body)["access_token"];
  auto dot1 = token.find('.');
  auto dot2 = token.find('.', dot1 + 1);
  REQUIRE(dot2 != std::string::npos);
  json h = jwt_header(token);
  CHECK(h["alg"] == "RS256");
  CHECK(h["typ"] == "JWT");
  CHECK(h["x5c"].size() == 1);

  // With credentials, a token-mode registry can still be pushed to.
  LocalRegistry registry(issuer.registry_options());
  std::string digest = registry.push_image("private/x", "1", "x");
  HeadResult head = registry.head_manifest("private/x", "1", "Bearer " + issuer.make_token("repository:private/x:pull"));
  CHECK(head.status == 200);
  CHECK(head.digest == digest);
}
