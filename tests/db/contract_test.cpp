// The store's contract: what every engine behind db::Store answers. This file
// is compiled once per engine (tests/db/CMakeLists.txt), linked with the
// engine's test_engine(); nothing here knows which engine runs.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "db/copy.h"
#include "tests/db/engine.h"

using namespace bw;
using bw::testing::test_engine;

namespace {

std::unique_ptr<db::Store> open_new() {
  auto s = db::Store::open(test_engine().new_database());
  if (!s) FAIL("open: " << s.error().message);
  return std::move(s.value());
}

db::Delivery delivery(const std::string& id, int64_t created, int64_t due, const std::string& trigger = "ci",
                      const std::string& project = "web") {
  db::Delivery d;
  d.id = id;
  d.trigger = trigger;
  d.project = project;
  d.payload = R"({"type":"base.updated","delivery_id":")" + id + R"("})";
  d.created_at = created;
  d.next_attempt_at = due;
  return d;
}

db::RefState ref_state(const std::string& ref, int64_t next_check) {
  db::RefState r;
  r.ref = ref;
  r.digest = "sha256:" + std::string(64, 'a');
  r.media_type = "application/vnd.oci.image.index.v1+json";
  r.platforms = {{"linux/amd64", "sha256:" + std::string(64, 'b')}, {"linux/arm64/v8", "sha256:" + std::string(64, 'c')}};
  r.last_checked = 1000;
  r.last_changed = 900;
  r.next_check = next_check;
  return r;
}

std::vector<std::string> ids(const std::vector<db::Delivery>& ds) {
  std::vector<std::string> out;
  for (const auto& d : ds) out.push_back(d.id);
  return out;
}

db::Attempt attempt(const std::string& id, int64_t at, int status, const std::string& error = "") {
  db::Attempt a;
  a.delivery_id = id;
  a.at = at;
  a.status = status;
  a.error = error;
  a.duration_ms = 12;
  a.output_tail = status ? "" : "built\n";
  return a;
}

}  // namespace

TEST_CASE("a new database is created at the current schema and reopened without migrating again", "[db][schema]") {
  std::string database = test_engine().new_database();
  {
    auto s = db::Store::open(database);
    REQUIRE(s.ok());
    CHECK((*s)->schema_version() == db::k_schema_version);
    REQUIRE((*s)->add_delivery(delivery("d_1", 1000, 1000)).ok());
    REQUIRE((*s)->set_meta("last_poll", "1000").ok());
  }
  auto s = db::Store::open(database);
  REQUIRE(s.ok());
  CHECK((*s)->schema_version() == db::k_schema_version);
  CHECK((*s)->get_delivery("d_1").value()->state == db::DeliveryState::pending);
  CHECK((*s)->get_meta("last_poll").value() == "1000");
}

TEST_CASE("a database of every older schema migrates forward and keeps its rows", "[db][schema]") {
  // Version 1 is the first with tables; each later one must carry them on.
  for (int from = 1; from <= db::k_schema_version; ++from) {
    INFO("from schema version " << from);
    std::string database = test_engine().new_database();
    {
      auto old = test_engine().open_at(database, from);
      REQUIRE(old.ok());
      CHECK((*old)->schema_version() == from);
    }
    // Rows as version 1 wrote them (this binary's statements may name
    // columns an older schema lacks): version 1's columns only.
    test_engine().exec(database,
                       "INSERT INTO refs(ref, digest, media_type, platforms, last_checked, last_changed, next_check, last_error, "
                       "error_kind, failures) VALUES('r:1', 'sha256:" + std::string(64, 'a') + "', 'application/vnd.oci.image.index.v1+json', "
                       "'{\"linux/amd64\":\"sha256:" + std::string(64, 'b') + "\",\"linux/arm64/v8\":\"sha256:" + std::string(64, 'c') +
                       "\"}', 1000, 900, 5, '', '', 0);"
                       "INSERT INTO deliveries(id, trigger, project, state, payload, attempts, created_at, next_attempt_at, updated_at) "
                       "VALUES('d_1', 'ci', 'web', 'pending', '{}', 0, 1000, 1000, 1000);"
                       "INSERT INTO events(ref, old_digest, new_digest, platforms, outcome, source, detected_at, deliveries) "
                       "VALUES('r:1', 'a', 'b', '{}', 'fired', 'poll', 7, '[\"d_1\"]');"
                       "INSERT INTO attempts(delivery_id, at, status, error, duration_ms, output_tail) "
                       "VALUES('d_1', 2000, 0, '', 5, 'built');");
    auto s = db::Store::open(database);
    REQUIRE(s.ok());
    CHECK((*s)->schema_version() == db::k_schema_version);
    CHECK((*s)->get_ref("r:1").value()->platforms == ref_state("r:1", 5).platforms);
    REQUIRE((*s)->get_delivery("d_1").value());
    CHECK((*s)->get_delivery("d_1").value()->wait_job == 0);  // added in 2, waits for nothing
    CHECK(ids(*(*s)->due_deliveries(1000, 10)) == std::vector<std::string>{"d_1"});
    CHECK((*s)->list_events(10).value().size() == 1);
    auto attempts = (*s)->list_attempts("d_1").value();
    REQUIRE(attempts.size() == 1);
    CHECK(attempts[0].output_tail == "built");
    CHECK(attempts[0].pushed_digest.empty());  // added in 3, nothing pushed
  }
}

TEST_CASE("a database of a newer schema is refused, and left as it is", "[db][schema]") {
  std::string database = test_engine().new_database();
  {
    auto s = db::Store::open(database);
    REQUIRE(s.ok());
    REQUIRE((*s)->add_delivery(delivery("d_1", 1000, 1000)).ok());
  }
  test_engine().set_schema_version(database, 99);
  auto s = db::Store::open(database);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::invalid);  // the user's to fix: exit 2
  CHECK(s.error().message == "database: schema version 99 is newer than this basewatch understands (" +
                                 std::to_string(db::k_schema_version) + "); use a newer basewatch or another database");
  // Nothing was migrated or dropped: an older version reads it again.
  test_engine().set_schema_version(database, db::k_schema_version);
  auto again = db::Store::open(database);
  REQUIRE(again.ok());
  CHECK((*again)->get_delivery("d_1").value());
}

