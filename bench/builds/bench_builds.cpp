// From an upstream push to the app image pushed, on real parts: the
// upstream on one docker-registry, the team's registry (the mirror and the
// images built) on another, both notifying basewatch (distribution format);
// the real `basewatch serve` copies the upstream into the mirror, then runs
// a chain of two task builds: base FROM the mirror's copy pushes
// internal/base, app FROM internal/base pushes apps/app; Debian's buildah
// (vfs, chroot) builds.
//
// Each round pushes a new upstream image and times, from the end of that
// push to the app image appearing in the team's registry (HEAD every 10 ms):
//   detect  upstream push -> its change recorded, plus internal/base pushed
//           -> its change recorded (serve's log stamps, ms)
//   copy    the upstream's change recorded -> the copy in the mirror done
//           (serve's "copied" line): the copy job, and the wait for it
//   build   the two `buildah build` steps (the build logs' "done in")
//   push    the two `buildah push` steps
//   other   the rest: dispatch, pinning, the auth and registries files,
//           removing local names
// The peer, in the same run, alternating with basewatch's rounds: the same
// copy (skopeo) and the same two builds and pushes run by hand, back to
// back, into repositories basewatch does not watch; its total is the floor
// the chain is compared with.
//   bench_builds [rounds=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <regex>
#include <thread>

#include "tests/integration/helpers.h"
#include "tests/support/images.h"

using namespace bw::testing;
using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;
using Seconds = std::chrono::duration<double>;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// "2026-12-01T13:45:35.519Z ..." -> the time point of the line's stamp.
std::optional<Clock::time_point> stamp_of(const std::string& line) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(line.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec, &ms) != 7)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return Clock::from_time_t(timegm(&tm)) + std::chrono::milliseconds(ms);
}

// The stamp of the first line of `log` after `from` that contains `needle`.
std::optional<Clock::time_point> first_line(const std::string& log, const std::string& needle, Clock::time_point from) {
  size_t at = 0;
  while ((at = log.find(needle, at)) != std::string::npos) {
    size_t start = log.rfind('\n', at);
    start = start == std::string::npos ? 0 : start + 1;
    auto t = stamp_of(log.substr(start, 24));
    if (t && *t >= from - 5ms) return t;
    at += needle.size();
  }
  return std::nullopt;
}

// The "<step>: done in X.XXXs" figure of a build log.
double step_seconds(const std::string& log, const std::string& step) {
  std::smatch m;
  std::regex re("basewatch: " + step + ": done in ([0-9.]+)s");
  return std::regex_search(log, m, re) ? std::atof(m[1].str().c_str()) : 0.0;
}

