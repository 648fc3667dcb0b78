// refs as pure decisions: judge() works out each distinct reference once and
// must say of every use what judging it alone would say; findings keep their
// texts on their own; queries() over pointers asks what it asks over one
// vector; render_json() is json::dump(2) to the byte.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "config/mirrors.h"
#include "refs/refs.h"

using namespace bw;
using nlohmann::json;

namespace {

const std::string k_a = "sha256:" + std::string(64, 'a');
const std::string k_b = "sha256:" + std::string(64, 'b');
const std::string k_c = "sha256:" + std::string(64, 'c');
const std::string k_d = "sha256:" + std::string(64, 'd');

config::MirrorConfig rule(const std::string& from, const std::string& to, std::vector<std::string> platforms = {}) {
  config::MirrorConfig m;
  m.from = *config::parse_repo_pattern(from);
  m.to = *config::parse_repo_pattern(to);
  m.all_platforms = platforms.empty();
  m.platforms = std::move(platforms);
  return m;
}

// docker.io/library copied whole, ghcr.io/org for linux/amd64 only, three
// registries allowed.
config::Config make_config() {
  config::Config cfg;
  cfg.mirrors = {rule("docker.io/library/*", "mirror.example.com/hub/library/*"),
                 rule("ghcr.io/org/*", "mirror.example.com/ghcr/org/*", {"linux/amd64"})};
  cfg.policy.require_mirror = true;
  std::vector<config::HostPattern> allowed;
  for (const char* h : {"docker.io", "ghcr.io", "mirror.example.com"}) allowed.push_back(*config::parse_host_pattern(h));
  cfg.policy.allowed_registries = allowed;
  return cfg;
}

// Every status once, and names used twice.
const std::string k_dockerfile =
    "ARG T\n"
    "FROM alpine:3.20 AS a\n"
    "FROM mirror.example.com/hub/library/alpine:3.20 AS b\n"
    "FROM ghcr.io/org/app:1 AS c\n"
    "FROM quay.io/x/y:1 AS d\n"
    "FROM alpine:${T} AS e\n"
    "FROM alpine:3.20@" + k_c + " AS f\n"
    "FROM mirror.example.com/hub/library/golang:1.23 AS g\n"
    "FROM alpine:3.20 AS h\n"
    "COPY --from=ghcr.io/org/app:1 /a /a\n";

// The same file in two projects: web builds linux/amd64, api linux/arm64.
std::vector<std::vector<refs::Use>> collect_both() {
  std::vector<std::vector<refs::Use>> out;
  for (const auto& [project, platform] : {std::pair{"web", "linux/amd64"}, std::pair{"api", "linux/arm64"}}) {
    refs::ProjectFile pf;
    pf.project = project;
    pf.file = std::string(project) + "/Dockerfile";
    pf.platforms = {platform};
    pf.options.platform = platform;
    auto uses = refs::collect(pf, k_dockerfile);
    REQUIRE(uses);
    out.push_back(std::move(*uses));
  }
  return out;
}

refs::Lookup found(const std::string& digest, std::map<std::string, std::string> platforms = {}) {
  refs::Lookup l;
  l.found = true;
  l.digest = digest;
  l.platforms = std::move(platforms);
  return l;
}

// alpine mirrored; golang behind; the ghcr index differs by design (a
// subset copy), its linux/amd64 image is the same, its linux/arm64 is not
// copied; the pinned alpine's digest is no longer the tag's.
refs::Answers make_answers() {
  refs::Answers a;
  a["docker.io/library/alpine:3.20"] = found(k_a);
  a["mirror.example.com/hub/library/alpine:3.20"] = found(k_a);
  a["docker.io/library/golang:1.23"] = found(k_a);
  a["mirror.example.com/hub/library/golang:1.23"] = found(k_b);
  a["ghcr.io/org/app:1"] = found(k_a, {{"linux/amd64", k_b}, {"linux/arm64", k_c}});
  a["mirror.example.com/ghcr/org/app:1"] = found(k_d, {{"linux/amd64", k_b}});
  return a;
}

std::vector<const refs::Use*> pointers(const std::vector<std::vector<refs::Use>>& per_file) {
  std::vector<const refs::Use*> out;
  for (const auto& list : per_file) {
    for (const auto& u : list) out.push_back(&u);
  }
  return out;
}

std::string line_of(const refs::Finding& f) {
  return f.use->project() + ":" + std::to_string(f.use->line()) + " " + std::string(f.status) + " ref=" + std::string(f.ref) +
         " mirror=" + std::string(f.mirror) + " detail=" + std::string(f.detail) + " violation=" + std::to_string(f.violation) +
         " lookup_failed=" + std::to_string(f.lookup_failed) + " fix=" + std::string(f.fix) + " fix_reason=" +
         std::string(f.fix_reason);
}

}  // namespace

