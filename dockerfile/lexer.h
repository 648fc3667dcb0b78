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
};
SyntaxDirective detect_syntax(std::string_view text);

// Splits an instruction's text into words on unquoted whitespace, keeping
// quotes and escapes (BuildKit's parseWords, used for ARG).
std::vector<std::string> split_words(std::string_view text, char escape);

// The instruction that starts on `line` (1-based, as Instruction::line) as
// BuildKit joins it: the pieces of its physical lines, continuation
// characters, comment lines and blank lines left out, in order; views into
// `text`, so each piece's place in the file is known. Heredoc bodies are not
// part of it. Empty when `line` is past the end.
std::vector<std::string_view> instruction_pieces(std::string_view text, int line, char escape);

// "path:line: message", or "path: message" when line is 0.
std::string located(const std::string& path, int line, std::string_view message);

}  // namespace bw::dockerfile
