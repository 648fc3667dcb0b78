// Chains and the already-built check, driven through Watcher::poll_once with
// a fake registry and a fake clock: a change fires the direct users of the
// moved image only; a produced image that moves fires its own users; a
// project whose image names the new base digest is not rebuilt.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/unit/fake_registry.h"
#include "util/metrics.h"
#include "watcher/watcher.h"

using namespace bw;
using bw::testing::FakeRegistry;
using json = nlohmann::json;

namespace {

const std::string k_upstream = "registry.example.com/library/alpine:3.20";
const std::string k_base_image = "registry.example.com/internal/base:latest";
const std::string k_app_image = "registry.example.com/team/app:latest";

struct Chain {
  FakeRegistry reg;
  net::FakeHttpClient http{[this](const net::Request& r) { return reg.handle(r); }};
  FakeClock clock;
  registry::Client client{http, clock, {}};
  std::unique_ptr<db::Store> store = std::move(db::Store::open(":memory:").value());
  config::Config cfg;
  std::unique_ptr<watcher::Watcher> w;

  // upstream -> base (produces internal/base) -> app (produces team/app)
  Chain() {
    cfg.poll_interval = Millis(60'000);
    cfg.poll_jitter = 0;
    cfg.poll_settle = Millis(0);
    auto m = std::make_shared<watcher::Model>();
    m->projects = {project("base", k_upstream, k_base_image), project("app", k_base_image, k_app_image)};
    std::vector<dockerfile::ProjectInput> inputs;
    for (const auto& p : m->projects) {
      auto& item = m->items[p.bases[0].ref];
      item.ref = *oci::parse_reference(p.bases[0].ref);
      item.interval = cfg.poll_interval;
      item.projects.insert(p.name);
      item.platforms = {*oci::parse_platform("linux/amd64")};
      inputs.push_back(dockerfile::ProjectInput{p.name, p.image, {p.bases[0].ref}});
    }
    m->items[k_base_image].produced = true;
    m->graph = std::make_shared<dockerfile::Graph>(dockerfile::Graph::build(inputs).value());
    w = std::make_unique<watcher::Watcher>(cfg, m, *store, client, clock);
  }

  static watcher::Project project(const std::string& name, const std::string& base, const std::string& image) {
    watcher::Project p;
    p.name = name;
    p.dockerfile = "/srv/" + name + "/Dockerfile";
    p.image = image;
    p.platforms = {"linux/amd64"};
    p.triggers = {"ci"};
    p.bases.push_back(watcher::BaseUse{base, "", "", "runtime", "from", 1, "0"});
    return p;
  }

  // An image manifest whose base annotation names `base_digest` ("" for none).
  std::string push_built(const std::string& repo, const std::string& tag, const std::string& content,
                         const std::string& base_digest) {
    json m = {{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"config", {{"digest", sha256_digest(content)}}}};
    if (!base_digest.empty()) {
      m["annotations"] = {{"org.opencontainers.image.base.digest", base_digest},
                          {"org.opencontainers.image.base.name", "docker.io/library/alpine:3.20"}};
    }
    std::string d = reg.put_blob(m.dump(), "application/vnd.oci.image.manifest.v1+json");
    reg.tag_it(repo, tag, d);
    return d;
  }

  watcher::PollStats poll() {
    auto s = w->poll_once(clock.now());
    clock.advance(Millis(61'000));
    return s;
  }
  const watcher::CheckReport& report(const watcher::PollStats& s, const std::string& ref) {
    for (const auto& r : s.reports) {
      if (r.ref == ref) return r;
    }
    FAIL("no report for " << ref);
    return s.reports.front();
  }
  std::vector<db::Delivery> deliveries() { return store->list_deliveries(std::nullopt, 100).value(); }
};

}  // namespace

TEST_CASE("a chain fires base first, and app only when the new internal/base is pushed", "[unit][watcher][chain]") {
  Chain c;
  std::string u1 = c.reg.put_manifest("library/alpine", "3.20", "alpine 1");
  c.push_built("internal/base", "latest", "base 1", u1);
  REQUIRE(c.poll().reports.size() == 2);  // baselines

  double fired_before = Metrics::global().counter_value("basewatch_changes_detected_total", {{"outcome", "fired"}});
  std::string u2 = c.reg.put_manifest("library/alpine", "3.20", "alpine 2");
  auto s = c.poll();
  CHECK(c.report(s, k_upstream).outcome == "changed");
  CHECK(c.report(s, k_base_image).outcome == "unchanged");
  auto ds = c.deliveries();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].project == "base");  // not app: its base has not moved yet
  CHECK(json::parse(ds[0].payload)["plan"] == json::array({"base", "app"}));

