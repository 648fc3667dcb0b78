#include "api/server.h"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <iterator>
#include <mutex>
#include <set>
#include <variant>

#include "api/dashboard.h"
#include "api/graph_svg.h"
#include "api/inbound.h"
#include "api/policy.h"
#include "api/views.h"
#include "util/crypto.h"
#include "util/metrics.h"
#include "util/strings.h"

namespace bw::api {

using json = nlohmann::json;

namespace {

// The largest body any route reads; an inbound hook may set a smaller one.
constexpr size_t k_max_body = 1 << 20;
constexpr size_t k_workers = 32;
constexpr const char* k_inbound_metric = "basewatch_inbound_notifications_total";
constexpr const char* k_inbound_help = "Inbound registry notifications by format and outcome.";
// A registry may announce a push before the tag points at it (the CNCF
// registry notifies from inside the manifest PUT, before it links the tag).
// A notice naming a digest the HEAD did not find is checked again after
// these delays; a forged one costs these few HEADs and fires nothing.
constexpr std::chrono::milliseconds k_followup_delays[] = {
    std::chrono::milliseconds(25), std::chrono::milliseconds(50), std::chrono::milliseconds(100),
    std::chrono::milliseconds(200), std::chrono::milliseconds(400), std::chrono::milliseconds(800)};

}  // namespace

Result<std::pair<std::string, int>> parse_listen(const std::string& listen) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorKind::invalid, "listen \"" + listen + "\": " + why + " (expected host:port, e.g. 127.0.0.1:8780)");
  };
  std::string host;
  std::string port;
  if (!listen.empty() && listen[0] == '[') {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') return bad("bad IPv6 form");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) return bad("missing port");
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  if (host.empty()) return bad("missing host");
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) return bad("invalid port");
  return std::make_pair(host, static_cast<int>(p));
}

struct Server::Impl {
  // What /v1/status shows about one inbound hook.
  struct HookStats {
    int64_t received = 0;
    int64_t accepted = 0;
    int64_t rejected = 0;  // unauthorized, invalid, too large
    int64_t last_at = 0;
    std::string last_outcome;
  };

  Deps deps;
  std::mutex cfg_mutex;
  std::shared_ptr<const config::Config> cfg;  // shared with the watcher, not copied
  httplib::Server http;
  inbound::Deduper deduper;
  std::mutex stats_mutex;
  std::map<std::string, HookStats> hook_stats;  // by hook name
  const std::atomic<bool>* ready = nullptr;

  // Notices whose digest the registry has not shown yet, checked again.
  struct Followup {
    std::string ref, digest;
    size_t attempt = 0;
    std::chrono::steady_clock::time_point due;
  };
  std::mutex followup_mutex;
  std::condition_variable followup_cv;
  std::vector<Followup> followups;
  bool followup_stop = false;
  std::thread followup_thread;

  void follow_up(const std::string& ref, const std::string& digest) {
    std::lock_guard lock(followup_mutex);
    followups.push_back({ref, digest, 0, std::chrono::steady_clock::now() + k_followup_delays[0]});
    followup_cv.notify_all();
  }
  // True when the stored state of `ref` shows `digest` (the tag's or a platform's).
  bool shows(const std::string& ref, const std::string& digest) {
    auto r = deps.store->get_ref(ref);
    if (!r || !*r) return false;
    if ((*r)->digest == digest) return true;
    for (const auto& [platform, d] : (*r)->platforms) {
      if (d == digest) return true;
    }
    return false;
  }
  void run_followups();

  // A check now, for whichever instance leads (this one's own loops when
  // it is alone).
  Status ask_check(const std::string& ref, const std::string& source) {
    if (!deps.leadership) {
      deps.watcher->request_check(ref, source);
      return ok_status();
    }
    return deps.leadership->ask(db::Ask{"check", ref, source});
  }
  // Deliveries were queued again: the leader's dispatcher looks now (it
  // also looks every second by itself, so a nudge that fails loses nothing).
  void nudge_outbox() {
    if (!deps.leadership) return;
    if (auto st = deps.leadership->nudge("outbox"); !st) spdlog::debug("api: nudging the leader: {}", st.error().message);
  }

