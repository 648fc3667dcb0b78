// The gate and the lease keeper (cluster/leadership.h), driven step by step
// against a fake cluster whose "server clock" is the ticks the keepers read:
// who leads, when a leader that cannot renew stops acting, takeovers with the
// next epoch, requests reaching only the leader, releases, and the timing
// table. No threads, no sleeping.
#include <catch2/catch.hpp>

#include <deque>
#include <map>

#include "cluster/leadership.h"

using namespace bw;
using cluster::LeaseKeeper;

namespace {

// What the fake database holds, shared by every link to it.
struct FakeServer {
  int64_t now = 1'000'000;  // ms, the server's clock and the processes' ticks alike
  bool down = false;
  int64_t epoch = 0;
  std::string holder;
  int64_t since = 0, expires_at = 0;
  std::map<std::string, db::Instance> instances;
  std::vector<db::Ask> asks;
  int heartbeats = 0;
  std::vector<std::string> notices;  // what NOTIFY sent, in order

  db::Lease lease() const { return db::Lease{epoch, holder, since, expires_at - now}; }
};

class FakeTicks final : public cluster::Ticks {
 public:
  explicit FakeTicks(const FakeServer& s) : m_server(s) {}
  Millis now() const override { return Millis(m_server.now); }

 private:
  const FakeServer& m_server;
};

class FakeCluster final : public db::Cluster {
 public:
  explicit FakeCluster(FakeServer& s) : m_s(s) {}
  Result<db::Lease> claim(const std::string& instance, int64_t epoch, Millis lease) override {
    if (m_s.down) return down();
    if (epoch != 0 && m_s.epoch == epoch && m_s.holder == instance) {
      m_s.expires_at = m_s.now + lease.count();
    } else if (m_s.expires_at <= m_s.now) {
      ++m_s.epoch;
      m_s.holder = instance;
      m_s.since = m_s.now;
      m_s.expires_at = m_s.now + lease.count();
    }
    return m_s.lease();
  }
  Status release(const std::string& instance, int64_t epoch) override {
    if (m_s.down) return down();
    if (m_s.epoch == epoch && m_s.holder == instance) {
      m_s.expires_at = 0;
      m_s.notices.push_back("released");
    }
    return ok_status();
  }
  Result<db::Lease> lease() override {
    if (m_s.down) return down();
    return m_s.lease();
  }
  Status heartbeat(const db::Instance& self, Millis forget_after) override {
    if (m_s.down) return down();
    ++m_s.heartbeats;
    db::Instance i = self;
    i.last_seen = m_s.now;
    m_s.instances[self.id] = i;
    for (auto it = m_s.instances.begin(); it != m_s.instances.end();) {
      it = it->second.last_seen < m_s.now - forget_after.count() ? m_s.instances.erase(it) : std::next(it);
    }
    return ok_status();
  }
  Status leave(const std::string& instance) override {
    m_s.instances.erase(instance);
    return ok_status();
  }
  Result<std::vector<db::Instance>> instances() override {
    if (m_s.down) return down();
    std::vector<db::Instance> out;
    for (const auto& [id, i] : m_s.instances) out.push_back(i);
    return out;
  }
  Status ask(const db::Ask& a) override {
    if (m_s.down) return down();
    m_s.asks.push_back(a);
    m_s.notices.push_back("request");
    return ok_status();
  }
  Result<std::vector<db::Ask>> take_asks(int64_t epoch) override {
    if (m_s.down) return down();
    if (epoch != m_s.epoch) return make_error(ErrorKind::fenced, "fenced");
    return std::exchange(m_s.asks, {});
  }
  Status notify(const std::string& topic) override {
    if (m_s.down) return down();
    m_s.notices.push_back(topic);
    return ok_status();
  }
  Result<std::vector<std::string>> wait(Millis) override { return std::vector<std::string>{}; }

