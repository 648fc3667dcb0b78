// The first pass over a Dockerfile, as BuildKit's parser does it: UTF-8 BOM,
// CRLF, parser directives, comments, line continuation with the escape
// character, heredocs, and the split of each instruction into keyword, flags
// and arguments. Instruction semantics (stages, ARG, FROM) live in
// dockerfile.cpp.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace bw::dockerfile {

struct Directive {
  std::string name;   // lowercased: "syntax", "escape" or "check"
  std::string value;  // as written, surrounding whitespace removed
  int line = 0;
};

struct Heredoc {
  std::string name;     // the delimiter with quotes removed
  bool chomp = false;   // <<-EOF: leading tabs are stripped
  bool expand = true;   // false when the delimiter was quoted
};

// Where a stretch of an instruction's logical line (continuations joined)
// comes from in the file: `length` bytes at `file` (an offset into the text
// given to parse_lines, a BOM included), on physical line `line` whose first
// character is at `line_start`.
struct Piece {
  size_t logical = 0;
  size_t file = 0;
  size_t length = 0;
  int line = 0;
  size_t line_start = 0;
};

// A byte range of the file with the place of its first byte.
struct SourceRange {
  size_t offset = 0;
  size_t length = 0;
  int line = 0;    // 1-based
  int column = 0;  // 1-based, in code points (a tab counts one)
  bool operator==(const SourceRange&) const = default;
};

// The file ranges that logical positions [begin, end) of an instruction
// come from, split where a continuation joined two pieces. `text` is the
// file (for columns). Empty when the range is empty or outside the pieces.
std::vector<SourceRange> source_of(const std::vector<Piece>& pieces, std::string_view text, size_t begin, size_t end);

struct Instruction {
  int line = 0;       // 1-based line where the instruction starts
  int end_line = 0;   // last line, heredoc bodies included
  std::string keyword;                 // as written ("FROM", "from", ...)
  std::string command;                 // lowercased keyword
  std::vector<std::string> flags;      // leading "--name=value" words, quotes removed
  std::string args;                    // the text after the flags, trimmed
  bool json = false;                   // exec form: args is a JSON array of strings
  std::vector<std::string> json_args;  // its elements
  std::vector<Heredoc> heredocs;
  std::vector<Instruction> trigger;    // ONBUILD: the wrapped instruction (zero or one)
  // Source positions, as offsets into the logical line (which `pieces` maps
  // to the file; a trigger shares its ONBUILD's): where args starts, and for
  // each flag the position of each of its characters (quotes and escapes
  // removed, so a flag's characters need not be contiguous).
  size_t args_offset = 0;
  std::vector<std::vector<size_t>> flag_sources;
  std::vector<Piece> pieces;  // top-level instructions only
};

struct ParsedFile {
  char escape = '\\';
  std::vector<Directive> directives;
  std::vector<Instruction> instructions;
  int line_count = 0;
};

// Errors are "path:line: message" (Error::message), e.g.
//   Dockerfile:1: only one syntax parser directive can be used
//   Dockerfile:4: unterminated heredoc
Result<ParsedFile> parse_lines(std::string_view text, const std::string& path);

// The `# syntax=` frontend image as BuildKit detects it before anything else:
// a first line starting with "#!" is skipped, directives must start at column
// 0, and only the first word of the value is the image. Empty when absent.
struct SyntaxDirective {
  std::string image;
  int line = 0;
  size_t offset = 0;  // of the image in the text (a BOM included)
  int column = 0;     // 1-based
};
SyntaxDirective detect_syntax(std::string_view text);

// Splits an instruction's text into words on unquoted whitespace, keeping
// quotes and escapes (BuildKit's parseWords, used for ARG).
std::vector<std::string> split_words(std::string_view text, char escape);
// The same words with the offset in `text` where each starts and ends.
struct Word {
  std::string text;
  size_t begin = 0, end = 0;
};
std::vector<Word> split_words_at(std::string_view text, char escape);

// 1-based column, in code points, of byte `offset` on a line starting at `line_start`.
int column_of(std::string_view text, size_t line_start, size_t offset);

// "path:line: message", or "path: message" when line is 0.
std::string located(const std::string& path, int line, std::string_view message);

}  // namespace bw::dockerfile
