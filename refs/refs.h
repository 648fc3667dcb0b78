// `basewatch refs`: every image reference of every project judged against
// the mirrors and the policy, and what `refs fix` should write. Pure
// decisions: what the registries hold comes in as Answers (HEADs in the CLI,
// the store's rows in the service), files come in as text.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "dockerfile/dockerfile.h"
#include "util/result.h"

namespace bw::refs {

// The statuses, in the order reports count them.
inline const std::vector<std::string> k_statuses = {"mirrored", "mirror-behind", "bypass", "unmirrored",
                                                    "forbidden", "stale-pin", "unresolved"};

// One Dockerfile of one project, and how it is scanned.
struct ProjectFile {
  std::string project;
  std::string file;
  dockerfile::ScanOptions options;
  std::vector<std::string> platforms;  // the project's, for mirrors that copy some platforms
};

// One reference of one project.
struct Use {
  std::string project, file;
  dockerfile::ImageUse image;
  size_t index = 0;  // in the file's scan, for plan_rewrites
  std::vector<std::string> platforms;
  int line() const;    // of the token itself (a continued FROM may put it lower)
  int column() const;  // 0 when it is not in the file
};

// Scans `text` (the file's content) keeping unresolved references. An
// unscannable file is an error result ("path:line: message").
Result<std::vector<Use>> collect(const ProjectFile& pf, std::string_view text);

// What a registry said about a reference.
struct Lookup {
  bool found = false;
  std::string digest;                            // the tag's (or the digest's own)
  std::map<std::string, std::string> platforms;  // wanted platform -> digest
  std::string error;                             // when not found: why ("" for a plain 404)
};
using Answers = std::map<std::string, Lookup>;  // by reference text (tag ref, or name@digest)

// A reference to resolve, and the platforms whose digests the judgement needs.
struct Query {
  oci::Reference ref;
  std::vector<std::string> platforms;
};
// What judge() needs looked up, each reference once however many files
// name it: the upstream and the mirror of every reference a mirror covers,
// and the tag of every pinned reference.
std::vector<Query> queries(const std::vector<Use>& uses, const config::Config& cfg);

struct Finding {
  const Use* use = nullptr;
  std::string ref;     // normalised; "" when unresolved
  std::string status;  // one of k_statuses
  std::string mirror;  // the mirror reference it names or should name, or ""
  std::string detail;  // what it means, for people
  bool violation = false;  // breaks the policy (bypass under require_mirror, forbidden)
  bool lookup_failed = false;  // a registry could not be asked: the status is a guess
  // refs fix: the reference to write instead (with --pin, pinned), or why not.
  std::string fix;
  std::string fix_reason;
};

// `pin`: the fix also writes or refreshes @sha256: pins with the mirror's digest.
std::vector<Finding> judge(const std::vector<Use>& uses, const config::Config& cfg, const Answers& answers, bool pin);

// How many of each status, every status present (0 when none).
std::map<std::string, size_t> counts(const std::vector<Finding>& findings);

// Output. JSON: {"refs": [{"project", "file", "line", "column", "written",
// "ref", "status", "mirror", "detail", "via", "kind"}]}. SARIF 2.1.0: one rule
// per status, one located result per reference.
std::string render_json(const std::vector<Finding>& findings);
std::string render_sarif(const std::vector<Finding>& findings, const std::string& version);
std::string render_table(const std::vector<Finding>& findings);

// A unified diff of one file (`patch -p0` applies it: both names are
// `path`); "" when the texts are equal.
std::string unified_diff(const std::string& path, std::string_view before, std::string_view after);

}  // namespace bw::refs
