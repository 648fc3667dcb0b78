// basewatch import (one copy, registry to registry) and basewatch mirror
// sync (every mirrored reference compared and copied where it differs).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include "app/cli.h"
#include "app/commands.h"
#include "app/logging.h"
#include "app/wiring.h"
#include "mirror/copy.h"
#include "mirror/syncer.h"
#include "watcher/model.h"
#include "net/http.h"
#include "oci/platform.h"
#include "util/strings.h"

namespace bw::app {

using json = nlohmann::json;

namespace {

std::string human_bytes(int64_t n) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

// Whether a reference as written names a tag (DST's tag defaults to SRC's).
bool tag_written(const std::string& text) {
  auto at = text.find('@');
  std::string name = text.substr(0, at);
  auto slash = name.rfind('/');
  return name.find(':', slash == std::string::npos ? 0 : slash) != std::string::npos;
}

// "12/20 blobs, 150.3 MB / 300.0 MB, 45.2 MB/s" on one line of a terminal,
// at most ten times a second, as skopeo does.
class ProgressLine {
 public:
  explicit ProgressLine(bool on) : m_on(on), m_start(std::chrono::steady_clock::now()) {}
  void update(const mirror::Progress& p) {
    if (!m_on) return;
    std::lock_guard lock(m_mutex);
    auto now = std::chrono::steady_clock::now();
    bool last = p.blobs_done == p.blobs_total;
    if (!last && now - m_last < std::chrono::milliseconds(100)) return;
    m_last = now;
    double secs = std::chrono::duration<double>(now - m_start).count();
    std::string rate = secs > 0.05 ? ", " + human_bytes(static_cast<int64_t>(double(p.bytes_done) / secs)) + "/s" : "";
    std::string line = std::to_string(p.blobs_done) + "/" + std::to_string(p.blobs_total) + " blobs, " + human_bytes(p.bytes_done) +
                       " / " + human_bytes(p.bytes_total) + rate;
    std::cerr << "\r" << line << std::string(m_width > line.size() ? m_width - line.size() : 0, ' ') << std::flush;
    m_width = line.size();
    m_shown = true;
  }
  void end() {
    if (m_shown) std::cerr << "\n";
  }

