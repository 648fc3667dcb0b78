// Rate-limit headers, Retry-After, distribution error bodies and what an HTTP
// status means. Rules: docs/registry-protocol.md ("Rate limits and errors").
// Pure functions: no I/O, never throw.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "util/time.h"

namespace bw::oci {

// One `ratelimit-limit` or `ratelimit-remaining` value: "100;w=21600" is 100
// requests per 21600-second window.
struct RateLimit {
  int64_t count = 0;
  std::optional<int64_t> window_seconds;  // the `w` parameter, when present and well formed
  bool operator==(const RateLimit&) const = default;
};

// "100;w=21600", "87", " 100 ; w=21600 ". A list ("10, 100;w=60", as in the
// IETF drafts) yields its first element; parameters other than `w` are
// ignored, and a malformed `w` leaves window_seconds empty. nullopt when the
// count is missing, negative, not a number or beyond int64.
std::optional<RateLimit> parse_ratelimit(std::string_view header_value);

// Retry-After as delta-seconds ("120") or an HTTP date (IMF-fixdate, "Sun, 06
// Nov 1994 08:49:37 GMT"): the time at which requests may resume. A date in
// the past gives `now`. Only IMF-fixdate with a year in 1970-2200 is read (not
// the obsolete RFC 850 and asctime forms). Huge delays are capped at k_max_retry_after so the
// arithmetic cannot overflow (the caller applies its own policy). nullopt when
// the value is neither form.
std::optional<TimePoint> parse_retry_after(std::string_view header_value, TimePoint now);
inline constexpr std::chrono::seconds k_max_retry_after{1'000'000'000};  // about 31 years

// One entry of a distribution error body {"errors":[{"code","message","detail"}]}.
struct DistributionError {
  std::string code;     // "MANIFEST_UNKNOWN", "TOOMANYREQUESTS"; may be empty
  std::string message;  // may be empty
  bool operator==(const DistributionError&) const = default;
};

// The errors of a body; empty for non-JSON, other shapes, or no errors (HEAD
// answers have no body at all). Entries that are not objects are skipped;
// non-string code/message fields read as empty.
std::vector<DistributionError> parse_error_body(std::string_view body);
// "MANIFEST_UNKNOWN: manifest unknown; DENIED: requested access to the resource is denied"
std::string describe_errors(const std::vector<DistributionError>& errors);

// What a failed status means: 401 unauthorized, 403 denied, 404 not_found,
// 429 rate_limited, 408 timeout, 5xx server, anything else bad_answer.
ErrorKind classify_status(int status);
// 408, 429, 500, 502, 503, 504: worth retrying with backoff.
bool is_retryable_status(int status);
// What an error code means: NAME_UNKNOWN/MANIFEST_UNKNOWN/BLOB_UNKNOWN
// not_found, UNAUTHORIZED unauthorized, DENIED denied, TOOMANYREQUESTS
// rate_limited, UNAVAILABLE server, NAME_INVALID/TAG_INVALID/MANIFEST_INVALID/
// DIGEST_INVALID invalid; anything else nullopt (decide by status instead).
std::optional<ErrorKind> classify_error_code(std::string_view code);

// The Error for a failed answer: kind from the status, message
// "<what>: HTTP <status>" plus ": <describe_errors>" when the body has
// errors (cut at 300 characters). `what` names the request, e.g. "HEAD ghcr.io/org/app:1".
Error status_error(int status, std::string_view body, std::string_view what);

}  // namespace bw::oci
