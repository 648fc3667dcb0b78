#include "dockerfile/lexer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "dockerfile/shell.h"
#include "util/strings.h"

namespace bw::dockerfile {
namespace {

constexpr std::string_view k_bom = "\xEF\xBB\xBF";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
// Go's regexp \s: no \v.
bool is_re_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'; }
// BuildKit's reWhitespace, which separates a keyword from its arguments.
bool is_separator(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
// ASCII lowercase: what to_lower does in the C locale, without a call per byte.
std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim_newline(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string_view trim_left(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  return s.substr(i);
}

std::string_view trim_both(std::string_view s) {
  s = trim_left(s);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_comment(std::string_view raw) {
  auto t = trim_left(trim_newline(raw));
  return !t.empty() && t.front() == '#';
}

// Physical lines split on '\n' only (a lone '\r' is not a line break); a
// final line without '\n' counts, an empty tail after the last '\n' does not.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// The escape character last on a line (trailing blanks allowed) continues
// it, unless it is itself escaped. Returns the line without it and whether
// the instruction ends here.
std::pair<std::string_view, bool> trim_continuation(std::string_view line, char escape) {
  size_t end = line.size();
  while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
  if (end == 0 || line[end - 1] != escape) return {line, true};
  if (end == 1) return {std::string_view(), false};
  if (line[end - 2] == escape) return {line, true};
  return {line.substr(0, end - 1), false};
}

// Parser directives: `# key = value` lines at the very top; the first line
// that is not one (a blank line, a comment, an instruction, an unknown key)
// ends them.
class DirectiveReader {
 public:
  explicit DirectiveReader(const std::string& path) : m_path(path) {}

  Status read(std::string_view token, int line, ParsedFile& file) {
    if (m_done) return ok_status();
    std::string key, value;
    if (!match(token, key, value)) {
      m_done = true;
      return ok_status();
    }
    if (key != "syntax" && key != "escape" && key != "check") {
      m_done = true;
      return ok_status();
    }
    if (!m_seen.insert(key).second) {
      return make_error(ErrorKind::invalid, located(m_path, line, "only one " + key + " parser directive can be used"));
    }
    if (key == "escape") {
      if (value != "\\" && value != "`") {
        return make_error(ErrorKind::invalid,
                          located(m_path, line, "invalid escape token '" + value + "' does not match ` or \\"));
      }
      file.escape = value[0];
    }
    file.directives.push_back(Directive{key, value, line});
    return ok_status();
  }

  // `#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` with Go's backtracking:
  // when only blanks follow '=', the value is the last of them.
  static bool match(std::string_view token, std::string& key, std::string& value) {
    if (token.empty() || token.front() != '#') return false;
    size_t i = 1;
    while (i < token.size() && is_re_space(token[i])) ++i;
    if (i >= token.size() || !is_alpha(token[i])) return false;
    size_t name_start = i;
    while (i < token.size() && (is_alpha(token[i]) || is_digit(token[i]))) ++i;
    key = ascii_lower(token.substr(name_start, i - name_start));
    while (i < token.size() && is_re_space(token[i])) ++i;
    if (i >= token.size() || token[i] != '=') return false;
    auto rest = token.substr(i + 1);
    if (rest.empty()) return false;
    size_t b = 0;
    while (b < rest.size() && is_re_space(rest[b])) ++b;
    if (b == rest.size()) {
      value = std::string(rest.substr(rest.size() - 1));
      return true;
    }
    size_t e = rest.size();
    while (e > b && is_re_space(rest[e - 1])) --e;
    value = std::string(rest.substr(b, e - b));
    return true;
  }

 private:
  const std::string& m_path;
  bool m_done = false;
  std::set<std::string> m_seen;
};

// BuildKit's extractBuilderFlags: leading words starting with "--" are
// flags (quotes removed, backslash escapes the next character); a bare "--"
// ends them. Returns the rest of the line.
// `sources` gets, for each flag, the position of each character (`base` +
// its index in `line`).
std::string_view extract_flags(std::string_view line, std::vector<std::string>& flags,
                               std::vector<std::vector<size_t>>& sources, size_t base) {
  enum { in_spaces, in_word, in_quote } phase = in_spaces;
  std::string word;
  std::vector<size_t> src;
  char quote = 0;
  bool blank_ok = false;
  auto keep = [&](char c, size_t pos) {
    word += c;
    src.push_back(base + pos);
  };
  for (size_t pos = 0; pos <= line.size(); ++pos) {
    const bool at_end = pos == line.size();
    char ch = at_end ? 0 : line[pos];
    if (phase == in_spaces) {
      if (at_end) break;
      if (is_space(ch)) continue;
      if (ch != '-' || pos + 1 == line.size() || line[pos + 1] != '-') return line.substr(pos);
      phase = in_word;
    }
    if (at_end) {
      if (word != "--" && (blank_ok || !word.empty())) {
        flags.push_back(word);
        sources.push_back(src);
      }
      break;
    }
    if (phase == in_word) {
      if (is_space(ch)) {
        phase = in_spaces;
        if (word == "--") return line.substr(pos);
        if (blank_ok || !word.empty()) {
          flags.push_back(word);
          sources.push_back(src);
        }
        word.clear();
        src.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = in_quote;
        continue;
      }
      if (ch == '\\') {
        if (pos + 1 == line.size()) continue;
        ch = line[++pos];
      }
      keep(ch, pos);
      continue;
    }
    // in_quote
    if (ch == quote) {
      phase = in_word;
      continue;
    }
    if (ch == '\\') {
      if (pos + 1 == line.size()) {
        phase = in_word;
        continue;
      }
      ch = line[++pos];
    }
    keep(ch, pos);
  }
  return {};
}

// Collects the elements of a JSON array, noting any that is not a string.
class ArrayProbe : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return element(); }
  bool boolean(bool) override { return element(); }
  bool number_integer(number_integer_t) override { return element(); }
  bool number_unsigned(number_unsigned_t) override { return element(); }
  bool number_float(number_float_t, const string_t&) override { return element(); }
  bool binary(binary_t&) override { return element(); }
  bool string(string_t& value) override {
    if (m_depth == 1) m_strings.push_back(value);
    return m_depth > 0;
  }
  bool start_object(std::size_t) override {
    element();
    return ++m_depth > 1;
  }
  bool key(string_t&) override { return true; }
  bool end_object() override {
    --m_depth;
    return true;
  }
  bool start_array(std::size_t) override {
    element();
    ++m_depth;
    return true;
  }
  bool end_array() override {
    --m_depth;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

  bool non_string = false;
  std::vector<std::string> m_strings;

 private:
  bool element() {
    if (m_depth == 1) non_string = true;
    return m_depth > 0;
  }
  int m_depth = 0;
};

enum class JsonForm { not_json, json, not_strings };

// BuildKit's parseJSON: text starting with '[' whose first JSON value is an
// array (anything may follow it). An array holding non-strings is an error.
JsonForm parse_json_array(std::string_view text, std::vector<std::string>& out) {
  text = trim_left(text);
  if (text.empty() || text.front() != '[') return JsonForm::not_json;
  ArrayProbe probe;
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text.begin(), text.end(), &probe, nlohmann::json::input_format_t::json,
                                   /*strict=*/false);
  } catch (const std::exception&) {
    ok = false;
  }
  if (!ok) return JsonForm::not_json;
  if (probe.non_string) return JsonForm::not_strings;
  out = std::move(probe.m_strings);
  return JsonForm::json;
}

const std::set<std::string, std::less<>> k_maybe_json = {"add", "cmd", "copy", "entrypoint", "run", "shell", "volume"};
const std::set<std::string, std::less<>> k_heredoc_commands = {"add", "copy", "run"};

// newNodeFromLine: keyword, flags, arguments, and the exec (JSON) form.
// `base` is the position of `line` in the logical line (positions recorded
// in the instruction are logical-line positions).
Result<Instruction> split_instruction(std::string_view line, int depth, size_t base) {
  Instruction ins;
  auto t = trim_both(line);
  const size_t t_at = base + static_cast<size_t>(t.data() - line.data());
  size_t sep = 0;
  while (sep < t.size() && !is_separator(t[sep])) ++sep;
  ins.keyword = std::string(t.substr(0, sep));
  ins.command = ascii_lower(ins.keyword);
  ins.args_offset = t_at + t.size();
  if (sep < t.size()) {
    size_t rest = sep;
    while (rest < t.size() && is_separator(t[rest])) ++rest;
    auto after = extract_flags(t.substr(rest), ins.flags, ins.flag_sources, t_at + rest);
    auto args = trim_both(after);
    ins.args = std::string(args);
    if (!args.empty()) ins.args_offset = t_at + static_cast<size_t>(args.data() - t.data());
  }
  const char* k_not_strings = "when using JSON array syntax, arrays must be comprised of strings only";
  if (k_maybe_json.count(ins.command) && !ins.args.empty()) {
    auto form = parse_json_array(ins.args, ins.json_args);
    if (form == JsonForm::not_strings) return make_error(ErrorKind::invalid, k_not_strings);
    ins.json = form == JsonForm::json;
  } else if (ins.command == "healthcheck") {
    auto a = std::string_view(ins.args);
    size_t end = 0;
    while (end < a.size() && !is_space(a[end])) ++end;
    std::vector<std::string> ignored;
    if (end > 0 && parse_json_array(a.substr(end), ignored) == JsonForm::not_strings) {
      return make_error(ErrorKind::invalid, k_not_strings);
    }
  } else if (ins.command == "onbuild" && !ins.args.empty() && depth == 0) {
    auto sub = split_instruction(ins.args, depth + 1, ins.args_offset);
    if (!sub) return sub.error();
    ins.trigger.push_back(std::move(*sub));
  }
  return ins;
}

bool can_contain_heredoc(const Instruction& ins) {
  const Instruction& target = ins.command == "onbuild" && !ins.trigger.empty() ? ins.trigger.front() : ins;
  return k_heredoc_commands.count(target.command) && !target.json;
}

size_t count_quotes(std::string_view s) { return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return c == '\'' || c == '"'; })); }

