// What only the SQLite engine promises: the file format (WAL, user_version),
// ":memory:", and statements that never hold the file between calls.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include "db/sqlite_store.h"
#include "tests/support/support.h"

using namespace bw;

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

// One value of a query run on a connection of our own.
std::string query_one(const std::string& path, const std::string& sql) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(raw, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    auto p = sqlite3_column_text(st, 0);
    out = p ? reinterpret_cast<const char*>(p) : "";
  }
  sqlite3_finalize(st);
  sqlite3_close(raw);
  return out;
}

}  // namespace

TEST_CASE("a path is a SQLite file in WAL mode with the schema version in user_version", "[unit][db][sqlite]") {
  testing::TempDir dir("bw-sqlite");
  std::string path = dir.path() + "/basewatch.db";
  {
    auto s = db::Store::open(path);
    REQUIRE(s.ok());
    REQUIRE((*s)->add_delivery(make_delivery("d_1", 1000)).ok());
  }
  CHECK(query_one(path, "PRAGMA journal_mode") == "wal");
  CHECK(query_one(path, "PRAGMA user_version") == std::to_string(db::k_schema_version));
  CHECK(query_one(path, "SELECT id FROM deliveries") == "d_1");
}

TEST_CASE(":memory: is a private database per store", "[unit][db][sqlite]") {
  auto a = std::move(db::Store::open(":memory:").value());
  auto b = std::move(db::Store::open(":memory:").value());
  REQUIRE(a->add_delivery(make_delivery("d_1", 1000)).ok());
  CHECK(a->get_delivery("d_1").value());
  CHECK_FALSE(b->get_delivery("d_1").value());
}

TEST_CASE("a file that is not a database is refused", "[unit][db][sqlite]") {
  testing::TempDir dir("bw-sqlite");
  std::string path = dir.write("basewatch.db", std::string(4096, 'x'));
  auto s = db::Store::open(path);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::io);
  CHECK(s.error().message == "database: file is not a database");
}

TEST_CASE("prepared statements are reused, and a query left unfinished does not hold the database", "[unit][db][sqlite]") {
  testing::TempDir dir("bw-sqlite");
  std::string path = dir.path() + "/basewatch.db";
  auto s = std::move(db::Store::open(path).value());
  for (int i = 0; i < 3; ++i) REQUIRE(s->add_delivery(make_delivery("d_" + std::to_string(i), 1000 + i)).ok());
  // get_delivery stops at the first row; the same statement answers again with other binds.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 3; ++i) CHECK(s->get_delivery("d_" + std::to_string(i)).value()->created_at == 1000 + i);
  }
  CHECK_FALSE(s->get_delivery("d_9").value());
  // Another connection can still take the write lock: no read was left open.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  CHECK(sqlite3_exec(raw, "BEGIN EXCLUSIVE; DELETE FROM deliveries WHERE id='d_0'; COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  CHECK_FALSE(s->get_delivery("d_0").value());
  CHECK(s->get_delivery("d_1").value());
}