bool wait_for_digest(LocalRegistry& reg, const std::string& repo, const std::string& not_this, Clock::time_point& at) {
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string d = reg.head_digest(repo, "latest");
    if (!d.empty() && d != not_this) {
      at = Clock::now();
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Round {
  double total = 0, detect = 0, copy = 0, build = 0, push = 0, other = 0, peer = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  TempDir dir("bw-bench-builds");
  int port = free_port();
  RegistryOptions opts;
  opts.notify_url = "http://127.0.0.1:" + std::to_string(port) + "/hooks/registry";
  opts.notify_headers = {{"Authorization", "Bearer bench-secret"}};
  opts.notify_ignore_actions = {"pull"};
  opts.log_level = "warn";
  LocalRegistry up(opts);
  LocalRegistry reg(opts);  // the team's
  const std::string upstream = up.host() + "/library/busybox:1";
  const std::string copy = reg.host() + "/hub/library/busybox:1";
  const std::string internal = reg.host() + "/internal/base:latest";
  push_busybox(up, "library/busybox", "1", "release 0");
  push_busybox(reg, "internal/base", "latest", "seed");
  dir.write("base/Dockerfile", "FROM " + copy + "\nRUN echo hardened > /base-marker\n");
  dir.write("app/Dockerfile", "FROM " + internal + "\nRUN cat /base-marker /etc/release && echo app > /app-marker\n");
  dir.write("secret", "bench-secret\n");
  std::string config = dir.write("config.yaml",
      "database: basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(port) + "\n"
      "log: {level: info}\n"
      "poll: {interval: 1h, jitter: 0%, settle: 0s}\n"
      "builds: {concurrency: 2, logs: build-logs}\n"
      "registries:\n  \"" + reg.host() + "\": {insecure: true}\n  \"" + up.host() + "\": {insecure: true}\n"
      "mirrors:\n  - {from: \"" + up.host() + "/library/*\", to: \"" + reg.host() + "/hub/library/*\"}\n"
      "projects:\n"
      "  - {name: base, dockerfile: base/Dockerfile, image: \"" + internal + "\", triggers: [rebuild]}\n"
      "  - {name: app, dockerfile: app/Dockerfile, image: \"" + reg.host() + "/apps/app:latest\", triggers: [rebuild]}\n"
      "triggers:\n  rebuild: {type: build, timeout: 5m}\n"
      "inbound:\n  - {name: registry, path: /hooks/registry, format: distribution, secret_file: secret}\n");
  BuildahStore store;
  auto bw = start_basewatch(config, port, dir.path() + "/basewatch.log", store.env());
  if (!wait_until([&] {
        auto images = get_json(port, "/v1/images");
        auto mirrors = get_json(port, "/v1/mirrors");
        return images.is_array() && images.size() == 2 && !images[0]["digest"].is_null() && !images[1]["digest"].is_null() &&
               mirrors.is_array() && mirrors.size() == 1 && mirrors[0]["state"] == "in-sync";
      }, 30s)) {
    std::fprintf(stderr, "no baseline\n%s\n", bw->log().c_str());
    return 1;
  }

  // The peer builds the same Dockerfiles into repositories basewatch does not
  // watch, in its own store, with a registries.conf for plain HTTP.
  const std::string peer_copy = reg.host() + "/peer/hub/busybox:1";
  const std::string peer_base = reg.host() + "/peer/base:latest";
  const std::string peer_app = reg.host() + "/peer/app:latest";
  dir.write("peer/base/Dockerfile", "FROM " + peer_copy + "\nRUN echo hardened > /base-marker\n");
  dir.write("peer/app/Dockerfile", "FROM " + peer_base + "\nRUN cat /base-marker /etc/release && echo app > /app-marker\n");
  BuildahStore peer_store;
  auto peer_env = peer_store.env();
  peer_env["CONTAINERS_REGISTRIES_CONF"] =
      dir.write("peer-registries.conf", "[[registry]]\nlocation = \"" + reg.host() + "\"\ninsecure = true\n");
  auto tool = [&](std::vector<std::string> args) {
    auto r = run(args, peer_env, "", 300s);
    if (r.status != 0) {
      std::fprintf(stderr, "%s\n%s\n", r.output.c_str(), r.errors.c_str());
      std::exit(1);
    }
  };

  std::vector<Round> results;
  auto buildah = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "buildah");
    tool(args);
  };
  std::printf("round  total(s)  detect  copy    build   push    other   peer(s)  total/peer\n");
  for (int i = 1; i <= rounds; ++i) {
    Round r;
    std::string app_before = reg.head_digest("apps/app", "latest");
    std::string base_before = reg.head_digest("internal/base", "latest");
    push_busybox(up, "library/busybox", "1", "release " + std::to_string(i));
    auto pushed = Clock::now();
    Clock::time_point base_at, app_at;
    if (!wait_for_digest(reg, "internal/base", base_before, base_at) || !wait_for_digest(reg, "apps/app", app_before, app_at)) {
      std::fprintf(stderr, "round %d: the chain did not finish\n%s\n", i, bw->log().c_str());
      return 1;
    }
    // Let the app's attempt be recorded (its log written, cleanup done).
    std::this_thread::sleep_for(500ms);
    std::string log = bw->log();
    auto seen = first_line(log, upstream + " changed", pushed);
    auto copied = first_line(log, "copied " + upstream + " -> " + copy, pushed);
    auto mid = first_line(log, internal + " changed", pushed);
    if (!seen || !copied || !mid) {
      std::fprintf(stderr, "round %d: changes not found in the log\n", i);
      return 1;
    }
    r.total = Seconds(app_at - pushed).count();
    r.detect = Seconds(*seen - pushed).count() + std::max(0.0, Seconds(*mid - base_at).count());
    r.copy = Seconds(*copied - *seen).count();
    // This round's two deliveries: the newest of each project (the list is newest first).
    auto ds = get_json(port, "/v1/deliveries");
    for (const char* project : {"base", "app"}) {
      for (auto& d : ds) {
        if (d["project"] != project) continue;
        std::string build_log = slurp(dir.path() + "/build-logs/" + d["id"].get<std::string>() + ".1.log");
        r.build += step_seconds(build_log, "build linux/amd64");
        r.push += step_seconds(build_log, "push");
        break;
      }
    }
    r.other = r.total - r.detect - r.copy - r.build - r.push;

    // The peer: the same two builds by hand, back to back.
    auto p0 = std::chrono::steady_clock::now();
    tool({"skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", "docker://" + upstream,
          "docker://" + peer_copy});
    buildah({"build", "--pull=always", "-t", peer_base, dir.path() + "/peer/base"});
    buildah({"push", "--tls-verify=false", peer_base, "docker://" + peer_base});
    buildah({"build", "--pull=always", "-t", peer_app, dir.path() + "/peer/app"});
    buildah({"push", "--tls-verify=false", peer_app, "docker://" + peer_app});
    r.peer = Seconds(std::chrono::steady_clock::now() - p0).count();
    std::printf("%5d  %8.2f  %6.2f  %6.2f  %6.2f  %6.2f  %6.2f  %7.2f  %10.2f\n", i, r.total, r.detect, r.copy, r.build, r.push,
                r.other, r.peer, r.total / r.peer);
    results.push_back(r);
  }
  auto col = [&](double Round::*f) {
    std::vector<double> v;
    for (const auto& r : results) v.push_back(r.*f);
    return median(v);
  };
  std::printf("median %8.2f  %6.2f  %6.2f  %6.2f  %6.2f  %6.2f  %7.2f  %10.2f\n", col(&Round::total), col(&Round::detect),
              col(&Round::copy), col(&Round::build), col(&Round::push), col(&Round::other), col(&Round::peer),
              col(&Round::total) / col(&Round::peer));
  bw->signal(SIGTERM);
  bw->wait(30s);
  return 0;
}
