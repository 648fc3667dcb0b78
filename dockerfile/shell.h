// Shell-style word processing as BuildKit's Dockerfile frontend does it:
// single and double quotes, the escape character, and $-expansion with every
// ${...} form (-, +, ?, with and without ':', #, ##, %, %%, /, //).
// It is not a shell: nothing is executed, and `$(...)` stays literal text.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace bw::dockerfile {

// Variables visible to an expansion. A name that is absent is unset, which
// differs from set-but-empty for ${v-w}, ${v+w} and ${v?m}.
using Env = std::map<std::string, std::string, std::less<>>;

struct LexOptions {
  char escape = '\\';        // the Dockerfile's escape character (\ or `)
  bool raw_quotes = false;   // keep quote characters in the result
  bool raw_escapes = false;  // keep escape characters in the result
  bool skip_unset = false;   // leave references to unset variables as written
};

struct WordResult {
  std::string text;                // the processed word
  std::vector<std::string> words;  // `text` split on unquoted whitespace
  std::set<std::string> unset;     // variables referenced but not set
};

// Longest result process_word builds before giving up; values can double
// with every ARG that repeats an earlier one, so this bounds the work.
inline constexpr size_t k_max_expanded_size = 64 * 1024;

// Processes one word. Errors carry BuildKit's wording without its
// `failed to process "..."` wrapper, e.g. "syntax error: missing '}'" or
// "VERSION: is not allowed to be unset".
Result<WordResult> process_word(std::string_view word, const Env& env, const LexOptions& options = {});

}  // namespace bw::dockerfile
