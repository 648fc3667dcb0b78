// `mirrors:` rules as a mapping between upstream and mirror references.
// Pure functions of the config; the copies themselves are mirror/'s job.
//
//   from: docker.io/library/*  to: registry.example.com/hub/library/*
//   docker.io/library/alpine:3.20 <-> registry.example.com/hub/library/alpine:3.20
//
// The most specific rule wins: a repository rule beats a prefix rule, and a
// longer prefix beats a shorter one. parse() refuses configs where this is
// ambiguous (two rules for one upstream, two upstreams into one place) or
// loops (a mirror under an upstream that is itself mirrored).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "util/result.h"

namespace bw::config {

// "docker.io/library/*", "ghcr.io/org/app", "alpine", "docker.io/*".
// Errors (ErrorKind::invalid) name the cause:
//   invalid mirror pattern "docker.io/Library/*": repository name must be lowercase
Result<RepoPattern> parse_repo_pattern(std::string_view text);

struct MirrorMatch {
  const MirrorConfig* rule = nullptr;
  std::string upstream;  // "registry/repository" (no tag)
  std::string mirror;    // "registry/repository" (no tag)
};

// The rule that copies the upstream repository `registry`/`repository`, and
// where its copies live; nullopt when no rule covers it.
std::optional<MirrorMatch> mirror_of(const std::vector<MirrorConfig>& rules, const std::string& registry,
                                     const std::string& repository);
// The rule whose copies live at `registry`/`repository`, and the upstream
// they copy; nullopt when it is no rule's mirror.
std::optional<MirrorMatch> upstream_of(const std::vector<MirrorConfig>& rules, const std::string& registry,
                                       const std::string& repository);

// Why the rules cannot be used together, as "file:line:column: key: cause",
// or "" when they can. parse() calls it.
std::string check_mirror_rules(const std::vector<MirrorConfig>& rules);

}  // namespace bw::config
