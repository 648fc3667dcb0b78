// A sleep that another thread can cut short: the serve loops wait on it until
// their next due time, and are woken when new work is queued or on stop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace bw {

class Waker {
 public:
  void wake() {
    std::lock_guard lock(m_mutex);
    m_woken = true;
    m_cv.notify_all();
  }
  void stop() {
    std::lock_guard lock(m_mutex);
    m_stopped = true;
    m_cv.notify_all();
  }
  // Returns false once stopped.
  bool wait_until(std::chrono::steady_clock::time_point t) {
    std::unique_lock lock(m_mutex);
    m_cv.wait_until(lock, t, [&] { return m_woken || m_stopped; });
    m_woken = false;
    return !m_stopped;
  }
  bool stopped() {
    std::lock_guard lock(m_mutex);
    return m_stopped;
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_woken = false;
  bool m_stopped = false;
};

}  // namespace bw
