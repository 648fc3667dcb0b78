// basewatch db copy on real parts: a state made by a real `serve` on SQLite,
// with a delivery still failing because the receiver is down, moves to a
// real PostgreSQL; `serve` on the copy goes on where the old one stopped (no
// baseline again, the delivery sent under its original id, new ids after the
// copied ones), and the state moves back to SQLite unchanged.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <csignal>
#include <regex>

#include "tests/integration/helpers.h"
#include "tests/support/postgres.h"

using namespace bw::testing;
using json = nlohmann::json;

namespace {

void stop(Process& p) {
  p.signal(SIGTERM);
  auto code = p.wait(std::chrono::seconds(30));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

// "id state attempts" of every event and delivery, in id order.
std::string sqlite_rows(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  std::string out;
  auto each = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
      out += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      out += "\n";
    }
    sqlite3_finalize(st);
  };
  each("SELECT id || ' ' || outcome || ' ' || detected_at FROM events ORDER BY id");
  each("SELECT id || ' ' || state || ' ' || attempts || ' ' || created_at FROM deliveries ORDER BY id");
  each("SELECT id || ' ' || delivery_id || ' ' || at || ' ' || status FROM attempts ORDER BY id");
  sqlite3_close(db);
  return out;
}

std::string pg_rows(PostgresServer& pg, const std::string& name) {
  std::string out;
  for (const char* sql : {"SELECT string_agg(id || ' ' || outcome || ' ' || detected_at || E'\\n', '' ORDER BY id) FROM events",
                          "SELECT string_agg(id || ' ' || state || ' ' || attempts || ' ' || created_at || E'\\n', '' ORDER BY id "
                          "COLLATE \"C\") FROM deliveries",
                          "SELECT string_agg(id || ' ' || delivery_id || ' ' || at || ' ' || status || E'\\n', '' ORDER BY id) "
                          "FROM attempts"}) {
    out += pg.query(name, sql);
  }
  return out;
}

}  // namespace

TEST_CASE("db copy moves a serve's state from SQLite to PostgreSQL and back; serve goes on from the copy",
          "[integration][postgres][copy]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "release one");
  Receiver receiver;
  receiver.set_status(503);  // down
  TempDir dir("bw-db-copy");
  int api_port = free_port();
  dir.write("web/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20\n");
  std::string sqlite_path = dir.path() + "/basewatch.db";
  std::string sqlite_config = dir.write("sqlite.yaml", web_config(sqlite_path, api_port, registry, receiver, "retry: {initial: 1s, max: 2s}\n"));
  std::string pg_uri = pg.uri(name);
  std::string pg_config = dir.write("pg.yaml", web_config(pg_uri, api_port, registry, receiver, "retry: {initial: 1s, max: 2s}\n"));

  // serve on SQLite: a baseline, then a change whose delivery keeps failing.
  std::string id;
  {
    auto bw = start_basewatch(sqlite_config, api_port, dir.path() + "/sqlite.log");
    REQUIRE(bw->running());
    REQUIRE(wait_until([&] {
      auto images = get_json(api_port, "/v1/images");
      return images.is_array() && images.size() == 1 && images[0]["digest"] == d1;
    }, std::chrono::seconds(20)));
    registry.push_image("team/alpine", "3.20", "release two");
    REQUIRE(wait_until([&] {
      auto failed = get_json(api_port, "/v1/deliveries?state=failed");
      return failed.is_array() && failed.size() == 1 && failed[0]["attempts"].get<int>() >= 2;
    }, std::chrono::seconds(30)));
    stop(*bw);
  }
  auto listed = run({basewatch_binary(), "deliveries", "-c", sqlite_config, "--json"});
  REQUIRE(listed.status == 0);
  auto before = json::parse(listed.output);
  REQUIRE(before.size() == 1);
  id = before[0]["id"];
  CHECK(before[0]["state"] == "failed");
  size_t attempts_before = receiver.count();
  CHECK(attempts_before == before[0]["attempts"].get<size_t>());
  std::string sqlite_state = sqlite_rows(sqlite_path);

  // Copy into PostgreSQL.
  auto copied = run({basewatch_binary(), "db", "copy", sqlite_path, pg_uri});
  INFO(copied.output << copied.errors);
  REQUIRE(copied.status == 0);
  std::smatch counts;
  REQUIRE(std::regex_match(copied.output, counts,
                           std::regex("copied " + sqlite_path + " to .*: refs 1, events 1, deliveries 1, attempts ([0-9]+), meta 1, mirrors 0, copy_jobs 0\n")));
  CHECK(std::stoul(counts[1]) == attempts_before);
  CHECK(copied.output.find(" to " + pg_uri + ": ") != std::string::npos);
  CHECK(pg_rows(pg, name) == sqlite_state);

  // A second copy into it is refused: it is not empty any more.
  auto again = run({basewatch_binary(), "db", "copy", sqlite_path, pg_uri});
  CHECK(again.status == 2);
  CHECK(again.errors == "basewatch: " + pg_uri + ": the destination is not empty (refs: 1, events: 1, deliveries: 1, attempts: " +
                            std::to_string(attempts_before) + ", meta: 1); db copy only writes into an empty database\n");
  CHECK(pg_rows(pg, name) == sqlite_state);

  // serve on the copy, the receiver back: the same delivery, its id, sent; no baseline.
  receiver.set_status(204);
  receiver.clear();
  {
    auto bw = start_basewatch(pg_config, api_port, dir.path() + "/pg.log");
    REQUIRE(bw->running());
    REQUIRE(receiver.wait_for(1, std::chrono::seconds(20)));
    auto first = receiver.requests()[0];
    CHECK(first.headers.at("x-basewatch-delivery") == id);
    CHECK(json::parse(first.body)["delivery_id"] == id);
    REQUIRE(wait_until([&] {
      auto delivered = get_json(api_port, "/v1/deliveries?state=delivered");
      return delivered.is_array() && delivered.size() == 1;
    }, std::chrono::seconds(10)));
    // A new change gets a new event after the copied one, and its own delivery.
    std::string d3 = registry.push_image("team/alpine", "3.20", "release three");
    REQUIRE(receiver.wait_for(2, std::chrono::seconds(20)));
    CHECK(json::parse(receiver.requests()[1].body)["changes"][0]["new_digest"] == d3);
    stop(*bw);
    CHECK(bw->log().find("baseline") == std::string::npos);
  }
  CHECK(receiver.count() == 2);
  CHECK(pg.query(name, "SELECT string_agg(id::text, ',' ORDER BY id) FROM events") == "1,2");
  CHECK(pg.query(name, "SELECT attempts FROM deliveries WHERE id='" + id + "'") == std::to_string(attempts_before + 1));

  // And back into a new SQLite file: the same rows.
  std::string back = dir.path() + "/back.db";
  auto returned = run({basewatch_binary(), "db", "copy", pg_uri, back});
  INFO(returned.output << returned.errors);
  REQUIRE(returned.status == 0);
  CHECK(sqlite_rows(back) == pg_rows(pg, name));
  std::string back_config = dir.write("back.yaml", web_config(back, api_port, registry, receiver, "retry: {initial: 1s, max: 2s}\n"));
  auto from_pg = run({basewatch_binary(), "deliveries", "-c", pg_config, "--json"});
  auto from_back = run({basewatch_binary(), "deliveries", "-c", back_config, "--json"});
  REQUIRE(from_pg.status == 0);
  CHECK(from_back.output == from_pg.output);
}

