// `basewatch graph`, `impact` and `config check` on real config files and
// Dockerfiles: a chain through an internal base image, a diamond, unused
// stages that never count, a cycle between projects, and `dockerfiles:` globs.
#include <catch2/catch.hpp>

#include "tests/cli/cli_helpers.h"

using namespace bw::testing;
using json = nlohmann::json;

namespace {

// upstream alpine:3.20 -> project "base" -> image internal/base:1 -> project
// "app" (which also builds with golang, and has a docs stage on node that the
// target never reaches).
struct Chain {
  TempDir dir{"bw-cli-graph"};
  std::string config;
  Chain() {
    dir.write("base/Dockerfile", "FROM alpine:3.20\nRUN apk add --no-cache ca-certificates\n");
    dir.write("app/Dockerfile",
              "FROM golang:1.23 AS build\n"
              "RUN go build -o /app .\n"
              "FROM node:20 AS docs\n"
              "RUN npm run docs\n"
              "FROM registry.example.com/internal/base:1 AS runtime\n"
              "COPY --from=build /app /app\n");
    config = dir.write("config.yaml",
                       "database: " + dir.path() + "/basewatch.db\n"
                       "projects:\n"
                       "  - name: base\n"
                       "    dockerfile: base/Dockerfile\n"
                       "    image: registry.example.com/internal/base:1\n"
                       "    triggers: [ci]\n"
                       "  - name: app\n"
                       "    dockerfile: app/Dockerfile\n"
                       "    image: registry.example.com/apps/app:latest\n"
                       "    triggers: [ci]\n"
                       "triggers:\n"
                       "  ci: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n");
  }
};

}  // namespace

TEST_CASE("graph renders a chain through an internal base image as text, json and dot", "[cli][graph]") {
  Chain c;
  SECTION("text (the default)") {
    auto r = basewatch({"graph", "-c", c.config});
    INFO(r.errors);
    CHECK(r.status == 0);
    CHECK(r.output ==
          "projects, in build order:\n"
          "  base\n"
          "    uses docker.io/library/alpine:3.20\n"
          "    produces registry.example.com/internal/base:1\n"
          "  app\n"
          "    uses docker.io/library/golang:1.23\n"
          "    uses registry.example.com/internal/base:1 (built by base)\n"
          "    produces registry.example.com/apps/app:latest\n"
          "upstream references:\n"
          "  docker.io/library/alpine:3.20 -> base\n"
          "  docker.io/library/golang:1.23 -> app\n");
    CHECK(r.output.find("node") == std::string::npos);  // the unused docs stage
  }
  SECTION("json") {
    auto r = basewatch({"graph", "-c", c.config, "--format", "json"});
    CHECK(r.status == 0);
    auto out = json::parse(r.output, nullptr, false);
    REQUIRE(out.is_object());
    CHECK(out == json{{"nodes", json::array({
                          {{"id", "docker.io/library/alpine:3.20"}, {"kind", "upstream"}},
                          {{"id", "docker.io/library/golang:1.23"}, {"kind", "upstream"}},
                          {{"id", "base"}, {"kind", "project"}},
                          {{"id", "app"}, {"kind", "project"}},
                          {{"id", "registry.example.com/apps/app:latest"}, {"kind", "image"}},
                          {{"id", "registry.example.com/internal/base:1"}, {"kind", "image"}},
                      })},
                      {"edges", json::array({
                          {{"from", "docker.io/library/alpine:3.20"}, {"to", "base"}},
                          {{"from", "base"}, {"to", "registry.example.com/internal/base:1"}},
                          {{"from", "docker.io/library/golang:1.23"}, {"to", "app"}},
                          {{"from", "registry.example.com/internal/base:1"}, {"to", "app"}},
                          {{"from", "app"}, {"to", "registry.example.com/apps/app:latest"}},
                      })}});
  }
  SECTION("dot") {
    auto r = basewatch({"graph", "-c", c.config, "--format", "dot"});
    CHECK(r.status == 0);
    CHECK(r.output ==
          "digraph basewatch {\n"
          "  rankdir=LR;\n"
          "  \"docker.io/library/alpine:3.20\" [shape=ellipse];\n"
          "  \"docker.io/library/golang:1.23\" [shape=ellipse];\n"
          "  \"base\" [shape=box, style=\"rounded,filled\", fillcolor=\"#dde8f7\"];\n"
          "  \"app\" [shape=box, style=\"rounded,filled\", fillcolor=\"#dde8f7\"];\n"
          "  \"registry.example.com/apps/app:latest\" [shape=note];\n"
          "  \"registry.example.com/internal/base:1\" [shape=note];\n"
          "  \"docker.io/library/alpine:3.20\" -> \"base\";\n"
          "  \"base\" -> \"registry.example.com/internal/base:1\";\n"
          "  \"docker.io/library/golang:1.23\" -> \"app\";\n"
          "  \"registry.example.com/internal/base:1\" -> \"app\";\n"
          "  \"app\" -> \"registry.example.com/apps/app:latest\";\n"
          "}\n");
  }
  SECTION("an unknown format is a usage error") {
    auto r = basewatch({"graph", "-c", c.config, "--format", "svg"});
    CHECK(r.status == 2);
    CHECK(r.output.empty());
  }
}

