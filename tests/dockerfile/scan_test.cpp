// A table of Dockerfiles, each with the exact images a BuildKit build pulls
// (reference, kind, via, line, stage) or the exact error a user reads.
// Expected values follow BuildKit's documented behaviour (the Dockerfile
// reference and docs/registry-protocol.md "Dockerfiles"), not this parser.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

#include "dockerfile/dockerfile.h"
#include "tests/dockerfile/cases.h"

using bw::dockerfile::ImageUse;
using bw::dockerfile::scan;
using bw::dockerfile::ScanOptions;

namespace {

const std::string k_hex(64, 'a');
const std::string k_digest = "sha256:" + k_hex;

struct Expected {
  std::string ref;
  std::string kind;
  std::string via;
  int line;
  std::string stage;
};

struct Case {
  std::string name;
  std::string text;
  std::vector<Expected> images;
  std::string error = "";  // when set, the exact ScanResult::error and no images
  std::map<std::string, std::string> build_args = {};
  std::string target = "";
  std::string platform = "linux/amd64";
};

std::string render(const std::vector<Expected>& images) {
  std::string out;
  for (const auto& i : images) {
    out += i.ref + " " + i.kind + " " + i.via + " line " + std::to_string(i.line) + " stage '" + i.stage + "'\n";
  }
  return out;
}

std::string render(const std::vector<ImageUse>& images) {
  std::vector<Expected> e;
  for (const auto& i : images) e.push_back({i.ref.str(), i.kind, i.via, i.line, i.stage});
  return render(e);
}

ScanOptions options_of(const Case& c) {
  ScanOptions o;
  o.build_args = c.build_args;
  o.target = c.target;
  o.platform = c.platform;
  return o;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> k_cases = {
      // ---- FROM basics ----
      {"single FROM is the runtime base",
       "FROM alpine:3.20\nRUN apk add curl\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"}}},
      {"no tag means latest; hosts keep their port",
       "FROM ubuntu AS a\nFROM localhost:5000/team/app:1\n",
       {{"docker.io/library/ubuntu:latest", "unused", "from", 1, "a"},
        {"localhost:5000/team/app:1", "runtime", "from", 2, "1"}}},
      {"instructions and AS are case-insensitive, stage names are lowercased",
       "from alpine:3.20 As Base\nrun echo hi\nFrom BASE\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "base"}}},
      {"quotes around the image are removed as the shell would",
       "FROM \"alpine:3.20\"\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"}}},
      {"a digest-only reference keeps its digest",
       "FROM alpine@" + k_digest + "\n",
       {{"docker.io/library/alpine@" + k_digest, "runtime", "from", 1, "0"}}},
      {"FROM scratch pulls nothing",
       "FROM golang:1.23 AS build\nFROM scratch\nCOPY --from=build /app /app\n",
       {{"docker.io/library/golang:1.23", "buildtime", "from", 1, "build"}}},

      // ---- stages, targets and kinds ----
      {"multi-stage: the build stage is buildtime, the last stage runtime",
       "FROM golang:1.23 AS build\nRUN go build -o /app\n\nFROM alpine:3.20\nCOPY --from=build /app /app\n",
       {{"docker.io/library/golang:1.23", "buildtime", "from", 1, "build"},
        {"docker.io/library/alpine:3.20", "runtime", "from", 4, "1"}}},
      {"a stage the target does not reach is unused",
       "FROM golang:1.23 AS build\nFROM node:20 AS docs\nFROM alpine:3.20\nCOPY --from=build /app /app\n",
       {{"docker.io/library/golang:1.23", "buildtime", "from", 1, "build"},
        {"docker.io/library/node:20", "unused", "from", 2, "docs"},
        {"docker.io/library/alpine:3.20", "runtime", "from", 3, "2"}}},
      {"--target picks the stage; later stages are unused",
       "FROM golang:1.23 AS build\nFROM alpine:3.20\nCOPY --from=build /app /app\n",
       {{"docker.io/library/golang:1.23", "runtime", "from", 1, "build"},
        {"docker.io/library/alpine:3.20", "unused", "from", 2, "1"}},
       "",
       {},
       "build"},
      {"--target is matched case-insensitively",
       "FROM golang:1.23 AS build\nFROM alpine:3.20\n",
       {{"docker.io/library/golang:1.23", "runtime", "from", 1, "build"},
        {"docker.io/library/alpine:3.20", "unused", "from", 2, "1"}},
       "",
       {},
       "BUILD"},
      {"a missing target is an error",
       "FROM alpine:3.20 AS base\n",
       {},
       "Dockerfile: target stage \"nope\" could not be found",
       {},
       "nope"},
      {"the whole FROM chain of the target is runtime",
       "FROM alpine:3.20 AS base\nFROM base AS mid\nRUN true\nFROM mid\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "base"}}},
      {"FROM names a stage only when it was defined earlier",
       "FROM later\nFROM alpine:3.20 AS later\n",
       {{"docker.io/library/later:latest", "unused", "from", 1, "0"},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "later"}}},
      {"stage names match case-insensitively",
       "FROM alpine:3.20 AS Builder\nFROM BUILDER\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "builder"}}},
      {"a stage name with a tag is an image, not the stage",
       "FROM alpine:3.20 AS base\nFROM base:latest\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "base"},
        {"docker.io/library/base:latest", "runtime", "from", 2, "1"}}},
      {"a stage named through a global ARG is still the stage",
       "ARG B=builder\nFROM golang:1.23 AS builder\nFROM ${B}\n",
       {{"docker.io/library/golang:1.23", "runtime", "from", 2, "builder"}}},

      // ---- COPY --from and RUN --mount ----
      {"COPY --from an image is buildtime via copy",
       "FROM alpine:3.20\nCOPY --from=busybox:1.36 /bin/busybox /bin/\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"},
        {"docker.io/library/busybox:1.36", "buildtime", "copy", 2, "0"}}},
      {"COPY --from a stage index makes that stage needed",
       "FROM golang:1.23\nFROM node:20\nFROM alpine:3.20\nCOPY --from=0 /app /app\n",
       {{"docker.io/library/golang:1.23", "buildtime", "from", 1, "0"},
        {"docker.io/library/node:20", "unused", "from", 2, "1"},
        {"docker.io/library/alpine:3.20", "runtime", "from", 3, "2"}}},
      {"COPY --from may name a later stage and a stage in any case, quoted",
       "FROM alpine:3.20 AS app\nCOPY --from=\"TOOLS\" /t /t\nFROM golang:1.23 AS tools\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "app"},
        {"docker.io/library/golang:1.23", "buildtime", "from", 3, "tools"}},
       "",
       {},
       "app"},
      {"COPY --from an out of range index is an error",
       "FROM golang:1.23\nFROM alpine:3.20\nCOPY --from=5 /app /app\n",
       {},
       "Dockerfile:3: invalid stage index 5"},
      {"a stage index may have leading zeros; a number beyond 64 bits is a name",
       "FROM golang:1.23\nFROM alpine:3.20\nCOPY --from=000 /a /a\nCOPY --from=99999999999999999999 /b /b\n",
       {{"docker.io/library/golang:1.23", "buildtime", "from", 1, "0"},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "1"},
        {"docker.io/library/99999999999999999999:latest", "buildtime", "copy", 4, "1"}}},
      {"a negative stage index is an error",
       "FROM alpine:3.20\nCOPY --from=-1 /a /a\n",
       {},
       "Dockerfile:2: invalid stage index -1"},
      {"a stage copying from itself is a cycle",
       "FROM alpine:3.20 AS a\nCOPY --from=a /x /y\n",
       {},
       "Dockerfile:2: circular dependency detected on stage: a"},
      {"an unnamed stage in a cycle is named stage-N",
       "FROM alpine:3.20\nCOPY --from=1 /x /y\nFROM busybox\nCOPY --from=0 /x /y\n",
       {},
       "Dockerfile:4: circular dependency detected on stage: stage-0"},
      {"COPY --from with a variable is not expanded",
       "FROM alpine:3.20\nCOPY --from=$IMG /x /y\n",
       {},
       "Dockerfile:2: invalid reference \"$IMG\": repository name must be lowercase; 'from' "
       "doesn't support variable expansion, define alias stage instead"},
      {"COPY --from given twice is an error",
       "FROM alpine:3.20\nCOPY --from=a:1 --from=b:1 /x /y\n",
       {},
       "Dockerfile:2: Duplicate flag specified: from"},
      {"RUN --mount from an image is buildtime via mount; tmpfs and cache without from pull nothing",
       "FROM alpine:3.20\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t \\\n"
       "    --mount=type=bind,from=ghcr.io/org/tools:2,target=/tools make\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"},
        {"ghcr.io/org/tools:2", "buildtime", "mount", 2, "0"}}},
      {"RUN --mount from a stage makes the stage needed; a quoted CSV mount works",
       "FROM golang:1.23 AS deps\nFROM alpine:3.20\nRUN --mount=\"type=bind,from=deps,target=/d\" ls /d\n",
       {{"docker.io/library/golang:1.23", "buildtime", "from", 1, "deps"},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "1"}}},
      {"RUN --mount from with a variable is an error",
       "FROM alpine:3.20\nRUN --mount=type=bind,from=${TOOLS},target=/t true\n",
       {},
       "Dockerfile:2: 'from' doesn't support variable expansion, define alias stage instead"},
      {"RUN --mount with a field that is not key=value is an error",
       "FROM alpine:3.20\nRUN --mount=type=bind,ro,nonsense true\n",
       {},
       "Dockerfile:2: invalid field 'nonsense' must be a key=value pair"},
      {"a mount in an unused stage is unused",
       "FROM alpine:3.20 AS lint\nRUN --mount=from=hadolint/hadolint:2,target=/h true\nFROM busybox:1.36\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "lint"},
        {"docker.io/hadolint/hadolint:2", "unused", "mount", 2, "lint"},
        {"docker.io/library/busybox:1.36", "runtime", "from", 3, "1"}}},

      // ---- ONBUILD ----
      {"ONBUILD COPY --from and RUN --mount images are via onbuild; stage names inside are skipped",
       "FROM alpine:3.20 AS base\nONBUILD COPY --from=busybox:1.36 /bin /bin\nONBUILD COPY --from=base /a /b\n"
       "onbuild run --mount=from=ghcr.io/x/y:1,target=/y true\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "base"},
        {"docker.io/library/busybox:1.36", "buildtime", "onbuild", 2, "base"},
        {"ghcr.io/x/y:1", "buildtime", "onbuild", 4, "base"}}},
      {"ONBUILD in an unused stage is unused",
       "FROM alpine:3.20 AS a\nONBUILD COPY --from=busybox:1.36 /bin /bin\nFROM debian:12\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "a"},
        {"docker.io/library/busybox:1.36", "unused", "onbuild", 2, "a"},
        {"docker.io/library/debian:12", "runtime", "from", 3, "1"}}},
      {"ONBUILD ONBUILD is an error",
       "FROM alpine:3.20\nONBUILD ONBUILD RUN true\n",
       {},
       "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"},
      {"ONBUILD FROM is an error",
       "FROM alpine:3.20\nONBUILD from busybox\n",
       {},
       "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"},

      // ---- the syntax frontend ----
      {"# syntax= is a buildtime image via syntax",
       "# syntax=docker/dockerfile:1\nFROM alpine:3.20\n",
       {{"docker.io/docker/dockerfile:1", "buildtime", "syntax", 1, ""},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "0"}}},
      {"directive keys are case-insensitive and may have blanks around '='",
       "# SYNTAX = docker/dockerfile:1.7 \nFROM alpine:3.20\n",
       {{"docker.io/docker/dockerfile:1.7", "buildtime", "syntax", 1, ""},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "0"}}},
      {"the BUILDKIT_SYNTAX build arg overrides the directive",
       "# syntax=docker/dockerfile:1\nFROM alpine:3.20\n",
       {{"docker.io/docker/dockerfile:1.7", "buildtime", "syntax", 0, ""},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "0"}},
       "",
       {{"BUILDKIT_SYNTAX", "docker/dockerfile:1.7"}}},
      {"a syntax directive after a comment is only a comment",
       "# build me\n# syntax=docker/dockerfile:1\nFROM alpine:3.20\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 3, "0"}}},
      {"an unknown directive ends the directives",
       "# foo=bar\n# syntax=docker/dockerfile:1\nFROM alpine:3.20\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 3, "0"}}},
      {"a directive after an instruction is only a comment",
       "FROM alpine:3.20\n# syntax=docker/dockerfile:1\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"}}},
      {"a first #! line is skipped when looking for the syntax; check= is a directive",
       "#!/usr/bin/env -S docker build -f\n# check=skip=JSONArgsRecommended\n# syntax=docker/dockerfile:1.4\n"
       "FROM alpine:3.20\n",
       {{"docker.io/docker/dockerfile:1.4", "buildtime", "syntax", 3, ""},
        {"docker.io/library/alpine:3.20", "runtime", "from", 4, "0"}}},
      {"a pinned syntax frontend keeps its digest",
       "# syntax=docker/dockerfile:1@" + k_digest + "\nFROM alpine:3.20\n",
       {{"docker.io/docker/dockerfile:1@" + k_digest, "buildtime", "syntax", 1, ""},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "0"}}},
      {"a directive given twice is an error",
       "# syntax=docker/dockerfile:1\n# syntax=docker/dockerfile:1.4\nFROM alpine:3.20\n",
       {},
       "Dockerfile:2: only one syntax parser directive can be used"},
      {"check= is a directive and may be given once",
       "# check=skip=all\n# Check=error=true\nFROM alpine:3.20\n",
       {},
       "Dockerfile:2: only one check parser directive can be used"},
      {"escape must be \\ or `",
       "# escape=x\nFROM alpine:3.20\n",
       {},
       "Dockerfile:1: invalid escape token 'x' does not match ` or \\"},

      // ---- lexing: BOM, CRLF, escape, continuation, comments ----
      {"a UTF-8 BOM and CRLF line ends are accepted",
       "\xEF\xBB\xBF# syntax=docker/dockerfile:1\r\nFROM alpine:3.20 AS base\r\nRUN echo \\\r\n  hi\r\nFROM base\r\n",
       {{"docker.io/docker/dockerfile:1", "buildtime", "syntax", 1, ""},
        {"docker.io/library/alpine:3.20", "runtime", "from", 2, "base"}}},
      {"escape=` continues lines with a backtick and leaves backslashes alone",
       "# escape=`\nFROM mcr.microsoft.com/windows/servercore:ltsc2022 AS `\n  base\nRUN dir c:\\\nFROM base\n",
       {{"mcr.microsoft.com/windows/servercore:ltsc2022", "runtime", "from", 2, "base"}}},
      {"continuation lines may hold comments and blank lines",
       "FROM \\\n# the base\n\n    # indented comment\n  alpine:3.20 \\  \n  AS base\nFROM base\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "base"}}},
      {"an escaped escape at the end of a line does not continue it",
       "FROM alpine:3.20 AS a\nRUN echo \\\\\nFROM busybox:1.36\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "a"},
        {"docker.io/library/busybox:1.36", "runtime", "from", 3, "1"}}},
      {"# after an instruction is not a comment",
       "FROM alpine:3.20 # base image\n",
       {},
       "Dockerfile:1: FROM requires either one or three arguments"},

      // ---- heredocs ----
      {"heredoc bodies are never instructions, even lines ending in the escape",
       "FROM alpine:3.20 AS a\nRUN <<EOF\nFROM evil:1\necho \\\nEOF\nFROM busybox:1.36\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "a"},
        {"docker.io/library/busybox:1.36", "runtime", "from", 6, "1"}}},
      {"several heredocs on one line, quoted delimiters",
       "FROM alpine:3.20 AS a\nCOPY <<ONE <<\"TWO\" /dst/\nFROM x:1\nONE\nFROM y:1\nTWO\nFROM busybox:1.36\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "a"},
        {"docker.io/library/busybox:1.36", "runtime", "from", 7, "1"}}},
      {"<<- strips leading tabs before the delimiter",
       "FROM alpine:3.20 AS a\nRUN <<-'EOT' sh\n\tFROM evil:1\n\tEOT\nFROM busybox:1.36\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "a"},
        {"docker.io/library/busybox:1.36", "runtime", "from", 5, "1"}}},
      {"heredocs work inside ONBUILD",
       "FROM alpine:3.20\nONBUILD RUN <<EOF\nFROM evil:1\nEOF\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"}}},
      {"the JSON form has no heredocs",
       "FROM alpine:3.20 AS a\nRUN [\"sh\", \"-c\", \"cat <<EOF\"]\nFROM busybox:1.36\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "a"},
        {"docker.io/library/busybox:1.36", "runtime", "from", 3, "1"}}},
      {"an unterminated heredoc is an error",
       "FROM alpine:3.20\nRUN <<EOF\necho hi\n",
       {},
       "Dockerfile:2: unterminated heredoc"},

      // ---- ARG, build args and expansion ----
      {"a global ARG default is used in FROM",
       "ARG VERSION=3.20\nFROM alpine:${VERSION}\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 2, "0"}}},
      {"a build arg overrides a declared ARG",
       "ARG VERSION=3.20\nFROM alpine:$VERSION\n",
       {{"docker.io/library/alpine:3.19", "runtime", "from", 2, "0"}},
       "",
       {{"VERSION", "3.19"}}},
      {"a build arg for an ARG not declared before FROM does not reach FROM",
       "FROM alpine:${VERSION:-3.20}\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"}},
       "",
       {{"VERSION", "3.19"}}},
      {"an ARG without default takes the build arg",
       "ARG VERSION\nFROM alpine:${VERSION:-3.18}\n",
       {{"docker.io/library/alpine:3.21", "runtime", "from", 2, "0"}},
       "",
       {{"VERSION", "3.21"}}},
      {"an ARG without default and without build arg stays unset",
       "ARG VERSION\nFROM alpine:3${VERSION-.18}\n",
       {{"docker.io/library/alpine:3.18", "runtime", "from", 2, "0"}}},
      {"a build arg for an ARG declared only inside a stage does not reach FROM",
       "FROM alpine:${VERSION:-3.20}\nARG VERSION\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"}},
       "",
       {{"VERSION", "3.19"}}},
      {"redeclaring a platform ARG without a value keeps the platform's value",
       "ARG TARGETARCH\nFROM example.com/app:${TARGETARCH}\n",
       {{"example.com/app:arm64", "runtime", "from", 2, "0"}},
       "",
       {},
       "",
       "linux/arm64"},
      {"an ARG declared inside a stage does not reach a later FROM",
       "FROM alpine:3.20 AS a\nARG V=1.35\nFROM busybox:${V:-1.36}\n",
       {{"docker.io/library/alpine:3.20", "unused", "from", 1, "a"},
        {"docker.io/library/busybox:1.36", "runtime", "from", 3, "1"}}},
      {"several ARGs on one line, quoted, referring to earlier ones",
       "ARG REG=\"registry.example.com\" REPO=team/app\nARG IMAGE=${REG}/${REPO}\nFROM $IMAGE:'v1'\n",
       {{"registry.example.com/team/app:v1", "runtime", "from", 3, "0"}}},
      {"platform ARGs come from the platform",
       "ARG TAG=${TARGETOS}-${TARGETARCH}${TARGETVARIANT}\nFROM --platform=$BUILDPLATFORM example.com/tool:${BUILDARCH} "
       "AS tool\nFROM example.com/base:${TAG}\n",
       {{"example.com/tool:arm", "unused", "from", 2, "tool"},
        {"example.com/base:linux-armv7", "runtime", "from", 3, "1"}},
       "",
       {},
       "",
       "linux/arm/v7"},
      {"the platform is normalised before it becomes ARGs",
       "FROM example.com/base:${TARGETPLATFORM//\\//-}\n",
       {{"example.com/base:linux-arm64", "runtime", "from", 1, "0"}},
       "",
       {},
       "",
       "linux/aarch64"},
      {"every expansion form",
       "ARG E=\nARG V=1.2.3\nARG REG=registry.example.com/team/app:v1\n"
       "FROM alpine:3${E-.19} AS a\nFROM alpine:3${E:-.19} AS b\nFROM alpine:${V:+set} AS c\n"
       "FROM alpine:x${E:+set} AS d\nFROM alpine:x${E+set} AS e\nFROM alpine:${V%.*} AS f\n"
       "FROM alpine:${V%%.*} AS g\nFROM alpine:${V#*.} AS h\nFROM alpine:${V##*.} AS i\n"
       "FROM alpine:${V/./-} AS j\nFROM alpine:${V//./-} AS k\nFROM ${REG#registry.example.com/} AS l\n"
       "FROM alpine:${V:?must_be_set}\n",
       {{"docker.io/library/alpine:3", "unused", "from", 4, "a"},
        {"docker.io/library/alpine:3.19", "unused", "from", 5, "b"},
        {"docker.io/library/alpine:set", "unused", "from", 6, "c"},
        {"docker.io/library/alpine:x", "unused", "from", 7, "d"},
        {"docker.io/library/alpine:xset", "unused", "from", 8, "e"},
        {"docker.io/library/alpine:1.2", "unused", "from", 9, "f"},
        {"docker.io/library/alpine:1", "unused", "from", 10, "g"},
        {"docker.io/library/alpine:2.3", "unused", "from", 11, "h"},
        {"docker.io/library/alpine:3", "unused", "from", 12, "i"},
        {"docker.io/library/alpine:1-2.3", "unused", "from", 13, "j"},
        {"docker.io/library/alpine:1-2-3", "unused", "from", 14, "k"},
        {"docker.io/team/app:v1", "unused", "from", 15, "l"},
        {"docker.io/library/alpine:1.2.3", "runtime", "from", 16, "12"}}},
      {"${v:?message} on an unset variable is an error naming it",
       "FROM alpine:${TAG:?set_TAG}\n",
       {},
       "Dockerfile:1: failed to process \"alpine:${TAG:?set_TAG}\": TAG: set_TAG"},
      {"FROM splits on blanks before expanding, so a blank inside ${} breaks it",
       "FROM alpine:${TAG:-3.20 AS x}\n",
       {},
       "Dockerfile:1: invalid name for build stage: \"x}\", name can't start with a number or contain symbols"},
      {"an escaped dollar is literal",
       "ARG V=3.20\nFROM alpine:\\$V\n",
       {},
       "Dockerfile:2: invalid reference \"alpine:$V\": tag \"$V\" contains invalid character '$' (expanded from "
       "\"alpine:\\\\$V\")"},
      {"an empty image after expansion is an error",
       "# comment\n\nFROM ${NOPE}\n",
       {},
       "Dockerfile:3: base name (${NOPE}) should not be blank"},
      {"an ARG declared inside a stage is not visible in FROM",
       "FROM alpine:3.20 AS a\nARG BASE=alpine\nFROM ${BASE}\n",
       {},
       "Dockerfile:3: base name (${BASE}) should not be blank; ARG BASE is declared inside a stage, FROM only sees "
       "ARGs declared before the first FROM"},
      {"an unset variable leaving an invalid reference is named",
       "FROM alpine:${VER}\n",
       {},
       "Dockerfile:1: invalid reference \"alpine:\": tag is empty (expanded from \"alpine:${VER}\"); VER is not set"},
      {"a bad substitution is an error",
       "FROM alpine:${}\n",
       {},
       "Dockerfile:1: failed to process \"alpine:${}\": syntax error: bad substitution"},

      // ---- invalid Dockerfiles ----
      {"an invalid reference is an error with its cause",
       "FROM Alpine:3.20\n",
       {},
       "Dockerfile:1: invalid reference \"Alpine:3.20\": repository name must be lowercase"},
      {"an invalid reference in an unused stage is still an error",
       "FROM Alpine AS a\nFROM alpine:3.20\n",
       {},
       "Dockerfile:1: invalid reference \"Alpine\": repository name must be lowercase"},
      {"a stage name must start with a letter",
       "FROM alpine:3.20 AS 1st\n",
       {},
       "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"},
      {"ENV NAME without a value is an error, as in BuildKit's parser",
       "FROM alpine:3.20\nENV NAME\n",
       {},
       "Dockerfile:2: ENV must have two arguments"},
      {"ENV mixing name=value and a bare word is an error",
       "FROM alpine:3.20\nENV A=1 B\n",
       {},
       "Dockerfile:2: Syntax error - can't find = in \"B\". Must be of the form: name=value"},
      {"LABEL NAME without a value is an error too",
       "FROM alpine:3.20\nLABEL version\n",
       {},
       "Dockerfile:2: LABEL must have two arguments"},
      {"ENV in both forms is fine",
       "FROM alpine:3.20\nENV PATH /usr/local/bin:/usr/bin\nENV A=1 B=\"two words\" C=\nLABEL a=b\n",
       {{"docker.io/library/alpine:3.20", "runtime", "from", 1, "0"}}},
      {"an uppercase first path component is a registry host",
       "FROM Foo/bar:1\nCOPY --from=MyRegistry/tools:2 /t /t\n",
       {{"Foo/bar:1", "runtime", "from", 1, "0"}, {"MyRegistry/tools:2", "buildtime", "copy", 2, "0"}}},
      {"FROM takes one or three words after its flags",
       "FROM --platform=linux/amd64 alpine:3.20 AS\n",
       {},
       "Dockerfile:1: FROM requires either one or three arguments"},
      {"FROM has no flag but --platform",
       "FROM --plat=linux/amd64 alpine:3.20\n",
       {},
       "Dockerfile:1: Unknown flag: plat"},
      {"FROM --platform needs a value",
       "FROM --platform alpine:3.20\n",
       {},
       "Dockerfile:1: Missing a value on flag: platform"},
      {"only ARG may come before the first FROM",
       "ARG A=1\nRUN echo\nFROM alpine:3.20\n",
       {},
       "Dockerfile:2: no build stage in current context"},
      {"an unknown instruction is an error",
       "FROM alpine:3.20\nFORM busybox\n",
       {},
       "Dockerfile:2: unknown instruction: FORM"},
      {"an empty file is an error",
       "",
       {},
       "Dockerfile: the Dockerfile cannot be empty"},
      {"a file of comments has no instructions",
       "# nothing here\n\n   \n",
       {},
       "Dockerfile: file with no instructions"},
      {"ARGs alone are no stage",
       "ARG A=1\n",
       {},
       "Dockerfile: dockerfile contains no stages to build"},
      {"COPY needs a destination",
       "FROM alpine:3.20\ncopy only-one\n",
       {},
       "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be "
       "determined"},
      {"a JSON array must hold strings only",
       "FROM alpine:3.20\nRUN [\"echo\", 1]\n",
       {},
       "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"},
      {"ARG needs a name",
       "ARG =1\nFROM alpine:3.20\n",
       {},
       "Dockerfile:1: ARG names can not be blank"},
      {"an invalid platform is an error",
       "FROM alpine:3.20\n",
       {},
       "Dockerfile: invalid platform \"linux\": expected os/architecture[/variant]",
       {},
       "",
       "linux"},
  };
  return k_cases;
}

}  // namespace

