// basewatch import (one copy, registry to registry) and basewatch mirror
// sync (every mirrored reference compared and copied where it differs).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>

#include "app/cli.h"
#include "app/commands.h"
#include "app/logging.h"
#include "app/wiring.h"
#include "mirror/copy.h"
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
}

}  // namespace bw::app