TEST_CASE("references: put, get, list, pages, failing, next checks, delete", "[db][refs]") {
  auto s = open_new();
  CHECK_FALSE(s->get_ref("r:1").value());
  CHECK(s->list_refs().value().empty());
  CHECK(s->next_checks().value().empty());
  CHECK(s->failing_refs().value().empty());

  auto r1 = ref_state("r:1", 20);
  REQUIRE(s->put_ref(r1).ok());
  REQUIRE(s->put_ref(ref_state("r:0", 10)).ok());
  auto got = s->get_ref("r:1").value();
  REQUIRE(got);
  CHECK(got->ref == "r:1");
  CHECK(got->digest == r1.digest);
  CHECK(got->media_type == r1.media_type);
  CHECK(got->platforms == r1.platforms);
  CHECK(got->last_checked == 1000);
  CHECK(got->last_changed == 900);
  CHECK(got->next_check == 20);
  CHECK(got->last_error.empty());
  CHECK(got->failures == 0);

  // put_ref replaces the whole row.
  r1.digest = "sha256:" + std::string(64, 'd');
  r1.platforms = {{"linux/amd64", "sha256:" + std::string(64, 'e')}};
  r1.last_error = "kept as given";
  r1.error_kind = "timeout";
  r1.failures = 3;
  REQUIRE(s->put_ref(r1).ok());
  got = s->get_ref("r:1").value();
  CHECK(got->digest == r1.digest);
  CHECK(got->platforms == r1.platforms);
  CHECK(got->failures == 3);
  CHECK(got->error_kind == "timeout");

  auto all = s->list_refs().value();
  REQUIRE(all.size() == 2);
  CHECK(all[0].ref == "r:0");
  CHECK(all[1].ref == "r:1");
  CHECK(s->next_checks().value() == std::map<std::string, int64_t>{{"r:0", 10}, {"r:1", 20}});

  auto page = s->get_refs({"r:1", "r:missing", "r:0"}).value();
  REQUIRE(page.size() == 2);
  CHECK(page[0].ref == "r:1");
  CHECK(page[1].ref == "r:0");
  CHECK(page[0].platforms == r1.platforms);
  CHECK(s->get_refs({}).value().empty());

  CHECK(s->failing_refs().value() == std::set<std::string>{"r:1"});

  REQUIRE(s->delete_ref("r:1").ok());
  CHECK_FALSE(s->get_ref("r:1").value());
  REQUIRE(s->delete_ref("r:never").ok());
  CHECK(s->list_refs().value().size() == 1);
}

TEST_CASE("a reference with an empty digest and odd text round-trips", "[db][refs]") {
  auto s = open_new();
  db::RefState r;
  r.ref = "registry.example.com:5000/team/it's \"quoted\" \\ back:tag";
  r.error_kind = "invalid";
  r.last_error = "line one\nline two\ttab, unicode: \xc3\xa9";
  REQUIRE(s->put_ref(r).ok());
  auto got = s->get_ref(r.ref).value();
  REQUIRE(got);
  CHECK(got->digest.empty());
  CHECK(got->platforms.empty());
  CHECK(got->last_error == r.last_error);
  CHECK(s->get_refs({r.ref}).value().size() == 1);
}

TEST_CASE("touch_ref moves the check times and clears the error, keeping the digests", "[db][refs]") {
  auto s = open_new();
  CHECK(s->touch_ref("r:1", 5, 6).error().kind == ErrorKind::not_found);
  CHECK(s->touch_ref("r:1", 5, 6).error().message == "no reference r:1");
  auto r = ref_state("r:1", 2);
  REQUIRE(s->put_ref(r).ok());
  REQUIRE(s->set_ref_error("r:1", "timeout", "r:1: timed out", 3, 4).ok());
  REQUIRE(s->touch_ref("r:1", 10, 20).ok());
  auto got = s->get_ref("r:1").value();
  REQUIRE(got);
  CHECK(got->digest == r.digest);
  CHECK(got->media_type == r.media_type);
  CHECK(got->platforms == r.platforms);
  CHECK(got->last_checked == 10);
  CHECK(got->last_changed == 900);
  CHECK(got->next_check == 20);
  CHECK(got->last_error.empty());
  CHECK(got->error_kind.empty());
  CHECK(got->failures == 0);
  CHECK(s->failing_refs().value().empty());
}

TEST_CASE("set_ref_error counts failures on a row, or creates one", "[db][refs]") {
  auto s = open_new();
  REQUIRE(s->set_ref_error("r:new", "network", "r:new: connection refused", 3, 4).ok());
  auto fresh = s->get_ref("r:new").value();
  REQUIRE(fresh);
  CHECK(fresh->digest.empty());
  CHECK(fresh->failures == 1);
  CHECK(fresh->error_kind == "network");
  CHECK(fresh->last_error == "r:new: connection refused");
  CHECK(fresh->last_checked == 3);
  CHECK(fresh->next_check == 4);

  auto r = ref_state("r:1", 2);
  REQUIRE(s->put_ref(r).ok());
  REQUIRE(s->set_ref_error("r:1", "timeout", "first", 3, 4).ok());
  REQUIRE(s->set_ref_error("r:1", "server", "second", 5, 6).ok());
  auto got = s->get_ref("r:1").value();
  CHECK(got->failures == 2);
  CHECK(got->error_kind == "server");
  CHECK(got->last_error == "second");
  CHECK(got->last_checked == 5);
  CHECK(got->next_check == 6);
  CHECK(got->digest == r.digest);
  CHECK(got->platforms == r.platforms);
  CHECK(got->last_changed == 900);
  CHECK(s->failing_refs().value() == std::set<std::string>{"r:1", "r:new"});
}

TEST_CASE("events get increasing ids and list newest first", "[db][events]") {
  auto s = open_new();
  CHECK(s->list_events(10).value().empty());
  db::Event e;
  e.ref = "r:1";
  e.old_digest = "sha256:old";
  e.new_digest = "sha256:new";
  e.platforms = {{"linux/amd64", {"sha256:a1", "sha256:a2"}}, {"linux/arm64", {"", "sha256:b2"}}};
  e.outcome = "fired";
  e.source = "poll";
  e.detected_at = 2000;
  e.deliveries = {"d_1", "d_2"};
  e.id = 12345;  // ignored
  auto id1 = s->add_event(e);
  REQUIRE(id1.ok());
  e.ref = "r:2";
  e.detected_at = 1000;  // older, added later
  e.deliveries.clear();
  e.platforms.clear();
  e.outcome = "recorded";
  e.source = "webhook";
  auto id2 = s->add_event(e);
  REQUIRE(id2.ok());
  e.ref = "r:3";
  e.detected_at = 2000;  // same time as the first: the higher id is newer
  auto id3 = s->add_event(e);
  REQUIRE(id3.ok());
  CHECK(*id1 != 12345);
  CHECK(*id2 > *id1);
  CHECK(*id3 > *id2);

  auto list = s->list_events(10).value();
  REQUIRE(list.size() == 3);
  CHECK(list[0].ref == "r:3");
  CHECK(list[1].ref == "r:1");
  CHECK(list[2].ref == "r:2");
  CHECK(list[1].id == *id1);
  CHECK(list[1].old_digest == "sha256:old");
  CHECK(list[1].new_digest == "sha256:new");
  CHECK(list[1].platforms == std::map<std::string, std::pair<std::string, std::string>>{
                                 {"linux/amd64", {"sha256:a1", "sha256:a2"}}, {"linux/arm64", {"", "sha256:b2"}}});
  CHECK(list[1].outcome == "fired");
  CHECK(list[1].source == "poll");
  CHECK(list[1].detected_at == 2000);
  CHECK(list[1].deliveries == std::vector<std::string>{"d_1", "d_2"});
  CHECK(list[2].outcome == "recorded");
  CHECK(list[2].source == "webhook");
  CHECK(list[2].deliveries.empty());
  CHECK(list[2].platforms.empty());

  auto newest = s->list_events(2).value();
  REQUIRE(newest.size() == 2);
  CHECK(newest[1].ref == "r:1");
}

