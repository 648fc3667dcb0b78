#include "app/cli.h"

#include <malloc.h>

#include <csignal>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "api/views.h"
#include "app/logging.h"
#include "app/service.h"
#include "app/wiring.h"
#include "dockerfile/dockerfile.h"
#include "net/http.h"
#include "oci/platform.h"
#include "util/files.h"
#include "util/strings.h"

namespace bw::app {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Loads the config or prints its error; nullopt means exit 2.
std::optional<config::Config> load_config(const std::string& given) {
  auto cfg = config::load(config::default_path(given));
  if (!cfg) {
    std::cerr << "basewatch: " << cfg.error().message << "\n";
    return std::nullopt;
  }
  return *cfg;
}

int exit_for(const Error& e) { return e.kind == ErrorKind::invalid ? k_exit_usage : k_exit_failure; }

// ---- scan ----

bool is_dockerfile_name(const std::string& name) {
  return name == "Dockerfile" || (name.size() > 11 && name.ends_with(".Dockerfile")) || name.rfind("Dockerfile.", 0) == 0;
}

std::vector<std::string> find_dockerfiles(const std::vector<std::string>& paths, std::vector<std::string>& missing) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end; it != end;
           it.increment(ec)) {
        if (ec) break;
        if (it->is_directory(ec) && (it->path().filename() == ".git" || it->path().filename() == "node_modules")) {
          it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec) && is_dockerfile_name(it->path().filename().string())) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(p);
    } else {
      missing.push_back(p);
    }
  }
  return out;
}

// A JSON string: plain ASCII as is, anything else through nlohmann (invalid
// UTF-8 in a path or a Dockerfile becomes U+FFFD instead of an exception).
void append_json_string(std::string& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (plain) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

void append_json_string_or_null(std::string& out, const std::optional<std::string>& s) {
  if (s) append_json_string(out, *s);
  else out += "null";
}

// One entry of `scan --json`'s "files", written straight to text in the
// layout json::dump(2) gives (keys sorted): thousands of files stay cheap.
void append_scan_json(std::string& out, const std::string& path, const dockerfile::ScanResult& res) {
  out += "    {\n      \"error\": ";
  append_json_string_or_null(out, res.error);
  out += ",\n      \"images\": ";
  if (res.images.empty()) out += "[]";
  for (size_t i = 0; i < res.images.size(); ++i) {
    const auto& img = res.images[i];
    out += i == 0 ? "[\n        {\n          \"kind\": " : ",\n        {\n          \"kind\": ";
    append_json_string(out, img.kind);
    out += ",\n          \"line\": " + std::to_string(img.line) + ",\n          \"pinned\": ";
    append_json_string_or_null(out, img.pinned);
    out += ",\n          \"platform\": ";
    append_json_string_or_null(out, img.platform);
    out += ",\n          \"ref\": ";
    append_json_string(out, img.ref.tag_ref());  // the digest is in "pinned"
    out += ",\n          \"stage\": ";
    append_json_string(out, img.stage);
    out += ",\n          \"via\": ";
    append_json_string(out, img.via);
    out += ",\n          \"written\": ";
    append_json_string(out, img.written);
    out += "\n        }";
  }
  if (!res.images.empty()) out += "\n      ]";
  out += ",\n      \"path\": ";
  append_json_string(out, path);
  out += "\n    }";
}

int cmd_scan(const std::vector<std::string>& paths, const std::vector<std::string>& build_args, const std::string& target,
             const std::string& platform, bool as_json) {
  dockerfile::ScanOptions opts;
  for (const auto& kv : build_args) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      // docker build --build-arg NAME takes the value from the environment.
      const char* v = std::getenv(kv.c_str());
      if (v) opts.build_args[kv] = v;
      continue;
    }
    opts.build_args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  opts.target = target;
  if (!platform.empty()) {
    auto p = oci::parse_platform(platform);
    if (!p) {
      std::cerr << "basewatch: --platform: " << p.error().message << "\n";
      return k_exit_usage;
    }
    opts.platform = platform;
  }
  std::vector<std::string> missing;
  auto files = find_dockerfiles(paths, missing);
  bool failed = !missing.empty();
  std::vector<std::pair<std::string, dockerfile::ScanResult>> results;
  results.reserve(missing.size() + files.size());
  for (const auto& m : missing) {
    dockerfile::ScanResult res;
    res.error = m + ": no such file or folder";
    results.emplace_back(m, std::move(res));
  }
  for (const auto& f : files) {
    auto res = dockerfile::scan_file(f, opts);
    if (res.error) failed = true;
    results.emplace_back(f, std::move(res));
  }
  if (as_json) {
    std::string out = results.empty() ? "{\n  \"files\": []" : "{\n  \"files\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
      if (i > 0) out += ",\n";
      append_scan_json(out, results[i].first, results[i].second);
    }
    out += results.empty() ? "\n}\n" : "\n  ]\n}\n";
    std::cout << out;
  } else {
    for (const auto& [path, res] : results) {
      if (res.error) {
        std::cout << "error: " << *res.error << "\n";
        continue;
      }
      std::cout << path << "\n";
      for (const auto& i : res.images) {
        std::cout << "  " << i.line << "\t" << i.kind << "\t" << i.via << "\t" << i.ref.tag_ref() << "\t(stage " << i.stage << ")"
                  << (i.pinned ? " pinned" : "") << "\n";
      }
    }
  }
  if (files.empty() && missing.empty()) {
    std::cerr << "basewatch: no Dockerfile found\n";
    return k_exit_failure;
  }
  return failed ? k_exit_failure : k_exit_ok;
}

