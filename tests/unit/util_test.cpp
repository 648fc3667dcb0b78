#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "util/crypto.h"
#include "util/files.h"
#include "util/ids.h"
#include "util/shared_read.h"
#include "util/time.h"

using namespace bw;

TEST_CASE("durations parse as users write them", "[unit][util]") {
  CHECK(parse_duration("500ms")->count() == 500);
  CHECK(parse_duration("30s")->count() == 30'000);
  CHECK(parse_duration("15m")->count() == 900'000);
  CHECK(parse_duration("6h")->count() == 21'600'000);
  CHECK(parse_duration("1d")->count() == 86'400'000);
  CHECK(parse_duration("1h30m")->count() == 5'400'000);
  CHECK(parse_duration("0")->count() == 0);
  CHECK(parse_duration("5 m")->count() == 300'000);
  CHECK(parse_duration("15").error().message == "invalid duration \"15\": missing unit (ms, s, m, h or d)");
  CHECK(parse_duration("15x").error().message == "invalid duration \"15x\": unknown unit \"x\" (use ms, s, m, h or d)");
  CHECK(parse_duration("").error().message == "invalid duration \"\": empty");
  CHECK(parse_duration("m5").error().message == "invalid duration \"m5\": expected a number, e.g. 30s, 15m, 6h, 1d");
  CHECK(format_duration(Millis(5'400'000)) == "1h30m");
  CHECK(format_duration(Millis(1500)) == "1s500ms");
}

TEST_CASE("HMAC-SHA256 matches RFC 4231 test case 2", "[unit][util]") {
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(sha256_digest("") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(base64_encode("user:pass") == "dXNlcjpwYXNz");
  CHECK(constant_time_equals("abc", "abc"));
  CHECK_FALSE(constant_time_equals("abc", "abd"));
  CHECK_FALSE(constant_time_equals("abc", "abcd"));
}

TEST_CASE("RFC 3339 and HTTP dates round-trip", "[unit][util]") {
  auto t = parse_rfc3339("2026-11-28T12:00:00Z");
  REQUIRE(t);
  CHECK(format_rfc3339(*t) == "2026-11-28T12:00:00Z");
  CHECK(format_rfc3339(*parse_rfc3339("2026-11-28T13:30:00+01:30")) == "2026-11-28T12:00:00Z");
  CHECK(to_unix_ms(*parse_rfc3339("1970-01-01T00:00:01.250Z")) == 1250);
  CHECK_FALSE(parse_rfc3339("2026-11-28 garbage"));
  CHECK_FALSE(parse_rfc3339("2026-13-28T00:00:00Z"));
  auto h = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
  REQUIRE(h);
  CHECK(format_rfc3339(*h) == "1994-11-06T08:49:37Z");
  // Years the clock cannot hold are refused, not overflowed (found by fuzz_oci).
  CHECK_FALSE(parse_http_date("Sat, 14 Nov 0026 12:05:00 GMT"));
  CHECK_FALSE(parse_rfc3339("0001-01-01T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("9999-01-01T00:00:00Z"));
  CHECK_FALSE(parse_http_date(std::string("Sun, 06 Nov 1994 08:49:37 GMT\0x", 32)));
}

TEST_CASE("delivery ids sort by creation time and never repeat", "[unit][util]") {
  auto t0 = from_unix_ms(1'700'000'000'000);
  std::string a = new_delivery_id(t0);
  std::string b = new_delivery_id(t0 + Millis(1));
  CHECK(a.size() == 28);
  CHECK(a.rfind("d_", 0) == 0);
  CHECK(a < b);
  CHECK(new_delivery_id(t0) != new_delivery_id(t0));
}

#include "util/metrics.h"

TEST_CASE("metrics render in the Prometheus text format", "[unit][util]") {
  Metrics m;
  m.counter_add("basewatch_x_total", "Things.", {{"registry", "docker.io"}, {"outcome", "ok"}});
  m.counter_add("basewatch_x_total", "Things.", {{"registry", "docker.io"}, {"outcome", "ok"}}, 2);
  m.gauge_set("basewatch_g", "A gauge.", {}, 7);
  m.histogram_observe("basewatch_h_seconds", "Durations.", {{"k", "v\"q"}}, 0.3, {0.1, 0.5, 1});
  m.histogram_observe("basewatch_h_seconds", "Durations.", {{"k", "v\"q"}}, 2, {0.1, 0.5, 1});
  CHECK(m.counter_value("basewatch_x_total", {{"registry", "docker.io"}, {"outcome", "ok"}}) == 3);
  CHECK(m.render() ==
        "# HELP basewatch_g A gauge.\n# TYPE basewatch_g gauge\nbasewatch_g 7\n"
        "# HELP basewatch_h_seconds Durations.\n# TYPE basewatch_h_seconds histogram\n"
        "basewatch_h_seconds_bucket{k=\"v\\\"q\",le=\"0.1\"} 0\n"
        "basewatch_h_seconds_bucket{k=\"v\\\"q\",le=\"0.5\"} 1\n"
        "basewatch_h_seconds_bucket{k=\"v\\\"q\",le=\"1\"} 1\n"
        "basewatch_h_seconds_bucket{k=\"v\\\"q\",le=\"+Inf\"} 2\n"
        "basewatch_h_seconds_sum{k=\"v\\\"q\"} 2.3\n"
        "basewatch_h_seconds_count{k=\"v\\\"q\"} 2\n"
        "# HELP basewatch_x_total Things.\n# TYPE basewatch_x_total counter\n"
        "basewatch_x_total{registry=\"docker.io\",outcome=\"ok\"} 3\n");
}

TEST_CASE("Sha256 over pieces equals the digest of the whole", "[unit][util]") {
  std::string whole;
  for (int i = 0; i < 5000; ++i) whole += static_cast<char>(i * 7 % 251);
  CHECK(sha256_digest("") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  for (size_t piece : {1u, 7u, 64u, 1000u, 5000u}) {
    Sha256 h;
    for (size_t at = 0; at < whole.size(); at += piece) h.update(std::string_view(whole).substr(at, piece));
    INFO(piece);
    CHECK(h.digest() == sha256_digest(whole));
    // digest() does not end the hash: more bytes go on from there.
    h.update("x");
    CHECK(h.digest() == sha256_digest(whole + "x"));
  }
}

TEST_CASE("callers that arrive while a shared read runs wait for it and take its answer", "[unit][util]") {
  SharedRead<int> shared;
  std::mutex mutex;
  std::condition_variable cv;
  bool entered = false, open = false;
  std::atomic<int> reads{0};
  // The first read holds until the test opens it.
  std::thread first([&] {
    int got = shared.get([&] {
      ++reads;
      std::unique_lock lock(mutex);
      entered = true;
      cv.notify_all();
      cv.wait(lock, [&] { return open; });
      return 42;
    });
    CHECK(got == 42);
  });
  {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return entered; });
  }
  std::vector<int> answers(4, 0);
  std::vector<std::thread> others;
  for (int i = 0; i < 4; ++i) {
    others.emplace_back([&, i] {
      answers[static_cast<size_t>(i)] = shared.get([&] {
        ++reads;
        return 7;
      });
    });
  }
  // All four are waiting (not reading on their own) before the read ends.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (shared.waiting() < 4 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  CHECK(shared.waiting() == 4);
  {
    std::lock_guard lock(mutex);
    open = true;
    cv.notify_all();
  }
  first.join();
  for (auto& t : others) t.join();
  CHECK(reads == 1);
  CHECK(answers == std::vector<int>{42, 42, 42, 42});
  // A caller after it reads anew.
  CHECK(shared.get([&] {
    ++reads;
    return 9;
  }) == 9);
  CHECK(reads == 2);
}