 private:
  bool m_on;
  std::chrono::steady_clock::time_point m_start, m_last{};
  size_t m_width = 0;
  bool m_shown = false;
  std::mutex m_mutex;
};

struct ImportOptions {
  std::string config, source, destination;
  std::vector<std::string> platforms;
  bool no_referrers = false, force = false, json = false;
};

int cmd_import(const ImportOptions& o) {
  auto src = oci::parse_reference(o.source);
  if (!src) {
    std::cerr << "basewatch: SRC: " << src.error().message << "\n";
    return k_exit_usage;
  }
  auto dst = oci::parse_reference(o.destination);
  if (!dst) {
    std::cerr << "basewatch: DST: " << dst.error().message << "\n";
    return k_exit_usage;
  }
  if (!tag_written(o.destination)) dst->tag = src->tag;  // "" for a digest-only SRC: written by digest
  if (dst->pinned()) {
    std::cerr << "basewatch: DST: name a tag (or nothing: SRC's tag is used), not a digest; the copy keeps SRC's digest\n";
    return k_exit_usage;
  }
  mirror::CopyOptions options;
  for (const auto& p : o.platforms) {
    auto parsed = oci::parse_platform(p);
    if (!parsed) {
      std::cerr << "basewatch: --platform: " << parsed.error().message << "\n";
      return k_exit_usage;
    }
    options.platforms.push_back(*parsed);
  }
  options.referrers = !o.no_referrers;
  options.force = o.force;
  config::Config cfg;
  std::string path = o.config.empty() ? (std::getenv("BASEWATCH_CONFIG") ? std::getenv("BASEWATCH_CONFIG") : "") : o.config;
  if (!path.empty()) {
    auto loaded = load_config(path);
    if (!loaded) return k_exit_usage;
    cfg = *loaded;
  }
  setup_logging("warn", "text");
  ProgressLine line(!o.json && ::isatty(STDERR_FILENO));
  options.progress = [&](const mirror::Progress& p) { line.update(p); };
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, registry_settings(cfg));
  mirror::Copier copier(client);
  auto report = copier.copy(*src, *dst, options);
  line.end();
  if (!report) {
    std::cerr << "basewatch: import " << src->str() << " to " << dst->str() << ": " << report.error().message << "\n";
    return exit_for(report.error());
  }
  const auto& r = *report;
  if (o.json) {
    json j = {{"source", r.source},
              {"destination", r.destination},
              {"digest", r.digest},
              {"source_digest", r.source_digest},
              {"manifests", r.manifests},
              {"blobs_uploaded", r.blobs_uploaded},
              {"blobs_mounted", r.blobs_mounted},
              {"blobs_skipped", r.blobs_skipped},
              {"bytes_uploaded", r.bytes_uploaded},
              {"referrers", r.referrers},
              {"already", r.already},
              {"dropped_platforms", r.dropped_platforms},
              {"seconds", r.seconds}};
    std::cout << j.dump(2) << "\n";
    return k_exit_ok;
  }
  if (r.already) {
    std::cout << r.destination << " already holds " << r.digest << " (nothing copied)\n";
    return k_exit_ok;
  }
  std::cout << "copied " << r.source << " to " << r.destination << "\n";
  std::cout << "  digest: " << r.digest << "\n";
  if (r.digest != r.source_digest) {
    std::cout << "  note: only " << join([&] {
      std::vector<std::string> v;
      for (const auto& p : options.platforms) v.push_back(p.str());
      return v;
    }(), ", ")
              << " copied (left out: " << (r.dropped_platforms.empty() ? "none" : join(r.dropped_platforms, ", "))
              << "): the copy is a new index, so its digest differs from the source's " << r.source_digest << "\n";
  }
  if (!r.previous_digest.empty()) std::cout << "  moved the tag from " << r.previous_digest << "\n";
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1fs", r.seconds);
  std::cout << "  " << r.manifests << " manifest(s); blobs: " << r.blobs_uploaded << " uploaded (" << human_bytes(r.bytes_uploaded)
            << "), " << r.blobs_mounted << " mounted, " << r.blobs_skipped << " already there; " << secs << "\n";
  if (r.referrers > 0) std::cout << "  referrers: " << r.referrers << " (signatures, SBOMs, attestations)\n";
  return k_exit_ok;
}

struct SyncOptions {
  std::string config;
  bool dry_run = false, json = false;
};

// One mirrored reference in `mirror sync`.
struct SyncRow {
  std::string upstream, mirror;
  int rule = -1;
  std::string upstream_digest, mirror_digest;
  std::string outcome;  // in-sync | copied | differs (dry run) | failed
  std::string error;
  std::optional<mirror::CopyReport> copy;
};

int cmd_mirror_sync(const SyncOptions& o) {
  auto loaded = load_config(o.config);
  if (!loaded) return k_exit_usage;
  auto cfg = std::make_shared<const config::Config>(std::move(*loaded));
  setup_logging(cfg->log_level == "info" ? "warn" : cfg->log_level, cfg->log_format);
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::cerr << "basewatch: " << model.error().message << "\n";
    return exit_for(model.error());
  }
  for (const auto& e : model->errors) std::cerr << "basewatch: " << e << "\n";
  std::vector<SyncRow> rows;
  for (const auto& [key, item] : model->items) {
    if (item.mirror.empty()) continue;
    SyncRow r;
    r.upstream = key;
    r.mirror = item.mirror;
    r.rule = item.mirror_rule;
    rows.push_back(std::move(r));
  }
  if (rows.empty()) {
    std::cerr << "basewatch: nothing is mirrored (no mirrors: rule covers a reference of the config)\n";
    return k_exit_usage;
  }
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, registry_settings(*cfg));
  // One HEAD upstream and one HEAD mirror per reference, several at a time.
  std::atomic<size_t> next{0};
  auto compare = [&] {
    for (size_t i = next++; i < rows.size(); i = next++) {
      SyncRow& r = rows[i];
      auto up = oci::parse_reference(r.upstream);
      auto mi = oci::parse_reference(r.mirror);
      if (!up || !mi) {
        r.outcome = "failed";
        r.error = !up ? up.error().message : mi.error().message;
        continue;
      }
      auto u = client.resolve(*up, {});
      if (!u) {
        r.outcome = "failed";
        r.error = u.error().message;
        continue;
      }
      r.upstream_digest = u->digest;
      auto m = client.resolve(*mi, {});
      if (!m && m.error().kind != ErrorKind::not_found) {
        r.outcome = "failed";
        r.error = m.error().message;
        continue;
      }
      if (m) r.mirror_digest = m->digest;
      bool all = r.rule < 0 || cfg->mirrors[static_cast<size_t>(r.rule)].all_platforms;
      // A full copy has the upstream's digest; a subset is compared by the
      // copy itself (it reads the index and finds the mirror holds it).
      if (all && r.mirror_digest == r.upstream_digest) r.outcome = "in-sync";
    }
  };
  {
    std::vector<std::thread> threads;
    size_t n = std::min<size_t>(rows.size(), static_cast<size_t>(std::max(1, cfg->poll_concurrency)));
    for (size_t t = 1; t < n; ++t) threads.emplace_back(compare);
    compare();
    for (auto& t : threads) t.join();
  }
  mirror::Copier copier(client);
  for (auto& r : rows) {
    if (!r.outcome.empty()) continue;
    if (o.dry_run) {
      r.outcome = "differs";
      continue;
    }
    auto up = oci::parse_reference(r.upstream);
    auto mi = oci::parse_reference(r.mirror);
    oci::Reference from = *up;
    from.digest = r.upstream_digest;  // the digest the HEAD saw, not whatever the tag names by now
    auto options = mirror::Syncer::options_for(cfg->mirrors[static_cast<size_t>(r.rule)]);
    auto report = copier.copy(from, *mi, options);
    if (!report) {
      r.outcome = "failed";
      r.error = report.error().message;
      continue;
    }
    r.outcome = report->already ? "in-sync" : "copied";
    r.mirror_digest = report->digest;
    r.copy = *report;
  }
  int in_sync = 0, copied = 0, failed = 0, differs = 0;
  for (const auto& r : rows) {
    in_sync += r.outcome == "in-sync";
    copied += r.outcome == "copied";
    failed += r.outcome == "failed";
    differs += r.outcome == "differs";
  }
  if (o.json) {
    json list = json::array();
    for (const auto& r : rows) {
      json j = {{"upstream", r.upstream},
                {"mirror", r.mirror},
                {"outcome", r.outcome},
                {"upstream_digest", r.upstream_digest.empty() ? json(nullptr) : json(r.upstream_digest)},
                {"mirror_digest", r.mirror_digest.empty() ? json(nullptr) : json(r.mirror_digest)},
                {"error", r.error.empty() ? json(nullptr) : json(r.error)},
                {"copy", nullptr}};
      if (r.copy) {
        j["copy"] = {{"blobs_uploaded", r.copy->blobs_uploaded}, {"blobs_mounted", r.copy->blobs_mounted},
                     {"blobs_skipped", r.copy->blobs_skipped},   {"bytes_uploaded", r.copy->bytes_uploaded},
                     {"manifests", r.copy->manifests},           {"seconds", r.copy->seconds}};
      }
      list.push_back(std::move(j));
    }
    json out = {{"mirrors", list}, {"in_sync", in_sync}, {"copied", copied}, {"failed", failed}, {"dry_run", o.dry_run}};
    if (o.dry_run) out["differs"] = differs;
    std::cout << out.dump(2) << "\n";
  } else {
    std::vector<std::vector<std::string>> table{{"MIRROR", "UPSTREAM", "STATE", "DETAIL"}};
    for (const auto& r : rows) {
      std::string detail = r.error;
      if (r.copy) {
        detail = std::to_string(r.copy->blobs_uploaded) + " blob(s) uploaded (" + human_bytes(r.copy->bytes_uploaded) + "), " +
                 std::to_string(r.copy->blobs_mounted) + " mounted, " + std::to_string(r.copy->blobs_skipped) + " already there";
      } else if (r.outcome == "in-sync" || r.outcome == "differs") {
        detail = r.mirror_digest.empty() ? "the mirror has no such tag" : r.mirror_digest;
      }
      table.push_back({r.mirror, r.upstream, r.outcome == "differs" ? "would copy" : r.outcome, detail});
    }
    print_table(table);
    std::cout << in_sync << " in sync, " << copied << " copied, " << failed << " failed"
              << (o.dry_run ? ", " + std::to_string(differs) + " would be copied (dry run: nothing copied)" : "") << "\n";
  }
  return failed > 0 ? k_exit_failure : k_exit_ok;
}

}  // namespace

