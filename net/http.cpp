#include "net/http.h"

#include <httplib.h>

#include <cctype>
#include <algorithm>
#include <deque>

#include "util/strings.h"

namespace bw::net {

std::string Url::origin() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  bool default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
  return scheme + "://" + h + (default_port ? "" : ":" + std::to_string(port));
}

Result<Url> parse_url(const std::string& text) {
  Url u;
  auto bad = [&](const std::string& why) { return make_error(ErrorKind::invalid, "invalid URL \"" + redact_url(text) + "\": " + why); };
  auto sep = text.find("://");
  if (sep == std::string::npos) return bad("missing scheme");
  u.scheme = to_lower(text.substr(0, sep));
  if (u.scheme != "http" && u.scheme != "https") return bad("scheme must be http or https");
  std::string rest = text.substr(sep + 3);
  auto slash = rest.find_first_of("/?");
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  u.port = u.scheme == "https" ? 443 : 80;
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos) return bad("unclosed [");
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return bad("garbage after ]");
      port = authority.substr(close + 2);
    }
  } else {
    auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return bad("missing host");
  if (!port.empty()) {
    int p = 0;
    for (char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || p > 65535) return bad("invalid port");
      p = p * 10 + (c - '0');
    }
    if (p <= 0 || p > 65535) return bad("invalid port");
    u.port = p;
  }
  return u;
}