// ---- check ----

int cmd_check(const std::string& config_path, bool dry_run, bool as_json) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  setup_logging(cfg->log_level == "info" ? "warn" : cfg->log_level, cfg->log_format);
  auto rt = make_runtime(std::make_shared<const config::Config>(std::move(*cfg)));
  if (!rt) {
    std::cerr << "basewatch: " << rt.error().message << "\n";
    return exit_for(rt.error());
  }
  Runtime& r = **rt;
  for (const auto& e : r.watcher->model()->errors) std::cerr << "basewatch: " << e << "\n";
  TimePoint now = r.clock.now();
  // Reports are printed (text) or turned into JSON as each reference is
  // applied: nothing per reference is kept for the whole cycle.
  std::vector<std::string> queued;
  json references = json::array();
  auto sink = [&](watcher::CheckReport&& rep) {
    queued.insert(queued.end(), rep.deliveries.begin(), rep.deliveries.end());
    if (as_json) {
      json platforms = json::object();
      for (const auto& [p, od] : rep.platforms) platforms[p] = {{"old", od.first}, {"new", od.second}};
      references.push_back({{"ref", rep.ref}, {"outcome", rep.outcome},
                            {"old_digest", rep.old_digest.empty() ? json(nullptr) : json(rep.old_digest)},
                            {"new_digest", rep.new_digest.empty() ? json(nullptr) : json(rep.new_digest)},
                            {"platforms", platforms}, {"deliveries", rep.deliveries},
                            {"error", rep.error.empty() ? json(nullptr) : json(rep.error)}});
      return;
    }
    std::cout << rep.outcome << "\t" << rep.ref;
    if (rep.outcome == "error") std::cout << "\t" << rep.error;
    else if (rep.outcome == "changed" || rep.outcome == "recorded") std::cout << "\t" << rep.old_digest << " -> " << rep.new_digest;
    else std::cout << "\t" << rep.new_digest;
    for (const auto& [p, od] : rep.platforms) std::cout << "\n\t" << p << ": " << od.first << " -> " << od.second;
    if (!rep.deliveries.empty()) std::cout << "\n\tdeliveries: " << join(rep.deliveries, " ");
    std::cout << "\n";
  };
  auto stats = r.watcher->poll_once(now, true, dry_run, sink);
  triggers::DispatchStats sent;
  if (!dry_run) {
    // A one-shot check does not wait out settle windows: it delivers what it queued now.
    for (const auto& id : queued) r.store->requeue(id, to_unix_ms(now));
    sent = r.dispatcher->dispatch_once(r.clock.now());
    // Builds run on their own threads: wait for them, so their outcome counts.
    sent += r.dispatcher->wait_builds();
  }
  if (as_json) {
    json j = {{"checked", stats.checked}, {"changed", stats.changed}, {"errors", stats.errors}, {"dry_run", dry_run},
              {"references", std::move(references)},
              {"deliveries", {{"attempted", sent.attempted}, {"delivered", sent.delivered}, {"failed", sent.failed}, {"dead", sent.dead}}}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << stats.checked << " checked, " << stats.changed << " changed, " << stats.errors << " errors";
    if (!dry_run) std::cout << "; " << sent.delivered << " delivered, " << sent.failed + sent.dead << " failed";
    std::cout << (dry_run ? " (dry run: nothing recorded)" : "") << "\n";
  }
  return stats.errors > 0 || sent.failed + sent.dead > 0 ? k_exit_failure : k_exit_ok;
}

