// The store's share of one unchanged `basewatch check` cycle, on PostgreSQL
// as a ratio to SQLite, measured in the same run:
//
//   1. the store calls alone, driven the way Watcher::poll_once drives them
//      for N references: next_checks() once, get_ref of every reference from
//      8 worker threads while the applying thread writes touch_ref in
//      transactions of up to 256, then set_meta("last_poll");
//   2. the whole `basewatch check` (unchanged cycle: one HEAD per reference)
//      against a local docker-registry, on each engine.
//
// SQLite is a file in WAL mode (synchronous=NORMAL, as the product runs it);
// PostgreSQL 15 is a server started here on loopback as shipped (fsync and
// synchronous_commit on), measured twice: with the default
// synchronous_commit=on, and with synchronous_commit=off set by the URI
// (?options=-c synchronous_commit=off), which, like SQLite's NORMAL, keeps
// every commit across a crash of the process but not of the machine.
//
//   bench_db [N=2000] [ROUNDS=5] [CHECK=1]
//
// Rounds interleave the engines; each prints its time; the summary gives the
// best and the median of each and the ratios. README.md has the figures.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "db/store.h"
#include "tests/support/postgres.h"
#include "tests/support/support.h"

using namespace bw;
using namespace bw::testing;
using steady = std::chrono::steady_clock;