// `^(\d*)<<(-?)([^<]*)$` on one word; the delimiter is the word processed
// as a shell word, and must stay one word. Quotes make the body literal.
Result<std::optional<Heredoc>> parse_heredoc(std::string_view word) {
  size_t i = 0;
  while (i < word.size() && is_digit(word[i])) ++i;
  if (word.substr(i, 2) != "<<") return std::optional<Heredoc>();
  i += 2;
  Heredoc doc;
  if (i < word.size() && word[i] == '-') {
    doc.chomp = true;
    ++i;
  }
  auto rest = word.substr(i);
  if (rest.empty() || rest.find('<') != std::string_view::npos) return std::optional<Heredoc>();
  LexOptions plain;
  plain.skip_unset = true;
  auto words = process_word(rest, {}, plain);
  if (!words) return words.error();
  if (words->words.size() != 1) return std::optional<Heredoc>();
  LexOptions raw = plain;
  raw.raw_quotes = true;
  auto raw_words = process_word(rest, {}, raw);
  if (!raw_words) return raw_words.error();
  if (raw_words->words.size() != words->words.size()) {
    return make_error(ErrorKind::invalid,
                      "internal lexing of heredoc produced inconsistent results: " + std::string(rest));
  }
  doc.name = words->words.front();
  doc.expand = count_quotes(doc.name) == count_quotes(raw_words->words.front());
  return std::optional<Heredoc>(std::move(doc));
}

