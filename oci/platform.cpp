#include "oci/platform.h"

#include <nlohmann/json.hpp>

#include "oci/reference.h"
#include "util/strings.h"

namespace bw::oci {
namespace {

constexpr std::string_view k_oci_index = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view k_oci_manifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view k_docker_list = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view k_docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";

// "application/x; charset=utf-8" -> "application/x", lowercased: a
// Content-Type header value may carry parameters and any case.
std::string bare_media_type(std::string_view media_type) {
  auto semi = media_type.find(';');
  return to_lower(trim(media_type.substr(0, semi)));
}

bool is_platform_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}

// "v7" -> 7, "v8.2" -> 8, "7" -> 7; -1 when the variant is not of that form.
int variant_level(std::string_view variant) {
  if (!variant.empty() && variant.front() == 'v') variant.remove_prefix(1);
  if (variant.empty() || variant.size() > 4) return -1;
  int level = 0;
  size_t i = 0;
  for (; i < variant.size() && variant[i] >= '0' && variant[i] <= '9'; ++i) level = level * 10 + (variant[i] - '0');
  if (i == 0) return -1;
  if (i < variant.size() && variant[i] != '.') return -1;
  return level;
}

// Whether an image built for `candidate` runs on a `wanted` machine, both
// normalised with equal os/arch: a baseline (no variant) image runs anywhere,
// an older variant runs on a newer one (arm/v6 on arm/v7, amd64/v2 on amd64/v3).
bool variant_compatible(const std::string& wanted, const std::string& candidate) {
  if (candidate == wanted || candidate.empty()) return true;
  if (wanted.empty()) return false;
  int w = variant_level(wanted);
  int c = variant_level(candidate);
  return w >= 0 && c >= 0 && c <= w;
}

const std::string* string_field(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

Platform linux_amd64() { return Platform{"linux", "amd64", "", ""}; }

}  // namespace

const char* const k_accept_header =
    "application/vnd.oci.image.index.v1+json,"
    "application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.list.v2+json,"
    "application/vnd.docker.distribution.manifest.v2+json";

std::string Platform::str() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty()) out += "/" + variant;
  return out;
}

Platform normalize(Platform p) {
  p.os = to_lower(p.os);
  p.architecture = to_lower(p.architecture);
  p.variant = to_lower(p.variant);
  auto& arch = p.architecture;
  auto& variant = p.variant;
  if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (variant == "v1") variant.clear();  // v1 is the amd64 baseline
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (variant == "v8" || variant == "8" || variant == "v8.0") variant.clear();
    if (variant == "9" || variant == "9.0" || variant == "v9.0") variant = "v9";
  } else if (arch == "armhf") {
    arch = "arm";
    variant = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    variant = "v6";
  } else if (arch == "arm") {
    if (variant.empty() || variant == "7") {
      variant = "v7";
    } else if (variant == "5" || variant == "6" || variant == "8") {
      variant = "v" + variant;
    }
  } else if (arch == "i386") {
    arch = "386";
    variant.clear();
  }
  return p;
}

Result<Platform> parse_platform(std::string_view text) {
  auto fail = [&](const std::string& cause) {
    return make_error(ErrorKind::invalid, "invalid platform \"" + std::string(text) + "\": " + cause);
  };
  if (text.empty()) return fail("platform is empty");
  for (char c : text) {
    if (c != '/' && !is_platform_char(c)) {
      auto u = static_cast<unsigned char>(c);
      std::string shown = (u >= 0x20 && u < 0x7f) ? std::string("'") + c + "'" : "a control or non-ASCII byte";
      return fail("contains invalid character " + shown);
    }
  }
  auto parts = split(text, '/');
  if (parts.size() < 2) return fail("expected os/architecture[/variant]");
  if (parts.size() > 3) return fail("more than three parts, expected os/architecture[/variant]");
  for (const auto& part : parts) {
    if (part.empty()) return fail("empty part, expected os/architecture[/variant]");
  }
  Platform p;
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  return normalize(std::move(p));
}

bool matches(const Platform& wanted, const Platform& candidate) {
  auto w = normalize(wanted);
  auto c = normalize(candidate);
  return w.os == c.os && w.architecture == c.architecture && w.variant == c.variant;
}