TEST_CASE("impact follows the chain in build order; unused stages never appear", "[cli][impact]") {
  Chain c;
  auto r = basewatch({"impact", "-c", c.config, "docker.io/library/alpine:3.20"});
  INFO(r.errors);
  CHECK(r.status == 0);
  CHECK(r.output == "base\napp\n");

  // The short form normalises to the same reference.
  CHECK(basewatch({"impact", "-c", c.config, "alpine:3.20"}).output == "base\napp\n");
  CHECK(basewatch({"impact", "-c", c.config, "registry.example.com/internal/base:1"}).output == "app\n");
  CHECK(basewatch({"impact", "-c", c.config, "golang:1.23"}).output == "app\n");

  auto json_out = basewatch({"impact", "-c", c.config, "--json", "alpine:3.20"});
  CHECK(json_out.status == 0);
  CHECK(json::parse(json_out.output, nullptr, false) ==
        json{{"ref", "docker.io/library/alpine:3.20"}, {"plan", {"base", "app"}}});

  // node:20 is only in the docs stage, which the runtime target never reaches.
  auto unused = basewatch({"impact", "-c", c.config, "--json", "node:20"});
  CHECK(unused.status == 0);
  CHECK(json::parse(unused.output, nullptr, false) == json{{"ref", "docker.io/library/node:20"}, {"plan", json::array()}});
  auto unused_text = basewatch({"impact", "-c", c.config, "node:20"});
  CHECK(unused_text.status == 0);
  CHECK(unused_text.output.empty());

  auto bad = basewatch({"impact", "-c", c.config, "Not A Ref"});
  CHECK(bad.status == 2);
  CHECK(bad.output.empty());
  CHECK(bad.errors.rfind("basewatch: ", 0) == 0);
}

TEST_CASE("impact of a diamond lists every project once, dependencies first, ties by name", "[cli][impact]") {
  TempDir dir("bw-cli-graph");
  dir.write("core/Dockerfile", "FROM debian:bookworm-slim\n");
  dir.write("left/Dockerfile", "FROM registry.example.com/internal/core:1\n");
  dir.write("right/Dockerfile", "FROM registry.example.com/internal/core:1\n");
  // app reaches right only through a COPY --from in a stage its target needs.
  dir.write("app/Dockerfile",
            "FROM registry.example.com/internal/right:1 AS assets\n"
            "FROM registry.example.com/internal/left:1\n"
            "COPY --from=assets /srv /srv\n");
  dir.write("zeta/Dockerfile", "FROM debian:bookworm-slim\n");
  std::string config = dir.write("config.yaml",
                                 "projects:\n"
                                 "  - {name: zeta, dockerfile: zeta/Dockerfile}\n"
                                 "  - {name: app, dockerfile: app/Dockerfile}\n"
                                 "  - {name: right, dockerfile: right/Dockerfile, image: registry.example.com/internal/right:1}\n"
                                 "  - {name: left, dockerfile: left/Dockerfile, image: registry.example.com/internal/left:1}\n"
                                 "  - {name: core, dockerfile: core/Dockerfile, image: registry.example.com/internal/core:1}\n");
  auto r = basewatch({"impact", "-c", config, "debian:bookworm-slim"});
  INFO(r.errors);
  CHECK(r.status == 0);
  CHECK(r.output == "core\nleft\nright\napp\nzeta\n");
  CHECK(basewatch({"impact", "-c", config, "registry.example.com/internal/right:1"}).output == "app\n");
  CHECK(basewatch({"impact", "-c", config, "--json", "registry.example.com/internal/core:1"}).output ==
        "{\"plan\":[\"left\",\"right\",\"app\"],\"ref\":\"registry.example.com/internal/core:1\"}\n");
}