// Every heredoc word of the line, in order. The line is lexed as a shell
// line with the backslash as escape whatever the directive says, as
// BuildKit does; a line that does not lex (an open quote) has none.
Result<std::vector<Heredoc>> heredocs_from_line(std::string_view line) {
  std::vector<Heredoc> docs;
  if (line.find("<<") == std::string_view::npos) return docs;
  LexOptions raw;
  raw.raw_quotes = true;
  raw.raw_escapes = true;
  raw.skip_unset = true;
  auto words = process_word(line, {}, raw);
  if (!words) return docs;
  for (const auto& w : words->words) {
    auto doc = parse_heredoc(w);
    if (!doc) return doc.error();
    if (*doc) docs.push_back(std::move(**doc));
  }
  return docs;
}

}  // namespace

std::string located(const std::string& path, int line, std::string_view message) {
  if (line <= 0) return path + ": " + std::string(message);
  return path + ":" + std::to_string(line) + ": " + std::string(message);
}

Result<ParsedFile> parse_lines(std::string_view text, const std::string& path) {
  ParsedFile file;
  auto lines = split_lines(text);
  if (!lines.empty() && lines[0].substr(0, k_bom.size()) == k_bom) lines[0].remove_prefix(k_bom.size());
  file.line_count = static_cast<int>(lines.size());
  DirectiveReader directives(path);
  file.instructions.reserve(lines.size() / 2 + 1);
  std::string joined;

  size_t i = 0;
  while (i < lines.size()) {
    auto token = trim_left(trim_newline(lines[i]));
    if (auto st = directives.read(token, static_cast<int>(i) + 1, file); !st) return st.error();
    if (!token.empty() && token.front() == '#') token = {};
    ++i;
    const int start_line = static_cast<int>(i);
    auto [first, end] = trim_continuation(token, file.escape);
    if (end && first.empty()) continue;

    // Most instructions are one line: only continued ones are copied.
    std::vector<Piece> pieces;
    auto add_piece = [&](std::string_view piece, size_t logical_at, size_t line_index) {
      if (piece.empty()) return;
      pieces.push_back(Piece{logical_at, static_cast<size_t>(piece.data() - text.data()), piece.size(),
                             static_cast<int>(line_index) + 1, static_cast<size_t>(lines[line_index].data() - text.data())});
    };
    add_piece(first, 0, i - 1);
    std::string_view logical = first;
    if (!end) {
      joined.assign(first);
      while (!end && i < lines.size()) {
        const size_t index = i;
        auto raw = lines[i++];
        if (is_comment(raw)) continue;
        auto cont = trim_newline(raw);
        if (trim_left(cont).empty()) continue;
        auto [piece, piece_end] = trim_continuation(cont, file.escape);
        add_piece(piece, joined.size(), index);
        joined += piece;
        end = piece_end;
      }
      logical = joined;
    }

    auto ins = split_instruction(logical, 0, 0);
    if (!ins) return make_error(ErrorKind::invalid, located(path, start_line, ins.error().message));
    ins->line = start_line;
    ins->pieces = std::move(pieces);
    if (can_contain_heredoc(*ins)) {
      auto docs = heredocs_from_line(logical);
      if (!docs) return make_error(ErrorKind::invalid, located(path, start_line, docs.error().message));
      for (auto& doc : *docs) {
        bool terminated = false;
        while (i < lines.size()) {
          auto candidate = trim_newline(lines[i++]);
          if (doc.chomp) {
            while (!candidate.empty() && candidate.front() == '\t') candidate.remove_prefix(1);
          }
          if (candidate == doc.name) {
            terminated = true;
            break;
          }
        }
        if (!terminated) return make_error(ErrorKind::invalid, located(path, start_line, "unterminated heredoc"));
        ins->heredocs.push_back(std::move(doc));
      }
    }
    ins->end_line = static_cast<int>(i);
    file.instructions.push_back(std::move(*ins));
  }
  return file;
}

