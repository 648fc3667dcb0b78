// Why a connection failed, found out by connecting again: cpp-httplib only
// says "Connection" or "SSL server verification failed", which tells a user
// nothing they can fix. One getaddrinfo, one connect per address, one TLS
// handshake: the same steps curl reports on.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>

#include "net/http.h"

namespace bw::net {

namespace {

constexpr Millis k_max_diagnose_wait{5000};

std::string host_port(const Url& u) {
  return (u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host) + ":" + std::to_string(u.port);
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Connects to one address within `wait`; 0 on success, else an errno
// (ETIMEDOUT when the wait ran out).
int connect_within(const addrinfo* ai, Millis wait, Fd& out) {
  out.fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (out.fd < 0) return errno;
  if (::connect(out.fd, ai->ai_addr, ai->ai_addrlen) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  pollfd p{out.fd, POLLOUT, 0};
  int n = ::poll(&p, 1, static_cast<int>(wait.count()));
  if (n == 0) return ETIMEDOUT;
  if (n < 0) return errno;
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(out.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

// A TLS handshake on a connected socket, verified like the real client
// (system CAs plus `ca_file`, the host name checked). "" when it verifies.
std::string tls_problem(int fd, const Url& u, const TlsOptions& tls, Millis wait) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return "";
  SSL_CTX_set_default_verify_paths(ctx);
  if (!tls.ca_file.empty() && SSL_CTX_load_verify_locations(ctx, tls.ca_file.c_str(), nullptr) != 1) {
    SSL_CTX_free(ctx);
    return "cannot load the CA file " + tls.ca_file + " (" + openssl_errors() + ")";
  }
  SSL_CTX_set_verify(ctx, tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, u.host.c_str());
  if (tls.verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, u.host.c_str(), &v4) == 1 || inet_pton(AF_INET6, u.host.c_str(), &v6) == 1) {
      X509_VERIFY_PARAM_set1_ip_asc(param, u.host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, u.host.c_str(), 0);
    }
  }
  std::string problem;
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    int rc = SSL_connect(ssl);
    if (rc == 1) break;
    int e = SSL_get_error(ssl, rc);
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && left.count() > 0) {
      pollfd p{fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) > 0) continue;
      problem = "the TLS handshake with " + host_port(u) + " timed out";
      break;
    }
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      problem = "TLS certificate verification failed for " + u.host + ": " + X509_verify_cert_error_string(verify);
    } else {
      std::string detail = openssl_errors();
      problem = "the TLS handshake with " + host_port(u) + " failed" + (detail.empty() ? "" : " (" + detail + ")");
    }
    break;
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return problem;
}

}  // namespace

std::string diagnose_connect_failure(const std::string& url, const TlsOptions& tls, Millis timeout,
                                     const std::string& fallback) {
  auto u = parse_url(url);
  if (!u) return fallback;
  Millis wait = std::min(timeout, k_max_diagnose_wait);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int gai = ::getaddrinfo(u->host.c_str(), std::to_string(u->port).c_str(), &hints, &found);
  if (gai != 0) {
    std::string why = gai == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(gai);
    return "could not resolve host " + u->host + " (" + why + ")";
  }
  std::string problem;
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    Fd fd;
    int err = connect_within(ai, wait, fd);
    if (err == ECONNREFUSED) {
      problem = "connection refused by " + host_port(*u) + " (nothing listens there)";
    } else if (err == ETIMEDOUT) {
      problem = "connecting to " + host_port(*u) + " timed out after " + format_duration(wait);
    } else if (err != 0) {
      problem = "cannot connect to " + host_port(*u) + ": " + std::strerror(err);
    } else if (u->scheme == "https") {
      // The socket is non-blocking; tls_problem waits with poll.
      problem = tls_problem(fd.fd, *u, tls, wait);
      if (problem.empty()) problem = fallback + " (a second attempt connected and verified)";
      break;
    } else {
      problem = fallback + " (a second attempt connected)";
      break;
    }
  }
  ::freeaddrinfo(found);
  return problem.empty() ? fallback : problem;
}

}  // namespace bw::net
