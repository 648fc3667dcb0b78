// A datagram socket standing in for systemd's $NOTIFY_SOCKET: records every
// sd_notify() message the service sends.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/support.h"

namespace bw::testing {

class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : m_path(path) {
    m_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (m_fd < 0) throw std::runtime_error("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + path);
    std::copy(path.begin(), path.end(), addr.sun_path);
    ::unlink(path.c_str());
    if (::bind(m_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind " + path);
    timeval tv{0, 100'000};
    ::setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    m_thread = std::thread([this] {
      char buf[4096];
      while (!m_stop) {
        ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::lock_guard lock(m_mutex);
        m_messages.emplace_back(buf, static_cast<size_t>(n));
      }
    });
  }
  ~NotifySocket() {
    m_stop = true;
    m_thread.join();
    ::close(m_fd);
    ::unlink(m_path.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return m_path; }
  std::vector<std::string> messages() const {
    std::lock_guard lock(m_mutex);
    return m_messages;
  }
  // The index of the first message at or after `from` that starts with
  // `prefix`, or -1.
  int find(const std::string& prefix, int from = 0) const {
    auto all = messages();
    for (size_t i = static_cast<size_t>(std::max(from, 0)); i < all.size(); ++i) {
      if (all[i].rfind(prefix, 0) == 0) return static_cast<int>(i);
    }
    return -1;
  }
  int wait_for(const std::string& prefix, int from, std::chrono::milliseconds timeout) const {
    int at = -1;
    wait_until([&] { return (at = find(prefix, from)) >= 0; }, timeout);
    return at;
  }
  int count(const std::string& prefix) const {
    int n = 0;
    for (const auto& m : messages()) n += m.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
  }

 private:
  std::string m_path;
  int m_fd = -1;
  std::atomic<bool> m_stop{false};
  std::thread m_thread;
  mutable std::mutex m_mutex;
  std::vector<std::string> m_messages;
};

}  // namespace bw::testing
