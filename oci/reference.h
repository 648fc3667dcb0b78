// Image references: grammar, normalisation and formatting.
// Rules: docs/registry-protocol.md ("Image references"), following the
// distribution reference grammar that docker/cli and BuildKit use.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace bw::oci {

struct Reference {
  std::string registry;    // "docker.io", "ghcr.io", "127.0.0.1:5000", "[::1]:5000"
  std::string repository;  // "library/alpine", "org/team/app"
  std::string tag;         // "3.20"; "latest" when neither tag nor digest was written
  std::string digest;      // "sha256:..." when pinned, else empty

  // registry/repository:tag, plus @digest when pinned. For a digest-only
  // reference (no tag written) the tag is empty: registry/repository@digest.
  std::string str() const;
  // registry/repository:tag without the digest: what basewatch watches. For a
  // digest-only reference (nothing to watch move) this is str().
  std::string tag_ref() const;
  // registry/repository
  std::string name() const;
  bool pinned() const { return !digest.empty(); }
  bool operator==(const Reference&) const = default;
};

// Parses and normalises: "alpine" -> docker.io/library/alpine:latest;
// "index.docker.io/x/y" -> docker.io/x/y:latest; "alpine:3.20@sha256:..." keeps
// both tag and digest. The first component is a registry host when it holds
// '.' or ':', is "localhost", or holds an uppercase letter ("Foo/bar" is host
// Foo, repository bar), as docker's reference library decides. The registry
// is lowercased (host names are case-insensitive), except a host that is one
// only by its uppercase letters ("Foo" stays "Foo", so str() parses back). Errors are ErrorKind::invalid and name the cause, e.g.
//   invalid reference "Alpine": repository name must be lowercase
// The text is taken as is: no trimming. Digests must be sha256 (64 lowercase
// hex) or sha512 (128); other algorithms are refused.
Result<Reference> parse_reference(std::string_view text);

// The host to talk to for a registry ("docker.io" -> "registry-1.docker.io").
std::string api_host(std::string_view registry);

// "sha256:<64 lowercase hex>" or "sha512:<128 lowercase hex>".
bool is_valid_digest(std::string_view digest);

}  // namespace bw::oci
