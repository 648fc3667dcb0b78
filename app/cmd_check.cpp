// basewatch check (one cycle) and basewatch digest (one reference).

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app/cli.h"
#include "app/commands.h"
#include "app/logging.h"
#include "app/service.h"
#include "app/wiring.h"
#include "net/http.h"
#include "oci/platform.h"
#include "util/strings.h"

namespace bw::app {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- check ----

int cmd_check(const std::string& config_path, bool dry_run, bool as_json) {
  auto cfg = load_watching_config(config::default_path(config_path));
  if (!cfg) {
    std::cerr << "basewatch: " << cfg.error().message << "\n";
    return k_exit_usage;
  }
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
  mirror::SyncStats copies;
  if (!dry_run) {
    // Copies first: deliveries of projects that build FROM a mirror wait for them.
    copies = r.syncer->sync_once(r.clock.now(), 1000);
    if (copies.failed > 0) std::cerr << "basewatch: " << copies.failed << " mirror copy(ies) failed; they are retried by serve\n";
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
  return stats.errors > 0 || sent.failed + sent.dead > 0 || copies.failed > 0 ? k_exit_failure : k_exit_ok;
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

}  // namespace

void add_service_commands(CLI::App& app, Commands& out) {
  struct Options {
    std::string config;
    bool dry_run = false, json = false;
    std::vector<std::string> platforms;
    std::string ref;
  };
  auto o = std::make_shared<Options>();
  auto* serve = app.add_subcommand("serve", "Run the service in the foreground (what systemd runs)");
  serve->add_option("-c,--config", o->config, "Config file (default $BASEWATCH_CONFIG, then /etc/basewatch/config.yaml)");
  out.push_back({serve, [o] { return bw::app::serve(config::default_path(o->config)); }});

  auto* check = app.add_subcommand("check", "Resolve every watched reference once, queue and deliver what changed, print it");
  add_config_option(*check, o->config);
  check->add_flag("--dry-run", o->dry_run, "Record nothing, trigger nothing");
  check->add_flag("--json", o->json, "One JSON document on stdout");
  out.push_back({check, [o] { return cmd_check(o->config, o->dry_run, o->json); }});

  auto* digest = app.add_subcommand("digest", "Resolve a reference: the tag's digest and the per-platform digests");
  digest->add_option("-c,--config", o->config, "Config file (for registry credentials and settings)");
  digest->add_option("--platform", o->platforms, "OS/ARCH[/VARIANT] (repeatable)")->allow_extra_args(false);
  digest->add_option("REF", o->ref, "Image reference")->required();
  out.push_back({digest, [o] { return cmd_digest(o->config, o->platforms, o->ref); }});
}

}  // namespace bw::app
