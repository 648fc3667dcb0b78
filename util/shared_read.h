// One read for many callers at once: the first caller runs it; callers that
// arrive while it runs wait for it and take a copy of its answer (at most one
// round trip old) instead of queueing their own reads behind it. For reads
// many API threads make at once over one connection (the cluster's view).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace bw {

template <typename T>
class SharedRead {
 public:
  T get(const std::function<T()>& read) {
    std::unique_lock lock(m_mutex);
    if (m_reading) {
      const uint64_t generation = m_generation;
      ++m_waiting;
      m_cv.wait(lock, [&] { return m_generation != generation; });
      --m_waiting;
      return m_last;
    }
    m_reading = true;
    lock.unlock();
    T answer = read();
    lock.lock();
    m_last = answer;
    ++m_generation;
    m_reading = false;
    m_cv.notify_all();
    return answer;
  }
  // Callers waiting for the read in progress (tests).
  int waiting() const {
    std::lock_guard lock(m_mutex);
    return m_waiting;
  }

 private:
  mutable std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_reading = false;
  uint64_t m_generation = 0;
  int m_waiting = 0;
  T m_last{};
};

}  // namespace bw
