// The HTTP seam. Registry requests and outbound deliveries go through
// HttpClient; production uses HttplibClient (cpp-httplib, OpenSSL), unit
// tests use FakeHttpClient. Nothing else in basewatch opens sockets as a client.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "util/result.h"
#include "util/time.h"

namespace bw::net {

constexpr Millis k_default_connect_timeout{5000};
constexpr Millis k_default_timeout{30000};

struct Url {
  std::string scheme;  // http | https
  std::string host;    // without brackets for IPv6
  int port = 0;
  std::string target;  // path and query, "/" at least
  std::string origin() const;  // scheme://host[:port] (brackets for IPv6)
};
Result<Url> parse_url(const std::string& url);
// Drops the query and any user info, for logs: tokens ride in queries.
std::string redact_url(const std::string& url);
std::string url_encode(std::string_view s);

struct TlsOptions {
  bool verify = true;
  std::string ca_file;  // extra CA bundle, on top of the system's
};

struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  Millis timeout = k_default_timeout;
  TlsOptions tls;
  // A streamed answer: when set, the body of a 2xx answer goes here piece by
  // piece as it arrives and Response::body stays empty, so a blob of any size
  // never sits in memory. Returning false stops the transfer (an Error of
  // kind network, "transfer stopped: ..."). Other answers (errors, redirects)
  // keep their body in Response::body as usual.
  std::function<bool(std::string_view piece)> body_sink;
};

struct Response {
  int status = 0;
  std::multimap<std::string, std::string> headers;  // names lowercased
  std::string body;
  // First value of a header (name in any case), or "".
  std::string header(const std::string& name) const;
  std::vector<std::string> header_values(const std::string& name) const;
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // A Response for any HTTP answer (including 4xx/5xx); an Error (timeout,
  // network) when there was none.
  virtual Result<Response> send(const Request& request) = 0;
};

// Why a connection to `url` failed, in the words curl would use: the name
// did not resolve, the peer refused, the connect timed out, or TLS
// verification failed and why. Called after a failed exchange: it connects
// again, once, to find out. `fallback` is said when nothing more is learned.
std::string diagnose_connect_failure(const std::string& url, const TlsOptions& tls, Millis timeout,
                                     const std::string& fallback);

// Keeps connections alive and reuses them per origin; safe to call from
// several threads (each request borrows an idle connection or opens one).
class HttplibClient final : public HttpClient {
 public:
  HttplibClient();
  ~HttplibClient() override;
  Result<Response> send(const Request& request) override;

 private:
  struct Pool;
  std::unique_ptr<Pool> m_pool;
};

// Answers with a handler and records every request.
class FakeHttpClient final : public HttpClient {
 public:
  using Handler = std::function<Result<Response>(const Request&)>;
  explicit FakeHttpClient(Handler handler) : m_handler(std::move(handler)) {}
  Result<Response> send(const Request& request) override;
  std::vector<Request> requests() const;

 private:
  Handler m_handler;
  mutable std::mutex m_mutex;
  std::vector<Request> m_requests;
};

}  // namespace bw::net
