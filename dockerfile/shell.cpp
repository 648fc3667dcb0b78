#include "dockerfile/shell.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

namespace bw::dockerfile {
namespace {

constexpr int k_eof = -1;
// ${...} inside ${...}: deeper than this is an attack, not a Dockerfile.
constexpr int k_max_nesting = 64;

bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
bool is_digit(int c) { return c >= '0' && c <= '9'; }
bool is_name_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
}
// POSIX special parameters: $@ $* $# $? $- $$ $! $0.
bool is_special_param(int c) {
  return c == '@' || c == '*' || c == '#' || c == '?' || c == '-' || c == '$' || c == '!' || c == '0';
}

// Accumulates the whitespace-split words of a processed word: text that came
// from quotes or escapes is never split, text from expansions is.
class Words {
 public:
  void add_char(char c) {
    if (is_space(c)) {
      if (m_in_word && !m_word.empty()) {
        m_words.push_back(std::move(m_word));
        m_word.clear();
        m_in_word = false;
      }
      return;
    }
    add_raw_char(c);
  }
  void add_raw_char(char c) {
    m_word += c;
    m_in_word = true;
  }
  void add_string(std::string_view s) {
    for (char c : s) add_char(c);
  }
  void add_raw_string(std::string_view s) {
    m_word += s;
    m_in_word = true;
  }
  std::vector<std::string> finish() {
    if (!m_word.empty()) m_words.push_back(std::move(m_word));
    return std::move(m_words);
  }

 private:
  std::vector<std::string> m_words;
  std::string m_word;
  bool m_in_word = false;
};

// ---- shell patterns (${v#p} ${v%p} ${v/p/r}) ----
// BuildKit turns a pattern into a Go regular expression: '*' is '.*', '?' is
// '.', both of which match any character but a newline, on code points.

struct Rune {
  char32_t cp;
  size_t offset;  // byte offset in the source string
};

// Lenient UTF-8 decoding: an invalid byte is one U+FFFD, as in Go.
std::vector<Rune> decode_runes(std::string_view s) {
  std::vector<Rune> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto b0 = static_cast<unsigned char>(s[i]);
    char32_t cp = 0xFFFD;
    size_t len = 1;
    auto cont = [&](size_t k) { return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80; };
    auto at = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
    if (b0 < 0x80) {
      cp = b0;
    } else if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
      cp = ((b0 & 0x1Fu) << 6) | at(1);
      len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
      char32_t v = ((b0 & 0x0Fu) << 12) | (at(1) << 6) | at(2);
      if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) {
        cp = v;
        len = 3;
      }
    } else if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
      char32_t v = ((b0 & 0x07u) << 18) | (at(1) << 12) | (at(2) << 6) | at(3);
      if (v >= 0x10000 && v <= 0x10FFFF) {
        cp = v;
        len = 4;
      }
    }
    out.push_back(Rune{cp, i});
    i += len;
  }
  return out;
}

struct GlobToken {
  enum Kind : std::uint8_t { literal, any_one, any_many };
  Kind kind;
  char32_t cp;
};
using Glob = std::vector<GlobToken>;

// Escapes: \* \? \\ are literals; \} and \/ drop the backslash (they were
// escaped only to get past the ${...} syntax); any other escape is an error.
Result<Glob> compile_glob(std::string_view pattern) {
  auto runes = decode_runes(pattern);
  Glob out;
  for (size_t i = 0; i < runes.size(); ++i) {
    char32_t c = runes[i].cp;
    if (c == '*') {
      out.push_back({GlobToken::any_many, 0});
    } else if (c == '?') {
      out.push_back({GlobToken::any_one, 0});
    } else if (c == '\\') {
      if (i + 1 < runes.size() && (runes[i + 1].cp == '}' || runes[i + 1].cp == '/')) continue;
      if (i + 1 >= runes.size()) return make_error(ErrorKind::invalid, "invalid escape '\\' at the end");
      char32_t n = runes[++i].cp;
      if (n != '*' && n != '?' && n != '\\') {
        size_t start = runes[i].offset;
        size_t end = i + 1 < runes.size() ? runes[i + 1].offset : pattern.size();
        return make_error(ErrorKind::invalid,
                          "invalid escape '\\" + std::string(pattern.substr(start, end - start)) + "'");
      }
      out.push_back({GlobToken::literal, n});
    } else {
      out.push_back({GlobToken::literal, c});
    }
  }
  return out;
}

