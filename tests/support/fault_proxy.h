// A real HTTP proxy on 127.0.0.1 in front of a registry, forwarding every
// method and rewriting Location headers to itself, that a test can make
// misbehave: answer a status instead of forwarding (429, 500, 202 to a
// mount), alter an answer (other bytes for a blob, a lying descriptor),
// or cut an answer's body after some bytes (the connection closes mid-blob).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace bw::testing {

class FaultProxy {
 public:
  explicit FaultProxy(const std::string& upstream_url);  // "http://127.0.0.1:PORT"
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::string host() const;  // "127.0.0.1:PORT"
  std::string url() const;   // "http://127.0.0.1:PORT"

  // Decides, before forwarding, whether to answer instead (nullopt: forward).
  // `path` in the ReceivedRequest carries the query too.
  using Before = std::function<std::optional<Receiver::Reply>(const ReceivedRequest&)>;
  // Changes the registry's answer before it goes back.
  using After = std::function<void(const ReceivedRequest&, Receiver::Reply&)>;
  void before(Before hook);
  // Changes a request before it is forwarded (its path and query).
  using Rewrite = std::function<void(ReceivedRequest&)>;
  void rewrite(Rewrite hook);
  void after(After hook);
  // The body of the next `times` answers `match` selects ends after
  // `bytes` bytes: the connection is closed mid-body.
  void cut_after(std::function<bool(const ReceivedRequest&)> match, size_t bytes, int times = 1);
  void clear_faults();

  // What came in (bodies are not kept: uploads are big), in order.
  std::vector<ReceivedRequest> requests() const;
  // How many requests with `method` whose path contains `fragment`.
  size_t count(const std::string& method, const std::string& fragment = "") const;
  void forget();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// A listening socket on 127.0.0.1 that nobody accept()s: connections
// complete (the kernel's backlog) and every request waits for an answer that
// never comes, as from a hung server.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return m_port; }
  std::string host() const { return "127.0.0.1:" + std::to_string(m_port); }

 private:
  int m_fd = -1;
  int m_port = 0;
};

}  // namespace bw::testing
