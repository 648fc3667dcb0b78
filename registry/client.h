// The OCI distribution client: resolves a tag to its digest with HEAD, reads
// per-platform digests from an index with one GET when the tag moved, and
// handles auth (anonymous and credential-backed Bearer tokens, OAuth2 refresh
// tokens, registry tokens, Basic; credentials from the config or a docker
// config.json with its credential helpers), per-registry budgets, rate-limit
// answers and a breaker for failing registries.
//
// Every request is counted in basewatch_registry_requests_total{registry,
// method=HEAD|GET|TOKEN, outcome}. Secrets never reach errors or status.
//
// Economy (docs/registry-protocol.md): HEAD only while a digest is
// unchanged; GET only to read a changed index or when a registry omits
// Docker-Content-Digest, never on docker.io after a failed HEAD or a 429.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/http.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "registry/credentials.h"
#include "util/result.h"
#include "util/time.h"

namespace bw::registry {

struct RegistrySettings {
  std::string host;  // as in references: "docker.io", "127.0.0.1:5000"
  bool insecure = false;
  std::string ca_file;
  std::string username;
  std::string password;
  std::string docker_config;    // path of a docker config.json, used when username is empty
  int requests_per_minute = 0;  // 0: none
  int concurrency = 0;          // 0: none beyond the caller's
  Millis timeout{15'000};       // per request
};

// What a resolve found. `platforms` maps each wanted platform (its
// normalised text, e.g. "linux/arm64") to its manifest digest; a platform the
// image does not have is absent.
struct Resolved {
  std::string digest;
  std::string media_type;
  std::map<std::string, std::string> platforms;
  bool index = false;
  int requests = 0;  // HTTP requests this resolve made (HEAD, GET, token)
};

// What the caller already knows of the reference, to skip the GET of an
// index whose digest did not move.
struct Known {
  std::string digest;
  std::map<std::string, std::string> platforms;
};

// Per-registry state shown in /v1/status.
struct RegistryStatus {
  std::string host;
  int64_t requests = 0;
  std::optional<int64_t> ratelimit_limit;
  std::optional<int64_t> ratelimit_remaining;
  std::optional<int64_t> ratelimit_window_seconds;
  int64_t paused_until = 0;     // unix ms; Retry-After, or backoff after failures in a row
  int64_t next_request_at = 0;  // unix ms; the later of paused_until and the requests_per_minute slot
  int consecutive_failures = 0; // 5xx, timeouts, network errors in a row
  std::string last_error;
  std::string last_error_kind;  // to_string(ErrorKind)
  int64_t last_error_at = 0;
};

// A host's budget as one instance leaves it for the next (the leader of
// several on one database records it, the one taking over starts from it):
// the pause a registry asked for (Retry-After) or the breaker set, the
// requests_per_minute slot, and the figures /v1/status shows.
struct HostBudget {
  RegistryStatus status;  // next_request_at is derived, not read back
  ErrorKind pause_kind = ErrorKind::rate_limited;
  std::string pause_reason;
  int64_t next_slot = 0;  // unix ms of the next requests_per_minute slot; 0: none
};
// As JSON text, and back (what it cannot read, host by host, is left out:
// the text comes from the database, written by any version).
std::string encode_budgets(const std::vector<HostBudget>& budgets);
std::vector<HostBudget> decode_budgets(std::string_view text);

class Client {
 public:
  Client(net::HttpClient& http, const ClockSource& clock, std::vector<RegistrySettings> settings);
  ~Client();

  // Resolves `ref` (its tag, or its digest when there is no tag) for the
  // wanted platforms. Thread-safe; blocks for the registry's concurrency
  // slot and per-minute budget.
  Result<Resolved> resolve(const oci::Reference& ref, const std::vector<oci::Platform>& platforms,
                           const Known* known = nullptr);

  // Fetches a manifest by digest or tag with GET (counts as a pull on Docker
  // Hub). Returns the body and its media type.
  Result<std::pair<std::string, std::string>> get_manifest(const oci::Reference& ref, const std::string& tag_or_digest);

  // What one request may do, which decides the token scope it is sent with.
  struct Access {
    std::string repository;               // the repository the request is about
    bool push = false;                    // pull,push on it instead of pull
    std::vector<std::string> mount_from;  // repositories of the same registry a mount reads (pull on each)
    // Follow redirects (a blob GET that the registry sends to a CDN or a
    // bucket): up to 3, to the new URL without the registry's credentials.
    bool follow_redirects = false;
  };
  // One exchange with `registry`, with everything resolve's requests get:
  // authentication (the scope from `access`: repository:<r>:pull[,push] plus
  // repository:<m>:pull per mount source, in one token), the concurrency
  // slot and per-minute budget, 429 pauses, the failure breaker, metrics.
  // `req.url` is a path ("/v2/...") on the registry's API host, or an
  // absolute URL the registry gave (an upload Location); credentials go only
  // to the registry's own origin. Any HTTP answer is a Response; `what`
  // names the request in errors ("docker.io/library/alpine@sha256:...").
  Result<net::Response> send(const std::string& registry, const Access& access, net::Request req,
                             const std::string& what);
  // "https://host[:port]" (http:// when insecure) of a registry's API.
  std::string api_base(const std::string& registry);

