// WWW-Authenticate parsing and token scopes.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "oci/challenge.h"

using namespace bw::oci;

namespace {

using Params = std::map<std::string, std::string>;

Challenge make(std::string scheme, Params params, std::string token68 = "") {
  return Challenge{std::move(scheme), std::move(params), std::move(token68)};
}

}  // namespace

TEST_CASE("challenge: parsing table") {
  struct Case {
    std::string header;
    std::vector<Challenge> expected;
  };
  const std::vector<Case> cases = {
      // Docker Hub
      {R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")",
       {make("bearer", {{"realm", "https://auth.docker.io/token"},
                        {"service", "registry.docker.io"},
                        {"scope", "repository:library/alpine:pull"}})}},
      // GHCR
      {R"(Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:org/app:pull")",
       {make("bearer", {{"realm", "https://ghcr.io/token"}, {"service", "ghcr.io"}, {"scope", "repository:org/app:pull"}})}},
      // Registry 2.8 htpasswd
      {R"(Basic realm="Registry Realm")", {make("basic", {{"realm", "Registry Realm"}})}},
      // Registry token auth after a refused token, with error fields.
      {R"(Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull,push",error="insufficient_scope")",
       {make("bearer", {{"realm", "https://auth.example/token"},
                        {"service", "reg"},
                        {"scope", "repository:a:pull,push"},
                        {"error", "insufficient_scope"}})}},
      // Several challenges in one line.
      {"Bearer a=b, Basic realm=x", {make("bearer", {{"a", "b"}}), make("basic", {{"realm", "x"}})}},
      {R"(Basic realm="x", Bearer realm="https://t/token",service="s")",
       {make("basic", {{"realm", "x"}}), make("bearer", {{"realm", "https://t/token"}, {"service", "s"}})}},
      {"Negotiate, Basic realm=x", {make("negotiate", {}), make("basic", {{"realm", "x"}})}},
      {"Basic realm=x, Negotiate", {make("basic", {{"realm", "x"}}), make("negotiate", {})}},
      {"Negotiate abc+/def==, Basic realm=x", {make("negotiate", {}, "abc+/def=="), make("basic", {{"realm", "x"}})}},
      // Case-insensitive scheme and names; values keep their case.
      {R"(BEARER Realm="https://A/Token",SERVICE="Svc")",
       {make("bearer", {{"realm", "https://A/Token"}, {"service", "Svc"}})}},
      // Escapes in quoted strings.
      {R"(Basic realm="say \"hi\" \\ back\slash")", {make("basic", {{"realm", R"(say "hi" \ backslash)"}})}},
      {R"(Bearer realm="a,b=c",service="d")", {make("bearer", {{"realm", "a,b=c"}, {"service", "d"}})}},
      // Odd whitespace: bad whitespace around '=', tabs, spaces after commas, empty list elements.
      {"  Bearer   realm = \"r\" ,\tservice=\"s\"  ,  , scope=\"x y\"  ",
       {make("bearer", {{"realm", "r"}, {"service", "s"}, {"scope", "x y"}})}},
      {", ,Basic realm=x,,", {make("basic", {{"realm", "x"}})}},
      // Unquoted realm with ':' and '/' (not a token, but some servers send it).
      {"Bearer realm=https://auth.example/token,service=reg",
       {make("bearer", {{"realm", "https://auth.example/token"}, {"service", "reg"}})}},
      // A missing comma between parameters is forgiven.
      {R"(Bearer realm="r" service="s")", {make("bearer", {{"realm", "r"}, {"service", "s"}})}},
      // A repeated parameter keeps the first value.
      {"Basic realm=a, realm=b", {make("basic", {{"realm", "a"}})}},
      // Empty quoted value.
      {R"(Bearer realm="",service=s)", {make("bearer", {{"realm", ""}, {"service", "s"}})}},
      // Scheme alone.
      {"Bearer", {make("bearer", {})}},
      // Garbage.
      {"", {}},
      {"   ", {}},
      {",,,", {}},
      {"\"quoted\"", {}},
      {"=x", {}},
      {"Bearer=x", {}},
      // Errors part way: what was read is kept.
      {R"(Bearer realm="https://r",service="unterminated)", {make("bearer", {{"realm", "https://r"}})}},
      {R"(Bearer realm="r" "junk", Basic realm=x)", {make("bearer", {{"realm", "r"}})}},
      {R"(Bearer realm="r\)", {make("bearer", {})}},
      {"Basic realm=x, =y", {make("basic", {{"realm", "x"}})}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.header);
    auto got = parse_challenges(c.header);
    REQUIRE(got.size() == c.expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i].scheme == c.expected[i].scheme);
      CHECK(got[i].params == c.expected[i].params);
      CHECK(got[i].token68 == c.expected[i].token68);
    }
  }
}

TEST_CASE("challenge: several header lines and lookups") {
  std::vector<std::string> lines = {R"(Basic realm="reg")",
                                    R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io")"};
  auto got = parse_challenges(lines);
  REQUIRE(got.size() == 2);
  const auto* bearer = find_challenge(got, "Bearer");
  REQUIRE(bearer != nullptr);
  CHECK(bearer->realm() == "https://auth.docker.io/token");
  CHECK(bearer->service() == "registry.docker.io");
  CHECK(bearer->scope().empty());
  CHECK(bearer->param("SERVICE") == "registry.docker.io");
  const auto* basic = find_challenge(got, "basic");
  REQUIRE(basic != nullptr);
  CHECK(basic->realm() == "reg");
  CHECK(find_challenge(got, "negotiate") == nullptr);
  CHECK(find_challenge({}, "bearer") == nullptr);
}

TEST_CASE("scope: building, splitting and parsing") {
  CHECK(repository_scope("library/alpine") == "repository:library/alpine:pull");
  CHECK(repository_scope("org/app", "pull,push") == "repository:org/app:pull,push");

  CHECK(split_scopes("repository:a:pull repository:b:pull,push") ==
        std::vector<std::string>{"repository:a:pull", "repository:b:pull,push"});
  CHECK(split_scopes("  x \t y  ") == std::vector<std::string>{"x", "y"});
  CHECK(split_scopes("").empty());
  CHECK(split_scopes("   ").empty());

  struct Case {
    std::string text;
    std::optional<Scope> expected;
  };
  const std::vector<Case> cases = {
      {"repository:library/alpine:pull", Scope{"repository", "library/alpine", {"pull"}}},
      {"repository:org/app:pull,push", Scope{"repository", "org/app", {"pull", "push"}}},
      {"repository:localhost:5000/app:pull", Scope{"repository", "localhost:5000/app", {"pull"}}},
      {"repository:[::1]:5000/app:pull", Scope{"repository", "[::1]:5000/app", {"pull"}}},
      {"registry:catalog:*", Scope{"registry", "catalog", {"*"}}},
      {"repository:a:pull,,push", Scope{"repository", "a", {"pull", "push"}}},
      {"repository:a:", std::nullopt},
      {"repository::pull", std::nullopt},
      {":a:pull", std::nullopt},
      {"repository:pull", std::nullopt},
      {"nothing", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto got = parse_scope(c.text);
    REQUIRE(got.has_value() == c.expected.has_value());
    if (got) {
      CHECK(*got == *c.expected);
    }
  }
  auto round = parse_scope("repository:localhost:5000/app:pull,push");
  REQUIRE(round);
  CHECK(round->str() == "repository:localhost:5000/app:pull,push");
}
