#include "oci/challenge.h"

#include "util/strings.h"

namespace bw::oci {
namespace {

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token68_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

bool is_ws(char c) { return c == ' ' || c == '\t'; }

// A cursor over one header value.
class Reader {
 public:
  explicit Reader(std::string_view s) : m_s(s) {}

  bool at_end() const { return m_pos >= m_s.size(); }
  char peek() const { return at_end() ? '\0' : m_s[m_pos]; }
  size_t pos() const { return m_pos; }
  void seek(size_t pos) { m_pos = pos; }
  void skip_ws() {
    while (!at_end() && is_ws(m_s[m_pos])) ++m_pos;
  }
  void skip_ws_and_commas() {
    while (!at_end() && (is_ws(m_s[m_pos]) || m_s[m_pos] == ',')) ++m_pos;
  }
  std::string_view token() {
    size_t start = m_pos;
    while (!at_end() && is_tchar(m_s[m_pos])) ++m_pos;
    return m_s.substr(start, m_pos - start);
  }
  // token68 followed by optional whitespace and then a ',' or the end;
  // leaves the cursor where it was when that is not what follows.
  std::optional<std::string_view> token68() {
    size_t start = m_pos;
    while (!at_end() && is_token68_char(m_s[m_pos])) ++m_pos;
    if (m_pos == start) return std::nullopt;
    while (!at_end() && m_s[m_pos] == '=') ++m_pos;
    size_t end = m_pos;
    skip_ws();
    if (at_end() || peek() == ',') return m_s.substr(start, end - start);
    m_pos = start;
    return std::nullopt;
  }
  // After the opening '"': the unescaped content, or nullopt when the string
  // never ends.
  std::optional<std::string> quoted_rest() {
    std::string out;
    while (!at_end()) {
      char c = m_s[m_pos++];
      if (c == '"') return out;
      if (c == '\\') {
        if (at_end()) return std::nullopt;
        c = m_s[m_pos++];
      }
      out += c;
    }
    return std::nullopt;
  }
  std::string_view bare_value() {
    size_t start = m_pos;
    while (!at_end() && m_s[m_pos] != ',' && !is_ws(m_s[m_pos]) && m_s[m_pos] != '"') ++m_pos;
    return m_s.substr(start, m_pos - start);
  }

 private:
  std::string_view m_s;
  size_t m_pos = 0;
};

// Whether the cursor is at `token BWS "="`, i.e. a parameter rather than the
// scheme of the next challenge. The cursor does not move.
bool at_param(Reader& r) {
  size_t start = r.pos();
  bool is_param = !r.token().empty();
  if (is_param) {
    r.skip_ws();
    is_param = r.peek() == '=';
  }
  r.seek(start);
  return is_param;
}

// Reads `name = value`; false on a syntax error (the parameter is dropped).
bool read_param(Reader& r, Challenge& ch) {
  auto name = r.token();
  if (name.empty()) return false;
  r.skip_ws();
  if (r.peek() != '=') return false;
  r.seek(r.pos() + 1);
  r.skip_ws();
  std::string value;
  if (r.peek() == '"') {
    r.seek(r.pos() + 1);
    auto q = r.quoted_rest();
    if (!q) return false;
    value = std::move(*q);
  } else {
    value = std::string(r.bare_value());
  }
  ch.params.emplace(to_lower(name), std::move(value));  // the first value wins
  return true;
}

}  // namespace

std::string Challenge::param(std::string_view name) const {
  auto it = params.find(to_lower(name));
  return it == params.end() ? std::string() : it->second;
}

std::vector<Challenge> parse_challenges(std::string_view header_value) {
  std::vector<Challenge> out;
  Reader r(header_value);
  while (true) {
    r.skip_ws_and_commas();
    if (r.at_end()) return out;
    auto scheme = r.token();
    if (scheme.empty()) return out;
    Challenge ch;
    ch.scheme = to_lower(scheme);
    bool had_space = !r.at_end() && is_ws(r.peek());
    r.skip_ws();
    if (r.at_end() || r.peek() == ',') {
      out.push_back(std::move(ch));  // a scheme without parameters
      continue;
    }
    if (!had_space) return out;  // "Bearer=..." or "Bearer\"": not a challenge
    if (auto t68 = r.token68()) {
      ch.token68 = std::string(*t68);
      out.push_back(std::move(ch));
      continue;
    }
    // auth-param list. After each parameter: the end, or ',' followed by
    // either another parameter or the next challenge's scheme.
    bool next_challenge = false;
    while (!next_challenge) {
      if (!read_param(r, ch)) {
        out.push_back(std::move(ch));
        return out;
      }
      r.skip_ws();
      if (r.at_end()) break;
      if (r.peek() == ',') {
        r.skip_ws_and_commas();
        if (r.at_end()) break;
        next_challenge = !at_param(r);
      } else if (!at_param(r)) {
        // Neither ',' nor a parameter (a missing comma is forgiven): stop.
        out.push_back(std::move(ch));
        return out;
      }
    }
    out.push_back(std::move(ch));
    if (!next_challenge) return out;
  }
}

std::vector<Challenge> parse_challenges(const std::vector<std::string>& header_values) {
  std::vector<Challenge> out;
  for (const auto& value : header_values) {
    auto more = parse_challenges(value);
    out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  return out;
}

const Challenge* find_challenge(const std::vector<Challenge>& challenges, std::string_view scheme) {
  for (const auto& ch : challenges) {
    if (equals_icase(ch.scheme, scheme)) return &ch;
  }
  return nullptr;
}

std::string Scope::str() const { return type + ":" + name + ":" + join(actions, ","); }

std::string repository_scope(std::string_view repository, std::string_view actions) {
  return "repository:" + std::string(repository) + ":" + std::string(actions);
}

std::vector<std::string> split_scopes(std::string_view scopes) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < scopes.size()) {
    while (i < scopes.size() && is_ws(scopes[i])) ++i;
    size_t start = i;
    while (i < scopes.size() && !is_ws(scopes[i])) ++i;
    if (i > start) out.emplace_back(scopes.substr(start, i - start));
  }
  return out;
}

std::optional<Scope> parse_scope(std::string_view scope) {
  auto first = scope.find(':');
  auto last = scope.rfind(':');
  if (first == std::string_view::npos || first == last) return std::nullopt;
  Scope out;
  out.type = std::string(scope.substr(0, first));
  out.name = std::string(scope.substr(first + 1, last - first - 1));
  for (auto& action : split(scope.substr(last + 1), ',')) {
    if (!action.empty()) out.actions.push_back(std::move(action));
  }
  if (out.type.empty() || out.name.empty() || out.actions.empty()) return std::nullopt;
  return out;
}

}  // namespace bw::oci