bool token_accepts(const GlobToken& t, char32_t c) {
  switch (t.kind) {
    case GlobToken::literal:
      return t.cp == c;
    case GlobToken::any_one:
    case GlobToken::any_many:
      return c != '\n';
  }
  return false;
}

// A '*' may match nothing: let every active state before one fall through.
void closure(const Glob& g, std::vector<char>& states) {
  for (size_t j = 0; j < g.size(); ++j) {
    if (states[j] && g[j].kind == GlobToken::any_many) states[j + 1] = 1;
  }
}

// Anchored at rune index `from`: the end (rune index) of the shortest or the
// longest match of the whole pattern, or -1. O((n - from) * pattern).
long anchored_match(const Glob& g, const std::vector<Rune>& r, size_t from, bool longest) {
  std::vector<char> cur(g.size() + 1, 0), nxt(g.size() + 1, 0);
  cur[0] = 1;
  closure(g, cur);
  long best = -1;
  for (size_t i = from;; ++i) {
    if (cur[g.size()]) {
      best = static_cast<long>(i);
      if (!longest) return best;
    }
    if (i == r.size()) break;
    std::fill(nxt.begin(), nxt.end(), 0);
    bool alive = false;
    for (size_t j = 0; j < g.size(); ++j) {
      if (!cur[j] || !token_accepts(g[j], r[i].cp)) continue;
      nxt[g[j].kind == GlobToken::any_many ? j : j + 1] = 1;
      alive = true;
    }
    if (!alive) break;
    closure(g, nxt);
    std::swap(cur, nxt);
  }
  return best;
}

// can[i]: some match of the whole pattern starts at rune i. Computed right to
// left in O(n * pattern) so an unanchored search never rescans the value.
std::vector<char> match_starts(const Glob& g, const std::vector<Rune>& r) {
  const size_t n = r.size();
  const size_t t = g.size();
  std::vector<char> can(n + 1, 0);
  std::vector<char> row(t + 1, 0), next_row(t + 1, 0);  // next_row: row for i+1
  for (size_t i = n + 1; i-- > 0;) {
    row[t] = 1;
    for (size_t j = t; j-- > 0;) {
      bool ok = false;
      bool have = i < n && token_accepts(g[j], r[i].cp);
      if (g[j].kind == GlobToken::any_many) {
        ok = row[j + 1] || (have && next_row[j]);
      } else {
        ok = have && next_row[j + 1];
      }
      row[j] = ok ? 1 : 0;
    }
    can[i] = row[0];
    std::swap(row, next_row);
  }
  return can;
}

// ${v#p} ${v##p}: remove the shortest (longest) prefix matching p.
std::string trim_prefix(const Glob& g, std::string_view value, bool greedy) {
  auto runes = decode_runes(value);
  long end = anchored_match(g, runes, 0, greedy);
  if (end < 0) return std::string(value);
  size_t off = static_cast<size_t>(end) < runes.size() ? runes[static_cast<size_t>(end)].offset : value.size();
  return std::string(value.substr(off));
}

// ${v%p} ${v%%p}: remove the shortest (longest) suffix matching p, found as a
// prefix of the reversed value with the reversed pattern.
std::string trim_suffix(const Glob& g, std::string_view value, bool greedy) {
  auto runes = decode_runes(value);
  Glob rg(g.rbegin(), g.rend());
  std::vector<Rune> rev_runes(runes.rbegin(), runes.rend());
  long len = anchored_match(rg, rev_runes, 0, greedy);
  if (len < 0) return std::string(value);
  size_t keep = runes.size() - static_cast<size_t>(len);
  size_t off = keep < runes.size() ? runes[keep].offset : value.size();
  return std::string(value.substr(0, off));
}

