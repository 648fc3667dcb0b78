// Shared pieces of the API integration tests: raw HTTP calls against the
// real binary, and counting the registry's own access log lines.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/helpers.h"

namespace bw::testing {

struct HttpAnswer {
  int status = 0;
  std::string body;
  std::string content_type;
  httplib::Headers headers;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
  // The header's value ("" when absent); `count` tells how many came.
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  size_t count(const std::string& name) const { return headers.count(name); }
};

inline HttpAnswer http_call(int port, const std::string& method, const std::string& path, const std::string& body = "",
                            const std::map<std::string, std::string>& headers = {},
                            const std::string& content_type = "application/json") {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(10, 0);
  httplib::Headers h;
  for (const auto& [k, v] : headers) h.emplace(k, v);
  httplib::Result res = method == "POST" ? c.Post(path.c_str(), h, body, content_type.c_str()) : c.Get(path.c_str(), h);
  HttpAnswer a;
  if (!res) return a;
  a.status = res->status;
  a.body = res->body;
  a.content_type = res->get_header_value("Content-Type");
  a.headers = res->headers;
  return a;
}

inline const char* const k_chromium = "/usr/bin/chromium";

// Headless Chromium with its own profile in `dir`; extra args last
// (`--dump-dom URL`, `--screenshot=FILE --window-size=W,H URL`).
inline RunResult chromium(const std::string& dir, std::vector<std::string> extra) {
  std::vector<std::string> argv{k_chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                "--user-data-dir=" + dir + "/chromium-profile"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run(argv, {}, "", std::chrono::seconds(60));
}

// How many manifest HEADs of repo:reference the registry has served (its access log).
inline size_t heads_served(const LocalRegistry& registry, const std::string& repo, const std::string& reference) {
  std::string log = registry.log();
  std::string needle = "\"HEAD /v2/" + repo + "/manifests/" + reference + " ";
  size_t n = 0;
  for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace bw::testing
