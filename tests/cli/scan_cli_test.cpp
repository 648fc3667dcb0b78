// `basewatch scan` on real files: the JSON shape of product.md to the key,
// folders searched for Dockerfile, *.Dockerfile and Dockerfile.*, a broken
// file reported as path:line while the others are still scanned, and the
// build args, target and platform that decide what a build pulls.
#include <catch2/catch.hpp>

#include "tests/cli/cli_helpers.h"

using namespace bw::testing;
using json = nlohmann::json;

namespace {

const std::string k_digest = "sha256:" + std::string(64, 'a');

// A multi-stage build with every `via` and every `kind`.
const std::string k_web =
    "# syntax=docker/dockerfile:1.7\n"                                              // 1
    "ARG GO_VERSION=1.23\n"                                                         // 2
    "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build\n"                // 3
    "RUN --mount=type=cache,target=/root/.cache/go-build \\\n"                      // 4
    "    --mount=type=bind,from=ghcr.io/acme/protos:v3,target=/protos \\\n"         // 5
    "    go build -o /out/web ./cmd/web\n"                                          // 6
    "FROM build AS test\n"                                                          // 7
    "RUN go test ./...\n"                                                           // 8
    "FROM node:20 AS docs\n"                                                        // 9
    "FROM alpine:3.20@" + k_digest + " AS runtime\n"                                // 10
    "COPY --from=build /out/web /usr/local/bin/web\n"                               // 11
    "COPY --from=gcr.io/distroless/static:nonroot /etc/passwd /etc/passwd\n"        // 12
    "ONBUILD COPY --from=quay.io/acme/config:2 /etc/acme /etc/acme\n";              // 13

json web_images() {
  return json::array({
      image("docker.io/docker/dockerfile:1.7", "docker/dockerfile:1.7", 1, "", "buildtime", "syntax"),
      image("docker.io/library/golang:1.23", "golang:${GO_VERSION}", 3, "build", "buildtime", "from", "$BUILDPLATFORM"),
      image("ghcr.io/acme/protos:v3", "ghcr.io/acme/protos:v3", 4, "build", "buildtime", "mount"),
      image("docker.io/library/node:20", "node:20", 9, "docs", "unused", "from"),
      image("docker.io/library/alpine:3.20", "alpine:3.20@" + k_digest, 10, "runtime", "runtime", "from", nullptr, k_digest),
      image("gcr.io/distroless/static:nonroot", "gcr.io/distroless/static:nonroot", 12, "runtime", "buildtime", "copy"),
      image("quay.io/acme/config:2", "quay.io/acme/config:2", 13, "runtime", "buildtime", "onbuild"),
  });
}

}  // namespace

TEST_CASE("scan --json lists every image of files and folders in the shape of product.md", "[cli][scan]") {
  TempDir dir("bw-cli-scan");
  std::string web = dir.write("web/Dockerfile", k_web);
  dir.write("api/api.Dockerfile", "FROM python:3.12-slim\nCMD [\"python\"]\n");
  dir.write("api/Dockerfile.dev", "ARG BASE=debian:bookworm\nFROM $BASE\n");
  dir.write("api/deep/er/Dockerfile", "from Ubuntu-Mirror.example.com:5000/ubuntu:24.04\n");
  // Not Dockerfiles by name: never read (they would not parse).
  dir.write("api/README.md", "FROM nothing here\n");
  dir.write("api/Dockerfile-old", "NOT A DOCKERFILE\n");
  dir.write("api/notes.Dockerfile.txt", "NOT A DOCKERFILE\n");

  auto r = basewatch({"scan", "--json", web, dir.path() + "/api"});
  INFO(r.errors);
  CHECK(r.status == 0);
  auto out = json::parse(r.output, nullptr, false);
  REQUIRE(out.is_object());
  json expected = {{"files", json::array({
      scanned(web, web_images()),
      scanned(dir.path() + "/api/Dockerfile.dev",
              {image("docker.io/library/debian:bookworm", "$BASE", 2, "0", "runtime", "from")}),
      scanned(dir.path() + "/api/api.Dockerfile",
              {image("docker.io/library/python:3.12-slim", "python:3.12-slim", 1, "0", "runtime", "from")}),
      scanned(dir.path() + "/api/deep/er/Dockerfile",
              {image("ubuntu-mirror.example.com:5000/ubuntu:24.04", "Ubuntu-Mirror.example.com:5000/ubuntu:24.04", 1, "0",
                     "runtime", "from")}),
  })}};
  CHECK(out == expected);
}

TEST_CASE("scan text output names each file and its images with line, kind and via", "[cli][scan]") {
  TempDir dir("bw-cli-scan");
  std::string f = dir.write("Dockerfile", "FROM golang:1.23 AS build\nFROM alpine:3.20@" + k_digest + "\nCOPY --from=build / /\n");
  auto r = basewatch({"scan", f});
  CHECK(r.status == 0);
  CHECK(r.output == f + "\n"
                        "  1\tbuildtime\tfrom\tdocker.io/library/golang:1.23\t(stage build)\n"
                        "  2\truntime\tfrom\tdocker.io/library/alpine:3.20\t(stage 1) pinned\n");
}

