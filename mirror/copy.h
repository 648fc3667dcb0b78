// The copy engine: one reference (a single-platform image, a multi-arch
// index with every child, or any OCI artifact) from one registry to another,
// byte for byte, so the copy has the source's digest.
//
// It works as regclient and crane do: read the descriptor graph from the
// source (manifests only; blobs are never read twice), decide per blob
// ("there already", "mount", "upload"), then write children before parents
// and the tag last, so a tag never names content the destination lacks.
// The plan (what, in which order) is a pure function of the manifests
// (plan_copy); the executor (Copier) talks to registries only through
// registry::Client, and the upload protocol (POST, PATCH, PUT, mount and
// its fallbacks) lives in one place (Pusher, copy.cpp).
//
// Every manifest and blob is checked against its digest and size on the way
// (a registry that lies ends the copy with an error naming what lied);
// every Docker-Content-Digest the destination returns must be the one
// written. Blobs stream from the GET to the upload through a bounded buffer
// (chunk_size), so a layer of several GB never sits in memory.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mirror/manifest.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "registry/client.h"
#include "util/result.h"

namespace bw::mirror {

// A manifest as read from the source: its exact bytes and what they say.
struct Node {
  std::string digest;
  std::string media_type;
  std::string body;
  Manifest manifest;
};

// What a copy does, in order. Pure: computed from the source's manifests.
struct Plan {
  std::vector<Descriptor> blobs;       // each once, in the order first seen
  std::vector<const Node*> manifests;  // children before parents; the root last
  int64_t blob_bytes = 0;              // sum of the blobs' sizes
};
// `nodes` maps digest -> manifest for every manifest reachable from `root`.
Plan plan_copy(const Node& root, const std::map<std::string, Node>& nodes);

struct Progress {
  int blobs_total = 0, blobs_done = 0;
  int64_t bytes_total = 0, bytes_done = 0;  // of the blobs, skipped and mounted ones counted as done
};

struct CopyOptions {
  std::vector<oci::Platform> platforms;  // empty: every platform (the copy keeps the digest)
  bool referrers = true;                 // signatures, SBOMs, attestations that refer to what is copied
  bool force = false;                    // move a destination tag that names other content
  size_t chunk_size = 8 << 20;           // blobs above go up in PATCHes of this size (at least OCI-Chunk-Min-Length);
                                         // with 4 blobs in flight, 32 MiB of buffers at most
  int blob_attempts = 3;                 // tries per blob after a retryable failure (429, 5xx, a cut connection)
  std::chrono::milliseconds retry_pause{1000};  // before the second try; doubles
  std::function<void(const Progress&)> progress;  // after each blob and each chunk
};

struct CopyReport {
  std::string source, destination;  // references as copied (destination with its tag)
  std::string digest;               // what the destination tag names now
  std::string source_digest;        // the source's digest (differs from digest when platforms were chosen)
  std::string previous_digest;      // what the destination tag named before, "" when absent
  std::vector<std::string> dropped_platforms;  // left out by --platform
  int manifests = 0;                // manifests written
  int blobs_uploaded = 0, blobs_mounted = 0, blobs_skipped = 0;
  int64_t bytes_uploaded = 0, bytes_mounted = 0, bytes_skipped = 0;
  int referrers = 0;                // referring manifests copied with it
  bool already = false;             // the destination held it: nothing was written
  double seconds = 0;
};

class Copier {
 public:
  // One client for every registry involved (source and destination may be
  // the same host). Its settings give each registry's credentials and limits.
  explicit Copier(registry::Client& client) : m_client(client) {}

  // Copies `source` (by its tag, or its digest when pinned) to
  // `destination` (its tag; a digest-only destination is written by digest
  // and gets no tag). Errors keep the registry's words and say what failed;
  // their kind says whether trying again can help (network, timeout, server,
  // rate_limited) or not (bad_answer: something lied; invalid: refused by
  // the options, e.g. a tag that names other content without force).
  Result<CopyReport> copy(const oci::Reference& source, const oci::Reference& destination, const CopyOptions& options);

  // What the destination registry `host` is known to hold, learned from
  // copies made through this Copier: blob digest -> a repository holding it.
  // A later copy into another repository of the same registry mounts from
  // there instead of uploading. Bounded.
  std::optional<std::string> known_repository(const std::string& host, const std::string& digest) const;

 private:
  void remember(const std::string& host, const std::string& digest, const std::string& repository);

  registry::Client& m_client;
  mutable std::mutex m_mutex;
  std::map<std::string, std::map<std::string, std::string>> m_known;  // host -> digest -> repository
  size_t m_known_count = 0;
};

}  // namespace bw::mirror
