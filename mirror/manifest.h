// The descriptor graph of what a copy moves, read from manifest bodies as
// registries send them. Pure: no I/O (the copy engine fetches, this reads),
// and fuzzed (fuzz/fuzz_mirror.cpp), because every byte here comes from a
// registry that may lie.
//
// An image index (OCI or Docker manifest list) points at manifests; an image
// manifest (OCI, Docker schema 2, or any OCI artifact: a Helm chart, a
// signature, an SBOM) points at blobs (its config and layers) and maybe at a
// `subject` (what it refers to: the referrers API).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/platform.h"
#include "util/result.h"

namespace bw::mirror {

constexpr size_t k_max_manifest_bytes = 4 << 20;   // what registries accept
constexpr size_t k_max_descriptors = 10'000;       // per manifest
constexpr int64_t k_max_blob_bytes = int64_t{1} << 45;  // 32 TiB: a size beyond is a lie

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::string artifact_type;
  std::optional<oci::Platform> platform;  // index entries: normalised, nullopt when absent
  bool attestation = false;               // BuildKit's attestation manifests (unknown/unknown)
  std::string attests;                    // the manifest an attestation is for (vnd.docker.reference.digest)
};

struct Manifest {
  std::string media_type;              // the body's mediaType, else the Content-Type
  bool index = false;                  // an index / manifest list: `manifests` are children
  std::vector<Descriptor> manifests;   // index entries
  std::vector<Descriptor> blobs;       // config first, then layers (or an artifact's blobs)
  std::optional<Descriptor> subject;   // what this manifest refers to
  std::string artifact_type;
};

// Parses a manifest body. `content_type` is what the registry said (may be
// vague: "application/json"); the body's own mediaType wins. Errors
// (ErrorKind::bad_answer) name the field: `layers[1].size: expected a whole
// number from 0 to 2^45`, `manifests[0].digest: invalid digest "sha256:xyz"`,
// `schema 1 manifests (application/vnd.docker.distribution.manifest.v1+prettyjws)
// cannot be copied byte for byte`. Never throws.
Result<Manifest> parse_manifest(std::string_view body, std::string_view content_type);

// Whether a media type names a manifest the copy engine can write (an index
// or an image/artifact manifest), as opposed to a blob.
bool is_copyable_manifest(std::string_view media_type);

// An index that keeps only the entries for `platforms` (matched after
// normalisation, os and architecture then variant, as oci::matches does)
// and the attestations of kept entries, with everything else in the body as
// it was. Its bytes (and so its digest) differ from the original: a subset
// is a new index. Errors: not an index, or no entry matches.
struct Filtered {
  std::string body;
  std::vector<std::string> kept;     // digests of the entries kept, in order
  std::vector<std::string> dropped;  // platforms left out ("linux/s390x"), in order
};
Result<Filtered> filter_index(std::string_view body, const std::vector<oci::Platform>& platforms);

}  // namespace bw::mirror
