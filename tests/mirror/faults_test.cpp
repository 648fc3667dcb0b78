// Copies through registries that misbehave (a FaultProxy in front of each):
// a blob whose bytes do not hash to its digest, a manifest that lies about
// its size, 429 and 5xx mid-upload, a connection cut mid-blob, a mount
// answered 202, and SIGKILL in the middle of a large copy. Each ends in a
// clear error or a retried copy; never a mirror tag naming missing content,
// never a delivery before its copy.
#include <catch2/catch.hpp>

#include <csignal>
#include <set>

#include "tests/integration/helpers.h"
#include "tests/mirror/mirror_helpers.h"
#include "util/crypto.h"

using namespace bw::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

bool is_blob_get(const ReceivedRequest& r, const std::string& digest) {
  return r.method == "GET" && r.path.find("/blobs/" + digest) != std::string::npos;
}

Receiver::Reply status_reply(int status, const std::string& body = "") {
  Receiver::Reply reply;
  reply.status = status;
  reply.body = body;
  reply.headers.emplace("Content-Type", "application/json");
  return reply;
}

}  // namespace

TEST_CASE("a blob whose bytes do not hash to its digest ends the copy; the tag is never written", "[integration][mirror][faults]") {
  Registries r;
  Pushed img = push_layered_image(*r.upstream, "library/lie", "1", "linux/amd64", {40'000}, 51);
  const std::string layer = img.blobs.back();
  const size_t layer_size = json::parse(img.body)["layers"][0]["size"].get<size_t>();
  r.upstream_proxy.after([&](const ReceivedRequest& req, Receiver::Reply& reply) {
    if (is_blob_get(req, layer)) reply.body = std::string(reply.body.size(), 'x');  // same size, other bytes
  });
  auto out = r.import({r.up("library/lie:1"), r.mirrored("hub/lie")});
  INFO(out.errors);
  CHECK(out.status == 1);
  CHECK(out.errors.find(r.up("library/lie") + " blob " + layer + ": the bytes hash to " +
                        bw::sha256_digest(std::string(layer_size, 'x'))) != std::string::npos);
  CHECK(r.mirror->head_digest("hub/lie", "1", "pusher", k_mirror_password).empty());
  CHECK(r.mirror_proxy.count("PUT", "/manifests/") == 0);

  // A blob with more bytes than its descriptor says is stopped too.
  r.upstream_proxy.after([&](const ReceivedRequest& req, Receiver::Reply& reply) {
    if (is_blob_get(req, layer)) reply.body += "trailing";
  });
  out = r.import({r.up("library/lie:1"), r.mirrored("hub/lie")});
  CHECK(out.status == 1);
  CHECK(out.errors.find("blob " + layer + ": more bytes than the " + std::to_string(layer_size) + " its descriptor says") !=
        std::string::npos);
  CHECK(r.mirror->head_digest("hub/lie", "1", "pusher", k_mirror_password).empty());
}

TEST_CASE("a manifest that lies about its size or digest is refused", "[integration][mirror][faults]") {
  Registries r;
  Pushed idx = push_multiarch(*r.upstream, "library/idx", "1", {"linux/amd64", "linux/arm64"}, {1000}, 52, false);
  json index = json::parse(idx.body);
  std::string child = index["manifests"][0]["digest"];
  int64_t size = index["manifests"][0]["size"];
  r.upstream_proxy.after([&](const ReceivedRequest& req, Receiver::Reply& reply) {
    if (req.method == "GET" && req.path.find("/manifests/1") != std::string::npos) {
      json j = json::parse(reply.body);
      j["manifests"][0]["size"] = size + 7;
      reply.body = j.dump(3);
      reply.headers.erase("Docker-Content-Digest");
    }
  });
  auto out = r.import({r.up("library/idx:1"), r.mirrored("hub/idx")});
  CHECK(out.status == 1);
  CHECK(out.errors.find(r.up("library/idx") + "@" + child.substr(0, 19) + ": " + std::to_string(size) +
                        " bytes, but its descriptor says " + std::to_string(size + 7)) != std::string::npos);
  CHECK(r.mirror->head_digest("hub/idx", "1", "pusher", k_mirror_password).empty());

  // A child whose bytes are not the digest it was asked for.
  r.upstream_proxy.clear_faults();
  r.upstream_proxy.after([&](const ReceivedRequest& req, Receiver::Reply& reply) {
    if (req.method == "GET" && req.path.find("/manifests/" + child) != std::string::npos) reply.body += " ";
  });
  out = r.import({r.up("library/idx:1"), r.mirrored("hub/idx")});
  CHECK(out.status == 1);
  CHECK(out.errors.find(r.up("library/idx") + "@" + child.substr(0, 19) + ": the registry sent a manifest whose bytes hash to ") !=
        std::string::npos);
  CHECK(r.mirror->head_digest("hub/idx", "1", "pusher", k_mirror_password).empty());
}

TEST_CASE("429 and 5xx mid-upload and a connection cut mid-blob are retried; the copy completes", "[integration][mirror][faults]") {
  Registries r;
  Pushed img = push_layered_image(*r.upstream, "library/flaky", "1", "linux/amd64", {2'000'000, 30'000}, 53);
  std::atomic<int> puts{0}, posts{0};
  r.mirror_proxy.before([&](const ReceivedRequest& req) -> std::optional<Receiver::Reply> {
    // The first blob PUT gets a 500, the second POST a 429 with Retry-After: 1.
    if (req.method == "PUT" && req.path.find("/blobs/uploads/") != std::string::npos && ++puts == 1) {
      return status_reply(500, R"({"errors":[{"code":"UNKNOWN","message":"disk hiccup"}]})");
    }
    if (req.method == "POST" && req.path.find("/blobs/uploads/") != std::string::npos && ++posts == 2) {
      auto reply = status_reply(429, R"({"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]})");
      reply.headers.emplace("Retry-After", "1");
      return reply;
    }
    return std::nullopt;
  });
  // The big layer's GET is cut after 100 KB, once.
  r.upstream_proxy.cut_after([&](const ReceivedRequest& req) { return is_blob_get(req, img.blobs[1]); }, 100'000);
  auto out = r.import({"--json", r.up("library/flaky:1"), r.mirrored("hub/flaky")});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  CHECK(json::parse(out.output)["digest"] == img.digest);
  CHECK(skopeo_raw(r, r.mirrored("hub/flaky:1")) == img.body);
  CHECK(skopeo_copy_all(r, r.mirrored("hub/flaky:1")));
  CHECK(out.errors.find("attempt 1 failed") != std::string::npos);
  // The cut blob was read again.
  size_t gets = 0;
  for (const auto& req : r.upstream_proxy.requests()) gets += is_blob_get(req, img.blobs[1]);
  CHECK(gets == 2);
}

TEST_CASE("large blobs go up in chunks of chunk_size, honouring OCI-Chunk-Min-Length", "[integration][mirror][faults]") {
  Registries r;
  Pushed img = push_layered_image(*r.upstream, "library/big", "1", "linux/amd64", {40'000'000}, 54);
  // The registry asks for chunks of at least 20 MB (our default is 16 MB).
  r.mirror_proxy.after([](const ReceivedRequest& req, Receiver::Reply& reply) {
    if (req.method == "POST" && req.path.find("/blobs/uploads/") != std::string::npos) reply.headers.emplace("OCI-Chunk-Min-Length", "20000000");
  });
  auto out = r.import({"--json", r.up("library/big:1"), r.mirrored("hub/big")});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  std::vector<std::string> ranges;
  for (const auto& req : r.mirror_proxy.requests()) {
    if (req.method == "PATCH") ranges.push_back(req.headers.at("content-range"));
  }
  // 40 MB and its tar framing: PATCHes of at least the minimum, in order,
  // the rest with the closing PUT.
  REQUIRE(ranges.size() >= 1);
  REQUIRE(ranges.size() <= 2);
  int64_t next = 0;
  for (const auto& range : ranges) {
    auto dash = range.find('-');
    int64_t start = std::stoll(range.substr(0, dash)), end = std::stoll(range.substr(dash + 1));
    CHECK(start == next);
    CHECK(end - start + 1 >= 20'000'000);
    next = end + 1;
  }
  CHECK(skopeo_copy_all(r, r.mirrored("hub/big:1")));
}

TEST_CASE("a mount answered 202 uploads through the session the registry opened", "[integration][mirror][faults]") {
  Registries r;
  Pushed x = push_layered_image(*r.upstream, "library/x", "1", "linux/amd64", {30'000}, 55);
  Pushed y = push_layered_image(*r.upstream, "library/y", "1", "linux/amd64", {30'000}, 55);  // the same blobs
  REQUIRE(x.blobs == y.blobs);
  // The service copies both into one mirror registry: the second mounts.
  r.dir.write("xy/Dockerfile", "FROM " + r.mirrored("hub/library/x:1") + " AS x\nFROM " + r.mirrored("hub/library/y:1") +
                                   "\nCOPY --from=x /layer0.bin /x.bin\n");
  int api = free_port();
  std::string config = r.dir.write("xy.yaml", "database: " + r.dir.path() + "/xy.db\nlisten: 127.0.0.1:" + std::to_string(api) +
                                                  "\npoll: {interval: 1s, jitter: 0%, settle: 0s}\n" + r.registries_yaml() +
                                                  "mirrors:\n  - {from: " + r.upstream_proxy.host() + "/library/*, to: " +
                                                  r.mirror_proxy.host() + "/hub/library/*}\n"
                                                  "projects:\n  - {name: xy, dockerfile: xy/Dockerfile}\n");
  SECTION("201: mounted") {
    auto bw = start_basewatch(config, api, r.dir.path() + "/xy.log");
    REQUIRE(wait_until([&] { return r.mirror->head_digest("hub/library/y", "1", "pusher", k_mirror_password) == y.digest &&
                                    r.mirror->head_digest("hub/library/x", "1", "pusher", k_mirror_password) == x.digest; },
                       30s));
    CHECK(r.mirror_proxy.count("POST", "mount=") >= 1);
    // The copies are recorded just after their tags move.
    REQUIRE(wait_until([&] {
      auto m = get_json(api, "/v1/mirrors");
      return m.is_array() && m.size() == 2 && m[0]["last_copy"].is_object() && m[1]["last_copy"].is_object();
    }, 10s));
    auto mirrors = get_json(api, "/v1/mirrors");
    int mounted = 0;
    for (const auto& m : mirrors) mounted += m["last_copy"]["blobs_mounted"].get<int>();
    CHECK(mounted == 2);  // the config and the layer of the second
    bw->signal(SIGTERM);
    bw->wait(10s);
  }
  SECTION("202: the opened session is used, no second POST") {
    // A registry that ignores `from`: the mount query is dropped on the way,
    // so the registry opens a plain upload session (202).
    r.mirror_proxy.rewrite([](ReceivedRequest& req) {
      auto q = req.path.find("?mount=");
      if (q != std::string::npos) req.path = req.path.substr(0, q);
    });
    auto bw = start_basewatch(config, api, r.dir.path() + "/xy.log");
    REQUIRE(wait_until([&] { return r.mirror->head_digest("hub/library/y", "1", "pusher", k_mirror_password) == y.digest &&
                                    r.mirror->head_digest("hub/library/x", "1", "pusher", k_mirror_password) == x.digest; },
                       30s));
    size_t mount_posts = r.mirror_proxy.count("POST", "mount=");
    CHECK(mount_posts >= 1);
    // Two repositories, two blobs each: four uploads; the mounted-then-202
    // ones did not need a POST of their own.
    CHECK(r.mirror_proxy.count("POST", "/blobs/uploads/") == 4);
    CHECK(skopeo_copy_all(r, r.mirrored("hub/library/y:1")));
    bw->signal(SIGTERM);
    bw->wait(10s);
  }
}

TEST_CASE("SIGKILL in the middle of a large copy: the tag never names missing content; the job resumes; one delivery",
          "[integration][mirror][faults]") {
  Registries r;
  Pushed v1 = push_layered_image(*r.upstream, "library/big", "1", "linux/amd64", {10'000}, 61);
  Receiver receiver;
  int api = free_port();
  r.dir.write("app/Dockerfile", "FROM " + r.mirrored("hub/library/big:1") + "\n");
  std::string config = r.dir.write("kill.yaml", "database: " + r.dir.path() + "/kill.db\nlisten: 127.0.0.1:" + std::to_string(api) +
                                                    "\npoll: {interval: 1s, jitter: 0%, settle: 0s}\nretry: {initial: 1s, max: 2s}\n" +
                                                    r.registries_yaml() + "mirrors:\n  - {from: " + r.upstream_proxy.host() +
                                                    "/library/*, to: " + r.mirror_proxy.host() + "/hub/library/*}\n"
                                                    "projects:\n  - {name: app, dockerfile: app/Dockerfile, triggers: [ci]}\n"
                                                    "triggers:\n  ci: {type: webhook, url: '" + receiver.url("/hook") + "'}\n");
  auto bw = start_basewatch(config, api, r.dir.path() + "/kill-1.log");
  REQUIRE(wait_until([&] { return r.mirror->head_digest("hub/library/big", "1", "pusher", k_mirror_password) == v1.digest; }, 30s));

  // Blob uploads the mirror finished (PUT ?digest= answered 201), across both runs.
  std::mutex mutex;
  std::multiset<std::string> finished;
  r.mirror_proxy.after([&](const ReceivedRequest& req, Receiver::Reply& reply) {
    auto d = req.path.find("digest=");
    if (req.method == "PUT" && d != std::string::npos && reply.status == 201) {
      std::string digest = req.path.substr(d + 7);
      if (auto amp = digest.find('&'); amp != std::string::npos) digest.resize(amp);
      if (auto pct = digest.find("%3A"); pct != std::string::npos) digest.replace(pct, 3, ":");
      std::lock_guard lock(mutex);
      finished.insert(digest);
    }
  });
  // PATCHes are slow (a big layer over a slow link).
  std::atomic<int> patches{0};
  r.mirror_proxy.before([&](const ReceivedRequest& req) -> std::optional<Receiver::Reply> {
    if (req.method == "PATCH") {
      ++patches;
      std::this_thread::sleep_for(700ms);
    }
    return std::nullopt;
  });
  Pushed v2 = push_layered_image(*r.upstream, "library/big", "1", "linux/amd64", {60'000'000}, 62);
  REQUIRE(wait_until([&] { return patches.load() >= 2; }, 60s));
  bw->signal(SIGKILL);
  bw->wait(10s);
  // The tag still names the last complete copy.
  CHECK(r.mirror->head_digest("hub/library/big", "1", "pusher", k_mirror_password) == v1.digest);
  CHECK(receiver.count() == 0);
  std::string config_blob = v2.blobs.front();
  {
    std::lock_guard lock(mutex);
    CHECK(finished.count(config_blob) == 1);
  }

  r.mirror_proxy.before(nullptr);
  auto again = start_basewatch(config, api, r.dir.path() + "/kill-2.log");
  REQUIRE(receiver.wait_for(1, 90s));
  CHECK(r.mirror->head_digest("hub/library/big", "1", "pusher", k_mirror_password) == v2.digest);
  std::this_thread::sleep_for(1500ms);
  CHECK(receiver.count() == 1);
  CHECK(json::parse(receiver.requests()[0].body)["changes"][0]["mirror"]["digest"] == v2.digest);
  {
    // The config blob copied before the kill was not sent again.
    std::lock_guard lock(mutex);
    CHECK(finished.count(config_blob) == 1);
  }
  CHECK(skopeo_copy_all(r, r.mirrored("hub/library/big:1")));
  again->signal(SIGTERM);
  again->wait(10s);
}