 private:
  static Error down() { return make_error(ErrorKind::network, "database: connection refused"); }
  FakeServer& m_s;
};

db::Instance instance(const std::string& id) {
  db::Instance i;
  i.id = id;
  i.host = "host-" + id;
  i.pid = 42;
  i.version = "0.1.0";
  i.started_at = 1;
  return i;
}

// One instance: its links, its keeper, what its hooks saw.
struct Node {
  FakeCluster keeper_link, api_link;
  LeaseKeeper keeper;
  std::vector<std::string> events;  // "taking 1", "acting", "stopped: ...", "ask check ref source"
  Node(FakeServer& s, const FakeTicks& ticks, const std::string& id, Millis lease = Millis(15'000))
      : keeper_link(s), api_link(s), keeper(keeper_link, api_link, instance(id), lease, ticks) {
    cluster::Hooks h;
    h.taking = [this](int64_t epoch) {
      // The gate stays closed while the hooks prepare.
      events.push_back("taking " + std::to_string(epoch) + (keeper.acting() ? " (open!)" : ""));
    };
    h.acting = [this] { events.push_back(keeper.acting() ? "acting" : "acting (closed!)"); };
    h.stopped = [this](const std::string& why) { events.push_back("stopped: " + why); };
    h.ask = [this](const db::Ask& a) { events.push_back("ask " + a.kind + " " + a.ref + " " + a.source); };
    keeper.set_hooks(h);
  }
};

}  // namespace

TEST_CASE("the lease's timing follows from ha.lease", "[cluster][timing]") {
  struct Row {
    int64_t lease, renew, act, retry, forget, idle, link;
  };
  for (const auto& r : {Row{15'000, 5'000, 12'000, 1'000, 60'000, 7'500, 7'500}, Row{2'000, 666, 1'600, 200, 60'000, 1'000, 1'000},
                        Row{1'000, 333, 800, 100, 60'000, 500, 500}, Row{60'000, 20'000, 48'000, 1'000, 180'000, 30'000, 30'000},
                        Row{300, 100, 240, 50, 60'000, 200, 200}}) {
    INFO("lease " << r.lease);
    cluster::Timing t{Millis(r.lease)};
    CHECK(t.renew_every().count() == r.renew);
    CHECK(t.act_for().count() == r.act);
    CHECK(t.retry_after().count() == r.retry);
    CHECK(t.forget_after().count() == r.forget);
    CHECK(t.idle_limit().count() == r.idle);
    CHECK(t.link_timeouts().count() == r.link);
  }
  cluster::Timing t{Millis(15'000)};
  CHECK(t.follow_delay(1'000).count() == 1'005);    // just after it runs out
  CHECK(t.follow_delay(14'000).count() == 5'000);   // but at least every L/3
  CHECK(t.follow_delay(0).count() == 5);
  CHECK(t.follow_delay(-30'000).count() == 5);
}

TEST_CASE("the first instance takes the lease and acts; the second follows and does not", "[cluster][lease]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a"), b(server, ticks, "b");
  CHECK_FALSE(a.keeper.acting());

  CHECK(a.keeper.step().count() == 5'000);
  CHECK(a.keeper.acting());
  CHECK(a.keeper.epoch() == 1);
  CHECK(a.events == std::vector<std::string>{"taking 1", "acting"});

  // b sees a's lease, and steps again just after it would run out.
  CHECK(b.keeper.step().count() == 5'000);  // L/3 at most
  CHECK_FALSE(b.keeper.acting());
  CHECK(b.keeper.epoch() == 0);
  CHECK(b.events.empty());

  // Renewals keep a acting; nothing runs the hooks again.
  for (int i = 0; i < 10; ++i) {
    server.now += 5'000;
    CHECK(a.keeper.step().count() == 5'000);
    CHECK(b.keeper.step().count() <= 5'000);
    CHECK(a.keeper.acting());
    CHECK_FALSE(b.keeper.acting());
  }
  CHECK(a.events.size() == 2);
  CHECK(server.epoch == 1);

  auto view = b.keeper.view();
  CHECK(view.instance == "b");
  CHECK(view.leader == "a");
  CHECK(view.leader_since == 1'000'000);
  CHECK(view.lease.count() == 15'000);
  REQUIRE(view.instances.size() == 2);
  CHECK(view.instances[0].id == "a");
  CHECK(view.instances[0].host == "host-a");
  CHECK(view.instances[1].id == "b");
}

TEST_CASE("a leader that cannot renew stops acting at 4/5 of its lease; the follower takes over once it ran out",
          "[cluster][lease]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a"), b(server, ticks, "b");
  a.keeper.step();
  server.now += 4'000;
  a.keeper.step();  // renewed at 1'004'000: acts until 1'016'000, the lease runs out at 1'019'000
  CHECK(b.keeper.step().count() == 5'000);

  // a hangs (no more steps): its gate closes by itself at the deadline.
  server.now += 11'999;
  CHECK(a.keeper.acting());
  server.now += 1;
  CHECK_FALSE(a.keeper.acting());
  // b may not take it yet: the lease has 3 s left, and b comes back just after.
  Millis next = b.keeper.step();
  CHECK(next.count() == 3'005);
  CHECK_FALSE(b.keeper.acting());
  server.now += next.count();
  b.keeper.step();
  CHECK(b.keeper.acting());
  CHECK(b.keeper.epoch() == 2);
  CHECK(b.events == std::vector<std::string>{"taking 2", "acting"});

  // a resumes: closed, and its next step finds b's epoch and follows.
  CHECK_FALSE(a.keeper.acting());
  a.keeper.step();
  CHECK_FALSE(a.keeper.acting());
  CHECK(a.keeper.epoch() == 0);
  REQUIRE(a.events.size() == 3);
  CHECK(a.events[2] == "stopped: the lease (epoch 1) could not be renewed in time");
  CHECK(a.keeper.view().leader == "b");
}

TEST_CASE("a leader whose database fails says so once at its deadline, and acts again when its epoch still holds",
          "[cluster][lease]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a");
  a.keeper.step();
  server.down = true;
  for (int i = 0; i < 20; ++i) {
    server.now += 1'000;
    CHECK(a.keeper.step().count() == 1'000);  // retried every L/10 (at most 1 s)
    CHECK(a.keeper.acting() == (server.now < 1'012'000));
  }
  REQUIRE(a.events.size() == 3);
  CHECK(a.events[2] == "stopped: the lease (epoch 1) could not be renewed in time");
  // Back after its lease ran out, and nobody took it: the same epoch,
  // renewed, and the hooks run again (the schedule is read again).
  server.down = false;
  a.keeper.step();
  CHECK(a.keeper.acting());
  CHECK(a.keeper.epoch() == 1);
  CHECK(server.epoch == 1);
  CHECK(a.events.size() == 5);
  CHECK(a.events[3] == "taking 1");
  CHECK(a.events[4] == "acting");
}

TEST_CASE("a leader whose lease was taken over follows, and says why", "[cluster][lease]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a"), b(server, ticks, "b");
  a.keeper.step();
  server.now += 20'000;  // a missed its renewals (its thread was stuck), the lease ran out
  b.keeper.step();
  CHECK(b.keeper.acting());
  a.keeper.step();
  CHECK_FALSE(a.keeper.acting());
  REQUIRE(a.events.size() == 3);
  CHECK(a.events[2] == "stopped: the lease (epoch 1) could not be renewed in time");

  // Taken over while still inside its deadline (the database reported a
  // new epoch before a's gate closed): "lost".
  Node c(server, ticks, "c");
  server.now += 4'000;
  b.keeper.step();
  server.expires_at = server.now;  // as if the server ran its clock out
  c.keeper.step();
  CHECK(c.keeper.epoch() == 3);
  CHECK(b.keeper.acting());  // its gate is time-based: still open until it learns
  b.keeper.step();
  CHECK_FALSE(b.keeper.acting());
  CHECK(b.events.back() == "stopped: instance c holds the lease (epoch 3)");
}

TEST_CASE("requests reach the leader's hooks, on its step and at once when notified; a follower's never", "[cluster][asks]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a"), b(server, ticks, "b");
  a.keeper.step();
  b.keeper.step();
  a.events.clear();

  REQUIRE(b.keeper.ask(db::Ask{"check", "docker.io/library/alpine:3.20", "manual"}).ok());
  CHECK(server.notices.back() == "request");
  CHECK_FALSE(b.keeper.notified("request"));  // the follower leaves it
  CHECK(server.asks.size() == 1);
  CHECK_FALSE(a.keeper.notified("request"));
  CHECK(a.events == std::vector<std::string>{"ask check docker.io/library/alpine:3.20 manual"});
  CHECK(server.asks.empty());

  // Missed notifications: the next step takes them.
  REQUIRE(b.keeper.ask(db::Ask{"check", "", "webhook"}).ok());
  server.now += 5'000;
  a.keeper.step();
  CHECK(a.events.back() == "ask check  webhook");

  // Nudges: the leader's loops; a follower ignores them.
  REQUIRE(b.keeper.nudge("outbox").ok());
  CHECK_FALSE(b.keeper.notified("outbox"));
  CHECK_FALSE(a.keeper.notified("outbox"));
  CHECK(a.events.back() == "ask outbox  ");
  CHECK(b.events.empty());

  // A leader whose gate closed takes nothing: the request waits for the next.
  REQUIRE(b.keeper.ask(db::Ask{"check", "x", "manual"}).ok());
  server.now += 13'000;
  CHECK_FALSE(a.keeper.acting());
  CHECK_FALSE(a.keeper.notified("request"));
  CHECK(server.asks.size() == 1);
  server.now += 3'000;
  b.keeper.step();
  CHECK(b.keeper.acting());
  CHECK(b.events.back() == "ask check x manual");
}

TEST_CASE("a leader that stops gives the lease up, and the follower takes it at once", "[cluster][lease]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a"), b(server, ticks, "b");
  a.keeper.step();
  b.keeper.step();
  CHECK(server.instances.size() == 2);
  a.keeper.stop();
  CHECK_FALSE(a.keeper.acting());
  CHECK(server.notices.back() == "released");
  CHECK(server.instances.size() == 1);  // it left
  CHECK(b.keeper.notified("released"));
  b.keeper.step();
  CHECK(b.keeper.acting());
  CHECK(b.keeper.epoch() == 2);
  CHECK_FALSE(b.keeper.notified("released"));  // a leader has nothing to do with it
}

TEST_CASE("heartbeats: every L/3, and instances unheard of for 3L (at least a minute) leave the list", "[cluster][instances]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a", Millis(2'000)), b(server, ticks, "b", Millis(2'000));
  a.keeper.step();
  b.keeper.step();
  CHECK(server.heartbeats == 2);
  a.keeper.step();  // too soon for another heartbeat
  CHECK(server.heartbeats == 2);
  server.now += 666;
  a.keeper.step();
  CHECK(server.heartbeats == 3);
  CHECK(a.keeper.view().instances.size() == 2);
  // b dies; a goes on for a minute.
  for (int i = 0; i < 100; ++i) {
    server.now += 666;
    a.keeper.step();
  }
  auto view = a.keeper.view();
  REQUIRE(view.instances.size() == 1);
  CHECK(view.instances[0].id == "a");
  CHECK(view.instances[0].last_seen == server.now);
}

TEST_CASE("a view without a lease that runs names no leader", "[cluster][view]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a");
  CHECK(a.keeper.view().leader.empty());
  a.keeper.step();
  CHECK(a.keeper.view().leader == "a");
  server.now += 15'000;
  CHECK(a.keeper.view().leader.empty());
  server.down = true;
  auto blind = a.keeper.view();
  CHECK(blind.instance == "a");
  CHECK(blind.leader.empty());
  CHECK(blind.instances.empty());
}

TEST_CASE("alone on its database an instance always acts and its requests go straight to its hooks", "[cluster][solo]") {
  auto self = cluster::this_instance("0.1.0", from_unix_ms(5'000));
  CHECK(self.id.rfind(self.host + "-" + std::to_string(self.pid) + "-", 0) == 0);
  CHECK(self.id.size() == self.host.size() + std::to_string(self.pid).size() + 8);
  CHECK(self.version == "0.1.0");
  CHECK(self.started_at == 5'000);
  CHECK(cluster::this_instance("0.1.0", from_unix_ms(5'000)).id != self.id);

  cluster::Solo solo(self);
  std::vector<std::string> seen;
  cluster::Hooks h;
  h.ask = [&](const db::Ask& a) { seen.push_back(a.kind + ":" + a.ref + ":" + a.source); };
  solo.set_hooks(h);
  CHECK(solo.acting());
  REQUIRE(solo.ask(db::Ask{"check", "r", "manual"}).ok());
  REQUIRE(solo.nudge("outbox").ok());
  CHECK(seen == std::vector<std::string>{"check:r:manual", "outbox::"});
  auto view = solo.view();
  CHECK(view.instance == self.id);
  CHECK(view.leader == self.id);
  CHECK(view.leader_since == 5'000);
  CHECK(view.lease.count() == 0);
  REQUIRE(view.instances.size() == 1);
  CHECK(view.instances[0].id == self.id);
  CHECK(view.instances[0].last_seen > 0);
}

TEST_CASE("an instance that is stopping keeps the lease it holds but takes none", "[cluster][lease]") {
  FakeServer server;
  FakeTicks ticks(server);
  Node a(server, ticks, "a"), b(server, ticks, "b");
  a.keeper.step();
  b.keeper.step();
  a.keeper.leaving();
  b.keeper.leaving();
  server.now += 5'000;
  a.keeper.step();  // still renews: its last attempts are recorded under its epoch
  CHECK(a.keeper.acting());
  CHECK(server.expires_at == server.now + 15'000);
  a.keeper.stop();
  CHECK(b.keeper.notified("released"));
  b.keeper.step();
  CHECK_FALSE(b.keeper.acting());
  CHECK(server.holder == "a");  // nobody took it
  CHECK(b.events.empty());
}
