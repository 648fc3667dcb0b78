// Several `basewatch serve` on one PostgreSQL database (the real binary, a
// real server started by this test binary, real registries and receivers):
// one leader polls and delivers, the others answer the API and pass
// requests on. The faults: a pair's first cycle sends each HEAD once; the
// leader SIGKILLed with deliveries pending, the other takes over and sends
// them under their ids; the leader SIGSTOPped past its lease and resumed,
// fenced (its late write is refused) and following; the server restarted
// under a running pair. Leases of 2 s keep each case to seconds.
#include <catch2/catch.hpp>

#include <csignal>
#include <future>
#include <set>
#include <sstream>

#include "tests/integration/helpers.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/postgres.h"

using namespace bw::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

constexpr auto k_lease = 2s;
// How long a takeover may take here: the lease, plus room for a loaded
// two-core machine (the tests' own bound, not a figure: bench/ha measures).
constexpr auto k_takeover = k_lease + 4s;

// The shared part of every instance's config; each gets its own listen.
std::string config_for(const std::string& database, int port, const std::string& registry_host, const std::string& receiver_url,
                       const std::string& watch, const std::string& interval) {
  return "database: \"" + database + "\"\n"
         "ha: {lease: 2s}\n"
         "listen: 127.0.0.1:" + std::to_string(port) + "\n"
         "log: {level: debug}\n"
         "poll: {interval: " + interval + ", jitter: 0%, settle: 0s}\n"
         "registries:\n"
         "  " + registry_host + ": {insecure: true}\n"
         "watch:\n" + watch +
         "triggers:\n"
         "  ci: {type: webhook, url: \"" + receiver_url + "\", timeout: 30s}\n"
         "retry: {initial: 200ms, max: 400ms, max_attempts: 1000}\n";
}

std::string watch_entry(const std::string& ref) { return "  - {ref: \"" + ref + "\", triggers: [ci]}\n"; }

// One instance: its port, config and process.
struct Node {
  int port = 0;
  std::string config, log;
  std::unique_ptr<Process> process;
  std::string id;  // cluster.instance, once up

  void start() {
    process = start_basewatch(config, port, log);
    REQUIRE(process->running());
    REQUIRE(wait_until([&] {
      auto s = get_json(port, "/v1/status");
      if (!s.is_object() || !s["cluster"].is_object()) return false;
      id = s["cluster"]["instance"];
      return true;
    }, 20s));
  }
  json cluster() const {
    auto s = get_json(port, "/v1/status");
    return s.is_object() ? s["cluster"] : json();
  }
  std::string leader() const {
    auto c = cluster();
    return c.is_object() && c["leader"].is_string() ? c["leader"].get<std::string>() : "";
  }
  // Waits until this instance reports `who` as the leader.
  bool sees_leader(const std::string& who, std::chrono::milliseconds timeout) const {
    return wait_until([&] { return leader() == who; }, timeout);
  }
  // The sum of a metric's series on this instance's /metrics (process-local).
  double metric(const std::string& name) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(5, 0);
    auto res = c.Get("/metrics");
    if (!res || res->status != 200) return -1;
    std::istringstream lines(res->body);
    double sum = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }
  void stop() {
    if (!process) return;
    process->signal(SIGCONT);
    process->signal(SIGTERM);
    process->wait(10s);
  }
};

// A database, a registry (behind a counting proxy), a receiver, and two
// instances that are ready to start.
struct Pair {
  PostgresServer& pg = shared_postgres();
  std::string db = pg.create_database();
  TempDir dir{"bw-ha"};
  LocalRegistry registry;
  FaultProxy proxy{registry.url()};
  Receiver receiver;
  Node a, b;

  Pair(const std::vector<std::string>& repos, const std::string& interval) {
    std::string watch;
    for (const auto& repo : repos) {
      registry.push_image(repo, "1", repo + " one");
      watch += watch_entry(proxy.host() + "/" + repo + ":1");
    }
    for (Node* n : {&a, &b}) {
      n->port = free_port();
      std::string name = n == &a ? "a" : "b";
      n->config = dir.write("config-" + name + ".yaml", config_for(pg.uri(db), n->port, proxy.host(), receiver.url("/hook"), watch,
                                                                  interval));
      n->log = dir.path() + "/" + name + ".log";
    }
  }
  ~Pair() {
    a.stop();
    b.stop();
  }
  std::string query(const std::string& sql) { return pg.query(db, sql); }
  // a leads (it started alone), b follows.
  void start_a_then_b() {
    a.start();
    REQUIRE(a.sees_leader(a.id, 10s));
    b.start();
    REQUIRE(b.sees_leader(a.id, 10s));
  }
  std::set<std::string> received_ids() const {
    std::set<std::string> ids;
    for (const auto& r : receiver.requests()) ids.insert(r.headers.at("x-basewatch-delivery"));
    return ids;
  }
  std::set<std::string> stored_ids() {
    std::set<std::string> ids;
    std::string list = query("SELECT string_agg(id, ',' ORDER BY id) FROM deliveries");
    for (size_t from = 0; from < list.size();) {
      size_t comma = list.find(',', from);
      if (comma == std::string::npos) comma = list.size();
      ids.insert(list.substr(from, comma - from));
      from = comma + 1;
    }
    return ids;
  }
};