TEST_CASE("judge: every use of a reference named many times gets what judging it alone gives", "[refs]") {
  auto per_file = collect_both();
  auto uses = pointers(per_file);
  REQUIRE(uses.size() == 18);
  auto cfg = make_config();
  auto answers = make_answers();
  for (bool pin : {false, true}) {
    INFO("pin " << pin);
    auto all = refs::judge(uses, cfg, answers, pin);
    REQUIRE(all.size() == uses.size());
    for (size_t i = 0; i < uses.size(); ++i) {
      auto alone = refs::judge(std::vector<const refs::Use*>{uses[i]}, cfg, answers, pin);
      REQUIRE(alone.size() == 1);
      CHECK(all[i].use == uses[i]);
      CHECK(line_of(all[i]) == line_of(alone[0]));
    }
  }

  // What they are, to the letter: the ghcr reference holds for web's
  // platform and not for api's, so the two projects' uses differ.
  auto all = refs::judge(uses, cfg, answers, false);
  std::vector<std::string> got;
  for (const auto& f : all) got.push_back(line_of(f));
  const std::string behind_arm = "the mirror does not hold the upstream's current content: the mirror holds " +
                                 k_d.substr(0, 19) + ", the upstream is at " + k_a.substr(0, 19);
  const std::vector<std::string> web = {
      "web:2 bypass ref=docker.io/library/alpine:3.20 mirror=mirror.example.com/hub/library/alpine:3.20 detail=names the "
      "upstream of mirror mirror.example.com/hub/library/alpine, which holds the upstream's current digest violation=1 "
      "lookup_failed=0 fix=mirror.example.com/hub/library/alpine:3.20 fix_reason=",
      "web:3 mirrored ref=mirror.example.com/hub/library/alpine:3.20 mirror=mirror.example.com/hub/library/alpine:3.20 "
      "detail=the copy of docker.io/library/alpine:3.20 holds the upstream's current digest violation=0 lookup_failed=0 fix= "
      "fix_reason=",
      "web:4 bypass ref=ghcr.io/org/app:1 mirror=mirror.example.com/ghcr/org/app:1 detail=names the upstream of mirror "
      "mirror.example.com/ghcr/org/app, which holds the upstream's current digest violation=1 lookup_failed=0 "
      "fix=mirror.example.com/ghcr/org/app:1 fix_reason=",
      "web:5 forbidden ref=quay.io/x/y:1 mirror= detail=registry quay.io is not in policy.allowed_registries violation=1 "
      "lookup_failed=0 fix= fix_reason=no mirror to point it at",
      "web:6 unresolved ref= mirror= detail=invalid reference \"alpine:\": tag is empty (expanded from \"alpine:${T}\"); T is "
      "not set violation=0 lookup_failed=0 fix= fix_reason=it uses an ARG with no value",
      "web:7 bypass ref=docker.io/library/alpine:3.20@" + k_c + " mirror=mirror.example.com/hub/library/alpine:3.20@" + k_c +
          " detail=names the upstream of mirror mirror.example.com/hub/library/alpine violation=1 lookup_failed=0 fix= "
          "fix_reason=pinned to " + k_c.substr(0, 19) +
          ", which the mirror's tag no longer is (--pin pins the mirror's digest)",
      "web:8 mirror-behind ref=mirror.example.com/hub/library/golang:1.23 mirror=mirror.example.com/hub/library/golang:1.23 "
      "detail=the mirror holds " + k_b.substr(0, 19) + ", the upstream is at " + k_a.substr(0, 19) +
          " violation=0 lookup_failed=0 fix= fix_reason=",
      "web:9 bypass ref=docker.io/library/alpine:3.20 mirror=mirror.example.com/hub/library/alpine:3.20 detail=names the "
      "upstream of mirror mirror.example.com/hub/library/alpine, which holds the upstream's current digest violation=1 "
      "lookup_failed=0 fix=mirror.example.com/hub/library/alpine:3.20 fix_reason=",
      "web:10 bypass ref=ghcr.io/org/app:1 mirror=mirror.example.com/ghcr/org/app:1 detail=names the upstream of mirror "
      "mirror.example.com/ghcr/org/app, which holds the upstream's current digest violation=1 lookup_failed=0 "
      "fix=mirror.example.com/ghcr/org/app:1 fix_reason=",
  };
  for (size_t i = 0; i < web.size(); ++i) {
    CHECK(got[i] == web[i]);
    std::string api = web[i];
    api.replace(0, 3, "api");
    if (i == 2 || i == 8) {
      // linux/arm64 is not copied: that use stays, with the reason.
      api = "api:" + std::to_string(i == 2 ? 4 : 10) +
            " bypass ref=ghcr.io/org/app:1 mirror=mirror.example.com/ghcr/org/app:1 detail=names the upstream of mirror "
            "mirror.example.com/ghcr/org/app; " + behind_arm.substr(behind_arm.find("the mirror holds")) +
            " violation=1 lookup_failed=0 fix= fix_reason=" + behind_arm;
    }
    CHECK(got[web.size() + i] == api);
  }
}

