// `mirrors:` rules: parsing, errors to the letter, and the mapping both ways.
#include <catch2/catch.hpp>

#include "config/config.h"
#include "config/mirrors.h"

using namespace bw;

namespace {

const char* k_head =
    "watch:\n"
    "  - ref: alpine:3.20\n"
    "mirrors:\n";

std::string mirror_error(const std::string& rules) {
  auto c = config::parse(std::string(k_head) + rules, "c.yaml");
  REQUIRE_FALSE(c.ok());
  return c.error().message;
}

config::Config with_rules(const std::string& rules) {
  auto c = config::parse(std::string(k_head) + rules, "c.yaml");
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  return *c;
}

std::string mirror_of(const config::Config& c, const std::string& registry, const std::string& repo) {
  auto m = config::mirror_of(c.mirrors, registry, repo);
  return m ? m->mirror : "-";
}

std::string upstream_of(const config::Config& c, const std::string& registry, const std::string& repo) {
  auto m = config::upstream_of(c.mirrors, registry, repo);
  return m ? m->upstream : "-";
}

}  // namespace

TEST_CASE("mirror patterns are normalised like references", "[unit][config][mirrors]") {
  struct Case {
    const char* text;
    const char* expect;  // str(), or the error
  };
  const Case cases[] = {
      {"docker.io/library/*", "docker.io/library/*"},
      {"library/*", "docker.io/library/*"},
      {"alpine", "docker.io/library/alpine"},
      {"index.docker.io/library/alpine", "docker.io/library/alpine"},
      {"docker.io/*", "docker.io/*"},
      {"Registry.Example.com:5000/*", "registry.example.com:5000/*"},
      {"127.0.0.1:5000/hub/*", "127.0.0.1:5000/hub/*"},
      {"ghcr.io/org/app", "ghcr.io/org/app"},
      {"", "invalid mirror pattern \"\": expected a repository (docker.io/library/alpine) or a prefix ending in /* (docker.io/library/*)"},
      {"/*", "invalid mirror pattern \"/*\": expected a repository (docker.io/library/alpine) or a prefix ending in /* (docker.io/library/*)"},
      {"docker.io/*/alpine", "invalid mirror pattern \"docker.io/*/alpine\": '*' is only allowed as the last path component (prefix/*)"},
      {"docker.io/library/alpine:3.20", "invalid mirror pattern \"docker.io/library/alpine:3.20\": a pattern names repositories, not tags (the tag is kept from each reference)"},
      {"alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000", "invalid mirror pattern \"alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000\": a pattern names repositories, not digests"},
      {"docker.io/Library/*", "invalid mirror pattern \"docker.io/Library/*\": repository name must be lowercase"},
      {"docker.io/grafana/*", "docker.io/grafana/*"},
      {"grafana/*", "docker.io/grafana/*"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto p = config::parse_repo_pattern(c.text);
    CHECK((p ? p->str() : p.error().message) == c.expect);
  }
}

TEST_CASE("the most specific mirror rule wins, both ways", "[unit][config][mirrors]") {
  auto c = with_rules(
      "  - {from: docker.io/library/*, to: registry.example.com/hub/library/*}\n"
      "  - {from: docker.io/library/alpine, to: registry.example.com/base/alpine}\n"
      "  - {from: docker.io/*, to: registry.example.com/hub/*}\n"
      "  - {from: ghcr.io/org/tools/*, to: registry.example.com/ghcr/*}\n");
  CHECK(mirror_of(c, "docker.io", "library/alpine") == "registry.example.com/base/alpine");
  CHECK(mirror_of(c, "docker.io", "library/node") == "registry.example.com/hub/library/node");
  CHECK(mirror_of(c, "docker.io", "grafana/grafana") == "registry.example.com/hub/grafana/grafana");
  CHECK(mirror_of(c, "ghcr.io", "org/tools/lint/x") == "registry.example.com/ghcr/lint/x");
  CHECK(mirror_of(c, "ghcr.io", "org/tools") == "-");  // the prefix covers what is below it, not itself
  CHECK(mirror_of(c, "quay.io", "a/b") == "-");
  CHECK(upstream_of(c, "registry.example.com", "base/alpine") == "docker.io/library/alpine");
  CHECK(upstream_of(c, "registry.example.com", "hub/library/node") == "docker.io/library/node");
  CHECK(upstream_of(c, "registry.example.com", "hub/grafana/grafana") == "docker.io/grafana/grafana");
  CHECK(upstream_of(c, "registry.example.com", "ghcr/lint/x") == "ghcr.io/org/tools/lint/x");
  CHECK(upstream_of(c, "registry.example.com", "other/x") == "-");
  CHECK(upstream_of(c, "docker.io", "library/alpine") == "-");
  REQUIRE(c.mirrors.size() == 4);
  CHECK(c.mirrors[0].all_platforms);
  CHECK(c.mirrors[0].referrers);
  CHECK(c.mirrors[0].mark.str() == "c.yaml:4:5");
}

TEST_CASE("mirror rule options", "[unit][config][mirrors]") {
  auto c = with_rules(
      "  - from: docker.io/library/alpine\n"
      "    to: 127.0.0.1:5000/alpine\n"
      "    platforms: [linux/amd64, linux/arm64]\n"
      "    referrers: false\n"
      "    tags: ['3.19', latest]\n");
  REQUIRE(c.mirrors.size() == 1);
  CHECK_FALSE(c.mirrors[0].all_platforms);
  CHECK(c.mirrors[0].platforms == std::vector<std::string>{"linux/amd64", "linux/arm64"});
  CHECK_FALSE(c.mirrors[0].referrers);
  CHECK(c.mirrors[0].tags == std::vector<std::string>{"3.19", "latest"});
  CHECK(with_rules("  - {from: alpine, to: 127.0.0.1:5000/alpine, platforms: all}\n").mirrors[0].all_platforms);
  // A config whose only content is a mirror rule's tags has something to watch.
  CHECK(config::parse("mirrors:\n  - {from: alpine, to: 127.0.0.1:5000/alpine, tags: ['3.20']}\n", "c.yaml").ok());
}

TEST_CASE("mirror rule errors name the place and the cause", "[unit][config][mirrors]") {
  CHECK(mirror_error("  - {from: docker.io/library/*}\n") == "c.yaml:4:5: mirrors[0]: to is required");
  CHECK(mirror_error("  - {to: x.io/a}\n") == "c.yaml:4:5: mirrors[0]: from is required");
  CHECK(mirror_error("  - {from: docker.io/library/*, to: x.io/a, tag: [x]}\n") ==
        "c.yaml:4:45: mirrors[0]: unknown key \"tag\" (did you mean \"tags\"?)");
  CHECK(mirror_error("  - {from: docker.io/library/*, to: x.io/a}\n") ==
        "c.yaml:4:37: mirrors[0].to: from is a prefix (/*), so to must be one too");
  CHECK(mirror_error("  - {from: alpine, to: x.io/a/*}\n") ==
        "c.yaml:4:24: mirrors[0].to: from is one repository, so to must be one too (no /*)");
  CHECK(mirror_error("  - {from: Alpine, to: x.io/a}\n") ==
        "c.yaml:4:12: mirrors[0].from: invalid mirror pattern \"Alpine\": repository name must be lowercase");
  CHECK(mirror_error("  - {from: alpine, to: x.io/a, platforms: some}\n") ==
        "c.yaml:4:43: mirrors[0].platforms: expected all or a list of os/arch[/variant], got \"some\"");
  CHECK(mirror_error("  - {from: alpine, to: x.io/a, platforms: [amd64]}\n") ==
        "c.yaml:4:44: mirrors[0].platforms: invalid platform \"amd64\" (expected os/arch[/variant])");
  CHECK(mirror_error("  - {from: alpine, to: x.io/a, platforms: []}\n") ==
        "c.yaml:4:43: mirrors[0].platforms: the list is empty (use all)");
  CHECK(mirror_error("  - {from: alpine, to: x.io/a, tags: ['-bad']}\n") == "c.yaml:4:39: mirrors[0].tags: invalid tag \"-bad\"");
  CHECK(mirror_error("  - {from: alpine, to: x.io/a, referrers: maybe}\n") ==
        "c.yaml:4:43: mirrors[0].referrers: expected true or false, got \"maybe\"");
}

TEST_CASE("ambiguous or looping mirror rules are config errors", "[unit][config][mirrors]") {
  // One upstream, two places.
  CHECK(mirror_error("  - {from: docker.io/library/*, to: x.io/hub/*}\n"
                     "  - {from: library/*, to: y.io/hub/*}\n") ==
        "c.yaml:5:12: mirrors[1].from: docker.io/library/* is already mirrored by mirrors[0] (c.yaml:4:5) to x.io/hub/*; "
        "one upstream can have one mirror");
  // Two upstreams, one place.
  CHECK(mirror_error("  - {from: docker.io/library/*, to: x.io/hub/*}\n"
                     "  - {from: quay.io/org/*, to: x.io/hub/*}\n") ==
        "c.yaml:5:31: mirrors[1].to: x.io/hub/* already holds the copies of mirrors[0] (c.yaml:4:5, docker.io/library/*); "
        "two upstreams cannot share one mirror");
  // A mirror under its own upstream.
  CHECK(mirror_error("  - {from: x.io/*, to: x.io/mirror/*}\n") ==
        "c.yaml:4:24: mirrors[0].to: x.io/mirror/* is under its own upstream x.io/* (the copies would be mirrored again)");
  CHECK(mirror_error("  - {from: x.io/a/*, to: x.io/a/*}\n") ==
        "c.yaml:4:26: mirrors[0].to: x.io/a/* is under its own upstream x.io/a/* (the copies would be mirrored again)");
  CHECK(mirror_error("  - {from: x.io/a, to: x.io/a}\n") ==
        "c.yaml:4:24: mirrors[0].to: x.io/a is under its own upstream x.io/a (the copies would be mirrored again)");
  // A mirror under another rule's upstream: its copies would be copied again.
  CHECK(mirror_error("  - {from: docker.io/library/*, to: x.io/hub/*}\n"
                     "  - {from: x.io/*, to: y.io/x/*}\n") ==
        "c.yaml:4:37: mirrors[0].to: x.io/hub/* is under the upstream of mirrors[1] (c.yaml:5:5, x.io/*) "
        "(the copies would be mirrored again)");
  // Overlapping upstreams are fine: the most specific wins.
  CHECK(with_rules("  - {from: docker.io/library/*, to: x.io/hub/*}\n"
                   "  - {from: docker.io/library/alpine, to: x.io/alpine}\n")
            .mirrors.size() == 2);
}
