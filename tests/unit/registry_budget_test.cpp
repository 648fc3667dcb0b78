// Registry budgets handed from one instance to the next (the cluster's
// leader records them, the next one starts from them): a Retry-After pause
// and the requests_per_minute slot survive the handover and hold back the
// new client's requests; figures are taken as they are; a pause is never
// cut short; the stored text is read defensively.
#include <catch2/catch.hpp>

#include "registry/client.h"
#include "tests/unit/fake_registry.h"

using namespace bw;
using bw::testing::FakeRegistry;

namespace {
oci::Platform plat(const std::string& s) { return *oci::parse_platform(s); }
oci::Reference ref(const std::string& s) { return *oci::parse_reference(s); }

registry::RegistrySettings paced(int per_minute) {
  registry::RegistrySettings s;
  s.host = "registry.example.com";
  s.requests_per_minute = per_minute;
  return s;
}
}  // namespace

TEST_CASE("a Retry-After pause and the per-minute slot pass to the next leader's client, which waits them out",
          "[unit][registry][budget]") {
  int status = 429;
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    net::Response r;
    r.status = status;
    if (status == 429) r.headers.emplace("retry-after", "300");
    r.headers.emplace("ratelimit-limit", "100;w=21600");
    r.headers.emplace("ratelimit-remaining", "0;w=21600");
    return r;
  });
  FakeClock clock;
  registry::Client old_leader(http, clock, {});
  CHECK(old_leader.resolve(ref("alpine:3.20"), {plat("linux/amd64")}).error().kind == ErrorKind::rate_limited);
  std::string stored = registry::encode_budgets(old_leader.budgets());

  // Another process, later: it has sent nothing itself.
  clock.advance(Millis(60'000));
  registry::Client next(http, clock, {});
  next.restore_budgets(registry::decode_budgets(stored));
  CHECK(next.available_at("docker.io") == clock.now() + Millis(240'000));
  size_t sent = http.requests().size();
  auto refused = next.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind == ErrorKind::rate_limited);
  CHECK(refused.error().message.find("docker.io: paused until ") == 0);
  CHECK(refused.error().message.find("(rate limited)") != std::string::npos);
  CHECK(http.requests().size() == sent);  // nothing went out
  auto st = next.status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].requests == 1);  // the old leader's count goes on
  CHECK(st[0].ratelimit_limit == 100);
  CHECK(st[0].ratelimit_remaining == 0);
  CHECK(st[0].ratelimit_window_seconds == 21600);

  // Once the pause is over, it asks again.
  clock.advance(Millis(240'000));
  status = 200;
  (void)next.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  CHECK(http.requests().size() == sent + 1);
}

TEST_CASE("the requests_per_minute slot of the old leader holds for the new one", "[unit][registry][budget]") {
  FakeRegistry reg;
  reg.put_manifest("team/app", "1", "v1");
  net::FakeHttpClient http([&](const net::Request& r) { return reg.handle(r); });
  FakeClock clock;
  registry::Client old_leader(http, clock, {paced(6)});  // one every 10 s
  REQUIRE(old_leader.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  auto budgets = registry::decode_budgets(registry::encode_budgets(old_leader.budgets()));
  REQUIRE(budgets.size() == 1);
  CHECK(budgets[0].next_slot == to_unix_ms(clock.now() + Millis(10'000)));

  clock.advance(Millis(3'000));
  registry::Client next(http, clock, {paced(6)});
  std::vector<Millis> waits;
  next.set_sleeper([&](Millis d) {
    waits.push_back(d);
    clock.advance(d);
  });
  next.restore_budgets(budgets);
  REQUIRE(next.resolve(ref("registry.example.com/team/app:1"), {plat("linux/amd64")}).ok());
  CHECK(waits == std::vector<Millis>{Millis(7'000)});  // the old leader's slot, not a fresh budget
}

TEST_CASE("restoring never cuts a pause short, and keeps hosts it does not name", "[unit][registry][budget]") {
  net::FakeHttpClient http([&](const net::Request&) -> Result<net::Response> {
    net::Response r;
    r.status = 429;
    r.headers.emplace("retry-after", "600");
    return r;
  });
  FakeClock clock;
  registry::Client c(http, clock, {});
  (void)c.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  (void)c.resolve(ref("ghcr.io/team/app:1"), {plat("linux/amd64")});
  TimePoint long_pause = clock.now() + Millis(600'000);

  registry::HostBudget shorter;
  shorter.status.host = "docker.io";
  shorter.status.paused_until = to_unix_ms(clock.now() + Millis(10'000));
  shorter.status.requests = 7;
  shorter.pause_reason = "3 failures in a row";
  shorter.pause_kind = ErrorKind::server;
  c.restore_budgets({shorter});
  CHECK(c.available_at("docker.io") == long_pause);
  CHECK(c.available_at("ghcr.io") == long_pause);
  auto refused = c.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  CHECK(refused.error().kind == ErrorKind::rate_limited);  // the longer pause's kind and reason stay
  for (const auto& s : c.status()) {
    if (s.host == "docker.io") CHECK(s.requests == 7);  // figures are taken as they are
    if (s.host == "ghcr.io") CHECK(s.requests == 1);
  }

  registry::HostBudget longer = shorter;
  longer.status.paused_until = to_unix_ms(clock.now() + Millis(900'000));
  c.restore_budgets({longer});
  CHECK(c.available_at("docker.io") == clock.now() + Millis(900'000));
  auto broken = c.resolve(ref("alpine:3.20"), {plat("linux/amd64")});
  CHECK(broken.error().kind == ErrorKind::server);
  CHECK(broken.error().message.find("(3 failures in a row)") != std::string::npos);
}

TEST_CASE("budgets are stored as JSON and read back; what cannot be read is left out", "[unit][registry][budget]") {
  registry::HostBudget b;
  b.status.host = "registry.example.com:5000";
  b.status.requests = 42;
  b.status.ratelimit_remaining = 5;
  b.status.paused_until = 1'700'000'000'000;
  b.status.consecutive_failures = 2;
  b.status.last_error = "HTTP 503 \xff";
  b.status.last_error_kind = "server";
  b.status.last_error_at = 1'699'999'999'000;
  b.pause_kind = ErrorKind::timeout;
  b.pause_reason = "5 failures in a row";
  b.next_slot = 1'700'000'001'000;
  std::string text = registry::encode_budgets({b});
  CHECK(text.find("\"registry.example.com:5000\":{") != std::string::npos);
  auto back = registry::decode_budgets(text);
  REQUIRE(back.size() == 1);
  const auto& r = back[0];
  CHECK(r.status.host == b.status.host);
  CHECK(r.status.requests == 42);
  CHECK_FALSE(r.status.ratelimit_limit.has_value());
  CHECK(r.status.ratelimit_remaining == 5);
  CHECK(r.status.paused_until == b.status.paused_until);
  CHECK(r.status.consecutive_failures == 2);
  CHECK(r.status.last_error == "HTTP 503 \xef\xbf\xbd");  // made valid UTF-8
  CHECK(r.status.last_error_kind == "server");
  CHECK(r.status.last_error_at == b.status.last_error_at);
  CHECK(r.pause_kind == ErrorKind::timeout);
  CHECK(r.pause_reason == "5 failures in a row");
  CHECK(r.next_slot == b.next_slot);

  CHECK(registry::decode_budgets("").empty());
  CHECK(registry::decode_budgets("not json").empty());
  CHECK(registry::decode_budgets("[1,2]").empty());
  auto odd = registry::decode_budgets(R"({"a": 1, "": {}, "b": {"requests": "many", "paused_until": 5, "pause_kind": "nonsense",
                                           "consecutive_failures": -4, "last_error": 7}})");
  REQUIRE(odd.size() == 1);
  CHECK(odd[0].status.host == "b");
  CHECK(odd[0].status.requests == 0);
  CHECK(odd[0].status.paused_until == 5);
  CHECK(odd[0].pause_kind == ErrorKind::rate_limited);
  CHECK(odd[0].status.consecutive_failures == 0);
  CHECK(odd[0].status.last_error.empty());
}
