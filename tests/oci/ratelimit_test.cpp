// Rate-limit headers, Retry-After, error bodies and status classification.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "oci/ratelimit.h"

using namespace bw::oci;
using bw::ErrorKind;

TEST_CASE("ratelimit: header values") {
  struct Case {
    std::string value;
    std::optional<RateLimit> expected;
  };
  const std::vector<Case> cases = {
      {"100;w=21600", RateLimit{100, 21600}},
      {"87;w=21600", RateLimit{87, 21600}},
      {"0;w=21600", RateLimit{0, 21600}},
      {"200", RateLimit{200, std::nullopt}},
      {" 100 ; w=21600 ", RateLimit{100, 21600}},
      {"100;W=60", RateLimit{100, 60}},
      {"100;comment=\"x\";w=60", RateLimit{100, 60}},
      {"10, 100;w=60", RateLimit{10, std::nullopt}},
      {"100;w=abc", RateLimit{100, std::nullopt}},
      {"100;w=", RateLimit{100, std::nullopt}},
      {"100;w=-5", RateLimit{100, std::nullopt}},
      {"100;", RateLimit{100, std::nullopt}},
      {"9223372036854775807", RateLimit{9223372036854775807LL, std::nullopt}},
      {"9223372036854775808", std::nullopt},
      {"", std::nullopt},
      {"   ", std::nullopt},
      {";w=21600", std::nullopt},
      {"-1;w=60", std::nullopt},
      {"abc", std::nullopt},
      {"1e3", std::nullopt},
      {"10 0;w=60", std::nullopt},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value);
    auto got = parse_ratelimit(c.value);
    REQUIRE(got.has_value() == c.expected.has_value());
    if (got) {
      CHECK(got->count == c.expected->count);
      CHECK(got->window_seconds == c.expected->window_seconds);
    }
  }
}

TEST_CASE("ratelimit: Retry-After") {
  const auto now = *bw::parse_http_date("Sat, 28 Nov 2026 12:00:00 GMT");
  using std::chrono::seconds;
  CHECK(parse_retry_after("120", now) == now + seconds(120));
  CHECK(parse_retry_after(" 0 ", now) == now);
  CHECK(parse_retry_after("Sat, 28 Nov 2026 12:05:00 GMT", now) == now + seconds(300));
  CHECK(parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now) == now);  // past: now
  CHECK(parse_retry_after("99999999999999999999999", now) == now + k_max_retry_after);
  CHECK(parse_retry_after("2000000000", now) == now + k_max_retry_after);
  CHECK_FALSE(parse_retry_after("", now).has_value());
  CHECK_FALSE(parse_retry_after("-5", now).has_value());
  CHECK_FALSE(parse_retry_after("+5", now).has_value());
  CHECK_FALSE(parse_retry_after("1.5", now).has_value());
  CHECK_FALSE(parse_retry_after("soon", now).has_value());
  CHECK_FALSE(parse_retry_after("2026-11-28T12:05:00Z", now).has_value());
  CHECK_FALSE(parse_retry_after(std::string("Sat, 28 Nov 2026 12:05:00 GMT\0junk", 34), now).has_value());
  // Found by fuzz_oci: strptime reads "Nov26" as year 26, which overflowed the clock.
  CHECK_FALSE(parse_retry_after("Sat, 14 Nov26 12:05:00 GMT", now).has_value());
  CHECK_FALSE(parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT", now).has_value());
  CHECK_FALSE(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).has_value());
  CHECK_FALSE(parse_retry_after("Sat, 28 Nov 2026 12:05:00 UTC", now).has_value());
  CHECK_FALSE(parse_retry_after("Saturday, 28-Nov-26 12:05:00 GMT", now).has_value());  // RFC 850: not read
  CHECK(parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", now) == *bw::parse_http_date("Thu, 01 Jan 2099 00:00:00 GMT"));
}