void add_mirror_commands(CLI::App& app, Commands& out) {
  auto o = std::make_shared<ImportOptions>();
  auto* import = app.add_subcommand("import", "Copy one image, index or OCI artifact from SRC to DST, registry to registry, keeping its digest");
  import->add_option("-c,--config", o->config, "Config file (for registry credentials and settings)");
  import->add_option("--platform", o->platforms, "OS/ARCH[/VARIANT] to copy (repeatable; default all: the digest is kept)")
      ->allow_extra_args(false);
  import->add_flag("--no-referrers", o->no_referrers, "Do not copy signatures, SBOMs and attestations that refer to it");
  import->add_flag("--force", o->force, "Move DST's tag when it names other content");
  import->add_flag("--json", o->json, "One JSON document on stdout");
  import->add_option("SRC", o->source, "Source reference (tag or digest)")->required();
  import->add_option("DST", o->destination, "Destination reference (its tag defaults to SRC's)")->required();
  out.push_back({import, [o] { return cmd_import(*o); }});

  auto so = std::make_shared<SyncOptions>();
  auto* mirror_cmd = app.add_subcommand("mirror", "Local copies of upstream images (mirrors:)");
  mirror_cmd->require_subcommand(1);
  auto* sync = mirror_cmd->add_subcommand("sync", "Compare every mirrored reference (a HEAD each side) and copy what differs");
  add_config_option(*sync, so->config);
  sync->add_flag("--dry-run", so->dry_run, "Compare only; copy nothing");
  sync->add_flag("--json", so->json, "One JSON document on stdout");
  out.push_back({sync, [so] { return cmd_mirror_sync(*so); }});
}

}  // namespace bw::app
