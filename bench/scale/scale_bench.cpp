// The 100,000-reference instance: one `basewatch serve` watching REFS tags
// spread over HOSTS real docker-registry processes on loopback (each its own
// registry host, 127.0.0.1:PORT), on SQLite and on PostgreSQL.
//
//   bench_scale [REFS=100000] [HOSTS=50] [ROUNDS=3] [WRK_SECONDS=10] [ENGINES=sqlite,postgres]
//
// Per engine it reports:
//   - the baseline cycle (first sight of every reference, right after start);
//   - ROUNDS full unchanged cycles (POST /v1/check, every reference due),
//     each against the registries' own capacity: the requests/s they
//     answered, counted in their access logs (not wrk's own figure, see
//     wrk_capacity), while wrk ran just before and just after the cycle with
//     the same manifest URLs, the same Accept header and the same
//     concurrency (one connection per registry host, as serve's workers hold
//     one request per registry when poll.concurrency equals HOSTS), with
//     the registries' CPU per request in the cycle and under each wrk run;
//   - VmRSS and VmHWM of serve after the first full cycles and at the end;
//   - one more cycle with wrk (16 connections) on /v1/status, then on
//     /v1/images?limit=100, while the cycle runs: their p99;
// and, when both engines ran, PostgreSQL's cycle as a ratio to SQLite's.
//
// Environment: BW_BENCH_BINARY (the basewatch to run), BW_BENCH_CONCURRENCY (poll.concurrency, default HOSTS; wrk
// then uses that many connections, spread over the hosts),
// BW_BENCH_API_SECONDS (each API wrk, default 15), BW_BENCH_HOLD=1 (stop
// after the registries are filled: print the config and wait for Enter),
// BW_BENCH_PERF=PREFIX (`perf record --call-graph dwarf` of serve during
// the first unchanged cycle, to PREFIX.ENGINE.data).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "tests/support/postgres.h"
#include "tests/support/support.h"

using namespace bw::testing;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

const char* const k_accept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
constexpr int k_repos = 10;  // repositories per registry: bench/r0 .. bench/r9

double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

