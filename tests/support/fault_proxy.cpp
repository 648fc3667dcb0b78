#include "tests/support/fault_proxy.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>
#include <thread>

namespace bw::testing {

struct FaultProxy::Impl {
  std::string upstream;
  httplib::Server server;
  std::thread thread;
  int port = 0;
  mutable std::mutex mutex;
  Before before;
  After after;
  Rewrite rewrite;
  struct Cut {
    std::function<bool(const ReceivedRequest&)> match;
    size_t bytes = 0;
    int times = 0;
  };
  std::vector<Cut> cuts;
  std::vector<ReceivedRequest> seen;
};

FaultProxy::FaultProxy(const std::string& upstream_url) : m_impl(std::make_unique<Impl>()) {
  m_impl->upstream = upstream_url;
  Impl* impl = m_impl.get();
  auto handle = [impl](const httplib::Request& req, httplib::Response& res) {
    ReceivedRequest r;
    r.method = req.method;
    r.path = req.target.empty() ? req.path : req.target;
    auto q = r.path.find('?');
    if (q != std::string::npos) r.query = r.path.substr(q + 1);
    for (const auto& [k, v] : req.headers) {
      std::string lower = k;
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[lower] = v;
    }
    r.at = std::chrono::steady_clock::now();
    Before before;
    After after;
    Rewrite rewrite;
    std::optional<Impl::Cut> cut;
    {
      std::lock_guard lock(impl->mutex);
      impl->seen.push_back(r);
      before = impl->before;
      after = impl->after;
      rewrite = impl->rewrite;
      for (auto& c : impl->cuts) {
        if (c.times > 0 && c.match(r)) {
          --c.times;
          cut = c;
          break;
        }
      }
    }
    r.body = req.body;
    Receiver::Reply reply;
    std::optional<Receiver::Reply> instead = before ? before(r) : std::nullopt;
    if (instead) {
      reply = *instead;
    } else {
      if (rewrite) rewrite(r);
      httplib::Client c(impl->upstream);
      c.set_read_timeout(60, 0);
      c.set_write_timeout(60, 0);
      httplib::Request out;
      out.method = req.method;
      out.path = r.path;
      for (const auto& [k, v] : req.headers) {
        if (k == "Host" || k == "Content-Length" || k == "Connection" || k == "REMOTE_ADDR" || k == "REMOTE_PORT" ||
            k == "LOCAL_ADDR" || k == "LOCAL_PORT")
          continue;
        out.headers.emplace(k, v);
      }
      out.body = req.body;
      auto up = c.send(out);
      if (!up) {
        res.status = 502;
        return;
      }
      reply.status = up->status;
      reply.body = up->body;
      for (const auto& [k, v] : up->headers) {
        if (k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" || k == "Keep-Alive") continue;
        std::string value = v;
        if (k == "Location" && value.rfind(impl->upstream, 0) == 0) {
          value = "http://127.0.0.1:" + std::to_string(impl->port) + value.substr(impl->upstream.size());
        }
        reply.headers.emplace(k, value);
      }
      if (after) after(r, reply);
    }
    res.status = reply.status;
    std::string type = "application/octet-stream";
    for (const auto& [k, v] : reply.headers) {
      if (k == "Content-Type") type = v;
      else res.headers.emplace(k, v);
    }
    if (cut) {
      auto body = std::make_shared<std::string>(std::move(reply.body));
      size_t stop = std::min(cut->bytes, body->size());
      res.set_content_provider(body->size(), type, [body, stop](size_t offset, size_t, httplib::DataSink& sink) {
        if (offset >= stop) return false;  // closes the connection mid-body
        sink.write(body->data() + offset, stop - offset);
        return true;
      });
      return;
    }
    if (req.method == "HEAD") {
      // No body, but the registry's Content-Length and Content-Type stay.
      res.set_header("Content-Type", type);
      return;
    }
    res.set_content(reply.body, type);
  };
  m_impl->server.Get(R"(.*)", handle);
  m_impl->server.Post(R"(.*)", handle);
  m_impl->server.Put(R"(.*)", handle);
  m_impl->server.Patch(R"(.*)", handle);
  m_impl->server.Delete(R"(.*)", handle);
  m_impl->server.Options(R"(.*)", handle);
  m_impl->server.set_payload_max_length(size_t(1) << 31);
  m_impl->port = m_impl->server.bind_to_any_port("127.0.0.1");
  if (m_impl->port <= 0) throw std::runtime_error("fault proxy: cannot bind");
  m_impl->thread = std::thread([impl] { impl->server.listen_after_bind(); });
  if (!wait_until([impl] { return impl->server.is_running(); }, std::chrono::seconds(5))) {
    throw std::runtime_error("fault proxy did not start");
  }
}

FaultProxy::~FaultProxy() {
  m_impl->server.stop();
  if (m_impl->thread.joinable()) m_impl->thread.join();
}

std::string FaultProxy::host() const { return "127.0.0.1:" + std::to_string(m_impl->port); }
std::string FaultProxy::url() const { return "http://" + host(); }

void FaultProxy::before(Before hook) {
  std::lock_guard lock(m_impl->mutex);
  m_impl->before = std::move(hook);
}

void FaultProxy::rewrite(Rewrite hook) {
  std::lock_guard lock(m_impl->mutex);
  m_impl->rewrite = std::move(hook);
}

void FaultProxy::after(After hook) {
  std::lock_guard lock(m_impl->mutex);
  m_impl->after = std::move(hook);
}

void FaultProxy::cut_after(std::function<bool(const ReceivedRequest&)> match, size_t bytes, int times) {
  std::lock_guard lock(m_impl->mutex);
  m_impl->cuts.push_back(Impl::Cut{std::move(match), bytes, times});
}

void FaultProxy::clear_faults() {
  std::lock_guard lock(m_impl->mutex);
  m_impl->before = nullptr;
  m_impl->after = nullptr;
  m_impl->rewrite = nullptr;
  m_impl->cuts.clear();
}

std::vector<ReceivedRequest> FaultProxy::requests() const {
  std::lock_guard lock(m_impl->mutex);
  return m_impl->seen;
}

size_t FaultProxy::count(const std::string& method, const std::string& fragment) const {
  std::lock_guard lock(m_impl->mutex);
  size_t n = 0;
  for (const auto& r : m_impl->seen) {
    if (r.method == method && r.path.find(fragment) != std::string::npos) ++n;
  }
  return n;
}

void FaultProxy::forget() {
  std::lock_guard lock(m_impl->mutex);
  m_impl->seen.clear();
}

SilentListener::SilentListener() {
  m_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (m_fd < 0 || ::bind(m_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(m_fd, 256) != 0) {
    throw std::runtime_error("silent listener: cannot bind 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  ::getsockname(m_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  m_port = ntohs(addr.sin_port);
}

SilentListener::~SilentListener() {
  if (m_fd >= 0) ::close(m_fd);
}

}  // namespace bw::testing