  // Replaces the registry settings while other threads resolve (what a
  // SIGHUP reload does). Returns the hosts whose settings changed, sorted;
  // a host absent from `settings` falls back to the defaults (anonymous, TLS
  // with the system CAs, no limits), like any unconfigured host.
  //  - Credentials changed (username, password, docker_config): the host's
  //    cached credentials and bearer tokens are dropped, so the next request
  //    authenticates with the new ones; a request already in flight finishes
  //    with what it started with.
  //  - TLS changed (insecure, ca_file): the same; also the Bearer/Basic
  //    challenge learned from the registry is forgotten and a pause of the
  //    failure breaker lifted (a fixed CA is tried at once; a Retry-After
  //    pause stays). net::HttplibClient pools
  //    connections per origin, scheme and CA file path, so the next request
  //    opens a connection with the new settings (idle ones of the old
  //    settings are no longer used). A CA bundle replaced under the same
  //    path is not reliably applied: a pooled connection keeps the CA it
  //    loaded when made (docs/configuration.md, "Reloading").
  //  - requests_per_minute and concurrency apply to the next request; the
  //    requests_per_minute slot is recomputed, threads waiting for a
  //    concurrency slot see the new limit.
  //  - Hosts using docker_config read it (and its helpers) again at the next
  //    challenge even when the settings are the same: the file may have
  //    changed. Tokens are cached per credentials, so unchanged credentials
  //    keep their tokens.
  // Everything else (status counters, rate-limit figures, Retry-After
  // pauses, tokens of unchanged hosts) is kept. Thread-safe.
  std::vector<std::string> update_settings(std::vector<RegistrySettings> settings);

  // The moment a request to `host` may go out again (Retry-After / budget).
  TimePoint available_at(const std::string& host);
  std::vector<RegistryStatus> status() const;
  // Every host's budget, by host.
  std::vector<HostBudget> budgets() const;
  // Takes over another instance's budgets: their figures (requests, rate
  // limits, errors) as they are; their pauses and requests_per_minute slot
  // where they end later than this client's own (a pause is never cut
  // short). Hosts not named keep theirs. Thread-safe.
  void restore_budgets(const std::vector<HostBudget>& budgets);
  // Token requests made so far (for tests that prove caching).
  int64_t token_requests() const;

  // Seams for tests: how credential helpers run, and how the client waits
  // for a requests_per_minute slot (default: this thread sleeps).
  void set_helper_runner(HelperRunner run);
  void set_sleeper(std::function<void(Millis)> sleep);

 private:
  struct Host;
  struct TokenCache;
  struct Bearer {
    std::string realm, service;
  };
  // The settings one resolve works with, taken once at its start:
  // update_settings swaps a host's settings, never changes them in place.
  struct View {
    std::shared_ptr<const RegistrySettings> settings;
    uint64_t generation = 0;  // of the host's credentials (Host::generation)
  };
  Host& host(const std::string& name);
  View view(Host& h);
  Result<net::Response> request(Host& h, const View& v, const Access& access, const std::string& what, net::Request req,
                                int& count);
  // One HTTP exchange with its bookkeeping: counts, metrics, rate-limit
  // headers, 429 pauses, the failure breaker.
  Result<net::Response> exchange(Host& h, const net::Request& req, const char* method, int& count);
  Result<std::string> fetch_token(Host& h, const View& v, const Bearer& bearer, const std::string& scope,
                                  const Credentials& creds, int& count);
  void pause_for_429(Host& h, const net::Response& res);
  Result<Credentials> credentials(Host& h, const View& v);
  Result<std::pair<std::string, std::string>> fetch_manifest(Host& h, const View& v, const oci::Reference& ref,
                                                             const std::string& tag_or_digest, int& count);
  void note_failure(Host& h, const Error& e);
  void note_success(Host& h);
  void forget_tokens(const std::string& key_prefix);

  net::HttpClient& m_http;
  const ClockSource& m_clock;
  mutable std::mutex m_mutex;  // m_hosts and m_settings; taken before a Host's mutex, never after
  std::map<std::string, std::unique_ptr<Host>> m_hosts;
  std::map<std::string, std::shared_ptr<const RegistrySettings>> m_settings;  // as configured, by host
  std::unique_ptr<TokenCache> m_tokens;
  std::atomic<int64_t> m_token_requests{0};
  HelperRunner m_helper_runner;
  std::function<void(Millis)> m_sleep;
};

}  // namespace bw::registry
