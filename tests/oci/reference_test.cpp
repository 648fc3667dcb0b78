// Reference grammar and normalisation: tables of valid references with their
// normalised form, and invalid ones with the exact message a user reads.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "oci/reference.h"

using bw::oci::parse_reference;
using bw::oci::Reference;

namespace {

const std::string k_d256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const std::string k_d512 =
    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd"
    "47417a81a538327af927da3e";

struct Valid {
  std::string text;
  std::string registry;
  std::string repository;
  std::string tag;
  std::string digest;
  std::string str;
};

struct Invalid {
  std::string text;
  std::string cause;  // the part after `invalid reference "<text>": `
};

}  // namespace

TEST_CASE("reference: valid references normalise as documented") {
  const std::string tag128(128, 't');
  const std::string long_repo(237, 'x');  // docker.io/library/ + 237 = 255
  const std::vector<Valid> cases = {
      {"alpine", "docker.io", "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
      {"alpine:3.20", "docker.io", "library/alpine", "3.20", "", "docker.io/library/alpine:3.20"},
      {"ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", "", "docker.io/library/ubuntu:22.04"},
      {"library/alpine", "docker.io", "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
      {"docker.io/alpine", "docker.io", "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
      {"docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", "", "docker.io/library/alpine:edge"},
      {"index.docker.io/library/alpine", "docker.io", "library/alpine", "latest", "",
       "docker.io/library/alpine:latest"},
      {"index.docker.io/alpine:3", "docker.io", "library/alpine", "3", "", "docker.io/library/alpine:3"},
      {"index.docker.io/bitnami/redis", "docker.io", "bitnami/redis", "latest", "", "docker.io/bitnami/redis:latest"},
      {"bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", "", "docker.io/bitnami/redis:7.2"},
      {"ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1", "", "ghcr.io/org/app:v1"},
      {"ghcr.io/app", "ghcr.io", "app", "latest", "", "ghcr.io/app:latest"},
      {"localhost/foo", "localhost", "foo", "latest", "", "localhost/foo:latest"},
      {"localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", "tag", "", "localhost:5000/foo/bar:tag"},
      {"127.0.0.1:5000/foo", "127.0.0.1:5000", "foo", "latest", "", "127.0.0.1:5000/foo:latest"},
      {"1.2.3.4/x", "1.2.3.4", "x", "latest", "", "1.2.3.4/x:latest"},
      {"[::1]:5000/foo:1", "[::1]:5000", "foo", "1", "", "[::1]:5000/foo:1"},
      {"[2001:db8::1]/team/app", "[2001:db8::1]", "team/app", "latest", "", "[2001:db8::1]/team/app:latest"},
      {"[2001:DB8::A]:443/x", "[2001:db8::a]:443", "x", "latest", "", "[2001:db8::a]:443/x:latest"},
      {"registry.example.com:443/a/b/c/d:x", "registry.example.com:443", "a/b/c/d", "x", "",
       "registry.example.com:443/a/b/c/d:x"},
      {"quay.io/org/sub/team/app:1.0-rc.1", "quay.io", "org/sub/team/app", "1.0-rc.1", "",
       "quay.io/org/sub/team/app:1.0-rc.1"},
      {"mcr.microsoft.com/dotnet/sdk:8.0", "mcr.microsoft.com", "dotnet/sdk", "8.0", "",
       "mcr.microsoft.com/dotnet/sdk:8.0"},
      {"gcr.io/google-containers/pause-amd64:3.1", "gcr.io", "google-containers/pause-amd64", "3.1", "",
       "gcr.io/google-containers/pause-amd64:3.1"},
      {"foo:5000/bar", "foo:5000", "bar", "latest", "", "foo:5000/bar:latest"},
      {"a.b-c.d/x", "a.b-c.d", "x", "latest", "", "a.b-c.d/x:latest"},
      {"xn--bcher-kva.example/x", "xn--bcher-kva.example", "x", "latest", "", "xn--bcher-kva.example/x:latest"},
      {"GHCR.IO/org/app", "ghcr.io", "org/app", "latest", "", "ghcr.io/org/app:latest"},
      {"Docker.IO/alpine", "docker.io", "library/alpine", "latest", "", "docker.io/library/alpine:latest"},
      {"0/1", "docker.io", "0/1", "latest", "", "docker.io/0/1:latest"},
      // An uppercase letter makes the first component a host, as docker's library decides.
      {"Foo/bar", "Foo", "bar", "latest", "", "Foo/bar:latest"},
      {"MyRegistry/team/app:1", "MyRegistry", "team/app", "1", "", "MyRegistry/team/app:1"},
      {"LOCALHOST/x", "localhost", "x", "latest", "", "localhost/x:latest"},
      {"my-app/x__y/a.b/c_d/e---f", "docker.io", "my-app/x__y/a.b/c_d/e---f", "latest", "",
       "docker.io/my-app/x__y/a.b/c_d/e---f:latest"},
      {"a/b:Tag_With.Caps-1", "docker.io", "a/b", "Tag_With.Caps-1", "", "docker.io/a/b:Tag_With.Caps-1"},
      {"ubuntu:_private", "docker.io", "library/ubuntu", "_private", "", "docker.io/library/ubuntu:_private"},
      {"ubuntu:" + tag128, "docker.io", "library/ubuntu", tag128, "", "docker.io/library/ubuntu:" + tag128},
      // No '/': the whole text is a Docker Hub name, so ":5000" is a tag.
      {"localhost:5000", "docker.io", "library/localhost", "5000", "", "docker.io/library/localhost:5000"},
      {"alpine@" + k_d256, "docker.io", "library/alpine", "", k_d256, "docker.io/library/alpine@" + k_d256},
      {"alpine:3.20@" + k_d256, "docker.io", "library/alpine", "3.20", k_d256,
       "docker.io/library/alpine:3.20@" + k_d256},
      {"ghcr.io/a/b@" + k_d512, "ghcr.io", "a/b", "", k_d512, "ghcr.io/a/b@" + k_d512},
      {"localhost:5000/a:1@" + k_d256, "localhost:5000", "a", "1", k_d256, "localhost:5000/a:1@" + k_d256},
      {long_repo, "docker.io", "library/" + long_repo, "latest", "", "docker.io/library/" + long_repo + ":latest"},
  };
  REQUIRE(cases.size() >= 30);
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto r = parse_reference(c.text);
    REQUIRE(r.ok());
    CHECK(r->registry == c.registry);
    CHECK(r->repository == c.repository);
    CHECK(r->tag == c.tag);
    CHECK(r->digest == c.digest);
    CHECK(r->str() == c.str);
    CHECK(r->pinned() == !c.digest.empty());
    // Normalised output parses back to itself.
    auto again = parse_reference(r->str());
    REQUIRE(again.ok());
    CHECK(*again == *r);
  }
}

TEST_CASE("reference: invalid references name their cause exactly") {
  const std::string d_upper = "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
  const std::string hex64 = k_d256.substr(7);
  const std::vector<Invalid> cases = {
      {"", "reference is empty"},
      {"Alpine", "repository name must be lowercase"},
      {"ALPINE:latest", "repository name must be lowercase"},
      {"docker.io/Library/alpine", "repository name must be lowercase"},
      {"foo/Bar", "repository name must be lowercase"},
      {"Foo/Bar", "repository name must be lowercase"},
      {"Foo_x/bar", "registry host \"Foo_x\" contains invalid character '_'"},
      {":tag", "repository name is empty"},
      {"ghcr.io/", "repository name is empty"},
      {"@" + k_d256, "repository name is empty"},
      {"alpine:", "tag is empty"},
      {"alpine@", "digest is empty"},
      {"alpine:-x", "tag \"-x\" must start with a letter, digit or '_'"},
      {"alpine:.x", "tag \".x\" must start with a letter, digit or '_'"},
      {"alpine:a:b", "tag \"a:b\" contains invalid character ':'"},
      {"alpine:a b", "tag \"a b\" contains invalid character ' '"},
      {"a/b:c/d", "tag \"c/d\" contains invalid character '/'"},
      {"alpine:" + std::string(129, 't'), "tag is 129 characters long (at most 128)"},
      {"alpine@sha256:abc", "sha256 digest must have 64 hex characters, found 3"},
      {"alpine@" + d_upper, "sha256 digest must be lowercase hex, found 'E'"},
      {"alpine@" + k_d256 + "@" + k_d256, "sha256 digest must be lowercase hex, found '@'"},
      {"alpine@sha512:" + hex64, "sha512 digest must have 128 hex characters, found 64"},
      {"alpine@md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm \"md5\" (sha256 or sha512)"},
      {"alpine@sha256", "digest \"sha256\" must be algorithm:hex"},
      {"foo//bar", "repository path has an empty component"},
      {"foo/bar/", "repository path has an empty component"},
      {"-foo", "path component \"-foo\" must start with a lowercase letter or digit"},
      {"foo-", "path component \"foo-\" must end with a lowercase letter or digit"},
      {"ghcr.io/org/_app", "path component \"_app\" must start with a lowercase letter or digit"},
      {"foo..bar", "path component \"foo..bar\" has invalid separator \"..\""},
      {"foo___bar", "path component \"foo___bar\" has invalid separator \"___\""},
      {"foo._bar", "path component \"foo._bar\" has invalid separator \"._\""},
      {"foo-.bar", "path component \"foo-.bar\" has invalid separator \"-.\""},
      {"foo+bar", "path component \"foo+bar\" contains invalid character '+'"},
      {"foo bar", "path component \"foo bar\" contains invalid character ' '"},
      {"ghcr.io/foo bar", "path component \"foo bar\" contains invalid character ' '"},
      {"ubuntu\n", "path component \"ubuntu\n\" contains invalid character byte 0x0a"},
      {"a..b.com/x", "registry host \"a..b.com\" has an empty label"},
      {".foo/x", "registry host \".foo\" has an empty label"},
      {"-a.com/x", "registry host \"-a.com\" has a label that starts or ends with '-'"},
      {"a_b.com/x", "registry host \"a_b.com\" contains invalid character '_'"},
      {":5000/x", "registry host is empty"},
      {"host:/x", "registry \"host:\" has an empty port"},
      {"host:abc/x", "registry port \"abc\" must be a number"},
      {"host:99999/x", "registry port 99999 is out of range (1-65535)"},
      {"host:0/x", "registry port 0 is out of range (1-65535)"},
      {"[::1/x", "registry \"[::1\" has an unclosed '['"},
      {"[::g]:5000/x", "invalid IPv6 address \"[::g]\" in registry"},
      {"[]:5000/x", "invalid IPv6 address \"[]\" in registry"},
      {"[::1]x:1/y", "registry \"[::1]x:1\" has text after ']' that is not a port"},
      {hex64, "a 64-character hex string is an image ID, not a repository name"},
      {std::string(238, 'x'), "name is 256 characters long (at most 255)"},
      {"ghcr.io/" + std::string(248, 'y'), "name is 256 characters long (at most 255)"},
  };
  REQUIRE(cases.size() >= 30);
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto r = parse_reference(c.text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == bw::ErrorKind::invalid);
    CHECK(r.error().message == "invalid reference \"" + c.text + "\": " + c.cause);
  }
}

TEST_CASE("reference: formatting helpers") {
  auto plain = parse_reference("ghcr.io/org/app:1.2");
  REQUIRE(plain.ok());
  CHECK(plain->name() == "ghcr.io/org/app");
  CHECK(plain->tag_ref() == "ghcr.io/org/app:1.2");
  CHECK_FALSE(plain->pinned());

  auto pinned = parse_reference("alpine:3.20@" + k_d256);
  REQUIRE(pinned.ok());
  CHECK(pinned->pinned());
  CHECK(pinned->tag_ref() == "docker.io/library/alpine:3.20");
  CHECK(pinned->name() == "docker.io/library/alpine");

  auto digest_only = parse_reference("alpine@" + k_d256);
  REQUIRE(digest_only.ok());
  CHECK(digest_only->tag.empty());
  CHECK(digest_only->tag_ref() == "docker.io/library/alpine@" + k_d256);
}

TEST_CASE("reference: api_host and is_valid_digest") {
  CHECK(bw::oci::api_host("docker.io") == "registry-1.docker.io");
  CHECK(bw::oci::api_host("index.docker.io") == "registry-1.docker.io");
  CHECK(bw::oci::api_host("ghcr.io") == "ghcr.io");
  CHECK(bw::oci::api_host("localhost:5000") == "localhost:5000");
  CHECK(bw::oci::api_host("[::1]:5000") == "[::1]:5000");

  CHECK(bw::oci::is_valid_digest(k_d256));
  CHECK(bw::oci::is_valid_digest(k_d512));
  CHECK_FALSE(bw::oci::is_valid_digest(""));
  CHECK_FALSE(bw::oci::is_valid_digest("sha256:"));
  CHECK_FALSE(bw::oci::is_valid_digest(k_d256 + "0"));
  CHECK_FALSE(bw::oci::is_valid_digest(k_d256.substr(0, k_d256.size() - 1)));
  CHECK_FALSE(bw::oci::is_valid_digest("SHA256:" + k_d256.substr(7)));
  CHECK_FALSE(bw::oci::is_valid_digest("md5:d41d8cd98f00b204e9800998ecf8427e"));
}