TEST_CASE("a dependency cycle between projects is a config error naming them", "[cli][graph]") {
  TempDir dir("bw-cli-graph");
  dir.write("a/Dockerfile", "FROM registry.example.com/internal/c:1\n");
  dir.write("b/Dockerfile", "FROM registry.example.com/internal/a:1\n");
  // c uses b only in a build stage: a cycle all the same.
  dir.write("c/Dockerfile", "FROM registry.example.com/internal/b:1 AS tools\nFROM alpine:3.20\nCOPY --from=tools / /\n");
  dir.write("d/Dockerfile", "FROM alpine:3.20\n");
  std::string config = dir.write("config.yaml",
                                 "projects:\n"
                                 "  - {name: d, dockerfile: d/Dockerfile}\n"
                                 "  - {name: c, dockerfile: c/Dockerfile, image: registry.example.com/internal/c:1}\n"
                                 "  - {name: b, dockerfile: b/Dockerfile, image: registry.example.com/internal/b:1}\n"
                                 "  - {name: a, dockerfile: a/Dockerfile, image: registry.example.com/internal/a:1}\n");
  const std::string message = "basewatch: dependency cycle between projects: a -> b -> c -> a\n";
  for (std::vector<std::string> args : {std::vector<std::string>{"graph", "-c", config},
                                        std::vector<std::string>{"graph", "-c", config, "--format", "json"},
                                        std::vector<std::string>{"impact", "-c", config, "alpine:3.20"},
                                        std::vector<std::string>{"config", "check", "-c", config}}) {
    auto r = basewatch(args);
    INFO(args[0]);
    CHECK(r.status == 2);
    CHECK(r.output.empty());
    CHECK(r.errors == message);
  }

  // An unused stage cannot close a cycle: BuildKit never builds it.
  dir.write("c/Dockerfile", "FROM registry.example.com/internal/b:1 AS tools\nFROM alpine:3.20\n");
  auto r = basewatch({"impact", "-c", config, "alpine:3.20"});
  INFO(r.errors);
  CHECK(r.status == 0);
  CHECK(r.output == "c\na\nb\nd\n");
}

TEST_CASE("config check: ok, a broken Dockerfile, and config errors with file:line:column", "[cli][config]") {
  TempDir dir("bw-cli-config");
  dir.write("web/Dockerfile", "FROM alpine:3.20\n");
  dir.write("api/Dockerfile", "FROM golang:1.23 AS build\nFROM alpine:3.20\nCOPY --from=build / /\n");
  std::string good = dir.write("good.yaml",
                               "projects:\n"
                               "  - name: web\n"
                               "    dockerfile: web/Dockerfile\n"
                               "    triggers: [ci]\n"
                               "  - name: api\n"
                               "    dockerfile: api/Dockerfile\n"
                               "triggers:\n"
                               "  ci: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
                               "watch:\n"
                               "  - ref: docker.io/library/redis:7\n");
  auto ok = basewatch({"config", "check", "-c", good});
  INFO(ok.errors);
  CHECK(ok.status == 0);
  CHECK(ok.output == good + ": ok (2 projects, 3 references to watch, 1 triggers)\n");
  CHECK(ok.errors.empty());

  // -c defaults to $BASEWATCH_CONFIG.
  auto from_env = basewatch({"config", "check"}, {{"BASEWATCH_CONFIG", good}});
  CHECK(from_env.status == 0);
  CHECK(from_env.output == ok.output);

  SECTION("a Dockerfile that cannot be parsed is reported with its line, exit 1") {
    dir.write("api/Dockerfile", "FROM golang:1.23 AS build\nFROM alpine:3.20\nCOPY --from=build\n");
    auto r = basewatch({"config", "check", "-c", good});
    CHECK(r.status == 1);
    CHECK(r.errors == "basewatch: " + dir.path() + "/api/Dockerfile:3: COPY requires at least two arguments, but only "
                                                    "one was provided. Destination could not be determined\n");
  }
  SECTION("a missing Dockerfile is reported, exit 1") {
    std::string cfg = dir.write("missing.yaml", "projects:\n  - {name: gone, dockerfile: gone/Dockerfile}\n");
    auto r = basewatch({"config", "check", "-c", cfg});
    CHECK(r.status == 1);
    CHECK(r.errors == "basewatch: " + cfg + ":2:30: projects[0].dockerfile: " + dir.path() +
                          "/gone/Dockerfile: No such file or directory\n");
  }
  SECTION("an unknown key is a config error with file:line:column, exit 2") {
    std::string bad = dir.write("bad.yaml",
                                "projects:\n"
                                "  - name: web\n"
                                "    dockerfile: web/Dockerfile\n"
                                "    tagret: runtime\n");
    auto r = basewatch({"config", "check", "-c", bad});
    CHECK(r.status == 2);
    CHECK(r.output.empty());
    CHECK(r.errors == "basewatch: " + bad + ":4:5: projects[0]: unknown key \"tagret\" (did you mean \"target\"?)\n");
  }
  SECTION("a project with both dockerfile and dockerfiles is a config error, exit 2") {
    std::string bad = dir.write("both.yaml",
                                "projects:\n"
                                "  - name: web\n"
                                "    dockerfile: web/Dockerfile\n"
                                "    dockerfiles: '**/Dockerfile'\n");
    auto r = basewatch({"config", "check", "-c", bad});
    CHECK(r.status == 2);
    CHECK(r.errors == "basewatch: " + bad + ":2:5: projects[0]: exactly one of dockerfile or dockerfiles is required\n");
  }
  SECTION("an undefined trigger is a config error, exit 2") {
    std::string bad = dir.write("trigger.yaml",
                                "projects:\n"
                                "  - name: web\n"
                                "    dockerfile: web/Dockerfile\n"
                                "    triggers: [ci]\n");
    auto r = basewatch({"config", "check", "-c", bad});
    CHECK(r.status == 2);
    CHECK(r.errors == "basewatch: " + bad + ":4:15: projects[0].triggers: unknown trigger \"ci\"\n");
  }
  SECTION("a file that is not there is a config error, exit 2") {
    auto r = basewatch({"config", "check", "-c", dir.path() + "/nope.yaml"});
    CHECK(r.status == 2);
    CHECK(r.errors.rfind("basewatch: " + dir.path() + "/nope.yaml", 0) == 0);
  }
}

