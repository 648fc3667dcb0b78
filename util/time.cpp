#include "util/time.h"

#include <cctype>
#include <cstdio>
#include <ctime>

#include "util/strings.h"

namespace bw {

Result<Millis> parse_duration(std::string_view text) {
  std::string_view s = trim(text);
  auto bad = [&](const std::string& why) {
    return make_error(ErrorKind::invalid, "invalid duration \"" + std::string(text) + "\": " + why);
  };
  if (s.empty()) return bad("empty");
  if (s == "0") return Millis(0);
  int64_t total = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return bad("expected a number, e.g. 30s, 15m, 6h, 1d");
    int64_t n = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      n = n * 10 + (s[i] - '0');
      if (n > 1'000'000'000) return bad("too large");
      ++i;
    }
    while (i < s.size() && s[i] == ' ') ++i;  // "5 m" reads as "5m"
    size_t u = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    std::string_view unit = s.substr(u, i - u);
    int64_t mult;
    if (unit == "ms") mult = 1;
    else if (unit == "s") mult = 1000;
    else if (unit == "m") mult = 60'000;
    else if (unit == "h") mult = 3'600'000;
    else if (unit == "d") mult = 86'400'000;
    else if (unit.empty()) return bad("missing unit (ms, s, m, h or d)");
    else return bad("unknown unit \"" + std::string(unit) + "\" (use ms, s, m, h or d)");
    total += n * mult;
  }
  return Millis(total);
}

std::string format_duration(Millis d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  struct U { int64_t n; const char* s; } units[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
  for (auto& unit : units) {
    if (ms >= unit.n) {
      out += std::to_string(ms / unit.n) + unit.s;
      ms %= unit.n;
    }
  }
  return out;
}

int64_t to_unix_ms(TimePoint t) {
  return std::chrono::duration_cast<Millis>(t.time_since_epoch()).count();
}

TimePoint from_unix_ms(int64_t ms) { return TimePoint(std::chrono::duration_cast<Clock::duration>(Millis(ms))); }

std::string format_rfc3339(TimePoint t) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

static bool read_int(std::string_view s, size_t& i, int digits, int& out) {
  out = 0;
  for (int k = 0; k < digits; ++k, ++i) {
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

std::optional<TimePoint> parse_rfc3339(std::string_view s) {
  std::tm tm{};
  size_t i = 0;
  int v;
  if (!read_int(s, i, 4, v)) return std::nullopt;
  tm.tm_year = v - 1900;
  if (i >= s.size() || s[i++] != '-' || !read_int(s, i, 2, v)) return std::nullopt;
  tm.tm_mon = v - 1;
  if (i >= s.size() || s[i++] != '-' || !read_int(s, i, 2, v)) return std::nullopt;
  tm.tm_mday = v;
  if (i >= s.size() || (s[i] != 'T' && s[i] != 't' && s[i] != ' ')) return std::nullopt;
  ++i;
  if (!read_int(s, i, 2, v)) return std::nullopt;
  tm.tm_hour = v;
  if (i >= s.size() || s[i++] != ':' || !read_int(s, i, 2, v)) return std::nullopt;
  tm.tm_min = v;
  if (i >= s.size() || s[i++] != ':' || !read_int(s, i, 2, v)) return std::nullopt;
  tm.tm_sec = v;
  int64_t frac_ms = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int64_t scale = 100;
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      frac_ms += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
  }
  int offset_min = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int sign = s[i++] == '-' ? -1 : 1;
    int hh, mm;
    if (!read_int(s, i, 2, hh) || i >= s.size() || s[i++] != ':' || !read_int(s, i, 2, mm)) return std::nullopt;
    offset_min = sign * (hh * 60 + mm);
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  // system_clock counts nanoseconds in 64 bits: keep well inside its range.
  if (tm.tm_year < 70 || tm.tm_year > 300) return std::nullopt;
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60)
    return std::nullopt;
  std::time_t tt = timegm(&tm);
  return Clock::from_time_t(tt) + Millis(frac_ms) - std::chrono::minutes(offset_min);
}

std::optional<TimePoint> parse_http_date(std::string_view text) {
  std::string s(trim(text));
  if (s.find('\0') != std::string::npos) return std::nullopt;
  std::tm tm{};
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  if (tm.tm_year < 70 || tm.tm_year > 300) return std::nullopt;
  return Clock::from_time_t(timegm(&tm));
}

}  // namespace bw
