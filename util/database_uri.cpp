#include "util/database_uri.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace bw {

namespace {

constexpr std::string_view k_hidden = "***";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Where the parts of a URI are, as offsets into it. The userinfo is read
// generously: up to the last '@' before the query, so a password holding an
// unencoded '/' or '@' (which libpq would misread) is still hidden.
struct Parts {
  size_t rest = 0;                     // just after "://"
  size_t query = std::string::npos;    // the '?' or npos
  size_t at = std::string::npos;       // the '@' ending the userinfo, or npos
  size_t colon = std::string::npos;    // the ':' starting the password, or npos
};

Parts parts_of(const std::string& uri) {
  Parts p;
  size_t sep = uri.find("://");
  p.rest = sep == std::string::npos ? 0 : sep + 3;
  // libpq's userinfo ends at the first '@' before the first '/'; ours also
  // at the last '@' before the first '?'. The later of the two wins.
  size_t slash = uri.find('/', p.rest);
  size_t libpq_at = uri.find('@', p.rest);
  if (libpq_at != std::string::npos && slash != std::string::npos && libpq_at > slash) libpq_at = std::string::npos;
  size_t first_query = uri.find('?', p.rest);
  size_t generous_at = std::string::npos;
  for (size_t i = p.rest; i < uri.size() && i < first_query; ++i) {
    if (uri[i] == '@') generous_at = i;
  }
  if (libpq_at != std::string::npos) p.at = libpq_at;
  if (generous_at != std::string::npos && (p.at == std::string::npos || generous_at > p.at)) p.at = generous_at;
  if (p.at != std::string::npos) {
    size_t colon = uri.find(':', p.rest);
    if (colon != std::string::npos && colon < p.at) p.colon = colon;
  }
  p.query = uri.find('?', p.at == std::string::npos ? p.rest : p.at);
  return p;
}

// Calls fn(key_begin, key_end, value_begin, value_end) for each key=value of
// the query that starts at `query` (offsets into uri).
template <typename Fn>
void each_parameter(const std::string& uri, size_t query, Fn fn) {
  if (query == std::string::npos) return;
  size_t i = query + 1;
  while (i <= uri.size()) {
    size_t end = uri.find('&', i);
    if (end == std::string::npos) end = uri.size();
    size_t eq = std::string_view(uri).substr(i, end - i).find('=');
    if (eq != std::string::npos) fn(i, i + eq, i + eq + 1, end);
    i = end + 1;
  }
}

}  // namespace

std::vector<std::pair<size_t, size_t>> database_password_spans(const std::string& uri) {
  std::vector<std::pair<size_t, size_t>> spans;
  if (!is_postgres_uri(uri)) return spans;
  Parts p = parts_of(uri);
  if (p.colon != std::string::npos) spans.emplace_back(p.colon + 1, p.at);
  auto collect = [&](size_t query) {
    each_parameter(uri, query, [&](size_t kb, size_t ke, size_t vb, size_t ve) {
      if (percent_decode(std::string_view(uri).substr(kb, ke - kb)) == "password") spans.emplace_back(vb, ve);
    });
  };
  size_t first_query = uri.find('?', p.rest);
  collect(first_query);
  if (p.query != first_query) collect(p.query);
  return spans;
}

bool is_postgres_uri(std::string_view database) {
  return database.rfind("postgresql://", 0) == 0 || database.rfind("postgres://", 0) == 0;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::string percent_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string redact_database(const std::string& database) {
  auto spans = database_password_spans(database);
  if (spans.empty()) return database;
  std::sort(spans.begin(), spans.end());
  std::string out;
  size_t copied = 0;
  for (const auto& [begin, end] : spans) {
    if (end <= copied && begin < copied) continue;  // inside one already hidden
    if (begin >= copied) {
      out += database.substr(copied, begin - copied);
      out += k_hidden;
    }
    copied = std::max(copied, end);
  }
  out += database.substr(copied);
  return out;
}

std::vector<std::string> database_passwords(const std::string& database) {
  std::vector<std::string> out;
  for (const auto& [begin, end] : database_password_spans(database)) {
    std::string_view raw = std::string_view(database).substr(begin, end - begin);
    if (raw.empty()) continue;
    out.emplace_back(raw);
    std::string decoded = percent_decode(raw);
    if (decoded != raw && !decoded.empty()) out.push_back(decoded);
    // A password holding an unencoded '/', '?' or '@' is misread by libpq,
    // whose message may then quote a piece of it.
    size_t from = 0;
    for (size_t i = 0; i <= decoded.size(); ++i) {
      if (i == decoded.size() || decoded[i] == '/' || decoded[i] == '?' || decoded[i] == '@') {
        if (i > from && i - from < decoded.size()) out.push_back(decoded.substr(from, i - from));
        from = i + 1;
      }
    }
  }
  return out;
}

std::string redact_secrets(std::string text, const std::vector<std::string>& secrets) {
  // Every occurrence of every secret is found in the original text, then
  // the covered bytes are replaced in one pass: replacing secret by secret
  // could find a secret inside an earlier "***", or grow the text each time.
  std::vector<bool> hidden(text.size(), false);
  bool any = false;
  for (const auto& s : secrets) {
    if (s.empty()) continue;
    for (size_t at = text.find(s); at != std::string::npos; at = text.find(s, at + 1)) {
      std::fill(hidden.begin() + static_cast<std::ptrdiff_t>(at), hidden.begin() + static_cast<std::ptrdiff_t>(at + s.size()), true);
      any = true;
    }
  }
  if (!any) return text;
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!hidden[i]) {
      out += text[i];
    } else if (i == 0 || !hidden[i - 1]) {
      out += k_hidden;
    }
  }
  return out;
}

std::string map_uri_parameter(const std::string& uri, std::string_view key,
                              const std::function<std::string(const std::string&)>& fn) {
  Parts p = parts_of(uri);
  std::string out;
  size_t copied = 0;
  each_parameter(uri, p.query, [&](size_t kb, size_t ke, size_t vb, size_t ve) {
    if (percent_decode(std::string_view(uri).substr(kb, ke - kb)) != key) return;
    out += uri.substr(copied, vb - copied);
    out += percent_encode(fn(percent_decode(std::string_view(uri).substr(vb, ve - vb))));
    copied = ve;
  });
  out += uri.substr(copied);
  return out;
}

}  // namespace bw
