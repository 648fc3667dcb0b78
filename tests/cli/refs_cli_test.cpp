// `basewatch refs` and `refs fix` on the real binary against two real
// registries: an upstream and its mirror (the same image pushed to both is
// "mirrored", a different one "mirror-behind").
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "tests/cli/cli_helpers.h"

using namespace bw::testing;
using nlohmann::json;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string short_digest(const std::string& d) { return d.substr(0, 19); }

}  // namespace

TEST_CASE("refs: every status, --json, --sarif (validated), and refs fix byte-exact with --write", "[cli][refs]") {
  LocalRegistry up, mirror;
  const std::string U = up.host(), M = mirror.host();
  std::string node = up.push_image("library/node", "20", "node 20");
  REQUIRE(mirror.push_image("hub/library/node", "20", "node 20") == node);
  std::string alpine = up.push_image("library/alpine", "3.20", "alpine 3.20");
  REQUIRE(mirror.push_image("hub/library/alpine", "3.20", "alpine 3.20") == alpine);
  std::string golang = up.push_image("library/golang", "1.23", "golang 1.23 new");
  std::string golang_old = mirror.push_image("hub/library/golang", "1.23", "golang 1.23 old");
  up.push_image("library/busybox", "1.36", "busybox");
  std::string thing = up.push_image("other/thing", "1", "thing 1");
  const std::string stale = "sha256:" + std::string(64, 'a');

  TempDir dir("bw-cli-refs");
  const std::string dockerfile =
      "ARG TAG\n"
      "FROM " + U + "/library/node:20 AS deps\n"
      "FROM " + M + "/hub/library/alpine:3.20 AS base\n"
      "FROM " + M + "/hub/library/golang:1.23 AS build\n"
      "FROM --platform=$BUILDPLATFORM \\\n"
      "     " + U + "/library/busybox:1.36 AS tools\n"
      "FROM ghcr.io/org/app:1 AS other\n"
      "FROM " + U + "/other/thing:1@" + stale + " AS pinned\n"
      "FROM " + U + "/library/alpine:${TAG} AS x\n"
      "FROM base\n"
      "COPY --from=" + U + "/other/thing:1 /a /a\n";
  std::string file = dir.write("web/Dockerfile", dockerfile);
  ::chmod(file.c_str(), 0640);
  std::string cfg = dir.write("c.yaml",
                              "registries:\n"
                              "  " + U + ": {insecure: true}\n"
                              "  " + M + ": {insecure: true}\n"
                              "mirrors:\n"
                              "  - {from: " + U + "/library/*, to: " + M + "/hub/library/*}\n"
                              "policy:\n"
                              "  require_mirror: true\n"
                              "  allowed_registries: [\"" + U + "\", \"" + M + "\"]\n"
                              "projects:\n"
                              "  - {name: web, dockerfile: web/Dockerfile}\n");

  auto r = basewatch({"refs", "-c", cfg, "--json"});
  INFO(r.errors);
  CHECK(r.status == 1);  // a bypass under require_mirror and a forbidden registry
  auto j = json::parse(r.output);
  auto entry = [&](int line, int column, const std::string& written, json ref, const std::string& status, json mirror_ref,
                   const std::string& detail, const std::string& via, const std::string& kind) {
    return json{{"project", "web"}, {"file", file}, {"line", line}, {"column", column}, {"written", written},
                {"ref", ref}, {"status", status}, {"mirror", mirror_ref}, {"detail", detail}, {"via", via}, {"kind", kind}};
  };
  json want = json::array({
      entry(2, 6, U + "/library/node:20", U + "/library/node:20", "bypass", M + "/hub/library/node:20",
            "names the upstream of mirror " + M + "/hub/library/node, which holds the upstream's current digest", "from", "unused"),
      entry(3, 6, M + "/hub/library/alpine:3.20", M + "/hub/library/alpine:3.20", "mirrored", M + "/hub/library/alpine:3.20",
            "the copy of " + U + "/library/alpine:3.20 holds the upstream's current digest", "from", "runtime"),
      entry(4, 6, M + "/hub/library/golang:1.23", M + "/hub/library/golang:1.23", "mirror-behind", M + "/hub/library/golang:1.23",
            "the mirror holds " + short_digest(golang_old) + ", the upstream is at " + short_digest(golang), "from", "unused"),
      entry(6, 6, U + "/library/busybox:1.36", U + "/library/busybox:1.36", "bypass", M + "/hub/library/busybox:1.36",
            "names the upstream of mirror " + M + "/hub/library/busybox; the mirror has no " + M + "/hub/library/busybox:1.36 yet",
            "from", "unused"),
      entry(7, 6, "ghcr.io/org/app:1", "ghcr.io/org/app:1", "forbidden", nullptr,
            "registry ghcr.io is not in policy.allowed_registries", "from", "unused"),
      entry(8, 6, U + "/other/thing:1@" + stale, U + "/other/thing:1@" + stale, "stale-pin", nullptr,
            "pinned to " + short_digest(stale) + ", but " + U + "/other/thing:1 is " + short_digest(thing) + " now", "from", "unused"),
      entry(9, 6, U + "/library/alpine:${TAG}", nullptr, "unresolved", nullptr,
            "invalid reference \"" + U + "/library/alpine:\": tag is empty (expanded from \"" + U +
                "/library/alpine:${TAG}\"); TAG is not set",
            "from", "unused"),
      entry(11, 13, U + "/other/thing:1", U + "/other/thing:1", "unmirrored", nullptr, "no mirror covers " + U + "/other/thing",
            "copy", "buildtime"),
  });
  CHECK(j["refs"].dump(1) == want.dump(1));

  SECTION("the table ends with the counts") {
    auto t = basewatch({"refs", "-c", cfg});
    CHECK(t.status == 1);
    CHECK(t.output.find("bypass         " + file + ":2:6") != std::string::npos);
    CHECK(t.output.substr(t.output.rfind('\n', t.output.size() - 2) + 1) ==
          "8 references: 1 mirrored, 1 mirror-behind, 2 bypass, 1 unmirrored, 1 forbidden, 1 stale-pin, 1 unresolved; 3 "
          "break the policy\n");
  }

  SECTION("--sarif validates against the SARIF 2.1.0 schema, one rule per status, each result located") {
    auto s = basewatch({"refs", "-c", cfg, "--sarif"});
    CHECK(s.status == 1);
    std::string out = dir.write("refs.sarif", s.output);
    auto v = run({"node", std::string(BASEWATCH_SOURCE_DIR) + "/tests/sarif/validate.js", out});
    INFO(v.output + v.errors);
    CHECK(v.status == 0);
    auto sarif = json::parse(s.output);
    CHECK(sarif["version"] == "2.1.0");
    const auto& run0 = sarif["runs"][0];
    CHECK(run0["tool"]["driver"]["rules"].size() == 7);
    REQUIRE(run0["results"].size() == 8);
    CHECK(run0["results"][0]["ruleId"] == "bypass");
    CHECK(run0["results"][0]["level"] == "error");
    CHECK(run0["results"][0]["locations"][0]["physicalLocation"]["region"] ==
          json{{"startLine", 2}, {"startColumn", 6}, {"endColumn", 6 + static_cast<int>((U + "/library/node:20").size())},
               {"snippet", {{"text", U + "/library/node:20"}}}});
    CHECK(run0["results"][1]["kind"] == "pass");
    CHECK(run0["results"][2]["level"] == "warning");
  }

  SECTION("refs fix prints a patch -p0 diff of the fixable bypass only, and says what it left") {
    auto f = basewatch({"refs", "fix", "-c", cfg});
    CHECK(f.status == 1);  // busybox is left
    CHECK(f.output == "--- " + file + "\n+++ " + file + "\n@@ -1,5 +1,5 @@\n ARG TAG\n-FROM " + U +
                          "/library/node:20 AS deps\n+FROM " + M + "/hub/library/node:20 AS deps\n FROM " + M +
                          "/hub/library/alpine:3.20 AS base\n FROM " + M + "/hub/library/golang:1.23 AS build\n FROM "
                          "--platform=$BUILDPLATFORM \\\n");
    CHECK(f.errors == file + ":6:6: left " + U + "/library/busybox:1.36: the mirror does not hold the upstream's current "
                                                 "content: the mirror has no " + M + "/hub/library/busybox:1.36 yet\n");
    CHECK(slurp(file) == dockerfile);  // a diff changes nothing

    auto w = basewatch({"refs", "fix", "-c", cfg, "--write"});
    CHECK(w.status == 1);
    std::string fixed = dockerfile;
    fixed.replace(fixed.find(U + "/library/node:20"), (U + "/library/node:20").size(), M + "/hub/library/node:20");
    CHECK(slurp(file) == fixed);
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);
    auto again = json::parse(basewatch({"refs", "-c", cfg, "--json"}).output);
    CHECK(again["refs"][0]["status"] == "mirrored");

    SECTION("--pin pins what the mirror holds") {
      auto p = basewatch({"refs", "fix", "-c", cfg, "--pin", "--write"});
      std::string pinned = slurp(file);
      CHECK(pinned.find("FROM " + M + "/hub/library/node:20@" + node + " AS deps\n") != std::string::npos);
      CHECK(pinned.find("FROM " + M + "/hub/library/alpine:3.20@" + alpine + " AS base\n") != std::string::npos);
      CHECK(pinned.find("FROM " + M + "/hub/library/golang:1.23 AS build\n") != std::string::npos);  // behind: left
      CHECK(p.errors.find(file + ":4:6: left " + M + "/hub/library/golang:1.23: the mirror does not hold") != std::string::npos);
    }
  }
}

