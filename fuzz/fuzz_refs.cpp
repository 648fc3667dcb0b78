// libFuzzer target for basewatch refs' decisions and report: collect the
// input as the Dockerfile of two projects (linux/amd64 and linux/arm64),
// make up what the registries answer from the input's bytes, judge every
// use, and render. Aborts when a use's finding differs from what judging it
// alone gives (judge works each distinct reference out once and shares it),
// when render_json is not json::dump(2) of the same findings to the byte,
// or when the SARIF is not JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/mirrors.h"
#include "refs/refs.h"

using namespace bw;
using nlohmann::json;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

config::MirrorConfig rule(const char* from, const char* to, std::vector<std::string> platforms) {
  config::MirrorConfig m;
  m.from = *config::parse_repo_pattern(from);
  m.to = *config::parse_repo_pattern(to);
  m.all_platforms = platforms.empty();
  m.platforms = std::move(platforms);
  return m;
}

const config::Config& the_config() {
  static const config::Config cfg = [] {
    config::Config c;
    c.mirrors = {rule("docker.io/library/*", "mirror.example.com/hub/library/*", {}),
                 rule("docker.io/*", "mirror.example.com/hub/*", {}),
                 rule("ghcr.io/*", "mirror.example.com/ghcr/*", {"linux/amd64"})};
    c.policy.require_mirror = true;
    std::vector<config::HostPattern> allowed;
    for (const char* h : {"docker.io", "ghcr.io", "mirror.example.com", "*.example.com"}) {
      allowed.push_back(*config::parse_host_pattern(h));
    }
    c.policy.allowed_registries = allowed;
    return c;
  }();
  return cfg;
}

std::string digest(char c) { return "sha256:" + std::string(64, c); }

// Each reference's answer is picked by its hash and the input's first byte:
// missing, not found, unreadable, or found with one of three digests and
// some platforms.
refs::Answers answers_for(const std::vector<refs::Query>& queries, uint8_t salt) {
  refs::Answers out;
  for (const auto& q : queries) {
    std::string key = q.ref.tag.empty() ? q.ref.str() : q.ref.tag_ref();
    size_t h = std::hash<std::string>{}(key) ^ salt;
    refs::Lookup l;
    switch (h % 6) {
      case 0: continue;
      case 1: break;
      case 2: l.error = "connection refused"; break;
      default:
        l.found = true;
        l.digest = digest("abc"[h % 3]);
        if (h & 8) l.platforms["linux/amd64"] = digest('a');
        if (h & 16) l.platforms["linux/arm64"] = digest("ab"[(h >> 5) & 1]);
    }
    out[key] = l;
  }
  return out;
}

std::string fields(const refs::Finding& f) {
  std::string out;
  for (std::string_view s : {f.ref, f.status, f.mirror, f.detail, f.fix, f.fix_reason}) {
    out += s;
    out += '\n';
  }
  return out + std::to_string(f.violation) + std::to_string(f.lookup_failed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::vector<refs::Use>> per_file;
  for (const char* platform : {"linux/amd64", "linux/arm64"}) {
    refs::ProjectFile pf;
    pf.project = platform[7] == 'm' ? "w\xc3\xa9" "b" : "api\x01";
    pf.file = std::string(pf.project) + "/Docker\"file\xff";
    pf.platforms = {platform};
    pf.options.platform = platform;
    auto uses = refs::collect(pf, text);
    if (!uses) return 0;
    per_file.push_back(std::move(*uses));
  }
  std::vector<const refs::Use*> uses;
  for (const auto& list : per_file) {
    for (const auto& u : list) uses.push_back(&u);
  }
  const auto& cfg = the_config();
  auto answers = answers_for(refs::queries(uses, cfg), size > 0 ? data[0] : 0);
  const bool pin = size > 1 && (data[1] & 1);
  auto findings = refs::judge(uses, cfg, answers, pin);
  require(findings.size() == uses.size());
  json want = {{"refs", json::array()}};
  for (size_t i = 0; i < uses.size(); ++i) {
    const auto& f = findings[i];
    require(f.use == uses[i]);
    auto alone = refs::judge(std::vector<const refs::Use*>{uses[i]}, cfg, answers, pin);
    require(alone.size() == 1 && fields(alone[0]) == fields(f));
    const auto& u = *f.use;
    want["refs"].push_back({{"project", u.project()},
                            {"file", u.file()},
                            {"line", u.line()},
                            {"column", u.column()},
                            {"written", u.image.written},
                            {"ref", f.ref.empty() ? json(nullptr) : json(std::string(f.ref))},
                            {"status", std::string(f.status)},
                            {"mirror", f.mirror.empty() ? json(nullptr) : json(std::string(f.mirror))},
                            {"detail", std::string(f.detail)},
                            {"via", u.image.via},
                            {"kind", u.image.kind}});
  }
  require(refs::render_json(findings) == want.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  require(!json::parse(refs::render_sarif(findings, "fuzz"), nullptr, false).is_discarded());
  require(!refs::render_table(findings).empty());
  return 0;
}
