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

#include "dockerfile/lexer.h"
#include "oci/reference.h"

namespace bw::dockerfile {

struct ScanOptions {
  std::map<std::string, std::string> build_args;
  std::string target;                 // empty: the last stage
  std::string platform = "linux/amd64";  // TARGETPLATFORM (and BUILDPLATFORM)
  // A FROM whose expansion uses variables with no value and so is no valid
  // reference (blank, or "alpine:") is kept as an ImageUse with `unresolved`
  // set, instead of failing the file: what `basewatch refs` reports as
  // `unresolved`. Off: BuildKit's error, as a build without the args gets.
  bool keep_unresolved = false;
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
  // Where the reference stands in the file: byte ranges of the text scanned
  // (a BOM included), in order; joined, they are the token as written (for
  // FROM the word with its quotes and $-references, for COPY --from, mounts
  // and `# syntax=` the value). Several ranges when continuations split the
  // token; empty when it is not in the file (the BUILDKIT_SYNTAX build arg)
  // or its characters are not contiguous (quotes inside a flag's value).
  // Kept for code that edits references in place (refs fix, pinned builds).
  std::vector<SourceRange> source;
  // Variables the expansion referenced that have no value (FROM only).
  std::vector<std::string> unset;
  // With ScanOptions::keep_unresolved: why this FROM is no reference (its
  // `ref` is then empty), e.g. "base name (${BASE}) should not be blank".
  std::optional<std::string> unresolved;
};

// An ARG declared before the first FROM (what FROM sees).
struct GlobalArg {
  std::string name;
  std::optional<std::string> value;       // the default as written, quotes included
  std::vector<SourceRange> value_source;  // where that default stands
  int line = 0;
};

struct ScanResult {
  std::vector<ImageUse> images;
  // "path:line: message" when the file cannot be used, or "path: message"
  // when no line is to blame (empty file, missing target, bad platform);
  // images is then empty.
  std::optional<std::string> error;
  // BuildKit lint findings that do not stop a build, as
  // "path:line: warning: DuplicateStageName: Duplicate stage name 'base', stage names should be unique".
  std::vector<std::string> warnings;
  // For code that edits references built from ARGs (refs fix): the ARGs
  // before the first FROM in order, every `ARG NAME` without a value inside
  // a stage (it takes the global default there) with its line, and the
  // escape character.
  std::vector<GlobalArg> global_args;
  std::vector<std::pair<std::string, int>> stage_args;
  char escape = '\\';
};

// `path` is only used to name the place in errors.
ScanResult scan(std::string_view text, const std::string& path, const ScanOptions& options);
// Reads the file; a missing or unreadable file is an error result, not a throw.
ScanResult scan_file(const std::string& path, const ScanOptions& options);

}  // namespace bw::dockerfile