  // base's build pushes the new internal/base; now app fires.
  std::string b2 = c.push_built("internal/base", "latest", "base 2", u2);
  s = c.poll();
  CHECK(c.report(s, k_base_image).outcome == "changed");
  ds = c.deliveries();
  REQUIRE(ds.size() == 2);
  const db::Delivery& app = ds[0].project == "app" ? ds[0] : ds[1];
  CHECK(app.project == "app");
  auto body = json::parse(app.payload);
  CHECK(body["changes"][0]["ref"] == k_base_image);
  CHECK(body["changes"][0]["new_digest"] == b2);
  CHECK(body["plan"] == json::array({"app"}));
  CHECK(Metrics::global().counter_value("basewatch_changes_detected_total", {{"outcome", "fired"}}) == fired_before + 2);
}

TEST_CASE("a project whose image is already built on the new base digest is not rebuilt", "[unit][watcher][chain]") {
  Chain c;
  std::string u1 = c.reg.put_manifest("library/alpine", "3.20", "alpine 1");
  c.push_built("internal/base", "latest", "base 1", u1);
  c.poll();

  // Someone rebuilt base on the new alpine before basewatch noticed it moved.
  std::string u2 = c.reg.put_manifest("library/alpine", "3.20", "alpine 2");
  c.push_built("internal/base", "latest", "base 2", u2);
  double before = Metrics::global().counter_value("basewatch_changes_detected_total", {{"outcome", "already-built"}});
  auto s = c.poll();
  const auto& up = c.report(s, k_upstream);
  CHECK(up.outcome == "changed");
  CHECK(up.deliveries.empty());
  CHECK(up.already_built == std::vector<std::string>{"base"});
  auto events = c.store->list_events(10).value();
  auto ev = std::find_if(events.begin(), events.end(), [](const db::Event& e) { return e.ref == k_upstream; });
  REQUIRE(ev != events.end());
  CHECK(ev->outcome == "already-built");
  CHECK(Metrics::global().counter_value("basewatch_changes_detected_total", {{"outcome", "already-built"}}) == before + 1);
  // ... while the pushed internal/base still fires app, whose image is older.
  auto ds = c.deliveries();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].project == "app");

  // An image built on an older base, or with no annotation at all, is rebuilt.
  std::string u3 = c.reg.put_manifest("library/alpine", "3.20", "alpine 3");
  s = c.poll();
  CHECK(c.report(s, k_upstream).deliveries.size() == 1);
  c.push_built("internal/base", "latest", "base 3 without annotations", "");
  c.reg.put_manifest("library/alpine", "3.20", "alpine 4");
  s = c.poll();
  CHECK(c.report(s, k_upstream).deliveries.size() == 1);
  (void)u3;
}

TEST_CASE("already-built reads an index: every image of the project's platforms must name the new base", "[unit][watcher][chain]") {
  Chain c;
  std::string u1 = c.reg.put_manifest("library/alpine", "3.20", "alpine 1");
  c.push_built("internal/base", "latest", "base 1", u1);
  c.poll();
  std::string u2 = c.reg.put_manifest("library/alpine", "3.20", "alpine 2");
  // An index whose amd64 image carries the annotation in its manifest, and
  // whose arm64 image (a platform base does not build here) does not.
  std::string amd = c.push_built("internal/base", "amd64-tmp", "base amd64", u2);
  std::string arm = c.push_built("internal/base", "arm64-tmp", "base arm64", "");
  c.reg.put_index("internal/base", "latest", {{"linux/amd64", amd}, {"linux/arm64", arm}});
  auto s = c.poll();
  CHECK(c.report(s, k_upstream).already_built == std::vector<std::string>{"base"});
  CHECK(c.report(s, k_upstream).deliveries.empty());
}

TEST_CASE("a quiet window holds a project's delivery until it opens, collecting changes", "[unit][watcher][quiet]") {
  Chain c;
  // base rebuilds only on Saturdays 02:00-06:00 UTC; the fake clock starts on a weekday.
  config::ProjectConfig pc;
  pc.name = "base";
  pc.quiet_window = config::parse_quiet_window("sat 02:00-06:00").value();
  c.cfg.projects = {pc};
  c.w->reload(c.cfg, c.w->model());
  c.clock.set(parse_rfc3339("2026-11-25T12:00:00Z").value());  // a Wednesday
  std::string u1 = c.reg.put_manifest("library/alpine", "3.20", "alpine 1");
  c.push_built("internal/base", "latest", "base 1", u1);
  c.poll();

  c.reg.put_manifest("library/alpine", "3.20", "alpine 2");
  c.poll();
  auto ds = c.deliveries();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].next_attempt_at == to_unix_ms(parse_rfc3339("2026-11-28T02:00:00Z").value()));
  // A day later alpine moves again: it joins the waiting delivery.
  c.clock.advance(Millis(86'400'000));
  std::string u3 = c.reg.put_manifest("library/alpine", "3.20", "alpine 3");
  c.poll();
  ds = c.deliveries();
  REQUIRE(ds.size() == 1);
  auto body = json::parse(ds[0].payload);
  REQUIRE(body["changes"].size() == 1);  // one ref: first old, latest new
  CHECK(body["changes"][0]["old_digest"] == u1);
  CHECK(body["changes"][0]["new_digest"] == u3);
  CHECK(c.store->due_deliveries(to_unix_ms(c.clock.now()), 10)->empty());
  CHECK(c.store->due_deliveries(to_unix_ms(parse_rfc3339("2026-11-28T02:00:00Z").value()), 10)->size() == 1);
}