// Go's regexp replacement template: $$ is '$', $0 / ${0} the match, any
// other $name or ${name} empty (BuildKit's patterns have no groups), and a
// '$' that starts no name stays as it is.
std::string expand_template(std::string_view tmpl, std::string_view match) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '$') {
      out += tmpl[i];
      continue;
    }
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool brace = j < tmpl.size() && tmpl[j] == '{';
    if (brace) ++j;
    size_t k = j;
    while (k < tmpl.size() && is_name_char(static_cast<unsigned char>(tmpl[k]))) ++k;
    if (k == j || (brace && (k >= tmpl.size() || tmpl[k] != '}'))) {
      out += '$';
      continue;
    }
    auto name = tmpl.substr(j, k - j);
    if (name.find_first_not_of('0') == std::string_view::npos) out += match;
    i = brace ? k : k - 1;
  }
  return out;
}

// ${v/p/r} replaces the leftmost match, ${v//p/r} every match, with Go's
// rules for empty matches (none directly after a previous match).
std::string replace_matches(const Glob& g, std::string_view value, std::string_view replacement, bool all) {
  auto runes = decode_runes(value);
  auto can = match_starts(g, runes);
  const size_t n = runes.size();
  auto offset = [&](size_t i) { return i < n ? runes[i].offset : value.size(); };
  std::string out;
  size_t copied = 0;
  long prev_end = -1;
  size_t pos = 0;
  while (pos <= n) {
    size_t s = pos;
    while (s <= n && !can[s]) ++s;
    if (s > n) break;
    long end = anchored_match(g, runes, s, /*longest=*/true);
    if (end < 0) break;  // cannot happen: can[s] says a match starts here
    auto e = static_cast<size_t>(end);
    bool accept = true;
    size_t next_pos = e;
    if (e == pos) {
      if (static_cast<long>(s) == prev_end) accept = false;
      next_pos = pos + 1;
    }
    prev_end = end;
    if (accept) {
      out.append(value.substr(copied, offset(s) - copied));
      out += expand_template(replacement, value.substr(offset(s), offset(e) - offset(s)));
      copied = offset(e);
      if (!all) break;
    }
    pos = next_pos;
  }
  out.append(value.substr(copied));
  return out;
}

// Sets a flag for the life of a scope and restores the previous value.
class FlagScope {
 public:
  FlagScope(bool& flag, bool value) : m_flag(flag), m_saved(flag) { m_flag = value; }
  ~FlagScope() { m_flag = m_saved; }
  FlagScope(const FlagScope&) = delete;
  FlagScope& operator=(const FlagScope&) = delete;

 private:
  bool& m_flag;
  bool m_saved;
};

class Lexer {
 public:
  Lexer(std::string_view input, const Env& env, const LexOptions& options)
      : m_in(input), m_env(env), m_options(options), m_raw_escapes(options.raw_escapes) {}

  Result<WordResult> run() {
    WordResult result;
    Words words;
    if (!process_stop_on(k_eof, m_options.raw_escapes, result.text, &words)) {
      return make_error(ErrorKind::invalid, m_error);
    }
    result.words = words.finish();
    result.unset = std::move(m_unset);
    return result;
  }

 private:
  int peek() const { return m_pos < m_in.size() ? static_cast<unsigned char>(m_in[m_pos]) : k_eof; }
  int next() { return m_pos < m_in.size() ? static_cast<unsigned char>(m_in[m_pos++]) : k_eof; }

  bool fail(std::string message) {
    m_error = std::move(message);
    return false;
  }

  bool check_size(const std::string& s) {
    if (s.size() <= k_max_expanded_size) return true;
    return fail("expanded word is longer than " + std::to_string(k_max_expanded_size) + " bytes");
  }