TEST_CASE("scan reports a broken Dockerfile as path:line: message and still scans the others", "[cli][scan]") {
  TempDir dir("bw-cli-scan");
  std::string a = dir.write("a/Dockerfile", "FROM alpine:3.20\n");
  std::string b = dir.write("b/Dockerfile", "FROM alpine:3.20\nRUN <<EOF\necho never closed\n");
  std::string c = dir.write("c/Dockerfile", "FROM alpine:3.20 AS a\nARG BASE=alpine\nFROM ${BASE}\n");
  std::string d = dir.write("d/Dockerfile", "FROM ubuntu:24.04\n");
  std::string e = dir.write("e/Dockerfile", "FROM alpine:${VER}\n");
  std::string f = dir.write("f/Dockerfile", "# syntax=docker/dockerfile:1\n# syntax=docker/dockerfile:1.7\nFROM alpine\n");

  for (bool as_json : {true, false}) {
    std::vector<std::string> args{"scan"};
    if (as_json) args.push_back("--json");
    args.push_back(dir.path());
    auto r = basewatch(args);
    INFO(r.output << r.errors);
    CHECK(r.status == 1);  // some file failed
    if (!as_json) {
      CHECK(r.output == a + "\n  1\truntime\tfrom\tdocker.io/library/alpine:3.20\t(stage 0)\n"
                            "error: " + b + ":2: unterminated heredoc\n"
                            "error: " + c + ":3: base name (${BASE}) should not be blank; ARG BASE is declared inside a "
                            "stage, FROM only sees ARGs declared before the first FROM\n" +
                            d + "\n  1\truntime\tfrom\tdocker.io/library/ubuntu:24.04\t(stage 0)\n"
                            "error: " + e + ":1: invalid reference \"alpine:\": tag is empty (expanded from "
                            "\"alpine:${VER}\"); VER is not set\n"
                            "error: " + f + ":2: only one syntax parser directive can be used\n");
      continue;
    }
    auto out = json::parse(r.output, nullptr, false);
    REQUIRE(out.is_object());
    json expected = {{"files", json::array({
        scanned(a, {image("docker.io/library/alpine:3.20", "alpine:3.20", 1, "0", "runtime", "from")}),
        failed(b, b + ":2: unterminated heredoc"),
        failed(c, c + ":3: base name (${BASE}) should not be blank; ARG BASE is declared inside a stage, FROM only sees "
                      "ARGs declared before the first FROM"),
        scanned(d, {image("docker.io/library/ubuntu:24.04", "ubuntu:24.04", 1, "0", "runtime", "from")}),
        failed(e, e + ":1: invalid reference \"alpine:\": tag is empty (expanded from \"alpine:${VER}\"); VER is not set"),
        failed(f, f + ":2: only one syntax parser directive can be used"),
    })}};
    CHECK(out == expected);
  }
}

TEST_CASE("scan: a missing path is an error entry, exit 1; nothing found is exit 1", "[cli][scan]") {
  TempDir dir("bw-cli-scan");
  std::string a = dir.write("Dockerfile", "FROM alpine:3.20\n");
  auto r = basewatch({"scan", "--json", dir.path() + "/nope", a});
  CHECK(r.status == 1);
  auto out = json::parse(r.output, nullptr, false);
  REQUIRE(out.is_object());
  CHECK(out == json{{"files", json::array({
                   failed(dir.path() + "/nope", dir.path() + "/nope: no such file or folder"),
                   scanned(a, {image("docker.io/library/alpine:3.20", "alpine:3.20", 1, "0", "runtime", "from")}),
               })}});

  TempDir empty("bw-cli-scan");
  empty.write("docs/README.md", "nothing\n");
  auto none = basewatch({"scan", "--json", empty.path()});
  CHECK(none.status == 1);
  CHECK(json::parse(none.output, nullptr, false) == json{{"files", json::array()}});
  CHECK(none.errors == "basewatch: no Dockerfile found\n");
}

TEST_CASE("scan: invalid UTF-8 in a Dockerfile or a file name never crashes the JSON output", "[cli][scan]") {
  TempDir dir("bw-cli-scan");
  std::string bad = dir.write("bad/Dockerfile", "FROM alpine\xff:3\n");
  std::string odd_name = dir.write("odd/Dockerfile.\xfe", "FROM alpine:3.20\n");
  auto r = basewatch({"scan", "--json", bad, odd_name});
  INFO(r.errors);
  CHECK(r.status == 1);
  auto out = json::parse(r.output, nullptr, false);
  REQUIRE(out.is_object());
  REQUIRE(out["files"].size() == 2);
  // Invalid bytes come out as U+FFFD.
  CHECK(out["files"][0]["error"] == bad + ":1: invalid reference \"alpine\xEF\xBF\xBD:3\": path component "
                                          "\"alpine\xEF\xBF\xBD\" contains invalid character byte 0xff");
  CHECK(out["files"][1]["path"] == dir.path() + "/odd/Dockerfile.\xEF\xBF\xBD");
  CHECK(out["files"][1]["images"] ==
        json::array({image("docker.io/library/alpine:3.20", "alpine:3.20", 1, "0", "runtime", "from")}));
}