bool post(int port, const std::string& path, const std::string& body = "") {
  httplib::Client c("127.0.0.1", port);
  auto res = c.Post(path.c_str(), body, "application/json");
  return res && res->status == 202;
}

}  // namespace

TEST_CASE("two instances on one database: the leader's cycle sends each HEAD once, the follower none", "[integration][ha]") {
  Pair p({"team/a", "team/b", "team/c"}, "1h");
  p.a.start();
  p.b.start();  // at once: whichever claims first leads
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM refs WHERE digest <> ''") == "3"; }, 20s));
  std::string leader = p.a.leader();
  REQUIRE((leader == p.a.id || leader == p.b.id));
  CHECK(p.b.leader() == leader);
  const Node& lead = leader == p.a.id ? p.a : p.b;
  const Node& follow = leader == p.a.id ? p.b : p.a;
  std::this_thread::sleep_for(k_lease);  // a lease's time for a second cycle that must not come

  for (const char* repo : {"team/a", "team/b", "team/c"}) {
    INFO(repo);
    CHECK(p.proxy.count("HEAD", std::string("/v2/") + repo + "/manifests/1") == 1);
  }
  CHECK(p.proxy.count("HEAD") == 3);
  CHECK(p.proxy.count("GET", "/manifests/") == 0);
  CHECK(follow.metric("basewatch_registry_requests_total") == 0);
  CHECK(lead.metric("basewatch_leader") == 1);
  CHECK(follow.metric("basewatch_leader") == 0);

  // Both say the same: who leads, since when, and both instances.
  auto c = follow.cluster();
  CHECK(c["instance"] == follow.id);
  CHECK(c["leader"] == lead.id);
  CHECK(c["leader_since"].is_string());
  CHECK(c["lease_seconds"] == 2);
  REQUIRE(c["instances"].size() == 2);
  std::set<std::string> ids{c["instances"][0]["id"], c["instances"][1]["id"]};
  CHECK(ids == std::set<std::string>{p.a.id, p.b.id});
  for (const auto& i : c["instances"]) {
    CHECK(i["pid"] == (i["id"] == p.a.id ? p.a.process->pid() : p.b.process->pid()));
    CHECK(i["last_seen"].is_string());
  }
  CHECK(lead.cluster()["leader"] == lead.id);

  // The follower's API answers from the shared state.
  auto images = get_json(follow.port, "/v1/images");
  REQUIRE(images.size() == 3);
  for (const auto& i : images) CHECK(i["digest"].is_string());
  auto status = run({basewatch_binary(), "status", "--url", "http://127.0.0.1:" + std::to_string(follow.port)});
  INFO(status.output << status.errors);
  REQUIRE(status.status == 0);
  CHECK(status.output.find("cluster: instance " + follow.id + " follows; leader " + lead.id + " since ") != std::string::npos);
  CHECK(status.output.find("; lease 2s\n") != std::string::npos);
  CHECK(status.output.find(lead.id + "  leader") != std::string::npos);
  CHECK(status.output.find(follow.id + "  follower") != std::string::npos);
  httplib::Client page("127.0.0.1", follow.port);
  auto dashboard = page.Get("/");
  REQUIRE(dashboard);
  CHECK(dashboard->body.find("<section id=\"cluster\"><h2>Cluster</h2><p>Leader <code>" + lead.id + "</code>") != std::string::npos);
}

