#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

#include "tests/unit/fake_registry.h"
#include "watcher/watcher.h"

using namespace bw;
using bw::testing::FakeRegistry;
using json = nlohmann::json;

namespace {

// A model with projects using bases directly (no Dockerfiles on disk).
struct Fixture {
  FakeRegistry reg;
  net::FakeHttpClient http{[this](const net::Request& r) { return reg.handle(r); }};
  FakeClock clock;
  registry::Client client{http, clock, {}};
  std::unique_ptr<db::Store> store = std::move(db::Store::open(":memory:").value());
  config::Config cfg;
  std::unique_ptr<watcher::Watcher> w;

  Fixture() {
    cfg.poll_interval = Millis(60'000);
    cfg.poll_jitter = 0;
    cfg.poll_settle = Millis(0);
  }

  void add_project(const std::string& name, std::vector<std::pair<std::string, std::string>> bases /* ref, pinned */,
                   std::vector<std::string> platforms = {"linux/amd64"}, std::string image = "") {
    watcher::Project p;
    p.name = name;
    p.dockerfile = "/srv/" + name + "/Dockerfile";
    p.platforms = platforms;
    p.triggers = {"ci"};
    p.image = image;
    for (auto& [r, pin] : bases) p.bases.push_back(watcher::BaseUse{r, "", pin, "runtime", "from", 1, "0"});
    m_projects.push_back(p);
  }

  void build() {
    auto m = std::make_shared<watcher::Model>();
    m->projects = m_projects;
    std::vector<dockerfile::ProjectInput> inputs;
    for (const auto& p : m->projects) {
      dockerfile::ProjectInput in{p.name, p.image, {}};
      for (const auto& b : p.bases) {
        in.bases.push_back(b.ref);
        auto& item = m->items[b.ref];
        item.ref = *oci::parse_reference(b.ref);
        item.interval = cfg.poll_interval;
        item.projects.insert(p.name);
        for (const auto& pl : p.platforms) {
          auto parsed = *oci::parse_platform(pl);
          if (std::find(item.platforms.begin(), item.platforms.end(), parsed) == item.platforms.end()) item.platforms.push_back(parsed);
        }
      }
      inputs.push_back(in);
    }
    m->graph = std::make_shared<dockerfile::Graph>(dockerfile::Graph::build(inputs).value());
    w = std::make_unique<watcher::Watcher>(cfg, m, *store, client, clock);
  }

  watcher::PollStats poll() {
    auto s = w->poll_once(clock.now());
    clock.advance(Millis(61'000));
    return s;
  }
  std::vector<db::Delivery> deliveries() { return store->list_deliveries(std::nullopt, 100).value(); }

 private:
  std::vector<watcher::Project> m_projects;
};

const std::string k_app = "registry.example.com/team/base:1";

}  // namespace

TEST_CASE("first sight is a baseline; a moved digest queues one delivery per (trigger, project)", "[unit][watcher]") {
  Fixture f;
  std::string d1 = f.reg.put_manifest("team/base", "1", "v1");
  f.add_project("web", {{k_app, ""}});
  f.add_project("worker", {{k_app, ""}});
  f.build();

  auto s1 = f.poll();
  REQUIRE(s1.reports.size() == 1);
  CHECK(s1.reports[0].outcome == "baseline");
  CHECK(f.deliveries().empty());
  CHECK(f.store->list_events(10)->empty());

  CHECK(f.poll().reports[0].outcome == "unchanged");
  CHECK(f.deliveries().empty());

  std::string d2 = f.reg.put_manifest("team/base", "1", "v2");
  auto s3 = f.poll();
  CHECK(s3.reports[0].outcome == "changed");
  CHECK(s3.reports[0].deliveries.size() == 2);
  auto ds = f.deliveries();
  REQUIRE(ds.size() == 2);
  for (const auto& d : ds) {
    auto body = json::parse(d.payload);
    CHECK(body["type"] == "base.updated");
    CHECK(body["delivery_id"] == d.id);
    CHECK(body["project"]["name"] == d.project);
    CHECK(body["changes"][0]["old_digest"] == d1);
    CHECK(body["changes"][0]["new_digest"] == d2);
    CHECK(body["changes"][0]["platforms"]["linux/amd64"]["new"] == d2);
    CHECK(body["changes"][0]["source"] == "poll");
    CHECK(body["plan"] == json::array({"web", "worker"}));
  }
  auto events = f.store->list_events(10).value();
  REQUIRE(events.size() == 1);
  CHECK(events[0].outcome == "fired");
  CHECK(events[0].deliveries.size() == 2);
}

TEST_CASE("an index that moves without the watched platform moving is recorded, not fired", "[unit][watcher]") {
  Fixture f;
  std::string amd1 = f.reg.put_blob("amd v1", "application/vnd.oci.image.manifest.v1+json");
  std::string arm1 = f.reg.put_blob("arm v1", "application/vnd.oci.image.manifest.v1+json");
  f.reg.put_index("team/base", "1", {{"linux/amd64", amd1}, {"linux/arm64", arm1}}, "attestation 1");
  f.add_project("web", {{k_app, ""}}, {"linux/amd64"});
  f.build();
  CHECK(f.poll().reports[0].outcome == "baseline");

  // arm64 rebuilt, attestations regenerated: the index digest moves.
  std::string arm2 = f.reg.put_blob("arm v2", "application/vnd.oci.image.manifest.v1+json");
  f.reg.put_index("team/base", "1", {{"linux/amd64", amd1}, {"linux/arm64", arm2}}, "attestation 2");
  auto s = f.poll();
  CHECK(s.reports[0].outcome == "recorded");
  CHECK(f.deliveries().empty());
  auto events = f.store->list_events(10).value();
  REQUIRE(events.size() == 1);
  CHECK(events[0].outcome == "recorded");

  // A new architecture appears: recorded too.
  std::string ppc = f.reg.put_blob("ppc v1", "application/vnd.oci.image.manifest.v1+json");
  f.reg.put_index("team/base", "1", {{"linux/amd64", amd1}, {"linux/arm64", arm2}, {"linux/ppc64le", ppc}});
  CHECK(f.poll().reports[0].outcome == "recorded");
  CHECK(f.deliveries().empty());

  // Now amd64 moves: one delivery naming only the watched platform.
  std::string amd2 = f.reg.put_blob("amd v2", "application/vnd.oci.image.manifest.v1+json");
  f.reg.put_index("team/base", "1", {{"linux/amd64", amd2}, {"linux/arm64", arm2}, {"linux/ppc64le", ppc}});
  CHECK(f.poll().reports[0].outcome == "changed");
  auto ds = f.deliveries();
  REQUIRE(ds.size() == 1);
  auto body = json::parse(ds[0].payload);
  CHECK(body["changes"][0]["platforms"] == json{{"linux/amd64", {{"old", amd1}, {"new", amd2}}}});
}

TEST_CASE("changes to two bases of one project within settle become one delivery", "[unit][watcher]") {
  Fixture f;
  f.cfg.poll_settle = Millis(120'000);
  std::string a1 = f.reg.put_manifest("team/a", "1", "a1");
  std::string b1 = f.reg.put_manifest("team/b", "1", "b1");
  f.add_project("web", {{"registry.example.com/team/a:1", ""}, {"registry.example.com/team/b:1", ""}});
  f.build();
  f.w->poll_once(f.clock.now(), true);
  f.reg.put_manifest("team/a", "1", "a2");
  f.w->poll_once(f.clock.now(), true);
  f.clock.advance(Millis(30'000));
  f.reg.put_manifest("team/b", "1", "b2");
  f.w->poll_once(f.clock.now(), true);
  auto ds = f.deliveries();
  REQUIRE(ds.size() == 1);
  auto body = json::parse(ds[0].payload);
  REQUIRE(body["changes"].size() == 2);
  CHECK(body["changes"][0]["ref"] == "registry.example.com/team/a:1");
  CHECK(body["changes"][1]["ref"] == "registry.example.com/team/b:1");
  // Due once the first change's settle window is over, not before.
  CHECK(f.store->due_deliveries(to_unix_ms(f.clock.now()), 10)->empty());
  f.clock.advance(Millis(91'000));
  CHECK(f.store->due_deliveries(to_unix_ms(f.clock.now()), 10)->size() == 1);
}

TEST_CASE("a pinned base whose tag moves is a stale pin, not a rebuild", "[unit][watcher]") {
  Fixture f;
  std::string d1 = f.reg.put_manifest("team/base", "1", "v1");
  f.add_project("pinned", {{k_app, d1}});
  f.build();
  f.poll();
  f.reg.put_manifest("team/base", "1", "v2");
  CHECK(f.poll().reports[0].outcome == "changed");
  CHECK(f.deliveries().empty());
  auto events = f.store->list_events(10).value();
  REQUIRE(events.size() == 1);
  CHECK(events[0].outcome == "stale-pin");
}

TEST_CASE("a failed check is recorded on the reference and retried with backoff", "[unit][watcher]") {
  Fixture f;
  f.add_project("web", {{k_app, ""}});  // the tag does not exist: 404
  f.build();
  auto s = f.w->poll_once(f.clock.now());
  REQUIRE(s.reports.size() == 1);
  CHECK(s.reports[0].outcome == "error");
  auto ref = f.store->get_ref(k_app).value();
  REQUIRE(ref);
  CHECK(ref->error_kind == "not_found");
  CHECK(ref->last_error == k_app + ": not found");
  CHECK(ref->failures == 1);
  CHECK(ref->next_check == to_unix_ms(f.clock.now()) + 30'000);  // well before the 60 s interval
  CHECK(f.w->poll_once(f.clock.now()).reports.empty());            // not due yet
  f.clock.advance(Millis(30'000));
  CHECK(f.w->poll_once(f.clock.now()).reports.size() == 1);
  CHECK(f.store->get_ref(k_app).value()->failures == 2);
}

TEST_CASE("a good check after a failure clears the error and keeps the digest; a new watcher keeps the schedule", "[unit][watcher]") {
  Fixture f;
  std::string d1 = f.reg.put_manifest("team/base", "1", "v1");
  f.add_project("web", {{k_app, ""}});
  f.build();
  CHECK(f.poll().reports[0].outcome == "baseline");
  f.reg.require_token = true;  // the token endpoint wants credentials the client does not have
  f.reg.token_user = "ci";
  f.reg.token_password = "secret";
  CHECK(f.poll().reports[0].outcome == "error");
  auto failed = f.store->get_ref(k_app).value();
  REQUIRE(failed);
  CHECK(failed->failures == 1);
  CHECK(failed->digest == d1);
  f.reg.require_token = false;
  f.reg.token_user.clear();  // the client, now knowing the realm, asks for a token first: it gets one
  auto s = f.poll();
  REQUIRE(s.reports.size() == 1);
  CHECK(s.reports[0].outcome == "unchanged");
  auto ok = f.store->get_ref(k_app).value();
  REQUIRE(ok);
  CHECK(ok->digest == d1);
  CHECK(ok->platforms == failed->platforms);
  CHECK(ok->failures == 0);
  CHECK(ok->last_error.empty());
  CHECK(ok->error_kind.empty());
  CHECK(ok->last_checked == to_unix_ms(f.clock.now()) - 61'000);  // poll() advanced the clock after the check
  CHECK(ok->next_check == ok->last_checked + 60'000);

  // A restart (a new Watcher on the same store) reads next_check back: nothing is due before it.
  f.w = std::make_unique<watcher::Watcher>(f.cfg, f.w->model(), *f.store, f.client, f.clock);
  f.clock.advance(Millis(-2'000));
  CHECK(f.w->poll_once(f.clock.now()).reports.empty());
  f.clock.advance(Millis(2'000));
  CHECK(f.w->poll_once(f.clock.now()).reports.size() == 1);
}

TEST_CASE("a dry run records nothing and queues nothing", "[unit][watcher]") {
  Fixture f;
  f.reg.put_manifest("team/base", "1", "v1");
  f.add_project("web", {{k_app, ""}});
  f.build();
  auto s = f.w->poll_once(f.clock.now(), true, true);
  CHECK(s.reports[0].outcome == "baseline");
  CHECK_FALSE(f.store->get_ref(k_app).value());
}

TEST_CASE("projects from a dockerfiles glob are named by their path below the glob's root", "[unit][watcher]") {
  CHECK(watcher::glob_project_name("/srv/services/**/Dockerfile", "/srv/services/web/Dockerfile", "") == "web");
  CHECK(watcher::glob_project_name("/srv/services/**/Dockerfile", "/srv/services/a/web/Dockerfile", "") == "a/web");
  CHECK(watcher::glob_project_name("/srv/services/**/Dockerfile", "/srv/services/b/web/Dockerfile", "") == "b/web");
  CHECK(watcher::glob_project_name("/srv/services/**/Dockerfile", "/srv/services/Dockerfile", "") == "services");
  CHECK(watcher::glob_project_name("/srv/*/Dockerfile.*", "/srv/web/Dockerfile.prod", "") == "web/Dockerfile.prod");
  CHECK(watcher::glob_project_name("/srv/services/*/Dockerfile", "/srv/services/web/Dockerfile", "svc") == "svc/web");
}

TEST_CASE("a closed gate (not the leader): no request, nothing recorded, and a cycle stops when it closes", "[unit][watcher][gate]") {
  Fixture f;
  for (int i = 0; i < 6; ++i) {
    std::string r = "registry.example.com/team/base" + std::to_string(i) + ":1";
    f.reg.put_manifest("team/base" + std::to_string(i), "1", "v1");
    f.add_project("p" + std::to_string(i), {{r, ""}});
  }
  f.cfg.poll_concurrency = 1;  // one reference after the other
  f.build();
  bool open = false;
  f.w->set_gate([&] { return open; });
  f.w->request_check("", "manual");
  auto closed = f.w->poll_once(f.clock.now());
  CHECK(closed.checked == 0);
  CHECK(f.http.requests().empty());
  CHECK(f.store->list_refs().value().empty());
  CHECK(f.w->next_due(f.clock.now()) == f.clock.now());  // the request waits for the gate

  // The gate closes after three references (the lease was lost mid-cycle).
  int asked = 0;
  f.w->set_gate([&] { return ++asked <= 4; });  // once for the cycle, once per reference
  auto cut = f.w->poll_once(f.clock.now());
  CHECK(cut.checked == 3);
  CHECK(f.http.requests().size() == 3);
  CHECK(f.store->list_refs().value().size() == 3);
  // The others are still due for whoever leads next.
  auto checks = f.store->next_checks();
  REQUIRE(checks.ok());
  CHECK(checks->size() == 3);
  for (const auto& [ref, next] : *checks) CHECK(next > to_unix_ms(f.clock.now()));
  CHECK(f.w->next_due(f.clock.now()) == f.clock.now());
}

TEST_CASE("resync reads the schedule and the last poll another instance left", "[unit][watcher][gate]") {
  Fixture f;
  f.reg.put_manifest("team/base", "1", "v1");
  f.add_project("web", {{k_app, ""}});
  f.build();
  // Another instance (the leader) checked it a moment ago.
  db::RefState r;
  r.ref = k_app;
  r.digest = "sha256:1";
  r.last_checked = to_unix_ms(f.clock.now());
  r.next_check = to_unix_ms(f.clock.now() + Millis(60'000));
  REQUIRE(f.store->put_ref(r).ok());
  REQUIRE(f.store->set_meta("last_poll", std::to_string(to_unix_ms(f.clock.now()))).ok());
  CHECK(f.w->next_due(f.clock.now()) == f.clock.now());  // what it read at its start
  CHECK(to_unix_ms(f.w->last_poll()) == 0);
  REQUIRE(f.w->resync().ok());
  CHECK(f.w->next_due(f.clock.now()) == f.clock.now() + Millis(60'000));
  CHECK(f.w->last_poll() == f.clock.now());
  CHECK(f.w->poll_once(f.clock.now()).checked == 0);  // not checked twice
  CHECK(f.http.requests().empty());
}

TEST_CASE("a request for a reference the model does not watch is ignored, and leaves nothing due", "[unit][watcher][gate]") {
  Fixture f;
  f.reg.put_manifest("team/base", "1", "v1");
  f.add_project("web", {{k_app, ""}});
  f.build();
  REQUIRE(f.w->poll_once(f.clock.now()).checked == 1);
  // Another instance's model watches more (its config or Dockerfiles differ).
  f.w->request_check("registry.example.com/team/other:1", "manual");
  CHECK(f.w->next_due(f.clock.now()) > f.clock.now());
  CHECK(f.w->poll_once(f.clock.now()).checked == 0);
  // A request left by a reference a reload took out is dropped at the next cycle.
  f.w->request_check(k_app, "manual");
  f.w->reload(f.cfg, std::make_shared<const watcher::Model>());
  CHECK(f.w->next_due(f.clock.now()) == f.clock.now());
  CHECK(f.w->poll_once(f.clock.now()).checked == 0);
  CHECK(f.w->next_due(f.clock.now()) > f.clock.now());
}

TEST_CASE("workers stop taking jobs while the answers not yet applied reach the bound; none is lost", "[unit][watcher]") {
  Fixture f;
  const int n = 40;
  for (int i = 0; i < n; ++i) {
    f.reg.put_manifest("team/base" + std::to_string(i), "1", "v1");
    f.add_project("p" + std::to_string(i), {{"registry.example.com/team/base" + std::to_string(i) + ":1", ""}});
  }
  f.cfg.poll_concurrency = 2;
  f.build();
  f.w->set_unapplied_max(5);
  std::atomic<int> results{0};
  f.w->on_result([&] { ++results; });
  f.w->step(f.clock.now());  // every reference is due: all go to the workers, nothing is applied
  // The workers answer 5 (and finish the jobs they hold, one each), then wait
  // for the loop: without the bound they answered all 40 in a few ms.
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (std::chrono::steady_clock::now() < until && f.http.requests().size() < static_cast<size_t>(n))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(results.load() >= 1);
  CHECK(f.http.requests().size() <= 5 + 2);
  CHECK(f.store->list_refs().value().empty());
  // The loop applies what waits; the workers go on; in the end every
  // reference is checked and recorded once.
  size_t checked = 0;
  for (int i = 0; i < 1000 && checked < static_cast<size_t>(n); ++i) {
    checked += f.w->step(f.clock.now()).checked;
    if (checked < static_cast<size_t>(n)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(checked == static_cast<size_t>(n));
  CHECK(f.http.requests().size() == static_cast<size_t>(n));
  f.w->step(f.clock.now());
  CHECK(f.store->list_refs().value().size() == static_cast<size_t>(n));
}