bool is_index_media_type(std::string_view media_type) {
  auto m = bare_media_type(media_type);
  return m == k_oci_index || m == k_docker_list;
}

bool is_manifest_media_type(std::string_view media_type) {
  auto m = bare_media_type(media_type);
  return m == k_oci_manifest || m == k_docker_manifest;
}

Platform effective_platform(const IndexEntry& entry) { return entry.platform ? *entry.platform : linux_amd64(); }

Result<std::vector<IndexEntry>> parse_index(std::string_view body) {
  auto fail = [](const std::string& cause) { return make_error(ErrorKind::bad_answer, "image index: " + cause); };
  try {
    auto doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return fail("not valid JSON");
    if (!doc.is_object()) return fail("not a JSON object");
    auto manifests = doc.find("manifests");
    if (manifests == doc.end() || !manifests->is_array()) return fail("no \"manifests\" array (not an index?)");

    std::vector<IndexEntry> entries;
    entries.reserve(manifests->size());
    size_t n = 0;
    for (const auto& item : *manifests) {
      auto where = "entry " + std::to_string(n++);
      if (!item.is_object()) return fail(where + " is not an object");
      IndexEntry entry;
      if (const auto* media_type = string_field(item, "mediaType")) entry.media_type = *media_type;
      const auto* digest = string_field(item, "digest");
      if (!digest) return fail(where + " has no digest");
      if (!is_valid_digest(*digest)) return fail(where + " has an invalid digest");
      entry.digest = *digest;

      if (auto plat = item.find("platform"); plat != item.end() && !plat->is_null()) {
        if (!plat->is_object()) return fail(where + " has a platform that is not an object");
        Platform p;
        if (const auto* s = string_field(*plat, "os")) p.os = *s;
        if (const auto* s = string_field(*plat, "architecture")) p.architecture = *s;
        if (const auto* s = string_field(*plat, "variant")) p.variant = *s;
        if (const auto* s = string_field(*plat, "os.version")) p.os_version = *s;
        entry.platform = normalize(std::move(p));
        if (entry.platform->os == "unknown" && entry.platform->architecture == "unknown") entry.attestation = true;
      }
      if (auto ann = item.find("annotations"); ann != item.end() && ann->is_object()) {
        const auto* type = string_field(*ann, "vnd.docker.reference.type");
        if (type && *type == "attestation-manifest") entry.attestation = true;
      }
      entries.push_back(std::move(entry));
    }
    return entries;
  } catch (const nlohmann::json::exception& e) {
    return fail(std::string("unreadable JSON: ") + e.what());
  } catch (const std::exception& e) {
    return fail(std::string("cannot read: ") + e.what());
  }
}

std::optional<IndexEntry> select_platform(const std::vector<IndexEntry>& entries, const Platform& wanted) {
  const auto want = normalize(wanted);
  const IndexEntry* exact = nullptr;
  const IndexEntry* best_compatible = nullptr;
  int best_level = -2;
  const IndexEntry* nested_fallback = nullptr;
  for (const auto& entry : entries) {
    if (entry.attestation) continue;
    bool nested = is_index_media_type(entry.media_type);
    if (!nested && !is_manifest_media_type(entry.media_type)) continue;
    if (nested && !entry.platform) {
      // A nested index without a platform may hold any platform.
      if (!nested_fallback) nested_fallback = &entry;
      continue;
    }
    auto have = normalize(effective_platform(entry));
    if (have.os != want.os || have.architecture != want.architecture) continue;
    if (have.variant == want.variant) {
      exact = &entry;
      break;
    }
    if (!variant_compatible(want.variant, have.variant)) continue;
    // The closest older variant is what a runtime would pull; the first wins on ties.
    int level = have.variant.empty() ? -1 : variant_level(have.variant);
    if (level > best_level) {
      best_level = level;
      best_compatible = &entry;
    }
  }
  if (exact) return *exact;
  if (best_compatible) return *best_compatible;
  if (nested_fallback) return *nested_fallback;
  return std::nullopt;
}

}  // namespace bw::oci
