#include "tests/support/content.h"

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "util/crypto.h"

namespace bw::testing {

using ordered_json = nlohmann::ordered_json;

namespace {

constexpr const char* k_oci_index = "application/vnd.oci.image.index.v1+json";
constexpr const char* k_oci_manifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* k_oci_config = "application/vnd.oci.image.config.v1+json";
constexpr const char* k_oci_layer = "application/vnd.oci.image.layer.v1.tar";

ordered_json descriptor(const std::string& media_type, const std::string& bytes) {
  return {{"mediaType", media_type}, {"digest", sha256_digest(bytes)}, {"size", bytes.size()}};
}

ordered_json platform_json(const std::string& platform) {
  auto first = platform.find('/');
  auto second = platform.find('/', first + 1);
  ordered_json p = {{"architecture", platform.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1)},
                    {"os", platform.substr(0, first)}};
  if (second != std::string::npos) p["variant"] = platform.substr(second + 1);
  return p;
}

Pushed put(LocalRegistry& reg, const std::string& repo, const std::string& tag, const std::string& media_type, const std::string& body) {
  Pushed p;
  p.body = body;
  p.media_type = media_type;
  p.size = static_cast<int64_t>(body.size());
  p.digest = reg.put_manifest(repo, sha256_digest(body), media_type, body);
  if (!tag.empty()) reg.put_manifest(repo, tag, media_type, body);
  return p;
}

}  // namespace

std::string random_bytes_for(uint64_t seed, size_t n) {
  std::string out(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (size_t b = 0; b < 8 && i + b < n; ++b) out[i + b] = static_cast<char>((x >> (8 * b)) & 0xff);
  }
  return out;
}

Pushed push_layered_image(LocalRegistry& reg, const std::string& repo, const std::string& tag, const std::string& platform,
                          const std::vector<size_t>& layer_sizes, uint64_t seed) {
  std::vector<std::string> layers;
  ordered_json diff_ids = ordered_json::array();
  for (size_t i = 0; i < layer_sizes.size(); ++i) {
    layers.push_back(make_tar("layer" + std::to_string(i) + ".bin", random_bytes_for(seed * 131 + i, layer_sizes[i])));
    diff_ids.push_back(sha256_digest(layers.back()));
  }
  ordered_json config = platform_json(platform);
  config["config"] = {{"Env", {"PATH=/bin"}}};
  config["rootfs"] = {{"type", "layers"}, {"diff_ids", diff_ids}};
  config["history"] = {{{"created_by", "basewatch test content, seed " + std::to_string(seed)}}};
  const std::string config_bytes = config.dump();
  Pushed p;
  p.blobs.push_back(reg.upload_blob(repo, config_bytes));
  p.blob_bytes += static_cast<int64_t>(config_bytes.size());
  ordered_json manifest = {{"schemaVersion", 2}, {"mediaType", k_oci_manifest}, {"config", descriptor(k_oci_config, config_bytes)},
                           {"layers", ordered_json::array()}};
  for (const auto& l : layers) {
    p.blobs.push_back(reg.upload_blob(repo, l));
    p.blob_bytes += static_cast<int64_t>(l.size());
    manifest["layers"].push_back(descriptor(k_oci_layer, l));
  }
  Pushed m = put(reg, repo, tag, k_oci_manifest, manifest.dump(3));
  m.blobs = std::move(p.blobs);
  m.blob_bytes = p.blob_bytes;
  return m;
}

