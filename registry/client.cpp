#include "registry/client.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "oci/challenge.h"
#include "oci/ratelimit.h"
#include "util/crypto.h"
#include "util/metrics.h"
#include "util/strings.h"

namespace bw::registry {

using json = nlohmann::json;

namespace {

constexpr Millis k_default_429_pause{60'000};
constexpr Millis k_token_min_lifetime{60'000};
constexpr Millis k_token_renew_margin{10'000};
constexpr Millis k_credentials_ttl{5 * 60'000};  // docker config and helpers are read again after this
constexpr int k_breaker_threshold = 3;           // failures in a row before the registry is paused
constexpr Millis k_breaker_first{2'000};
constexpr Millis k_breaker_max{5 * 60'000};
constexpr int k_max_index_depth = 3;
constexpr size_t k_max_manifest_bytes = 4 << 20;
constexpr size_t k_max_token_entries = 4096;

const char* const k_requests_metric = "basewatch_registry_requests_total";
const char* const k_requests_help = "Registry requests by registry, method and outcome.";

std::string status_message(int status) {
  switch (status) {
    case 401: return "unauthorized";
    case 403: return "denied";
    case 404: return "not found";
    case 429: return "too many requests";
    default: return "HTTP " + std::to_string(status);
  }
}

const char* outcome_of(int status) {
  if (status >= 200 && status < 400) return "ok";
  switch (oci::classify_status(status)) {
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::unauthorized: return "unauthorized";
    case ErrorKind::denied: return "denied";
    case ErrorKind::rate_limited: return "rate_limited";
    case ErrorKind::server: return "server";
    case ErrorKind::timeout: return "timeout";
    default: return "bad_answer";
  }
}

void count_request(const std::string& host, const char* method, const char* outcome) {
  Metrics::global().counter_add(k_requests_metric, k_requests_help,
                                {{"registry", host}, {"method", method}, {"outcome", outcome}});
}

std::string media_type_of(const net::Response& res) {
  std::string t = res.header("content-type");
  if (auto semi = t.find(';'); semi != std::string::npos) t = t.substr(0, semi);
  return std::string(trim(t));
}

// A Content-Type that does not say what the manifest is.
bool vague_media_type(const std::string& t) {
  return t.empty() || t == "application/json" || t == "application/octet-stream" || t == "text/plain";
}

std::string base_url(const RegistrySettings& s) {
  return std::string(s.insecure ? "http://" : "https://") + oci::api_host(s.host);
}

bool same_credentials(const RegistrySettings& a, const RegistrySettings& b) {
  return a.username == b.username && a.password == b.password && a.docker_config == b.docker_config;
}
bool same_tls(const RegistrySettings& a, const RegistrySettings& b) { return a.insecure == b.insecure && a.ca_file == b.ca_file; }
bool same_settings(const RegistrySettings& a, const RegistrySettings& b) {
  return same_credentials(a, b) && same_tls(a, b) && a.requests_per_minute == b.requests_per_minute &&
         a.concurrency == b.concurrency && a.timeout == b.timeout;
}

// Who a cached token was fetched for: a keyed digest of the credentials
// (never the secret itself), so that changed credentials (a reload, a
// rotated docker config.json) never get a token fetched with the old ones.
std::string credentials_key(const Credentials& c) {
  if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return "anonymous";
  static const std::string salt = [] {
    std::random_device rd;
    std::string out;
    for (int i = 0; i < 4; ++i) out += std::to_string(rd());
    return out;
  }();
  std::string who = c.username;
  who += '\0';
  who += c.password;
  who += '\0';
  who += c.identity_token;
  return hmac_sha256_hex(salt, who);
}

Client::Access pull_access(const std::string& repository) {
  Client::Access a;
  a.repository = repository;
  return a;
}

Millis jitter(Millis d) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(0.8, 1.2);
  return Millis(static_cast<int64_t>(static_cast<double>(d.count()) * dist(rng)));
}

}  // namespace

struct Client::TokenCache {
  struct Entry {
    std::string token;
    TimePoint expires_at;
  };
  std::mutex mutex;
  std::map<std::string, Entry> entries;  // host|realm|service|scope|credentials_key
};

struct Client::Host {
  explicit Host(std::string n) : name(std::move(n)) {}
  const std::string name;
  std::mutex mutex;
  std::condition_variable cv;
  // The settings in force, under `mutex`: update_settings replaces the
  // pointer, nobody changes what it points to. A resolve takes one View.
  std::shared_ptr<const RegistrySettings> settings;
  // Bumped by update_settings when the credentials must be read again;
  // cached credentials of an older generation are not used.
  uint64_t generation = 0;
  int in_flight = 0;
  TimePoint next_slot{};                        // requests_per_minute spacing
  bool basic = false;                           // the registry challenged with Basic
  std::optional<Bearer> bearer;                 // its last Bearer challenge: later tokens go up front
  std::map<std::string, std::string> scopes;    // repository -> the scope its token is asked for
  ErrorKind pause_kind = ErrorKind::rate_limited;
  std::string pause_reason;
  RegistryStatus status;
  // Credentials, read when a challenge first needs them and again after
  // k_credentials_ttl or a refusal. Their own mutex: a helper may be slow.
  std::mutex creds_mutex;
  std::optional<Credentials> creds;
  uint64_t creds_generation = 0;
  TimePoint creds_at{};
};

Client::Client(net::HttpClient& http, const ClockSource& clock, std::vector<RegistrySettings> settings)
    : m_http(http),
      m_clock(clock),
      m_tokens(std::make_unique<TokenCache>()),
      m_helper_runner([](const std::string& helper, const std::string& url) { return run_credential_helper(helper, url); }),
      m_sleep([](Millis d) { std::this_thread::sleep_for(d); }) {
  for (auto& s : settings) {
    std::string name = s.host;
    m_settings[name] = std::make_shared<const RegistrySettings>(std::move(s));
  }
}

Client::~Client() = default;

void Client::set_helper_runner(HelperRunner run) { m_helper_runner = std::move(run); }
void Client::set_sleeper(std::function<void(Millis)> sleep) { m_sleep = std::move(sleep); }

namespace {

// The configured settings of `name`, or the defaults (anonymous, verified
// TLS, no limits) for a host the config does not name.
std::shared_ptr<const RegistrySettings> settings_of(
    const std::map<std::string, std::shared_ptr<const RegistrySettings>>& configured, const std::string& name) {
  auto it = configured.find(name);
  if (it != configured.end()) return it->second;
  auto s = std::make_shared<RegistrySettings>();
  s->host = name;
  return s;
}

}  // namespace

Client::Host& Client::host(const std::string& name) {
  std::lock_guard lock(m_mutex);
  auto& h = m_hosts[name];
  if (!h) {
    h = std::make_unique<Host>(name);
    h->settings = settings_of(m_settings, name);
    h->status.host = name;
  }
  return *h;
}

Client::View Client::view(Host& h) {
  std::lock_guard lock(h.mutex);
  return View{h.settings, h.generation};
}

void Client::forget_tokens(const std::string& key_prefix) {
  std::lock_guard lock(m_tokens->mutex);
  for (auto it = m_tokens->entries.begin(); it != m_tokens->entries.end();) {
    it = it->first.rfind(key_prefix, 0) == 0 ? m_tokens->entries.erase(it) : std::next(it);
  }
}

std::vector<std::string> Client::update_settings(std::vector<RegistrySettings> settings) {
  std::map<std::string, std::shared_ptr<const RegistrySettings>> fresh;
  for (auto& s : settings) {
    std::string name = s.host;
    fresh[name] = std::make_shared<const RegistrySettings>(std::move(s));
  }
  std::vector<std::string> changed;
  std::vector<Host*> notify;
  std::vector<std::string> drop_tokens;
  {
    std::lock_guard lock(m_mutex);
    std::set<std::string> names;
    for (const auto& [name, s] : m_settings) names.insert(name);
    for (const auto& [name, s] : fresh) names.insert(name);
    for (const auto& name : names) {
      if (!same_settings(*settings_of(m_settings, name), *settings_of(fresh, name))) changed.push_back(name);
    }
    for (auto& [name, h] : m_hosts) {
      auto next = settings_of(fresh, name);
      std::lock_guard hl(h->mutex);
      const RegistrySettings& old = *h->settings;
      bool credentials_changed = !same_credentials(old, *next);
      bool tls_changed = !same_tls(old, *next);
      // A docker config.json may have changed behind the same path: read it
      // (and run its helpers) again at the next challenge.
      if (credentials_changed || tls_changed || !next->docker_config.empty()) ++h->generation;
      if (credentials_changed || tls_changed) drop_tokens.push_back(name + "|");
      if (tls_changed) {
        // Another scheme or CA may reach another server: learn its challenge
        // again, and give it a chance now instead of after the breaker's pause
        // (a Retry-After pause stays: the registry asked for it).
        h->basic = false;
        h->bearer.reset();
        h->scopes.clear();
        h->status.consecutive_failures = 0;
        if (h->pause_kind != ErrorKind::rate_limited) {
          h->status.paused_until = 0;
          h->pause_reason.clear();
        }
      }
      if (old.requests_per_minute != next->requests_per_minute && h->next_slot != TimePoint{}) {
        // next_slot is the last slot given out plus the old spacing: space
        // the next request from that last slot by the new one.
        TimePoint last = h->next_slot;
        if (old.requests_per_minute > 0) last -= Millis(60'000 / old.requests_per_minute);
        h->next_slot = next->requests_per_minute > 0 ? last + Millis(60'000 / next->requests_per_minute) : TimePoint{};
      }
      if (old.concurrency != next->concurrency) notify.push_back(h.get());
      h->settings = std::move(next);
    }
    m_settings = std::move(fresh);
  }
  // Hosts live as long as the client: the pointers stay good.
  for (Host* h : notify) {
    std::lock_guard lock(h->mutex);  // a waiter between its check and its wait sees the new limit
    h->cv.notify_all();
  }
  for (const auto& prefix : drop_tokens) forget_tokens(prefix);
  return changed;
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
    out.back().next_request_at = std::max(h->status.paused_until, h->next_slot == TimePoint{} ? 0 : to_unix_ms(h->next_slot));
  }
  return out;
}

std::vector<HostBudget> Client::budgets() const {
  std::vector<HostBudget> out;
  std::lock_guard lock(m_mutex);
  for (const auto& [name, h] : m_hosts) {
    std::lock_guard hl(h->mutex);
    HostBudget b;
    b.status = h->status;
    b.status.next_request_at = 0;
    b.pause_kind = h->pause_kind;
    b.pause_reason = h->pause_reason;
    b.next_slot = h->next_slot == TimePoint{} ? 0 : to_unix_ms(h->next_slot);
    out.push_back(std::move(b));
  }
  return out;
}

void Client::restore_budgets(const std::vector<HostBudget>& budgets) {
  for (const auto& b : budgets) {
    if (b.status.host.empty()) continue;
    Host& h = host(b.status.host);
    std::lock_guard lock(h.mutex);
    int64_t paused_until = h.status.paused_until;
    ErrorKind pause_kind = h.pause_kind;
    std::string pause_reason = h.pause_reason;
    if (b.status.paused_until > paused_until) {
      paused_until = b.status.paused_until;
      pause_kind = b.pause_kind;
      pause_reason = b.pause_reason;
    }
    h.status = b.status;
    h.status.host = h.name;
    h.status.paused_until = paused_until;
    h.pause_kind = pause_kind;
    h.pause_reason = pause_reason;
    if (b.next_slot > 0 && from_unix_ms(b.next_slot) > h.next_slot) h.next_slot = from_unix_ms(b.next_slot);
  }
}

namespace {

json optional_number(const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); }

std::optional<int64_t> read_optional(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

int64_t read_number(const json& j, const char* key) { return read_optional(j, key).value_or(0); }

std::string read_text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string encode_budgets(const std::vector<HostBudget>& budgets) {
  json out = json::object();
  for (const auto& b : budgets) {
    const RegistryStatus& s = b.status;
    out[s.host] = {{"requests", s.requests},
                   {"ratelimit_limit", optional_number(s.ratelimit_limit)},
                   {"ratelimit_remaining", optional_number(s.ratelimit_remaining)},
                   {"ratelimit_window_seconds", optional_number(s.ratelimit_window_seconds)},
                   {"paused_until", s.paused_until},
                   {"pause_kind", to_string(b.pause_kind)},
                   {"pause_reason", b.pause_reason},
                   {"next_slot", b.next_slot},
                   {"consecutive_failures", s.consecutive_failures},
                   {"last_error", s.last_error},
                   {"last_error_kind", s.last_error_kind},
                   {"last_error_at", s.last_error_at}};
  }
  // Error texts may quote a registry's bytes: never a throw.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<HostBudget> decode_budgets(std::string_view text) {
  std::vector<HostBudget> out;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return out;
  for (const auto& [host, v] : j.items()) {
    if (host.empty() || !v.is_object()) continue;
    HostBudget b;
    b.status.host = host;
    b.status.requests = std::max<int64_t>(0, read_number(v, "requests"));
    b.status.ratelimit_limit = read_optional(v, "ratelimit_limit");
    b.status.ratelimit_remaining = read_optional(v, "ratelimit_remaining");
    b.status.ratelimit_window_seconds = read_optional(v, "ratelimit_window_seconds");
    b.status.paused_until = read_number(v, "paused_until");
    b.pause_kind = parse_error_kind(read_text(v, "pause_kind")).value_or(ErrorKind::rate_limited);
    b.pause_reason = read_text(v, "pause_reason");
    b.next_slot = read_number(v, "next_slot");
    int64_t failures = read_number(v, "consecutive_failures");
    b.status.consecutive_failures = static_cast<int>(std::clamp<int64_t>(failures, 0, 1'000'000));
    b.status.last_error = read_text(v, "last_error");
    b.status.last_error_kind = read_text(v, "last_error_kind");
    b.status.last_error_at = read_number(v, "last_error_at");
    out.push_back(std::move(b));
  }
  return out;
}

int64_t Client::token_requests() const { return m_token_requests.load(); }

Result<Credentials> Client::credentials(Host& h, const View& v) {
  std::lock_guard lock(h.creds_mutex);
  TimePoint now = m_clock.now();
  if (h.creds && h.creds_generation == v.generation && now < h.creds_at + k_credentials_ttl) return *h.creds;
  const RegistrySettings& s = *v.settings;
  Credentials c;
  if (!s.username.empty()) {
    c.username = s.username;
    c.password = s.password;
  } else if (!s.docker_config.empty()) {
    BW_TRY(c, load_docker_config_credentials(s.docker_config, h.name, m_helper_runner));
  }
  // A resolve that began before a reload must not put its old credentials
  // over newer ones.
  if (!h.creds || v.generation >= h.creds_generation) {
    h.creds = c;
    h.creds_at = now;
    h.creds_generation = v.generation;
  }
  return c;
}

void Client::note_failure(Host& h, const Error& e) {
  std::lock_guard lock(h.mutex);
  int n = ++h.status.consecutive_failures;
  if (n < k_breaker_threshold) return;
  // Failures in a row: pause this registry so its other references fail
  // fast instead of each waiting for its own timeout.
  int64_t ms = k_breaker_first.count();
  for (int i = k_breaker_threshold; i < n && ms < k_breaker_max.count(); ++i) ms *= 2;
  Millis pause = jitter(Millis(std::min(ms, k_breaker_max.count())));
  int64_t until = to_unix_ms(m_clock.now() + pause);
  if (until > h.status.paused_until) {
    h.status.paused_until = until;
    h.pause_kind = e.kind;
    h.pause_reason = std::to_string(n) + " failures in a row (last: " + e.message + ")";
  }
}

void Client::note_success(Host& h) {
  std::lock_guard lock(h.mutex);
  h.status.consecutive_failures = 0;
}

void Client::pause_for_429(Host& h, const net::Response& res) {
  TimePoint now = m_clock.now();
  TimePoint until = oci::parse_retry_after(res.header("retry-after"), now).value_or(now + k_default_429_pause);
  std::lock_guard lock(h.mutex);
  if (to_unix_ms(until) >= h.status.paused_until) {
    h.status.paused_until = to_unix_ms(until);
    h.pause_kind = ErrorKind::rate_limited;
    h.pause_reason = "rate limited";
  }
}

Result<net::Response> Client::exchange(Host& h, const net::Request& req, const char* method, int& count) {
  ++count;
  auto res = m_http.send(req);
  {
    std::lock_guard lock(h.mutex);
    ++h.status.requests;
  }
  if (!res) {
    count_request(h.name, method, res.error().kind == ErrorKind::timeout ? "timeout" : "network");
    note_failure(h, res.error());
    return res;
  }
  count_request(h.name, method, outcome_of(res->status));
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
  if (res->status == 429) pause_for_429(h, *res);
  ErrorKind kind = oci::classify_status(res->status);
  if (res->status >= 500 || res->status == 408) note_failure(h, make_error(kind, "HTTP " + std::to_string(res->status)));
  else if (res->status != 429) note_success(h);
  return res;
}

Result<std::string> Client::fetch_token(Host& h, const View& v, const Bearer& bearer, const std::string& scope,
                                        const Credentials& creds, int& count) {
  const RegistrySettings& settings = *v.settings;
  const std::string& realm = bearer.realm;
  if (realm.empty()) return make_error(ErrorKind::bad_answer, h.name + ": Bearer challenge without a realm");
  if (realm.rfind("https://", 0) != 0 && !(settings.insecure && realm.rfind("http://", 0) == 0)) {
    return make_error(ErrorKind::bad_answer, h.name + ": refusing token realm " + net::redact_url(realm) +
                                             " (https required unless the registry is marked insecure)");
  }
  std::string key = h.name + "|" + realm + "|" + bearer.service + "|" + scope + "|" + credentials_key(creds);
  TimePoint now = m_clock.now();
  {
    std::lock_guard lock(m_tokens->mutex);
    auto it = m_tokens->entries.find(key);
    if (it != m_tokens->entries.end() && it->second.expires_at > now + k_token_renew_margin) return it->second.token;
  }
  net::Request req;
  req.tls = net::TlsOptions{true, settings.ca_file};
  req.timeout = settings.timeout;
  if (!creds.identity_token.empty()) {
    // OAuth2 refresh-token grant: what docker does with an identity token.
    req.method = "POST";
    req.url = realm;
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.body = "grant_type=refresh_token&client_id=basewatch&refresh_token=" + net::url_encode(creds.identity_token);
    if (!bearer.service.empty()) req.body += "&service=" + net::url_encode(bearer.service);
    auto scopes = oci::split_scopes(scope);
    if (!scopes.empty()) req.body += "&scope=" + net::url_encode(join(scopes, " "));
  } else {
    std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
    if (!bearer.service.empty()) url += "service=" + net::url_encode(bearer.service) + "&";
    for (const auto& s : oci::split_scopes(scope)) url += "scope=" + net::url_encode(s) + "&";
    url.pop_back();
    req.method = "GET";
    req.url = url;
    if (!creds.username.empty()) {
      req.headers.emplace_back("Authorization", "Basic " + base64_encode(creds.username + ":" + creds.password));
    }
  }
  ++m_token_requests;
  auto res = exchange(h, req, "TOKEN", count);
  if (!res) return make_error(res.error().kind, h.name + ": token request failed: " + res.error().message);
  if (res->status == 401 || res->status == 403) {
    return make_error(ErrorKind::unauthorized,
                      h.name + ": credentials refused by the token service (HTTP " + std::to_string(res->status) + ")");
  }
  if (res->status != 200) {
    return make_error(oci::classify_status(res->status),
                      h.name + ": token service answered HTTP " + std::to_string(res->status));
  }
  auto body = json::parse(res->body, nullptr, false);
  std::string token;
  if (body.is_object() && body.contains("token") && body["token"].is_string()) token = body["token"].get<std::string>();
  if (token.empty() && body.is_object() && body.contains("access_token") && body["access_token"].is_string())
    token = body["access_token"].get<std::string>();
  if (token.empty()) {
    count_request(h.name, "TOKEN", "bad_answer");
    return make_error(ErrorKind::bad_answer,
                      h.name + (body.is_object() ? ": token answer has no token" : ": token answer is not JSON"));
  }
  Millis lifetime{60'000};
  if (body.contains("expires_in") && body["expires_in"].is_number()) {
    double s = body["expires_in"].get<double>();
    if (s > 0 && s < 1e9) lifetime = Millis(static_cast<int64_t>(s * 1000));
  }
  lifetime = std::max(lifetime, k_token_min_lifetime);
  {
    std::lock_guard lock(m_tokens->mutex);
    if (m_tokens->entries.size() >= k_max_token_entries) {
      for (auto it = m_tokens->entries.begin(); it != m_tokens->entries.end();) {
        it = it->second.expires_at <= now ? m_tokens->entries.erase(it) : std::next(it);
      }
    }
    m_tokens->entries[key] = TokenCache::Entry{token, now + lifetime};
  }
  return token;
}

Result<net::Response> Client::request(Host& h, const View& v, const Access& access, const std::string& what,
                                      net::Request req, int& count) {
  // Budget: pauses (Retry-After, failures in a row) fail fast and the
  // scheduler waits them out; concurrency and per-minute spacing block.
  // Both limits are read from the host's current settings, not the view: a
  // reload applies to requests already waiting.
  {
    std::unique_lock lock(h.mutex);
    // Waiting for a slot first: the registry may be paused meanwhile.
    h.cv.wait(lock, [&] { return h.settings->concurrency <= 0 || h.in_flight < h.settings->concurrency; });
    if (h.status.paused_until > to_unix_ms(m_clock.now())) {
      return make_error(h.pause_kind, h.name + ": paused until " + format_rfc3339(from_unix_ms(h.status.paused_until)) +
                                          " (" + h.pause_reason + ")");
    }
    ++h.in_flight;
    if (int rpm = h.settings->requests_per_minute; rpm > 0) {
      auto spacing = Millis(60'000 / rpm);
      TimePoint now = m_clock.now();
      TimePoint slot = std::max(now, h.next_slot);
      h.next_slot = slot + spacing;
      if (slot > now) {
        lock.unlock();
        m_sleep(std::chrono::duration_cast<Millis>(slot - now));
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

  req.tls = net::TlsOptions{true, v.settings->ca_file};
  req.timeout = v.settings->timeout;
  // A push or a mount asks for its own scope; a pull reuses the one the
  // registry's challenge named for the repository.
  const bool own_scope = access.push || !access.mount_from.empty();
  const std::string& repository = access.repository;
  // Credentials go to the registry's own origin only (not to an upload
  // Location or a redirect that points elsewhere).
  const bool to_registry = req.url.rfind(base_url(*v.settings) + "/", 0) == 0;
  std::string challenged_with;
  std::optional<Credentials> sent;  // what the last attempt authenticated with
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::optional<Bearer> bearer;
    bool basic = false;
    std::string scope;
    {
      std::lock_guard lock(h.mutex);
      bearer = h.bearer;
      basic = h.basic;
      if (own_scope) {
        scope = "repository:" + repository + (access.push ? ":pull,push" : ":pull");
        for (const auto& from : access.mount_from) scope += " repository:" + from + ":pull";
      } else {
        auto s = h.scopes.find(repository);
        scope = s != h.scopes.end() ? s->second : oci::repository_scope(repository);
      }
    }
    // The attempt's request: the headers get the credentials; the body (an
    // upload chunk may be megabytes) is lent, not copied.
    net::Request r;
    r.method = req.method;
    r.url = req.url;
    r.headers = req.headers;
    r.timeout = req.timeout;
    r.tls = req.tls;
    r.body_sink = req.body_sink;
    if ((bearer || basic) && to_registry) {
      BW_TRY(Credentials creds, credentials(h, v));
      sent = creds;
      if (bearer && !creds.registry_token.empty()) {
        r.headers.emplace_back("Authorization", "Bearer " + creds.registry_token);
      } else if (bearer) {
        // Known Bearer registry: ask for this repository's token up front
        // (cached), skipping the 401 round trip.
        auto token = fetch_token(h, v, *bearer, scope, creds, count);
        if (!token) {
          if (token.error().kind == ErrorKind::unauthorized) {
            std::lock_guard lock(h.creds_mutex);
            h.creds.reset();  // read them again next time: the user may fix them
          }
          return token.error();
        }
        r.headers.emplace_back("Authorization", "Bearer " + *token);
      } else if (!creds.username.empty()) {
        r.headers.emplace_back("Authorization", "Basic " + base64_encode(creds.username + ":" + creds.password));
      }
    }
    std::swap(r.body, req.body);
    auto res = exchange(h, r, req.method.c_str(), count);
    std::swap(r.body, req.body);
    if (!res) return make_error(res.error().kind, what + ": " + res.error().message);
    if (res->status == 429) {
      std::lock_guard lock(h.mutex);
      return make_error(ErrorKind::rate_limited, what + ": too many requests; paused until " +
                                                     format_rfc3339(from_unix_ms(h.status.paused_until)));
    }
    if (res->status != 401 || !to_registry) return res;

    // The token we sent (if any) is no good: never reuse it.
    if (bearer) forget_tokens(h.name + "|" + bearer->realm + "|" + bearer->service + "|" + scope + "|");
    if (attempt == 1) break;

    auto challenges = oci::parse_challenges(res->header_values("www-authenticate"));
    const oci::Challenge* bc = oci::find_challenge(challenges, "bearer");
    const oci::Challenge* basic_c = oci::find_challenge(challenges, "basic");
    if (bc) {
      std::string want = bc->scope();
      bool ours = false;
      for (const auto& s : oci::split_scopes(want)) {
        auto parsed = oci::parse_scope(s);
        ours = ours || (parsed && parsed->name == repository);
      }
      // A challenge scope for another repository (or none) still needs ours.
      if (!ours) want = oci::repository_scope(repository);
      std::lock_guard lock(h.mutex);
      h.bearer = Bearer{bc->realm(), bc->service()};
      if (!own_scope) h.scopes[repository] = want;
      challenged_with = "Bearer";
    } else if (basic_c) {
      BW_TRY(Credentials creds, credentials(h, v));
      if (creds.username.empty()) {
        return make_error(ErrorKind::unauthorized, what + ": the registry requires credentials (set registries." +
                                                       h.name + ".username and password_file, or docker_config)");
      }
      std::lock_guard lock(h.mutex);
      h.basic = true;
      challenged_with = "Basic";
    } else {
      return make_error(ErrorKind::unauthorized, what + ": unauthorized, and no usable WWW-Authenticate challenge");
    }
  }
  // A second 401 right after fresh credentials is a real refusal. Read the
  // credentials again next time: the user may have fixed them.
  std::string who;
  {
    const Credentials c = sent.value_or(Credentials{});
    if (!c.registry_token.empty()) who = "registry token";
    else if (!c.identity_token.empty()) who = "identity token";
    else if (!c.username.empty()) who = "user \"" + c.username + "\"";
    std::lock_guard lock(h.creds_mutex);
    h.creds.reset();
  }
  if (who.empty()) {
    return make_error(ErrorKind::unauthorized, what + ": anonymous access refused (" + challenged_with +
                                                   "); set registries." + h.name +
                                                   ".username and password_file, or docker_config");
  }
  return make_error(ErrorKind::unauthorized, what + ": credentials refused (" + challenged_with + ", " + who + ")");
}

Result<std::pair<std::string, std::string>> Client::fetch_manifest(Host& h, const View& v, const oci::Reference& ref,
                                                                   const std::string& tag_or_digest, int& count) {
  net::Request req;
  req.method = "GET";
  req.url = base_url(*v.settings) + "/v2/" + ref.repository + "/manifests/" + tag_or_digest;
  req.headers.emplace_back("Accept", oci::k_accept_header);
  auto res = request(h, v, pull_access(ref.repository), ref.str(), req, count);
  if (!res) return res.error();
  if (res->status != 200) {
    auto errors = oci::parse_error_body(res->body);
    std::string detail = errors.empty() ? status_message(res->status) : oci::describe_errors(errors);
    if (detail.size() > 300) detail = detail.substr(0, 300) + "...";
    return make_error(res->status >= 200 && res->status < 400 ? ErrorKind::bad_answer : oci::classify_status(res->status),
                      ref.name() + "@" + tag_or_digest + ": " + detail);
  }
  if (res->body.size() > k_max_manifest_bytes) return make_error(ErrorKind::bad_answer, ref.str() + ": manifest too large");
  std::string media_type = media_type_of(*res);
  if (tag_or_digest.rfind("sha256:", 0) == 0 && sha256_digest(res->body) != tag_or_digest) {
    return make_error(ErrorKind::bad_answer, ref.name() + "@" + tag_or_digest + ": manifest content does not match its digest");
  }
  if (vague_media_type(media_type)) {
    // Some registries omit it; the body's mediaType says.
    auto j = json::parse(res->body, nullptr, false);
    if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) media_type = j["mediaType"].get<std::string>();
    else if (j.is_object() && j.contains("manifests")) media_type = "application/vnd.oci.image.index.v1+json";
  }
  return std::make_pair(std::move(res->body), media_type);
}

Result<std::pair<std::string, std::string>> Client::get_manifest(const oci::Reference& ref, const std::string& tag_or_digest) {
  int count = 0;
  Host& h = host(ref.registry);
  return fetch_manifest(h, view(h), ref, tag_or_digest, count);
}

std::string Client::api_base(const std::string& registry) {
  Host& h = host(registry);
  return base_url(*view(h).settings);
}

Result<net::Response> Client::send(const std::string& registry, const Access& access, net::Request req,
                                   const std::string& what) {
  Host& h = host(registry);
  const View v = view(h);
  if (!req.url.empty() && req.url[0] == '/') req.url = base_url(*v.settings) + req.url;
  int count = 0;
  // The request moves on (an upload chunk is megabytes); a redirect needs
  // it again, and only bodiless GETs follow them.
  net::Request again;
  if (access.follow_redirects) again = req;
  auto res = request(h, v, access, what, std::move(req), count);
  if (access.follow_redirects) req = std::move(again);
  for (int hop = 0; res && access.follow_redirects && hop < 3; ++hop) {
    int st = res->status;
    if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308) break;
    std::string location = res->header("location");
    if (location.empty()) break;
    // A redirect (a CDN, a bucket): the new URL without our credentials.
    if (location[0] == '/') {
      auto u = net::parse_url(req.url);
      if (!u) break;
      location = u->origin() + location;
    }
    net::Request next = req;
    next.url = location;
    next.headers.erase(std::remove_if(next.headers.begin(), next.headers.end(),
                                      [](const auto& kv) { return to_lower(kv.first) == "authorization"; }),
                       next.headers.end());
    req = next;
    res = exchange(h, next, next.method.c_str(), count);
    if (!res) return make_error(res.error().kind, what + ": " + res.error().message);
  }
  return res;
}

Result<Resolved> Client::resolve(const oci::Reference& ref, const std::vector<oci::Platform>& platforms, const Known* known) {
  Host& h = host(ref.registry);
  const View v = view(h);  // one set of settings for the whole resolve
  Resolved out;
  std::string what = ref.tag.empty() ? ref.digest : ref.tag;
  net::Request req;
  req.method = "HEAD";
  req.url = base_url(*v.settings) + "/v2/" + ref.repository + "/manifests/" + what;
  req.headers.emplace_back("Accept", oci::k_accept_header);
  auto record_error = [&](const Error& e) {
    std::lock_guard lock(h.mutex);
    h.status.last_error = e.message;
    h.status.last_error_kind = to_string(e.kind);
    h.status.last_error_at = to_unix_ms(m_clock.now());
    return e;
  };
  auto res = request(h, v, pull_access(ref.repository), ref.str(), req, out.requests);
  if (!res) return record_error(res.error());
  if (res->status != 200) {
    // A HEAD has no body: classify by status alone. Never a GET instead.
    ErrorKind kind = res->status >= 200 && res->status < 400 ? ErrorKind::bad_answer : oci::classify_status(res->status);
    return record_error(make_error(kind, ref.str() + ": " + status_message(res->status)));
  }
  out.digest = res->header("docker-content-digest");
  out.media_type = media_type_of(*res);
  std::string body;
  if (out.digest.empty()) {
    // Never turn a HEAD into a counted pull on Docker Hub.
    if (ref.registry == "docker.io") {
      return record_error(make_error(ErrorKind::bad_answer, ref.str() + ": no Docker-Content-Digest in the HEAD answer"));
    }
    auto got = fetch_manifest(h, v, ref, what, out.requests);
    if (!got) return record_error(got.error());
    body = got->first;
    out.media_type = got->second;
    out.digest = sha256_digest(body);
  } else if (!oci::is_valid_digest(out.digest)) {
    return record_error(make_error(ErrorKind::bad_answer, ref.str() + ": invalid Docker-Content-Digest \"" + out.digest + "\""));
  }
  auto known_complete = [&] {
    if (!known || known->digest != out.digest) return false;
    for (const auto& p : platforms) {
      if (!known->platforms.count(p.str())) return false;
    }
    return true;
  };
  if (vague_media_type(out.media_type) && body.empty()) {
    if (known_complete()) {
      for (const auto& p : platforms) out.platforms[p.str()] = known->platforms.at(p.str());
      return out;
    }
    // The digest moved and the HEAD does not say what it is: read it once.
    auto got = fetch_manifest(h, v, ref, out.digest, out.requests);
    if (!got) return record_error(got.error());
    body = got->first;
    out.media_type = got->second;
  }
  out.index = oci::is_index_media_type(out.media_type);
  if (!out.index) {
    // A single-platform image's digest is its own, for every wanted platform.
    for (const auto& p : platforms) out.platforms[p.str()] = out.digest;
    return out;
  }
  // Nothing asked of the index, or nothing new in it: no GET.
  if (platforms.empty()) return out;
  if (known_complete()) {
    for (const auto& p : platforms) out.platforms[p.str()] = known->platforms.at(p.str());
    return out;
  }
  // The tag moved (or a platform is new to us): read the index once.
  if (body.empty()) {
    auto got = fetch_manifest(h, v, ref, out.digest, out.requests);
    if (!got) return record_error(got.error());
    body = got->first;
  }
  std::map<std::string, std::string> nested_bodies;  // digest -> body, each nested index read once
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
      auto cached = nested_bodies.find(entry->digest);
      if (cached == nested_bodies.end()) {
        auto nested = fetch_manifest(h, v, ref, entry->digest, out.requests);
        if (!nested) return record_error(nested.error());
        cached = nested_bodies.emplace(entry->digest, nested->first).first;
      }
      current = cached->second;
    }
  }
  return out;
}

}  // namespace bw::registry
