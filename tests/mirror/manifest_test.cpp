// The descriptor graph: what a copy reads from manifests, to the letter, and
// the plan it makes from them.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "mirror/copy.h"
#include "mirror/manifest.h"
#include "util/crypto.h"

using namespace bw;
using json = nlohmann::json;

namespace {

const std::string k_d1 = "sha256:" + std::string(64, '1');
const std::string k_d2 = "sha256:" + std::string(64, '2');
const std::string k_d3 = "sha256:" + std::string(64, '3');

std::string parse_error(const std::string& body, const std::string& type = "") {
  auto m = mirror::parse_manifest(body, type);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().kind == ErrorKind::bad_answer);
  return m.error().message;
}

std::string image_manifest(const std::string& config, const std::vector<std::string>& layers) {
  json j = {{"schemaVersion", 2},
            {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
            {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", config}, {"size", 10}}},
            {"layers", json::array()}};
  for (const auto& l : layers) j["layers"].push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar"}, {"digest", l}, {"size", 100}});
  return j.dump();
}

}  // namespace

TEST_CASE("manifests are read into descriptors", "[unit][mirror]") {
  auto m = mirror::parse_manifest(image_manifest(k_d1, {k_d2, k_d3}), "application/json");
  REQUIRE(m.ok());
  CHECK(m->media_type == "application/vnd.oci.image.manifest.v1+json");
  CHECK_FALSE(m->index);
  REQUIRE(m->blobs.size() == 3);
  CHECK(m->blobs[0].digest == k_d1);
  CHECK(m->blobs[2].size == 100);

  // A Docker schema 2 manifest names its type in the body.
  json docker = json::parse(image_manifest(k_d1, {k_d2}));
  docker["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json";
  m = mirror::parse_manifest(docker.dump(), "");
  REQUIRE(m.ok());
  CHECK(m->media_type == "application/vnd.docker.distribution.manifest.v2+json");

  // An index, with an attestation entry and a platform to normalise.
  json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", k_d1}, {"size", 5},
                   {"platform", {{"os", "linux"}, {"architecture", "aarch64"}}}},
                  {{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", k_d2}, {"size", 6},
                   {"platform", {{"os", "unknown"}, {"architecture", "unknown"}}},
                   {"annotations", {{"vnd.docker.reference.type", "attestation-manifest"}, {"vnd.docker.reference.digest", k_d1}}}}}}};
  m = mirror::parse_manifest(index.dump(), "application/vnd.oci.image.index.v1+json");
  REQUIRE(m.ok());
  CHECK(m->index);
  REQUIRE(m->manifests.size() == 2);
  CHECK(m->manifests[0].platform->str() == "linux/arm64");
  CHECK_FALSE(m->manifests[0].attestation);
  CHECK(m->manifests[1].attestation);
  CHECK(m->manifests[1].attests == k_d1);

  // An artifact with a subject (a referrer).
  json art = json::parse(image_manifest(k_d1, {k_d2}));
  art["artifactType"] = "application/vnd.example.sbom";
  art["subject"] = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", k_d3}, {"size", 7}};
  m = mirror::parse_manifest(art.dump(), "");
  REQUIRE(m.ok());
  CHECK(m->artifact_type == "application/vnd.example.sbom");
  REQUIRE(m->subject);
  CHECK(m->subject->digest == k_d3);
}

