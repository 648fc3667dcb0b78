#include "refs/refs.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "config/mirrors.h"

namespace bw::refs {

using json = nlohmann::json;

int Use::line() const { return image.source.empty() ? image.line : image.source.front().line; }
int Use::column() const { return image.source.empty() ? 0 : image.source.front().column; }

Result<std::vector<Use>> collect(const ProjectFile& pf, std::string_view text) {
  auto options = pf.options;
  options.keep_unresolved = true;
  auto scanned = dockerfile::scan(text, pf.file, options);
  if (scanned.error) return make_error(ErrorKind::invalid, *scanned.error);
  std::vector<Use> out;
  out.reserve(scanned.images.size());
  for (size_t i = 0; i < scanned.images.size(); ++i) {
    Use u;
    u.project = pf.project;
    u.file = pf.file;
    u.image = std::move(scanned.images[i]);
    u.index = i;
    u.platforms = pf.platforms;
    out.push_back(std::move(u));
  }
  return out;
}

namespace {

// The reference `ref` would be under `name` ("registry/repository"): the
// same tag and digest.
std::string renamed(const oci::Reference& ref, const std::string& name) {
  std::string out = name;
  if (!ref.tag.empty()) out += ":" + ref.tag;
  if (!ref.digest.empty()) out += "@" + ref.digest;
  return out;
}

// The text to look a reference up by: its tag ref, or name@digest without a tag.
std::string key_of(const oci::Reference& ref) { return ref.tag.empty() ? ref.str() : ref.tag_ref(); }

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) : d; }

struct Side {
  std::optional<config::MirrorMatch> match;
  bool names_mirror = false;  // the reference names the mirror side
};

Side side_of(const config::Config& cfg, const oci::Reference& ref) {
  Side s;
  if (auto m = config::upstream_of(cfg.mirrors, ref.registry, ref.repository)) {
    s.match = m;
    s.names_mirror = true;
  } else if (auto u = config::mirror_of(cfg.mirrors, ref.registry, ref.repository)) {
    s.match = u;
  }
  return s;
}

bool subset(const config::MirrorMatch& m) { return m.rule && !m.rule->all_platforms; }

// Whether the mirror's answer holds the upstream's current content: the same
// digest, or for a rule that copies some platforms, the same digest for each
// of the project's platforms (the index digests differ by design).
bool holds(const Lookup& up, const Lookup& mirror, const config::MirrorMatch& m, const std::vector<std::string>& platforms) {
  if (!up.found || !mirror.found) return false;
  if (!subset(m)) return up.digest == mirror.digest;
  if (up.digest == mirror.digest) return true;
  for (const auto& p : platforms) {
    auto a = up.platforms.find(p), b = mirror.platforms.find(p);
    if (a == up.platforms.end() || b == mirror.platforms.end() || a->second != b->second) return false;
  }
  return !platforms.empty();
}

// A pin that is neither the tag's digest nor one of its platforms' digests.
bool stale(const std::string& pin, const Lookup& tag) {
  if (!tag.found || pin == tag.digest) return false;
  for (const auto& [p, d] : tag.platforms) {
    if (d == pin) return false;
  }
  return true;
}

const Lookup* answer(const Answers& a, const std::string& key) {
  auto it = a.find(key);
  return it == a.end() ? nullptr : &it->second;
}

std::string why_not(const Lookup* l, const std::string& what) {
  if (!l) return what + " was not looked up";
  if (l->error.empty()) return what + " does not exist";
  return "cannot read " + what + ": " + l->error;
}

}  // namespace

