#include "registry/client.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <thread>

#include "oci/challenge.h"
#include "oci/ratelimit.h"
#include "util/crypto.h"
#include "util/strings.h"

namespace bw::registry {

using json = nlohmann::json;

namespace {

constexpr Millis k_default_429_pause{60'000};
constexpr Millis k_token_min_lifetime{60'000};
constexpr Millis k_token_renew_margin{10'000};
constexpr int k_max_index_depth = 3;
constexpr size_t k_max_manifest_bytes = 4 << 20;

std::string status_message(int status) {
  switch (status) {
    case 401: return "unauthorized";
    case 403: return "denied";
    case 404: return "not found";
    case 429: return "too many requests";
    default: return "HTTP " + std::to_string(status);
  }
}

}  // namespace

struct Client::TokenCache {
  struct Entry {
    std::string token;
    TimePoint expires_at;
  };
  std::mutex mutex;
  std::map<std::string, Entry> entries;  // realm|service|scope
};

struct Client::Host {
  RegistrySettings settings;
  std::mutex mutex;
  std::condition_variable cv;
  int in_flight = 0;
  TimePoint next_slot{};  // requests_per_minute spacing
  bool basic = false;     // the registry challenged with Basic
  std::map<std::string, std::string> token_keys;  // repository -> token cache key
  RegistryStatus status;
};

Client::Client(net::HttpClient& http, const ClockSource& clock, std::vector<RegistrySettings> settings)
    : m_http(http), m_clock(clock), m_tokens(std::make_unique<TokenCache>()) {
  for (auto& s : settings) m_settings[s.host] = std::move(s);
}

Client::~Client() = default;

Client::Host& Client::host(const std::string& name) {
  std::lock_guard lock(m_mutex);
  auto& h = m_hosts[name];
  if (!h) {
    h = std::make_unique<Host>();
    auto it = m_settings.find(name);
    if (it != m_settings.end()) h->settings = it->second;
    h->settings.host = name;
    h->status.host = name;
  }
  return *h;
}

std::string Client::base_url(const Host& h) const {
  return std::string(h.settings.insecure ? "http://" : "https://") + oci::api_host(h.settings.host);
}

TimePoint Client::available_at(const std::string& name) {
  Host& h = host(name);
  std::lock_guard lock(h.mutex);
  return std::max(from_unix_ms(h.status.paused_until), h.next_slot);
}

std::vector<RegistryStatus> Client::status() const {
  std::vector<RegistryStatus> out;
  std::lock_guard lock(m_mutex);
  for (const auto& [name, h] : m_hosts) {
    std::lock_guard hl(h->mutex);
    out.push_back(h->status);
  }
  return out;
}

int64_t Client::token_requests() const { return m_token_requests.load(); }

Result<std::string> Client::fetch_token(Host& h, const std::map<std::string, std::string>& params, const std::string& scope,
                                        int& count) {
  auto realm_it = params.find("realm");
  if (realm_it == params.end() || realm_it->second.empty()) {
    return make_error(ErrorKind::bad_answer, h.settings.host + ": Bearer challenge without a realm");
  }
  const std::string& realm = realm_it->second;
  if (realm.rfind("https://", 0) != 0 && !(h.settings.insecure && realm.rfind("http://", 0) == 0)) {
    return make_error(ErrorKind::bad_answer, h.settings.host + ": refusing token realm " + net::redact_url(realm) +
                                                 " (https required unless the registry is marked insecure)");
  }
  std::string service = params.count("service") ? params.at("service") : "";
  std::string key = realm + "|" + service + "|" + scope;
  {
    std::lock_guard lock(m_tokens->mutex);
    auto it = m_tokens->entries.find(key);
    if (it != m_tokens->entries.end() && it->second.expires_at > m_clock.now() + k_token_renew_margin) return it->second.token;
  }
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (!service.empty()) url += "service=" + net::url_encode(service) + "&";
  for (const auto& s : oci::split_scopes(scope)) url += "scope=" + net::url_encode(s) + "&";
  url.pop_back();
  net::Request req;
  req.method = "GET";
  req.url = url;
  req.tls = net::TlsOptions{true, h.settings.ca_file};
  if (!h.settings.username.empty()) {
    req.headers.emplace_back("Authorization", "Basic " + base64_encode(h.settings.username + ":" + h.settings.password));
  }
  ++count;
  ++m_token_requests;
  auto res = m_http.send(req);
  if (!res) return make_error(res.error().kind, h.settings.host + ": token request failed: " + res.error().message);
  if (res->status == 401 || res->status == 403) {
    return make_error(ErrorKind::unauthorized, h.settings.host + ": credentials refused by the token service (HTTP " +
                                                   std::to_string(res->status) + ")");
  }
  if (res->status != 200) {
    return make_error(oci::classify_status(res->status),
                      h.settings.host + ": token service answered HTTP " + std::to_string(res->status));
  }
  auto body = json::parse(res->body, nullptr, false);
  if (!body.is_object()) return make_error(ErrorKind::bad_answer, h.settings.host + ": token answer is not JSON");
  std::string token;
  if (body.contains("token") && body["token"].is_string()) token = body["token"].get<std::string>();
  if (token.empty() && body.contains("access_token") && body["access_token"].is_string())
    token = body["access_token"].get<std::string>();
  if (token.empty()) return make_error(ErrorKind::bad_answer, h.settings.host + ": token answer has no token");
  Millis lifetime{60'000};
  if (body.contains("expires_in") && body["expires_in"].is_number()) {
    lifetime = Millis(static_cast<int64_t>(body["expires_in"].get<double>() * 1000));
  }
  lifetime = std::max(lifetime, k_token_min_lifetime);
  {
    std::lock_guard lock(m_tokens->mutex);
    m_tokens->entries[key] = TokenCache::Entry{token, m_clock.now() + lifetime};
  }
  return token;
}

Result<net::Response> Client::request(Host& h, const oci::Reference& ref, net::Request req, int& count) {
  // Budget: Retry-After pauses fail fast (the scheduler waits them out);
  // concurrency and per-minute spacing block briefly.
  {
    std::unique_lock lock(h.mutex);
    int64_t now_ms = to_unix_ms(m_clock.now());
    if (h.status.paused_until > now_ms) {
      return make_error(ErrorKind::rate_limited, h.settings.host + ": paused until " +
                                                     format_rfc3339(from_unix_ms(h.status.paused_until)) +
                                                     " (rate limited)");
    }
    if (h.settings.concurrency > 0) h.cv.wait(lock, [&] { return h.in_flight < h.settings.concurrency; });
    ++h.in_flight;
    if (h.settings.requests_per_minute > 0) {
      auto spacing = Millis(60'000 / h.settings.requests_per_minute);
      TimePoint now = m_clock.now();
      TimePoint slot = std::max(now, h.next_slot);
      h.next_slot = slot + spacing;
      if (slot > now) {
        lock.unlock();
        std::this_thread::sleep_for(slot - now);
      }
    }
  }
  struct Release {
    Host& h;
    ~Release() {
      std::lock_guard lock(h.mutex);
      --h.in_flight;
      h.cv.notify_one();
    }
  } release{h};

  req.tls = net::TlsOptions{true, h.settings.ca_file};
  std::string default_scope = oci::repository_scope(ref.repository);
  std::string challenged_with;
  for (int attempt = 0; attempt < 2; ++attempt) {
    net::Request r = req;
    {
      std::lock_guard lock(h.mutex);
      auto tk = h.token_keys.find(ref.repository);
      if (tk != h.token_keys.end()) {
        std::lock_guard tl(m_tokens->mutex);
        auto e = m_tokens->entries.find(tk->second);
        if (e != m_tokens->entries.end() && e->second.expires_at > m_clock.now() + k_token_renew_margin)
          r.headers.emplace_back("Authorization", "Bearer " + e->second.token);
      } else if (h.basic && !h.settings.username.empty()) {
        r.headers.emplace_back("Authorization", "Basic " + base64_encode(h.settings.username + ":" + h.settings.password));
      }
    }
    ++count;
    auto res = m_http.send(r);
    {
      std::lock_guard lock(h.mutex);
      ++h.status.requests;
    }
    if (!res) return make_error(res.error().kind, ref.str() + ": " + res.error().message);
    // Rate-limit headers ride on every answer, HEAD included.
    if (auto limit = oci::parse_ratelimit(res->header("ratelimit-limit"))) {
      std::lock_guard lock(h.mutex);
      h.status.ratelimit_limit = limit->count;
      h.status.ratelimit_window_seconds = limit->window_seconds;
    }
    if (auto remaining = oci::parse_ratelimit(res->header("ratelimit-remaining"))) {
      std::lock_guard lock(h.mutex);
      h.status.ratelimit_remaining = remaining->count;
      if (remaining->window_seconds) h.status.ratelimit_window_seconds = remaining->window_seconds;
    }
    if (res->status == 429) {
      auto until = oci::parse_retry_after(res->header("retry-after"), m_clock.now()).value_or(m_clock.now() + k_default_429_pause);
      std::lock_guard lock(h.mutex);
      h.status.paused_until = std::max(h.status.paused_until, to_unix_ms(until));
      return make_error(ErrorKind::rate_limited, ref.str() + ": too many requests; paused until " + format_rfc3339(until));
    }
    if (res->status != 401) return res;
    if (attempt == 1) break;

    auto challenges = oci::parse_challenges(res->header_values("www-authenticate"));
    const oci::Challenge* bearer = nullptr;
    const oci::Challenge* basic = nullptr;
    for (const auto& c : challenges) {
      if (c.scheme == "bearer" && !bearer) bearer = &c;
      if (c.scheme == "basic" && !basic) basic = &c;
    }
    if (bearer) {
      std::string scope = bearer->params.count("scope") ? bearer->params.at("scope") : default_scope;
      // A challenge scope for another repository (or none) still needs ours.
      if (scope.find(ref.repository) == std::string::npos) scope = default_scope;
      auto token = fetch_token(h, bearer->params, scope, count);
      if (!token) return token.error();
      std::string service = bearer->params.count("service") ? bearer->params.at("service") : "";
      std::lock_guard lock(h.mutex);
      h.token_keys[ref.repository] = bearer->params.at("realm") + "|" + service + "|" + scope;
      challenged_with = "bearer";
    } else if (basic) {
      if (h.settings.username.empty()) {
        return make_error(ErrorKind::unauthorized, ref.str() + ": the registry requires credentials (set registries." +
                                                       h.settings.host + ".username and password_file)");
      }
      std::lock_guard lock(h.mutex);
      h.basic = true;
      challenged_with = "basic";
    } else {
      return make_error(ErrorKind::unauthorized, ref.str() + ": unauthorized, and no usable WWW-Authenticate challenge");
    }
  }
  // A second 401 right after fresh credentials is a real refusal.
  std::string who = h.settings.username.empty() ? "anonymous access" : "credentials for user " + h.settings.username;
  return make_error(ErrorKind::unauthorized, ref.str() + ": " + who + " refused (" + challenged_with + ")");
}

Result<std::pair<std::string, std::string>> Client::get_manifest(const oci::Reference& ref, const std::string& tag_or_digest) {
  Host& h = host(ref.registry);
  int count = 0;
  net::Request req;
  req.method = "GET";
  req.url = base_url(h) + "/v2/" + ref.repository + "/manifests/" + tag_or_digest;
  req.headers.emplace_back("Accept", oci::k_accept_header);
  auto res = request(h, ref, req, count);
  if (!res) return res.error();
  if (res->status != 200) {
    auto errors = oci::parse_error_body(res->body);
    std::string detail = errors.empty() ? status_message(res->status) : errors[0].code + ": " + errors[0].message;
    return make_error(oci::classify_status(res->status), ref.name() + "@" + tag_or_digest + ": " + detail);
  }
  if (res->body.size() > k_max_manifest_bytes) return make_error(ErrorKind::bad_answer, ref.str() + ": manifest too large");
  std::string media_type = res->header("content-type");
  if (auto semi = media_type.find(';'); semi != std::string::npos) media_type = std::string(trim(media_type.substr(0, semi)));
  if (tag_or_digest.rfind("sha256:", 0) == 0 && sha256_digest(res->body) != tag_or_digest) {
    return make_error(ErrorKind::bad_answer, ref.name() + "@" + tag_or_digest + ": manifest content does not match its digest");
  }
  if (media_type.empty() || media_type == "application/json") {
    // Some registries omit it; the body's mediaType says.
    auto j = json::parse(res->body, nullptr, false);
    if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) media_type = j["mediaType"].get<std::string>();
    else if (j.is_object() && j.contains("manifests")) media_type = "application/vnd.oci.image.index.v1+json";
  }
  return std::make_pair(std::move(res->body), media_type);
}

Result<Resolved> Client::resolve(const oci::Reference& ref, const std::vector<oci::Platform>& platforms, const Known* known) {
  Host& h = host(ref.registry);
  Resolved out;
  std::string what = ref.tag.empty() ? ref.digest : ref.tag;
  net::Request req;
  req.method = "HEAD";
  req.url = base_url(h) + "/v2/" + ref.repository + "/manifests/" + what;
  req.headers.emplace_back("Accept", oci::k_accept_header);
  auto record_error = [&](const Error& e) {
    std::lock_guard lock(h.mutex);
    h.status.last_error = e.message;
    h.status.last_error_at = to_unix_ms(m_clock.now());
    return e;
  };
  auto res = request(h, ref, req, out.requests);
  if (!res) return record_error(res.error());
  if (res->status != 200) {
    // A HEAD has no body: classify by status alone.
    return record_error(make_error(oci::classify_status(res->status), ref.str() + ": " + status_message(res->status)));
  }
  out.digest = res->header("docker-content-digest");
  out.media_type = res->header("content-type");
  if (auto semi = out.media_type.find(';'); semi != std::string::npos) out.media_type = std::string(trim(out.media_type.substr(0, semi)));
  std::string body;
  if (out.digest.empty()) {
    // Never turn a HEAD into a counted pull on Docker Hub.
    if (ref.registry == "docker.io") {
      return record_error(make_error(ErrorKind::bad_answer, ref.str() + ": no Docker-Content-Digest in the HEAD answer"));
    }
    auto got = get_manifest(ref, what);
    ++out.requests;
    if (!got) return record_error(got.error());
    body = got->first;
    out.media_type = got->second;
    out.digest = sha256_digest(body);
  } else if (!oci::is_valid_digest(out.digest)) {
    return record_error(make_error(ErrorKind::bad_answer, ref.str() + ": invalid Docker-Content-Digest \"" + out.digest + "\""));
  }
  out.index = oci::is_index_media_type(out.media_type);
  if (!out.index) {
    // A single-platform image's digest is its own, for every wanted platform.
    for (const auto& p : platforms) out.platforms[p.str()] = out.digest;
    return out;
  }
  if (known && known->digest == out.digest) {
    bool complete = true;
    for (const auto& p : platforms) complete = complete && known->platforms.count(p.str());
    if (complete) {
      for (const auto& p : platforms) out.platforms[p.str()] = known->platforms.at(p.str());
      return out;
    }
  }
  // The tag moved (or a platform is new to us): read the index once.
  if (body.empty()) {
    auto got = get_manifest(ref, out.digest);
    ++out.requests;
    if (!got) return record_error(got.error());
    body = got->first;
  }
  for (const auto& wanted : platforms) {
    std::string current = body;
    for (int depth = 0; depth < k_max_index_depth; ++depth) {
      auto entries = oci::parse_index(current);
      if (!entries) return record_error(make_error(ErrorKind::bad_answer, ref.str() + ": " + entries.error().message));
      auto entry = oci::select_platform(*entries, wanted);
      if (!entry) break;
      if (!oci::is_index_media_type(entry->media_type)) {
        out.platforms[wanted.str()] = entry->digest;
        break;
      }
      auto nested = get_manifest(ref, entry->digest);
      ++out.requests;
      if (!nested) return record_error(nested.error());
      current = nested->first;
    }
  }
  return out;
}

}  // namespace bw::registry
