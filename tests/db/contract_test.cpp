// The store's contract: what every engine behind db::Store answers. This file
// is compiled once per engine (tests/db/CMakeLists.txt), linked with the
// engine's test_engine(); nothing here knows which engine runs.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

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
      REQUIRE((*old)->put_ref(ref_state("r:1", 5)).ok());
      REQUIRE((*old)->add_delivery(delivery("d_1", 1000, 1000)).ok());
      REQUIRE((*old)->add_event(db::Event{0, "r:1", "a", "b", {}, "fired", "poll", 7, {"d_1"}}).ok());
    }
    auto s = db::Store::open(database);
    REQUIRE(s.ok());
    CHECK((*s)->schema_version() == db::k_schema_version);
    CHECK((*s)->get_ref("r:1").value()->platforms == ref_state("r:1", 5).platforms);
    CHECK((*s)->get_delivery("d_1").value());
    CHECK((*s)->list_events(10).value().size() == 1);
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