  std::string token() {
    std::lock_guard lock(cfg_mutex);
    return cfg->api_token;
  }
  // The dependency graph to draw: the model with the stored state and the
  // path of the latest change that fired, from its root.
  Picture graph_picture(const watcher::Model& model, const std::vector<db::Delivery>& recent) {
    std::vector<db::Event> chain;
    if (auto events = deps.store->list_events(100); events && model.graph) chain = latest_chain(*events, *model.graph);
    auto rows = [this](const std::vector<std::string>& refs) {
      auto got = deps.store->get_refs(refs);
      return got ? std::move(*got) : std::vector<db::RefState>{};
    };
    std::vector<db::MirrorState> mirrors;
    if (auto list = deps.store->list_mirrors()) mirrors = std::move(*list);
    return api::graph_picture(model, rows, mirrors, recent, chain);
  }

  // The running config (a reload swaps it).
  std::shared_ptr<const config::Config> config() {
    std::lock_guard lock(cfg_mutex);
    return cfg;
  }
  std::optional<config::InboundConfig> hook(const std::string& path) {
    std::lock_guard lock(cfg_mutex);
    for (const auto& h : cfg->inbound) {
      if (h.path == path) return h;
    }
    return std::nullopt;
  }
  std::vector<config::InboundConfig> hooks() {
    std::lock_guard lock(cfg_mutex);
    return cfg->inbound;
  }

  void count(const config::InboundConfig& h, const std::string& outcome) {
    Metrics::global().counter_add(k_inbound_metric, k_inbound_help, {{"format", h.format}, {"outcome", outcome}});
    std::lock_guard lock(stats_mutex);
    auto& s = hook_stats[h.name];
    ++s.received;
    if (outcome == "accepted") ++s.accepted;
    if (outcome == "unauthorized" || outcome == "invalid" || outcome == "too_large") ++s.rejected;
    s.last_at = to_unix_ms(deps.clock->now());
    s.last_outcome = outcome;
  }

  TimePoint last_checked(const std::string& ref) {
    auto r = deps.store->get_ref(ref);
    return r && *r ? from_unix_ms((*r)->last_checked) : TimePoint{};
  }

  // The watcher's next due time, reused for up to a second: it walks every
  // reference, and status pages are polled far more often than that matters.
  std::mutex next_poll_mutex;
  TimePoint next_poll_at{}, next_poll_value{};
  TimePoint next_poll(TimePoint now) {
    std::lock_guard lock(next_poll_mutex);
    if (now < next_poll_at || now - next_poll_at >= std::chrono::seconds(1) || next_poll_value <= now) {
      next_poll_value = deps.watcher->next_due(now);
      next_poll_at = now;
    }
    return next_poll_value;
  }

  json status_json();
  PolicyCache policy;
  void handle_inbound(const config::InboundConfig& h, const httplib::Request& req, httplib::Response& res);
  std::string render_metrics();
};

namespace {

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  // Echoed input (a query value) may not be UTF-8: replaced, never a throw.
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& error, const json& detail = nullptr) {
  send_json(res, status, json{{"error", error}, {"detail", detail}});
}

int status_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::not_found: return 404;
    case ErrorKind::invalid: return 400;
    default: return 500;
  }
}

json stamp(int64_t ms) { return ms > 0 ? json(format_rfc3339(from_unix_ms(ms))) : json(nullptr); }

std::vector<std::string> page_keys(const ImagesPage& page) {
  std::vector<std::string> keys;
  keys.reserve(page.items.size());
  for (const ImageItem* item : page.items) keys.push_back(item->first);
  return keys;
}

}  // namespace

