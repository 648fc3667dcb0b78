// Source ranges of reference tokens, BuildKit's lint warnings, and the
// byte-exact rewrites of refs fix: each case gives the whole expected file.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "dockerfile/dockerfile.h"
#include "dockerfile/rewrite.h"
#include "tests/dockerfile/cases.h"

using namespace bw::dockerfile;

namespace {

const std::string k_a = "sha256:" + std::string(64, 'a');
const std::string k_b = "sha256:" + std::string(64, 'b');

// "text@line:column" of each image's token, joined from its ranges.
std::vector<std::string> tokens(const std::string& text, const ScanResult& r) {
  std::vector<std::string> out;
  for (const auto& i : r.images) {
    std::string t;
    for (const auto& s : i.source) t += text.substr(s.offset, s.length);
    out.push_back(i.source.empty() ? "(none)" : t + "@" + std::to_string(i.source[0].line) + ":" + std::to_string(i.source[0].column));
  }
  return out;
}

struct FixCase {
  std::string name;
  std::string before;
  std::vector<RewriteRequest> requests;
  std::string after;
  std::vector<std::string> outcomes;  // "how" when done, "left: reason" when not
};

std::vector<std::string> outcomes_of(const RewritePlan& p) {
  std::vector<std::string> out;
  for (const auto& o : p.outcomes) out.push_back(o.done ? o.how : "left: " + o.reason);
  return out;
}

const std::string k_m = "mirror.example.com/hub/library/";

}  // namespace

TEST_CASE("dockerfile: every reference token knows where it stands in the file") {
  std::string text =
      "\xEF\xBB\xBF# syntax=docker/dockerfile:1\r\n"
      "ARG GO=1.23\r\n"
      "FROM --platform=$BUILDPLATFORM \\\r\n"
      "    golang:${GO} AS build\r\n"
      "FROM \"alpine:3.20\"\r\n"
      "COPY --from=busybox:1.36 /bin /bin\r\n"
      "RUN --mount=type=bind,from=ghcr.io/org/tools:2,target=/t \\\r\n"
      "    --mount=\"type=cache,target=/c\" true\r\n"
      "ONBUILD COPY --from=ghcr.io/x/y:1 /a /b\r\n"
      "COPY --from=\"quay.io/q/r:1\" /a /b\r\n"
      "COPY --from=q\"uay.io/q/r:2\" /a /b\r\n";
  auto r = scan(text, "Dockerfile", ScanOptions{});
  REQUIRE_FALSE(r.error.has_value());
  CHECK(tokens(text, r) == std::vector<std::string>{
                               "docker/dockerfile:1@1:10",
                               "golang:${GO}@4:5",
                               "\"alpine:3.20\"@5:6",
                               "busybox:1.36@6:13",
                               "ghcr.io/org/tools:2@7:28",
                               "ghcr.io/x/y:1@9:21",
                               "quay.io/q/r:1@10:14",
                               "(none)",
                           });
  // The ARG default too.
  REQUIRE(r.global_args.size() == 1);
  REQUIRE(r.global_args[0].value_source.size() == 1);
  CHECK(text.substr(r.global_args[0].value_source[0].offset, r.global_args[0].value_source[0].length) == "1.23");
}

TEST_CASE("dockerfile: a token split by a continuation has one range per line") {
  std::string text = "FROM alp\\\n# a comment\nine:3.20 AS a\nFROM a\n";
  auto r = scan(text, "Dockerfile", ScanOptions{});
  REQUIRE_FALSE(r.error.has_value());
  REQUIRE(r.images.size() == 1);
  REQUIRE(r.images[0].source.size() == 2);
  CHECK(r.images[0].source[0] == SourceRange{5, 3, 1, 6});
  CHECK(r.images[0].source[1] == SourceRange{22, 8, 3, 1});
}