std::vector<Query> queries(const std::vector<Use>& uses, const config::Config& cfg) {
  std::map<std::string, Query> wanted;
  auto add = [&](const oci::Reference& ref, const std::vector<std::string>& platforms, bool with_platforms) {
    auto& q = wanted[key_of(ref)];
    if (q.ref.repository.empty()) {
      q.ref = ref;
      if (!ref.tag.empty()) q.ref.digest.clear();
    }
    if (!with_platforms) return;
    for (const auto& p : platforms) {
      if (std::find(q.platforms.begin(), q.platforms.end(), p) == q.platforms.end()) q.platforms.push_back(p);
    }
  };
  for (const auto& u : uses) {
    if (u.image.unresolved || u.image.ref.repository.empty()) continue;
    const auto& ref = u.image.ref;
    if (!cfg.policy.allows(ref.registry)) continue;
    Side s = side_of(cfg, ref);
    bool pinned = ref.pinned() && !ref.tag.empty();
    if (s.match) {
      bool plats = subset(*s.match) || pinned;
      auto up = oci::parse_reference(renamed(ref, s.match->upstream));
      auto mirror = oci::parse_reference(renamed(ref, s.match->mirror));
      if (!up || !mirror) continue;
      if (ref.tag.empty()) {
        add(*mirror, {}, false);  // digest-only: does the mirror hold it
      } else {
        add(*up, u.platforms, plats);
        add(*mirror, u.platforms, plats);
      }
    } else if (pinned) {
      add(ref, u.platforms, true);
    }
  }
  std::vector<Query> out;
  for (auto& [k, q] : wanted) out.push_back(std::move(q));
  return out;
}

