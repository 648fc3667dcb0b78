// Time: the clock seam, durations as users write them, RFC 3339 stamps.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace bw {

using Clock = std::chrono::system_clock;
using TimePoint = std::chrono::system_clock::time_point;
using Millis = std::chrono::milliseconds;

// The clock seam. Loops take "now" from here so tests can drive them without
// sleeping.
class ClockSource {
 public:
  virtual ~ClockSource() = default;
  virtual TimePoint now() const = 0;
};

class RealClock final : public ClockSource {
 public:
  TimePoint now() const override { return Clock::now(); }
};

class FakeClock final : public ClockSource {
 public:
  explicit FakeClock(TimePoint start = TimePoint{} + std::chrono::hours(24 * 365 * 50)) : m_now(start) {}
  TimePoint now() const override {
    std::lock_guard lock(m_mutex);
    return m_now;
  }
  void advance(Millis by) {
    std::lock_guard lock(m_mutex);
    m_now += by;
  }
  void set(TimePoint t) {
    std::lock_guard lock(m_mutex);
    m_now = t;
  }

 private:
  mutable std::mutex m_mutex;
  TimePoint m_now;
};

// "500ms", "30s", "15m", "6h", "1d"; several units may follow each other
// ("1h30m"). A bare "0" is zero. Returns a message naming the problem.
Result<Millis> parse_duration(std::string_view text);
std::string format_duration(Millis d);

int64_t to_unix_ms(TimePoint t);
TimePoint from_unix_ms(int64_t ms);

// 2026-11-28T12:00:00Z (seconds precision, UTC).
std::string format_rfc3339(TimePoint t);
// Accepts RFC 3339 with optional fraction and offset.
std::optional<TimePoint> parse_rfc3339(std::string_view text);
// RFC 7231 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
std::optional<TimePoint> parse_http_date(std::string_view text);

}  // namespace bw