TEST_CASE("a manifest that lies is refused, naming the field", "[unit][mirror]") {
  CHECK(parse_error("not json") == "manifest is not a JSON object");
  CHECK(parse_error("[1,2]") == "manifest is not a JSON object");
  CHECK(parse_error(R"({"schemaVersion":1,"name":"x"})") ==
        "schema 1 manifests (application/vnd.docker.distribution.manifest.v1+prettyjws) cannot be copied byte for byte");
  CHECK(parse_error("{}", "application/vnd.docker.distribution.manifest.v1+prettyjws") ==
        "schema 1 manifests (application/vnd.docker.distribution.manifest.v1+prettyjws) cannot be copied byte for byte");
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.index.v1+json"})") == "manifests: missing");
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{}})") == "manifests: expected a list");
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[7]})") == "manifests[0]: expected an object");
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"size":1}]})") ==
        "manifests[0].digest: missing");
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:xyz","size":1}]})") ==
        "manifests[0].digest: invalid digest \"sha256:xyz\"");
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json"})") == "config: missing");
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":")" + k_d1 + R"("}})") ==
        "config.size: missing");
  for (const char* size : {"-1", "1.5", "\"12\"", "35184372088833", "true"}) {
    INFO(size);
    CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":")" + k_d1 +
                      R"(","size":)" + size + "}}") == "config.size: expected a whole number from 0 to 2^45");
  }
  CHECK(parse_error(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":")" + k_d1 +
                    R"(","size":1},"layers":[{"digest":")" + k_d2 + R"(","size":1,"mediaType":5}]})") ==
        "layers[0].mediaType: expected a string");
  CHECK(parse_error(R"({"mediaType":"text/html"})") == "media type \"text/html\" is not a manifest basewatch can copy");
  CHECK(parse_error(std::string(mirror::k_max_manifest_bytes + 1, ' ')) == "manifest of 4194305 bytes (at most 4194304)");
}

TEST_CASE("filter_index keeps the chosen platforms and their attestations", "[unit][mirror]") {
  json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", k_d1}, {"size", 5},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}},
                  {{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", k_d2}, {"size", 6},
                   {"platform", {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}}},
                  {{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", k_d3}, {"size", 7},
                   {"platform", {{"os", "unknown"}, {"architecture", "unknown"}}},
                   {"annotations", {{"vnd.docker.reference.type", "attestation-manifest"}, {"vnd.docker.reference.digest", k_d2}}}}}},
                {"annotations", {{"org.opencontainers.image.created", "2026-11-30T00:00:00Z"}}}};
  auto f = mirror::filter_index(index.dump(), {*oci::parse_platform("linux/arm64")});
  REQUIRE(f.ok());
  CHECK(f->kept == std::vector<std::string>{k_d2, k_d3});
  CHECK(f->dropped == std::vector<std::string>{"linux/amd64"});
  json out = json::parse(f->body);
  CHECK(out["manifests"].size() == 2);
  CHECK(out["annotations"] == index["annotations"]);
  // The same input gives the same bytes: the mirror's digest is stable.
  CHECK(mirror::filter_index(index.dump(), {*oci::parse_platform("linux/arm64")})->body == f->body);
  auto none = mirror::filter_index(index.dump(), {*oci::parse_platform("linux/s390x")});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "the index has none of the platforms linux/s390x");
  CHECK(mirror::filter_index(image_manifest(k_d1, {}), {}).error().message == "not an index: no manifests list");
}

TEST_CASE("plan_copy: blobs once, children before parents, the root last", "[unit][mirror]") {
  auto node = [](const std::string& body) {
    mirror::Node n;
    n.body = body;
    n.digest = sha256_digest(body);
    n.manifest = *mirror::parse_manifest(body, "");
    n.media_type = n.manifest.media_type;
    return n;
  };
  mirror::Node a = node(image_manifest(k_d1, {k_d2}));
  mirror::Node b = node(image_manifest(k_d1, {k_d3}));
  json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests",
                 {{{"mediaType", a.media_type}, {"digest", a.digest}, {"size", a.body.size()}},
                  {{"mediaType", b.media_type}, {"digest", b.digest}, {"size", b.body.size()}}}}};
  mirror::Node root = node(index.dump());
  std::map<std::string, mirror::Node> nodes{{a.digest, a}, {b.digest, b}};
  auto plan = mirror::plan_copy(root, nodes);
  REQUIRE(plan.manifests.size() == 3);
  CHECK(plan.manifests[0]->digest == a.digest);
  CHECK(plan.manifests[1]->digest == b.digest);
  CHECK(plan.manifests[2] == &root);
  REQUIRE(plan.blobs.size() == 3);  // the shared config once
  CHECK(plan.blobs[0].digest == k_d1);
  CHECK(plan.blobs[1].digest == k_d2);
  CHECK(plan.blobs[2].digest == k_d3);
  CHECK(plan.blob_bytes == 10 + 100 + 100);
}
