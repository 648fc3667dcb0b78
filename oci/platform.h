// Platforms (os/arch[/variant]): parsing, normalisation, matching, and
// reading per-platform digests out of an image index.
// Rules: docs/registry-protocol.md ("Multi-arch images").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace bw::oci {

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64"
  std::string variant;       // "v7", or empty
  std::string os_version;    // Windows only, usually empty

  // "linux/arm/v7", "linux/amd64"
  std::string str() const;
  bool operator==(const Platform&) const = default;
};

// Normalises: x86_64/x86-64 -> amd64; aarch64 -> arm64; arm64 with variant
// v8 or 8 -> arm64 (no variant); armhf -> arm/v7; armel -> arm/v6; bare arm ->
// arm/v7; i386 -> 386; lowercases os and architecture.
Platform normalize(Platform p);
// "linux/arm64/v8" -> normalised platform. Error on empty parts or >3 parts.
Result<Platform> parse_platform(std::string_view text);
// os and architecture equal after normalisation, then variant equal.
bool matches(const Platform& wanted, const Platform& candidate);

// The media types basewatch asks for, in the one Accept header it always sends.
extern const char* const k_accept_header;
bool is_index_media_type(std::string_view media_type);
bool is_manifest_media_type(std::string_view media_type);

struct IndexEntry {
  std::string media_type;
  std::string digest;
  std::optional<Platform> platform;  // normalised; absent in the JSON -> linux/amd64
  bool attestation = false;          // vnd.docker.reference.type: attestation-manifest or unknown/unknown
};

// Parses an image index or manifest list body. Error on non-JSON or a body
// with no "manifests" array.
Result<std::vector<IndexEntry>> parse_index(std::string_view body);

// The entry for `wanted`: attestations and unknown media types skipped,
// exact variant match preferred, else the first entry whose os/arch match and
// whose variant is compatible. Nested indexes are returned as they are (the
// caller fetches and searches them). nullopt when none fits.
std::optional<IndexEntry> select_platform(const std::vector<IndexEntry>& entries, const Platform& wanted);

}  // namespace bw::oci
