// What only the PostgreSQL engine promises, against a real server: its
// schema table, reconnecting after the connection breaks or the server
// restarts, errors (a bad URI, refused credentials, an unreachable server)
// named to the letter and never holding a password, and two instances
// migrating one new database at once.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "db/pg_store.h"
#include "tests/support/postgres.h"
#include "tests/support/support.h"

using namespace bw;
using bw::testing::shared_postgres;

namespace {

db::Delivery make_delivery(const std::string& id, int64_t at) {
  db::Delivery d;
  d.id = id;
  d.trigger = "ci";
  d.project = "web";
  d.payload = R"({"type":"base.updated","delivery_id":")" + id + R"("})";
  d.created_at = at;
  d.next_attempt_at = at;
  return d;
}

std::string port() { return std::to_string(shared_postgres().port()); }

}  // namespace

TEST_CASE("the schema version is kept in basewatch_schema, next to the tables", "[db][pg]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  auto s = db::Store::open(pg.uri(name));
  REQUIRE(s.ok());
  CHECK((*s)->schema_version() == db::k_schema_version);
  CHECK(pg.query(name, "SELECT version FROM basewatch_schema") == std::to_string(db::k_schema_version));
  CHECK(pg.query(name, "SELECT count(*) FROM basewatch_schema") == "1");
  CHECK(pg.query(name, "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables "
                       "WHERE table_schema='public'") ==
        "attempts,basewatch_instances,basewatch_lease,basewatch_requests,basewatch_schema,copy_jobs,deliveries,events,meta,mirrors,refs");
  // The session names itself in pg_stat_activity.
  CHECK(pg.query(name, "SELECT count(*) FROM pg_stat_activity WHERE application_name='basewatch' AND datname='" + name + "'") ==
        "1");
}

TEST_CASE("reads outside a transaction share a pool of at most four connections", "[db][pg]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  auto s = std::move(db::Store::open(pg.uri(name)).value());
  auto sessions = [&] {
    return std::stoi(pg.query(name, "SELECT count(*) FROM pg_stat_activity WHERE application_name='basewatch' AND "
                                    "datname='" + name + "'"));
  };
  REQUIRE(s->add_delivery(make_delivery("d_1", 1000)).ok());
  // One reader at a time: the first connection of the pool only.
  for (int i = 0; i < 20; ++i) REQUIRE(s->get_delivery("d_1").value());
  CHECK(sessions() == 2);  // the writer's and one reader's
  // Sixteen at once (the API's threads): more connections, never above four.
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto got = s->get_delivery("d_1");
        if (!got || !*got) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failed == 0);
  int now = sessions();
  CHECK(now > 2);
  CHECK(now <= 1 + 4);
}

TEST_CASE("two instances opening one new database at once migrate it once", "[db][pg]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  std::vector<Result<std::unique_ptr<db::Store>>> opened;
  std::mutex mutex;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto s = db::Store::open(pg.uri(name));
      std::lock_guard lock(mutex);
      opened.push_back(std::move(s));
    });
  }
  for (auto& t : threads) t.join();
  for (auto& s : opened) {
    REQUIRE(s.ok());
    CHECK(s.value()->schema_version() == db::k_schema_version);
  }
  REQUIRE(opened[0].value()->add_delivery(make_delivery("d_1", 1)).ok());
  CHECK(opened[3].value()->get_delivery("d_1").value());
}

TEST_CASE("a call on a broken connection is retried once on a fresh one", "[db][pg][reconnect]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  auto opened = db::PgStore::open(pg.uri(name));
  REQUIRE(opened.ok());
  auto& s = *opened;
  REQUIRE(s->add_delivery(make_delivery("d_1", 1000)).ok());
  CHECK(s->get_delivery("d_1").value());  // reads have a connection of their own: now open too
  CHECK(s->reconnects() == 0);

  pg.terminate_connections(name);
  // The first call after the break fails on the old connection, then runs
  // on a new one: the caller sees only the answer.
  auto got = s->get_delivery("d_1");
  REQUIRE(got.ok());
  CHECK(got.value());
  CHECK(s->reconnects() == 1);
  // Statements are prepared again on the new connection.
  CHECK(s->get_delivery("d_1").value());
  // The writer's connection broke too: replaced on its next call.
  REQUIRE(s->add_delivery(make_delivery("d_2", 2000)).ok());
  CHECK(s->reconnects() == 2);

  // Writes too, and transactions that begin on a broken connection.
  pg.terminate_connections(name);
  REQUIRE(s->add_delivery(make_delivery("d_3", 3000)).ok());
  pg.terminate_connections(name);
  REQUIRE(s->transaction([&]() -> Status { return s->add_delivery(make_delivery("d_4", 4000)); }).ok());
  CHECK(s->reconnects() == 4);
  CHECK(s->delivery_counts().value().at("pending") == 4);
}

TEST_CASE("a connection that breaks inside a transaction fails it, and the next call reconnects", "[db][pg][reconnect]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  auto s = std::move(db::PgStore::open(pg.uri(name)).value());
  auto st = s->transaction([&]() -> Status {
    BW_TRY(auto a, s->add_delivery(make_delivery("d_1", 1000)));
    (void)a;
    pg.terminate_connections(name);
    // Not retried: a fresh connection would run it outside the transaction.
    return s->add_delivery(make_delivery("d_2", 2000));
  });
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().kind == ErrorKind::io);
  CHECK(st.error().message.rfind("database: add delivery: ", 0) == 0);
  // The server rolled back what the transaction wrote (read on the read
  // connection, opened now).
  CHECK_FALSE(s->get_delivery("d_1").value());
  CHECK_FALSE(s->get_delivery("d_2").value());
  CHECK(s->reconnects() == 0);
  REQUIRE(s->add_delivery(make_delivery("d_3", 3000)).ok());
  CHECK(s->reconnects() == 1);  // the writer's
}

