#include "mirror/manifest.h"

#include <nlohmann/json.hpp>

#include "oci/reference.h"

namespace bw::mirror {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

constexpr const char* k_schema1 = "application/vnd.docker.distribution.manifest.v1+json";
constexpr const char* k_schema1_signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";

std::string base_type(std::string_view t) {
  auto semi = t.find(';');
  std::string out(t.substr(0, semi));
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
  return out;
}

Error bad(const std::string& message) { return make_error(ErrorKind::bad_answer, message); }

// A string field, "" when absent; an error when present but not a string.
Result<std::string> text_field(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return bad(where + key + ": expected a string");
  return it->get<std::string>();
}

Result<Descriptor> read_descriptor(const json& d, const std::string& where) {
  if (!d.is_object()) return bad(where + ": expected an object");
  Descriptor out;
  BW_TRY(out.media_type, text_field(d, "mediaType", where + "."));
  BW_TRY(out.digest, text_field(d, "digest", where + "."));
  BW_TRY(out.artifact_type, text_field(d, "artifactType", where + "."));
  if (out.digest.empty()) return bad(where + ".digest: missing");
  if (!oci::is_valid_digest(out.digest)) return bad(where + ".digest: invalid digest \"" + out.digest.substr(0, 80) + "\"");
  auto size = d.find("size");
  if (size == d.end()) return bad(where + ".size: missing");
  // Exact integers only: 1.5, -1, "12" and 2^60 are all lies about a blob.
  if (!size->is_number_integer() || (size->is_number_unsigned() ? size->get<uint64_t>() > uint64_t(k_max_blob_bytes)
                                                                : size->get<int64_t>() < 0 || size->get<int64_t>() > k_max_blob_bytes)) {
    return bad(where + ".size: expected a whole number from 0 to 2^45");
  }
  out.size = size->get<int64_t>();
  if (auto p = d.find("platform"); p != d.end() && p->is_object()) {
    std::string os = p->value("os", json("")).is_string() ? p->value("os", "") : "";
    std::string arch = p->value("architecture", json("")).is_string() ? p->value("architecture", "") : "";
    std::string variant = p->value("variant", json("")).is_string() ? p->value("variant", "") : "";
    oci::Platform pl;
    pl.os = os;
    pl.architecture = arch;
    pl.variant = variant;
    out.platform = oci::normalize(pl);
  }
  if (auto a = d.find("annotations"); a != d.end() && a->is_object()) {
    auto type = a->find("vnd.docker.reference.type");
    if (type != a->end() && type->is_string() && type->get<std::string>() == "attestation-manifest") out.attestation = true;
    auto ref = a->find("vnd.docker.reference.digest");
    if (ref != a->end() && ref->is_string()) out.attests = ref->get<std::string>();
  }
  if (out.platform && out.platform->os == "unknown" && out.platform->architecture == "unknown") out.attestation = true;
  return out;
}

Result<std::vector<Descriptor>> read_list(const json& doc, const char* key, bool required) {
  std::vector<Descriptor> out;
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) {
    if (required) return bad(std::string(key) + ": missing");
    return out;
  }
  if (!it->is_array()) return bad(std::string(key) + ": expected a list");
  if (it->size() > k_max_descriptors) {
    return bad(std::string(key) + ": " + std::to_string(it->size()) + " entries (at most " + std::to_string(k_max_descriptors) + ")");
  }
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    BW_TRY(auto d, read_descriptor((*it)[i], std::string(key) + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

bool is_copyable_manifest(std::string_view media_type) {
  std::string t = base_type(media_type);
  return oci::is_index_media_type(t) || oci::is_manifest_media_type(t) || t == "application/vnd.oci.artifact.manifest.v1+json";
}

Result<Manifest> parse_manifest(std::string_view body, std::string_view content_type) {
  if (body.size() > k_max_manifest_bytes) {
    return bad("manifest of " + std::to_string(body.size()) + " bytes (at most " + std::to_string(k_max_manifest_bytes) + ")");
  }
  std::string given = base_type(content_type);
  if (given == k_schema1 || given == k_schema1_signed) {
    return bad("schema 1 manifests (" + given + ") cannot be copied byte for byte");
  }
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return bad("manifest is not a JSON object");
  Manifest m;
  BW_TRY(std::string own, text_field(doc, "mediaType", ""));
  BW_TRY(m.artifact_type, text_field(doc, "artifactType", ""));
  if (auto v = doc.find("schemaVersion"); v != doc.end() && v->is_number_integer() && v->get<int64_t>() == 1) {
    return bad("schema 1 manifests (" + (given.empty() ? std::string(k_schema1_signed) : given) + ") cannot be copied byte for byte");
  }
  m.media_type = own.empty() ? given : own;
  if (m.media_type.empty() || m.media_type == "application/json" || m.media_type == "application/octet-stream") {
    // Neither the body nor the answer says: its shape does.
    m.media_type = doc.contains("manifests") ? "application/vnd.oci.image.index.v1+json" : "application/vnd.oci.image.manifest.v1+json";
  }
  m.index = oci::is_index_media_type(m.media_type);
  if (m.index) {
    BW_TRY(m.manifests, read_list(doc, "manifests", true));
  } else if (m.media_type == "application/vnd.oci.artifact.manifest.v1+json") {
    // The short-lived OCI artifact manifest: blobs, no config.
    BW_TRY(m.blobs, read_list(doc, "blobs", false));
  } else if (oci::is_manifest_media_type(m.media_type)) {
    auto config = doc.find("config");
    if (config == doc.end()) return bad("config: missing");
    BW_TRY(auto c, read_descriptor(*config, "config"));
    m.blobs.push_back(std::move(c));
    BW_TRY(auto layers, read_list(doc, "layers", false));
    for (auto& l : layers) m.blobs.push_back(std::move(l));
    if (m.blobs.size() > k_max_descriptors) return bad("layers: too many entries");
  } else {
    return bad("media type \"" + m.media_type.substr(0, 100) + "\" is not a manifest basewatch can copy");
  }
  if (auto s = doc.find("subject"); s != doc.end() && !s->is_null()) {
    BW_TRY(auto subject, read_descriptor(*s, "subject"));
    m.subject = std::move(subject);
  }
  return m;
}

Result<Filtered> filter_index(std::string_view body, const std::vector<oci::Platform>& platforms) {
  ordered_json doc = ordered_json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("manifests") || !doc["manifests"].is_array()) {
    return bad("not an index: no manifests list");
  }
  // Parsed the same way the copy reads it, so the two never disagree.
  BW_TRY(auto parsed, parse_manifest(body, ""));
  if (!parsed.index || parsed.manifests.size() != doc["manifests"].size()) return bad("not an index");
  Filtered out;
  std::vector<bool> keep(parsed.manifests.size(), false);
  for (size_t i = 0; i < parsed.manifests.size(); ++i) {
    const Descriptor& d = parsed.manifests[i];
    if (d.attestation) continue;
    oci::Platform amd64;
    amd64.os = "linux";
    amd64.architecture = "amd64";
    oci::Platform p = d.platform.value_or(amd64);
    bool wanted = false;
    for (const auto& w : platforms) wanted = wanted || oci::matches(w, p);
    keep[i] = wanted;
    if (!wanted) out.dropped.push_back(p.str());
  }
  // Attestations go with the image they attest.
  for (size_t i = 0; i < parsed.manifests.size(); ++i) {
    const Descriptor& d = parsed.manifests[i];
    if (!d.attestation) continue;
    for (size_t j = 0; j < parsed.manifests.size(); ++j) {
      if (keep[j] && !parsed.manifests[j].attestation && parsed.manifests[j].digest == d.attests) keep[i] = true;
    }
  }
  ordered_json kept = ordered_json::array();
  for (size_t i = 0; i < keep.size(); ++i) {
    if (!keep[i]) continue;
    kept.push_back(doc["manifests"][i]);
    out.kept.push_back(parsed.manifests[i].digest);
  }
  if (out.kept.empty()) {
    std::string wanted;
    for (const auto& w : platforms) wanted += (wanted.empty() ? "" : ", ") + w.str();
    return make_error(ErrorKind::not_found, "the index has none of the platforms " + wanted);
  }
  doc["manifests"] = std::move(kept);
  out.body = doc.dump(3);
  return out;
}

}  // namespace bw::mirror