TEST_CASE("deliveries: add, get, list by state, newest first, and no duplicate id", "[db][outbox]") {
  auto s = open_new();
  CHECK_FALSE(s->get_delivery("d_1").value());
  CHECK(s->list_deliveries(std::nullopt, 10).value().empty());

  auto d1 = delivery("d_1", 1000, 1500, "ci", "web");
  REQUIRE(s->add_delivery(d1).ok());
  REQUIRE(s->add_delivery(delivery("d_2", 2000, 2000, "cd", "")).ok());
  REQUIRE(s->add_delivery(delivery("d_3", 2000, 2000)).ok());
  CHECK_FALSE(s->add_delivery(delivery("d_1", 3000, 3000)).ok());

  auto got = s->get_delivery("d_1").value();
  REQUIRE(got);
  CHECK(got->id == "d_1");
  CHECK(got->trigger == "ci");
  CHECK(got->project == "web");
  CHECK(got->state == db::DeliveryState::pending);
  CHECK(got->payload == d1.payload);
  CHECK(got->attempts == 0);
  CHECK(got->created_at == 1000);
  CHECK(got->next_attempt_at == 1500);
  CHECK(got->updated_at == 1000);
  CHECK(got->delivered_at == 0);
  CHECK(got->last_status == 0);
  CHECK(got->last_error.empty());
  CHECK(s->get_delivery("d_2").value()->project.empty());

  CHECK(ids(s->list_deliveries(std::nullopt, 10).value()) == std::vector<std::string>{"d_3", "d_2", "d_1"});
  CHECK(ids(s->list_deliveries(std::nullopt, 2).value()) == std::vector<std::string>{"d_3", "d_2"});
  CHECK(ids(s->list_deliveries(db::DeliveryState::pending, 10).value()).size() == 3);
  CHECK(s->list_deliveries(db::DeliveryState::dead, 10).value().empty());
  REQUIRE(s->record_attempt(attempt("d_2", 2100, 204), db::DeliveryState::delivered, 0).ok());
  CHECK(ids(s->list_deliveries(db::DeliveryState::delivered, 10).value()) == std::vector<std::string>{"d_2"});
  CHECK(ids(s->list_deliveries(db::DeliveryState::pending, 10).value()) == std::vector<std::string>{"d_3", "d_1"});
}

