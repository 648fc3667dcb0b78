#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <filesystem>

#include "db/store.h"
#include "triggers/dispatcher.h"
#include "util/crypto.h"

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

}  // namespace

TEST_CASE("the store migrates a new database to the current schema and refuses a newer one", "[unit][db]") {
  auto path = std::filesystem::temp_directory_path() / ("bwdb-" + std::to_string(::getpid()) + ".db");
  std::filesystem::remove(path);
  {
    auto s = db::Store::open(path.string());
    REQUIRE(s.ok());
    CHECK((*s)->schema_version() == db::k_schema_version);
    REQUIRE((*s)->add_delivery(make_delivery("d_1", 1000)).ok());
  }
  {
    auto s = db::Store::open(path.string());  // reopen: data kept, no migration rerun
    REQUIRE(s.ok());
    CHECK((*s)->get_delivery("d_1").value()->state == db::DeliveryState::pending);
    (*s)->transaction([&]() -> Status { return ok_status(); });
  }
  {
    // A future basewatch wrote it.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.string().c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "PRAGMA user_version=99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
    auto s = db::Store::open(path.string());
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message == "database: schema version 99 is newer than this basewatch understands (2); "
                               "use a newer basewatch or another database");
  }
  std::filesystem::remove(path);
}

TEST_CASE("schema 1 -> 2: attempts gain pushed_digest, the attempts already there are kept", "[unit][db]") {
  auto path = std::filesystem::temp_directory_path() / ("bwdb-v1-" + std::to_string(::getpid()) + ".db");
  std::filesystem::remove(path);
  {
    auto s = db::Store::open(path.string());
    REQUIRE(s.ok());
    REQUIRE((*s)->add_delivery(make_delivery("d_1", 1000)).ok());
    REQUIRE((*s)->record_attempt(db::Attempt{"d_1", 2000, 0, "", 5, "built\n", ""}, db::DeliveryState::delivered, 0).ok());
  }
  {
    // Back to what a schema-1 basewatch wrote.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.string().c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "ALTER TABLE attempts DROP COLUMN pushed_digest; PRAGMA user_version=1", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  auto s = db::Store::open(path.string());
  REQUIRE(s.ok());
  CHECK((*s)->schema_version() == 2);
  auto before = (*s)->list_attempts("d_1").value();
  REQUIRE(before.size() == 1);
  CHECK(before[0].output_tail == "built\n");
  CHECK(before[0].pushed_digest.empty());
  const std::string digest = "sha256:" + std::string(64, 'e');
  REQUIRE((*s)->record_attempt(db::Attempt{"d_1", 3000, 0, "", 7, "pushed\n", digest}, db::DeliveryState::delivered, 0).ok());
  auto after = (*s)->list_attempts("d_1").value();
  REQUIRE(after.size() == 2);
  CHECK(after[1].pushed_digest == digest);
  s->reset();
  std::filesystem::remove(path);
}

TEST_CASE("touch_ref moves the check times and clears the error, keeping the digests", "[unit][db]") {
  auto s = std::move(db::Store::open(":memory:").value());
  CHECK(s->touch_ref("r:1", 5, 6).error().kind == ErrorKind::not_found);
  CHECK(s->next_checks().value().empty());
  db::RefState r;
  r.ref = "r:1";
  r.digest = "sha256:aa";
  r.media_type = "application/vnd.oci.image.index.v1+json";
  r.platforms = {{"linux/amd64", "sha256:bb"}};
  r.last_checked = 1;
  r.last_changed = 1;
  r.next_check = 2;
  REQUIRE(s->put_ref(r).ok());
  REQUIRE(s->set_ref_error("r:1", "timeout", "r:1: timed out", 3, 4).ok());
  CHECK(s->get_ref("r:1").value()->failures == 1);
  REQUIRE(s->touch_ref("r:1", 10, 20).ok());
  auto got = s->get_ref("r:1").value();
  REQUIRE(got);
  CHECK(got->digest == "sha256:aa");
  CHECK(got->media_type == r.media_type);
  CHECK(got->platforms == r.platforms);
  CHECK(got->last_checked == 10);
  CHECK(got->last_changed == 1);
  CHECK(got->next_check == 20);
  CHECK(got->last_error.empty());
  CHECK(got->error_kind.empty());
  CHECK(got->failures == 0);
  r.ref = "r:0";
  r.next_check = 7;
  REQUIRE(s->put_ref(r).ok());
  CHECK(s->next_checks().value() == std::map<std::string, int64_t>{{"r:0", 7}, {"r:1", 20}});
}

TEST_CASE("prepared statements are reused, and a query left unfinished does not hold the database", "[unit][db]") {
  auto path = std::filesystem::temp_directory_path() / ("bwdb-stmt-" + std::to_string(::getpid()) + ".db");
  std::filesystem::remove(path);
  {
    auto s = std::move(db::Store::open(path.string()).value());
    for (int i = 0; i < 3; ++i) REQUIRE(s->add_delivery(make_delivery("d_" + std::to_string(i), 1000 + i)).ok());
    // get_delivery stops at the first row; the same statement answers again with other binds.
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < 3; ++i) CHECK(s->get_delivery("d_" + std::to_string(i)).value()->created_at == 1000 + i);
    }
    CHECK_FALSE(s->get_delivery("d_9").value());
    // Another connection can still take the write lock: no read was left open.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.string().c_str(), &raw) == SQLITE_OK);
    CHECK(sqlite3_exec(raw, "BEGIN EXCLUSIVE; DELETE FROM deliveries WHERE id='d_0'; COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
    CHECK_FALSE(s->get_delivery("d_0").value());
    CHECK(s->get_delivery("d_1").value());
  }
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + "-wal");
  std::filesystem::remove(path.string() + "-shm");
}