namespace {

// Build args decide the bases, --target decides what is reached, --platform
// decides TARGETARCH (BUILDPLATFORM stays the same platform: no emulation).
const std::string k_args_file =
    "ARG BASE=alpine\n"                                          // 1
    "ARG TAG=3.19\n"                                             // 2
    "ARG REGISTRY\n"                                             // 3
    "FROM ${BASE}:${TAG} AS base\n"                              // 4
    "FROM --platform=$BUILDPLATFORM golang:1.23 AS build\n"      // 5
    "FROM base AS test\n"                                        // 6
    "COPY --from=build /out /out\n"                              // 7
    "FROM ${REGISTRY:-docker.io}/acme/runtime-${TARGETARCH}:1 AS final\n"  // 8
    "COPY --from=build /out /out\n";                             // 9

}  // namespace

TEST_CASE("scan: repeated --build-arg before the paths, --target and --platform", "[cli][scan]") {
  TempDir dir("bw-cli-scan");
  std::string f = dir.write("Dockerfile", k_args_file);

  SECTION("defaults: the last stage, linux/amd64") {
    auto r = basewatch({"scan", "--json", f});
    CHECK(r.status == 0);
    CHECK(json::parse(r.output, nullptr, false) ==
          json{{"files", json::array({scanned(f, {
              image("docker.io/library/alpine:3.19", "${BASE}:${TAG}", 4, "base", "unused", "from"),
              image("docker.io/library/golang:1.23", "golang:1.23", 5, "build", "buildtime", "from", "$BUILDPLATFORM"),
              image("docker.io/acme/runtime-amd64:1", "${REGISTRY:-docker.io}/acme/runtime-${TARGETARCH}:1", 8, "final",
                    "runtime", "from"),
          })})}});
  }
  SECTION("build args, the test target, linux/arm64") {
    auto r = basewatch({"scan", "--build-arg", "TAG=3.20", "--build-arg", "BASE=debian", "--build-arg",
                        "REGISTRY=registry.example.com:5000", "--target", "test", "--platform", "linux/arm64/v8", "--json",
                        f});
    INFO(r.errors);
    CHECK(r.status == 0);
    CHECK(json::parse(r.output, nullptr, false) ==
          json{{"files", json::array({scanned(f, {
              image("docker.io/library/debian:3.20", "${BASE}:${TAG}", 4, "base", "runtime", "from"),
              image("docker.io/library/golang:1.23", "golang:1.23", 5, "build", "buildtime", "from", "$BUILDPLATFORM"),
              image("registry.example.com:5000/acme/runtime-arm64:1", "${REGISTRY:-docker.io}/acme/runtime-${TARGETARCH}:1",
                    8, "final", "unused", "from"),
          })})}});
  }
  SECTION("--build-arg NAME takes the value from the environment, as docker build does") {
    auto r = basewatch({"scan", "--build-arg", "TAG", "--json", f}, {{"TAG", "edge"}});
    CHECK(r.status == 0);
    auto out = json::parse(r.output, nullptr, false);
    REQUIRE(out.is_object());
    CHECK(out["files"][0]["images"][0]["ref"] == "docker.io/library/alpine:edge");
  }
  SECTION("a target that does not exist is the file's error") {
    auto r = basewatch({"scan", "--target", "nope", "--json", f});
    CHECK(r.status == 1);
    CHECK(json::parse(r.output, nullptr, false) ==
          json{{"files", json::array({failed(f, f + ": target stage \"nope\" could not be found")})}});
  }
  SECTION("a bad --platform is a usage error") {
    auto r = basewatch({"scan", "--platform", "linux", "--json", f});
    CHECK(r.status == 2);
    CHECK(r.output.empty());
    CHECK(r.errors == "basewatch: --platform: invalid platform \"linux\": expected os/architecture[/variant]\n");
  }
}

TEST_CASE("scan without a path is a usage error", "[cli][scan]") {
  auto r = basewatch({"scan", "--json"});
  CHECK(r.status == 2);
  CHECK(r.output.empty());
  CHECK(r.errors.find("PATH is required") != std::string::npos);
}

TEST_CASE("scan: ref drops the digest of a pinned tag, and keeps it when there is no tag", "[cli][scan]") {
  TempDir dir("bw-cli-scan");
  std::string f = dir.write("Dockerfile",
                            "FROM ghcr.io/acme/builder@" + k_digest + " AS build\n"
                            "FROM alpine:3.20@" + k_digest + "\n"
                            "COPY --from=build / /\n");
  auto r = basewatch({"scan", "--json", f});
  CHECK(r.status == 0);
  CHECK(json::parse(r.output, nullptr, false) ==
        json{{"files", json::array({scanned(f, {
            image("ghcr.io/acme/builder@" + k_digest, "ghcr.io/acme/builder@" + k_digest, 1, "build", "buildtime", "from",
                  nullptr, k_digest),
            image("docker.io/library/alpine:3.20", "alpine:3.20@" + k_digest, 2, "1", "runtime", "from", nullptr, k_digest),
        })})}});
}