TEST_CASE("due deliveries: pending and failed ones due now, by due time then age, up to the limit", "[db][outbox]") {
  auto s = open_new();
  CHECK(s->due_deliveries(10'000, 10).value().empty());
  CHECK_FALSE(s->next_due().value());

  REQUIRE(s->add_delivery(delivery("d_late", 100, 5000)).ok());
  REQUIRE(s->add_delivery(delivery("d_b", 300, 1000)).ok());
  REQUIRE(s->add_delivery(delivery("d_a", 200, 1000)).ok());
  REQUIRE(s->add_delivery(delivery("d_first", 400, 500)).ok());
  REQUIRE(s->add_delivery(delivery("d_done", 50, 100)).ok());
  REQUIRE(s->add_delivery(delivery("d_dead", 60, 100)).ok());
  REQUIRE(s->add_delivery(delivery("d_failed", 70, 900)).ok());
  REQUIRE(s->record_attempt(attempt("d_done", 150, 200), db::DeliveryState::delivered, 0).ok());
  REQUIRE(s->record_attempt(attempt("d_dead", 150, 500), db::DeliveryState::dead, 0).ok());
  REQUIRE(s->record_attempt(attempt("d_failed", 150, 503), db::DeliveryState::failed, 900).ok());

  CHECK(ids(s->due_deliveries(1000, 10).value()) == std::vector<std::string>{"d_first", "d_failed", "d_a", "d_b"});
  CHECK(ids(s->due_deliveries(1000, 2).value()) == std::vector<std::string>{"d_first", "d_failed"});
  CHECK(ids(s->due_deliveries(499, 10).value()).empty());
  CHECK(ids(s->due_deliveries(5000, 10).value()).back() == "d_late");
  CHECK(s->next_due().value() == std::optional<int64_t>(500));

  auto counts = s->delivery_counts().value();
  CHECK(counts == std::map<std::string, int64_t>{{"pending", 4}, {"delivered", 1}, {"failed", 1}, {"dead", 1}});
}

TEST_CASE("delivery counts name all four states, even at zero", "[db][outbox]") {
  auto s = open_new();
  CHECK(s->delivery_counts().value() == std::map<std::string, int64_t>{{"pending", 0}, {"delivered", 0}, {"failed", 0}, {"dead", 0}});
}

TEST_CASE("settling: new changes join a delivery not attempted yet and still inside its window", "[db][outbox]") {
  auto s = open_new();
  CHECK_FALSE(s->find_settling("ci", "web", 1000).value());
  REQUIRE(s->add_delivery(delivery("d_old", 100, 2000, "ci", "web")).ok());
  REQUIRE(s->add_delivery(delivery("d_new", 200, 2500, "ci", "web")).ok());
  REQUIRE(s->add_delivery(delivery("d_other_project", 50, 3000, "ci", "api")).ok());
  REQUIRE(s->add_delivery(delivery("d_other_trigger", 50, 3000, "cd", "web")).ok());

  auto found = s->find_settling("ci", "web", 1000).value();
  REQUIRE(found);
  CHECK(found->id == "d_old");  // the oldest
  CHECK(found->payload == delivery("d_old", 0, 0).payload);
  // The window ends at next_attempt_at: due now is not settling any more.
  CHECK(s->find_settling("ci", "web", 2000).value()->id == "d_new");
  CHECK_FALSE(s->find_settling("ci", "web", 2500).value());
  CHECK(s->find_settling("ci", "", 1000).value() == std::nullopt);

  REQUIRE(s->update_settling("d_old", R"({"changes":[1,2]})", 2200).ok());
  auto updated = s->get_delivery("d_old").value();
  CHECK(updated->payload == R"({"changes":[1,2]})");
  CHECK(updated->next_attempt_at == 2200);
  CHECK(updated->created_at == 100);

  // Once attempted, it settles no more and its payload is fixed.
  REQUIRE(s->record_attempt(attempt("d_old", 2300, 503), db::DeliveryState::pending, 2400).ok());
  CHECK(s->find_settling("ci", "web", 1000).value()->id == "d_new");
  REQUIRE(s->update_settling("d_old", "changed", 9999).ok());
  CHECK(s->get_delivery("d_old").value()->payload == R"({"changes":[1,2]})");
  CHECK(s->get_delivery("d_old").value()->next_attempt_at == 2400);

  // Failed or delivered ones never settle.
  REQUIRE(s->record_attempt(attempt("d_new", 2300, 503), db::DeliveryState::failed, 2600).ok());
  CHECK_FALSE(s->find_settling("ci", "web", 1000).value());
}

TEST_CASE("record_attempt writes the attempt and the delivery's new state together", "[db][outbox]") {
  auto s = open_new();
  REQUIRE(s->add_delivery(delivery("d_1", 1000, 1000)).ok());
  CHECK(s->list_attempts("d_1").value().empty());

  REQUIRE(s->record_attempt(attempt("d_1", 1100, 0, "connection refused"), db::DeliveryState::failed, 6100).ok());
  auto d = s->get_delivery("d_1").value();
  CHECK(d->state == db::DeliveryState::failed);
  CHECK(d->attempts == 1);
  CHECK(d->next_attempt_at == 6100);
  CHECK(d->updated_at == 1100);
  CHECK(d->last_status == 0);
  CHECK(d->last_error == "connection refused");
  CHECK(d->delivered_at == 0);

  auto pushed = attempt("d_1", 6200, 204);
  pushed.pushed_digest = "sha256:" + std::string(64, 'e');  // what a build trigger pushed
  REQUIRE(s->record_attempt(pushed, db::DeliveryState::delivered, 0).ok());
  d = s->get_delivery("d_1").value();
  CHECK(d->state == db::DeliveryState::delivered);
  CHECK(d->attempts == 2);
  CHECK(d->updated_at == 6200);
  CHECK(d->delivered_at == 6200);
  CHECK(d->last_status == 204);
  CHECK(d->last_error.empty());
  CHECK(d->payload == delivery("d_1", 0, 0).payload);

  auto attempts = s->list_attempts("d_1").value();
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].delivery_id == "d_1");
  CHECK(attempts[0].at == 1100);
  CHECK(attempts[0].status == 0);
  CHECK(attempts[0].error == "connection refused");
  CHECK(attempts[0].duration_ms == 12);
  CHECK(attempts[0].output_tail == "built\n");
  CHECK(attempts[1].at == 6200);
  CHECK(attempts[1].status == 204);
  CHECK(attempts[1].output_tail.empty());
  CHECK(attempts[0].pushed_digest.empty());
  CHECK(attempts[1].pushed_digest == pushed.pushed_digest);
  CHECK(s->list_attempts("d_other").value().empty());

  // An attempt of a delivery that does not exist is refused, and leaves nothing.
  CHECK_FALSE(s->record_attempt(attempt("d_nope", 1, 204), db::DeliveryState::delivered, 0).ok());
  CHECK(s->list_attempts("d_nope").value().empty());
}

TEST_CASE("requeue makes a delivery due now under the same id, keeping its attempts", "[db][outbox]") {
  auto s = open_new();
  CHECK(s->requeue("d_nope", 0).error().kind == ErrorKind::not_found);
  CHECK(s->requeue("d_nope", 0).error().message == "no delivery with id d_nope");
  REQUIRE(s->add_delivery(delivery("d_fresh", 1000, 9000)).ok());
  REQUIRE(s->add_delivery(delivery("d_dead", 1000, 1000)).ok());
  REQUIRE(s->record_attempt(attempt("d_dead", 1100, 500), db::DeliveryState::dead, 0).ok());
  REQUIRE(s->add_delivery(delivery("d_done", 1000, 1000)).ok());
  REQUIRE(s->record_attempt(attempt("d_done", 1100, 200), db::DeliveryState::delivered, 0).ok());

  REQUIRE(s->requeue("d_fresh", 2000).ok());
  REQUIRE(s->requeue("d_dead", 2000).ok());
  REQUIRE(s->requeue("d_done", 2000).ok());
  auto fresh = s->get_delivery("d_fresh").value();
  CHECK(fresh->state == db::DeliveryState::pending);
  CHECK(fresh->next_attempt_at == 2000);
  CHECK(fresh->updated_at == 2000);
  auto dead = s->get_delivery("d_dead").value();
  CHECK(dead->state == db::DeliveryState::failed);
  CHECK(dead->attempts == 1);
  CHECK(dead->next_attempt_at == 2000);
  CHECK(s->get_delivery("d_done").value()->state == db::DeliveryState::failed);
  CHECK(ids(s->due_deliveries(2000, 10).value()).size() == 3);
}

TEST_CASE("meta keeps the last value of each key", "[db][meta]") {
  auto s = open_new();
  CHECK_FALSE(s->get_meta("last_poll").value());
  REQUIRE(s->set_meta("last_poll", "1").ok());
  REQUIRE(s->set_meta("last_poll", "2").ok());
  REQUIRE(s->set_meta("other", "").ok());
  CHECK(s->get_meta("last_poll").value() == "2");
  CHECK(s->get_meta("other").value() == "");
}

TEST_CASE("a transaction commits what it wrote, or nothing when it fails", "[db][transaction]") {
  auto s = open_new();
  REQUIRE(s->transaction([&]() -> Status {
    BW_TRY(auto a, s->add_delivery(delivery("d_1", 1000, 1000)));
    (void)a;
    return s->put_ref(ref_state("r:1", 5));
  }).ok());
  CHECK(s->get_delivery("d_1").value());
  CHECK(s->get_ref("r:1").value());

  auto failed = s->transaction([&]() -> Status {
    BW_TRY(auto a, s->add_delivery(delivery("d_2", 1000, 1000)));
    (void)a;
    BW_TRY(auto b, s->touch_ref("r:1", 50, 60));
    (void)b;
    return make_error(ErrorKind::internal, "boom");
  });
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().message == "boom");
  CHECK_FALSE(s->get_delivery("d_2").value());
  CHECK(s->get_ref("r:1").value()->last_checked == 1000);

  // A statement the database refuses (a duplicate id) fails the whole transaction.
  auto refused = s->transaction([&]() -> Status {
    BW_TRY(auto a, s->add_delivery(delivery("d_3", 1000, 1000)));
    (void)a;
    return s->add_delivery(delivery("d_1", 1000, 1000));
  });
  CHECK_FALSE(refused.ok());
  CHECK_FALSE(s->get_delivery("d_3").value());
  // And the store goes on working.
  REQUIRE(s->add_delivery(delivery("d_4", 1000, 1000)).ok());
  CHECK(s->get_delivery("d_4").value());
}

