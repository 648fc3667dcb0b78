// Platforms: normalisation and matching tables, index parsing (attestations,
// nested indexes, unknown media types, bad JSON) and platform selection.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "oci/platform.h"

using namespace bw::oci;

namespace {

std::string digest_of(char c) { return "sha256:" + std::string(64, c); }

Platform plat(std::string os, std::string arch, std::string variant = "") {
  return Platform{std::move(os), std::move(arch), std::move(variant), ""};
}

constexpr const char* k_oci_index = "application/vnd.oci.image.index.v1+json";
constexpr const char* k_oci_manifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* k_docker_list = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* k_docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";

IndexEntry entry(std::string media_type, char d, std::optional<Platform> p, bool attestation = false) {
  IndexEntry e;
  e.media_type = std::move(media_type);
  e.digest = digest_of(d);
  if (p) e.platform = normalize(*p);
  e.attestation = attestation;
  return e;
}

}  // namespace

TEST_CASE("platform: parse and normalise table") {
  struct Case {
    std::string text;
    std::string normalised;
  };
  const std::vector<Case> cases = {
      {"linux/amd64", "linux/amd64"},
      {"linux/x86_64", "linux/amd64"},
      {"linux/x86-64", "linux/amd64"},
      {"linux/amd64/v1", "linux/amd64"},
      {"linux/amd64/v3", "linux/amd64/v3"},
      {"linux/aarch64", "linux/arm64"},
      {"linux/arm64", "linux/arm64"},
      {"linux/arm64/v8", "linux/arm64"},
      {"linux/arm64/8", "linux/arm64"},
      {"linux/aarch64/v8", "linux/arm64"},
      {"linux/arm64/v9", "linux/arm64/v9"},
      {"linux/arm64/9.0", "linux/arm64/v9"},
      {"linux/arm64/v8.0", "linux/arm64"},
      {"linux/i386/x", "linux/386"},
      {"linux/armhf", "linux/arm/v7"},
      {"linux/armel", "linux/arm/v6"},
      {"linux/arm", "linux/arm/v7"},
      {"linux/arm/7", "linux/arm/v7"},
      {"linux/arm/v7", "linux/arm/v7"},
      {"linux/arm/v6", "linux/arm/v6"},
      {"linux/arm/6", "linux/arm/v6"},
      {"linux/arm/5", "linux/arm/v5"},
      {"linux/i386", "linux/386"},
      {"linux/386", "linux/386"},
      {"Linux/AMD64", "linux/amd64"},
      {"LINUX/ARM/V7", "linux/arm/v7"},
      {"windows/amd64", "windows/amd64"},
      {"linux/ppc64le", "linux/ppc64le"},
      {"linux/s390x", "linux/s390x"},
      {"linux/riscv64", "linux/riscv64"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto p = parse_platform(c.text);
    REQUIRE(p.ok());
    CHECK(p->str() == c.normalised);
  }
}

TEST_CASE("platform: invalid platforms") {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "invalid platform \"\": platform is empty"},
      {"linux", "invalid platform \"linux\": expected os/architecture[/variant]"},
      {"linux/", "invalid platform \"linux/\": empty part, expected os/architecture[/variant]"},
      {"/amd64", "invalid platform \"/amd64\": empty part, expected os/architecture[/variant]"},
      {"linux//v7", "invalid platform \"linux//v7\": empty part, expected os/architecture[/variant]"},
      {"linux/arm/v7/x", "invalid platform \"linux/arm/v7/x\": more than three parts, expected os/architecture[/variant]"},
      {"linux/amd 64", "invalid platform \"linux/amd 64\": contains invalid character ' '"},
      {"linux/amd64,linux/arm64", "invalid platform \"linux/amd64,linux/arm64\": contains invalid character ','"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto p = parse_platform(c.text);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().kind == bw::ErrorKind::invalid);
    CHECK(p.error().message == c.message);
  }
}

TEST_CASE("platform: normalize keeps os.version and lowercases") {
  Platform p{"Windows", "AMD64", "", "10.0.17763.5820"};
  auto n = normalize(p);
  CHECK(n.os == "windows");
  CHECK(n.architecture == "amd64");
  CHECK(n.os_version == "10.0.17763.5820");
}

