// Dockerfiles read the way BuildKit reads them: which external images a
// build pulls, from which stage and line, and whether they end up in the
// shipped image (runtime), are only used while building (buildtime), or sit in
// stages the target never reaches (unused).
// Rules: docs/registry-protocol.md ("Dockerfiles").
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/reference.h"

namespace bw::dockerfile {

struct ScanOptions {
  std::map<std::string, std::string> build_args;
  std::string target;                 // empty: the last stage
  std::string platform = "linux/amd64";  // TARGETPLATFORM (and BUILDPLATFORM)
};

// One image a build pulls. The `# syntax=` frontend has an empty stage, and
// line 0 when it comes from the BUILDKIT_SYNTAX build arg.
struct ImageUse {
  oci::Reference ref;     // normalised
  std::string written;    // as it stands in the file, before expansion
  int line = 0;           // 1-based line of the instruction
  std::string stage;      // stage name, or its index as text when unnamed
  std::string kind;       // "runtime" | "buildtime" | "unused"
  std::string via;        // "from" | "copy" | "mount" | "syntax" | "onbuild"
  std::optional<std::string> platform;  // FROM --platform value as written
  std::optional<std::string> pinned;    // the digest when written with @sha256:...
};

struct ScanResult {
  std::vector<ImageUse> images;
  // "path:line: message" when the file cannot be used, or "path: message"
  // when no line is to blame (empty file, missing target, bad platform);
  // images is then empty.
  std::optional<std::string> error;
};

// `path` is only used to name the place in errors.
ScanResult scan(std::string_view text, const std::string& path, const ScanOptions& options);
// Reads the file; a missing or unreadable file is an error result, not a throw.
ScanResult scan_file(const std::string& path, const ScanOptions& options);

}  // namespace bw::dockerfile
