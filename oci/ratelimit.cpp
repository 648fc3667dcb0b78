#include "oci/ratelimit.h"

#include <limits>

#include <nlohmann/json.hpp>

#include "util/strings.h"

namespace bw::oci {
namespace {

// Registry error text goes into status and logs; a hostile or broken peer
// must not fill them.
constexpr size_t k_max_described = 300;

// A non-empty run of digits that fits in int64.
std::optional<int64_t> parse_count(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    int digit = c - '0';
    if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// Whether `s` has the exact IMF-fixdate shape "Sun, 06 Nov 1994 08:49:37 GMT"
// with a year the clock can hold. bw::parse_http_date uses strptime, which
// also takes "Nov26" (year 26), and a year outside about 1678-2261 overflows
// the nanosecond system_clock (found by fuzz_oci); so check before calling.
bool is_imf_fixdate(std::string_view s) {
  // '#' stands for a digit, '@' for a letter; anything else must be as is.
  constexpr std::string_view k_shape = "@@@, ## @@@ #### ##:##:## GMT";
  if (s.size() != k_shape.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = k_shape[i] == '#'   ? (c >= '0' && c <= '9')
              : k_shape[i] == '@' ? ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                                  : c == k_shape[i];
    if (!ok) return false;
  }
  int year = 0;
  for (char c : s.substr(12, 4)) year = year * 10 + (c - '0');
  return year >= 1970 && year <= 2200;
}

}  // namespace

std::optional<RateLimit> parse_ratelimit(std::string_view header_value) {
  auto first = header_value.substr(0, header_value.find(','));
  auto parts = split(first, ';');
  auto count = parse_count(trim(parts[0]));
  if (!count) return std::nullopt;
  RateLimit out;
  out.count = *count;
  for (size_t i = 1; i < parts.size(); ++i) {
    auto param = trim(parts[i]);
    auto eq = param.find('=');
    if (eq == std::string_view::npos || !equals_icase(trim(param.substr(0, eq)), "w")) continue;
    auto window = parse_count(trim(param.substr(eq + 1)));
    if (window && !out.window_seconds) out.window_seconds = *window;
  }
  return out;
}

std::optional<TimePoint> parse_retry_after(std::string_view header_value, TimePoint now) {
  auto value = trim(header_value);
  if (value.empty()) return std::nullopt;
  if (value.find_first_not_of("0123456789") == std::string_view::npos) {
    auto seconds = parse_count(value);
    std::chrono::seconds delay = (!seconds || *seconds > k_max_retry_after.count())
                                     ? k_max_retry_after
                                     : std::chrono::seconds(*seconds);
    if (now > TimePoint::max() - delay) return TimePoint::max();
    return now + delay;
  }
  if (!is_imf_fixdate(value)) return std::nullopt;
  auto when = parse_http_date(value);
  if (!when) return std::nullopt;
  return *when < now ? now : *when;
}

std::vector<DistributionError> parse_error_body(std::string_view body) {
  std::vector<DistributionError> out;
  try {
    auto doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) return out;
    auto errors = doc.find("errors");
    if (errors == doc.end() || !errors->is_array()) return out;
    for (const auto& item : *errors) {
      if (!item.is_object()) continue;
      DistributionError e;
      if (auto code = item.find("code"); code != item.end() && code->is_string()) e.code = code->get<std::string>();
      if (auto msg = item.find("message"); msg != item.end() && msg->is_string()) e.message = msg->get<std::string>();
      out.push_back(std::move(e));
    }
  } catch (const std::exception&) {
    // Unreadable bodies carry no errors worth reporting; keep what was read.
  }
  return out;
}

std::string describe_errors(const std::vector<DistributionError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (e.code.empty() && e.message.empty()) continue;
    if (!out.empty()) out += "; ";
    out += e.code.empty() ? e.message : e.message.empty() ? e.code : e.code + ": " + e.message;
  }
  return out;
}

ErrorKind classify_status(int status) {
  switch (status) {
    case 401:
      return ErrorKind::unauthorized;
    case 403:
      return ErrorKind::denied;
    case 404:
      return ErrorKind::not_found;
    case 408:
      return ErrorKind::timeout;
    case 429:
      return ErrorKind::rate_limited;
    default:
      return status >= 500 && status <= 599 ? ErrorKind::server : ErrorKind::bad_answer;
  }
}

bool is_retryable_status(int status) {
  switch (status) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return true;
    default:
      return false;
  }
}

std::optional<ErrorKind> classify_error_code(std::string_view code) {
  if (code == "NAME_UNKNOWN" || code == "MANIFEST_UNKNOWN" || code == "BLOB_UNKNOWN") return ErrorKind::not_found;
  if (code == "UNAUTHORIZED") return ErrorKind::unauthorized;
  if (code == "DENIED") return ErrorKind::denied;
  if (code == "TOOMANYREQUESTS") return ErrorKind::rate_limited;
  if (code == "UNAVAILABLE") return ErrorKind::server;
  if (code == "NAME_INVALID" || code == "TAG_INVALID" || code == "MANIFEST_INVALID" || code == "DIGEST_INVALID") {
    return ErrorKind::invalid;
  }
  return std::nullopt;
}

Error status_error(int status, std::string_view body, std::string_view what) {
  std::string message = std::string(what) + ": HTTP " + std::to_string(status);
  auto described = describe_errors(parse_error_body(body));
  if (described.size() > k_max_described) described = described.substr(0, k_max_described) + "...";
  if (!described.empty()) message += ": " + described;
  return make_error(classify_status(status), std::move(message));
}

}  // namespace bw::oci