TEST_CASE("platform: matches table") {
  struct Case {
    Platform wanted;
    Platform candidate;
    bool match;
  };
  const std::vector<Case> cases = {
      {plat("linux", "arm64"), plat("linux", "arm64", "v8"), true},
      {plat("linux", "arm64", "v8"), plat("linux", "arm64"), true},
      {plat("linux", "arm64"), plat("linux", "aarch64"), true},
      {plat("linux", "amd64"), plat("linux", "x86_64"), true},
      {plat("linux", "arm"), plat("linux", "arm", "v7"), true},
      {plat("linux", "armhf"), plat("linux", "arm", "v7"), true},
      {plat("linux", "armel"), plat("linux", "arm", "v6"), true},
      {plat("linux", "i386"), plat("linux", "386"), true},
      {plat("linux", "arm", "v7"), plat("linux", "arm", "v6"), false},
      {plat("linux", "arm", "v6"), plat("linux", "arm", "v7"), false},
      {plat("linux", "arm64"), plat("linux", "arm", "v7"), false},
      {plat("linux", "amd64"), plat("windows", "amd64"), false},
      {plat("linux", "amd64"), plat("linux", "arm64"), false},
      {plat("linux", "arm64"), plat("linux", "arm64", "v9"), false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.wanted.str(), c.candidate.str());
    CHECK(matches(c.wanted, c.candidate) == c.match);
  }
}

TEST_CASE("platform: accept header and media types") {
  CHECK(std::string(k_accept_header) ==
        "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,"
        "application/vnd.docker.distribution.manifest.list.v2+json,"
        "application/vnd.docker.distribution.manifest.v2+json");
  CHECK(is_index_media_type(k_oci_index));
  CHECK(is_index_media_type(k_docker_list));
  CHECK_FALSE(is_index_media_type(k_oci_manifest));
  CHECK_FALSE(is_index_media_type(k_docker_manifest));
  CHECK(is_manifest_media_type(k_oci_manifest));
  CHECK(is_manifest_media_type(k_docker_manifest));
  CHECK_FALSE(is_manifest_media_type(k_oci_index));
  CHECK_FALSE(is_manifest_media_type("application/vnd.docker.distribution.manifest.v1+prettyjws"));
  CHECK_FALSE(is_manifest_media_type("application/vnd.oci.image.config.v1+json"));
  CHECK_FALSE(is_manifest_media_type(""));
  // As a Content-Type header value: parameters and case do not matter.
  CHECK(is_manifest_media_type("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"));
  CHECK(is_index_media_type(" Application/VND.OCI.Image.Index.v1+JSON "));
}

namespace {

// The shape Docker Hub serves for a BuildKit-built official image: two
// platforms, each followed by its attestation manifest.
const std::string k_hub_index = R"({
  "manifests": [
    {"annotations": {"org.opencontainers.image.revision": "abc"},
     "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "platform": {"architecture": "amd64", "os": "linux"}, "size": 1022},
    {"annotations": {"vnd.docker.reference.digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                     "vnd.docker.reference.type": "attestation-manifest"},
     "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "platform": {"architecture": "unknown", "os": "unknown"}, "size": 841},
    {"digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}, "size": 1022},
    {"annotations": {"vnd.docker.reference.type": "attestation-manifest"},
     "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444",
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "platform": {"architecture": "unknown", "os": "unknown"}, "size": 841},
    {"digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555",
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}, "size": 1022},
    {"digest": "sha256:6666666666666666666666666666666666666666666666666666666666666666",
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}, "size": 1022},
    {"digest": "sha256:7777777777777777777777777777777777777777777777777777777777777777",
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2113"}, "size": 1022}
  ],
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "schemaVersion": 2
})";

}  // namespace

TEST_CASE("index: Docker Hub index with attestations") {
  auto parsed = parse_index(k_hub_index);
  REQUIRE(parsed.ok());
  const auto& entries = *parsed;
  REQUIRE(entries.size() == 7);
  CHECK_FALSE(entries[0].attestation);
  CHECK(entries[1].attestation);
  CHECK(entries[3].attestation);
  REQUIRE(entries[2].platform);
  CHECK(entries[2].platform->str() == "linux/arm64");  // normalised from arm64/v8
  CHECK(entries[6].platform->os_version == "10.0.20348.2113");
  CHECK(entries[0].media_type == k_oci_manifest);

  struct Case {
    std::string wanted;
    char digest;  // 0: none
  };
  const std::vector<Case> cases = {
      {"linux/amd64", '1'},   {"linux/x86_64", '1'},  {"linux/arm64", '3'}, {"linux/arm64/v8", '3'},
      {"linux/aarch64", '3'}, {"linux/arm/v7", '6'},  {"linux/arm", '6'},   {"linux/armhf", '6'},
      {"linux/arm/v6", '5'},  {"linux/armel", '5'},   {"windows/amd64", '7'}, {"linux/s390x", 0},
      {"linux/arm/v5", 0},    {"unknown/unknown", 0}, {"linux/386", 0},
  };
  for (const auto& c : cases) {
    CAPTURE(c.wanted);
    auto wanted = parse_platform(c.wanted);
    REQUIRE(wanted.ok());
    auto got = select_platform(entries, *wanted);
    if (c.digest == 0) {
      CHECK_FALSE(got.has_value());
    } else {
      REQUIRE(got.has_value());
      CHECK(got->digest == digest_of(c.digest));
    }
  }
}

TEST_CASE("index: attestation detected by annotation alone or by unknown/unknown alone") {
  const std::string body = R"({"manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "platform": {"os": "linux", "architecture": "amd64"},
     "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
     "platform": {"os": "unknown", "architecture": "unknown"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
     "platform": {"os": "linux", "architecture": "amd64"},
     "annotations": {"vnd.docker.reference.type": "something-else"}}
  ]})";
  auto parsed = parse_index(body);
  REQUIRE(parsed.ok());
  REQUIRE(parsed->size() == 3);
  CHECK((*parsed)[0].attestation);
  CHECK((*parsed)[1].attestation);
  CHECK_FALSE((*parsed)[2].attestation);
  auto got = select_platform(*parsed, plat("linux", "amd64"));
  REQUIRE(got);
  CHECK(got->digest == digest_of('c'));
}

