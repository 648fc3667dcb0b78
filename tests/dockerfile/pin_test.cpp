// pin_bases: a table of Dockerfiles, each with the exact pinned copy a
// task build gets (every other character as it was), or the exact error.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "dockerfile/pin.h"

using bw::dockerfile::BasePin;
using bw::dockerfile::pin_bases;
using bw::dockerfile::ScanOptions;

namespace {

const std::string k_new = "sha256:" + std::string(64, '1');
const std::string k_mirror = "sha256:" + std::string(64, '2');
const std::string k_old = "sha256:" + std::string(64, '9');

BasePin alpine() { return BasePin{{"docker.io/library/alpine:3.20"}, "docker.io/library/alpine:3.20", k_new}; }
BasePin golang() { return BasePin{{"docker.io/library/golang:1.23"}, "docker.io/library/golang:1.23", k_new}; }
// The project builds FROM the mirror; the change names the upstream.
BasePin alpine_via_mirror() {
  return BasePin{{"docker.io/library/alpine:3.20", "registry.example.com/hub/library/alpine:3.20"},
                 "registry.example.com/hub/library/alpine:3.20", k_mirror};
}

const std::string A = "docker.io/library/alpine:3.20@" + k_new;
const std::string G = "docker.io/library/golang:1.23@" + k_new;
const std::string M = "registry.example.com/hub/library/alpine:3.20@" + k_mirror;

struct Case {
  std::string name;
  std::string text;
  std::vector<BasePin> pins;
  std::string pinned;                // the copy, exactly
  std::string runtime_base = "";     // the runtime base as the copy names it ("" = scratch)
  bool runtime_pinned = false;
  std::vector<std::string> unmatched = {};
  std::map<std::string, std::string> build_args = {};
  std::string target = "";
  std::string platform = "linux/amd64";
};

const std::vector<Case> k_cases = {
    {"a plain FROM", "FROM alpine:3.20\nRUN apk upgrade\n", {alpine()}, "FROM " + A + "\nRUN apk upgrade\n", A, true},
    {"FROM through a global ARG keeps the ARG, replaces the token",
     "ARG BASE=alpine:3.20\nFROM ${BASE}\nRUN echo $BASE\n", {alpine()},
     "ARG BASE=alpine:3.20\nFROM " + A + "\nRUN echo $BASE\n", A, true},
    {"a build arg decides what FROM names", "ARG V=3.19\nFROM alpine:$V\n", {alpine()}, "ARG V=3.19\nFROM " + A + "\n", A,
     true, {}, {{"V", "3.20"}}},
    {"--platform, AS, the syntax line, trailing blanks and CRLF stay as they were",
     "# syntax=docker/dockerfile:1\r\nFROM --platform=$BUILDPLATFORM golang:1.23 AS build  \r\n"
     "RUN go build\r\nFROM alpine:3.20\r\nCOPY --from=build /app /app\r\n",
     {alpine(), golang()},
     "# syntax=docker/dockerfile:1\r\nFROM --platform=$BUILDPLATFORM " + G + " AS build  \r\n"
     "RUN go build\r\nFROM " + A + "\r\nCOPY --from=build /app /app\r\n",
     A, true},
    {"only the changed base is pinned; the runtime base keeps floating",
     "FROM golang:1.23 AS build\nFROM alpine:3.20\nCOPY --from=build /app /app\n", {golang()},
     "FROM " + G + " AS build\nFROM alpine:3.20\nCOPY --from=build /app /app\n", "docker.io/library/alpine:3.20", false},
    {"a stage alias chain: the runtime base is the chain's root",
     "FROM alpine:3.20 AS base\nRUN apk upgrade\nFROM base AS final\nCMD [\"sh\"]\n", {alpine()},
     "FROM " + A + " AS base\nRUN apk upgrade\nFROM base AS final\nCMD [\"sh\"]\n", A, true},
    {"COPY --from=image, quoted or not",
     "FROM scratch\nCOPY --from=alpine:3.20 /etc/os-release /a\nCOPY --from=\"alpine:3.20\" /bin/sh /b\n", {alpine()},
     "FROM scratch\nCOPY --from=" + A + " /etc/os-release /a\nCOPY --from=\"" + A + "\" /bin/sh /b\n"},
    {"RUN --mount from=, other fields kept",
     "FROM busybox\nRUN --mount=type=bind,from=alpine:3.20,source=/etc,target=/x cat /x/os-release\n", {alpine()},
     "FROM busybox\nRUN --mount=type=bind,from=" + A + ",source=/etc,target=/x cat /x/os-release\n",
     "docker.io/library/busybox:latest", false},
    {"a continued FROM: the pieces and the continuation stay",
     "FROM \\\n  --platform=linux/amd64 \\\n# a comment inside\n  alpine:3.20 \\\n  AS base\n", {alpine()},
     "FROM \\\n  --platform=linux/amd64 \\\n# a comment inside\n  " + A + " \\\n  AS base\n", A, true},
    {"escape=` continues lines with a backtick",
     "# escape=`\nFROM `\n  alpine:3.20\nRUN dir c:\\\n", {alpine()}, "# escape=`\nFROM `\n  " + A + "\nRUN dir c:\\\n", A, true},
    {"through a mirror: the project names the mirror, the change the upstream",
     "FROM registry.example.com/hub/library/alpine:3.20\n", {alpine_via_mirror()}, "FROM " + M + "\n", M, true},
    {"through a mirror: a project still naming the upstream is pinned to the mirror's copy",
     "FROM alpine:3.20\n", {alpine_via_mirror()}, "FROM " + M + "\n", M, true},
    {"a written digest is already exact: left alone",
     "FROM alpine:3.20@" + k_old + "\n", {alpine()}, "FROM alpine:3.20@" + k_old + "\n",
     "docker.io/library/alpine:3.20@" + k_old, false, {"docker.io/library/alpine:3.20"}},
    {"a change the file no longer names is reported, the rest still pinned",
     "FROM alpine:3.20\n", {alpine(), golang()}, "FROM " + A + "\n", A, true, {"docker.io/library/golang:1.23"}},
    {"ONBUILD is for the builds FROM this image", "FROM alpine:3.20\nONBUILD COPY --from=alpine:3.20 / /x\n", {alpine()},
     "FROM " + A + "\nONBUILD COPY --from=alpine:3.20 / /x\n", A, true},
    {"the platform decides what a TARGETARCH FROM names",
     "FROM golang:1.23 AS build-arm64\nFROM alpine:3.20 AS build-amd64\nFROM build-$TARGETARCH\n", {alpine()},
     "FROM golang:1.23 AS build-arm64\nFROM " + A + " AS build-amd64\nFROM build-$TARGETARCH\n", A, true, {}, {}, "", "linux/amd64"},
    {"the same file for arm64: its runtime base is golang, not pinned",
     "FROM golang:1.23 AS build-arm64\nFROM alpine:3.20 AS build-amd64\nFROM build-$TARGETARCH\n", {alpine()},
     "FROM golang:1.23 AS build-arm64\nFROM " + A + " AS build-amd64\nFROM build-$TARGETARCH\n",
     "docker.io/library/golang:1.23", false, {}, {}, "", "linux/arm64"},
    {"a UTF-8 BOM before the first FROM", "\xEF\xBB\xBF" "FROM alpine:3.20\n", {alpine()}, "\xEF\xBB\xBF" "FROM " + A + "\n", A, true},
    {"FROM image AS the same name: only the image", "FROM alpine AS alpine\n",
     {BasePin{{"docker.io/library/alpine:latest"}, "docker.io/library/alpine:latest", k_new}},
     "FROM docker.io/library/alpine:latest@" + k_new + " AS alpine\n", "docker.io/library/alpine:latest@" + k_new, true},
};

}  // namespace