TEST_CASE("db copy refuses what it cannot do, naming it", "[integration][postgres][copy]") {
  auto& pg = shared_postgres();
  TempDir dir("bw-db-copy-errors");
  std::string missing = dir.path() + "/missing.db";
  auto no_source = run({basewatch_binary(), "db", "copy", missing, dir.path() + "/new.db"});
  CHECK(no_source.status == 2);
  CHECK(no_source.errors == "basewatch: " + missing + ": no such database file\n");
  CHECK_FALSE(std::filesystem::exists(missing));
  CHECK_FALSE(std::filesystem::exists(dir.path() + "/new.db"));

  std::string a = dir.path() + "/a.db";
  REQUIRE(run({basewatch_binary(), "db", "copy", pg.uri(pg.create_database()), a}).status == 0);
  auto same = run({basewatch_binary(), "db", "copy", a, a});
  CHECK(same.status == 2);
  CHECK(same.errors == "basewatch: db copy: SRC and DST are the same database\n");

  // A SQLite destination that holds something is refused, and keeps it.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(a.c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw, "INSERT INTO meta(key, value) VALUES('last_poll', '1')", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  std::string name = pg.create_database();
  auto full = run({basewatch_binary(), "db", "copy", pg.uri(name), a});
  CHECK(full.status == 2);
  CHECK(full.errors == "basewatch: " + a + ": the destination is not empty (meta: 1); db copy only writes into an empty database\n");
  auto kept = run({basewatch_binary(), "db", "copy", a, pg.uri(name)});
  REQUIRE(kept.status == 0);
  CHECK(pg.query(name, "SELECT value FROM meta WHERE key='last_poll'") == "1");

  // A password in a URI never shows; a refused one is exit 2.
  auto refused = run({basewatch_binary(), "db", "copy", pg.uri_with_password(name, "n0t-the-passw0rd"), dir.path() + "/b.db"});
  CHECK(refused.status == 2);
  CHECK(refused.errors.find("n0t-the-passw0rd") == std::string::npos);
  CHECK(refused.errors.find("basewatch: database postgresql://basewatch:***@127.0.0.1:") == 0);
  CHECK_FALSE(std::filesystem::exists(dir.path() + "/b.db"));
}
