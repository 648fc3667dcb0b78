#include "config/mirrors.h"

#include "oci/reference.h"

namespace bw::config {

namespace {

bool looks_like_host(std::string_view s) {
  return s == "localhost" || s.find('.') != std::string_view::npos || s.find(':') != std::string_view::npos;
}

// The rest of `repository` below pattern `p` ("" for an exact match).
std::string rest_below(const RepoPattern& p, const std::string& repository) {
  if (!p.prefix) return "";
  if (p.repository.empty()) return repository;
  return repository.substr(p.repository.size() + 1);
}

std::string join_path(const RepoPattern& p, const std::string& rest) {
  std::string repo = p.repository;
  if (!rest.empty()) repo += (repo.empty() ? "" : "/") + rest;
  return p.registry + "/" + repo;
}

// How specific a pattern is: an exact repository beats every prefix; a
// longer prefix beats a shorter one.
size_t specificity(const RepoPattern& p) { return p.prefix ? p.repository.size() : std::string::npos; }

std::optional<MirrorMatch> best(const std::vector<MirrorConfig>& rules, const std::string& registry,
                                const std::string& repository, bool by_upstream) {
  const MirrorConfig* found = nullptr;
  for (const auto& r : rules) {
    const RepoPattern& side = by_upstream ? r.from : r.to;
    if (!side.covers(registry, repository)) continue;
    if (!found || specificity(side) > specificity(by_upstream ? found->from : found->to)) found = &r;
  }
  if (!found) return std::nullopt;
  const RepoPattern& here = by_upstream ? found->from : found->to;
  const RepoPattern& there = by_upstream ? found->to : found->from;
  std::string rest = rest_below(here, repository);
  MirrorMatch m;
  m.rule = found;
  std::string self = registry + "/" + repository;
  std::string other = join_path(there, rest);
  m.upstream = by_upstream ? self : other;
  m.mirror = by_upstream ? other : self;
  return m;
}

// Whether every repository `inner` covers is covered by `outer` too.
bool within(const RepoPattern& inner, const RepoPattern& outer) {
  if (inner.registry != outer.registry) return false;
  if (!outer.prefix) return !inner.prefix && inner.repository == outer.repository;
  if (outer.repository.empty()) return true;
  if (inner.repository == outer.repository) return inner.prefix;  // R/* is within R/*; R itself is not
  return inner.repository.rfind(outer.repository + "/", 0) == 0;
}

}  // namespace

std::string RepoPattern::str() const {
  std::string out = registry;
  if (!repository.empty()) out += "/" + repository;
  if (prefix) out += "/*";
  return out;
}

bool RepoPattern::covers(const std::string& reg, const std::string& repo) const {
  if (reg != registry) return false;
  if (!prefix) return repo == repository;
  if (repository.empty()) return !repo.empty();
  return repo.size() > repository.size() + 1 && repo.compare(0, repository.size(), repository) == 0 &&
         repo[repository.size()] == '/';
}

Result<RepoPattern> parse_repo_pattern(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorKind::invalid, "invalid mirror pattern \"" + std::string(text) + "\": " + why);
  };
  RepoPattern p;
  std::string_view body = text;
  if (body.size() >= 2 && body.substr(body.size() - 2) == "/*") {
    p.prefix = true;
    body.remove_suffix(2);
  }
  if (body.empty()) return bad("expected a repository (docker.io/library/alpine) or a prefix ending in /* (docker.io/library/*)");
  if (body.find('*') != std::string_view::npos) return bad("'*' is only allowed as the last path component (prefix/*)");
  if (body.find('@') != std::string_view::npos) return bad("a pattern names repositories, not digests");
  if (p.prefix && body.find('/') == std::string_view::npos && looks_like_host(body)) {
    // "registry.example.com/*": every repository of a registry.
    auto ref = oci::parse_reference(std::string(body) + "/x");
    if (!ref) return bad(ref.error().message.substr(ref.error().message.find(": ") + 2));
    p.registry = ref->registry;
    return p;
  }
  // A prefix is a path, not a repository: "docker.io/grafana/*" must not
  // become docker.io/library/grafana, so parse it with a component added.
  auto ref = oci::parse_reference(p.prefix ? std::string(body) + "/x" : std::string(body));
  if (!ref) {
    const std::string& m = ref.error().message;
    auto colon = m.find("\": ");
    return bad(colon == std::string::npos ? m : m.substr(colon + 3));
  }
  // A ':' after the last '/' is a tag, which a pattern cannot have.
  auto slash = body.rfind('/');
  if (body.find(':', slash == std::string_view::npos ? 0 : slash) != std::string_view::npos) {
    return bad("a pattern names repositories, not tags (the tag is kept from each reference)");
  }
  p.registry = ref->registry;
  p.repository = ref->repository;
  if (p.prefix) p.repository.resize(p.repository.size() - 2);
  return p;
}

std::optional<MirrorMatch> mirror_of(const std::vector<MirrorConfig>& rules, const std::string& registry,
                                     const std::string& repository) {
  return best(rules, registry, repository, true);
}

std::optional<MirrorMatch> upstream_of(const std::vector<MirrorConfig>& rules, const std::string& registry,
                                       const std::string& repository) {
  return best(rules, registry, repository, false);
}

std::string check_mirror_rules(const std::vector<MirrorConfig>& rules) {
  auto name = [](size_t i) { return "mirrors[" + std::to_string(i) + "]"; };
  for (size_t i = 0; i < rules.size(); ++i) {
    const MirrorConfig& r = rules[i];
    for (size_t j = 0; j < i; ++j) {
      const MirrorConfig& o = rules[j];
      if (r.from.str() == o.from.str()) {
        return r.from_mark.str() + ": " + name(i) + ".from: " + r.from.str() + " is already mirrored by " + name(j) + " (" +
               o.mark.str() + ") to " + o.to.str() + "; one upstream can have one mirror";
      }
      if (r.to.str() == o.to.str()) {
        return r.to_mark.str() + ": " + name(i) + ".to: " + r.to.str() + " already holds the copies of " + name(j) + " (" +
               o.mark.str() + ", " + o.from.str() + "); two upstreams cannot share one mirror";
      }
    }
    for (size_t j = 0; j < rules.size(); ++j) {
      const MirrorConfig& o = rules[j];
      if (!within(r.to, o.from)) continue;
      if (i == j) {
        return r.to_mark.str() + ": " + name(i) + ".to: " + r.to.str() + " is under its own upstream " + r.from.str() +
               " (the copies would be mirrored again)";
      }
      return r.to_mark.str() + ": " + name(i) + ".to: " + r.to.str() + " is under the upstream of " + name(j) + " (" +
             o.mark.str() + ", " + o.from.str() + ") (the copies would be mirrored again)";
    }
  }
  return "";
}

}  // namespace bw::config