// ---- digest ----

int cmd_digest(const std::string& config_path, const std::vector<std::string>& platforms, const std::string& ref_text) {
  auto ref = oci::parse_reference(ref_text);
  if (!ref) {
    std::cerr << "basewatch: " << ref.error().message << "\n";
    return k_exit_usage;
  }
  config::Config cfg;
  std::string path = config_path.empty() ? (std::getenv("BASEWATCH_CONFIG") ? std::getenv("BASEWATCH_CONFIG") : "") : config_path;
  if (!path.empty()) {
    auto loaded = load_config(path);
    if (!loaded) return k_exit_usage;
    cfg = *loaded;
  }
  setup_logging("warn", "text");
  std::vector<oci::Platform> wanted;
  for (const auto& p : platforms) {
    auto parsed = oci::parse_platform(p);
    if (!parsed) {
      std::cerr << "basewatch: --platform: " << parsed.error().message << "\n";
      return k_exit_usage;
    }
    wanted.push_back(*parsed);
  }
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, registry_settings(cfg));
  auto res = client.resolve(*ref, wanted);
  if (!res) {
    std::cerr << "basewatch: " << res.error().message << "\n";
    return k_exit_failure;
  }
  std::cout << ref->str() << "\n  digest: " << res->digest << "\n  media type: " << res->media_type << "\n";
  if (res->index && wanted.empty()) {
    // No --platform: list every platform of the index.
    auto body = client.get_manifest(*ref, res->digest);
    if (body) {
      if (auto entries = oci::parse_index(body->first)) {
        for (const auto& e : *entries) {
          if (e.attestation) continue;
          std::cout << "  " << (e.platform ? e.platform->str() : "linux/amd64") << ": " << e.digest << "\n";
        }
      }
    }
  }
  for (const auto& p : wanted) {
    auto it = res->platforms.find(p.str());
    std::cout << "  " << p.str() << ": " << (it == res->platforms.end() ? "(not in this image)" : it->second) << "\n";
  }
  return k_exit_ok;
}

// ---- graph / impact ----

int cmd_graph(const std::string& config_path, const std::string& format) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::cerr << "basewatch: " << model.error().message << "\n";
    return exit_for(model.error());
  }
  for (const auto& e : model->errors) std::cerr << "basewatch: " << e << "\n";
  if (format == "json") std::cout << model->graph->to_json() << "\n";
  else if (format == "dot") std::cout << model->graph->to_dot();
  else std::cout << model->graph->to_text();
  return k_exit_ok;
}

int cmd_impact(const std::string& config_path, const std::string& ref_text, bool as_json) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  auto ref = oci::parse_reference(ref_text);
  if (!ref) {
    std::cerr << "basewatch: " << ref.error().message << "\n";
    return k_exit_usage;
  }
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::cerr << "basewatch: " << model.error().message << "\n";
    return exit_for(model.error());
  }
  auto plan = model->graph->impact(ref->tag_ref());
  if (as_json) {
    std::cout << json{{"ref", ref->tag_ref()}, {"plan", plan}}.dump() << "\n";
  } else {
    for (const auto& p : plan) std::cout << p << "\n";
  }
  return k_exit_ok;
}

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
  auto print_table = [](const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> width;
    for (const auto& r : rows) {
      for (size_t i = 0; i < r.size(); ++i) {
        if (width.size() <= i) width.push_back(0);
        width[i] = std::max(width[i], r[i].size());
      }
    }
    for (const auto& r : rows) {
      std::string line;
      for (size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
      }
      std::cout << line << "\n";
    }
  };

  const json& s = *status;
  const json c = s.value("counts", json::object());
  std::cout << "basewatch " << text(s, "version", "?") << " at " << url << ", up " << span(number(s, "uptime_seconds")) << "\n";
  std::cout << "last poll " << ago(s, "last_poll", "never") << ", next poll " << ago(s, "next_poll", "-") << "\n";
  std::cout << "references " << number(c, "references") << "  projects " << number(c, "projects") << "  pending "
            << number(c, "pending") << "  failed " << number(c, "failed") << "  dead " << number(c, "dead") << "  delivered "
            << number(c, "delivered") << "\n";

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