TEST_CASE("config: a missing Dockerfile points at its config line, and nothing to watch only stops serve and check",
          "[cli][config]") {
  TempDir dir("bw-cli-newuser");
  std::string c = dir.write("c.yaml", "projects:\n  - name: web\n    dockerfile: /nope/Dockerfile\n");
  auto r = basewatch({"config", "check", "-c", c});
  CHECK(r.status == 1);
  CHECK(r.output.empty());
  CHECK(r.errors == "basewatch: " + c + ":3:17: projects[0].dockerfile: /nope/Dockerfile: No such file or directory\n");

  std::string typo = dir.write("t.yaml", "projects:\n  - {name: web, dockerfile: /nope/Dockerfile, triggers: [cj]}\n"
                                         "triggers:\n  ci: {type: webhook, url: 'http://127.0.0.1:9/h'}\n");
  auto t = basewatch({"config", "check", "-c", typo});
  CHECK(t.status == 2);
  CHECK(t.errors == "basewatch: " + typo + ":2:57: projects[0].triggers: unknown trigger \"cj\" (did you mean \"ci\"?)\n");

  LocalRegistry reg;
  std::string digest = reg.push_image("team/base", "1", "base");
  std::string only = dir.write("r.yaml", "registries:\n  " + reg.host() + ": {insecure: true}\n");
  auto d = basewatch({"digest", "-c", only, reg.host() + "/team/base:1"});
  INFO(d.errors);
  CHECK(d.status == 0);
  CHECK(d.output.find("  digest: " + digest + "\n") != std::string::npos);
  auto ch = basewatch({"check", "-c", only});
  CHECK(ch.status == 2);
  CHECK(ch.errors == "basewatch: " + only + ":1:1: nothing to watch: add projects: (Dockerfiles) or watch: (references)\n");
}