json Server::Impl::status_json() {
  auto now = deps.clock->now();
  auto model = deps.watcher->model();
  json j;
  j["version"] = BASEWATCH_VERSION;
  j["started_at"] = format_rfc3339(deps.started_at);
  j["uptime_seconds"] = std::chrono::duration_cast<std::chrono::seconds>(now - deps.started_at).count();
  j["ready"] = ready && ready->load();
  j["counts"] = {{"references", model->items.size()}, {"projects", model->projects.size()},
                 {"pending", 0}, {"failed", 0}, {"dead", 0}, {"delivered", 0}};
  if (auto counts = deps.store->delivery_counts()) {
    for (const auto& [state, n] : *counts) j["counts"][state] = n;
  }
  // Mirrors: how many references are copied, and how many are not in step.
  {
    json mirrors = mirrors_json(*deps.store, *model);
    int64_t out_of_sync = 0;
    for (const auto& m : mirrors) out_of_sync += m["state"] != "in-sync";
    j["counts"]["mirrors"] = mirrors.size();
    j["counts"]["mirrors_out_of_sync"] = out_of_sync;
  }
  auto last = deps.watcher->last_poll();
  j["last_poll"] = to_unix_ms(last) > 0 ? json(format_rfc3339(last)) : json(nullptr);
  j["next_poll"] = format_rfc3339(next_poll(now));
  j["registries"] = registry_status_json(deps.registry->status());
  // Lint warnings of Dockerfiles that still build are listed with the
  // errors, each saying "warning:" after its place.
  j["errors"] = model->errors;
  for (const auto& w : model->warnings) j["errors"].push_back(w);
  // A pinned base whose tag has moved on: the build stays on the pin, so it is
  // reported here rather than rebuilt.
  json stale = json::array();
  for (const auto& p : model->projects) {
    for (const auto& b : p.bases) {
      if (b.pinned.empty()) continue;
      auto state = deps.store->get_ref(b.ref);
      if (!state || !*state || (*state)->digest.empty() || (*state)->digest == b.pinned) continue;
      bool is_platform = false;
      for (const auto& [platform, digest] : (*state)->platforms) is_platform = is_platform || digest == b.pinned;
      if (is_platform) continue;
      stale.push_back({{"project", p.name}, {"ref", b.ref}, {"line", b.line}, {"pinned", b.pinned},
                       {"current", (*state)->digest}});
    }
  }
  j["stale_pins"] = stale;
  {
    std::shared_ptr<const config::Config> current;
    {
      std::lock_guard cfg_lock(cfg_mutex);
      current = cfg;
    }
    j["policy"] = policy.status_json(*current, model, *deps.store);
  }
  json hooks = json::array();
  {
    // Held for the counters only: it was held to the end of the page, over
    // the cluster view's round trips, and on PostgreSQL sixteen clients of
    // /v1/status queued on it (41 pages/s, p99 1.4 s during a cycle).
    std::lock_guard lock(stats_mutex);
    for (const auto& h : this->hooks()) {
      HookStats s;
      if (auto it = hook_stats.find(h.name); it != hook_stats.end()) s = it->second;
      hooks.push_back({{"name", h.name}, {"path", h.path}, {"format", h.format}, {"received", s.received},
                       {"accepted", s.accepted}, {"rejected", s.rejected}, {"last_received_at", stamp(s.last_at)},
                       {"last_outcome", s.last_outcome.empty() ? json(nullptr) : json(s.last_outcome)}});
    }
  }
  j["inbound"] = hooks;
  if (deps.leadership) j["cluster"] = cluster_json(deps.leadership->view());
  return j;
}