TEST_CASE("dockerfile: duplicate and reserved stage names are warnings, resolved as BuildKit does") {
  SECTION("FROM takes the latest stage of a name before it; COPY --from and --target the last") {
    std::string text = "FROM alpine:3.20 AS base\nFROM debian:12 AS BASE\nFROM base AS app\nCOPY --from=tools /x /x\n"
                       "FROM golang:1.23 AS tools\nFROM node:20 AS tools\n";
    ScanOptions o;
    o.target = "app";
    auto r = scan(text, "Dockerfile", o);
    REQUIRE_FALSE(r.error.has_value());
    CHECK(r.warnings == std::vector<std::string>{
                            "Dockerfile:2: warning: DuplicateStageName: Duplicate stage name 'base', stage names should be unique",
                            "Dockerfile:6: warning: DuplicateStageName: Duplicate stage name 'tools', stage names should be unique"});
    std::vector<std::string> got;
    for (const auto& i : r.images) got.push_back(i.ref.str() + " " + i.kind + " " + i.stage);
    CHECK(got == std::vector<std::string>{"docker.io/library/alpine:3.20 unused base",
                                          "docker.io/library/debian:12 runtime base",
                                          "docker.io/library/golang:1.23 unused tools",
                                          "docker.io/library/node:20 buildtime tools"});
    o.target = "tools";
    auto t = scan(text, "Dockerfile", o);
    REQUIRE_FALSE(t.error.has_value());
    CHECK(t.images.back().kind == "runtime");
  }
  SECTION("a stage named scratch or context builds; FROM scratch then means that stage") {
    std::string text = "FROM alpine:3.20 AS scratch\nFROM busybox:1.36 AS Context\nFROM scratch\n";
    auto r = scan(text, "Dockerfile", ScanOptions{});
    REQUIRE_FALSE(r.error.has_value());
    CHECK(r.warnings == std::vector<std::string>{
                            "Dockerfile:1: warning: ReservedStageName: 'scratch' is reserved and should not be used as a stage name",
                            "Dockerfile:2: warning: ReservedStageName: 'context' is reserved and should not be used as a stage name"});
    REQUIRE(r.images.size() == 2);
    CHECK(r.images[0].kind == "runtime");
    CHECK(r.images[1].kind == "unused");
  }
}

TEST_CASE("dockerfile: keep_unresolved keeps a FROM with an ARG that has no value") {
  std::string text = "ARG TAG\nFROM alpine:${TAG}\nFROM ${BASE}\nFROM busybox:1.36\n";
  ScanOptions o;
  auto strict = scan(text, "Dockerfile", o);
  REQUIRE(strict.error.has_value());
  CHECK(*strict.error == "Dockerfile:3: base name (${BASE}) should not be blank");
  o.keep_unresolved = true;
  auto r = scan(text, "Dockerfile", o);
  REQUIRE_FALSE(r.error.has_value());
  REQUIRE(r.images.size() == 3);
  CHECK(r.images[0].unresolved == std::optional<std::string>(
                                      "invalid reference \"alpine:\": tag is empty (expanded from \"alpine:${TAG}\"); TAG is not set"));
  CHECK(r.images[0].unset == std::vector<std::string>{"TAG"});
  CHECK(r.images[1].unresolved == std::optional<std::string>("base name (${BASE}) should not be blank"));
  CHECK_FALSE(r.images[2].unresolved.has_value());
  CHECK(r.images[2].ref.str() == "docker.io/library/busybox:1.36");
}

