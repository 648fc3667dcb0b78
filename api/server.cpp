#include "api/server.h"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <mutex>

#include "api/views.h"
#include "util/crypto.h"
#include "util/strings.h"

namespace bw::api {

using json = nlohmann::json;

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
  Deps deps;
  std::mutex cfg_mutex;
  config::Config cfg;
  httplib::Server http;

  std::string token() {
    std::lock_guard lock(cfg_mutex);
    return cfg.api_token;
  }
};

namespace {

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
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

}  // namespace

Server::Server(Deps deps, const config::Config& cfg) : m_impl(std::make_unique<Impl>()) {
  m_impl->deps = std::move(deps);
  m_impl->cfg = cfg;
}

Server::~Server() { stop(); }

void Server::reload(const config::Config& cfg) {
  std::lock_guard lock(m_impl->cfg_mutex);
  m_impl->cfg = cfg;
}

void Server::stop() {
  if (m_thread.joinable()) {
    m_impl->http.stop();
    m_thread.join();
  }
}

Status Server::start() {
  Impl& s = *m_impl;
  auto& http = s.http;
  http.set_payload_max_length(1 << 20);
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);

  // /v1/* and / need the bearer token when api.token_file is set.
  http.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    bool guarded = req.path.rfind("/v1/", 0) == 0 || req.path == "/";
    std::string token = s.token();
    if (!guarded || token.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string auth = req.get_header_value("Authorization");
    if (starts_with_icase(auth, "Bearer ") && constant_time_equals(std::string(trim(auth.substr(7))), token)) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.set_header("WWW-Authenticate", "Bearer realm=\"basewatch\"");
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
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) send_error(res, 404, "not found", req.path);
    else if (res.status == 413) send_error(res, 413, "payload too large");
    else send_error(res, res.status, "error");
  });

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "ok"}}); });
  http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (m_ready) send_json(res, 200, {{"status", "ready"}});
    else send_error(res, 503, "not ready", "the first scan has not finished");
  });

  http.Get("/v1/status", [&s](const httplib::Request&, httplib::Response& res) {
    auto now = s.deps.clock->now();
    auto counts = s.deps.store->delivery_counts();
    auto model = s.deps.watcher->model();
    json j;
    j["version"] = BASEWATCH_VERSION;
    j["started_at"] = format_rfc3339(s.deps.started_at);
    j["uptime_seconds"] = std::chrono::duration_cast<std::chrono::seconds>(now - s.deps.started_at).count();
    j["counts"] = {{"references", model->items.size()}, {"projects", model->projects.size()}};
    if (counts) {
      for (const auto& [state, n] : *counts) j["counts"][state] = n;
    }
    auto last = s.deps.watcher->last_poll();
    j["last_poll"] = to_unix_ms(last) > 0 ? json(format_rfc3339(last)) : json(nullptr);
    j["next_poll"] = format_rfc3339(s.deps.watcher->next_due(now));
    j["registries"] = registry_status_json(s.deps.registry->status());
    j["errors"] = model->errors;
    send_json(res, 200, j);
  });

  http.Get("/v1/images", [&s](const httplib::Request&, httplib::Response& res) {
    auto refs = s.deps.store->list_refs();
    if (!refs) return send_error(res, 500, "database", refs.error().message);
    send_json(res, 200, images_json(*refs, *s.deps.watcher->model()));
  });

  http.Get("/v1/graph", [&s](const httplib::Request& req, httplib::Response& res) {
    auto model = s.deps.watcher->model();
    if (!model->graph) return send_error(res, 500, "no graph");
    if (req.get_param_value("format") == "dot") {
      res.set_content(model->graph->to_dot(), "text/vnd.graphviz");
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
    for (const auto& d : *list) {
      json j = delivery_json(d, false);
      if (auto attempts = s.deps.store->list_attempts(d.id); attempts && !attempts->empty()) {
        const auto& a = attempts->back();
        j["last_attempt"] = {{"at", format_rfc3339(from_unix_ms(a.at))}, {"status", a.status}, {"duration_ms", a.duration_ms},
                             {"error", a.error.empty() ? json(nullptr) : json(a.error)},
                             {"output_tail", a.output_tail.empty() ? json(nullptr) : json(a.output_tail)}};
      }
      out.push_back(j);
    }
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
                            {"duration_ms", a.duration_ms}, {"output_tail", a.output_tail}});
      }
    }
    j["attempts"] = attempts;
    send_json(res, 200, j);
  });

  http.Post(R"(/v1/deliveries/([A-Za-z0-9_]+)/retry)", [&s](const httplib::Request& req, httplib::Response& res) {
    auto st = s.deps.store->requeue(req.matches[1], to_unix_ms(s.deps.clock->now()));
    if (!st) return send_error(res, status_for(st.error().kind), st.error().message);
    if (s.deps.wake_dispatcher) s.deps.wake_dispatcher();
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
    s.deps.watcher->request_check(ref, "manual");
    if (s.deps.wake_poller) s.deps.wake_poller();
    send_json(res, 202, {{"ref", ref.empty() ? json(nullptr) : json(ref)}, {"state", "queued"}});
  });

  http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    std::string out;
    auto model = s.deps.watcher->model();
    out += "# HELP basewatch_build_info Build information.\n# TYPE basewatch_build_info gauge\n";
    out += std::string("basewatch_build_info{version=\"") + BASEWATCH_VERSION + "\"} 1\n";
    out += "# HELP basewatch_references_watched References being watched.\n# TYPE basewatch_references_watched gauge\n";
    out += "basewatch_references_watched " + std::to_string(model->items.size()) + "\n";
    out += "# HELP basewatch_projects Projects configured.\n# TYPE basewatch_projects gauge\n";
    out += "basewatch_projects " + std::to_string(model->projects.size()) + "\n";
    if (auto counts = s.deps.store->delivery_counts()) {
      out += "# HELP basewatch_deliveries Deliveries in the outbox by state.\n# TYPE basewatch_deliveries gauge\n";
      for (const auto& [state, n] : *counts) out += "basewatch_deliveries{state=\"" + state + "\"} " + std::to_string(n) + "\n";
    }
    out += "# HELP basewatch_registry_requests_total Registry requests sent.\n# TYPE basewatch_registry_requests_total counter\n";
    auto regs = s.deps.registry->status();
    for (const auto& r : regs) out += "basewatch_registry_requests_total{registry=\"" + r.host + "\"} " + std::to_string(r.requests) + "\n";
    out += "# HELP basewatch_registry_ratelimit_remaining Remaining registry rate limit, where the registry reports one.\n"
           "# TYPE basewatch_registry_ratelimit_remaining gauge\n";
    for (const auto& r : regs) {
      if (r.ratelimit_remaining) out += "basewatch_registry_ratelimit_remaining{registry=\"" + r.host + "\"} " + std::to_string(*r.ratelimit_remaining) + "\n";
    }
    res.set_content(out, "text/plain; version=0.0.4");
  });

  auto listen = parse_listen(s.cfg.listen);
  if (!listen) return listen.error();
  auto [host, port] = *listen;
  if (port == 0) {
    m_port = http.bind_to_any_port(host);
    if (m_port < 0) return make_error(ErrorKind::io, "cannot listen on " + s.cfg.listen);
  } else {
    if (!http.bind_to_port(host, port)) return make_error(ErrorKind::io, "cannot listen on " + s.cfg.listen + " (address in use?)");
    m_port = port;
  }
  m_thread = std::thread([this] { m_impl->http.listen_after_bind(); });
  spdlog::info("listening on {}:{}", host, m_port);
  return ok_status();
}

}  // namespace bw::api
