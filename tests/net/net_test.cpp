#include <catch2/catch.hpp>

#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "net/http.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/support.h"
#include "util/crypto.h"

using namespace bw;
using bw::testing::TempDir;

namespace {

// A real HTTP (or HTTPS) server on 127.0.0.1 for the length of a test.
template <typename Server>
struct Serving {
  Server& server;
  int port = 0;
  std::thread thread;
  explicit Serving(Server& s) : server(s) {
    port = server.bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Serving() {
    server.stop();
    thread.join();
  }
};

std::string blob_of(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return s;
}

}  // namespace

TEST_CASE("a streamed answer arrives in pieces and is never kept whole", "[integration][net]") {
  const std::string big = blob_of(3 << 20);
  httplib::Server server;
  server.Get("/blob", [&](const httplib::Request&, httplib::Response& res) { res.set_content(big, "application/octet-stream"); });
  server.Get("/missing", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content(R"({"errors":[{"code":"BLOB_UNKNOWN"}]})", "application/json");
  });
  Serving<httplib::Server> s(server);
  net::HttplibClient http;

  Sha256 hash;
  size_t pieces = 0, bytes = 0, largest = 0;
  net::Request req;
  req.url = "http://127.0.0.1:" + std::to_string(s.port) + "/blob";
  req.body_sink = [&](std::string_view piece) {
    hash.update(piece);
    ++pieces;
    bytes += piece.size();
    largest = std::max(largest, piece.size());
    return true;
  };
  auto res = http.send(req);
  REQUIRE(res.ok());
  CHECK(res->status == 200);
  CHECK(res->body.empty());
  CHECK(bytes == big.size());
  CHECK(hash.digest() == sha256_digest(big));
  CHECK(pieces > 10);
  CHECK(largest < (1u << 20));

  // An error answer keeps its body, for its error JSON.
  req.url = "http://127.0.0.1:" + std::to_string(s.port) + "/missing";
  bytes = 0;
  res = http.send(req);
  REQUIRE(res.ok());
  CHECK(res->status == 404);
  CHECK(res->body == R"({"errors":[{"code":"BLOB_UNKNOWN"}]})");
  CHECK(bytes == 0);

  // A sink that says stop ends the transfer with an error.
  req.url = "http://127.0.0.1:" + std::to_string(s.port) + "/blob";
  req.body_sink = [&](std::string_view) { return false; };
  res = http.send(req);
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().message == "GET http://127.0.0.1:" + std::to_string(s.port) + "/blob: transfer stopped by the receiver");
}

TEST_CASE("the fake client streams like the real one", "[unit][net]") {
  const std::string big = blob_of(100'000);
  net::FakeHttpClient fake([&](const net::Request&) -> Result<net::Response> {
    net::Response r;
    r.status = 200;
    r.body = big;
    return r;
  });
  std::string got;
  net::Request req;
  req.url = "http://x/blob";
  req.body_sink = [&](std::string_view piece) {
    got += piece;
    return true;
  };
  auto res = fake.send(req);
  REQUIRE(res.ok());
  CHECK(res->body.empty());
  CHECK(got == big);
}

TEST_CASE("a failed connection says why, as curl would", "[integration][net]") {
  net::HttplibClient http;
  SECTION("nothing listens on the port") {
    int port = testing::free_port();
    net::Request req;
    req.method = "HEAD";
    req.url = "http://127.0.0.1:" + std::to_string(port) + "/v2/";
    auto res = http.send(req);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == ErrorKind::network);
    CHECK(res.error().message == "HEAD http://127.0.0.1:" + std::to_string(port) +
                                     "/v2/: connection refused by 127.0.0.1:" + std::to_string(port) +
                                     " (nothing listens there)");
  }
  SECTION("the peer accepts but never answers") {
    testing::SilentListener silent;
    int port = silent.port();
    net::Request req;
    req.url = "http://127.0.0.1:" + std::to_string(port) + "/v2/";
    req.timeout = Millis(300);
    auto res = http.send(req);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == ErrorKind::timeout);
    CHECK(res.error().message == "GET http://127.0.0.1:" + std::to_string(port) +
                                     "/v2/: no complete answer within 300ms (the read timed out or the connection was closed)");
  }
  SECTION("TLS with a certificate nobody vouches for") {
    TempDir dir;
    std::string key = dir.path() + "/key.pem", cert = dir.path() + "/cert.pem";
    auto made = testing::run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                              "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
    REQUIRE(made.status == 0);
    httplib::SSLServer server(cert.c_str(), key.c_str());
    server.Get("/v2/", [](const httplib::Request&, httplib::Response& res) { res.set_content("{}", "application/json"); });
    Serving<httplib::SSLServer> s(server);
    std::string url = "https://127.0.0.1:" + std::to_string(s.port) + "/v2/";
    net::Request req;
    req.url = url;
    auto res = http.send(req);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind == ErrorKind::network);
    CHECK(res.error().message == "GET " + url + ": TLS certificate verification failed for 127.0.0.1: self-signed certificate");
    // With that certificate as the CA file, the same server verifies.
    req.tls.ca_file = cert;
    res = http.send(req);
    REQUIRE(res.ok());
    CHECK(res->status == 200);
  }
}