SyntaxDirective detect_syntax(std::string_view text) {
  size_t bom = 0;
  if (text.substr(0, k_bom.size()) == k_bom) {
    text.remove_prefix(k_bom.size());
    bom = k_bom.size();
  }
  // Only the top of the file matters: read line by line, stop early.
  size_t pos = 0;
  int line_no = 0;
  auto next_line = [&](std::string_view& line) {
    if (pos >= text.size()) return false;
    auto nl = text.find('\n', pos);
    line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    return true;
  };
  std::string_view line;
  if (!next_line(line)) return {};
  if (line.substr(0, 2) == "#!" && !next_line(line)) return {};
  std::set<std::string> seen;
  do {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() != '#') break;
    // DetectSyntax trims after the '#' with Go's unicode.IsSpace, which
    // includes \v; the main parser's pattern does not. Both agree otherwise.
    std::string token = "#" + std::string(trim_left(line.substr(1)));
    std::string key, value;
    if (!DirectiveReader::match(token, key, value)) break;
    if (key != "syntax" && key != "escape" && key != "check") break;
    if (!seen.insert(key).second) break;
    if (key == "syntax") {
      // The value starts after the first '=' and its blanks.
      size_t at = line.find('=') + 1;
      while (at < line.size() && is_re_space(line[at])) ++at;
      size_t line_start = static_cast<size_t>(line.data() - text.data());
      return SyntaxDirective{value.substr(0, value.find(' ')), line_no, bom + line_start + at,
                             column_of(text, line_start, line_start + at)};
    }
  } while (next_line(line));
  return {};
}