TEST_CASE("the store goes on after the server restarts", "[db][pg][reconnect]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  auto s = std::move(db::PgStore::open(pg.uri(name)).value());
  REQUIRE(s->add_delivery(make_delivery("d_1", 1000)).ok());
  pg.stop();
  // While it is down: an error (the fresh connection is refused), not a hang.
  auto down = s->get_delivery("d_1");
  pg.start();
  REQUIRE_FALSE(down.ok());
  CHECK(down.error().kind == ErrorKind::network);
  CHECK(down.error().message.find("Connection refused") != std::string::npos);
  // Back: the next call connects again and sees the data.
  auto got = s->get_delivery("d_1");
  REQUIRE(got.ok());
  CHECK(got.value());
  REQUIRE(s->add_delivery(make_delivery("d_2", 2000)).ok());
}

TEST_CASE("a URI libpq cannot read is refused before connecting, without its password", "[db][pg][errors]") {
  auto s = db::Store::open("postgresql://basewatch:hunter2@127.0.0.1:" + port() + "/db?sslmode=require&frobnicate=1");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::invalid);
  CHECK(s.error().message == "database postgresql://basewatch:***@127.0.0.1:" + port() +
                                 "/db?sslmode=require&frobnicate=1: invalid URI query parameter: \"frobnicate\"");

  auto bad_port = db::Store::open("postgres://basewatch@127.0.0.1:notaport/db?password=hunter2");
  REQUIRE_FALSE(bad_port.ok());
  CHECK(bad_port.error().kind == ErrorKind::invalid);
  CHECK(bad_port.error().message ==
        "database postgres://basewatch@127.0.0.1:notaport/db?password=***: invalid integer value \"notaport\" for connection option "
        "\"port\"");

  // A value libpq reads but rejects when connecting.
  auto bad_mode = db::Store::open("postgresql://basewatch@127.0.0.1:" + port() + "/db?sslmode=sometimes");
  REQUIRE_FALSE(bad_mode.ok());
  CHECK(bad_mode.error().kind == ErrorKind::invalid);
  CHECK(bad_mode.error().message ==
        "database postgresql://basewatch@127.0.0.1:" + port() + "/db?sslmode=sometimes: invalid sslmode value: \"sometimes\"");
}

TEST_CASE("a wrong password is refused as the user's to fix, and the password is never shown", "[db][pg][errors]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  auto s = db::Store::open(pg.uri_with_password(name, "wr0ng-pa55word"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::invalid);
  CHECK(s.error().message == "database postgresql://basewatch:***@127.0.0.1:" + port() + "/" + name +
                                 ": connection to server at \"127.0.0.1\", port " + port() +
                                 " failed: FATAL:  password authentication failed for user \"basewatch\"");
  CHECK(s.error().message.find("wr0ng-pa55word") == std::string::npos);

  // The right one, inline, works (and is not kept anywhere visible).
  auto right = db::Store::open(pg.uri_with_password(name, pg.password()));
  REQUIRE(right.ok());
}

TEST_CASE("no password at all is refused with a hint at passfile", "[db][pg][errors]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  std::string uri = "postgresql://basewatch@127.0.0.1:" + port() + "/" + name + "?passfile=/nonexistent/pgpass";
  auto s = db::Store::open(uri);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::invalid);
  CHECK(s.error().message == "database " + uri + ": connection to server at \"127.0.0.1\", port " + port() +
                                 " failed: fe_sendauth: no password supplied (no password found: name a passfile in the URI, "
                                 "?passfile=PATH, or set PGPASSFILE)");
}

TEST_CASE("a database or role the server does not know is the user's to fix", "[db][pg][errors]") {
  auto& pg = shared_postgres();
  auto s = db::Store::open(pg.uri("no_such_database"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::invalid);
  CHECK(s.error().message == "database " + pg.uri("no_such_database") + ": connection to server at \"127.0.0.1\", port " +
                                 port() + " failed: FATAL:  database \"no_such_database\" does not exist");
}

TEST_CASE("a server that cannot be reached is an operational error", "[db][pg][errors]") {
  int free = bw::testing::free_port();
  std::string uri = "postgresql://basewatch:hunter2@127.0.0.1:" + std::to_string(free) + "/db?connect_timeout=2";
  auto s = db::Store::open(uri);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::network);
  CHECK(s.error().message == "database postgresql://basewatch:***@127.0.0.1:" + std::to_string(free) +
                                 "/db?connect_timeout=2: connection to server at \"127.0.0.1\", port " + std::to_string(free) +
                                 " failed: Connection refused Is the server running on that host and accepting TCP/IP connections?");
}

TEST_CASE("a newer schema on PostgreSQL is refused as the user's to fix", "[db][pg][errors]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  REQUIRE(db::Store::open(pg.uri(name)).ok());
  pg.query(name, "UPDATE basewatch_schema SET version=7");
  auto s = db::Store::open(pg.uri(name));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::invalid);
  CHECK(s.error().message == "database: schema version 7 is newer than this basewatch understands (" +
                                 std::to_string(db::k_schema_version) + "); use a newer basewatch or another database");
  CHECK(pg.query(name, "SELECT version FROM basewatch_schema") == "7");
}
