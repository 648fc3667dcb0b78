// `basewatch import` on the real binary, between two real registries: an
// "upstream" behind token auth (the test token issuer) and a "mirror" behind
// htpasswd. Copies are checked with a tool nobody here wrote: skopeo
// (`inspect --raw` gives the same bytes; `copy --all ... dir:` succeeds, so
// every blob is really there).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/integration/helpers.h"
#include "tests/mirror/mirror_helpers.h"
#include "util/crypto.h"

using namespace bw::testing;
using json = nlohmann::json;

TEST_CASE("import copies a multi-arch index byte for byte, and a second import copies nothing", "[integration][mirror]") {
  Registries r;
  Pushed src = push_multiarch(*r.upstream, "library/alpine", "3.20", {"linux/amd64", "linux/arm64", "linux/arm/v7"},
                              {1 << 20, 2 << 20, 300'000}, 1);
  auto out = r.import({"--json", r.up("library/alpine:3.20"), r.mirrored("hub/library/alpine")});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  json j = json::parse(out.output);
  CHECK(j["digest"] == src.digest);
  CHECK(j["source_digest"] == src.digest);
  CHECK(j["destination"] == r.mirrored("hub/library/alpine:3.20"));
  CHECK(j["manifests"] == 7);  // 3 images, 3 attestations, the index
  CHECK(j["blobs_uploaded"] == 3 * 4 + 3 * 2 - 2);  // config + 3 layers per image; attestation config "{}" once, statements 3
  CHECK(j["blobs_mounted"] == 0);
  CHECK(j["already"] == false);
  for (const char* key : {"source", "destination", "digest", "manifests", "blobs_uploaded", "blobs_mounted", "blobs_skipped",
                          "bytes_uploaded", "seconds"}) {
    CHECK(j.contains(key));
  }
  // skopeo: the same bytes, and every blob there.
  CHECK(skopeo_raw(r, r.mirrored("hub/library/alpine:3.20")) == src.body);
  CHECK(skopeo_copy_all(r, r.mirrored("hub/library/alpine:3.20")));

  // Again: the mirror holds it; nothing is written.
  r.mirror_proxy.forget();
  out = r.import({"--json", r.up("library/alpine:3.20"), r.mirrored("hub/library/alpine")});
  REQUIRE(out.status == 0);
  j = json::parse(out.output);
  CHECK(j["already"] == true);
  CHECK(j["blobs_uploaded"] == 0);
  CHECK(r.mirror_proxy.count("PUT") == 0);
  CHECK(r.mirror_proxy.count("POST") == 0);
  CHECK(r.mirror_proxy.count("HEAD") == 2);  // the first is answered 401 (Basic challenge), the second authenticated

  // Into another repository of the mirror: the blobs it already holds are mounted.
  out = r.import({"--json", r.up("library/alpine:3.20"), r.mirrored("other/alpine:3.20")});
  REQUIRE(out.status == 0);
  j = json::parse(out.output);
  // A new process knows nothing of the first copy: everything is uploaded
  // again, the mount hint lives in the service (see copy_engine_test).
  CHECK(j["digest"] == src.digest);
  CHECK(skopeo_raw(r, r.mirrored("other/alpine:3.20")) == src.body);
}

TEST_CASE("import --platform copies a subset and says why the digest differs", "[integration][mirror]") {
  Registries r;
  Pushed src = push_multiarch(*r.upstream, "library/node", "20", {"linux/amd64", "linux/arm64", "linux/s390x"}, {200'000}, 2);
  auto out = r.import({"--platform", "linux/arm64", "--platform", "linux/amd64", r.up("library/node:20"),
                       r.mirrored("hub/library/node")});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  INFO(out.output);
  std::string raw = skopeo_raw(r, r.mirrored("hub/library/node:20"));
  std::string digest = bw::sha256_digest(raw);
  CHECK(digest != src.digest);
  json index = json::parse(raw);
  REQUIRE(index["manifests"].size() == 4);  // two images and their two attestations
  CHECK(index["manifests"][0]["platform"]["architecture"] == "amd64");
  CHECK(index["manifests"][1]["platform"]["architecture"] == "arm64");
  // The last line ends with the time taken.
  std::string expected = "copied " + r.up("library/node:20") + " to " + r.mirrored("hub/library/node:20") + "\n" +
                         "  digest: " + digest + "\n" +
                         "  note: only linux/arm64, linux/amd64 copied (left out: linux/s390x): the copy is a new index, so its "
                         "digest differs from the source's " + src.digest + "\n" +
                         "  5 manifest(s); blobs: 7 uploaded (404.3 KB), 0 mounted, 0 already there; ";
  CHECK(out.output.substr(0, expected.size()) == expected);
  CHECK(out.output.back() == '\n');
  CHECK(skopeo_copy_all(r, r.mirrored("hub/library/node:20")));
}

TEST_CASE("import copies OCI artifacts and cosign signature tags", "[integration][mirror]") {
  Registries r;
  Pushed chart = push_helm_chart(*r.upstream, "charts/demo", "0.1.0", 3);
  auto out = r.import({"--json", r.up("charts/demo:0.1.0"), r.mirrored("charts/demo")});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  CHECK(json::parse(out.output)["digest"] == chart.digest);
  CHECK(skopeo_raw(r, r.mirrored("charts/demo:0.1.0")) == chart.body);

  Pushed image = push_layered_image(*r.upstream, "team/app", "1", "linux/amd64", {100'000}, 4);
  Pushed sig = push_cosign_signature(*r.upstream, "team/app", image.digest, 4);
  out = r.import({"--json", r.up("team/app:1"), r.mirrored("team/app")});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  CHECK(json::parse(out.output)["referrers"] == 1);
  std::string sig_tag = "sha256-" + image.digest.substr(7) + ".sig";
  CHECK(skopeo_raw(r, r.mirrored("team/app:" + sig_tag)) == sig.body);
  CHECK(skopeo_copy_all(r, r.mirrored("team/app:" + sig_tag)));

  // --no-referrers leaves it.
  out = r.import({"--json", "--no-referrers", r.up("team/app:1"), r.mirrored("team/app2")});
  REQUIRE(out.status == 0);
  CHECK(json::parse(out.output)["referrers"] == 0);
  CHECK(r.mirror->head_digest("team/app2", sig_tag, "pusher", k_mirror_password).empty());
}

TEST_CASE("import refuses to move a tag that names other content, unless --force", "[integration][mirror]") {
  Registries r;
  Pushed a = push_layered_image(*r.upstream, "team/base", "1", "linux/amd64", {1000}, 5);
  Pushed other = push_layered_image(*r.mirror, "team/base", "1", "linux/amd64", {1000}, 6);
  auto out = r.import({r.up("team/base:1"), r.mirrored("team/base")});
  CHECK(out.status == 2);
  CHECK(out.errors == "basewatch: import " + r.up("team/base:1") + " to " + r.mirrored("team/base:1") + ": " +
                          r.mirrored("team/base:1") + " names other content (" + other.digest + "); --force moves it to " +
                          a.digest + "\n");
  CHECK(r.mirror->head_digest("team/base", "1", "pusher", k_mirror_password) == other.digest);
  out = r.import({"--force", r.up("team/base:1"), r.mirrored("team/base")});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  CHECK(out.output.find("  moved the tag from " + other.digest + "\n") != std::string::npos);
  CHECK(r.mirror->head_digest("team/base", "1", "pusher", k_mirror_password) == a.digest);
}

TEST_CASE("import errors: a bad reference, a missing source, wrong mirror credentials", "[integration][mirror]") {
  Registries r;
  auto out = r.import({"Bad//ref", r.mirrored("x")});
  CHECK(out.status == 2);
  CHECK(out.errors.rfind("basewatch: SRC: invalid reference \"Bad//ref\"", 0) == 0);
  out = r.import({r.up("team/none:1"), r.mirrored("x")});
  CHECK(out.status == 1);
  CHECK(out.errors == "basewatch: import " + r.up("team/none:1") + " to " + r.mirrored("x:1") + ": GET manifest " +
                          r.up("team/none") + ":1: HTTP 404: MANIFEST_UNKNOWN: manifest unknown\n");
  push_layered_image(*r.upstream, "team/app", "1", "linux/amd64", {1000}, 7);
  r.write_mirror_password("wrong-password");
  out = r.import({r.up("team/app:1"), r.mirrored("team/app")});
  CHECK(out.status == 1);
  CHECK(out.errors.find("credentials refused (Basic, user \"pusher\")") != std::string::npos);
  CHECK(out.errors.find("wrong-password") == std::string::npos);
  CHECK(out.errors.find(k_mirror_password) == std::string::npos);
}

TEST_CASE("mirror sync: one HEAD each side, copies what differs, says in-sync / copied / failed", "[integration][mirror]") {
  Registries r;
  Pushed a = push_layered_image(*r.upstream, "library/a", "1", "linux/amd64", {5000}, 41);
  Pushed b = push_layered_image(*r.upstream, "library/b", "1", "linux/amd64", {5000}, 42);
  Pushed c = push_multiarch(*r.upstream, "library/c", "1", {"linux/amd64", "linux/arm64"}, {5000}, 43);
  std::string config = r.dir.write("sync.yaml", r.registries_yaml() +
                                                    "mirrors:\n"
                                                    "  - {from: " + r.upstream_proxy.host() + "/library/*, to: " +
                                                    r.mirror_proxy.host() + "/hub/*}\n"
                                                    "watch:\n"
                                                    "  - ref: " + r.up("library/a:1") + "\n"
                                                    "  - ref: " + r.up("library/b:1") + "\n"
                                                    "  - ref: " + r.mirrored("hub/c:1") + "\n");  // either side of the rule
  REQUIRE(r.import({r.up("library/a:1"), r.mirrored("hub/a")}).status == 0);
  push_layered_image(*r.mirror, "hub/b", "1", "linux/amd64", {100}, 44);  // drift
  auto sync = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{basewatch_binary(), "mirror", "sync", "-c", config};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {}, "", std::chrono::seconds(120));
  };

  r.mirror_proxy.forget();
  auto dry = sync({"--dry-run", "--json"});
  INFO(dry.errors);
  REQUIRE(dry.status == 0);
  json j = json::parse(dry.output);
  REQUIRE(j["mirrors"].size() == 3);
  std::map<std::string, std::string> outcome;
  for (const auto& m : j["mirrors"]) outcome[m["mirror"]] = m["outcome"];
  CHECK(outcome[r.mirrored("hub/a:1")] == "in-sync");
  CHECK(outcome[r.mirrored("hub/b:1")] == "differs");
  CHECK(outcome[r.mirrored("hub/c:1")] == "differs");
  CHECK(j["differs"] == 2);
  CHECK(r.mirror_proxy.count("PUT") == 0);
  CHECK(r.mirror_proxy.count("POST") == 0);

  r.upstream_proxy.forget();
  auto done = sync({"--json"});
  INFO(done.errors);
  REQUIRE(done.status == 0);
  j = json::parse(done.output);
  outcome.clear();
  for (const auto& m : j["mirrors"]) outcome[m["mirror"]] = m["outcome"];
  CHECK(outcome[r.mirrored("hub/a:1")] == "in-sync");
  CHECK(outcome[r.mirrored("hub/b:1")] == "copied");
  CHECK(outcome[r.mirrored("hub/c:1")] == "copied");
  CHECK(j["copied"] == 2);
  CHECK(r.mirror->head_digest("hub/b", "1", "pusher", k_mirror_password) == b.digest);
  CHECK(skopeo_raw(r, r.mirrored("hub/c:1")) == c.body);
  // The reference in step cost the upstream one HEAD and no GET.
  CHECK(r.upstream_proxy.count("GET", "/v2/library/a/") == 0);
  CHECK(r.upstream_proxy.count("HEAD", "/v2/library/a/manifests/1") <= 2);  // 2 only when its HEAD met the first 401

  // Everything in step now: the text table, and nothing but HEADs.
  r.upstream_proxy.forget();
  auto again = sync({});
  INFO(again.errors);
  REQUIRE(again.status == 0);
  CHECK(r.upstream_proxy.count("GET", "/manifests/") == 0);
  CHECK(again.output.find("3 in sync, 0 copied, 0 failed\n") != std::string::npos);
  CHECK(again.output.rfind("MIRROR", 0) == 0);
  CHECK(again.output.find(r.mirrored("hub/c:1") + "  " + r.up("library/c:1") + "  in-sync  " + c.digest + "\n") != std::string::npos);

  // An upstream tag that does not exist: failed, exit 1.
  std::string broken = r.dir.write("broken.yaml", r.registries_yaml() + "mirrors:\n  - {from: " + r.upstream_proxy.host() +
                                                      "/library/*, to: " + r.mirror_proxy.host() + "/hub/*}\n"
                                                      "watch:\n  - ref: " + r.up("library/gone:1") + "\n");
  auto failed = run({basewatch_binary(), "mirror", "sync", "-c", broken}, {}, "", std::chrono::seconds(60));
  CHECK(failed.status == 1);
  CHECK(failed.output.find("failed  " + r.up("library/gone:1") + ": not found\n") != std::string::npos);
  CHECK(failed.output.find("0 in sync, 0 copied, 1 failed\n") != std::string::npos);
  (void)a;
}

TEST_CASE("import shows progress on a terminal, and none when stderr is not one", "[integration][mirror]") {
  Registries r;
  push_layered_image(*r.upstream, "library/p", "1", "linux/amd64", {3'000'000}, 71);
  // `script` gives the command a terminal; its output is what the terminal showed.
  std::string cmd = basewatch_binary() + " import -c " + r.config + " " + r.up("library/p:1") + " " + r.mirrored("hub/p");
  auto tty = run({"script", "-qec", cmd, "/dev/null"}, {}, "", std::chrono::seconds(60));
  INFO(tty.output);
  REQUIRE(tty.status == 0);
  CHECK(tty.output.find("2/2 blobs, 3.0 MB / 3.0 MB") != std::string::npos);
  CHECK(tty.output.find("\r") != std::string::npos);
  auto piped = r.import({r.up("library/p:1"), r.mirrored("hub/p2")});
  REQUIRE(piped.status == 0);
  CHECK(piped.errors.find("blobs,") == std::string::npos);
}

TEST_CASE("a registry that cannot be reached says why", "[integration][mirror]") {
  TempDir dir("bw-unreachable");
  int port = free_port();
  std::string cfg = dir.write("c.yaml", "registries:\n  127.0.0.1:" + std::to_string(port) + ": {insecure: true}\n");
  auto out = run({basewatch_binary(), "digest", "-c", cfg, "127.0.0.1:" + std::to_string(port) + "/team/app:1"});
  CHECK(out.status == 1);
  CHECK(out.errors == "basewatch: 127.0.0.1:" + std::to_string(port) + "/team/app:1: HEAD http://127.0.0.1:" + std::to_string(port) +
                          "/v2/team/app/manifests/1: connection refused by 127.0.0.1:" + std::to_string(port) +
                          " (nothing listens there)\n");
}