TEST_CASE("the leader SIGKILLed with deliveries pending: the other takes over within the lease and sends each under its id",
          "[integration][ha][failover]") {
  Pair p({"team/a", "team/b"}, "1h");
  p.receiver.set_status(503);  // the receiver is down
  p.start_a_then_b();
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM refs WHERE digest <> ''") == "2"; }, 20s));
  p.registry.push_image("team/a", "1", "team/a two");
  p.registry.push_image("team/b", "1", "team/b two");
  // Asked on the follower: the request reaches the leader through the database.
  REQUIRE(post(p.b.port, "/v1/check"));
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM deliveries") == "2"; }, 20s));
  std::set<std::string> ids = p.stored_ids();
  REQUIRE(ids.size() == 2);
  // Both tried and failed by the leader at least once.
  REQUIRE(wait_until([&] { return p.received_ids() == ids; }, 20s));
  CHECK(p.query("SELECT count(*) FROM deliveries WHERE state='failed'") == "2");

  auto killed = std::chrono::steady_clock::now();
  p.a.process->signal(SIGKILL);
  REQUIRE(p.a.process->wait(5s).has_value());
  REQUIRE(p.b.sees_leader(p.b.id, k_takeover));
  INFO("took over after " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed).count()
                          << " ms");
  p.receiver.set_status(200);
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM deliveries WHERE state='delivered'") == "2"; }, 20s));
  CHECK(p.stored_ids() == ids);    // no new delivery
  CHECK(p.received_ids() == ids);  // and every one that arrived is one of them
  for (const auto& r : p.receiver.requests()) {
    CHECK(json::parse(r.body)["delivery_id"] == r.headers.at("x-basewatch-delivery"));
  }
  CHECK(p.b.cluster()["leader"] == p.b.id);
  CHECK(p.b.process->log().find("cluster: leading (epoch 2)") != std::string::npos);
}

TEST_CASE("the leader SIGSTOPped past its lease: the other takes over; resumed, it is fenced and follows", "[integration][ha][fencing]") {
  Pair p({"team/a"}, "1s");
  // The first delivery attempt is held until released: the leader is inside
  // it when it is stopped.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> seen{0};
  p.receiver.set_reply_handler([&](const ReceivedRequest&) {
    if (seen.fetch_add(1) == 0) released.wait();
    return Receiver::Reply{200, "ok", {}};
  });
  struct Release {
    std::promise<void>& p;
    bool done = false;
    void now() {
      if (!done) p.set_value();
      done = true;
    }
    ~Release() { now(); }
  } unblock{release};
  p.start_a_then_b();
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM refs WHERE digest <> ''") == "1"; }, 20s));
  p.registry.push_image("team/a", "1", "team/a two");
  REQUIRE(p.receiver.wait_for(1, 20s));  // a's attempt, held
  std::string id = *p.stored_ids().begin();

  p.a.process->signal(SIGSTOP);
  struct Resume {
    Process& p;
    ~Resume() { p.signal(SIGCONT); }
  } resume{*p.a.process};
  REQUIRE(p.b.sees_leader(p.b.id, k_takeover));
  // b sends the delivery a never recorded, under its id, and records it.
  REQUIRE(wait_until([&] { return p.query("SELECT state FROM deliveries") == "delivered"; }, 20s));
  CHECK(p.query("SELECT attempts FROM deliveries") == "1");
  auto requests = p.receiver.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].headers.at("x-basewatch-delivery") == id);

  // a resumes and its held attempt is answered: its record is refused.
  p.a.process->signal(SIGCONT);
  unblock.now();
  REQUIRE(wait_until([&] { return p.a.process->log().find("fenced") != std::string::npos; }, 20s));
  CHECK(p.a.process->log().find("recording attempt of " + id + ": database: fenced: the lease of epoch 1 has passed to another "
                                "instance; nothing was written") != std::string::npos);
  CHECK(p.query("SELECT attempts FROM deliveries") == "1");
  CHECK(p.query("SELECT count(*) FROM attempts") == "1");
  REQUIRE(p.a.sees_leader(p.b.id, 10s));
  CHECK(p.a.cluster()["instance"] == p.a.id);

  // From now on a neither polls nor delivers: b does both.
  std::this_thread::sleep_for(1500ms);
  double a_requests = p.a.metric("basewatch_registry_requests_total");
  double a_sends = p.a.metric("basewatch_deliveries_attempted_total");
  size_t b_requests_before = p.proxy.count("HEAD");
  p.registry.push_image("team/a", "1", "team/a three");
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM deliveries WHERE state='delivered'") == "2"; }, 20s));
  std::this_thread::sleep_for(2s);  // two more poll intervals
  CHECK(p.a.metric("basewatch_registry_requests_total") == a_requests);
  CHECK(p.a.metric("basewatch_deliveries_attempted_total") == a_sends);
  CHECK(p.a.metric("basewatch_leader") == 0);
  CHECK(p.b.metric("basewatch_leader") == 1);
  CHECK(p.proxy.count("HEAD") > b_requests_before);  // b polls on
  CHECK(p.receiver.count() == 3);                     // the third change went out once
  CHECK(p.a.process->log().find("cluster: following: instance " + p.b.id + " leads (epoch 2)") != std::string::npos);
}