TEST_CASE("nested transactions join the outer one", "[db][transaction]") {
  auto s = open_new();
  // Committed together with the outer one.
  REQUIRE(s->transaction([&]() -> Status {
    BW_TRY(auto a, s->add_delivery(delivery("d_1", 1000, 1000)));
    (void)a;
    BW_TRY(auto b, s->transaction([&]() -> Status {
      // record_attempt is a transaction of its own: it joins too.
      return s->record_attempt(attempt("d_1", 1100, 204), db::DeliveryState::delivered, 0);
    }));
    (void)b;
    // Inside, the outer transaction sees its own writes.
    auto d = s->get_delivery("d_1");
    if (!d || !*d || (*d)->attempts != 1) return make_error(ErrorKind::internal, "not visible inside");
    return ok_status();
  }).ok());
  CHECK(s->get_delivery("d_1").value()->state == db::DeliveryState::delivered);
  CHECK(s->list_attempts("d_1").value().size() == 1);

  // An inner failure that the outer returns rolls back everything.
  auto st = s->transaction([&]() -> Status {
    BW_TRY(auto a, s->add_delivery(delivery("d_2", 1000, 1000)));
    (void)a;
    return s->transaction([&]() -> Status {
      BW_TRY(auto b, s->add_delivery(delivery("d_3", 1000, 1000)));
      (void)b;
      return make_error(ErrorKind::internal, "inner");
    });
  });
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message == "inner");
  CHECK_FALSE(s->get_delivery("d_2").value());
  CHECK_FALSE(s->get_delivery("d_3").value());

  // A nested transaction is no savepoint: an inner error the outer ignores
  // leaves the inner writes in the outer transaction.
  REQUIRE(s->transaction([&]() -> Status {
    auto inner = s->transaction([&]() -> Status {
      BW_TRY(auto b, s->add_delivery(delivery("d_5", 1000, 1000)));
      (void)b;
      return make_error(ErrorKind::internal, "ignored");
    });
    return inner.ok() ? make_error(ErrorKind::internal, "expected an error") : ok_status();
  }).ok());
  CHECK(s->get_delivery("d_5").value());
}

TEST_CASE("threads share one store: every write of every thread lands once", "[db][threads]") {
  auto s = open_new();
  constexpr int k_threads = 4;
  constexpr int k_each = 25;
  std::atomic<int> failures{0};
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < k_each; ++i) {
        std::string id = "d_" + std::to_string(t) + "_" + std::to_string(i);
        auto st = s->transaction([&]() -> Status {
          BW_TRY(auto a, s->add_delivery(delivery(id, 1000 + i, 1000 + i)));
          (void)a;
          BW_TRY(auto b, s->put_ref(ref_state("r:" + id, i)));
          (void)b;
          return s->record_attempt(attempt(id, 2000, 204), db::DeliveryState::delivered, 0);
        });
        if (!st) ++failures;
      }
    });
  }
  // A reader meanwhile (the API), which must never see half a transaction.
  std::atomic<int> torn{0};
  std::thread reader([&] {
    while (writing) {
      auto counts = s->delivery_counts();
      if (!counts) ++failures;
      else if (counts->at("pending") != 0) ++torn;
    }
  });
  for (auto& th : threads) th.join();
  writing = false;
  reader.join();
  CHECK(failures == 0);
  CHECK(torn == 0);
  auto counts = s->delivery_counts().value();
  CHECK(counts.at("delivered") == k_threads * k_each);
  CHECK(s->list_refs().value().size() == static_cast<size_t>(k_threads * k_each));
  for (int t = 0; t < k_threads; ++t) CHECK(s->list_attempts("d_" + std::to_string(t) + "_0").value().size() == 1);
}

