// Failover: the time from SIGKILL of the leader to the first delivery the
// new leader sends, with two real `basewatch serve` on one real PostgreSQL
// (as shipped: fsync and synchronous_commit on), a real registry and a real
// receiver, all on loopback.
//
// Each run: a fresh database; instance A starts and leads, B follows; a
// moved tag gives one delivery, which the receiver refuses (503) so that A
// keeps retrying it (retry.initial 100ms). After a random wait within one
// renewal period (so the kill lands anywhere between two renewals) A is
// SIGKILLed and the receiver starts accepting; what it receives next comes
// from B. Measured from the kill:
//   - leader:    B's lease (leader_since, the server's clock);
//   - delivery:  the first request at the receiver.
// The peer, in the same run: the same handover when A stops cleanly
// (SIGTERM: it gives the lease up, B is told by NOTIFY and takes it at once).
//
//   bench_ha [RUNS=10] [LEASE=2s]
//
// README.md has the command and the figures.
#include <signal.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/postgres.h"
#include "tests/support/support.h"
#include "util/time.h"

using namespace bw;
using namespace bw::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

json status(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1, 0);
  c.set_read_timeout(5, 0);
  auto res = c.Get("/v1/status");
  if (!res || res->status != 200) return nullptr;
  return json::parse(res->body, nullptr, false);
}

std::string leader(int port) {
  auto s = status(port);
  if (!s.is_object() || !s["cluster"].is_object() || !s["cluster"]["leader"].is_string()) return "";
  return s["cluster"]["leader"];
}

std::string instance(int port) {
  auto s = status(port);
  if (!s.is_object() || !s["cluster"].is_object()) return "";
  return s["cluster"]["instance"];
}

void must(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "bench_ha: " << what << "\n";
    std::exit(1);
  }
}

struct Sample {
  double leader_ms = 0, delivery_ms = 0;
  bool valid = true;
};

// Nearest rank: the smallest value with at least p of the values at or below it.
double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// One handover: A leads with a delivery failing, A is stopped with `sig`,
// B delivers.
Sample handover(PostgresServer& pg, Millis lease, int sig, std::mt19937& rng) {
  std::string db = pg.create_database();
  TempDir dir("bw-bench-ha");
  LocalRegistry registry;
  registry.push_image("team/a", "1", "one");
  Receiver receiver;
  receiver.set_status(503);
  int pa = free_port(), pb = free_port();
  auto config = [&](int port) {
    return "database: \"" + pg.uri(db) + "\"\n"
           "ha: {lease: " + format_duration(lease) + "}\n"
           "listen: 127.0.0.1:" + std::to_string(port) + "\n"
           "poll: {interval: 1h, jitter: 0%, settle: 0s}\n"
           "registries:\n  " + registry.host() + ": {insecure: true}\n"
           "watch:\n  - {ref: \"" + registry.host() + "/team/a:1\", triggers: [ci]}\n"
           "triggers:\n  ci: {type: webhook, url: \"" + receiver.url("/hook") + "\", timeout: 5s}\n"
           "retry: {initial: 100ms, max: 100ms, max_attempts: 1000}\n";
  };
  auto start = [&](const std::string& name, int port) {
    auto p = std::make_unique<Process>(std::vector<std::string>{BASEWATCH_BINARY, "serve", "-c", dir.write(name + ".yaml", config(port))},
                                       std::map<std::string, std::string>{}, dir.path() + "/" + name + ".log");
    must(wait_until([&] { return !instance(port).empty(); }, 20s), "an instance did not start");
    return p;
  };
  auto a = start("a", pa);
  std::string a_id = instance(pa);
  must(wait_until([&] { return leader(pa) == a_id; }, 20s), "A did not lead");
  auto b = start("b", pb);
  std::string b_id = instance(pb);
  must(wait_until([&] { return leader(pb) == a_id; }, 20s), "B does not see A lead");
  must(wait_until([&] { return pg.query(db, "SELECT count(*) FROM refs WHERE digest <> ''") == "1"; }, 20s), "no baseline");
  registry.push_image("team/a", "1", "two");
  httplib::Client api("127.0.0.1", pa);
  must(static_cast<bool>(api.Post("/v1/check", "", "application/json")), "POST /v1/check");
  must(receiver.wait_for(2, 20s), "A does not try the delivery");

  // Anywhere within one renewal period.
  std::uniform_int_distribution<int64_t> within(0, lease.count() / 3);
  std::this_thread::sleep_for(Millis(within(rng)));
  receiver.clear();
  auto killed_at = std::chrono::steady_clock::now();
  int64_t killed_ms = to_unix_ms(Clock::now());
  a->signal(sig);
  receiver.set_status(200);
  if (sig == SIGKILL) a->wait(5s);
  must(receiver.wait_for(1, 60s), "B did not deliver");
  Sample s;
  s.delivery_ms = std::chrono::duration<double, std::milli>(receiver.requests()[0].at - killed_at).count();
  must(wait_until([&] { return leader(pb) == b_id; }, 20s), "B does not lead");
  // leader_since has seconds precision: the server's own milliseconds.
  int64_t since_ms = std::stoll(pg.query(db, "SELECT since FROM basewatch_lease"));
  s.leader_ms = static_cast<double>(since_ms - killed_ms);
  b->signal(SIGTERM);
  b->wait(10s);
  a->wait(10s);
  // A stopping cleanly may finish an attempt it had begun: then the first
  // delivery was its own, not B's, and the run says nothing.
  s.valid = a->log().find(" delivered: 200") == std::string::npos;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::atoi(argv[1]) : 10;
  Millis lease = argc > 2 ? parse_duration(argv[2]).value() : Millis(2000);
  PostgresServer pg(PostgresOptions{true});
  std::mt19937 rng(20261201);
  std::vector<double> kill_leader, kill_delivery, term_leader, term_delivery;
  std::printf("lease %s, %d runs\n", format_duration(lease).c_str(), runs);
  std::printf("%4s  %14s %16s   %14s %16s\n", "run", "KILL leader ms", "KILL delivery ms", "TERM leader ms", "TERM delivery ms");
  for (int i = 0; i < runs; ++i) {
    Sample k = handover(pg, lease, SIGKILL, rng);
    Sample t = handover(pg, lease, SIGTERM, rng);
    while (!t.valid) t = handover(pg, lease, SIGTERM, rng);
    kill_leader.push_back(k.leader_ms);
    kill_delivery.push_back(k.delivery_ms);
    term_leader.push_back(t.leader_ms);
    term_delivery.push_back(t.delivery_ms);
    std::printf("%4d  %14.0f %16.0f   %14.0f %16.0f\n", i + 1, k.leader_ms, k.delivery_ms, t.leader_ms, t.delivery_ms);
    std::fflush(stdout);
  }
  double l = static_cast<double>(lease.count());
  std::printf("\nSIGKILL: new leader p50 %.0f ms, max %.0f ms; first delivery p50 %.0f ms (%.2f of the lease), max %.0f ms (%.2f)\n",
              percentile(kill_leader, 0.5), percentile(kill_leader, 1), percentile(kill_delivery, 0.5),
              percentile(kill_delivery, 0.5) / l, percentile(kill_delivery, 1), percentile(kill_delivery, 1) / l);
  std::printf("SIGTERM: new leader p50 %.0f ms, max %.0f ms; first delivery p50 %.0f ms, max %.0f ms\n", percentile(term_leader, 0.5),
              percentile(term_leader, 1), percentile(term_delivery, 0.5), percentile(term_delivery, 1));
  return 0;
}