  std::optional<std::string> lookup(const std::string& name) {
    auto it = m_env.find(name);
    if (it == m_env.end()) {
      m_unset.insert(name);
      return std::nullopt;
    }
    return it->second;
  }

  // Processes up to `stop` (consumed) or the end of input; `words` is only
  // kept for the outermost call, as in BuildKit.
  bool process_stop_on(int stop, bool raw_escapes, std::string& out, Words* words) {
    FlagScope scope(m_raw_escapes, raw_escapes);
    while (peek() != k_eof) {
      int ch = peek();
      if (stop != k_eof && ch == stop) {
        next();
        return true;
      }
      if (ch == '$') {
        std::string tmp;
        if (!process_dollar(tmp)) return false;
        out += tmp;
        if (words) words->add_string(tmp);
      } else if (ch == '\'' || ch == '"') {
        std::string tmp;
        if (!(ch == '\'' ? process_single_quote(tmp) : process_double_quote(tmp))) return false;
        out += tmp;
        if (words) words->add_raw_string(tmp);
      } else {
        next();
        if (ch == static_cast<unsigned char>(m_options.escape)) {
          if (m_raw_escapes) {
            if (words) words->add_raw_char(static_cast<char>(ch));
            out += static_cast<char>(ch);
          }
          ch = next();
          if (ch == k_eof) break;
          if (words) words->add_raw_char(static_cast<char>(ch));
        } else if (words) {
          words->add_char(static_cast<char>(ch));
        }
        out += static_cast<char>(ch);
      }
      if (!check_size(out)) return false;
    }
    if (stop != k_eof) {
      return fail(std::string("unexpected end of statement while looking for matching ") + static_cast<char>(stop));
    }
    return true;
  }

  bool process_single_quote(std::string& out) {
    int ch = next();
    if (m_options.raw_quotes) out += static_cast<char>(ch);
    while (true) {
      ch = next();
      if (ch == k_eof) return fail("unexpected end of statement while looking for matching single-quote");
      if (ch == '\'') {
        if (m_options.raw_quotes) out += static_cast<char>(ch);
        return true;
      }
      out += static_cast<char>(ch);
    }
  }

  // Inside double quotes the escape character only escapes ", $ and itself.
  bool process_double_quote(std::string& out) {
    int ch = next();
    if (m_options.raw_quotes) out += static_cast<char>(ch);
    while (true) {
      int p = peek();
      if (p == k_eof) return fail("unexpected end of statement while looking for matching double-quote");
      if (p == '"') {
        next();
        if (m_options.raw_quotes) out += '"';
        return true;
      }
      if (p == '$') {
        std::string value;
        if (!process_dollar(value)) return false;
        out += value;
      } else {
        ch = next();
        if (ch == static_cast<unsigned char>(m_options.escape)) {
          if (m_raw_escapes) out += static_cast<char>(ch);
          int q = peek();
          if (q == k_eof) continue;
          if (q == '"' || q == '$' || q == static_cast<unsigned char>(m_options.escape)) ch = next();
        }
        out += static_cast<char>(ch);
      }
      if (!check_size(out)) return false;
    }
  }

  std::string process_name() {
    std::string name;
    while (peek() != k_eof) {
      int ch = peek();
      if (name.empty() && is_digit(ch)) {
        while (is_digit(peek())) name += static_cast<char>(next());
        return name;
      }
      if (name.empty() && is_special_param(ch)) {
        next();
        return std::string(1, static_cast<char>(ch));
      }
      if (!is_name_char(ch)) break;
      name += static_cast<char>(next());
    }
    return name;
  }

  bool process_dollar(std::string& out) {
    next();  // '$'
    if (peek() != '{') {
      std::string name = process_name();
      if (name.empty()) {
        out = "$";
        return true;
      }
      auto value = lookup(name);
      out = value ? *value : (m_options.skip_unset ? "$" + name : std::string());
      return true;
    }
    next();  // '{'
    if (++m_depth > k_max_nesting) return fail("syntax error: substitutions nested too deeply");
    bool ok = process_braced(out);
    --m_depth;
    return ok;
  }

