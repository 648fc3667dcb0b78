// basewatch status: asks a running service for its state.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app/cli.h"
#include "app/commands.h"
#include "net/http.h"
#include "util/files.h"

namespace bw::app {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- status ----

int cmd_status(const std::string& url_given, const std::string& token_file, const std::string& config_path, bool as_json) {
  std::string url = url_given;
  std::string token;
  if (const char* t = std::getenv("BASEWATCH_API_TOKEN"); t && *t) token = t;
  if (!token_file.empty()) {
    auto t = read_secret_file(token_file);
    if (!t) {
      std::cerr << "basewatch: --token-file: " << t.error().message << "\n";
      return k_exit_usage;
    }
    token = *t;
  }
  if (url.empty()) {
    std::string path = config::default_path(config_path);
    std::string listen = "127.0.0.1:8780";
    if (fs::exists(path)) {
      auto cfg = load_config(path);
      if (!cfg) return k_exit_usage;
      listen = cfg->listen;
      if (token.empty()) token = cfg->api_token;
    }
    if (listen.rfind("0.0.0.0:", 0) == 0) listen = "127.0.0.1:" + listen.substr(8);
    if (listen.rfind("[::]:", 0) == 0) listen = "[::1]:" + listen.substr(5);
    url = "http://" + listen;
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  net::HttplibClient http;
  auto get = [&](const std::string& path) -> Result<json> {
    net::Request req;
    req.url = url + path;
    req.timeout = Millis(10'000);
    if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    auto res = http.send(req);
    if (!res) return make_error(res.error().kind, "cannot reach basewatch at " + url + ": " + res.error().message);
    auto body = json::parse(res->body, nullptr, false);
    if (res->status != 200) {
      std::string msg = "HTTP " + std::to_string(res->status);
      if (body.is_object() && body.value("error", json()).is_string()) msg += " " + body["error"].get<std::string>();
      if (body.is_object() && body.value("detail", json()).is_string()) msg += " (" + body["detail"].get<std::string>() + ")";
      return make_error(ErrorKind::bad_answer, url + path + ": " + msg);
    }
    if (body.is_discarded()) return make_error(ErrorKind::bad_answer, url + path + ": answer is not JSON");
    return body;
  };
  auto status = get("/v1/status");
  if (!status) {
    std::cerr << "basewatch: " << status.error().message << "\n";
    return k_exit_failure;
  }
  auto images = get("/v1/images");
  auto attention = get("/v1/deliveries?state=dead");
  auto mirrors = get("/v1/mirrors");
  if (as_json) {
    json j = *status;
    if (images) j["images"] = *images;
    std::cout << j.dump(2) << "\n";
    return images ? k_exit_ok : k_exit_failure;
  }

  // Text: a header, the counts, one table row per watched platform, the
  // registries, and what needs a person (errors, dead deliveries).
  auto text = [](const json& obj, const char* key, const std::string& fallback = "-") {
    auto it = obj.find(key);
    return it != obj.end() && it->is_string() && !it->get<std::string>().empty() ? it->get<std::string>() : fallback;
  };
  auto number = [](const json& obj, const char* key) -> int64_t {
    auto it = obj.find(key);
    return it != obj.end() && it->is_number() ? it->get<int64_t>() : 0;
  };
  auto span = [](int64_t s) {
    if (s < 60) return std::to_string(s) + "s";
    if (s < 3600) return std::to_string(s / 60) + "m";
    if (s < 86400) return std::to_string(s / 3600) + "h" + std::to_string(s % 3600 / 60) + "m";
    return std::to_string(s / 86400) + "d" + std::to_string(s % 86400 / 3600) + "h";
  };
  TimePoint now = std::chrono::system_clock::now();
  auto ago = [&](const json& obj, const char* key, const std::string& never) {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_string()) return never;
    auto t = parse_rfc3339(it->get<std::string>());
    if (!t) return it->get<std::string>();
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - *t).count();
    return secs >= 0 ? span(secs) + " ago" : "in " + span(-secs);
  };
  auto short_digest = [](const std::string& d) {
    auto colon = d.find(':');
    return d.empty() || d == "-" ? std::string("-") : d.substr(colon == std::string::npos ? 0 : colon + 1, 12);
  };

  const json& s = *status;
  const json c = s.value("counts", json::object());
  std::cout << "basewatch " << text(s, "version", "?") << " at " << url << ", up " << span(number(s, "uptime_seconds")) << "\n";
  std::cout << "last poll " << ago(s, "last_poll", "never") << ", next poll " << ago(s, "next_poll", "-") << "\n";
  std::cout << "references " << number(c, "references") << "  projects " << number(c, "projects") << "  pending "
            << number(c, "pending") << "  failed " << number(c, "failed") << "  dead " << number(c, "dead") << "  delivered "
            << number(c, "delivered");
  if (number(c, "mirrors") > 0) std::cout << "  mirrors " << number(c, "mirrors") << "  out of sync " << number(c, "mirrors_out_of_sync");
  std::cout << "\n";

  // Several instances on one database (a lease): who leads, who answered,
  // and every instance. Alone (SQLite) there is nothing to say.
  const json cl = s.value("cluster", json::object());
  if (cl.is_object() && cl.value("lease_seconds", json()).is_number()) {
    std::string self = text(cl, "instance"), leader = text(cl, "leader", "");
    std::cout << "cluster: instance " << self << (leader == self ? " leads" : " follows") << "; ";
    if (leader.empty()) std::cout << "no instance leads right now (the lease ran out)";
    else std::cout << "leader " << leader << " since " << ago(cl, "leader_since", "-");
    std::cout << "; lease " << cl["lease_seconds"].dump() << "s\n";
    std::vector<std::vector<std::string>> rows{{"INSTANCE", "ROLE", "HOST", "PID", "VERSION", "LAST SEEN"}};
    for (const auto& i : cl.value("instances", json::array())) {
      std::string id = text(i, "id");
      rows.push_back({id, id == leader ? "leader" : "follower", text(i, "host"), std::to_string(number(i, "pid")), text(i, "version"),
                      ago(i, "last_seen", "never")});
    }
    print_table(rows);
  }

  if (images) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows{{"REFERENCE", "PLATFORM", "DIGEST", "CHECKED", "CHANGED", "FEEDS", "STATE"}};
    std::vector<std::string> problems;
    for (const auto& i : *images) {
      std::string ref = text(i, "ref");
      std::string feeds;
      for (const auto& d : i.value("dependents", json::array())) feeds += (feeds.empty() ? "" : ",") + d.get<std::string>();
      if (feeds.empty()) feeds = "-";
      std::string state = i.value("last_error", json()).is_string() ? "error" : i.value("last_checked", json()).is_null() ? "waiting" : "ok";
      if (state == "error") problems.push_back(ref + ": " + i["last_error"].get<std::string>());
      std::vector<std::string> platforms;
      for (const auto& p : i.value("watched_platforms", json::array())) platforms.push_back(p.get<std::string>());
      if (platforms.empty()) platforms.push_back("-");
      const json digests = i.value("platforms", json::object());
      bool first = true;
      for (const auto& p : platforms) {
        std::string digest = short_digest(text(digests, p.c_str()));
        if (first) rows.push_back({ref, p, digest, ago(i, "last_checked", "never"), ago(i, "last_changed", "never"), feeds, state});
        else rows.push_back({"", p, digest, "", "", "", ""});
        first = false;
      }
    }
    if (rows.size() == 1) std::cout << "nothing is watched\n";
    else print_table(rows);
    for (const auto& p : problems) std::cout << "error: " << p << "\n";
  }

