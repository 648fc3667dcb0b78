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
// arm/v7; i386 -> 386; lowercases os and architecture. Also, as containerd
// does: arm variants "5"/"6"/"7"/"8" -> "v5".., amd64/v1 -> amd64, arm64/v8.0 ->
// arm64, arm64 "9"/"9.0"/"v9.0" -> "v9", i386 drops its variant.
Platform normalize(Platform p);
// "linux/arm64/v8" -> normalised platform. Error (ErrorKind::invalid,
// `invalid platform "X": <cause>`) on empty text, fewer than 2 or more than 3
// parts, empty parts, or characters outside [A-Za-z0-9_.-].
Result<Platform> parse_platform(std::string_view text);
// os and architecture equal after normalisation, then variant equal
// (strict: arm/v6 does not match arm/v7 here; select_platform is the lenient one).
bool matches(const Platform& wanted, const Platform& candidate);

// The media types basewatch asks for, in the one Accept header it always sends.
extern const char* const k_accept_header;
bool is_index_media_type(std::string_view media_type);
bool is_manifest_media_type(std::string_view media_type);

struct IndexEntry {
  std::string media_type;
  std::string digest;
  std::optional<Platform> platform;  // normalised; nullopt when absent in the JSON, which counts as linux/amd64
  bool attestation = false;          // vnd.docker.reference.type: attestation-manifest or unknown/unknown
};

// The platform an entry stands for: its own, or linux/amd64 when absent.
Platform effective_platform(const IndexEntry& entry);

// Parses an image index or manifest list body. Error (ErrorKind::bad_answer)
// on non-JSON, a body with no "manifests" array, an entry that is not an
// object, or an entry without a valid digest. Never throws. Entries keep the
// JSON order; unknown media types are kept (select_platform skips them).
Result<std::vector<IndexEntry>> parse_index(std::string_view body);

// The entry for `wanted`: attestations and unknown media types skipped,
// exact (normalised) variant match preferred, the first one winning; else the
// compatible entry a runtime would pull: same os/arch with no variant, or an
// older variant (arm/v6 for arm/v7; amd64 for amd64/v3), the closest one and
// among equals the first. Nested indexes are returned as they are (the caller
// fetches and searches them); a nested index without a platform is the last
// resort for any platform. nullopt when none fits.
std::optional<IndexEntry> select_platform(const std::vector<IndexEntry>& entries, const Platform& wanted);

}  // namespace bw::oci