std::vector<ScanCase> scan_case_texts() {
  std::vector<ScanCase> out;
  for (const auto& c : cases()) out.push_back({c.name, c.text, c.build_args, c.target, c.platform});
  return out;
}

TEST_CASE("dockerfile: the table has the cases the rules need") {
  REQUIRE(cases().size() >= 40);
}

TEST_CASE("dockerfile: each Dockerfile yields exactly the expected images or error") {
  for (const auto& c : cases()) {
    DYNAMIC_SECTION(c.name) {
      auto result = scan(c.text, "Dockerfile", options_of(c));
      if (!c.error.empty()) {
        REQUIRE(result.error.has_value());
        CHECK(*result.error == c.error);
        CHECK(result.images.empty());
      } else {
        INFO(result.error.value_or(""));
        REQUIRE_FALSE(result.error.has_value());
        CHECK(render(result.images) == render(c.images));
      }
    }
  }
}

TEST_CASE("dockerfile: written, platform and pinned are reported as they stand in the file") {
  std::string text = "ARG GO=1.23\nFROM --platform=$BUILDPLATFORM golang:${GO} AS build\n"
                     "FROM alpine:3.20@" + k_digest + "\nCOPY --from=build /a /a\n"
                     "COPY --from=busybox@" + k_digest + " /bin /bin\n";
  auto r = scan(text, "services/web/Dockerfile", ScanOptions{});
  REQUIRE_FALSE(r.error.has_value());
  REQUIRE(r.images.size() == 3);

  CHECK(r.images[0].written == "golang:${GO}");
  CHECK(r.images[0].platform == std::optional<std::string>("$BUILDPLATFORM"));
  CHECK_FALSE(r.images[0].pinned.has_value());
  CHECK(r.images[0].ref.tag_ref() == "docker.io/library/golang:1.23");

  CHECK(r.images[1].written == "alpine:3.20@" + k_digest);
  CHECK_FALSE(r.images[1].platform.has_value());
  CHECK(r.images[1].pinned == std::optional<std::string>(k_digest));
  CHECK(r.images[1].ref.tag == "3.20");
  CHECK(r.images[1].ref.tag_ref() == "docker.io/library/alpine:3.20");

  CHECK(r.images[2].written == "busybox@" + k_digest);
  CHECK(r.images[2].pinned == std::optional<std::string>(k_digest));
  CHECK(r.images[2].via == "copy");
}