TEST_CASE("dockerfiles: a ** glob makes one project per file, named from its path", "[cli][config]") {
  TempDir dir("bw-cli-glob");
  dir.write("services/web/Dockerfile", "FROM alpine:3.20\n");
  dir.write("services/team/api/Dockerfile", "FROM golang:1.23 AS build\nFROM alpine:3.20\nCOPY --from=build / /\n");
  dir.write("services/team/api/worker/Dockerfile", "FROM python:3.12-slim\n");
  dir.write("services/web/README.md", "FROM nothing\n");
  dir.write("other/Dockerfile", "FROM node:20\n");
  std::string config = dir.write("config.yaml",
                                 "projects:\n"
                                 "  - dockerfiles: services/**/Dockerfile\n"
                                 "    triggers: [ci]\n"
                                 "triggers:\n"
                                 "  ci: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n");
  auto check = basewatch({"config", "check", "-c", config});
  INFO(check.errors);
  CHECK(check.status == 0);
  CHECK(check.output == config + ": ok (3 projects, 3 references to watch, 1 triggers)\n");

  auto r = basewatch({"graph", "-c", config});
  CHECK(r.status == 0);
  CHECK(r.output ==
        "projects, in build order:\n"
        "  team/api\n"
        "    uses docker.io/library/alpine:3.20\n"
        "    uses docker.io/library/golang:1.23\n"
        "  team/api/worker\n"
        "    uses docker.io/library/python:3.12-slim\n"
        "  web\n"
        "    uses docker.io/library/alpine:3.20\n"
        "upstream references:\n"
        "  docker.io/library/alpine:3.20 -> team/api web\n"
        "  docker.io/library/golang:1.23 -> team/api\n"
        "  docker.io/library/python:3.12-slim -> team/api/worker\n");
  CHECK(basewatch({"impact", "-c", config, "alpine:3.20"}).output == "team/api\nweb\n");

  SECTION("a glob that matches nothing is reported, exit 1") {
    std::string none = dir.write("none.yaml", "projects:\n  - dockerfiles: nowhere/**/Dockerfile\n");
    auto n = basewatch({"config", "check", "-c", none});
    CHECK(n.status == 1);
    CHECK(n.errors == "basewatch: " + none + ":2:5: dockerfiles: no file matches " + dir.path() +
                          "/nowhere/**/Dockerfile\n");
  }
}