namespace {

double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

std::string ref_name(const std::string& host, int i) { return host + "/bench/r" + std::to_string(i % 50) + ":t" + std::to_string(i); }

void must(const Status& st, const char* what) {
  if (!st) {
    std::cerr << what << ": " << st.error().message << "\n";
    std::exit(1);
  }
}

std::unique_ptr<db::Store> open_store(const std::string& database) {
  auto s = db::Store::open(database);
  if (!s) {
    std::cerr << "open: " << s.error().message << "\n";
    std::exit(1);
  }
  return std::move(s.value());
}

// The rows a baseline would have written.
void seed(db::Store& store, const std::string& host, int n) {
  constexpr int k_batch = 256;
  for (int from = 0; from < n; from += k_batch) {
    must(store.transaction([&]() -> Status {
      for (int i = from; i < std::min(n, from + k_batch); ++i) {
        db::RefState r;
        r.ref = ref_name(host, i);
        r.digest = "sha256:" + std::string(64, 'a');
        r.media_type = "application/vnd.docker.distribution.manifest.v2+json";
        r.platforms = {{"linux/amd64", r.digest}};
        r.last_checked = r.last_changed = 1;
        r.next_check = 2;
        BW_TRY(auto put, store.put_ref(r));
        (void)put;
      }
      return ok_status();
    }), "seed");
  }
}

// One unchanged cycle's store calls, as poll_once makes them.
double store_cycle(db::Store& store, const std::string& host, int n, int64_t now) {
  auto t0 = steady::now();
  auto next = store.next_checks();
  if (!next || static_cast<int>(next->size()) != n) {
    std::cerr << "next_checks: wrong answer\n";
    std::exit(1);
  }
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<int> done;
  std::atomic<int> taken{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 8; ++t) {
    workers.emplace_back([&] {
      for (int i; (i = taken++) < n;) {
        auto row = store.get_ref(ref_name(host, i));
        if (!row || !*row) std::exit(1);
        std::lock_guard lock(mutex);
        done.push_back(i);
        cv.notify_one();
      }
    });
  }
  std::vector<int> batch;
  auto flush = [&] {
    must(store.transaction([&]() -> Status {
      for (int i : batch) {
        BW_TRY(auto touched, store.touch_ref(ref_name(host, i), now, now + 900'000));
        (void)touched;
      }
      return ok_status();
    }), "touch");
    batch.clear();
  };
  for (int applied = 0; applied < n; ++applied) {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return !done.empty(); });
    batch.push_back(done.front());
    done.pop_front();
    lock.unlock();
    if (batch.size() >= 256) flush();
  }
  for (auto& w : workers) w.join();
  if (!batch.empty()) flush();
  must(store.set_meta("last_poll", std::to_string(now)), "meta");
  return seconds_since(t0);
}

std::string write_config(const TempDir& dir, const LocalRegistry& reg, int n, const std::string& name, const std::string& database) {
  std::string yaml = "database: \"" + database + "\"\n"
                     "log: {level: warn}\n"
                     "poll: {concurrency: 8}\n"
                     "registries:\n  " + reg.host() + ": {insecure: true}\n"
                     "watch:\n";
  for (int i = 0; i < n; ++i) yaml += "  - ref: " + ref_name(reg.host(), i) + "\n";
  return dir.write(name + ".yaml", yaml);
}

double timed_check(const std::string& config) {
  auto t0 = steady::now();
  auto r = run({BASEWATCH_BINARY, "check", "-c", config}, {}, "", std::chrono::minutes(10));
  double s = seconds_since(t0);
  if (r.status != 0) {
    std::cerr << "check " << config << " exited " << r.status << ": " << r.errors.substr(0, 2000) << "\n";
    std::exit(1);
  }
  return s;
}

struct Series {
  std::vector<double> s;
  double best() const { return *std::min_element(s.begin(), s.end()); }
  double median() const {
    auto v = s;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }
};

void summary(const char* what, const std::vector<std::string>& names, std::map<std::string, Series>& series) {
  const Series& base = series.at(names[0]);
  std::printf("%s\n", what);
  for (const auto& name : names) {
    const Series& s = series.at(name);
    std::printf("  %-28s best %8.3f s  median %8.3f s  ratio to %s: best %5.2f  median %5.2f\n", name.c_str(), s.best(), s.median(),
                names[0].c_str(), s.best() / base.best(), s.median() / base.median());
  }
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  bool whole_check = argc > 3 ? std::atoi(argv[3]) != 0 : true;

  TempDir dir("bw-bench-db");
  PostgresOptions as_shipped;
  as_shipped.durable = true;
  PostgresServer pg(as_shipped);
  std::string pg_db = pg.create_database(), pg_async_db = pg.create_database();
  std::map<std::string, std::string> databases{
      {"sqlite", dir.path() + "/bench.db"},
      {"postgresql", pg.uri(pg_db)},
      {"postgresql commit=off", pg.uri(pg_async_db) + "&options=-c%20synchronous_commit%3Doff"},
  };
  const std::vector<std::string> names{"sqlite", "postgresql", "postgresql commit=off"};

  // 1. The store calls alone.
  const std::string host = "127.0.0.1:5000";
  std::map<std::string, std::unique_ptr<db::Store>> stores;
  for (const auto& name : names) {
    stores[name] = open_store(databases[name]);
    seed(*stores[name], host, n);
  }
  std::map<std::string, Series> store_series;
  for (int round = 0; round < rounds; ++round) {
    for (const auto& name : names) {
      double s = store_cycle(*stores[name], host, n, 1000 + round);
      store_series[name].s.push_back(s);
      std::printf("store calls  round %d  %-22s %8.3f s  (%.1f us per reference)\n", round + 1, name.c_str(), s, s * 1e6 / n);
    }
  }
  stores.clear();

  std::map<std::string, Series> check_series;
  if (whole_check) {
    // 2. The whole check against a local registry.
    RegistryOptions quiet;
    quiet.log_level = "error";
    LocalRegistry reg(quiet);
    auto t0 = steady::now();
    for (int i = 0; i < n; ++i) reg.push_image("bench/r" + std::to_string(i % 50), "t" + std::to_string(i), "content " + std::to_string(i));
    std::printf("pushed %d images in %.1f s\n", n, seconds_since(t0));
    std::map<std::string, std::string> configs;
    std::string sqlite_check = dir.path() + "/check.db";
    std::map<std::string, std::string> check_databases{
        {"sqlite", sqlite_check}, {"postgresql", pg.uri(pg.create_database())},
        {"postgresql commit=off", pg.uri(pg.create_database()) + "&options=-c%20synchronous_commit%3Doff"}};
    for (const auto& name : names) {
      configs[name] = write_config(dir, reg, n, "check-" + std::to_string(configs.size()), check_databases[name]);
      std::printf("check baseline %-22s %8.3f s\n", name.c_str(), timed_check(configs[name]));
    }
    for (int round = 0; round < rounds; ++round) {
      for (const auto& name : names) {
        double s = timed_check(configs[name]);
        check_series[name].s.push_back(s);
        std::printf("check        round %d  %-22s %8.3f s\n", round + 1, name.c_str(), s);
      }
    }
  }

  std::printf("\nN = %d references, %d rounds\n", n, rounds);
  summary("store calls of one unchanged cycle:", names, store_series);
  if (whole_check) summary("whole `basewatch check`, unchanged:", names, check_series);
  return 0;
}