TEST_CASE("judge: a finding keeps its texts when the findings, answers and config it came from are gone", "[refs]") {
  auto per_file = collect_both();
  auto uses = pointers(per_file);
  refs::Finding kept;
  {
    auto cfg = make_config();
    auto answers = make_answers();
    auto all = refs::judge(uses, cfg, answers, false);
    kept = all[7];  // web's second alpine:3.20, a copy of the first one's judgement
  }
  CHECK(kept.use == uses[7]);
  CHECK(kept.status == "bypass");
  CHECK(kept.ref == "docker.io/library/alpine:3.20");
  CHECK(kept.fix == "mirror.example.com/hub/library/alpine:3.20");
  CHECK(kept.detail ==
        "names the upstream of mirror mirror.example.com/hub/library/alpine, which holds the upstream's current digest");
}

TEST_CASE("queries: uses kept per file ask what one vector of them asks, each reference once", "[refs]") {
  auto per_file = collect_both();
  std::vector<refs::Use> flat;
  for (const auto& list : per_file) flat.insert(flat.end(), list.begin(), list.end());
  auto cfg = make_config();
  auto text = [](const std::vector<refs::Query>& qs) {
    std::vector<std::string> out;
    for (const auto& q : qs) {
      std::string s = q.ref.str();
      for (const auto& p : q.platforms) s += " " + p;
      out.push_back(s);
    }
    return out;
  };
  auto from_pointers = text(refs::queries(pointers(per_file), cfg));
  CHECK(from_pointers == text(refs::queries(flat, cfg)));
  // The subset rule asks for both projects' platforms; the pinned alpine is
  // asked by its tag, once with the unpinned one.
  CHECK(from_pointers == std::vector<std::string>{
                             "docker.io/library/alpine:3.20 linux/amd64 linux/arm64",
                             "docker.io/library/golang:1.23",
                             "ghcr.io/org/app:1 linux/amd64 linux/arm64",
                             "mirror.example.com/ghcr/org/app:1 linux/amd64 linux/arm64",
                             "mirror.example.com/hub/library/alpine:3.20 linux/amd64 linux/arm64",
                             "mirror.example.com/hub/library/golang:1.23",
                         });
}

TEST_CASE("render_json: json::dump(2) to the byte, strings escaped as nlohmann escapes them", "[refs]") {
  CHECK(refs::render_json({}) == "{\n  \"refs\": []\n}\n");

  refs::ProjectFile pf;
  pf.project = "w\xc3\xa9" "b";  // UTF-8
  pf.file = "dir/a \"quoted\" \\ back\tslash \x01 and \xff/Dockerfile";  // control, invalid UTF-8
  pf.platforms = {"linux/amd64"};
  auto uses = refs::collect(pf, k_dockerfile);
  REQUIRE(uses);
  auto cfg = make_config();
  auto findings = refs::judge(*uses, cfg, make_answers(), false);
  json want = {{"refs", json::array()}};
  for (const auto& f : findings) {
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
  std::string got = refs::render_json(findings);
  CHECK(got == want.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  CHECK(got.find("\"file\": \"dir/a \\\"quoted\\\" \\\\ back\\tslash \\u0001 and \xef\xbf\xbd/Dockerfile\"") != std::string::npos);
}

TEST_CASE("render_json: every byte value, at every place of a word and of the tail, escaped as nlohmann escapes it", "[refs]") {
  auto cfg = make_config();
  size_t escaped = 0;
  for (int b = 0; b < 256; ++b) {
    for (size_t at = 0; at < 19; ++at) {
      refs::ProjectFile pf;
      pf.project = "p";
      pf.file = std::string(19, 'a');
      pf.file[at] = static_cast<char>(b);
      pf.platforms = {"linux/amd64"};
      auto uses = refs::collect(pf, "FROM alpine:3.20\n");
      REQUIRE(uses);
      auto findings = refs::judge(*uses, cfg, make_answers(), false);
      json file = pf.file;
      std::string want = file.dump(-1, ' ', false, json::error_handler_t::replace);
      std::string got = refs::render_json(findings);
      INFO("byte " << b << " at " << at);
      REQUIRE(got.find("\"file\": " + want + ",") != std::string::npos);
      escaped += want != "\"" + pf.file + "\"";
    }
  }
  // Control bytes, '"', '\\' and every byte from 0x80 (each alone is
  // invalid UTF-8) are written otherwise; DEL stands as it is.
  CHECK(escaped == (32 + 2 + 128) * 19);
}