  bool process_braced(std::string& out) {
    int p = peek();
    if (p == k_eof) return fail("syntax error: missing '}'");
    if (p == '{' || p == '}' || p == ':') return fail("syntax error: bad substitution");
    std::string name = process_name();
    int ch = next();
    if (ch == k_eof) return fail("syntax error: missing '}'");
    std::string chs(1, static_cast<char>(ch));

    if (ch == '}') {
      auto value = lookup(name);
      out = value ? *value : (m_options.skip_unset ? "${" + name + "}" : std::string());
      return true;
    }
    if (ch == '/') return process_replace(name, out);

    bool null_is_unset = false;
    if (ch == ':') {
      null_is_unset = true;
      ch = next();
      if (ch == k_eof) return fail("syntax error: missing '}'");
      chs += static_cast<char>(ch);
    } else if (ch != '+' && ch != '-' && ch != '?' && ch != '#' && ch != '%') {
      return fail("unsupported modifier (" + chs + ") in substitution");
    }

    std::string word;
    if (!process_stop_on('}', ch == '#' || ch == '%', word, nullptr)) {
      if (peek() == k_eof) return fail("syntax error: missing '}'");
      return false;
    }
    auto value = lookup(name);
    if (!value && m_options.skip_unset) {
      out = "${" + name + chs + word + "}";
      return true;
    }
    bool empty = !value || (null_is_unset && value->empty());
    switch (ch) {
      case '-':
        out = empty ? word : *value;
        return true;
      case '+':
        out = empty ? std::string() : word;
        return true;
      case '?':
        if (!value) return fail(name + ": " + (word.empty() ? "is not allowed to be unset" : word));
        if (null_is_unset && value->empty()) {
          return fail(name + ": " + (word.empty() ? "is not allowed to be empty" : word));
        }
        out = *value;
        return true;
      case '#':
      case '%': {
        bool greedy = !word.empty() && word.front() == static_cast<char>(ch);
        if (greedy) word.erase(0, 1);
        auto glob = compile_glob(word);
        if (!glob) return fail("invalid pattern (" + word + ") in substitution: " + glob.error().message);
        std::string v = value ? *value : std::string();
        out = ch == '%' ? trim_suffix(*glob, v, greedy) : trim_prefix(*glob, v, greedy);
        return true;
      }
      default:
        return fail("unsupported modifier (" + chs + ") in substitution");
    }
  }

  bool process_replace(const std::string& name, std::string& out) {
    bool all = peek() == '/';
    if (all) next();
    std::string pattern;
    if (!process_stop_on('/', true, pattern, nullptr)) {
      if (peek() == k_eof) return fail("syntax error: missing '/' in ${}");
      return false;
    }
    std::string replacement;
    if (!process_stop_on('}', true, replacement, nullptr)) {
      if (peek() == k_eof) return fail("syntax error: missing '}'");
      return false;
    }
    auto value = lookup(name);
    if (!value && m_options.skip_unset) {
      out = "${" + name + "/" + pattern + "/" + replacement + "}";
      return true;
    }
    auto glob = compile_glob(pattern);
    if (!glob) return fail("invalid pattern (" + pattern + ") in substitution: " + glob.error().message);
    out = replace_matches(*glob, value ? *value : std::string(), replacement, all);
    return check_size(out);
  }

  std::string_view m_in;
  size_t m_pos = 0;
  const Env& m_env;
  LexOptions m_options;
  bool m_raw_escapes;
  int m_depth = 0;
  std::string m_error;
  std::set<std::string> m_unset;
};

}  // namespace

Result<WordResult> process_word(std::string_view word, const Env& env, const LexOptions& options) {
  return Lexer(word, env, options).run();
}

}  // namespace bw::dockerfile
