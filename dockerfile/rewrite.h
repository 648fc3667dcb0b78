// Byte-exact edits of image references in a Dockerfile. Only characters of
// a reference token (or of the default of an ARG that feeds it) change:
// flags, AS names, comments, continuations, `# escape=`, heredocs and CRLF
// line ends stay as they are. Every plan is checked by scanning the edited
// text again: each rewritten reference must name its target and every other
// reference what it named before, or the edit is dropped with a reason.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dockerfile/dockerfile.h"

namespace bw::dockerfile {

struct Edit {
  size_t offset = 0;  // in the text
  size_t length = 0;  // bytes replaced (0: an insertion)
  std::string text;   // what replaces them
  bool operator==(const Edit&) const = default;
};

// Make scan(text, path, options).images[use] name `target`, a reference as
// text ("registry.example.com/hub/library/alpine:3.20@sha256:...").
struct RewriteRequest {
  size_t use = 0;
  std::string target;
};

struct RewriteOutcome {
  bool done = false;
  std::string how;     // when done: "reference", or "ARG NAME default (line N)"
  std::string reason;  // when not: why the reference was left alone
};

struct RewritePlan {
  std::vector<Edit> edits;               // sorted by offset, not overlapping
  std::vector<RewriteOutcome> outcomes;  // one per request, in order
  std::string error;                     // the text does not scan: nothing planned
};

// A reference built from ARGs ($X, ${X}, ${X:-w}, ${X-w}, ${X:+w}, ${X+w},
// quotes) is edited where its changing part is written: in the FROM word, or
// in the default of the ARG it comes from when that default changes no other
// reference wrongly and no stage uses that ARG beyond FROM.
RewritePlan plan_rewrites(std::string_view text, const std::string& path, const ScanOptions& options,
                          const std::vector<RewriteRequest>& requests);

// `text` with `edits` (sorted, not overlapping) applied.
std::string apply_edits(std::string_view text, const std::vector<Edit>& edits);

}  // namespace bw::dockerfile