TEST_CASE("ratelimit: distribution error bodies") {
  auto hub = parse_error_body(
      R"({"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit.","detail":null}]})");
  REQUIRE(hub.size() == 1);
  CHECK(hub[0] == DistributionError{"TOOMANYREQUESTS", "You have reached your pull rate limit."});

  auto two = parse_error_body(
      R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"x","Action":"pull"}]},
                    {"code":"DENIED"}, 7, {"message":"only a message"}, {"code":5,"message":["no"]}]})");
  REQUIRE(two.size() == 4);
  CHECK(two[0] == DistributionError{"UNAUTHORIZED", "authentication required"});
  CHECK(two[1] == DistributionError{"DENIED", ""});
  CHECK(two[2] == DistributionError{"", "only a message"});
  CHECK(two[3] == DistributionError{"", ""});
  CHECK(describe_errors(two) == "UNAUTHORIZED: authentication required; DENIED; only a message");

  CHECK(parse_error_body("").empty());
  CHECK(parse_error_body("Too Many Requests").empty());
  CHECK(parse_error_body("{\"errors\":{}}").empty());
  CHECK(parse_error_body("{\"errors\":[]}").empty());
  CHECK(parse_error_body("[]").empty());
  CHECK(parse_error_body("{\"errors\":[{\"code\":\"X\"}").empty());  // truncated
}

TEST_CASE("ratelimit: status classification") {
  struct Case {
    int status;
    ErrorKind kind;
    bool retry;
  };
  const std::vector<Case> cases = {
      {401, ErrorKind::unauthorized, false}, {403, ErrorKind::denied, false},
      {404, ErrorKind::not_found, false},    {408, ErrorKind::timeout, true},
      {429, ErrorKind::rate_limited, true},  {500, ErrorKind::server, true},
      {501, ErrorKind::server, false},       {502, ErrorKind::server, true},
      {503, ErrorKind::server, true},        {504, ErrorKind::server, true},
      {505, ErrorKind::server, false},       {599, ErrorKind::server, false},
      {400, ErrorKind::bad_answer, false},   {405, ErrorKind::bad_answer, false},
      {302, ErrorKind::bad_answer, false},   {200, ErrorKind::bad_answer, false},
      {600, ErrorKind::bad_answer, false},   {0, ErrorKind::bad_answer, false},
      {-1, ErrorKind::bad_answer, false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.status);
    CHECK(classify_status(c.status) == c.kind);
    CHECK(is_retryable_status(c.status) == c.retry);
  }

  CHECK(classify_error_code("MANIFEST_UNKNOWN") == ErrorKind::not_found);
  CHECK(classify_error_code("NAME_UNKNOWN") == ErrorKind::not_found);
  CHECK(classify_error_code("BLOB_UNKNOWN") == ErrorKind::not_found);
  CHECK(classify_error_code("UNAUTHORIZED") == ErrorKind::unauthorized);
  CHECK(classify_error_code("DENIED") == ErrorKind::denied);
  CHECK(classify_error_code("TOOMANYREQUESTS") == ErrorKind::rate_limited);
  CHECK(classify_error_code("UNAVAILABLE") == ErrorKind::server);
  CHECK(classify_error_code("TAG_INVALID") == ErrorKind::invalid);
  CHECK_FALSE(classify_error_code("UNKNOWN").has_value());
  CHECK_FALSE(classify_error_code("manifest_unknown").has_value());
}

TEST_CASE("ratelimit: status_error") {
  auto e = status_error(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})",
                        "HEAD ghcr.io/org/app:1");
  CHECK(e.kind == ErrorKind::not_found);
  CHECK(e.message == "HEAD ghcr.io/org/app:1: HTTP 404: MANIFEST_UNKNOWN: manifest unknown");
  auto plain = status_error(429, "", "HEAD docker.io/library/alpine:3");
  CHECK(plain.kind == ErrorKind::rate_limited);
  CHECK(plain.message == "HEAD docker.io/library/alpine:3: HTTP 429");
  auto huge = status_error(500, R"({"errors":[{"code":"UNKNOWN","message":")" + std::string(5000, 'x') + "\"}]}", "GET x");
  CHECK(huge.kind == ErrorKind::server);
  CHECK(huge.message.size() == std::string("GET x: HTTP 500: ").size() + 300 + 3);
}
