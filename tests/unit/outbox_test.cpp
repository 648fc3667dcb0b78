#include <catch2/catch.hpp>

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

TEST_CASE("a closed gate (not the leader): nothing is sent or recorded, and a batch stops when it closes", "[unit][triggers][gate]") {
  auto store = std::move(db::Store::open(":memory:").value());
  FakeClock clock;
  for (int i = 0; i < 5; ++i) REQUIRE(store->add_delivery(make_delivery("d_" + std::to_string(i), to_unix_ms(clock.now()))).ok());
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    net::Response r;
    r.status = 204;
    return r;
  });
  config::TriggerConfig t;
  t.name = "ci";
  t.type = "webhook";
  t.url = "https://ci.example.com/hook";
  triggers::Dispatcher dispatcher(*store, clock, 1);  // one send after the other
  std::map<std::string, std::unique_ptr<triggers::Trigger>> ts;
  ts["ci"] = std::make_unique<triggers::WebhookTrigger>(t, http);
  dispatcher.set_triggers(std::move(ts), triggers::RetryPolicy{});
  bool open = false;
  dispatcher.set_gate([&] { return open; });
  auto none = dispatcher.dispatch_once(clock.now());
  CHECK(none.attempted == 0);
  CHECK(http.requests().empty());
  CHECK(store->delivery_counts().value().at("pending") == 5);

  int asked = 0;
  dispatcher.set_gate([&] { return ++asked <= 3; });  // once for the step, once per send
  auto cut = dispatcher.dispatch_once(clock.now());
  CHECK(cut.attempted == 2);
  CHECK(cut.delivered == 2);
  CHECK(http.requests().size() == 2);
  auto counts = store->delivery_counts().value();
  CHECK(counts.at("delivered") == 2);
  CHECK(counts.at("pending") == 3);  // left, unattempted, for the next leader
  auto pending = store->list_deliveries(db::DeliveryState::pending, 10);
  REQUIRE(pending.ok());
  for (const auto& d : *pending) CHECK(d.attempts == 0);
}