TEST_CASE("pin_bases: each changed reference becomes ref@digest, nothing else changes", "[unit][dockerfile][pin]") {
  for (const auto& c : k_cases) {
    INFO(c.name);
    ScanOptions o;
    o.build_args = c.build_args;
    o.target = c.target;
    o.platform = c.platform;
    auto r = pin_bases(c.text, "Dockerfile", o, c.pins);
    REQUIRE(r.ok());
    CHECK(r->text == c.pinned);
    CHECK(r->unmatched == c.unmatched);
    if (c.runtime_base.empty()) {
      CHECK_FALSE(r->runtime_base.has_value());
    } else {
      REQUIRE(r->runtime_base.has_value());
      CHECK(r->runtime_base->ref.str() == c.runtime_base);
      CHECK(r->runtime_base_pinned == c.runtime_pinned);
    }
  }
}

TEST_CASE("pin_bases: what it pinned, where", "[unit][dockerfile][pin]") {
  auto r = pin_bases("ARG BASE=alpine:3.20\nFROM ${BASE} AS base\nFROM scratch\nCOPY --from=alpine:3.20 / /\n", "web/Dockerfile",
                     ScanOptions{}, {alpine()});
  REQUIRE(r.ok());
  REQUIRE(r->pinned.size() == 2);
  CHECK(r->pinned[0].line == 2);
  CHECK(r->pinned[0].via == "from");
  CHECK(r->pinned[0].stage == "base");
  CHECK(r->pinned[0].written == "${BASE}");
  CHECK(r->pinned[0].pinned == A);
  CHECK(r->pinned[1].line == 4);
  CHECK(r->pinned[1].via == "copy");
  CHECK(r->pinned[1].written == "alpine:3.20");
  CHECK_FALSE(r->runtime_base.has_value());  // FROM scratch
}

TEST_CASE("pin_bases: errors to the letter", "[unit][dockerfile][pin]") {
  // A reference BuildKit joins across a continuation cannot be replaced in place.
  auto split = pin_bases("FROM alpine\\\n:3.20\n", "web/Dockerfile", ScanOptions{}, {alpine()});
  REQUIRE_FALSE(split.ok());
  CHECK(split.error().message == "web/Dockerfile:1: cannot pin \"alpine:3.20\": the reference is split across lines");
  // What the scanner refuses is refused with the scanner's words.
  auto broken = pin_bases("FROM\n", "web/Dockerfile", ScanOptions{}, {alpine()});
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.error().message == "web/Dockerfile:1: FROM requires either one or three arguments");
  auto target = pin_bases("FROM alpine:3.20\n", "web/Dockerfile", ScanOptions{{}, "nope", "linux/amd64"}, {alpine()});
  REQUIRE_FALSE(target.ok());
  CHECK(target.error().message == "web/Dockerfile: target stage \"nope\" could not be found");
}
