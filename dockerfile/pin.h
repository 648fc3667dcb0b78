// Pinning a build to the bases that fired it. A task build must use the
// exact digest of the delivery, not whatever the tag names by the time the
// build runs (it may have moved again). pin_bases writes a copy of the
// Dockerfile in which every reference to a changed base, however it is
// written (`FROM ${BASE}`, `FROM --platform=$BUILDPLATFORM golang:1.23 AS
// build`, `COPY --from=alpine:3.20`, `RUN --mount=from=...`), is replaced
// by `ref@sha256:...`. Only the characters of those reference tokens change:
// flags, AS names, comments, continuations, `# escape=` and CRLF line ends
// stay as they were, and the copy is scanned again to prove it reads the
// same apart from the pins.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dockerfile/dockerfile.h"
#include "util/result.h"

namespace bw::dockerfile {

// One changed base: the references that mean it, and what to build from.
struct BasePin {
  std::vector<std::string> names;  // normalised tag refs (the upstream, and its mirror when there is one)
  std::string ref;                 // the normalised tag ref to build from (the mirror when there is one)
  std::string digest;              // "sha256:..."
  std::string pinned() const { return ref + "@" + digest; }
};

// A reference token that was replaced.
struct PinnedUse {
  int line = 0;         // the instruction's first line
  std::string via;      // from | copy | mount
  std::string stage;
  std::string written;  // the token as it stood
  std::string pinned;   // what stands there now
};

struct PinnedFile {
  std::string text;                    // the copy to build from
  std::vector<PinnedUse> pinned;       // in file order
  std::vector<std::string> unmatched;  // BasePin::ref of pins that no reference of the file names
  // The image the target stage's FROM chain starts from (the base of the
  // shipped image), as the copy names it; nullopt for `scratch`.
  std::optional<ImageUse> runtime_base;
  bool runtime_base_pinned = false;  // runtime_base is one of the pins
};

// Errors (ErrorKind::invalid) are the scanner's ("Dockerfile:3: ...") or
// name the token that could not be replaced, e.g.
//   Dockerfile:4: cannot pin "alpine:3.20": the reference is split across lines
Result<PinnedFile> pin_bases(std::string_view text, const std::string& path, const ScanOptions& options,
                             const std::vector<BasePin>& pins);

// Where `use` (from scan() of the same text) stands in `text`: the range
// of its reference token, from the parser's source ranges (ImageUse::source).
// The one place that finds a reference in the text. An error when the token
// is split across a continuation or its characters are not side by side
// (quotes inside a flag's value): it cannot be replaced in place.
Result<SourceRange> reference_span(std::string_view text, const std::string& path, const ImageUse& use);

}  // namespace bw::dockerfile
