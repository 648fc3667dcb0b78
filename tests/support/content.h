// Test content for copies: images with layers of chosen sizes, multi-arch
// indexes with BuildKit-style attestation manifests, a Helm-chart-like OCI
// artifact, cosign-style signature tags and OCI referrers, pushed to a real
// LocalRegistry over its API. Bytes are deterministic for a seed, so two
// pushes of the same seed give the same digests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace bw::testing {

struct Pushed {
  std::string digest;
  std::string media_type;
  std::string body;  // the manifest's exact bytes
  int64_t size = 0;  // of the manifest
  std::vector<std::string> blobs;  // digests of the blobs it (and its children) use
  int64_t blob_bytes = 0;
};

// Deterministic pseudo-random bytes.
std::string random_bytes_for(uint64_t seed, size_t n);

// An OCI image for `platform` with one tar layer per entry of
// `layer_sizes` (each holding that many pseudo-random bytes), pushed by
// digest and, when `tag` is not empty, under the tag.
Pushed push_layered_image(LocalRegistry& reg, const std::string& repo, const std::string& tag, const std::string& platform,
                          const std::vector<size_t>& layer_sizes, uint64_t seed);

// An OCI index of one layered image per platform, each followed by an
// attestation manifest (unknown/unknown, vnd.docker.reference.type:
// attestation-manifest) as BuildKit writes them, pushed under `tag`.
Pushed push_multiarch(LocalRegistry& reg, const std::string& repo, const std::string& tag,
                      const std::vector<std::string>& platforms, const std::vector<size_t>& layer_sizes, uint64_t seed,
                      bool attestations = true);

// A Helm-chart-like OCI artifact: config application/vnd.cncf.helm.config.v1+json,
// one layer application/vnd.cncf.helm.chart.content.v1.tar+gzip.
Pushed push_helm_chart(LocalRegistry& reg, const std::string& repo, const std::string& tag, uint64_t seed);

// A cosign-style signature of `subject` (a manifest digest): an OCI
// manifest with a simple-signing layer under the tag sha256-<hex>.sig.
Pushed push_cosign_signature(LocalRegistry& reg, const std::string& repo, const std::string& subject, uint64_t seed);

}  // namespace bw::testing