namespace {

// A state with something in every table: references (one failing), events,
// deliveries in every state with their attempts, meta.
void fill(db::Store& s) {
  auto r = ref_state("registry.example.com/team/alpine:3.20", 5000);
  REQUIRE(s.put_ref(r).ok());
  REQUIRE(s.set_ref_error("docker.io/library/nginx:1", "timeout", "docker.io/library/nginx:1: timed out", 4000, 9000).ok());
  for (int i = 0; i < 3; ++i) {
    db::Event e{0, r.ref, "sha256:o" + std::to_string(i), "sha256:n" + std::to_string(i), {{"linux/amd64", {"a", "b"}}},
                i ? "fired" : "recorded", "poll", 1000 + i, {"d_" + std::to_string(i)}};
    REQUIRE(s.add_event(e).ok());
  }
  REQUIRE(s.add_delivery(delivery("d_pending", 1000, 99'000)).ok());
  REQUIRE(s.add_delivery(delivery("d_failed", 1100, 1100, "cd", "")).ok());
  REQUIRE(s.record_attempt(attempt("d_failed", 1200, 0, "connection refused"), db::DeliveryState::failed, 6200).ok());
  REQUIRE(s.record_attempt(attempt("d_failed", 6300, 503, "HTTP 503: down"), db::DeliveryState::failed, 16'300).ok());
  REQUIRE(s.add_delivery(delivery("d_done", 1200, 1200)).ok());
  REQUIRE(s.record_attempt(attempt("d_done", 1300, 0, "build failed"), db::DeliveryState::failed, 2300).ok());
  auto built = attempt("d_done", 2400, 204);
  built.pushed_digest = "sha256:" + std::string(64, 'e');  // a build trigger's push
  REQUIRE(s.record_attempt(built, db::DeliveryState::delivered, 0).ok());
  REQUIRE(s.add_delivery(delivery("d_dead", 1300, 1300)).ok());
  REQUIRE(s.record_attempt(attempt("d_dead", 1400, 500, "HTTP 500"), db::DeliveryState::dead, 0).ok());
  REQUIRE(s.set_meta("last_poll", "123456").ok());
  REQUIRE(s.set_meta("note", "it's \"quoted\"\nand on two lines").ok());
  // A mirror, its copy job, and a delivery waiting for it.
  db::MirrorState m;
  m.mirror = "registry.example.com/hub/library/alpine:3.20";
  m.upstream = "docker.io/library/alpine:3.20";
  m.upstream_digest = "sha256:" + std::string(64, 'e');
  m.state = "copying";
  m.last_copy = R"({"at":"2026-12-01T00:00:00Z"})";
  m.checked_at = 3000;
  m.updated_at = 3001;
  REQUIRE(s.put_mirror(m).ok());
  db::CopyJob j;
  j.mirror = m.mirror;
  j.upstream = m.upstream;
  j.digest = m.upstream_digest;
  j.reason = "change";
  j.created_at = j.next_attempt_at = 3000;
  auto job = s.add_copy_job(j);
  REQUIRE(job.ok());
  REQUIRE(s.fail_copy_job(*job, "mirror down", 3100, 9000).ok());
  REQUIRE(s.set_delivery_wait("d_pending", *job).ok());
}

// Both stores answer the same for everything fill() wrote.
void check_same_state(db::Store& a, db::Store& b) {
  auto refs_a = a.list_refs().value(), refs_b = b.list_refs().value();
  REQUIRE(refs_a.size() == refs_b.size());
  for (size_t i = 0; i < refs_a.size(); ++i) {
    CHECK(refs_a[i].ref == refs_b[i].ref);
    CHECK(refs_a[i].digest == refs_b[i].digest);
    CHECK(refs_a[i].media_type == refs_b[i].media_type);
    CHECK(refs_a[i].platforms == refs_b[i].platforms);
    CHECK(refs_a[i].last_checked == refs_b[i].last_checked);
    CHECK(refs_a[i].last_changed == refs_b[i].last_changed);
    CHECK(refs_a[i].next_check == refs_b[i].next_check);
    CHECK(refs_a[i].last_error == refs_b[i].last_error);
    CHECK(refs_a[i].error_kind == refs_b[i].error_kind);
    CHECK(refs_a[i].failures == refs_b[i].failures);
  }
  auto events_a = a.list_events(1000).value(), events_b = b.list_events(1000).value();
  REQUIRE(events_a.size() == events_b.size());
  for (size_t i = 0; i < events_a.size(); ++i) {
    CHECK(events_a[i].id == events_b[i].id);
    CHECK(events_a[i].ref == events_b[i].ref);
    CHECK(events_a[i].old_digest == events_b[i].old_digest);
    CHECK(events_a[i].new_digest == events_b[i].new_digest);
    CHECK(events_a[i].platforms == events_b[i].platforms);
    CHECK(events_a[i].outcome == events_b[i].outcome);
    CHECK(events_a[i].source == events_b[i].source);
    CHECK(events_a[i].detected_at == events_b[i].detected_at);
    CHECK(events_a[i].deliveries == events_b[i].deliveries);
  }
  auto deliveries_a = a.list_deliveries(std::nullopt, 1000).value(), deliveries_b = b.list_deliveries(std::nullopt, 1000).value();
  REQUIRE(deliveries_a.size() == deliveries_b.size());
  for (size_t i = 0; i < deliveries_a.size(); ++i) {
    const auto &x = deliveries_a[i], &y = deliveries_b[i];
    CHECK(x.id == y.id);
    CHECK(x.trigger == y.trigger);
    CHECK(x.project == y.project);
    CHECK(x.state == y.state);
    CHECK(x.payload == y.payload);
    CHECK(x.attempts == y.attempts);
    CHECK(x.created_at == y.created_at);
    CHECK(x.next_attempt_at == y.next_attempt_at);
    CHECK(x.updated_at == y.updated_at);
    CHECK(x.delivered_at == y.delivered_at);
    CHECK(x.last_status == y.last_status);
    CHECK(x.last_error == y.last_error);
    CHECK(x.wait_job == y.wait_job);
    auto attempts_a = a.list_attempts(x.id).value(), attempts_b = b.list_attempts(x.id).value();
    REQUIRE(attempts_a.size() == attempts_b.size());
    for (size_t k = 0; k < attempts_a.size(); ++k) {
      CHECK(attempts_a[k].at == attempts_b[k].at);
      CHECK(attempts_a[k].status == attempts_b[k].status);
      CHECK(attempts_a[k].error == attempts_b[k].error);
      CHECK(attempts_a[k].duration_ms == attempts_b[k].duration_ms);
      CHECK(attempts_a[k].output_tail == attempts_b[k].output_tail);
      CHECK(attempts_a[k].pushed_digest == attempts_b[k].pushed_digest);
    }
  }
  CHECK(a.delivery_counts().value() == b.delivery_counts().value());
  CHECK(a.next_due().value() == b.next_due().value());
  for (const char* key : {"last_poll", "note"}) CHECK(a.get_meta(key).value() == b.get_meta(key).value());
  CHECK(a.row_counts().value() == b.row_counts().value());
  auto mirrors_a = a.list_mirrors().value(), mirrors_b = b.list_mirrors().value();
  REQUIRE(mirrors_a.size() == mirrors_b.size());
  for (size_t i = 0; i < mirrors_a.size(); ++i) {
    CHECK(mirrors_a[i].mirror == mirrors_b[i].mirror);
    CHECK(mirrors_a[i].upstream_digest == mirrors_b[i].upstream_digest);
    CHECK(mirrors_a[i].state == mirrors_b[i].state);
    CHECK(mirrors_a[i].last_copy == mirrors_b[i].last_copy);
    CHECK(mirrors_a[i].updated_at == mirrors_b[i].updated_at);
  }
  auto jobs_a = a.pending_copy_jobs().value(), jobs_b = b.pending_copy_jobs().value();
  REQUIRE(jobs_a.size() == jobs_b.size());
  for (size_t i = 0; i < jobs_a.size(); ++i) {
    CHECK(jobs_a[i].id == jobs_b[i].id);
    CHECK(jobs_a[i].digest == jobs_b[i].digest);
    CHECK(jobs_a[i].attempts == jobs_b[i].attempts);
    CHECK(jobs_a[i].next_attempt_at == jobs_b[i].next_attempt_at);
    CHECK(jobs_a[i].last_error == jobs_b[i].last_error);
    CHECK(a.waiting_deliveries(jobs_a[i].id).value().size() == b.waiting_deliveries(jobs_b[i].id).value().size());
  }
  CHECK(a.waiting_by_mirror().value() == b.waiting_by_mirror().value());
}

}  // namespace

TEST_CASE("the engine holds exactly the tables db copy copies", "[db][copy]") {
  std::string database = test_engine().new_database();
  REQUIRE(db::Store::open(database).ok());
  CHECK(test_engine().tables(database) == std::set<std::string>(std::begin(db::k_tables), std::end(db::k_tables)));
  CHECK(test_engine().columns(database, "attempts") ==
        std::set<std::string>{"id", "delivery_id", "at", "status", "error", "duration_ms", "output_tail", "pushed_digest"});
}

TEST_CASE("a whole state copies from SQLite into an empty database and back, ids and all", "[db][copy]") {
  auto sqlite = std::move(db::Store::open(":memory:").value());
  fill(*sqlite);
  auto target = open_new();
  auto copied = db::copy_store(*sqlite, *target);
  REQUIRE(copied.ok());
  CHECK(*copied == std::map<std::string, int64_t>{{"refs", 2}, {"events", 3}, {"deliveries", 4}, {"attempts", 5}, {"meta", 2},
                                                  {"mirrors", 1}, {"copy_jobs", 1}});
  check_same_state(*sqlite, *target);

  // New ids continue after the copied ones; the copied rows work as any.
  int64_t highest = sqlite->list_events(1).value().at(0).id;
  auto next = target->add_event(db::Event{0, "r:new", "a", "b", {}, "recorded", "poll", 5000, {}});
  REQUIRE(next.ok());
  CHECK(*next > highest);
  REQUIRE(target->record_attempt(attempt("d_failed", 20'000, 204), db::DeliveryState::delivered, 0).ok());
  CHECK(target->list_attempts("d_failed").value().size() == 3);
  CHECK(target->find_settling("ci", "web", 2000).value()->id == "d_pending");

  // And back into a new SQLite database.
  auto back = std::move(db::Store::open(":memory:").value());
  REQUIRE(db::copy_store(*target, *back).ok());
  check_same_state(*target, *back);
  auto after = back->add_event(db::Event{0, "r:new", "a", "b", {}, "recorded", "poll", 6000, {}});
  REQUIRE(after.ok());
  CHECK(*after > *next);
}

TEST_CASE("copying an empty state gives an empty state", "[db][copy]") {
  auto empty = std::move(db::Store::open(":memory:").value());
  auto target = open_new();
  auto copied = db::copy_store(*empty, *target);
  REQUIRE(copied.ok());
  CHECK(*copied == std::map<std::string, int64_t>{{"refs", 0}, {"events", 0}, {"deliveries", 0}, {"attempts", 0}, {"meta", 0},
                                                  {"mirrors", 0}, {"copy_jobs", 0}});
  CHECK(target->add_event(db::Event{0, "r", "a", "b", {}, "recorded", "poll", 1, {}}).ok());
}

TEST_CASE("db copy refuses a destination that holds anything, and leaves it as it is", "[db][copy]") {
  auto source = std::move(db::Store::open(":memory:").value());
  fill(*source);
  auto target = open_new();
  REQUIRE(target->set_meta("last_poll", "1").ok());
  REQUIRE(target->put_ref(ref_state("r:1", 1)).ok());
  auto copied = db::copy_store(*source, *target);
  REQUIRE_FALSE(copied.ok());
  CHECK(copied.error().kind == ErrorKind::invalid);
  CHECK(copied.error().message == "the destination is not empty (refs: 1, meta: 1); db copy only writes into an empty database");
  CHECK(target->row_counts().value() ==
        std::map<std::string, int64_t>{{"refs", 1}, {"events", 0}, {"deliveries", 0}, {"attempts", 0}, {"meta", 1}, {"mirrors", 0},
                                       {"copy_jobs", 0}});
  CHECK(target->get_meta("last_poll").value() == "1");
}

TEST_CASE("rows written by write_rows are the rows read_rows gave, in batches", "[db][copy]") {
  auto s = open_new();
  for (int i = 0; i < 7; ++i) REQUIRE(s->put_ref(ref_state("r:" + std::to_string(i), i)).ok());
  std::vector<size_t> batches;
  db::TableRows all;
  REQUIRE(s->read_rows("refs", 3, [&](const db::TableRows& rows) -> Status {
    batches.push_back(rows.rows.size());
    all.columns = rows.columns;
    all.rows.insert(all.rows.end(), rows.rows.begin(), rows.rows.end());
    return ok_status();
  }).ok());
  CHECK(batches == std::vector<size_t>{3, 3, 1});
  CHECK(std::set<std::string>(all.columns.begin(), all.columns.end()) ==
        std::set<std::string>{"ref", "digest", "media_type", "platforms", "last_checked", "last_changed", "next_check", "last_error",
                              "error_kind", "failures"});
  auto other = open_new();
  REQUIRE(other->write_rows("refs", all).ok());
  CHECK(other->next_checks().value() == s->next_checks().value());
  CHECK(other->get_ref("r:3").value()->platforms == ref_state("r:3", 3).platforms);
  // Only the tables of the schema.
  CHECK(s->read_rows("sqlite_master", 3, [](const db::TableRows&) { return ok_status(); }).error().message == "database: no table sqlite_master");
  CHECK(other->write_rows("basewatch_schema", all).error().kind == ErrorKind::invalid);
}

TEST_CASE("mirrors: put, get, list in order, replace, delete", "[db][mirrors]") {
  auto s = open_new();
  db::MirrorState m;
  m.mirror = "registry.example.com/hub/library/alpine:3.20";
  m.upstream = "docker.io/library/alpine:3.20";
  m.upstream_digest = "sha256:" + std::string(64, '1');
  m.mirror_digest = "";
  m.state = "missing";
  m.checked_at = 10;
  m.updated_at = 11;
  REQUIRE(s->put_mirror(m).ok());
  db::MirrorState n = m;
  n.mirror = "registry.example.com/hub/library/alpine:3.19";
  n.state = "in-sync";
  n.mirror_digest = n.upstream_digest;
  n.last_copy = R"({"at":"2026-12-01T00:00:00Z","bytes_uploaded":5})";
  n.last_error = "a \"quoted\" error";
  REQUIRE(s->put_mirror(n).ok());
  auto got = s->get_mirror(m.mirror);
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK((*got)->upstream == m.upstream);
  CHECK((*got)->upstream_digest == m.upstream_digest);
  CHECK((*got)->state == "missing");
  CHECK((*got)->checked_at == 10);
  CHECK((*got)->updated_at == 11);
  auto list = s->list_mirrors();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].mirror == n.mirror);  // ordered by mirror: 3.19 < 3.20
  CHECK((*list)[0].last_copy == n.last_copy);
  CHECK((*list)[0].last_error == n.last_error);
  m.state = "in-sync";
  m.mirror_digest = m.upstream_digest;
  REQUIRE(s->put_mirror(m).ok());
  CHECK((*s->get_mirror(m.mirror))->state == "in-sync");
  REQUIRE(s->delete_mirror(m.mirror).ok());
  CHECK_FALSE(s->get_mirror(m.mirror)->has_value());
  CHECK(s->list_mirrors()->size() == 1);
}

TEST_CASE("copy jobs: due in order, failures back off, done, next due", "[db][mirrors]") {
  auto s = open_new();
  auto job = [](const std::string& mirror, const std::string& digest, int64_t at) {
    db::CopyJob j;
    j.mirror = mirror;
    j.upstream = "docker.io/library/alpine:3.20";
    j.digest = digest;
    j.reason = "change";
    j.created_at = at;
    j.next_attempt_at = at;
    return j;
  };
  CHECK_FALSE(s->next_copy_due()->has_value());
  auto a = s->add_copy_job(job("m/a:1", "sha256:" + std::string(64, 'a'), 100));
  auto b = s->add_copy_job(job("m/b:1", "sha256:" + std::string(64, 'b'), 50));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(*b > *a);
  auto due = s->due_copy_jobs(100, 10);
  REQUIRE(due.ok());
  REQUIRE(due->size() == 2);
  CHECK((*due)[0].id == *a);  // oldest id first
  CHECK((*due)[0].state == "pending");
  CHECK((*due)[0].reason == "change");
  CHECK(s->due_copy_jobs(60, 10)->size() == 1);
  CHECK(s->due_copy_jobs(100, 1)->size() == 1);
  CHECK(**s->next_copy_due() == 50);

  REQUIRE(s->fail_copy_job(*a, "mirror down", 120, 5000).ok());
  auto got = s->get_copy_job(*a);
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK((*got)->attempts == 1);
  CHECK((*got)->last_error == "mirror down");
  CHECK((*got)->next_attempt_at == 5000);
  CHECK((*got)->updated_at == 120);
  CHECK(s->due_copy_jobs(200, 10)->size() == 1);
  CHECK(s->pending_copy_jobs()->size() == 2);
  CHECK(s->pending_copy_jobs("m/a:1")->size() == 1);

  REQUIRE(s->finish_copy_job(*b, "sha256:" + std::string(64, 'c'), 130).ok());
  got = s->get_copy_job(*b);
  CHECK((*got)->state == "done");
  CHECK((*got)->mirror_digest == "sha256:" + std::string(64, 'c'));
  CHECK((*got)->last_error.empty());
  CHECK(s->pending_copy_jobs()->size() == 1);
  CHECK(**s->next_copy_due() == 5000);
  CHECK(s->fail_copy_job(999, "x", 1, 2).error().kind == ErrorKind::not_found);
  CHECK(s->finish_copy_job(999, "x", 1).error().kind == ErrorKind::not_found);
  CHECK_FALSE(s->get_copy_job(999)->has_value());
}

TEST_CASE("a delivery that waits for a copy is not due until released", "[db][mirrors][outbox]") {
  auto s = open_new();
  db::CopyJob j;
  j.mirror = "m/alpine:3.20";
  j.upstream = "docker.io/library/alpine:3.20";
  j.digest = "sha256:" + std::string(64, 'a');
  j.reason = "change";
  j.created_at = j.next_attempt_at = 10;
  auto job = s->add_copy_job(j);
  REQUIRE(job.ok());
  auto d = delivery("d_wait", 10, 10);
  d.wait_job = *job;
  REQUIRE(s->add_delivery(d).ok());
  REQUIRE(s->add_delivery(delivery("d_free", 11, 10)).ok());
  CHECK(ids(*s->due_deliveries(100, 10)) == std::vector<std::string>{"d_free"});
  CHECK((*s->get_delivery("d_wait"))->wait_job == *job);
  CHECK(ids(*s->waiting_deliveries(*job)) == std::vector<std::string>{"d_wait"});
  CHECK((*s->waiting_by_mirror()) == std::map<std::string, int64_t>{{"m/alpine:3.20", 1}});
  // next_due ignores waiting deliveries: nothing to wake up for.
  REQUIRE(s->record_attempt(attempt("d_free", 20, 200), db::DeliveryState::delivered, 0).ok());
  CHECK_FALSE(s->next_due()->has_value());
  // A requeue does not skip the wait.
  REQUIRE(s->requeue("d_wait", 30).ok());
  CHECK(s->due_deliveries(100, 10)->empty());

  REQUIRE(s->release_delivery("d_wait", R"({"released":true})").ok());
  auto released = s->get_delivery("d_wait");
  CHECK((*released)->wait_job == 0);
  CHECK((*released)->payload == R"({"released":true})");
  CHECK(ids(*s->due_deliveries(100, 10)) == std::vector<std::string>{"d_wait"});
  CHECK(s->waiting_deliveries(*job)->empty());
  CHECK(s->waiting_by_mirror()->empty());

  // set_delivery_wait moves a delivery to another job; unknown ids are not_found.
  REQUIRE(s->set_delivery_wait("d_wait", *job).ok());
  CHECK(s->due_deliveries(100, 10)->empty());
  CHECK(s->set_delivery_wait("nope", 1).error().kind == ErrorKind::not_found);
  CHECK(s->release_delivery("nope", "{}").error().kind == ErrorKind::not_found);
  // The payload of an attempted delivery is never changed by a release.
  REQUIRE(s->record_attempt(attempt("d_wait", 40, 500, "down"), db::DeliveryState::failed, 50).ok());
  REQUIRE(s->release_delivery("d_wait", R"({"other":true})").ok());
  CHECK((*s->get_delivery("d_wait"))->payload == R"({"released":true})");
}

TEST_CASE("reads on other threads neither wait for a transaction nor see it; its own thread does", "[db]") {
  auto s = open_new();
  REQUIRE(s->put_ref(ref_state("r.io/a:1", 1000)).ok());
  const std::string moved = "sha256:" + std::string(64, 'd');
  std::atomic<bool> read_done{false};
  std::string inside, outside;
  std::thread reader;
  auto st = s->transaction([&]() -> Status {
    auto next = ref_state("r.io/a:1", 2000);
    next.digest = moved;
    BW_TRY(auto put, s->put_ref(next));
    (void)put;
    inside = s->get_ref("r.io/a:1").value()->digest;
    // A read that needed this transaction's connection would wait for it to end.
    reader = std::thread([&] {
      outside = s->get_ref("r.io/a:1").value()->digest;
      read_done = true;
    });
    for (int i = 0; i < 500 && !read_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!read_done) return make_error(ErrorKind::internal, "the read waited for the transaction");
    return ok_status();
  });
  reader.join();  // after the transaction: a read that waited for it ends now
  REQUIRE(st.ok());
  CHECK(inside == moved);                            // its own write
  CHECK(outside == "sha256:" + std::string(64, 'a'));  // the last commit
  CHECK(s->get_ref("r.io/a:1").value()->digest == moved);
}