TEST_CASE("a failed transaction leaves nothing behind", "[unit][db]") {
  auto s = std::move(db::Store::open(":memory:").value());
  auto st = s->transaction([&]() -> Status {
    BW_TRY(auto a, s->add_delivery(make_delivery("d_1", 1000)));
    (void)a;
    return make_error(ErrorKind::internal, "boom");
  });
  CHECK_FALSE(st.ok());
  CHECK_FALSE(s->get_delivery("d_1").value());
}

TEST_CASE("retry delays grow exponentially, capped, with bounded jitter", "[unit][triggers]") {
  triggers::RetryPolicy p;
  p.initial = Millis(5000);
  p.max = Millis(60'000);
  p.jitter = 0.2;
  CHECK(triggers::retry_delay(p, 1, 0.5) == Millis(5000));
  CHECK(triggers::retry_delay(p, 2, 0.5) == Millis(10'000));
  CHECK(triggers::retry_delay(p, 3, 0.5) == Millis(20'000));
  CHECK(triggers::retry_delay(p, 5, 0.5) == Millis(60'000));
  CHECK(triggers::retry_delay(p, 50, 0.5) == Millis(60'000));
  CHECK(triggers::retry_delay(p, 1, 0.0) == Millis(4000));
  CHECK(triggers::retry_delay(p, 1, 1.0) == Millis(6000));
}

TEST_CASE("the dispatcher retries under one id until a 2xx, then never again", "[unit][triggers]") {
  auto store = std::move(db::Store::open(":memory:").value());
  FakeClock clock;
  int answers = 0;
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    ++answers;
    if (answers == 1) return make_error(ErrorKind::network, "connection refused");
    net::Response r;
    r.status = answers == 2 ? 503 : 204;
    return r;
  });
  config::TriggerConfig t;
  t.name = "ci";
  t.type = "webhook";
  t.url = "https://ci.example.com/hook";
  t.secret = "k";
  triggers::Dispatcher dispatcher(*store, clock, 2);
  std::map<std::string, std::unique_ptr<triggers::Trigger>> ts;
  ts["ci"] = std::make_unique<triggers::WebhookTrigger>(t, http);
  triggers::RetryPolicy policy;
  policy.initial = Millis(1000);
  policy.jitter = 0;
  dispatcher.set_triggers(std::move(ts), policy);
  REQUIRE(store->add_delivery(make_delivery("d_abc", to_unix_ms(clock.now()))).ok());

  CHECK(dispatcher.dispatch_once(clock.now()).failed == 1);
  CHECK(dispatcher.dispatch_once(clock.now()).attempted == 0);  // backing off
  clock.advance(Millis(1000));
  CHECK(dispatcher.dispatch_once(clock.now()).failed == 1);
  clock.advance(Millis(1999));
  CHECK(dispatcher.dispatch_once(clock.now()).attempted == 0);
  clock.advance(Millis(1));
  CHECK(dispatcher.dispatch_once(clock.now()).delivered == 1);
  clock.advance(Millis(3'600'000));
  CHECK(dispatcher.dispatch_once(clock.now()).attempted == 0);

  auto d = store->get_delivery("d_abc").value();
  CHECK(d->state == db::DeliveryState::delivered);
  CHECK(d->attempts == 3);
  auto attempts = store->list_attempts("d_abc").value();
  REQUIRE(attempts.size() == 3);
  CHECK(attempts[0].error == "connection refused");
  CHECK(attempts[1].status == 503);
  CHECK(attempts[2].status == 204);
  for (const auto& r : http.requests()) {
    std::map<std::string, std::string> h(r.headers.begin(), r.headers.end());
    CHECK(h["X-Basewatch-Delivery"] == "d_abc");
    CHECK(h["X-Basewatch-Signature-256"] == "sha256=" + hmac_sha256_hex("k", r.body));
    CHECK(r.body == d->payload);
  }
}

TEST_CASE("a delivery is dead after max_attempts and can be queued again by id", "[unit][triggers]") {
  auto store = std::move(db::Store::open(":memory:").value());
  FakeClock clock;
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    net::Response r;
    r.status = 500;
    r.body = "down";
    return r;
  });
  config::TriggerConfig t;
  t.type = "webhook";
  t.url = "https://ci.example.com/hook";
  triggers::Dispatcher dispatcher(*store, clock);
  std::map<std::string, std::unique_ptr<triggers::Trigger>> ts;
  ts["ci"] = std::make_unique<triggers::WebhookTrigger>(t, http);
  triggers::RetryPolicy policy;
  policy.max_attempts = 3;
  policy.initial = Millis(10);
  policy.jitter = 0;
  dispatcher.set_triggers(std::move(ts), policy);
  REQUIRE(store->add_delivery(make_delivery("d_x", to_unix_ms(clock.now()))).ok());
  for (int i = 0; i < 5; ++i) {
    dispatcher.dispatch_once(clock.now());
    clock.advance(Millis(1000));
  }
  auto d = store->get_delivery("d_x").value();
  CHECK(d->state == db::DeliveryState::dead);
  CHECK(d->attempts == 3);
  CHECK(d->last_error == "HTTP 500: down");
  CHECK(store->delivery_counts().value().at("dead") == 1);

  REQUIRE(store->requeue("d_x", to_unix_ms(clock.now())).ok());
  CHECK(store->get_delivery("d_x").value()->state == db::DeliveryState::failed);
  CHECK(dispatcher.dispatch_once(clock.now()).attempted == 1);
  CHECK(store->requeue("d_nope", 0).error().kind == ErrorKind::not_found);
}
