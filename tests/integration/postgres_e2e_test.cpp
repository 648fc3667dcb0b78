// The real binary on a PostgreSQL `database:` (a real server the test
// starts, tests/support/postgres.h): check and serve fire exactly one
// delivery per moved tag, serve goes on after the server restarts, a
// passfile is found relative to the config, and the database's errors exit
// 2 or 1 with a clear message that holds no password.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <csignal>

#include "tests/integration/helpers.h"
#include "tests/support/postgres.h"
#include "db/store.h"

using namespace bw::testing;
using json = nlohmann::json;

namespace {

std::string minimal_config(const std::string& database) {
  return "database: \"" + database + "\"\n"
         "watch: [{ref: \"127.0.0.1:1/team/alpine:3.20\"}]\n";
}

}  // namespace

TEST_CASE("check and serve on PostgreSQL: a moved tag fires exactly one delivery", "[integration][postgres][e2e]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "release one");
  Receiver receiver;
  TempDir dir("bw-pg-e2e");
  int api_port = free_port();
  dir.write("web/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20\n");
  std::string config = dir.write("config.yaml", web_config(pg.uri(name), api_port, registry, receiver));
  std::string ref = registry.host() + "/team/alpine:3.20";

  // check: the first sight is a baseline, nothing is sent.
  auto first = run({basewatch_binary(), "check", "-c", config});
  INFO(first.output << first.errors);
  REQUIRE(first.status == 0);
  CHECK(first.output == "baseline\t" + ref + "\t" + d1 + "\n1 checked, 0 changed, 0 errors; 0 delivered, 0 failed\n");
  CHECK(pg.query(name, "SELECT digest FROM refs") == d1);

  // check after a push: one delivery, sent.
  std::string d2 = registry.push_image("team/alpine", "3.20", "release two");
  auto second = run({basewatch_binary(), "check", "-c", config});
  INFO(second.output << second.errors);
  REQUIRE(second.status == 0);
  CHECK(second.output.find("changed\t" + ref + "\t" + d1 + " -> " + d2 + "\n") == 0);
  REQUIRE(receiver.wait_for(1, std::chrono::seconds(10)));
  CHECK(pg.query(name, "SELECT count(*) FROM deliveries WHERE state='delivered'") == "1");

  // serve on the same database: it goes on from there (no baseline again).
  auto bw = start_basewatch(config, api_port, dir.path() + "/serve.log");
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] {
    auto status = get_json(api_port, "/v1/status");
    return status.is_object() && status["last_poll"].is_string();
  }, std::chrono::seconds(20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // two more cycles, unchanged
  CHECK(receiver.count() == 1);

  std::string d3 = registry.push_image("team/alpine", "3.20", "release three");
  REQUIRE(receiver.wait_for(2, std::chrono::seconds(20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // nothing more comes
  auto requests = receiver.requests();
  REQUIRE(requests.size() == 2);
  auto body = json::parse(requests[1].body);
  CHECK(body["changes"][0]["old_digest"] == d2);
  CHECK(body["changes"][0]["new_digest"] == d3);
  CHECK(body["delivery_id"] == requests[1].headers.at("x-basewatch-delivery"));
  auto delivered = get_json(api_port, "/v1/deliveries?state=delivered");
  REQUIRE(delivered.is_array());
  CHECK(delivered.size() == 2);
  CHECK(pg.query(name, "SELECT count(*) FROM events WHERE outcome='fired'") == "2");
  CHECK(bw->log().find("baseline") == std::string::npos);

  bw->signal(SIGTERM);
  auto code = bw->wait(std::chrono::seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

TEST_CASE("serve goes on after the PostgreSQL server restarts under it", "[integration][postgres][e2e]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "before");
  Receiver receiver;
  TempDir dir("bw-pg-restart");
  int api_port = free_port();
  dir.write("web/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20\n");
  std::string config = dir.write("config.yaml", web_config(pg.uri(name), api_port, registry, receiver));
  auto bw = start_basewatch(config, api_port, dir.path() + "/serve.log");
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] { return pg.query(name, "SELECT count(*) FROM refs") == "1"; }, std::chrono::seconds(20)));

  pg.stop();
  // A cycle against the stopped server fails (and backs that reference off).
  bool failed = wait_until([&] { return bw->log().find("Connection refused") != std::string::npos; }, std::chrono::seconds(10));
  pg.start();  // before any REQUIRE: the other cases share the server
  REQUIRE(failed);
  std::string d2 = registry.push_image("team/alpine", "3.20", "after");
  // As a registry notification would: check now, whatever the backoff.
  httplib::Client api("127.0.0.1", api_port);
  auto posted = api.Post("/v1/check", "", "application/json");
  REQUIRE(posted);
  CHECK(posted->status == 202);
  REQUIRE(receiver.wait_for(1, std::chrono::seconds(20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  CHECK(receiver.count() == 1);
  CHECK(json::parse(receiver.requests()[0].body)["changes"][0]["new_digest"] == d2);
  CHECK(bw->running());
  CHECK(pg.query(name, "SELECT count(*) FROM deliveries WHERE state='delivered'") == "1");
  bw->signal(SIGTERM);
  auto code = bw->wait(std::chrono::seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

TEST_CASE("a relative passfile in the URI is found next to the config", "[integration][postgres]") {
  auto& pg = shared_postgres();
  std::string name = pg.create_database();
  TempDir dir("bw-pg-passfile");
  std::string passfile = dir.write("secrets/pgpass", "127.0.0.1:" + std::to_string(pg.port()) + ":*:basewatch:" + pg.password() + "\n");
  ::chmod(passfile.c_str(), 0600);
  std::string uri = "postgresql://basewatch@127.0.0.1:" + std::to_string(pg.port()) + "/" + name + "?passfile=secrets/pgpass";
  std::string config = dir.write("etc/config.yaml", minimal_config(uri));
  // From another folder: the path is the config's, not the working directory's.
  ::rename((dir.path() + "/secrets").c_str(), (dir.path() + "/etc/secrets").c_str());
  auto listed = run({basewatch_binary(), "deliveries", "-c", config, "--json"});
  INFO(listed.errors);
  CHECK(listed.status == 0);
  CHECK(listed.output == "[]\n");
}

TEST_CASE("database errors on PostgreSQL: exit 2 for the user's to fix, 1 for an unreachable server, no password shown",
          "[integration][postgres][errors]") {
  auto& pg = shared_postgres();
  TempDir dir("bw-pg-errors");
  std::string port = std::to_string(pg.port());
  const std::string secret = "Sup3r-s3cret-pw";

  struct Case {
    std::string what, uri;
    int status;
    std::string message;
  };
  std::string name = pg.create_database();
  std::string newer = pg.create_database();
  // A database this basewatch made, then "upgraded" by a newer one.
  auto made = run({basewatch_binary(), "deliveries", "-c", dir.write("newer.yaml", minimal_config(pg.uri(newer)))});
  REQUIRE(made.status == 0);
  pg.query(newer, "UPDATE basewatch_schema SET version=42");
  int unused = free_port();
  std::vector<Case> cases{
      {"a bad URI", "postgresql://basewatch:" + secret + "@127.0.0.1:" + port + "/" + name + "?sslmode=require&colour=blue", 2,
       "database postgresql://basewatch:***@127.0.0.1:" + port + "/" + name +
           "?sslmode=require&colour=blue: invalid URI query parameter: \"colour\""},
      {"a wrong password", pg.uri_with_password(name, secret), 2,
       "database postgresql://basewatch:***@127.0.0.1:" + port + "/" + name + ": connection to server at \"127.0.0.1\", port " +
           port + " failed: FATAL:  password authentication failed for user \"basewatch\""},
      {"a newer schema", pg.uri(newer), 2,
       "database: schema version 42 is newer than this basewatch understands (" + std::to_string(bw::db::k_schema_version) + "); use a newer basewatch or another database"},
      {"an unreachable server", "postgresql://basewatch:" + secret + "@127.0.0.1:" + std::to_string(unused) + "/" + name, 1,
       "database postgresql://basewatch:***@127.0.0.1:" + std::to_string(unused) + "/" + name +
           ": connection to server at \"127.0.0.1\", port " + std::to_string(unused) +
           " failed: Connection refused Is the server running on that host and accepting TCP/IP connections?"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    std::string config = dir.write("config.yaml", minimal_config(c.uri));
    auto check = run({basewatch_binary(), "check", "-c", config});
    CHECK(check.status == c.status);
    CHECK(check.errors == "basewatch: " + c.message + "\n");
    CHECK(check.output.find(secret) == std::string::npos);

    auto serve = run({basewatch_binary(), "serve", "-c", config}, {}, "", std::chrono::seconds(30));
    CHECK(serve.status == c.status);
    CHECK(serve.errors.find(" error [") != std::string::npos);
    CHECK(serve.errors.find("] " + c.message + "\n") != std::string::npos);
    CHECK(serve.errors.find(secret) == std::string::npos);
    CHECK(serve.output.find(secret) == std::string::npos);
  }
}