TEST_CASE("index: entry without platform counts as linux/amd64") {
  const std::string body = R"({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "digest": "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd", "size": 10}
  ]})";
  auto parsed = parse_index(body);
  REQUIRE(parsed.ok());
  REQUIRE(parsed->size() == 1);
  CHECK_FALSE((*parsed)[0].platform.has_value());
  CHECK(effective_platform((*parsed)[0]).str() == "linux/amd64");
  auto amd = select_platform(*parsed, plat("linux", "amd64"));
  REQUIRE(amd);
  CHECK(amd->digest == digest_of('d'));
  CHECK_FALSE(select_platform(*parsed, plat("linux", "arm64")).has_value());
}

TEST_CASE("index: nested indexes and unknown media types") {
  const std::string body = R"({"manifests": [
    {"mediaType": "application/vnd.example.unknown+json",
     "digest": "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
     "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     "platform": {"os": "linux", "architecture": "amd64"}},
    {"mediaType": "application/vnd.oci.image.index.v1+json",
     "digest": "sha256:1212121212121212121212121212121212121212121212121212121212121212",
     "platform": {"os": "linux", "architecture": "arm64"}},
    {"mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
     "digest": "sha256:3434343434343434343434343434343434343434343434343434343434343434"},
    {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "digest": "sha256:5656565656565656565656565656565656565656565656565656565656565656",
     "platform": {"os": "linux", "architecture": "amd64"}}
  ]})";
  auto parsed = parse_index(body);
  REQUIRE(parsed.ok());
  REQUIRE(parsed->size() == 5);
  CHECK((*parsed)[1].media_type.empty());

  // Unknown and missing media types are skipped, not errors.
  auto amd = select_platform(*parsed, plat("linux", "amd64"));
  REQUIRE(amd);
  CHECK(amd->digest == "sha256:5656565656565656565656565656565656565656565656565656565656565656");
  // A nested index with a matching platform is returned as it is.
  auto arm = select_platform(*parsed, plat("linux", "arm64", "v8"));
  REQUIRE(arm);
  CHECK(is_index_media_type(arm->media_type));
  CHECK(arm->digest == "sha256:1212121212121212121212121212121212121212121212121212121212121212");
  // A nested index without a platform is the last resort for anything else.
  auto s390 = select_platform(*parsed, plat("linux", "s390x"));
  REQUIRE(s390);
  CHECK(s390->digest == "sha256:3434343434343434343434343434343434343434343434343434343434343434");
}