TEST_CASE("dockerfile: errors name the file given") {
  auto r = scan("FROM\n", "services/api/Dockerfile.prod", ScanOptions{});
  REQUIRE(r.error.has_value());
  CHECK(*r.error == "services/api/Dockerfile.prod:1: FROM requires either one or three arguments");
}

TEST_CASE("dockerfile: scan_file reads the file, and a missing file is an error result") {
  char dir_template[] = "/tmp/bwdfXXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  std::string path = std::string(dir_template) + "/Dockerfile";
  {
    std::ofstream out(path);
    out << "FROM alpine:3.20\n";
  }
  auto ok = bw::dockerfile::scan_file(path, ScanOptions{});
  REQUIRE_FALSE(ok.error.has_value());
  REQUIRE(ok.images.size() == 1);
  CHECK(ok.images[0].ref.str() == "docker.io/library/alpine:3.20");

  auto missing = bw::dockerfile::scan_file(std::string(dir_template) + "/nope", ScanOptions{});
  REQUIRE(missing.error.has_value());
  CHECK(*missing.error == std::string(dir_template) + "/nope: No such file or directory");
  CHECK(missing.images.empty());
  std::remove(path.c_str());
  rmdir(dir_template);
}

TEST_CASE("dockerfile: hostile input ends quickly with an error, never a crash") {
  SECTION("deeply nested substitutions") {
    std::string text = "FROM alpine:";
    for (int i = 0; i < 5000; ++i) text += "${A:-";
    text += "x";
    for (int i = 0; i < 5000; ++i) text += "}";
    auto r = scan(text + "\n", "Dockerfile", ScanOptions{});
    REQUIRE(r.error.has_value());
    CHECK(*r.error == "Dockerfile:1: failed to process \"" + text.substr(5) +
                          "\": syntax error: substitutions nested too deeply");
  }
  SECTION("ARG values that double each time") {
    std::string text = "ARG A0=xxxxxxxxxxxxxxxx\n";
    for (int i = 1; i < 40; ++i) {
      text += "ARG A" + std::to_string(i) + "=${A" + std::to_string(i - 1) + "}${A" + std::to_string(i - 1) + "}\n";
    }
    text += "FROM alpine:${A39}\n";
    auto r = scan(text, "Dockerfile", ScanOptions{});
    REQUIRE(r.error.has_value());
    CHECK(r.error->find("expanded word is longer than 65536 bytes") != std::string::npos);
  }
  SECTION("a file that is too large") {
    std::string text(5 * 1024 * 1024, '#');
    auto r = scan(text, "Dockerfile", ScanOptions{});
    REQUIRE(r.error.has_value());
    CHECK(*r.error == "Dockerfile: file is larger than 4 MiB");
  }
  SECTION("a long chain of stages") {
    std::string text = "FROM alpine:3.20 AS s0\n";
    for (int i = 1; i < 20000; ++i) text += "FROM s" + std::to_string(i - 1) + " AS s" + std::to_string(i) + "\n";
    auto r = scan(text, "Dockerfile", ScanOptions{});
    REQUIRE_FALSE(r.error.has_value());
    REQUIRE(r.images.size() == 1);
    CHECK(r.images[0].kind == "runtime");
  }
}