std::vector<Finding> judge(const std::vector<Use>& uses, const config::Config& cfg, const Answers& answers, bool pin) {
  std::vector<Finding> out;
  out.reserve(uses.size());
  for (const auto& u : uses) {
    Finding f;
    f.use = &u;
    const auto& ref = u.image.ref;
    if (u.image.unresolved || ref.repository.empty()) {
      f.status = "unresolved";
      f.detail = u.image.unresolved.value_or("it uses an ARG with no value");
      f.fix_reason = "it uses an ARG with no value";
      out.push_back(std::move(f));
      continue;
    }
    f.ref = ref.str();
    if (!cfg.policy.allows(ref.registry)) {
      f.status = "forbidden";
      f.violation = true;
      f.detail = "registry " + ref.registry + " is not in policy.allowed_registries";
      f.fix_reason = "no mirror to point it at";
      if (auto s = side_of(cfg, ref); s.match && !s.names_mirror) {
        f.mirror = renamed(ref, s.match->mirror);
        f.fix_reason = "its registry is forbidden; its mirror " + f.mirror + " is named by hand";
      }
      out.push_back(std::move(f));
      continue;
    }
    Side s = side_of(cfg, ref);
    const bool digest_only = ref.tag.empty();
    if (!s.match) {
      f.status = "unmirrored";
      f.detail = "no mirror covers " + ref.name();
      f.fix_reason = "no mirror covers it";
      if (ref.pinned() && !digest_only) {
        const Lookup* tag = answer(answers, ref.tag_ref());
        if (tag && stale(ref.digest, *tag)) {
          f.status = "stale-pin";
          f.detail = "pinned to " + short_digest(ref.digest) + ", but " + ref.tag_ref() + " is " + short_digest(tag->digest) + " now";
        } else if (!tag || !tag->found) {
          f.lookup_failed = true;
          f.detail += "; " + why_not(tag, ref.tag_ref());
        }
      }
      out.push_back(std::move(f));
      continue;
    }
    const auto& m = *s.match;
    oci::Reference plain = ref;
    std::string mirror_ref = renamed(ref, m.mirror);
    std::string upstream_ref = renamed(ref, m.upstream);
    f.mirror = s.names_mirror ? ref.str() : mirror_ref;
    auto mirror_parsed = oci::parse_reference(mirror_ref);
    auto upstream_parsed = oci::parse_reference(upstream_ref);
    const Lookup* mirror = mirror_parsed ? answer(answers, key_of(*mirror_parsed)) : nullptr;
    const Lookup* up = upstream_parsed ? answer(answers, key_of(*upstream_parsed)) : nullptr;
    bool held = false;
    std::string behind;  // why the mirror does not (or may not) hold the upstream's content
    if (digest_only) {
      held = mirror && mirror->found;
      if (!held) behind = why_not(mirror, renamed(ref, m.mirror));
      f.lookup_failed = !held && mirror && !mirror->error.empty();
    } else {
      held = up && mirror && holds(*up, *mirror, m, u.platforms);
      if (!held) {
        if (!mirror || !mirror->found) {
          behind = mirror && mirror->error.empty() ? "the mirror has no " + mirror_parsed->tag_ref() + " yet"
                                                   : why_not(mirror, mirror_parsed ? mirror_parsed->tag_ref() : mirror_ref);
          f.lookup_failed = !mirror || !mirror->error.empty();
        } else if (!up || !up->found) {
          behind = why_not(up, upstream_parsed ? upstream_parsed->tag_ref() : upstream_ref);
          f.lookup_failed = true;
        } else {
          behind = "the mirror holds " + short_digest(mirror->digest) + ", the upstream is at " + short_digest(up->digest);
        }
      }
    }
    // The reference a fix writes: the mirror's, pinned when asked (or when
    // it was pinned to what the mirror holds).
    auto fix_for = [&](bool names_mirror) -> std::string {
      oci::Reference t = *mirror_parsed;
      if (digest_only) return t.str();
      std::string mirror_digest = mirror ? mirror->digest : "";
      if (pin) {
        t.digest = mirror_digest;
      } else if (ref.pinned()) {
        if (mirror && (ref.digest == mirror->digest || !stale(ref.digest, *mirror))) t.digest = ref.digest;
        else if (!names_mirror) return "";
      }
      return t.str();
    };
    if (!s.names_mirror) {
      f.status = "bypass";
      f.violation = cfg.policy.require_mirror;
      f.detail = "names the upstream of mirror " + m.mirror;
      if (!mirror_parsed) {
        f.fix_reason = "the mirror reference is not valid";
      } else if (!held) {
        f.fix_reason = "the mirror does not hold the upstream's current content: " + behind;
        f.detail += "; " + behind;
      } else if (std::string t = fix_for(false); t.empty()) {
        f.fix_reason = "pinned to " + short_digest(ref.digest) + ", which the mirror's tag no longer is (--pin pins the mirror's digest)";
      } else {
        f.fix = t;
        f.detail += ", which holds the upstream's current digest";
      }
      out.push_back(std::move(f));
      continue;
    }
    // It names the mirror.
    f.status = held ? "mirrored" : "mirror-behind";
    f.detail = held ? "the copy of " + (digest_only ? renamed(ref, m.upstream) : upstream_parsed->tag_ref()) +
                          " holds the upstream's current digest"
                    : behind;
    if (held && ref.pinned() && !digest_only && mirror && stale(ref.digest, *mirror)) {
      f.status = "stale-pin";
      f.detail = "pinned to " + short_digest(ref.digest) + ", but " + mirror_parsed->tag_ref() + " is " +
                 short_digest(mirror->digest) + " now";
    }
    if (pin && held && !digest_only) {
      std::string t = fix_for(true);
      if (t != ref.str()) f.fix = t;
    } else if (pin && !held) {
      f.fix_reason = "the mirror does not hold the upstream's current content: " + behind;
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::map<std::string, size_t> counts(const std::vector<Finding>& findings) {
  std::map<std::string, size_t> out;
  for (const auto& s : k_statuses) out[s] = 0;
  for (const auto& f : findings) ++out[f.status];
  return out;
}

namespace {

std::string dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n"; }

// RFC 3986 path characters kept, everything else %XX: a SARIF uri.
std::string uri_of(const std::string& path) {
  static const char* k_hex = "0123456789ABCDEF";
  std::string out = path.rfind('/', 0) == 0 ? "file://" : "";
  for (unsigned char c : path) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '-' ||
                c == '.' || c == '_' || c == '~';
    if (keep) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += k_hex[c >> 4];
      out += k_hex[c & 15];
    }
  }
  return out;
}

const std::map<std::string, std::string>& rule_text() {
  static const std::map<std::string, std::string> k = {
      {"mirrored", "Names a mirror whose copy holds the upstream's current digest"},
      {"mirror-behind", "Names a mirror whose copy does not hold the upstream's current digest yet"},
      {"bypass", "Names an upstream that a mirror covers: it should name the mirror"},
      {"unmirrored", "No mirror covers it"},
      {"forbidden", "Its registry is outside policy.allowed_registries"},
      {"stale-pin", "An @sha256: pin that is no longer the tag's digest"},
      {"unresolved", "It uses an ARG with no value"},
  };
  return k;
}

}  // namespace

namespace {

// A JSON string: plain ASCII as is, anything else through nlohmann (invalid
// UTF-8 becomes U+FFFD instead of an exception).
void append_string(std::string& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (plain) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

void append_string_or_null(std::string& out, const std::string& s) {
  if (s.empty()) out += "null";
  else append_string(out, s);
}

}  // namespace

// Written straight to text in the layout json::dump(2) gives (keys sorted):
// tens of thousands of references stay cheap.
std::string render_json(const std::vector<Finding>& findings) {
  std::string out = findings.empty() ? "{\n  \"refs\": []" : "{\n  \"refs\": [";
  out.reserve(findings.size() * 400 + 32);
  for (size_t i = 0; i < findings.size(); ++i) {
    const Finding& f = findings[i];
    const Use& u = *f.use;
    out += i == 0 ? "\n    {\n      \"column\": " : ",\n    {\n      \"column\": ";
    out += std::to_string(u.column());
    out += ",\n      \"detail\": ";
    append_string(out, f.detail);
    out += ",\n      \"file\": ";
    append_string(out, u.file);
    out += ",\n      \"kind\": ";
    append_string(out, u.image.kind);
    out += ",\n      \"line\": " + std::to_string(u.line()) + ",\n      \"mirror\": ";
    append_string_or_null(out, f.mirror);
    out += ",\n      \"project\": ";
    append_string(out, u.project);
    out += ",\n      \"ref\": ";
    append_string_or_null(out, f.ref);
    out += ",\n      \"status\": ";
    append_string(out, f.status);
    out += ",\n      \"via\": ";
    append_string(out, u.image.via);
    out += ",\n      \"written\": ";
    append_string(out, u.image.written);
    out += "\n    }";
  }
  out += findings.empty() ? "\n}\n" : "\n  ]\n}\n";
  return out;
}

std::string render_sarif(const std::vector<Finding>& findings, const std::string& version) {
  json rules = json::array();
  std::map<std::string, size_t> index;
  for (const auto& s : k_statuses) {
    index[s] = rules.size();
    rules.push_back({{"id", s},
                     {"name", s},
                     {"shortDescription", {{"text", rule_text().at(s)}}},
                     {"helpUri", "https://github.com/basewatch/basewatch#use-your-local-copies"}});
  }
  json results = json::array();
  for (const auto& f : findings) {
    const Use& u = *f.use;
    json r = {{"ruleId", f.status}, {"ruleIndex", index[f.status]}};
    bool pass = f.status == "mirrored" || f.status == "unmirrored";
    r["kind"] = pass ? "pass" : "fail";
    r["level"] = pass ? "none" : f.violation ? "error" : "warning";
    std::string text = u.image.written + ": " + f.status + " (" + f.detail + ")";
    r["message"] = {{"text", text}};
    json physical = {{"artifactLocation", {{"uri", uri_of(u.file)}}}};
    if (u.line() > 0) {
      json region = {{"startLine", u.line()}};
      if (u.column() > 0 && u.image.source.size() == 1) {
        region["startColumn"] = u.column();
        region["endColumn"] = u.column() + static_cast<int>(u.image.written.size());
      }
      region["snippet"] = {{"text", u.image.written}};
      physical["region"] = region;
    }
    r["locations"] = json::array({{{"physicalLocation", physical}}});
    json props = {{"project", u.project}, {"via", u.image.via}, {"kind", u.image.kind}};
    if (!f.ref.empty()) props["ref"] = f.ref;
    if (!f.mirror.empty()) props["mirror"] = f.mirror;
    r["properties"] = props;
    results.push_back(r);
  }
  json log = {{"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
              {"version", "2.1.0"},
              {"runs", json::array({{{"tool", {{"driver", {{"name", "basewatch"},
                                                            {"version", version},
                                                            {"informationUri", "https://github.com/basewatch/basewatch"},
                                                            {"rules", rules}}}}},
                                     {"columnKind", "unicodeCodePoints"},
                                     {"results", results}}})}};
  return dump(log);
}

std::string render_table(const std::vector<Finding>& findings) {
  std::vector<std::vector<std::string>> rows = {{"STATUS", "PLACE", "WRITTEN", "REFERENCE", "DETAIL"}};
  for (const auto& f : findings) {
    const Use& u = *f.use;
    std::string place = u.file + ":" + std::to_string(u.line()) + (u.column() > 0 ? ":" + std::to_string(u.column()) : "");
    rows.push_back({f.status, place, u.image.written, f.ref.empty() ? "-" : f.ref, f.detail});
  }
  std::vector<size_t> width(5, 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  auto c = counts(findings);
  std::string summary;
  for (const auto& s : k_statuses) {
    if (c[s] == 0) continue;
    summary += (summary.empty() ? "" : ", ") + std::to_string(c[s]) + " " + s;
  }
  size_t broken = 0;
  for (const auto& f : findings) broken += f.violation;
  out += std::to_string(findings.size()) + " references" + (summary.empty() ? "" : ": " + summary) + "; " +
         (broken ? std::to_string(broken) + " break the policy" : "the policy holds") + "\n";
  return out;
}

namespace {

// Lines with their line ends ("\n", "\r\n", or none for a last line without one).
std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    out.push_back(text.substr(at, end - at));
    at = end;
  }
  return out;
}

void diff_line(std::string& out, char mark, std::string_view line) {
  out += mark;
  out.append(line);
  if (line.empty() || line.back() != '\n') out += "\n\\ No newline at end of file\n";
}

}  // namespace

std::string unified_diff(const std::string& path, std::string_view before, std::string_view after) {
  if (before == after) return "";
  auto a = lines_of(before), b = lines_of(after);
  std::string out = "--- " + path + "\n+++ " + path + "\n";
  if (a.size() != b.size()) {
    // Edits never add or remove lines; should one, the whole file is one hunk.
    out += "@@ -1," + std::to_string(a.size()) + " +1," + std::to_string(b.size()) + " @@\n";
    for (auto l : a) diff_line(out, '-', l);
    for (auto l : b) diff_line(out, '+', l);
    return out;
  }
  constexpr size_t k_context = 3;
  std::vector<size_t> changed;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) changed.push_back(i);
  }
  size_t k = 0;
  while (k < changed.size()) {
    size_t first = changed[k], last = changed[k];
    while (k + 1 < changed.size() && changed[k + 1] <= last + 2 * k_context + 1) last = changed[++k];
    ++k;
    size_t from = first >= k_context ? first - k_context : 0;
    size_t to = std::min(a.size(), last + k_context + 1);
    out += "@@ -" + std::to_string(from + 1) + "," + std::to_string(to - from) + " +" + std::to_string(from + 1) + "," +
           std::to_string(to - from) + " @@\n";
    for (size_t i = from; i < to; ++i) {
      if (a[i] == b[i]) {
        diff_line(out, ' ', a[i]);
      } else {
        diff_line(out, '-', a[i]);
      }
      // Changed lines are shown as a block: all '-' then all '+' of a run.
      if (a[i] != b[i] && (i + 1 == to || a[i + 1] == b[i + 1])) {
        size_t j = i;
        while (j > from && a[j - 1] != b[j - 1]) --j;
        for (size_t x = j; x <= i; ++x) diff_line(out, '+', b[x]);
      }
    }
  }
  return out;
}

}  // namespace bw::refs