TEST_CASE("PostgreSQL restarted under a running pair: both reconnect, one leads, nothing is lost", "[integration][ha][restart]") {
  Pair p({"team/a"}, "1s");
  p.start_a_then_b();
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM refs WHERE digest <> ''") == "1"; }, 20s));

  p.pg.stop();
  // A change while the database is down: nothing can record it yet.
  std::string moved = p.registry.push_image("team/a", "1", "team/a two");
  std::this_thread::sleep_for(2500ms);
  p.pg.start();
  // One leader again, which both agree on.
  std::string leader;
  REQUIRE(wait_until([&] {
    leader = p.a.leader();
    return !leader.empty() && leader == p.b.leader() && p.a.cluster()["instances"].size() == 2;
  }, 20s));
  REQUIRE(wait_until([&] { return p.query("SELECT count(*) FROM deliveries WHERE state='delivered'") == "1"; }, 20s));
  std::this_thread::sleep_for(2s);
  CHECK(p.receiver.count() == 1);
  CHECK(json::parse(p.receiver.requests()[0].body)["changes"][0]["new_digest"] == moved);
  CHECK(p.a.metric("basewatch_leader") + p.b.metric("basewatch_leader") == 1);
  CHECK(p.a.process->running());
  CHECK(p.b.process->running());
  CHECK(p.query("SELECT count(*) FROM events WHERE outcome='fired'") == "1");

  // Both stop cleanly; the leader gives the lease up.
  p.a.stop();
  p.b.stop();
  CHECK(p.query("SELECT count(*) FROM basewatch_instances") == "0");
  CHECK(p.query("SELECT expires_at FROM basewatch_lease") == "0");
}

TEST_CASE("two instances with a mirror: only the leader copies; a sync asked of the follower reaches it", "[integration][ha][mirror]") {
  PostgresServer& pg = shared_postgres();
  std::string db = pg.create_database();
  TempDir dir("bw-ha-mirror");
  LocalRegistry upstream, mirror;
  FaultProxy up(upstream.url()), down(mirror.url());
  upstream.push_image("library/alpine", "1", "alpine one");
  Node a, b;
  for (Node* n : {&a, &b}) {
    n->port = free_port();
    std::string name = n == &a ? "a" : "b";
    n->config = dir.write("config-" + name + ".yaml",
                          "database: \"" + pg.uri(db) + "\"\nha: {lease: 2s}\nlisten: 127.0.0.1:" + std::to_string(n->port) +
                              "\npoll: {interval: 1h, jitter: 0%, settle: 0s}\n"
                              "registries:\n  " + up.host() + ": {insecure: true}\n  " + down.host() + ": {insecure: true}\n"
                              "mirrors:\n  - {from: " + up.host() + "/library/*, to: " + down.host() + "/hub/*}\n"
                              "watch:\n  - ref: " + up.host() + "/library/alpine:1\n");
    n->log = dir.path() + "/" + name + ".log";
  }
  a.start();
  REQUIRE(a.sees_leader(a.id, 10s));
  b.start();
  REQUIRE(b.sees_leader(a.id, 10s));
  REQUIRE(wait_until([&] { return !mirror.head_digest("hub/alpine", "1").empty(); }, 20s));
  std::this_thread::sleep_for(k_lease);
  CHECK(down.count("PUT", "/v2/hub/alpine/manifests/1") == 1);  // the tag, once
  CHECK(a.metric("basewatch_mirror_copies_total") == 1);
  CHECK(b.metric("basewatch_mirror_copies_total") == 0);
  CHECK(b.metric("basewatch_registry_requests_total") == 0);

  // A comparison asked of the follower: the leader HEADs both sides; nothing to copy.
  size_t heads = up.count("HEAD", "/manifests/1");
  REQUIRE(post(b.port, "/v1/mirrors/sync"));
  REQUIRE(wait_until([&] { return up.count("HEAD", "/manifests/1") == heads + 1; }, 10s));
  std::this_thread::sleep_for(500ms);
  CHECK(down.count("PUT", "/manifests/") == 2);  // by digest and by tag: still the one copy
  auto mirrors = get_json(b.port, "/v1/mirrors");
  REQUIRE(mirrors.size() == 1);
  CHECK(mirrors[0]["state"] == "in-sync");
  a.stop();
  b.stop();
}