// ---- deliveries ----

int cmd_deliveries(const std::string& config_path, const std::string& state_text, bool as_json) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  std::optional<db::DeliveryState> state;
  if (!state_text.empty()) {
    state = db::parse_delivery_state(state_text);
    if (!state) {
      std::cerr << "basewatch: --state: expected pending, delivered, failed or dead\n";
      return k_exit_usage;
    }
  }
  auto store = db::Store::open(cfg->database);
  if (!store) {
    std::cerr << "basewatch: " << store.error().message << "\n";
    return k_exit_failure;
  }
  auto list = (*store)->list_deliveries(state, 1000);
  if (!list) {
    std::cerr << "basewatch: " << list.error().message << "\n";
    return k_exit_failure;
  }
  if (as_json) {
    json out = json::array();
    for (const auto& d : *list) out.push_back(api::delivery_json(d, false));
    std::cout << out.dump(2) << "\n";
    return k_exit_ok;
  }
  for (const auto& d : *list) {
    json j = api::delivery_json(d, false);
    std::cout << d.id << "\t" << db::to_string(d.state) << "\t" << d.trigger << "\t" << (d.project.empty() ? "-" : d.project)
              << "\tattempts " << d.attempts << "\tcreated " << api::iso_or_null_text(d.created_at);
    if (j.contains("refs")) std::cout << "\t" << join(j["refs"].get<std::vector<std::string>>(), " ");
    if (!d.last_error.empty()) std::cout << "\t" << d.last_error;
    std::cout << "\n";
  }
  return k_exit_ok;
}

int cmd_redeliver(const std::string& config_path, const std::string& id) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  auto store = db::Store::open(cfg->database);
  if (!store) {
    std::cerr << "basewatch: " << store.error().message << "\n";
    return k_exit_failure;
  }
  auto st = (*store)->requeue(id, to_unix_ms(Clock::now()));
  if (!st) {
    std::cerr << "basewatch: " << st.error().message << "\n";
    return st.error().kind == ErrorKind::not_found ? k_exit_usage : k_exit_failure;
  }
  std::cout << "queued " << id << " (a running basewatch sends it within a second)\n";
  return k_exit_ok;
}

int cmd_config_check(const std::string& config_path) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::cerr << "basewatch: " << model.error().message << "\n";
    return exit_for(model.error());
  }
  for (const auto& e : model->errors) std::cerr << "basewatch: " << e << "\n";
  std::cout << cfg->file << ": ok (" << model->projects.size() << " projects, " << model->items.size()
            << " references to watch, " << cfg->triggers.size() << " triggers)\n";
  return model->errors.empty() ? k_exit_ok : k_exit_failure;
}

}  // namespace

