// One `basewatch check` cycle over N tags on a real local docker-registry,
// compared with the registry's own capacity measured by wrk in the same run
// (the same manifest URLs, the same Accept header, the same concurrency), and
// peak RSS of `basewatch check` for N and 2N watched references.
//
//   bench_registry [N=400] [CONCURRENCY=8] [WRK_SECONDS=5]
//
// Prints one line per measurement; README.md has the numbers.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "net/http.h"
#include "oci/platform.h"
#include "registry/client.h"
#include "tests/support/support.h"

using namespace bw;
using namespace bw::testing;
using steady = std::chrono::steady_clock;

namespace {

const char* const k_accept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

std::string tag_ref(const LocalRegistry& reg, int i) {
  return reg.host() + "/bench/r" + std::to_string(i % 50) + ":t" + std::to_string(i);
}

std::string write_config(const TempDir& dir, const LocalRegistry& reg, int n, int concurrency, const std::string& name,
                         int port = 0, const std::string& db = "") {
  std::string yaml = "database: " + dir.path() + "/" + (db.empty() ? name : db) + ".db\n"
                     "listen: 127.0.0.1:" + std::to_string(port) + "\n"
                     "log: {level: warn}\n"
                     "poll: {concurrency: " + std::to_string(concurrency) + "}\n"
                     "registries:\n  " + reg.host() + ": {insecure: true}\n"
                     "watch:\n";
  for (int i = 0; i < n; ++i) yaml += "  - ref: " + tag_ref(reg, i) + "\n";
  return dir.write(name + ".yaml", yaml);
}

struct Timed {
  double seconds = 0;
  long max_rss_kb = 0;
  std::string output;
  int status = -1;
};

// `basewatch check -c cfg` under /usr/bin/time -v.
Timed timed_check(const std::string& config) {
  auto t0 = steady::now();
  RunResult r = run({"/usr/bin/time", "-v", BASEWATCH_BINARY, "check", "-c", config}, {}, "", std::chrono::minutes(5));
  Timed t;
  t.seconds = seconds_since(t0);
  t.status = r.status;
  t.output = r.output;
  std::smatch m;
  if (std::regex_search(r.errors, m, std::regex(R"(Maximum resident set size \(kbytes\): (\d+))"))) t.max_rss_kb = std::stol(m[1]);
  return t;
}

struct Served {
  long rss_kb = 0;   // after the first cycle and a second one
  long peak_kb = 0;  // VmHWM: the high-water mark since start (config parse included)
  double first_cycle = 0;
};

// `basewatch serve` on an already baselined database: its RSS once two
// unchanged cycles have run (the second asked for through POST /v1/check),
// which is what a long-running service holds per watched reference.
Served serve_rss(const TempDir& dir, const LocalRegistry& reg, int n, int concurrency, const std::string& db) {
  int port = free_port();
  std::string cfg = write_config(dir, reg, n, concurrency, db + "-serve", port, db);
  Served out;
  auto t0 = steady::now();
  Process p({BASEWATCH_BINARY, "serve", "-c", cfg}, {}, dir.path() + "/" + db + "-serve.log");
  auto last_poll = [&]() -> std::string {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(1, 0);
    auto res = c.Get("/v1/status");
    if (!res || res->status != 200) return "";
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    return j.is_object() && j["last_poll"].is_string() ? j["last_poll"].get<std::string>() : "";
  };
  auto ready = [&] {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(1, 0);
    auto res = c.Get("/healthz");
    return res && res->status == 200;
  };
  // check ran before, so nothing is due: each cycle is asked for (a manual
  // check of every reference) and waited for.
  auto cycle = [&]() -> bool {
    std::string before = last_poll();
    httplib::Client c("127.0.0.1", port);
    auto res = c.Post("/v1/check", "", "application/json");
    if (!res || res->status >= 300) {
      std::cerr << "POST /v1/check: " << (res ? res->status : 0) << "\n";
      return false;
    }
    return wait_until([&] { std::string l = last_poll(); return !l.empty() && l != before; }, std::chrono::seconds(60));
  };
  if (!wait_until(ready, std::chrono::seconds(30)) || !cycle()) {
    std::cerr << "serve did not finish a cycle:\n" << p.log() << "\n";
    return out;
  }
  out.first_cycle = seconds_since(t0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // last_poll has second resolution
  if (!cycle()) std::cerr << "serve did not finish a second cycle\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Memory m = memory_of(p.pid());
  out.rss_kb = m.rss_kb;
  out.peak_kb = m.hwm_kb;
  p.signal(SIGTERM);
  p.wait(std::chrono::seconds(30));
  return out;
}

std::string last_line(const std::string& s) {
  auto t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// Requests/sec wrk reaches with GETs of the same manifest URLs (wrk cannot
// read HEAD answers that carry a Content-Length). Distribution 2.8 serves HEAD
// through its GET handler, so the registry's work per request is the same.
double wrk_capacity(const TempDir& dir, const LocalRegistry& reg, int n, int concurrency, int secs) {
  const char* method = std::getenv("BW_BENCH_WRK_METHOD") ? std::getenv("BW_BENCH_WRK_METHOD") : "GET";
  std::string lua = "local paths = {\n";
  for (int i = 0; i < n; ++i) lua += "  \"/v2/bench/r" + std::to_string(i % 50) + "/manifests/t" + std::to_string(i) + "\",\n";
  lua += "}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n"
         "  return wrk.format(\"" + std::string(method) + "\", paths[i], {[\"Accept\"] = \"" + std::string(k_accept) + "\"})\nend\n";
  std::string script = dir.write("manifests.lua", lua);
  int threads = std::min(2, concurrency);
  RunResult r = run({"wrk", "-t", std::to_string(threads), "-c", std::to_string(concurrency), "-d", std::to_string(secs) + "s",
                     "-s", script, reg.url()}, {}, "", std::chrono::seconds(secs + 30));
  std::smatch m;
  if (!std::regex_search(r.output, m, std::regex(R"(Requests/sec:\s+([\d.]+))"))) {
    std::cerr << "wrk said: " << r.output << r.errors << "\n";
    return 0;
  }
  if (r.output.find("Non-2xx") != std::string::npos) std::cerr << "wrk saw non-2xx answers:\n" << r.output << "\n";
  return std::stod(m[1]);
}

// A registry::Client for the bench registry, with the first `n` references.
struct InProcess {
  InProcess(const LocalRegistry& reg, int n) : client(http, clock, {settings(reg)}) {
    for (int i = 0; i < n; ++i) refs.push_back(*oci::parse_reference(tag_ref(reg, i)));
  }
  static registry::RegistrySettings settings(const LocalRegistry& reg) {
    registry::RegistrySettings s;
    s.host = reg.host();
    s.insecure = true;
    return s;
  }
  net::HttplibClient http;
  RealClock clock;
  registry::Client client;
  std::vector<oci::Platform> platforms{*oci::parse_platform("linux/amd64")};
  std::vector<oci::Reference> refs;
};

// The client alone, in process: N resolves with `concurrency` threads.
double client_cycle(const LocalRegistry& reg, int n, int concurrency) {
  InProcess in(reg, n);
  auto& client = in.client;
  const auto& refs = in.refs;
  const auto& platforms = in.platforms;
  std::atomic<int> next{0}, errors{0};
  auto t0 = steady::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < n;) {
        if (!client.resolve(refs[i], platforms).ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = seconds_since(t0);
  if (errors) std::cerr << errors << " resolve errors\n";
  return secs;
}

// Heap the client keeps per resolved reference: resolve `n` references on
// one thread (mallinfo2 sees the main arena) after a warm-up, with the
// client alive, and divide the growth by n.
double client_retained_bytes_per_ref(const LocalRegistry& reg, int n) {
  InProcess in(reg, n + 10);
  auto& client = in.client;
  const auto& refs = in.refs;
  const auto& platforms = in.platforms;
  for (int i = 0; i < 10; ++i) (void)client.resolve(refs[i], platforms);
  size_t before = mallinfo2().uordblks;
  for (int i = 10; i < n + 10; ++i) (void)client.resolve(refs[i], platforms);
  size_t after = mallinfo2().uordblks;
  return (static_cast<double>(after) - static_cast<double>(before)) / n;
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 400;
  int concurrency = argc > 2 ? std::atoi(argv[2]) : 8;
  int wrk_secs = argc > 3 ? std::atoi(argv[3]) : 5;
  RegistryOptions options;
  options.log_level = "error";
  LocalRegistry reg(options);
  TempDir dir("bw-bench-registry");

  auto t0 = steady::now();
  for (int i = 0; i < 2 * n; ++i) {
    reg.push_image("bench/r" + std::to_string(i % 50), "t" + std::to_string(i), "content " + std::to_string(i));
  }
  std::printf("pushed %d tags in %.1f s\n", 2 * n, seconds_since(t0));

  std::string cfg_n = write_config(dir, reg, n, concurrency, "n");
  std::string cfg_2n = write_config(dir, reg, 2 * n, concurrency, "n2");
  if (std::getenv("BW_BENCH_HOLD")) {
    // Keep the registry up for profiling by hand: perf, heaptrack, strace.
    std::printf("registry %s; configs %s %s; press Enter to go on\n", reg.url().c_str(), cfg_n.c_str(), cfg_2n.c_str());
    std::fflush(stdout);
    std::getchar();
  }

  // Baselines (first sight: HEADs plus one row per reference).
  Timed base_n = timed_check(cfg_n);
  Timed base_2n = timed_check(cfg_2n);
  std::printf("basewatch check, N=%d baseline:  %.3f s, peak RSS %ld KB  [%s]\n", n, base_n.seconds, base_n.max_rss_kb,
              last_line(base_n.output).c_str());
  std::printf("basewatch check, 2N=%d baseline: %.3f s, peak RSS %ld KB  [%s]\n", 2 * n, base_2n.seconds, base_2n.max_rss_kb,
              last_line(base_2n.output).c_str());

  // The steady state: every reference unchanged, HEAD only. The machine is
  // shared, so each measurement is repeated, interleaved, and the best kept.
  const int rounds = std::getenv("BW_BENCH_ROUNDS") ? std::atoi(std::getenv("BW_BENCH_ROUNDS")) : 3;
  double capacity = 0, client_best = 1e9, check_best = 1e9, check2_best = 1e9;
  long rss_n = 0, rss_2n = 0;
  // Within one round the registry's load is about the same for wrk and for
  // basewatch, so the ratio per round is steadier than best against best.
  std::vector<double> ratio_client, ratio_n, ratio_2n;
  for (int round = 0; round < rounds; ++round) {
    double cap = wrk_capacity(dir, reg, n, concurrency, wrk_secs);
    double cl = client_cycle(reg, n, concurrency);
    Timed c1 = timed_check(cfg_n);
    Timed c2 = timed_check(cfg_2n);
    std::printf("round %d: wrk %.0f req/s; client %.3f s (%.0f req/s); check N %.3f s (%.0f req/s, %ld KB); check 2N %.3f s (%.0f req/s, %ld KB)\n",
                round + 1, cap, cl, n / cl, c1.seconds, n / c1.seconds, c1.max_rss_kb, c2.seconds, 2 * n / c2.seconds,
                c2.max_rss_kb);
    if (cap > 0) {
      ratio_client.push_back(n / cl / cap);
      ratio_n.push_back(n / c1.seconds / cap);
      ratio_2n.push_back(2 * n / c2.seconds / cap);
    }
    capacity = std::max(capacity, cap);
    client_best = std::min(client_best, cl);
    check_best = std::min(check_best, c1.seconds);
    check2_best = std::min(check2_best, c2.seconds);
    rss_n = rss_n ? std::min(rss_n, c1.max_rss_kb) : c1.max_rss_kb;
    rss_2n = rss_2n ? std::min(rss_2n, c2.max_rss_kb) : c2.max_rss_kb;
  }
  std::printf("registry capacity (wrk %s, %d connections, best of %d): %.0f req/s\n",
              std::getenv("BW_BENCH_WRK_METHOD") ? std::getenv("BW_BENCH_WRK_METHOD") : "GET", concurrency, rounds, capacity);
  std::printf("registry::Client alone, N=%d: %.3f s = %.0f req/s = %.2f of capacity\n", n, client_best, n / client_best,
              n / client_best / capacity);
  std::printf("basewatch check (whole process, startup included), N=%d: %.3f s = %.0f req/s = %.2f of capacity\n", n,
              check_best, n / check_best, n / check_best / capacity);
  std::printf("basewatch check (whole process, startup included), 2N=%d: %.3f s = %.0f req/s = %.2f of capacity\n", 2 * n,
              check2_best, 2 * n / check2_best, 2 * n / check2_best / capacity);
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto listed = [](const std::vector<double>& v) {
    std::string out;
    for (double x : v) out += (out.empty() ? "" : ", ") + std::to_string(x).substr(0, 4);
    return out;
  };
  std::printf("per round (same round's wrk): client %s (median %.2f); check N %s (median %.2f); check 2N %s (median %.2f)\n",
              listed(ratio_client).c_str(), median(ratio_client), listed(ratio_n).c_str(), median(ratio_n),
              listed(ratio_2n).c_str(), median(ratio_2n));
  std::printf("peak RSS: N %ld KB, 2N %ld KB: growth per watched reference %.0f bytes (unchanged cycle)\n", rss_n, rss_2n,
              (rss_2n - rss_n) * 1024.0 / n);
  std::printf("peak RSS growth per watched reference (baseline cycle): %.0f bytes\n",
              (base_2n.max_rss_kb - base_n.max_rss_kb) * 1024.0 / n);
  std::printf("registry::Client heap kept per resolved reference (N=%d, one thread): %.1f bytes\n", n,
              client_retained_bytes_per_ref(reg, n));
  // The service: resident memory after two unchanged cycles, N and 2N.
  long serve_n = 0, serve_2n = 0, serve_peak_n = 0, serve_peak_2n = 0;
  for (int round = 0; round < rounds; ++round) {
    Served a = serve_rss(dir, reg, n, concurrency, "n");
    Served b = serve_rss(dir, reg, 2 * n, concurrency, "n2");
    std::printf("round %d: serve N RSS %ld KB (peak %ld KB, first cycle after %.2f s); serve 2N RSS %ld KB (peak %ld KB, %.2f s)\n",
                round + 1, a.rss_kb, a.peak_kb, a.first_cycle, b.rss_kb, b.peak_kb, b.first_cycle);
    auto keep_min = [](long& best, long v) { best = best ? std::min(best, v) : v; };
    keep_min(serve_n, a.rss_kb);
    keep_min(serve_2n, b.rss_kb);
    keep_min(serve_peak_n, a.peak_kb);
    keep_min(serve_peak_2n, b.peak_kb);
  }
  std::printf("basewatch serve, resident after two cycles: N %ld KB, 2N %ld KB: growth per watched reference %.0f bytes\n",
              serve_n, serve_2n, (serve_2n - serve_n) * 1024.0 / n);
  std::printf("basewatch serve, peak resident (VmHWM): N %ld KB, 2N %ld KB: growth per watched reference %.0f bytes\n",
              serve_peak_n, serve_peak_2n, (serve_peak_2n - serve_peak_n) * 1024.0 / n);
  if (const char* ht = std::getenv("BW_BENCH_HEAPTRACK")) {
    // heaptrack of the 2N unchanged cycle, to see where the memory goes.
    RunResult h = run({"heaptrack", "-o", std::string(ht), BASEWATCH_BINARY, "check", "-c", cfg_2n}, {}, "", std::chrono::minutes(5));
    std::printf("heaptrack: %s\n", last_line(h.output).c_str());
  }
  return 0;
}