// Authenticate, parse, keep the watched tags seen for the first time, and
// ask the watcher to look at them now. The answer names what happened to
// each tag so a sender's delivery log explains itself.
void Server::Impl::handle_inbound(const config::InboundConfig& h, const httplib::Request& req, httplib::Response& res) {
  if (req.body.size() > h.max_body) {
    count(h, "too_large");
    return send_error(res, 413, "payload too large", "the limit is " + std::to_string(h.max_body) + " bytes");
  }
  inbound::Credentials creds;
  creds.authorization = req.get_header_value("Authorization");
  creds.token = req.get_param_value("token");
  creds.hub_signature = req.get_header_value("X-Hub-Signature-256");
  creds.bw_signature = req.get_header_value("X-Basewatch-Signature-256");
  if (auto st = inbound::authenticate(h.format, h.secret, creds, req.body); !st) {
    count(h, "unauthorized");
    spdlog::warn("inbound {}: refused a notification from {}: {}", h.name, req.remote_addr, st.error().message);
    return send_error(res, 401, "unauthorized", st.error().message);
  }
  auto parsed = inbound::parse(h.format, req.body);
  if (!parsed) {
    count(h, "invalid");
    spdlog::warn("inbound {}: unreadable notification: {}", h.name, parsed.error().message);
    return send_error(res, 400, "invalid notification", parsed.error().message);
  }
  auto model = deps.watcher->model();
  auto now = deps.clock->now();
  json checks = json::array(), duplicates = json::array(), unwatched = json::array();
  std::set<std::string> requested;
  for (const auto& n : parsed->notices) {
    if (!model->items.count(n.ref)) {
      unwatched.push_back(n.ref);
    } else if (!deduper.first_sight(n, now, n.digest.empty() ? last_checked(n.ref) : TimePoint{})) {
      duplicates.push_back(n.ref);
    } else {
      if (requested.insert(n.ref).second) {
        if (auto st = ask_check(n.ref, "webhook"); !st) {
          // The leader cannot be asked (its database is down): the sender
          // should send again, and this notice must not count as seen.
          deduper.forget(n);
          count(h, "unavailable");
          spdlog::warn("inbound {}: cannot ask the leader to check {}: {}", h.name, n.ref, st.error().message);
          return send_error(res, 500, "database", st.error().message);
        }
        checks.push_back(n.ref);
      }
      if (!n.digest.empty() && !shows(n.ref, n.digest)) follow_up(n.ref, n.digest);
    }
  }
  std::string outcome = !requested.empty() ? "accepted" : !duplicates.empty() ? "duplicate" : "ignored";
  count(h, outcome);
  if (!requested.empty()) spdlog::info("inbound {}: checking {} now", h.name, join(checks.get<std::vector<std::string>>(), ", "));
  else spdlog::debug("inbound {}: {} ({} notices, {} ignored)", h.name, outcome, parsed->notices.size(), parsed->ignored);
  send_json(res, 202, {{"outcome", outcome}, {"checks", checks}, {"duplicates", duplicates},
                       {"unwatched", unwatched}, {"ignored", parsed->ignored}});
}

void Server::Impl::run_followups() {
  std::unique_lock lock(followup_mutex);
  while (!followup_stop) {
    auto now = std::chrono::steady_clock::now();
    auto next = now + std::chrono::hours(1);
    std::vector<Followup> due;
    for (auto it = followups.begin(); it != followups.end();) {
      if (it->due <= now) {
        due.push_back(*it);
        it = followups.erase(it);
      } else {
        next = std::min(next, it->due);
        ++it;
      }
    }
    if (due.empty()) {
      followup_cv.wait_until(lock, next);
      continue;
    }
    lock.unlock();
    std::vector<Followup> again;
    for (auto& f : due) {
      if (shows(f.ref, f.digest)) continue;
      spdlog::debug("inbound: {} does not show {} yet, checking again", f.ref, f.digest);
      if (auto st = ask_check(f.ref, "webhook"); !st) spdlog::warn("inbound: asking for a check of {} again: {}", f.ref, st.error().message);
      if (++f.attempt < std::size(k_followup_delays)) {
        f.due = std::chrono::steady_clock::now() + k_followup_delays[f.attempt];
        again.push_back(f);
      }
    }
    lock.lock();
    followups.insert(followups.end(), again.begin(), again.end());
  }
}

// The process-wide metrics plus the gauges that are read at scrape time.
std::string Server::Impl::render_metrics() {
  auto& m = Metrics::global();
  auto model = deps.watcher->model();
  m.gauge_set("basewatch_build_info", "Build information.", {{"version", BASEWATCH_VERSION}}, 1);
  m.gauge_set("basewatch_references_watched", "References being watched (each repo:tag once).", {},
              static_cast<double>(model->items.size()));
  m.gauge_set("basewatch_projects", "Projects configured.", {}, static_cast<double>(model->projects.size()));
  if (auto counts = deps.store->delivery_counts()) {
    for (const char* state : {"pending", "delivered", "failed", "dead"}) {
      auto it = counts->find(state);
      m.gauge_set("basewatch_deliveries", "Deliveries in the outbox by state.", {{"state", state}},
                  it == counts->end() ? 0.0 : static_cast<double>(it->second));
    }
  }
  {
    auto status = status_json();
    const auto& counts = status["policy"]["counts"];
    bool require_mirror = status["policy"]["require_mirror"].get<bool>();
    for (const char* s : {"bypass", "forbidden"}) {
      double n = counts.contains(s) ? counts[s].get<double>() : 0.0;
      if (std::string(s) == "bypass" && !require_mirror) n = 0;
      m.gauge_set("basewatch_policy_violations", "References that break policy: (bypass under require_mirror, forbidden).",
                  {{"status", s}}, n);
    }
  }
  {
    json mirrors = mirrors_json(*deps.store, *model);
    double out_of_sync = 0;
    for (const auto& mm : mirrors) out_of_sync += mm["state"] != "in-sync";
    m.gauge_set("basewatch_mirrors_out_of_sync", "Mirrored references whose copy is not in step with the upstream.", {}, out_of_sync);
  }
  if (deps.leadership && deps.leadership->shared()) {
    // With several instances only: 1 on the one that leads.
    m.gauge_set("basewatch_leader", "1 when this instance is the cluster's leader (PostgreSQL), else 0.", {},
                deps.leadership->acting() ? 1.0 : 0.0);
  }
  for (const auto& r : deps.registry->status()) {
    if (r.ratelimit_remaining) {
      m.gauge_set("basewatch_registry_ratelimit_remaining", "Requests left in the registry's rate-limit window, where it reports one.",
                  {{"registry", r.host}}, static_cast<double>(*r.ratelimit_remaining));
    }
  }
  return m.render();
}