int run_cli(int argc, char** argv) {
  // glibc gives each thread that allocates its own arena (up to 8 per core);
  // the poll workers are I/O bound, and two arenas keep memory per watched
  // reference small (bench/registry: 2.5 KB -> 1.8 KB peak RSS per reference).
  // MALLOC_ARENA_MAX in the environment still wins.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
  // A peer that closes a socket (or a pipe) while we write must be an EPIPE
  // error on that write, not a silent death of the process. Children get the
  // default back (triggers/process.cpp, registry/credentials.cpp).
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"basewatch: watches the base images your Dockerfiles build FROM and triggers rebuilds when they change"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("basewatch ") + BASEWATCH_VERSION);
  std::string config_path;
  bool as_json = false;

  auto* serve = app.add_subcommand("serve", "Run the service in the foreground (what systemd runs)");
  serve->add_option("-c,--config", config_path, "Config file (default $BASEWATCH_CONFIG, then /etc/basewatch/config.yaml)");

  bool dry_run = false;
  auto* check = app.add_subcommand("check", "Resolve every watched reference once, queue and deliver what changed, print it");
  check->add_option("-c,--config", config_path, "Config file");
  check->add_flag("--dry-run", dry_run, "Record nothing, trigger nothing");
  check->add_flag("--json", as_json, "One JSON document on stdout");

  std::vector<std::string> build_args, scan_paths;
  std::string target, platform;
  auto* scan = app.add_subcommand("scan", "List the external images Dockerfiles depend on");
  scan->add_option("--build-arg", build_args, "K=V build argument (repeatable)")->allow_extra_args(false);
  scan->add_option("--target", target, "Target stage (default: the last)");
  scan->add_option("--platform", platform, "OS/ARCH[/VARIANT] for TARGETPLATFORM and friends (default linux/amd64)");
  scan->add_flag("--json", as_json, "One JSON document on stdout");
  scan->add_option("PATH", scan_paths, "Dockerfiles, or folders searched for Dockerfile, *.Dockerfile, Dockerfile.*")->required();

  std::string format = "text";
  auto* graph = app.add_subcommand("graph", "The dependency graph: upstream references, projects, produced images");
  graph->add_option("-c,--config", config_path, "Config file");
  graph->add_option("--format", format, "text, json or dot")->check(CLI::IsMember({"text", "json", "dot"}));

  std::string ref;
  auto* impact = app.add_subcommand("impact", "What a change of REF rebuilds, in build order");
  impact->add_option("-c,--config", config_path, "Config file");
  impact->add_flag("--json", as_json, "One JSON document on stdout");
  impact->add_option("REF", ref, "Image reference")->required();

  std::vector<std::string> platforms;
  auto* digest = app.add_subcommand("digest", "Resolve a reference: the tag's digest and the per-platform digests");
  digest->add_option("-c,--config", config_path, "Config file (for registry credentials and settings)");
  digest->add_option("--platform", platforms, "OS/ARCH[/VARIANT] (repeatable)")->allow_extra_args(false);
  digest->add_option("REF", ref, "Image reference")->required();

  std::string url, token_file;
  auto* status = app.add_subcommand("status", "Ask a running service for its state");
  status->add_option("--url", url, "Base URL (default: http:// + the config's listen)");
  status->add_option("--token-file", token_file, "API token file (or $BASEWATCH_API_TOKEN)");
  status->add_option("-c,--config", config_path, "Config file (for listen and the API token)");
  status->add_flag("--json", as_json, "One JSON document on stdout");

  auto* config_cmd = app.add_subcommand("config", "Config file commands");
  config_cmd->require_subcommand(1);
  auto* config_check = config_cmd->add_subcommand("check", "Validate a config file (and scan its Dockerfiles) and exit");
  config_check->add_option("-c,--config", config_path, "Config file");

  std::string state;
  auto* deliveries = app.add_subcommand("deliveries", "Show the trigger outbox");
  deliveries->add_option("-c,--config", config_path, "Config file");
  deliveries->add_option("--state", state, "pending, delivered, failed or dead");
  deliveries->add_flag("--json", as_json, "One JSON document on stdout");

  std::string id;
  auto* redeliver = app.add_subcommand("redeliver", "Queue one delivery again (same id)");
  redeliver->add_option("-c,--config", config_path, "Config file");
  redeliver->add_option("ID", id, "Delivery id")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return k_exit_usage;
  }

  if (*serve) return bw::app::serve(config::default_path(config_path));
  if (*check) return cmd_check(config_path, dry_run, as_json);
  if (*scan) return cmd_scan(scan_paths, build_args, target, platform, as_json);
  if (*graph) return cmd_graph(config_path, format);
  if (*impact) return cmd_impact(config_path, ref, as_json);
  if (*digest) return cmd_digest(config_path, platforms, ref);
  if (*status) return cmd_status(url, token_file, config_path, as_json);
  if (*config_check) return cmd_config_check(config_path);
  if (*deliveries) return cmd_deliveries(config_path, state, as_json);
  if (*redeliver) return cmd_redeliver(config_path, id);
  return k_exit_usage;
}

}  // namespace bw::app