  if (mirrors && mirrors->is_array() && !mirrors->empty()) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows{{"MIRROR", "STATE", "DIGEST", "LAST COPY", "WAITING", "LAST ERROR"}};
    for (const auto& m : *mirrors) {
      std::string last = "-";
      if (m.contains("last_copy") && m["last_copy"].is_object()) last = ago(m["last_copy"], "at", "-");
      int64_t waiting = number(m, "waiting_deliveries");
      rows.push_back({text(m, "mirror"), text(m, "state"), short_digest(text(m, "mirror_digest")), last,
                      waiting ? std::to_string(waiting) + " rebuild(s)" : "-", text(m, "last_error")});
    }
    print_table(rows);
  }

  const json regs = s.value("registries", json::object());
  if (!regs.empty()) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows{{"REGISTRY", "REQUESTS", "RATE LIMIT LEFT", "LAST ERROR"}};
    for (const auto& [host, r] : regs.items()) {
      std::string left = r.value("ratelimit_remaining", json()).is_number() ? std::to_string(number(r, "ratelimit_remaining")) : "-";
      if (r.value("ratelimit_limit", json()).is_number()) left += "/" + std::to_string(number(r, "ratelimit_limit"));
      rows.push_back({host, std::to_string(number(r, "requests")), left, text(r, "last_error")});
    }
    print_table(rows);
  }
  for (const auto& e : s.value("errors", json::array())) std::cout << "error: " << e.get<std::string>() << "\n";
  if (attention && !attention->empty()) {
    std::cout << "\ndead deliveries (basewatch redeliver -c FILE ID):\n";
    for (const auto& d : *attention) {
      std::cout << "  " << text(d, "id") << "  " << text(d, "trigger") << " -> " << text(d, "project") << "  after "
                << number(d, "attempts") << " attempt(s): " << text(d, "last_error") << "\n";
    }
  }
  return images ? k_exit_ok : k_exit_failure;
}

}  // namespace

void add_status_commands(CLI::App& app, Commands& out) {
  struct Options {
    std::string url, token_file, config;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* status = app.add_subcommand("status", "Ask a running service for its state");
  status->add_option("--url", o->url, "Base URL (default: http:// + the config's listen)");
  status->add_option("--token-file", o->token_file, "API token file (or $BASEWATCH_API_TOKEN)");
  status->add_option("-c,--config", o->config, "Config file (for listen and the API token)");
  status->add_flag("--json", o->json, "One JSON document on stdout");
  out.push_back({status, [o] { return cmd_status(o->url, o->token_file, o->config, o->json); }});
}

}  // namespace bw::app
