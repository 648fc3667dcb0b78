// The cluster's bookkeeping on a real PostgreSQL (db/cluster.h) and the
// store's fence (Store::set_fence): the lease taken, renewed, left to its
// holder and taken over with the next epoch; a fenced store's writes refused
// once the lease moved on, a takeover waiting for a fenced transaction, the
// server ending a stalled one; instances, requests for the leader, and
// LISTEN/NOTIFY across a broken connection.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>

#include "db/cluster.h"
#include "db/pg_store.h"
#include "db/sqlite_store.h"
#include "tests/support/postgres.h"
#include "tests/support/support.h"

using namespace bw;
using bw::testing::shared_postgres;

namespace {

constexpr Millis k_long{60'000};

struct Db {
  std::string name, uri;
  std::unique_ptr<db::Store> store;  // makes the tables
};

Db new_db() {
  auto& pg = shared_postgres();
  Db d;
  d.name = pg.create_database();
  d.uri = pg.uri(d.name);
  auto s = db::Store::open(d.uri);
  REQUIRE(s.ok());
  d.store = std::move(*s);
  return d;
}

std::unique_ptr<db::Cluster> link(const Db& d, Millis timeouts = Millis(0)) {
  auto c = db::Cluster::open(d.uri, timeouts);
  REQUIRE(c.ok());
  return std::move(*c);
}

// As if the holder's lease had run out (the server's clock moves on).
void run_out(const Db& d) { shared_postgres().query(d.name, "UPDATE basewatch_lease SET expires_at = 0"); }

db::RefState ref(const std::string& name) {
  db::RefState r;
  r.ref = name;
  r.digest = "sha256:1";
  return r;
}

}  // namespace

TEST_CASE("the lease: taken when free, renewed by its holder, left to it while it runs, then taken with the next epoch",
          "[db][pg][cluster]") {
  auto d = new_db();
  auto a = link(d), b = link(d);
  CHECK(shared_postgres().query(d.name, "SELECT epoch FROM basewatch_lease") == "0");

  auto first = a->claim("a", 0, k_long);
  REQUIRE(first.ok());
  CHECK(first->holder == "a");
  CHECK(first->epoch == 1);
  CHECK(first->expires_in > 59'000);
  CHECK(first->expires_in <= 60'000);

  auto other = b->claim("b", 0, k_long);
  REQUIRE(other.ok());
  CHECK(other->holder == "a");
  CHECK(other->epoch == 1);
  CHECK(other->since == first->since);
  CHECK(other->expires_in > 0);

  auto renewed = a->claim("a", 1, Millis(30'000));
  REQUIRE(renewed.ok());
  CHECK(renewed->holder == "a");
  CHECK(renewed->epoch == 1);
  CHECK(renewed->since == first->since);
  CHECK(renewed->expires_in <= 30'000);

  run_out(d);
  auto taken = b->claim("b", 0, k_long);
  REQUIRE(taken.ok());
  CHECK(taken->holder == "b");
  CHECK(taken->epoch == 2);
  CHECK(taken->since >= first->since);

  // The old holder's renewal finds another epoch: it has lost the lease.
  auto lost = a->claim("a", 1, k_long);
  REQUIRE(lost.ok());
  CHECK(lost->holder == "b");
  CHECK(lost->epoch == 2);
  auto read = a->lease();
  REQUIRE(read.ok());
  CHECK(read->holder == "b");
  CHECK(read->epoch == 2);
}

TEST_CASE("a released lease is taken at once, and the others are told", "[db][pg][cluster]") {
  auto d = new_db();
  auto a = link(d), b = link(d), listener = link(d);
  REQUIRE(listener->wait(Millis(0)).ok());  // listening from here on
  REQUIRE(a->claim("a", 0, k_long)->epoch == 1);
  // A release by a stale epoch or another instance changes nothing.
  REQUIRE(a->release("a", 7).ok());
  REQUIRE(b->release("b", 1).ok());
  CHECK(b->claim("b", 0, k_long)->holder == "a");

  REQUIRE(a->release("a", 1).ok());
  auto told = listener->wait(Millis(5000));
  REQUIRE(told.ok());
  CHECK(*told == std::vector<std::string>{"released"});
  auto taken = b->claim("b", 0, k_long);
  REQUIRE(taken.ok());
  CHECK(taken->holder == "b");
  CHECK(taken->epoch == 2);
}

TEST_CASE("a fenced store writes while its epoch holds the lease, and nothing after the lease moved on", "[db][pg][cluster][fence]") {
  auto d = new_db();
  auto a = link(d), b = link(d);
  auto leader = db::Store::open(d.uri);
  REQUIRE(leader.ok());
  auto& s = *leader;
  REQUIRE(a->claim("a", 0, k_long)->epoch == 1);
  REQUIRE(s->set_fence(db::Fence{1, Millis(5000)}).ok());
  REQUIRE(s->put_ref(ref("one")).ok());
  REQUIRE(s->transaction([&]() -> Status { return s->put_ref(ref("two")); }).ok());
  CHECK(shared_postgres().query(d.name, "SELECT string_agg(ref, ',' ORDER BY ref) FROM refs") == "one,two");

  run_out(d);
  REQUIRE(b->claim("b", 0, k_long)->epoch == 2);
  const std::string refused = "database: fenced: the lease of epoch 1 has passed to another instance; nothing was written";
  auto lone = s->put_ref(ref("three"));
  REQUIRE_FALSE(lone.ok());
  CHECK(lone.error().kind == ErrorKind::fenced);
  CHECK(lone.error().message == refused);
  auto id = s->add_event(db::Event{});
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().kind == ErrorKind::fenced);
  bool ran = false;
  auto tx = s->transaction([&]() -> Status {
    ran = true;
    return s->put_ref(ref("four"));
  });
  REQUIRE_FALSE(tx.ok());
  CHECK(tx.error().message == refused);
  CHECK_FALSE(ran);
  CHECK(shared_postgres().query(d.name, "SELECT string_agg(ref, ',' ORDER BY ref) FROM refs") == "one,two");
  CHECK(shared_postgres().query(d.name, "SELECT count(*) FROM events") == "0");
  // Reads are not fenced.
  auto got = s->get_ref("one");
  REQUIRE(got.ok());
  CHECK(got.value());

  // The new leader's fence; and no fence at all (another instance's API).
  REQUIRE(s->set_fence(db::Fence{2, Millis(5000)}).ok());
  REQUIRE(s->put_ref(ref("five")).ok());
  REQUIRE(s->set_fence(db::Fence{}).ok());
  run_out(d);
  REQUIRE(a->claim("a", 0, k_long)->epoch == 3);
  REQUIRE(s->put_ref(ref("six")).ok());
  CHECK(shared_postgres().query(d.name, "SELECT string_agg(ref, ',' ORDER BY ref) FROM refs") == "five,one,six,two");
}

TEST_CASE("a takeover waits for the old leader's fenced transaction, which commits under its epoch", "[db][pg][cluster][fence]") {
  auto d = new_db();
  auto a = link(d), b = link(d);
  auto s = std::move(db::Store::open(d.uri).value());
  REQUIRE(a->claim("a", 0, k_long)->epoch == 1);
  REQUIRE(s->set_fence(db::Fence{1, Millis(30'000)}).ok());

  std::promise<void> inside, go;
  auto writer = std::async(std::launch::async, [&] {
    return s->transaction([&]() -> Status {
      BW_TRY(auto put, s->put_ref(ref("in-flight")));
      (void)put;
      inside.set_value();
      go.get_future().wait();
      return s->put_ref(ref("in-flight-2"));
    });
  });
  inside.get_future().wait();
  run_out(d);
  auto taker = std::async(std::launch::async, [&] { return b->claim("b", 0, k_long); });
  // b waits on the lease row's lock, held by the fenced transaction.
  REQUIRE(bw::testing::wait_until(
      [&] {
        return shared_postgres().query(d.name, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                               "wait_event_type = 'Lock'") == "1";
      },
      std::chrono::seconds(10)));
  CHECK(shared_postgres().query(d.name, "SELECT epoch FROM basewatch_lease") == "1");
  go.set_value();
  auto written = writer.get();
  CHECK(written.ok());
  auto taken = taker.get();
  REQUIRE(taken.ok());
  CHECK(taken->holder == "b");
  CHECK(taken->epoch == 2);
  CHECK(shared_postgres().query(d.name, "SELECT count(*) FROM refs") == "2");
  CHECK(s->put_ref(ref("after")).error().kind == ErrorKind::fenced);
}

TEST_CASE("a fenced transaction left idle past its limit is ended by the server, freeing the lease row", "[db][pg][cluster][fence]") {
  auto d = new_db();
  auto a = link(d), b = link(d);
  auto s = std::move(db::Store::open(d.uri).value());
  REQUIRE(a->claim("a", 0, k_long)->epoch == 1);
  REQUIRE(s->set_fence(db::Fence{1, Millis(300)}).ok());
  // The way a leader stopped (SIGSTOP) between two statements would leave it.
  auto stalled = s->transaction([&]() -> Status {
    BW_TRY(auto put, s->put_ref(ref("stalled")));
    (void)put;
    run_out(d);
    auto taken = b->claim("b", 0, k_long);  // waits until the server ends the idle transaction
    REQUIRE(taken.ok());
    CHECK(taken->epoch == 2);
    return s->put_ref(ref("stalled-2"));
  });
  REQUIRE_FALSE(stalled.ok());
  CHECK(shared_postgres().query(d.name, "SELECT count(*) FROM refs") == "0");
  // The store reconnects (keeping its limit) and stays fenced.
  CHECK(s->put_ref(ref("later")).error().kind == ErrorKind::fenced);
}

TEST_CASE("instances: a heartbeat says who is alive, a leaver and the long-unseen are forgotten", "[db][pg][cluster]") {
  auto d = new_db();
  auto c = link(d);
  db::Instance one{"host-1-1-aaaaaa", "host-1", 1, "0.1.0", 1000, 0};
  db::Instance two{"host-2-2-bbbbbb", "host-2", 2, "0.1.0", 2000, 0};
  REQUIRE(c->heartbeat(two, k_long).ok());
  REQUIRE(c->heartbeat(one, k_long).ok());
  auto listed = c->instances();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 2);
  CHECK((*listed)[0].id == one.id);  // started first
  CHECK((*listed)[0].host == "host-1");
  CHECK((*listed)[0].pid == 1);
  CHECK((*listed)[0].version == "0.1.0");
  CHECK((*listed)[0].started_at == 1000);
  CHECK((*listed)[0].last_seen > 0);
  CHECK((*listed)[1].id == two.id);

  REQUIRE(c->leave(two.id).ok());
  REQUIRE(c->instances()->size() == 1);
  REQUIRE(c->heartbeat(two, k_long).ok());
  shared_postgres().query(d.name, "UPDATE basewatch_instances SET last_seen = last_seen - 120000 WHERE id = '" + one.id + "'");
  REQUIRE(c->heartbeat(two, k_long).ok());
  listed = c->instances();
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].id == two.id);
}

TEST_CASE("requests for the leader: stored, announced, and taken only by the epoch holding the lease", "[db][pg][cluster]") {
  auto d = new_db();
  auto api = link(d), keeper = link(d);
  REQUIRE(keeper->wait(Millis(0)).ok());
  REQUIRE(keeper->claim("k", 0, k_long)->epoch == 1);
  REQUIRE(api->ask(db::Ask{"check", "docker.io/library/alpine:3.20", "manual"}).ok());
  REQUIRE(api->ask(db::Ask{"check", "", "webhook"}).ok());
  // One notification per request, each in its own transaction.
  std::vector<std::string> told;
  REQUIRE(bw::testing::wait_until(
      [&] {
        auto w = keeper->wait(Millis(100));
        if (w.ok()) told.insert(told.end(), w->begin(), w->end());
        return told.size() >= 2;
      },
      std::chrono::seconds(10)));
  CHECK(told == std::vector<std::string>{"request", "request"});

  auto stale = keeper->take_asks(7);
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.error().kind == ErrorKind::fenced);
  CHECK(stale.error().message == "database: fenced: the lease of epoch 7 has passed to another instance; the requests are left for it");
  auto taken = keeper->take_asks(1);
  REQUIRE(taken.ok());
  REQUIRE(taken->size() == 2);
  CHECK((*taken)[0].kind == "check");
  CHECK((*taken)[0].ref == "docker.io/library/alpine:3.20");
  CHECK((*taken)[0].source == "manual");
  CHECK((*taken)[1].ref == "");
  CHECK((*taken)[1].source == "webhook");
  CHECK(keeper->take_asks(1)->empty());

  REQUIRE(api->notify("outbox").ok());
  auto nudged = keeper->wait(Millis(5000));
  REQUIRE(nudged.ok());
  CHECK(*nudged == std::vector<std::string>{"outbox"});
  auto quiet = keeper->wait(Millis(50));
  REQUIRE(quiet.ok());
  CHECK(quiet->empty());
}

TEST_CASE("a listener whose connection broke listens again on a new one", "[db][pg][cluster][reconnect]") {
  auto d = new_db();
  auto sender = link(d), listener = link(d);
  REQUIRE(listener->wait(Millis(0)).ok());
  shared_postgres().terminate_connections(d.name);
  // The break shows (an error or nothing), then the next wait reconnects.
  (void)listener->wait(Millis(200));
  std::vector<std::string> got;
  REQUIRE(bw::testing::wait_until(
      [&] {
        (void)sender->notify("outbox");
        auto w = listener->wait(Millis(100));
        if (w.ok()) got.insert(got.end(), w->begin(), w->end());
        return !got.empty();
      },
      std::chrono::seconds(10)));
  CHECK(got[0] == "outbox");
}

TEST_CASE("a SQLite database has no cluster and takes no fence", "[db][cluster]") {
  bw::testing::TempDir dir("bw-cluster");
  auto c = db::Cluster::open(dir.path() + "/basewatch.db");
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().kind == ErrorKind::invalid);
  CHECK(c.error().message == "database " + dir.path() +
                                 "/basewatch.db: a SQLite file serves one instance; several instances need a PostgreSQL database");
  auto s = db::SqliteStore::open(":memory:");
  REQUIRE(s.ok());
  CHECK((*s)->set_fence(db::Fence{}).ok());
  auto refused = (*s)->set_fence(db::Fence{1, Millis(1000)});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind == ErrorKind::invalid);
  CHECK(refused.error().message == "database: a SQLite file serves one instance; fencing several needs PostgreSQL");
}