std::string redact_url(const std::string& url) {
  std::string out = url;
  auto q = out.find('?');
  if (q != std::string::npos) out = out.substr(0, q) + "?<redacted>";
  auto sep = out.find("://");
  auto at = out.find('@');
  auto slash = out.find('/', sep == std::string::npos ? 0 : sep + 3);
  if (sep != std::string::npos && at != std::string::npos && (slash == std::string::npos || at < slash)) {
    out = out.substr(0, sep + 3) + "<redacted>@" + out.substr(at + 1);
  }
  return out;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string Response::header(const std::string& name) const {
  auto it = headers.find(to_lower(name));
  return it == headers.end() ? "" : it->second;
}

std::vector<std::string> Response::header_values(const std::string& name) const {
  std::vector<std::string> out;
  auto range = headers.equal_range(to_lower(name));
  for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
  return out;
}

// Idle connections per (origin, TLS settings). A borrowed client is used by
// one request at a time; httplib::Client is not safe for concurrent use.
struct HttplibClient::Pool {
  std::mutex mutex;
  std::map<std::string, std::deque<std::unique_ptr<httplib::Client>>> idle;
  static constexpr size_t k_max_idle_per_origin = 16;
};

HttplibClient::HttplibClient() : m_pool(std::make_unique<Pool>()) {}
HttplibClient::~HttplibClient() = default;

namespace {

void set_timeouts(httplib::Client& c, Millis timeout) {
  auto split_ms = [](Millis d, time_t& sec, time_t& usec) {
    sec = static_cast<time_t>(d.count() / 1000);
    usec = static_cast<time_t>((d.count() % 1000) * 1000);
  };
  time_t s, us;
  split_ms(std::min(timeout, k_default_connect_timeout), s, us);
  c.set_connection_timeout(s, us);
  split_ms(timeout, s, us);
  c.set_read_timeout(s, us);
  c.set_write_timeout(s, us);
}

}  // namespace

Result<Response> HttplibClient::send(const Request& request) {
  BW_TRY(Url url, parse_url(request.url));
  std::string key = url.origin() + "|" + (request.tls.verify ? "v" : "nv") + "|" + request.tls.ca_file;
  std::unique_ptr<httplib::Client> client;
  {
    std::lock_guard lock(m_pool->mutex);
    auto& q = m_pool->idle[key];
    if (!q.empty()) {
      client = std::move(q.back());
      q.pop_back();
    }
  }
  if (!client) {
    client = std::make_unique<httplib::Client>(url.origin());
    if (!client->is_valid()) return make_error(ErrorKind::invalid, "cannot make a client for " + url.origin());
    client->set_keep_alive(true);
    // cpp-httplib writes headers and body separately: without this, Nagle and
    // the peer's delayed ACK hold every POST body ~40 ms (bench/outbox).
    client->set_tcp_nodelay(true);
    client->set_follow_location(false);
    if (url.scheme == "https") {
      client->enable_server_certificate_verification(request.tls.verify);
      // The extra CA file plus the system's folder of CAs.
      if (!request.tls.ca_file.empty()) client->set_ca_cert_path(request.tls.ca_file, "/etc/ssl/certs");
    }
  }
  set_timeouts(*client, request.timeout);

  httplib::Request req;
  req.method = request.method;
  req.path = url.target;
  for (const auto& [k, v] : request.headers) req.headers.emplace(k, v);
  if (request.body.size() > (64u << 10)) {
    // Large bodies (upload chunks) are sent from the caller's buffer, not a copy.
    req.content_length_ = request.body.size();
    req.content_provider_ = [&request](size_t offset, size_t length, httplib::DataSink& sink) {
      size_t n = std::min(length, request.body.size() - offset);
      return sink.write(request.body.data() + offset, n);
    };
  } else {
    req.body = request.body;
  }
  // A streamed answer: 2xx bodies go to the sink, others are kept (bounded)
  // so their error JSON can still be read.
  int streamed_status = 0;
  std::string kept;
  std::string sink_error;
  constexpr size_t k_max_kept = 64 << 10;
  if (request.body_sink) {
    req.response_handler = [&](const httplib::Response& r) {
      streamed_status = r.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (streamed_status < 200 || streamed_status >= 300) {
        kept.append(data, std::min(n, k_max_kept - std::min(kept.size(), k_max_kept)));
        return true;
      }
      if (!request.body_sink(std::string_view(data, n))) {
        sink_error = "transfer stopped by the receiver";
        return false;
      }
      return true;
    };
  }
  httplib::Result res = client->send(req);
  if (!res) {
    auto err = res.error();
    std::string what = request.method + " " + redact_url(request.url) + ": ";
    switch (err) {
      case httplib::Error::Canceled:
        return make_error(ErrorKind::network, what + (sink_error.empty() ? "canceled" : sink_error));
      case httplib::Error::Read:
        // httplib says Read for a read timeout and for a connection closed mid-answer.
        return make_error(ErrorKind::timeout, what + "no complete answer within " + format_duration(request.timeout) +
                                                  " (the read timed out or the connection was closed)");
      case httplib::Error::Write:
        return make_error(ErrorKind::network, what + "the connection was closed while sending the request");
      case httplib::Error::Connection:
      case httplib::Error::ConnectionTimeout:
      case httplib::Error::SSLConnection:
      case httplib::Error::SSLServerVerification: {
        std::string why = diagnose_connect_failure(request.url, request.tls, request.timeout, httplib::to_string(err));
        bool timed_out = err == httplib::Error::ConnectionTimeout || why.find("timed out") != std::string::npos;
        return make_error(timed_out ? ErrorKind::timeout : ErrorKind::network, what + why);
      }
      default:
        return make_error(ErrorKind::network, what + httplib::to_string(err));
    }
  }
  Response out;
  out.status = res->status;
  for (auto& [k, v] : res->headers) out.headers.emplace(to_lower(k), std::move(v));
  out.body = request.body_sink ? std::move(kept) : std::move(res->body);
  bool reusable = to_lower(out.header("connection")) != "close";
  if (reusable) {
    std::lock_guard lock(m_pool->mutex);
    auto& q = m_pool->idle[key];
    if (q.size() < Pool::k_max_idle_per_origin) q.push_back(std::move(client));
  }
  return out;
}

Result<Response> FakeHttpClient::send(const Request& request) {
  {
    std::lock_guard lock(m_mutex);
    m_requests.push_back(request);
  }
  auto res = m_handler(request);
  if (res && request.body_sink && res->status >= 200 && res->status < 300) {
    // Streamed like the real client does: in pieces, the body left empty.
    constexpr size_t k_piece = 16 << 10;
    std::string body = std::move(res->body);
    res->body.clear();
    for (size_t at = 0; at < body.size(); at += k_piece) {
      if (!request.body_sink(std::string_view(body).substr(at, k_piece))) {
        return make_error(ErrorKind::network, request.method + " " + redact_url(request.url) + ": transfer stopped by the receiver");
      }
    }
  }
  return res;
}

std::vector<Request> FakeHttpClient::requests() const {
  std::lock_guard lock(m_mutex);
  return m_requests;
}

}  // namespace bw::net