std::string repo_of(int i) { return "bench/r" + std::to_string(i % k_repos); }
std::string tag_of(int i) { return "t" + std::to_string(i); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::string listed(const std::vector<double>& v, int precision = 2) {
  std::string out;
  char buf[32];
  for (double x : v) {
    std::snprintf(buf, sizeof buf, "%.*f", precision, x);
    out += (out.empty() ? "" : ", ") + std::string(buf);
  }
  return out;
}

struct Registries {
  std::vector<std::unique_ptr<LocalRegistry>> regs;
  int per_host = 0;
};

// HOSTS registries, each holding per_host tags: one image pushed per
// repository, then tagged per_host times through the registry API (PUT of
// the same manifest under a new tag), two hosts at a time.
Registries make_registries(int hosts, int per_host) {
  Registries out;
  out.per_host = per_host;
  RegistryOptions opts;
  opts.log_level = "error";
  auto t0 = steady::now();
  for (int h = 0; h < hosts; ++h) out.regs.push_back(std::make_unique<LocalRegistry>(opts));
  std::printf("started %d registries in %.1f s\n", hosts, seconds_since(t0));
  t0 = steady::now();
  std::vector<std::string> manifest(static_cast<size_t>(hosts)), media_type(static_cast<size_t>(hosts));
  for (int h = 0; h < hosts; ++h) {
    for (int r = 0; r < k_repos; ++r) out.regs[h]->push_image(repo_of(r), tag_of(r), "one image, many tags");
    manifest[h] = out.regs[h]->get_manifest(repo_of(0), tag_of(0), &media_type[h]);
  }
  std::atomic<int> next_host{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (int h; (h = next_host++) < hosts;) {
        httplib::Client c("127.0.0.1", out.regs[h]->port());
        c.set_keep_alive(true);
        c.set_tcp_nodelay(true);  // headers and body are two writes: without it each PUT waits for a delayed ACK
        for (int i = k_repos; i < per_host; ++i) {
          auto res = c.Put(("/v2/" + repo_of(i) + "/manifests/" + tag_of(i)).c_str(), manifest[h], media_type[h].c_str());
          if (!res || res->status != 201) ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failures) {
    std::fprintf(stderr, "%d tag writes failed\n", failures.load());
    std::exit(1);
  }
  std::printf("tagged %d references (%d per registry) in %.1f s\n", hosts * per_host, per_host, seconds_since(t0));
  return out;
}

std::string write_config(const TempDir& dir, const Registries& r, const std::string& name, const std::string& database,
                         int port, int concurrency) {
  std::string yaml;
  yaml.reserve(static_cast<size_t>(r.regs.size() * static_cast<size_t>(r.per_host)) * 48 + 4096);
  yaml += "database: \"" + database + "\"\n"
          "listen: 127.0.0.1:" + std::to_string(port) + "\n"
          "log: {level: warn}\n"
          "poll: {interval: 1h, concurrency: " + std::to_string(concurrency) + "}\n"
          "registries:\n";
  for (const auto& reg : r.regs) yaml += "  " + reg->host() + ": {insecure: true}\n";
  yaml += "watch:\n";
  for (const auto& reg : r.regs) {
    for (int i = 0; i < r.per_host; ++i) yaml += "  - ref: " + reg->host() + "/" + repo_of(i) + ":" + tag_of(i) + "\n";
  }
  return dir.write(name + ".yaml", yaml);
}

// A wrk script over every registry: thread k talks to host k % HOSTS and
// cycles through that host's manifest URLs (requests formatted once), with
// basewatch's Accept header. GET: wrk cannot read HEAD answers that carry a
// Content-Length; distribution 2.8 serves HEAD through its GET handler.
std::string write_wrk_script(const TempDir& dir, const Registries& r) {
  std::string lua = "local ports = {";
  for (const auto& reg : r.regs) lua += std::to_string(reg->port()) + ",";
  lua += "}\n"
         "local per_host = " + std::to_string(r.per_host) + "\n"
         "local repos = " + std::to_string(k_repos) + "\n"
         "local accept = \"" + std::string(k_accept) + "\"\n"
         "local made = 0\n"
         "function setup(thread)\n"
         "  local port = ports[made % #ports + 1]\n"
         "  made = made + 1\n"
         "  thread.addr = wrk.lookup(\"127.0.0.1\", tostring(port))[1]\n"
         "  thread:set(\"port\", port)\n"
         "end\n"
         "local requests, i = {}, 0\n"
         "function init(args)\n"
         "  for t = 0, per_host - 1 do\n"
         "    requests[t + 1] = wrk.format(\"GET\", \"/v2/bench/r\" .. (t % repos) .. \"/manifests/t\" .. t,\n"
         "      {[\"Host\"] = \"127.0.0.1:\" .. port, [\"Accept\"] = accept})\n"
         "  end\n"
         "end\n"
         "function request()\n"
         "  i = i % #requests + 1\n"
         "  return requests[i]\n"
         "end\n";
  return dir.write("registries.lua", lua);
}

// The registries' access logs ("[01/Dec/2026:19:25:08 +0000] "GET /v2/..."):
// where each log ends now, and the manifest requests they answered in each
// wall-clock second since then.
std::vector<uintmax_t> log_ends(const Registries& r) {
  std::vector<uintmax_t> out;
  for (const auto& reg : r.regs) out.push_back(std::filesystem::file_size(reg->log_path()));
  return out;
}

std::map<int64_t, long> answered_per_second(const Registries& r, const std::vector<uintmax_t>& from) {
  static const char* const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::map<int64_t, long> out;
  for (size_t i = 0; i < r.regs.size(); ++i) {
    std::ifstream in(r.regs[i]->log_path());
    in.seekg(static_cast<std::streamoff>(from[i]));
    for (std::string line; std::getline(in, line);) {
      auto open = line.find(" - - [");
      if (open == std::string::npos || line.find("/manifests/", open) == std::string::npos) continue;
      std::tm tm{};
      char mon[4] = {};
      if (std::sscanf(line.c_str() + open + 6, "%2d/%3s/%4d:%2d:%2d:%2d", &tm.tm_mday, mon, &tm.tm_year, &tm.tm_hour,
                      &tm.tm_min, &tm.tm_sec) != 6) {
        continue;
      }
      tm.tm_year -= 1900;
      tm.tm_mon = static_cast<int>(std::find_if(std::begin(months), std::end(months),
                                                [&](const char* m) { return std::string(m) == mon; }) -
                                   std::begin(months));
      ++out[static_cast<int64_t>(timegm(&tm))];
    }
  }
  return out;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Answers per second over the whole seconds [first, last].
double rate_over(const std::map<int64_t, long>& per_second, int64_t first, int64_t last) {
  if (last < first) return 0;
  long n = 0;
  for (auto it = per_second.lower_bound(first); it != per_second.end() && it->first <= last; ++it) n += it->second;
  return static_cast<double>(n) / static_cast<double>(last - first + 1);
}

struct Capacity {
  double rate = 0;      // requests/s the registries answered, counted by them
  double wrk_says = 0;  // wrk's own Requests/sec
  double cpu_ms = 0;    // the registries' CPU per answer over the whole wrk run
};

double registries_cpu(const Registries& r) {
  double sum = 0;
  for (const auto& reg : r.regs) sum += cpu_seconds_of(reg->pid());
  return sum;
}

// Requests/s the registries answer together, `connections` connections
// spread over them (wrk: one thread per connection, each on one host).
// Counted by the registries, not by wrk: wrk starts its clock after it has
// made all its threads, and the threads made first are already sending. At
// load 25-60 on two cores making fifty threads takes seconds, and wrk said
// 1.3-2.6 times what the registries answered (bench/scale/README.md). The
// registries' access logs count the answers of each wall-clock second; the
// whole seconds of the last WRK_SECONDS before wrk ended (all threads
// running) are the window: WRK_SECONDS - 1 of them.
Capacity wrk_capacity(const Registries& r, const std::string& script, int connections, int secs) {
  auto from = log_ends(r);
  double cpu0 = registries_cpu(r);
  RunResult w = run({"wrk", "-t", std::to_string(connections), "-c", std::to_string(connections), "-d",
                     std::to_string(secs) + "s", "-s", script, r.regs[0]->url()},
                    {}, "", std::chrono::seconds(secs + 60));
  int64_t ended = unix_now();
  double cpu = registries_cpu(r) - cpu0;
  std::this_thread::sleep_for(1s);  // the registries' last log lines
  Capacity out;
  std::smatch m;
  if (!std::regex_search(w.output, m, std::regex(R"(Requests/sec:\s+([\d.]+))"))) {
    std::cerr << "wrk said: " << w.output << w.errors << "\n";
    return out;
  }
  if (w.output.find("Non-2xx") != std::string::npos) std::cerr << "wrk saw non-2xx answers:\n" << w.output << "\n";
  out.wrk_says = std::stod(m[1]);
  auto answered = answered_per_second(r, from);
  out.rate = rate_over(answered, ended - secs + 1, ended - 1);
  long all = 0;
  for (const auto& [second, n] : answered) all += n;
  if (all > 0) out.cpu_ms = cpu * 1e3 / static_cast<double>(all);
  return out;
}

// The references resolved since the start (basewatch_check_duration_seconds
// counts, all registries), from /metrics; -1 when it does not answer.
long checks_done(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(10, 0);
  auto res = c.Get("/metrics");
  if (!res || res->status != 200) return -1;
  long total = 0;
  std::istringstream in(res->body);
  const std::string prefix = "basewatch_check_duration_seconds_count{";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    total += std::stol(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

// Between two reads of /metrics while a cycle runs: a second while more
// than two seconds' work is left, then 50 ms. A scrape every 50 ms for the
// whole cycle was serve's CPU the registries' capacity runs did not pay.
void poll_pause(long left) { std::this_thread::sleep_for(left > 2500 ? 1000ms : 50ms); }

struct Engine {
  std::string name;
  std::string database;  // path or URI
  // Rows whose last_checked is at or after `ms` (the cycle was recorded).
  std::function<long(int64_t ms)> recorded_since;
};

struct WrkLatency {
  double rps = 0, p50 = 0, p90 = 0, p99 = 0;  // ms
  std::string raw;
};

double to_ms(const std::string& number, const std::string& unit) {
  double v = std::stod(number);
  if (unit == "us") return v / 1000;
  if (unit == "s") return v * 1000;
  if (unit == "m") return v * 60000;
  return v;
}

WrkLatency wrk_api(int port, const std::string& path, int secs) {
  std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  RunResult w = run({"wrk", "-t2", "-c16", "-d" + std::to_string(secs) + "s", "--latency", url}, {}, "",
                    std::chrono::seconds(secs + 60));
  WrkLatency out;
  out.raw = w.output;
  std::smatch m;
  if (std::regex_search(w.output, m, std::regex(R"(Requests/sec:\s+([\d.]+))"))) out.rps = std::stod(m[1]);
  auto pct = [&](const char* p) {
    std::smatch mm;
    if (std::regex_search(w.output, mm, std::regex(std::string(R"(\s)") + p + R"(%\s+([\d.]+)(us|ms|s|m)\b)"))) {
      return to_ms(mm[1], mm[2]);
    }
    return -1.0;
  };
  out.p50 = pct("50");
  out.p90 = pct("90");
  out.p99 = pct("99");
  if (w.output.find("Non-2xx") != std::string::npos) std::cerr << "wrk " << path << " saw non-2xx answers\n" << w.output;
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Cycle {
  double seconds = 0;   // POST /v1/check until every reference was resolved
  double cpu = 0;       // serve's CPU seconds over the cycle
  long recorded = 0;    // rows written by the cycle, read after it
};

// One full cycle asked for with POST /v1/check, timed until the metrics
// count every reference resolved; then the rows are read back. `during`
// runs (on this thread) while the cycle goes on.
Cycle run_cycle(Process& serve, int port, long refs, const Engine& engine, const std::function<void()>& during = nullptr) {
  Cycle c;
  long before = checks_done(port);
  int64_t started_ms = now_ms();
  double cpu0 = cpu_seconds_of(serve.pid());
  auto t0 = steady::now();
  httplib::Client api("127.0.0.1", port);
  auto res = api.Post("/v1/check", "", "application/json");
  if (!res || res->status != 202) {
    std::cerr << "POST /v1/check: " << (res ? res->status : 0) << "\n";
    std::exit(1);
  }
  std::thread side;
  if (during) side = std::thread(during);
  for (long seen; (seen = checks_done(port)) < before + refs;) {
    if (seconds_since(t0) > 1800 || !serve.running()) {
      std::cerr << "the cycle did not finish:\n" << serve.log().substr(0, 4000) << "\n";
      std::exit(1);
    }
    poll_pause(before + refs - seen);
  }
  c.seconds = seconds_since(t0);
  c.cpu = cpu_seconds_of(serve.pid()) - cpu0;
  if (side.joinable()) side.join();
  // Written in batches of up to 256 or 100 ms: give the last batch a moment.
  for (int i = 0; i < 50 && (c.recorded = engine.recorded_since(started_ms)) < refs; ++i) std::this_thread::sleep_for(100ms);
  if (c.recorded < refs) std::fprintf(stderr, "only %ld of %ld references recorded after the cycle\n", c.recorded, refs);
  return c;
}

struct EngineResult {
  std::string name;
  double baseline = 0, baseline_cpu = 0, start_seconds = 0;
  std::vector<double> cycle, ratio, cpu, capacity;
  long rss_first = 0, hwm_first = 0, rss_end = 0, hwm_end = 0;
  WrkLatency status, images;
  double api_cycle = 0;
};

EngineResult measure(const Engine& engine, const TempDir& dir, const Registries& regs, const std::string& wrk_script,
                     int concurrency, int rounds, int wrk_secs, int api_secs) {
  EngineResult out;
  out.name = engine.name;
  const long refs = static_cast<long>(regs.regs.size()) * regs.per_host;
  int port = free_port();
  std::string cfg = write_config(dir, regs, engine.name, engine.database, port, concurrency);
  if (std::getenv("BW_BENCH_HOLD")) {
    std::printf("config %s; press Enter to go on\n", cfg.c_str());
    std::fflush(stdout);
    std::getchar();
  }
  std::printf("[%s] load %s: starting serve\n", engine.name.c_str(), load_average().c_str());
  auto t0 = steady::now();
  // BW_BENCH_BINARY: another basewatch (a copy, so the tree can be rebuilt during a long run).
  const char* binary = std::getenv("BW_BENCH_BINARY") ? std::getenv("BW_BENCH_BINARY") : BASEWATCH_BINARY;
  Process serve({binary, "serve", "-c", cfg}, {}, dir.path() + "/" + engine.name + ".log");
  bool ready = wait_until([&] {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(1, 0);
    auto res = c.Get("/readyz");
    return (res && res->status == 200) || !serve.running();
  }, 300s);
  if (!ready || !serve.running()) {
    std::cerr << "serve did not start:\n" << serve.log() << "\n";
    std::exit(1);
  }
  out.start_seconds = seconds_since(t0);
  // Every reference is new: the first cycle (the baseline) starts by itself.
  for (long done; (done = checks_done(port)) < refs;) {
    if (!serve.running() || seconds_since(t0) > 1800) {
      std::cerr << "the baseline did not finish:\n" << serve.log() << "\n";
      std::exit(1);
    }
    poll_pause(refs - done);
  }
  out.baseline = seconds_since(t0) - out.start_seconds;
  out.baseline_cpu = cpu_seconds_of(serve.pid());
  std::this_thread::sleep_for(1s);  // the last batch
  std::printf("[%s] ready after %.2f s; baseline cycle of %ld references %.1f s (%.0f/s), serve CPU since start %.1f s\n",
              engine.name.c_str(), out.start_seconds, refs, out.baseline, static_cast<double>(refs) / out.baseline,
              out.baseline_cpu);
  for (int round = 0; round < rounds; ++round) {
    std::string load = load_average();
    // The registries' capacity just before and just after the cycle (it
    // drifts by up to a sixth from one wrk run to the next here: 50
    // registries share two cores).
    Capacity before = wrk_capacity(regs, wrk_script, concurrency, wrk_secs);
    std::unique_ptr<Process> perf;
    if (const char* prefix = std::getenv("BW_BENCH_PERF"); prefix && round == 0) {
      // DWARF call graphs: the build has no frame pointers.
      perf = std::make_unique<Process>(std::vector<std::string>{"perf", "record", "--call-graph", "dwarf,16384", "-F", "499",
                                                                "-p", std::to_string(serve.pid()), "-o",
                                                                std::string(prefix) + "." + engine.name + ".data"},
                                       std::map<std::string, std::string>{}, dir.path() + "/perf.log");
      std::this_thread::sleep_for(500ms);
    }
    double reg1 = registries_cpu(regs);
    auto logs = log_ends(regs);
    int64_t cycle_start = unix_now();
    Cycle c = run_cycle(serve, port, refs, engine);
    int64_t cycle_end = unix_now();
    double cycle_registries_cpu = registries_cpu(regs) - reg1;
    if (perf) {
      perf->signal(SIGINT);
      perf->wait(30s);
    }
    std::this_thread::sleep_for(1s);
    // The same count for the cycle, over its whole seconds (the first and
    // last are partial): a check on the cycle's own figure.
    double counted = rate_over(answered_per_second(regs, logs), cycle_start + 1, cycle_end - 1);
    Capacity after = wrk_capacity(regs, wrk_script, concurrency, wrk_secs);
    double cap = (before.rate + after.rate) / 2;
    double rate = static_cast<double>(refs) / c.seconds;
    out.cycle.push_back(c.seconds);
    out.cpu.push_back(c.cpu);
    out.capacity.push_back(cap);
    if (cap > 0) out.ratio.push_back(rate / cap);
    std::printf("[%s] round %d (load %s): capacity %.0f req/s before, %.0f after (counted by the registries; wrk said %.0f "
                "and %.0f); cycle %.1f s = %.0f req/s (the registries counted %.0f/s) = %.2f of capacity; "
                "serve CPU %.1f s (%.0f us per reference, %.2f cores); the registries' CPU %.1f s (%.2f ms per request, "
                "%.2f cores; under wrk %.2f and %.2f ms per request); %ld rows recorded\n",
                engine.name.c_str(), round + 1, load.c_str(), before.rate, after.rate, before.wrk_says, after.wrk_says,
                c.seconds, rate, counted, cap > 0 ? rate / cap : 0,
                c.cpu, c.cpu * 1e6 / static_cast<double>(refs), c.cpu / c.seconds, cycle_registries_cpu,
                cycle_registries_cpu * 1e3 / static_cast<double>(refs), cycle_registries_cpu / c.seconds, before.cpu_ms, after.cpu_ms, c.recorded);
    if (round == 0) {
      std::this_thread::sleep_for(1s);
      Memory m = memory_of(serve.pid());
      out.rss_first = m.rss_kb;
      out.hwm_first = m.hwm_kb;
      std::printf("[%s] after the baseline and one full cycle: VmRSS %ld KB, VmHWM %ld KB\n", engine.name.c_str(),
                  out.rss_first, out.hwm_first);
    }
    std::fflush(stdout);
  }
  // The API while a cycle runs: /v1/status, then a page of /v1/images.
  {
    std::string load = load_average();
    Cycle c = run_cycle(serve, port, refs, engine, [&] {
      std::this_thread::sleep_for(2s);
      out.status = wrk_api(port, "/v1/status", api_secs);
      out.images = wrk_api(port, "/v1/images?limit=100", api_secs);
    });
    out.api_cycle = c.seconds;
    std::printf("[%s] API during a cycle (load %s; the cycle took %.1f s):\n"
                "  /v1/status:           %.0f req/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n"
                "  /v1/images?limit=100: %.0f req/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n",
                engine.name.c_str(), load.c_str(), c.seconds, out.status.rps, out.status.p50, out.status.p90, out.status.p99,
                out.images.rps, out.images.p50, out.images.p90, out.images.p99);
    if (c.seconds < 2 + 2.0 * api_secs) std::printf("  (the cycle ended before the API runs did: they ran partly after it)\n");
  }
  std::this_thread::sleep_for(1s);
  Memory m = memory_of(serve.pid());
  out.rss_end = m.rss_kb;
  out.hwm_end = m.hwm_kb;
  std::printf("[%s] at the end (%d more cycles): VmRSS %ld KB, VmHWM %ld KB\n", engine.name.c_str(), rounds, out.rss_end,
              out.hwm_end);
  serve.signal(SIGTERM);
  serve.wait(60s);
  std::fflush(stdout);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  long refs = argc > 1 ? std::atol(argv[1]) : 100'000;
  int hosts = argc > 2 ? std::atoi(argv[2]) : 50;
  int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  int wrk_secs = argc > 4 ? std::atoi(argv[4]) : 10;
  std::string engines = argc > 5 ? argv[5] : "sqlite,postgres";
  int concurrency = std::getenv("BW_BENCH_CONCURRENCY") ? std::atoi(std::getenv("BW_BENCH_CONCURRENCY")) : hosts;
  int api_secs = std::getenv("BW_BENCH_API_SECONDS") ? std::atoi(std::getenv("BW_BENCH_API_SECONDS")) : 15;
  if (hosts < 1 || refs < hosts || rounds < 1 || concurrency < 1) {
    std::fprintf(stderr, "usage: bench_scale [REFS] [HOSTS] [ROUNDS] [WRK_SECONDS] [ENGINES]\n");
    return 2;
  }
  // Every figure is against wrk's: without it the run would print zeros.
  if (run({"wrk", "--version"}).status == 127) {
    std::fprintf(stderr, "bench_scale: wrk is not installed (apt-get install wrk)\n");
    return 2;
  }
  // 50 registries, wrk's threads and serve's sockets: more than 1,024 files.
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);

  std::printf("bench_scale: %ld references over %d registries, poll.concurrency %d, %d rounds, wrk %d s; load %s\n", refs,
              hosts, concurrency, rounds, wrk_secs, load_average().c_str());
  TempDir dir("bw-bench-scale");
  Registries regs = make_registries(hosts, static_cast<int>(refs / hosts));
  std::string script = write_wrk_script(dir, regs);

  std::vector<EngineResult> results;
  if (engines.find("sqlite") != std::string::npos) {
    std::string path = dir.path() + "/scale.db";
    Engine e{"sqlite", path, [path](int64_t ms) {
               RunResult r = run({"sqlite3", path, "SELECT count(*) FROM refs WHERE last_checked >= " + std::to_string(ms)});
               return r.status == 0 ? std::atol(r.output.c_str()) : -1L;
             }};
    results.push_back(measure(e, dir, regs, script, concurrency, rounds, wrk_secs, api_secs));
  }
  std::unique_ptr<PostgresServer> pg;
  if (engines.find("postgres") != std::string::npos) {
    PostgresOptions po;
    po.durable = true;  // as shipped: fsync, full_page_writes, synchronous_commit on
    pg = std::make_unique<PostgresServer>(po);
    std::string db = pg->create_database();
    Engine e{"postgres", pg->uri(db), [&pg, db](int64_t ms) {
               return std::atol(pg->query(db, "SELECT count(*) FROM refs WHERE last_checked >= " + std::to_string(ms)).c_str());
             }};
    results.push_back(measure(e, dir, regs, script, concurrency, rounds, wrk_secs, api_secs));
  }

  std::printf("\n== summary: %ld references, %d registries, poll.concurrency %d ==\n", refs, hosts, concurrency);
  for (const auto& r : results) {
    std::printf("%s: baseline %.1f s; unchanged cycles %s s (median %.1f); of capacity %s (median %.2f); capacity %s req/s; "
                "serve CPU per cycle %s s\n",
                r.name.c_str(), r.baseline, listed(r.cycle, 1).c_str(), median(r.cycle), listed(r.ratio).c_str(),
                median(r.ratio), listed(r.capacity, 0).c_str(), listed(r.cpu, 1).c_str());
    std::printf("%s: VmRSS after the first full cycles %ld KB (VmHWM %ld KB), at the end %ld KB (VmHWM %ld KB)\n",
                r.name.c_str(), r.rss_first, r.hwm_first, r.rss_end, r.hwm_end);
    std::printf("%s: during a cycle, /v1/status p99 %.2f ms, /v1/images?limit=100 p99 %.2f ms\n", r.name.c_str(),
                r.status.p99, r.images.p99);
  }
  if (results.size() == 2) {
    const auto& s = results[0];
    const auto& p = results[1];
    std::printf("postgres / sqlite: baseline %.2f; unchanged cycle time %.2f (medians); of capacity %.2f / %.2f; serve CPU %.2f\n",
                p.baseline / s.baseline, median(p.cycle) / median(s.cycle), median(p.ratio), median(s.ratio),
                median(p.cpu) / median(s.cpu));
  }
  return 0;
}
