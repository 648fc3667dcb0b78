// A fake registry behind the net/ seam, for unit tests of the registry
// client and the watcher: tags point at manifests or indexes held in memory.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "net/http.h"
#include "util/crypto.h"

namespace bw::testing {

class FakeRegistry {
 public:
  // Stores a manifest body; returns its digest.
  std::string put_blob(const std::string& body, const std::string& media_type) {
    std::lock_guard lock(m_mutex);
    std::string d = sha256_digest(body);
    m_manifests[d] = {body, media_type};
    return d;
  }
  std::string put_manifest(const std::string& repo, const std::string& tag, const std::string& content) {
    std::string body = nlohmann::json{{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                      {"config", {{"digest", sha256_digest(content)}}}}.dump();
    std::string d = put_blob(body, "application/vnd.oci.image.manifest.v1+json");
    tag_it(repo, tag, d);
    return d;
  }
  // platform text -> manifest digest; `extra` adds an attestation entry.
  std::string put_index(const std::string& repo, const std::string& tag,
                        const std::vector<std::pair<std::string, std::string>>& entries, const std::string& attestation = "") {
    nlohmann::json idx = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", nlohmann::json::array()}};
    for (const auto& [platform, digest] : entries) {
      auto slash = platform.find('/');
      auto rest = platform.substr(slash + 1);
      auto slash2 = rest.find('/');
      nlohmann::json p = {{"os", platform.substr(0, slash)}, {"architecture", rest.substr(0, slash2)}};
      if (slash2 != std::string::npos) p["variant"] = rest.substr(slash2 + 1);
      idx["manifests"].push_back({{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", digest}, {"size", 100}, {"platform", p}});
    }
    if (!attestation.empty()) {
      idx["manifests"].push_back({{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                  {"digest", sha256_digest(attestation)}, {"size", 10},
                                  {"platform", {{"os", "unknown"}, {"architecture", "unknown"}}},
                                  {"annotations", {{"vnd.docker.reference.type", "attestation-manifest"}}}});
    }
    std::string d = put_blob(idx.dump(), "application/vnd.oci.image.index.v1+json");
    tag_it(repo, tag, d);
    return d;
  }
  void tag_it(const std::string& repo, const std::string& tag, const std::string& digest) {
    std::lock_guard lock(m_mutex);
    m_tags[repo + ":" + tag] = digest;
  }

  // Optional: require a bearer token (issued by the fake token endpoint).
  bool require_token = false;
  std::string token_user, token_password;  // when set, the token endpoint wants Basic with these
  int heads = 0, gets = 0, token_requests = 0;

  // The tokens issued so far, in order ("tok-1", "tok-2", ...): each one a
  // new token, so a test can tell which request got which. The registry
  // accepts any of them.
  std::vector<std::string> issued() {
    std::lock_guard lock(m_mutex);
    return m_issued;
  }

  Result<net::Response> handle(const net::Request& req) {
    std::lock_guard lock(m_mutex);
    net::Response res;
    if (req.url.find("/token?") != std::string::npos) {
      ++token_requests;
      if (!token_user.empty()) {
        std::string want = "Basic " + base64_encode(token_user + ":" + token_password);
        bool ok = false;
        for (const auto& [k, v] : req.headers) ok = ok || (k == "Authorization" && v == want);
        if (!ok) {
          res.status = 401;
          return res;
        }
      }
      m_issued.push_back("tok-" + std::to_string(m_issued.size() + 1));
      res.status = 200;
      res.body = nlohmann::json{{"token", m_issued.back()}, {"expires_in", 300}}.dump();
      return res;
    }
    if (require_token) {
      bool ok = false;
      for (const auto& [k, v] : req.headers) {
        for (const auto& t : m_issued) ok = ok || (k == "Authorization" && v == "Bearer " + t);
      }
      if (!ok) {
        res.status = 401;
        res.headers.emplace("www-authenticate", R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull")");
        return res;
      }
    }
    // URL: https://host/v2/<repo>/manifests/<ref>
    auto v2 = req.url.find("/v2/");
    auto m = req.url.rfind("/manifests/");
    if (v2 == std::string::npos || m == std::string::npos) {
      res.status = 404;
      return res;
    }
    std::string repo = req.url.substr(v2 + 4, m - v2 - 4);
    std::string what = req.url.substr(m + 11);
    std::string digest = what.rfind("sha256:", 0) == 0 ? what : "";
    if (digest.empty()) {
      auto t = m_tags.find(repo + ":" + what);
      if (t != m_tags.end()) digest = t->second;
    }
    auto it = m_manifests.find(digest);
    if (it == m_manifests.end()) {
      res.status = 404;
      return res;
    }
    res.status = 200;
    res.headers.emplace("docker-content-digest", digest);
    res.headers.emplace("content-type", it->second.second);
    if (req.method == "HEAD") {
      ++heads;
    } else {
      ++gets;
      res.body = it->second.first;
    }
    return res;
  }

 private:
  std::mutex m_mutex;
  std::map<std::string, std::pair<std::string, std::string>> m_manifests;  // digest -> body, media type
  std::map<std::string, std::string> m_tags;
  std::vector<std::string> m_issued;
};

}  // namespace bw::testing