TEST_CASE("refs fix: rewrites change the reference's own characters and nothing else") {
  const std::vector<FixCase> cases = {
      {"a plain FROM",
       "FROM alpine:3.20\n",
       {{0, k_m + "alpine:3.20"}},
       "FROM " + k_m + "alpine:3.20\n",
       {"reference"}},
      {"continuations, --platform and AS stay",
       "FROM --platform=$BUILDPLATFORM \\\n    golang:1.23 \\\n    AS build\nFROM alpine:3.20\nCOPY --from=build /a /a\n",
       {{0, k_m + "golang:1.23"}},
       "FROM --platform=$BUILDPLATFORM \\\n    " + k_m + "golang:1.23 \\\n    AS build\nFROM alpine:3.20\nCOPY --from=build /a /a\n",
       {"reference"}},
      {"CRLF line ends stay",
       "FROM alpine:3.20 AS base\r\nRUN echo \\\r\n  hi\r\nFROM base\r\n",
       {{0, k_m + "alpine:3.20"}},
       "FROM " + k_m + "alpine:3.20 AS base\r\nRUN echo \\\r\n  hi\r\nFROM base\r\n",
       {"reference"}},
      {"# escape=` and its continuations stay",
       "# escape=`\nFROM mcr.microsoft.com/windows/servercore:ltsc2022 AS `\n  base\nRUN dir c:\\\nFROM base\n",
       {{0, "mirror.example.com/mcr/windows/servercore:ltsc2022"}},
       "# escape=`\nFROM mirror.example.com/mcr/windows/servercore:ltsc2022 AS `\n  base\nRUN dir c:\\\nFROM base\n",
       {"reference"}},
      {"comments and blank lines inside a continuation stay",
       "FROM \\\n# the base\n\n    # indented comment\n  alpine:3.20 \\  \n  AS base\nFROM base\n",
       {{0, k_m + "alpine:3.20"}},
       "FROM \\\n# the base\n\n    # indented comment\n  " + k_m + "alpine:3.20 \\  \n  AS base\nFROM base\n",
       {"reference"}},
      {"heredoc bodies after the FROM are not references",
       "FROM alpine:3.20 AS a\nRUN <<EOF\nFROM alpine:3.20\necho \\\nEOF\nFROM busybox:1.36\nCOPY --from=a / /\n",
       {{0, k_m + "alpine:3.20"}, {1, k_m + "busybox:1.36"}},
       "FROM " + k_m + "alpine:3.20 AS a\nRUN <<EOF\nFROM alpine:3.20\necho \\\nEOF\nFROM " + k_m +
           "busybox:1.36\nCOPY --from=a / /\n",
       {"reference", "reference"}},
      {"a digest-only reference keeps its digest",
       "FROM alpine@" + k_a + "\n",
       {{0, k_m + "alpine@" + k_a}},
       "FROM " + k_m + "alpine@" + k_a + "\n",
       {"reference"}},
      {"a pin is added, and a stale one refreshed",
       "FROM alpine:3.20\nFROM " + k_m + "busybox:1.36@" + k_a + "\n",
       {{0, k_m + "alpine:3.20@" + k_b}, {1, k_m + "busybox:1.36@" + k_b}},
       "FROM " + k_m + "alpine:3.20@" + k_b + "\nFROM " + k_m + "busybox:1.36@" + k_b + "\n",
       {"reference", "reference"}},
      {"quotes around the image stay",
       "FROM \"alpine:3.20\"\n",
       {{0, k_m + "alpine:3.20"}},
       "FROM \"" + k_m + "alpine:3.20\"\n",
       {"reference"}},
      {"COPY --from, RUN --mount from= and # syntax= values",
       "# syntax=docker/dockerfile:1\nFROM " + k_m + "alpine:3.20\nCOPY --from=busybox:1.36 /bin /bin\n"
       "RUN --mount=type=bind,from=ghcr.io/org/tools:2,target=/t true\nONBUILD COPY --from=node:20 /a /a\n",
       {{0, k_m + "docker/dockerfile:1"}, {2, k_m + "busybox:1.36"}, {3, "mirror.example.com/ghcr/org/tools:2"},
        {4, k_m + "node:20"}},
       "# syntax=" + k_m + "docker/dockerfile:1\nFROM " + k_m + "alpine:3.20\nCOPY --from=" + k_m +
           "busybox:1.36 /bin /bin\nRUN --mount=type=bind,from=mirror.example.com/ghcr/org/tools:2,target=/t true\n"
           "ONBUILD COPY --from=" + k_m + "node:20 /a /a\n",
       {"reference", "reference", "reference", "reference"}},
      {"a tag from an ARG: the name is rewritten in the FROM, the ARG stays",
       "ARG V=3.20\nFROM alpine:${V}\n",
       {{0, k_m + "alpine:3.20@" + k_b}},
       "ARG V=3.20\nFROM " + k_m + "alpine:${V}@" + k_b + "\n",
       {"reference"}},
      {"a whole reference from an ARG: its default is rewritten",
       "ARG BASE=alpine:3.20\nFROM ${BASE}\n",
       {{0, k_m + "alpine:3.20"}},
       "ARG BASE=" + k_m + "alpine:3.20\nFROM ${BASE}\n",
       {"ARG BASE default (line 1)"}},
      {"an ARG default shared by two FROMs that both move is rewritten once",
       "ARG REG=docker.io\nFROM ${REG}/library/golang:1.23 AS build\nFROM ${REG}/library/alpine:3.20\n",
       {{0, "mirror.example.com/hub/library/golang:1.23"}, {1, "mirror.example.com/hub/library/alpine:3.20"}},
       "ARG REG=mirror.example.com/hub\nFROM ${REG}/library/golang:1.23 AS build\nFROM ${REG}/library/alpine:3.20\n",
       {"ARG REG default (line 1)", "ARG REG default (line 1)"}},
      {"an ARG default shared by two FROMs where only one may move is left, with the reason",
       "ARG REG=docker.io\nFROM ${REG}/library/golang:1.23 AS build\nFROM ${REG}/library/alpine:3.20\n",
       {{1, "mirror.example.com/hub/library/alpine:3.20"}},
       "ARG REG=docker.io\nFROM ${REG}/library/golang:1.23 AS build\nFROM ${REG}/library/alpine:3.20\n",
       {"left: ARG REG (line 1) also feeds line 2 (docker.io/library/golang:1.23), which a new default would change"}},
      {"an ARG used inside a stage is not edited",
       "ARG BASE=alpine:3.20\nFROM ${BASE}\nARG BASE\nRUN echo $BASE\n",
       {{0, k_m + "alpine:3.20"}},
       "ARG BASE=alpine:3.20\nFROM ${BASE}\nARG BASE\nRUN echo $BASE\n",
       {"left: ARG BASE (line 1) is also used inside a stage (line 3), where a new default would change the build"}},
      {"a value from build args cannot be edited in the file",
       "ARG BASE=alpine:3.20\nFROM ${BASE}\n",
       {{0, k_m + "alpine:3.19"}},
       "ARG BASE=alpine:3.20\nFROM ${BASE}\n",
       {"left: the part that changes is not written in the file in one piece (a build arg, the platform, or both a "
        "variable and text)"}},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      ScanOptions o;
      if (c.name == "a value from build args cannot be edited in the file") o.build_args["BASE"] = "alpine:3.19";
      auto plan = plan_rewrites(c.before, "Dockerfile", o, c.requests);
      INFO(plan.error);
      CHECK(outcomes_of(plan) == c.outcomes);
      std::string after = apply_edits(c.before, plan.edits);
      CHECK(after == c.after);
      auto again = scan(after, "Dockerfile", o);
      REQUIRE_FALSE(again.error.has_value());
      for (size_t i = 0; i < c.requests.size(); ++i) {
        if (plan.outcomes[i].done) CHECK(again.images[c.requests[i].use].ref.str() == c.requests[i].target);
      }
    }
  }
}