TEST_CASE("index: selection prefers exact variant, then the closest older one, first on ties") {
  SECTION("exact match wins over an earlier compatible one") {
    std::vector<IndexEntry> entries = {entry(k_oci_manifest, 'a', plat("linux", "arm", "v6")),
                                       entry(k_oci_manifest, 'b', plat("linux", "arm", "v7"))};
    auto got = select_platform(entries, plat("linux", "arm", "v7"));
    REQUIRE(got);
    CHECK(got->digest == digest_of('b'));
  }
  SECTION("first of two exact matches wins") {
    std::vector<IndexEntry> entries = {entry(k_oci_manifest, 'a', plat("linux", "amd64")),
                                       entry(k_docker_manifest, 'b', plat("linux", "amd64"))};
    auto got = select_platform(entries, plat("linux", "amd64"));
    REQUIRE(got);
    CHECK(got->digest == digest_of('a'));
  }
  SECTION("arm/v7 falls back to the closest older variant") {
    std::vector<IndexEntry> entries = {entry(k_oci_manifest, 'a', plat("linux", "arm", "v5")),
                                       entry(k_oci_manifest, 'b', plat("linux", "arm", "v6")),
                                       entry(k_oci_manifest, 'c', plat("linux", "arm", "v6"))};
    auto got = select_platform(entries, plat("linux", "arm", "v7"));
    REQUIRE(got);
    CHECK(got->digest == digest_of('b'));
  }
  SECTION("a newer variant never runs on an older machine") {
    std::vector<IndexEntry> entries = {entry(k_oci_manifest, 'a', plat("linux", "arm", "v7"))};
    CHECK_FALSE(select_platform(entries, plat("linux", "arm", "v6")).has_value());
    std::vector<IndexEntry> v3 = {entry(k_oci_manifest, 'a', plat("linux", "amd64", "v3"))};
    CHECK_FALSE(select_platform(v3, plat("linux", "amd64")).has_value());
  }
  SECTION("amd64/v3 takes the baseline image") {
    std::vector<IndexEntry> entries = {entry(k_oci_manifest, 'a', plat("linux", "amd64"))};
    auto got = select_platform(entries, plat("linux", "amd64", "v3"));
    REQUIRE(got);
    CHECK(got->digest == digest_of('a'));
  }
  SECTION("attestations are skipped even when their platform matches") {
    std::vector<IndexEntry> entries = {entry(k_oci_manifest, 'a', plat("linux", "amd64"), true),
                                       entry(k_oci_manifest, 'b', plat("linux", "amd64"))};
    auto got = select_platform(entries, plat("linux", "amd64"));
    REQUIRE(got);
    CHECK(got->digest == digest_of('b'));
  }
  SECTION("empty index") { CHECK_FALSE(select_platform({}, plat("linux", "amd64")).has_value()); }
}

TEST_CASE("index: bad bodies are errors, never exceptions") {
  struct Case {
    std::string body;
    std::string message;
  };
  const std::string good_digest = "\"sha256:" + std::string(64, 'a') + "\"";
  const std::vector<Case> cases = {
      {"", "image index: not valid JSON"},
      {"{", "image index: not valid JSON"},
      {"not json", "image index: not valid JSON"},
      {"[]", "image index: not a JSON object"},
      {"\"manifests\"", "image index: not a JSON object"},
      {"{}", "image index: no \"manifests\" array (not an index?)"},
      {R"({"manifests": {}})", "image index: no \"manifests\" array (not an index?)"},
      {R"({"schemaVersion":2,"config":{},"layers":[]})", "image index: no \"manifests\" array (not an index?)"},
      {R"({"manifests": [1]})", "image index: entry 0 is not an object"},
      {R"({"manifests": [{}]})", "image index: entry 0 has no digest"},
      {R"({"manifests": [{"digest": 5}]})", "image index: entry 0 has no digest"},
      {R"({"manifests": [{"digest": "sha256:abc"}]})", "image index: entry 0 has an invalid digest"},
      {R"({"manifests": [{"digest": )" + good_digest + R"(}, {"digest": )" + good_digest +
           R"(, "platform": "linux/amd64"}]})",
       "image index: entry 1 has a platform that is not an object"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.body);
    auto parsed = parse_index(c.body);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().kind == bw::ErrorKind::bad_answer);
    CHECK(parsed.error().message == c.message);
  }
  // Wrongly typed optional fields are ignored rather than fatal.
  auto odd = parse_index(R"({"manifests": [{"digest": )" + good_digest +
                         R"(, "mediaType": 7, "platform": {"os": 1, "architecture": null}, "annotations": []}]})");
  REQUIRE(odd.ok());
  REQUIRE(odd->size() == 1);
  CHECK((*odd)[0].media_type.empty());
  CHECK((*odd)[0].platform->os.empty());
  // Deep nesting is not a crash.
  std::string deep = R"({"manifests": [], "x": )" + std::string(10000, '[') + std::string(10000, ']') + "}";
  auto deep_parsed = parse_index(deep);
  REQUIRE(deep_parsed.ok());
  CHECK(deep_parsed->empty());
}