Pushed push_multiarch(LocalRegistry& reg, const std::string& repo, const std::string& tag,
                      const std::vector<std::string>& platforms, const std::vector<size_t>& layer_sizes, uint64_t seed,
                      bool attestations) {
  ordered_json index = {{"schemaVersion", 2}, {"mediaType", k_oci_index}, {"manifests", ordered_json::array()}};
  std::vector<std::string> blobs;
  int64_t blob_bytes = 0;
  for (size_t i = 0; i < platforms.size(); ++i) {
    Pushed image = push_layered_image(reg, repo, "", platforms[i], layer_sizes, seed * 1000 + i);
    ordered_json entry = {{"mediaType", k_oci_manifest}, {"digest", image.digest}, {"size", image.size},
                          {"platform", platform_json(platforms[i])}};
    index["manifests"].push_back(entry);
    blobs.insert(blobs.end(), image.blobs.begin(), image.blobs.end());
    blob_bytes += image.blob_bytes;
  }
  if (attestations) {
    for (size_t i = 0; i < platforms.size(); ++i) {
      // An in-toto statement as a layer; its config is the empty JSON.
      std::string statement = R"({"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[{"digest":")" +
                              index["manifests"][i]["digest"].get<std::string>() + R"("}],"seed":)" + std::to_string(seed) + "}";
      std::string empty_config = "{}";
      blobs.push_back(reg.upload_blob(repo, empty_config));
      blobs.push_back(reg.upload_blob(repo, statement));
      blob_bytes += static_cast<int64_t>(empty_config.size() + statement.size());
      ordered_json layer = descriptor("application/vnd.in-toto+json", statement);
      layer["annotations"] = {{"in-toto.io/predicate-type", "https://spdx.dev/Document"}};
      ordered_json manifest = {{"schemaVersion", 2}, {"mediaType", k_oci_manifest},
                               {"config", descriptor(k_oci_config, empty_config)}, {"layers", {layer}}};
      Pushed att = put(reg, repo, "", k_oci_manifest, manifest.dump());
      ordered_json entry = {{"mediaType", k_oci_manifest}, {"digest", att.digest}, {"size", att.size},
                            {"annotations", {{"vnd.docker.reference.digest", index["manifests"][i]["digest"]},
                                             {"vnd.docker.reference.type", "attestation-manifest"}}},
                            {"platform", {{"architecture", "unknown"}, {"os", "unknown"}}}};
      index["manifests"].push_back(entry);
    }
  }
  Pushed out = put(reg, repo, tag, k_oci_index, index.dump(3));
  out.blobs = std::move(blobs);
  out.blob_bytes = blob_bytes;
  return out;
}

Pushed push_helm_chart(LocalRegistry& reg, const std::string& repo, const std::string& tag, uint64_t seed) {
  std::string config = R"({"name":"demo","version":"0.)" + std::to_string(seed) + R"(.0","apiVersion":"v2"})";
  std::string chart = make_tar("demo/Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0." + std::to_string(seed) + ".0\n");
  Pushed p;
  p.blobs = {reg.upload_blob(repo, config), reg.upload_blob(repo, chart)};
  p.blob_bytes = static_cast<int64_t>(config.size() + chart.size());
  ordered_json manifest = {{"schemaVersion", 2}, {"mediaType", k_oci_manifest},
                           {"config", descriptor("application/vnd.cncf.helm.config.v1+json", config)},
                           {"layers", {descriptor("application/vnd.cncf.helm.chart.content.v1.tar+gzip", chart)}},
                           {"annotations", {{"org.opencontainers.image.title", "demo"}}}};
  Pushed m = put(reg, repo, tag, k_oci_manifest, manifest.dump());
  m.blobs = p.blobs;
  m.blob_bytes = p.blob_bytes;
  return m;
}

Pushed push_cosign_signature(LocalRegistry& reg, const std::string& repo, const std::string& subject, uint64_t seed) {
  std::string payload = R"({"critical":{"identity":{"docker-reference":")" + repo + R"("},"image":{"docker-manifest-digest":")" +
                        subject + R"("},"type":"cosign container image signature"},"optional":{"seed":)" + std::to_string(seed) + "}}";
  std::string config = R"({"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[")" +
                       sha256_digest(payload) + R"("]},"config":{}})";
  Pushed p;
  p.blobs = {reg.upload_blob(repo, config), reg.upload_blob(repo, payload)};
  p.blob_bytes = static_cast<int64_t>(config.size() + payload.size());
  ordered_json layer = descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload);
  layer["annotations"] = {{"dev.cosignproject.cosign/signature", "MEUCIQD" + std::to_string(seed) + "fake"}};
  ordered_json manifest = {{"schemaVersion", 2}, {"mediaType", k_oci_manifest}, {"config", descriptor(k_oci_config, config)},
                           {"layers", {layer}}};
  std::string tag = "sha256-" + subject.substr(subject.find(':') + 1) + ".sig";
  Pushed m = put(reg, repo, tag, k_oci_manifest, manifest.dump());
  m.blobs = p.blobs;
  m.blob_bytes = p.blob_bytes;
  return m;
}

}  // namespace bw::testing