TEST_CASE("refs fix: on every Dockerfile of the scan table, a rewrite gives the intended references and nothing else") {
  size_t checked = 0, rewritten = 0;
  for (const auto& c : scan_case_texts()) {
    ScanOptions o;
    o.build_args = c.build_args;
    o.target = c.target;
    o.platform = c.platform;
    auto before = scan(c.text, "Dockerfile", o);
    if (before.error) continue;
    INFO(c.name);
    // Everything at once, and each reference alone.
    std::vector<std::vector<RewriteRequest>> plans(1);
    for (size_t i = 0; i < before.images.size(); ++i) {
      const auto& ref = before.images[i].ref;
      std::string target = "mirror.example.com/m/" + ref.repository + (ref.tag.empty() ? "" : ":" + ref.tag) +
                           (ref.digest.empty() ? "" : "@" + ref.digest);
      plans[0].push_back({i, target});
      plans.push_back({{i, target}});
    }
    for (const auto& requests : plans) {
      auto plan = plan_rewrites(c.text, "Dockerfile", o, requests);
      std::string after = apply_edits(c.text, plan.edits);
      auto again = scan(after, "Dockerfile", o);
      REQUIRE_FALSE(again.error.has_value());
      REQUIRE(again.images.size() == before.images.size());
      for (size_t i = 0; i < before.images.size(); ++i) {
        std::string want = before.images[i].ref.str();
        for (size_t r = 0; r < requests.size(); ++r) {
          if (requests[r].use == i && plan.outcomes[r].done) want = requests[r].target;
        }
        CHECK(again.images[i].ref.str() == want);
        CHECK(again.images[i].via == before.images[i].via);
        CHECK(again.images[i].line == before.images[i].line);
      }
      // Only the tokens' own characters, or ARG defaults, changed.
      for (const auto& e : plan.edits) {
        bool in_token = false;
        for (const auto& img : before.images) {
          for (const auto& s : img.source) in_token = in_token || (e.offset >= s.offset && e.offset + e.length <= s.offset + s.length);
        }
        for (const auto& a : before.global_args) {
          for (const auto& s : a.value_source) in_token = in_token || (e.offset >= s.offset && e.offset + e.length <= s.offset + s.length);
        }
        CHECK(in_token);
      }
      for (const auto& o2 : plan.outcomes) rewritten += o2.done;
      ++checked;
    }
  }
  CHECK(checked >= 40);
  CHECK(rewritten >= 40);
}