int column_of(std::string_view text, size_t line_start, size_t offset) {
  int column = 1;
  for (size_t i = line_start; i < offset && i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++column;
  }
  return column;
}

std::vector<SourceRange> source_of(const std::vector<Piece>& pieces, std::string_view text, size_t begin, size_t end) {
  std::vector<SourceRange> out;
  for (const auto& p : pieces) {
    size_t lo = std::max(begin, p.logical);
    size_t hi = std::min(end, p.logical + p.length);
    if (lo >= hi) continue;
    size_t offset = p.file + (lo - p.logical);
    out.push_back(SourceRange{offset, hi - lo, p.line, column_of(text, p.line_start, offset)});
  }
  return out;
}

std::vector<std::string> split_words(std::string_view rest, char escape) {
  std::vector<std::string> out;
  for (auto& w : split_words_at(rest, escape)) out.push_back(std::move(w.text));
  return out;
}

std::vector<Word> split_words_at(std::string_view rest, char escape) {
  std::vector<Word> words;
  enum { in_spaces, in_word, in_quote } phase = in_spaces;
  std::string word;
  size_t begin = 0;
  char quote = 0;
  bool blank_ok = false;
  for (size_t pos = 0; pos <= rest.size(); ++pos) {
    const bool at_end = pos == rest.size();
    char ch = at_end ? 0 : rest[pos];
    if (phase == in_spaces) {
      if (at_end) break;
      if (is_space(ch)) continue;
      phase = in_word;
      begin = pos;
    }
    if (at_end) {
      if (blank_ok || !word.empty()) words.push_back(Word{word, begin, pos});
      break;
    }
    if (phase == in_word) {
      if (is_space(ch)) {
        phase = in_spaces;
        if (blank_ok || !word.empty()) words.push_back(Word{word, begin, pos});
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = in_quote;
      }
      if (ch == escape) {
        if (pos + 1 == rest.size()) continue;
        // An unquoted escape keeps itself and the next character, even a quote.
        word += ch;
        ch = rest[++pos];
      }
      word += ch;
      continue;
    }
    // in_quote
    if (ch == quote) phase = in_word;
    if (ch == escape && quote != '\'') {
      if (pos + 1 == rest.size()) {
        phase = in_word;
        continue;
      }
      word += ch;
      ch = rest[++pos];
    }
    word += ch;
  }
  return words;
}

}  // namespace bw::dockerfile