Server::Server(Deps deps, std::shared_ptr<const config::Config> cfg) : m_impl(std::make_unique<Impl>()) {
  m_impl->deps = std::move(deps);
  m_impl->cfg = std::move(cfg);
  m_impl->ready = &m_ready;
}

Server::~Server() { stop(); }

void Server::reload(std::shared_ptr<const config::Config> cfg) {
  std::lock_guard lock(m_impl->cfg_mutex);
  m_impl->cfg = std::move(cfg);
}

void Server::stop() {
  {
    std::lock_guard lock(m_impl->followup_mutex);
    m_impl->followup_stop = true;
    m_impl->followup_cv.notify_all();
  }
  if (m_impl->followup_thread.joinable()) m_impl->followup_thread.join();
  if (m_thread.joinable()) {
    m_impl->http.stop();
    m_thread.join();
  }
}

Status Server::start() {
  Impl& s = *m_impl;
  auto& http = s.http;
  http.set_payload_max_length(k_max_body);
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);
  // Headers and body go out in separate writes: without this, Nagle's
  // algorithm meets the client's delayed ACK and every keep-alive answer
  // waits tens of milliseconds.
  http.set_tcp_nodelay(true);
  // A keep-alive connection holds a worker while it lasts: enough workers
  // that dashboards, scrapers and status scripts do not queue behind each other.
  http.new_task_queue = [] { return new httplib::ThreadPool(k_workers); };
  http.set_keep_alive_max_count(100);

  // /v1/* and / need the bearer token when api.token_file is set. Inbound
  // hooks authenticate with their own secret.
  http.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    // A request with neither Content-Length nor Transfer-Encoding has an
    // empty body (RFC 9112 6.3); `curl -X POST URL` sends one. cpp-httplib
    // 0.11 would wait for the connection to close instead and answer 400
    // after its read timeout: say the length it has. The request object is
    // the server's own (not const); the handler is only handed a const view.
    if ((req.method == "POST" || req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE") &&
        !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
      const_cast<httplib::Request&>(req).headers.emplace("Content-Length", "0");
    }
    bool guarded = req.path.rfind("/v1/", 0) == 0 || req.path == "/";
    if (guarded && req.method == "POST" && s.hook(req.path)) guarded = false;
    std::string token = s.token();
    if (!guarded || token.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string auth = req.get_header_value("Authorization");
    if (starts_with_icase(auth, "Bearer ") && constant_time_equals(std::string(trim(auth.substr(7))), token)) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.set_header("WWW-Authenticate", "Bearer realm=\"basewatch\"");
    if (req.path == "/" && req.method == "GET") {
      // A browser cannot send a bearer header on navigation: the page asks
      // for the token and fetches the dashboard with it.
      res.status = 401;
      res.set_header("Content-Security-Policy", k_dashboard_csp);
      res.set_content(render_login_page(), "text/html; charset=utf-8");
      return httplib::Server::HandlerResponse::Handled;
    }
    send_error(res, 401, "unauthorized", "send Authorization: Bearer <token> (api.token_file)");
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("api {} {} -> {}", req.method, req.path, res.status);
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal error", what);
  });
  http.set_error_handler([&s](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      send_error(res, 404, "not found", req.path);
    } else if (res.status == 413) {
      // cpp-httplib refuses the body before any handler runs.
      if (auto h = s.hook(req.path); h && req.method == "POST") s.count(*h, "too_large");
      send_error(res, 413, "payload too large", "the limit is " + std::to_string(k_max_body) + " bytes");
    } else {
      send_error(res, res.status, "error");
    }
  });

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "ok"}}); });
  http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (m_ready) send_json(res, 200, {{"status", "ready"}});
    else send_error(res, 503, "not ready", "the first scan has not finished");
  });

  http.Get("/v1/status", [&s](const httplib::Request&, httplib::Response& res) { send_json(res, 200, s.status_json()); });

  // The whole list without parameters (as it always was); with them a page
  // or a filter that reads only the rows it answers with.
  http.Get("/v1/images", [&s](const httplib::Request& req, httplib::Response& res) {
    auto parsed = parse_images_query(req.params);
    if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, e->status, e->error, e->detail);
    const auto& q = std::get<ImagesQuery>(parsed);
    auto model = s.deps.watcher->model();
    if (q.ref && !model->items.count(*q.ref)) return send_error(res, 404, "reference not watched", *q.ref);
    if (!q.limit && q.offset == 0 && !q.ref && !q.errors_only) {
      auto refs = s.deps.store->list_refs();
      if (!refs) return send_error(res, 500, "database", refs.error().message);
      res.set_header("X-Total-Count", std::to_string(model->items.size()));
      res.set_content(images_json_text(*refs, *model), "application/json");
      return;
    }
    std::set<std::string> failing;
    if (q.errors_only) {
      auto f = s.deps.store->failing_refs();
      if (!f) return send_error(res, 500, "database", f.error().message);
      failing = std::move(*f);
    }
    auto page = select_images(*model, q, failing);
    auto rows = s.deps.store->get_refs(page_keys(page));
    if (!rows) return send_error(res, 500, "database", rows.error().message);
    res.set_header("X-Total-Count", std::to_string(page.total));
    if (auto link = images_link_header(q, page.total); !link.empty()) res.set_header("Link", link);
    res.set_content(images_json_text(*rows, page.items), "application/json");
  });

  http.Get("/v1/graph", [&s](const httplib::Request& req, httplib::Response& res) {
    auto model = s.deps.watcher->model();
    if (!model->graph) return send_error(res, 500, "no graph");
    if (req.get_param_value("format") == "dot") {
      res.set_content(model->graph->to_dot(), "text/vnd.graphviz");
      return;
    }
    if (req.get_param_value("format") == "svg") {
      std::vector<db::Delivery> recent;
      if (auto list = s.deps.store->list_deliveries(std::nullopt, 500)) recent = std::move(*list);
      auto picture = s.graph_picture(*model, recent);
      res.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
      res.set_content(render_graph_svg(picture, layout_picture(picture), true), "image/svg+xml");
      return;
    }
    res.set_content(model->graph->to_json(), "application/json");
  });

  http.Get("/v1/events", [&s](const httplib::Request& req, httplib::Response& res) {
    int limit = 100;
    if (req.has_param("limit")) limit = std::clamp(std::atoi(req.get_param_value("limit").c_str()), 1, 1000);
    auto events = s.deps.store->list_events(limit);
    if (!events) return send_error(res, 500, "database", events.error().message);
    json out = json::array();
    for (const auto& e : *events) out.push_back(event_json(e));
    send_json(res, 200, out);
  });

  http.Get("/v1/deliveries", [&s](const httplib::Request& req, httplib::Response& res) {
    std::optional<db::DeliveryState> state;
    if (req.has_param("state")) {
      state = db::parse_delivery_state(req.get_param_value("state"));
      if (!state) return send_error(res, 400, "invalid state", "expected pending, delivered, failed or dead");
    }
    auto list = s.deps.store->list_deliveries(state, 500);
    if (!list) return send_error(res, 500, "database", list.error().message);
    json out = json::array();
    for (const auto& d : *list) out.push_back(delivery_with_last_attempt(*s.deps.store, d));
    send_json(res, 200, out);
  });

  http.Get(R"(/v1/deliveries/([A-Za-z0-9_]+))", [&s](const httplib::Request& req, httplib::Response& res) {
    auto d = s.deps.store->get_delivery(req.matches[1]);
    if (!d) return send_error(res, 500, "database", d.error().message);
    if (!*d) return send_error(res, 404, "no such delivery", std::string(req.matches[1]));
    json j = delivery_json(**d, true);
    json attempts = json::array();
    if (auto list = s.deps.store->list_attempts((*d)->id)) {
      for (const auto& a : *list) {
        attempts.push_back({{"at", format_rfc3339(from_unix_ms(a.at))}, {"status", a.status}, {"error", a.error},
                            {"duration_ms", a.duration_ms}, {"output_tail", a.output_tail},
                            {"pushed_digest", a.pushed_digest.empty() ? json(nullptr) : json(a.pushed_digest)}});
      }
    }
    j["attempts"] = attempts;
    send_json(res, 200, j);
  });

  http.Post(R"(/v1/deliveries/([A-Za-z0-9_]+)/retry)", [&s](const httplib::Request& req, httplib::Response& res) {
    auto st = s.deps.store->requeue(req.matches[1], to_unix_ms(s.deps.clock->now()));
    if (!st) return send_error(res, status_for(st.error().kind), st.error().message);
    s.nudge_outbox();
    send_json(res, 202, {{"id", std::string(req.matches[1])}, {"state", "queued"}});
  });

  http.Post("/v1/check", [&s](const httplib::Request& req, httplib::Response& res) {
    std::string ref;
    if (!trim(req.body).empty()) {
      auto body = json::parse(req.body, nullptr, false);
      if (!body.is_object()) return send_error(res, 400, "invalid JSON body", "expected {\"ref\": \"...\"} or an empty body");
      if (body.contains("ref")) {
        if (!body["ref"].is_string()) return send_error(res, 400, "ref must be a string");
        ref = body["ref"].get<std::string>();
      }
    }
    auto model = s.deps.watcher->model();
    if (!ref.empty()) {
      auto parsed = oci::parse_reference(ref);
      if (!parsed) return send_error(res, 400, "invalid reference", parsed.error().message);
      ref = parsed->tag_ref();
      if (!model->items.count(ref)) return send_error(res, 404, "reference not watched", ref);
    }
    if (auto st = s.ask_check(ref, "manual"); !st) return send_error(res, 500, "database", st.error().message);
    send_json(res, 202, {{"ref", ref.empty() ? json(nullptr) : json(ref)}, {"state", "queued"}});
  });

  http.Get("/v1/mirrors", [&s](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, mirrors_json(*s.deps.store, *s.deps.watcher->model()));
  });
  http.Post("/v1/mirrors/sync", [&s](const httplib::Request& req, httplib::Response& res) {
    // A comparison now: the watcher HEADs the upstream and the mirror and
    // queues a copy where they differ.
    auto model = s.deps.watcher->model();
    std::vector<std::string> refs;
    std::string trimmed(trim(req.body));
    if (!trimmed.empty()) {
      auto body = json::parse(trimmed, nullptr, false);
      if (!body.is_object() || !body.contains("ref") || !body["ref"].is_string()) {
        return send_error(res, 400, "invalid body", "expected {\"ref\": \"...\"} or an empty body");
      }
      auto ref = oci::parse_reference(body["ref"].get<std::string>());
      if (!ref) return send_error(res, 400, "invalid ref", ref.error().message);
      // Either side names it: the upstream, or its mirror.
      std::string key = ref->tag_ref();
      for (const auto& [k, item] : model->items) {
        if (!item.mirror.empty() && (k == key || item.mirror == key)) refs.push_back(k);
      }
      if (refs.empty()) return send_error(res, 404, "not mirrored", key);
    } else {
      for (const auto& [k, item] : model->items) {
        if (!item.mirror.empty()) refs.push_back(k);
      }
    }
    // The leader's watcher compares them (on any instance: through the database).
    for (const auto& r : refs) {
      if (auto st = s.ask_check(r, "manual"); !st) return send_error(res, 500, "database", st.error().message);
    }
    send_json(res, 202, {{"queued", refs}});
  });
  http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.render_metrics(), "text/plain; version=0.0.4");
  });

  // One page of references (failing ones first): `/?offset=200`, `&limit=`.
  http.Get("/", [&s](const httplib::Request& req, httplib::Response& res) {
    std::multimap<std::string, std::string> paging;
    for (const char* name : {"limit", "offset"}) {
      if (auto it = req.params.find(name); it != req.params.end()) paging.emplace(*it);
    }
    auto parsed = parse_images_query(paging);
    if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, e->status, e->error, e->detail);
    ImagesQuery q = std::get<ImagesQuery>(parsed);
    if (!q.limit) q.limit = k_dashboard_page_size;
    q.errors_first = true;
    DashboardInput in;
    in.now = s.deps.clock->now();
    in.status = s.status_json();
    auto model = s.deps.watcher->model();
    std::set<std::string> failing;
    if (auto f = s.deps.store->failing_refs()) failing = std::move(*f);
    auto page = select_images(*model, q, failing);
    if (auto rows = s.deps.store->get_refs(page_keys(page))) in.images = images_json(*rows, page.items);
    in.images_total = page.total;
    in.images_offset = q.offset;
    in.images_limit = *q.limit;
    for (const auto& ref : failing) in.images_failing += model->items.count(ref);
    in.events = json::array();
    if (auto events = s.deps.store->list_events(20)) {
      for (const auto& e : *events) in.events.push_back(event_json(e));
    }
    in.deliveries = json::array();
    for (auto state : {db::DeliveryState::dead, db::DeliveryState::failed, db::DeliveryState::pending}) {
      if (auto list = s.deps.store->list_deliveries(state, 100)) {
        for (const auto& d : *list) in.deliveries.push_back(delivery_with_last_attempt(*s.deps.store, d));
      }
    }
    in.mirrors = mirrors_json(*s.deps.store, *model);
    in.builds = json::array();
    auto running = s.config();
    std::vector<db::Delivery> recent;
    if (auto list = s.deps.store->list_deliveries(std::nullopt, 500)) recent = std::move(*list);
    for (const auto& d : recent) {
      auto t = running->triggers.find(d.trigger);
      if (t == running->triggers.end() || (t->second.type != "build" && t->second.type != "command")) continue;
      in.builds.push_back(delivery_with_last_attempt(*s.deps.store, d));
      if (in.builds.size() >= k_dashboard_builds) break;
    }
    auto picture = s.graph_picture(*model, recent);
    if (!picture.nodes.empty()) {
      in.graph_svg = render_graph_svg(picture, layout_picture(picture));
      in.graph_change = picture.change;
      in.graph_note = picture.note;
    }
    in.token_required = !s.token().empty();
    res.set_header("Content-Security-Policy", k_dashboard_csp);
    res.set_header("Cache-Control", "no-store");
    res.set_content(render_dashboard(in), "text/html; charset=utf-8");
  });

  // Inbound hooks: one catch-all that looks the path up in the current
  // config, so a reload (SIGHUP) adds and removes hooks.
  http.Post(".*", [&s](const httplib::Request& req, httplib::Response& res) {
    auto h = s.hook(req.path);
    if (!h) return send_error(res, 404, "not found", req.path);
    s.handle_inbound(*h, req, res);
  });

  auto listen = parse_listen(s.cfg->listen);
  if (!listen) return listen.error();
  auto [host, port] = *listen;
  if (port == 0) {
    m_port = http.bind_to_any_port(host);
    if (m_port < 0) return make_error(ErrorKind::io, "cannot listen on " + s.cfg->listen);
  } else {
    if (!http.bind_to_port(host, port)) return make_error(ErrorKind::io, "cannot listen on " + s.cfg->listen + " (address in use?)");
    m_port = port;
  }
  m_thread = std::thread([this] { m_impl->http.listen_after_bind(); });
  s.followup_thread = std::thread([&s] { s.run_followups(); });
  spdlog::info("listening on {}:{}", host, m_port);
  for (const auto& h : s.hooks()) {
    if (h.secret.empty()) spdlog::warn("inbound {} ({}): no secret_file, anyone who can reach it can ask for checks", h.name, h.path);
  }
  return ok_status();
}

}  // namespace bw::api
