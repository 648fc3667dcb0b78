// Mirror benchmarks, run by hand (README.md has the figures):
//
//   bench_mirror copy [ROUNDS=3]   basewatch import vs skopeo copy --all of one
//                                  index (3 platforms x 4 layers x 8 MB) between two
//                                  local registries, in the same run, as a ratio
//   bench_mirror sync [N=200]      a sync of N mirrored tags already in step:
//                                  requests sent upstream per tag, basewatch mirror
//                                  sync vs skopeo sync of the same tags
//   bench_mirror rss [MB=1024] [LAYERS=1]  peak RSS of basewatch import copying LAYERS blobs of MB
//   bench_mirror latency [N=30]    push upstream -> delivery for a project FROM the
//                                  mirror, through an inbound notification (the copy
//                                  included): p50 / p99 / max
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <ctime>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "tests/support/content.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/support.h"

extern char** environ;

using namespace bw::testing;
using steady = std::chrono::steady_clock;

namespace {

struct Measured {
  int status = -1;
  double seconds = 0;
  long max_rss_kb = 0;
};

// Runs argv to its end; wall time and the child's peak RSS (wait4).
Measured run_measured(const std::vector<std::string>& argv, const std::string& log = "/dev/null") {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  Measured m;
  auto t0 = steady::now();
  pid_t pid = 0;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) return m;
  // Peak RSS: the child's VmHWM, read while it runs. (wait4's ru_maxrss
  // would count the time before exec, when a spawned child still shares the
  // bench's own address space, which holds the test content.)
  int status = 0;
  std::string status_path = "/proc/" + std::to_string(pid) + "/status";
  for (;;) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (FILE* f = std::fopen(status_path.c_str(), "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, f)) {
        long kb = 0;
        if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) m.max_rss_kb = std::max(m.max_rss_kb, kb);
      }
      std::fclose(f);
    }
    struct timespec ts{0, 20'000'000};
    nanosleep(&ts, nullptr);
  }
  m.seconds = std::chrono::duration<double>(steady::now() - t0).count();
  m.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  posix_spawn_file_actions_destroy(&fa);
  return m;
}

std::string config_for(const TempDir& dir, const std::vector<std::string>& insecure_hosts, const std::string& extra = "") {
  std::string yaml = "registries:\n";
  for (const auto& h : insecure_hosts) yaml += "  " + h + ": {insecure: true}\n";
  return dir.write("bench-" + std::to_string(insecure_hosts.size()) + "-" + std::to_string(std::rand()) + ".yaml", yaml + extra);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int bench_copy(int rounds) {
  LocalRegistry upstream;
  Pushed src = push_multiarch(upstream, "bench/base", "1", {"linux/amd64", "linux/arm64", "linux/ppc64le"},
                              {8 << 20, 8 << 20, 8 << 20, 8 << 20}, 7, false);
  std::printf("content: %s, 3 platforms x 4 layers x 8 MiB = %.1f MiB of blobs\n", src.digest.c_str(),
              static_cast<double>(src.blob_bytes) / (1 << 20));
  TempDir dir("bw-bench-mirror");
  std::vector<double> bw_s, sk_s;
  for (int round = 0; round < rounds; ++round) {
    // A fresh mirror registry per tool and round: no blob is there already
    // (and skopeo's blob-info cache cannot mount from an earlier round).
    LocalRegistry for_bw, for_skopeo;
    std::string cfg = config_for(dir, {upstream.host(), for_bw.host()});
    auto one = [&](bool basewatch_first) {
      for (int k = 0; k < 2; ++k) {
        bool is_bw = (k == 0) == basewatch_first;
        if (is_bw) {
          auto m = run_measured({BASEWATCH_BINARY, "import", "-c", cfg, "--json", upstream.host() + "/bench/base:1",
                                 for_bw.host() + "/mirror/base:1"});
          if (m.status != 0) std::printf("basewatch import failed (%d)\n", m.status);
          bw_s.push_back(m.seconds);
        } else {
          ::system("rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb");
          auto m = run_measured({"skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
                                 "docker://" + upstream.host() + "/bench/base:1", "docker://" + for_skopeo.host() + "/mirror/base:1"});
          if (m.status != 0) std::printf("skopeo copy failed (%d)\n", m.status);
          sk_s.push_back(m.seconds);
        }
      }
    };
    one(round % 2 == 0);  // alternate who goes first
    std::string bd = for_bw.head_digest("mirror/base", "1"), sd = for_skopeo.head_digest("mirror/base", "1");
    std::printf("round %d: basewatch %.2fs, skopeo %.2fs, ratio (skopeo/basewatch) %.2f; digests kept: basewatch %s, skopeo %s\n",
                round + 1, bw_s.back(), sk_s.back(), sk_s.back() / bw_s.back(), bd == src.digest ? "yes" : ("no: " + bd).c_str(),
                sd == src.digest ? "yes" : ("no: " + sd).c_str());
  }
  double b = percentile(bw_s, 0.5), s = percentile(sk_s, 0.5);
  std::printf("median: basewatch import %.2fs, skopeo copy --all %.2fs: basewatch takes %.2f of skopeo's time\n", b, s, b / s);
  return 0;
}

int bench_sync(int n) {
  LocalRegistry upstream, mirror;
  FaultProxy up(upstream.url());
  TempDir dir("bw-bench-mirror");
  // N tags over 20 repositories; each a small single-platform image.
  std::string watch = "watch:\n";
  std::string skopeo_yaml = up.host() + ":\n  tls-verify: false\n  images:\n";
  int repos = std::min(20, n);
  std::vector<std::vector<std::string>> tags(static_cast<size_t>(repos));
  for (int i = 0; i < n; ++i) {
    std::string repo = "library/r" + std::to_string(i % repos), tag = "t" + std::to_string(i);
    push_layered_image(upstream, repo, tag, "linux/amd64", {2000}, static_cast<uint64_t>(100 + i));
    watch += "  - ref: " + up.host() + "/" + repo + ":" + tag + "\n";
    tags[static_cast<size_t>(i % repos)].push_back(tag);
  }
  for (int r = 0; r < repos; ++r) {
    skopeo_yaml += "    library/r" + std::to_string(r) + ":\n";
    for (const auto& t : tags[static_cast<size_t>(r)]) skopeo_yaml += "      - " + t + "\n";
  }
  std::string sync_yaml = dir.write("skopeo-sync.yaml", skopeo_yaml);
  std::string cfg = config_for(dir, {up.host(), mirror.host()},
                               "mirrors:\n  - {from: " + up.host() + "/library/*, to: " + mirror.host() + "/bw/*}\n" + watch);
  auto count = [&](const char* who) {
    size_t heads = up.count("HEAD", "/manifests/"), gets = up.count("GET", "/manifests/"), blobs = up.count("GET", "/blobs/");
    size_t all = up.requests().size();
    std::printf("%s: %zu requests upstream for %d tags: %.2f per tag (manifest HEAD %zu, manifest GET %zu, blob GET %zu, other %zu)\n",
                who, all, n, static_cast<double>(all) / n, heads, gets, blobs, all - heads - gets - blobs);
  };
  // First passes fill both mirrors; the second ones are what is measured.
  auto first = run_measured({BASEWATCH_BINARY, "mirror", "sync", "-c", cfg});
  auto sk_first = run_measured({"skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false", sync_yaml,
                                mirror.host() + "/skopeo"});
  std::printf("filled: basewatch %.2fs (exit %d), skopeo %.2fs (exit %d)\n", first.seconds, first.status, sk_first.seconds,
              sk_first.status);
  up.forget();
  auto bw = run_measured({BASEWATCH_BINARY, "mirror", "sync", "-c", cfg});
  count("basewatch mirror sync (in step)");
  std::printf("  %.2fs, exit %d\n", bw.seconds, bw.status);
  up.forget();
  auto sk = run_measured({"skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false", sync_yaml,
                          mirror.host() + "/skopeo"});
  count("skopeo sync (in step)");
  std::printf("  %.2fs, exit %d\n", sk.seconds, sk.status);
  return 0;
}

int bench_rss(int mb, int layers) {
  LocalRegistry upstream, mirror;
  TempDir dir("bw-bench-mirror");
  std::printf("pushing %d layer(s) of %d MiB...\n", layers, mb);
  push_layered_image(upstream, "bench/huge", "1", "linux/amd64", std::vector<size_t>(static_cast<size_t>(layers), static_cast<size_t>(mb) << 20), 9);
  std::string cfg = config_for(dir, {upstream.host(), mirror.host()});
  auto m = run_measured({BASEWATCH_BINARY, "import", "-c", cfg, "--json", upstream.host() + "/bench/huge:1", mirror.host() + "/bench/huge:1"},
                        dir.path() + "/import.log");
  std::printf("basewatch import of %d blob(s) of %d MiB: exit %d, %.1fs (%.0f MiB/s), peak RSS %.1f MiB\n", layers, mb, m.status,
              m.seconds, mb * layers / m.seconds, static_cast<double>(m.max_rss_kb) / 1024);
  auto sk = run_measured({"skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                          "docker://" + upstream.host() + "/bench/huge:1", "docker://" + mirror.host() + "/skopeo/huge:1"});
  std::printf("skopeo copy of the same: exit %d, %.1fs, peak RSS %.1f MiB\n", sk.status, sk.seconds,
              static_cast<double>(sk.max_rss_kb) / 1024);
  return 0;
}

int bench_latency(int n) {
  TempDir dir("bw-bench-mirror");
  int api = free_port();
  RegistryOptions uo;
  uo.notify_url = "http://127.0.0.1:" + std::to_string(api) + "/hooks/upstream";
  uo.notify_headers = {{"Authorization", "Bearer notify-secret"}};
  uo.notify_ignore_actions = {"pull"};
  LocalRegistry upstream(uo), mirror;
  push_layered_image(upstream, "library/app-base", "1", "linux/amd64", {100'000}, 1);
  Receiver receiver;
  dir.write("secret", "notify-secret\n");
  dir.write("app/Dockerfile", "FROM " + mirror.host() + "/hub/library/app-base:1\n");
  std::string cfg = config_for(dir, {upstream.host(), mirror.host()},
                               "database: " + dir.path() + "/bw.db\nlisten: 127.0.0.1:" + std::to_string(api) +
                                   "\nlog: {level: warn}\npoll: {interval: 1h, settle: 0s}\n"
                                   "mirrors:\n  - {from: " + upstream.host() + "/library/*, to: " + mirror.host() + "/hub/library/*}\n"
                                   "inbound:\n  - {name: upstream, path: /hooks/upstream, format: distribution, secret_file: secret}\n"
                                   "projects:\n  - {name: app, dockerfile: app/Dockerfile, triggers: [ci]}\n"
                                   "triggers:\n  ci: {type: webhook, url: '" + receiver.url("/hook") + "'}\n");
  Process bw({BASEWATCH_BINARY, "serve", "-c", cfg}, {}, dir.path() + "/serve.log");
  // The baseline (and the mirror filled) first.
  if (!wait_until([&] { return !mirror.head_digest("hub/library/app-base", "1").empty(); }, std::chrono::seconds(30))) {
    std::printf("the mirror was never filled; log:\n%s\n", bw.log().c_str());
    return 1;
  }
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    size_t before = receiver.count();
    push_layered_image(upstream, "library/app-base", "1", "linux/amd64", {100'000}, static_cast<uint64_t>(1000 + i));
    auto pushed = steady::now();
    if (!receiver.wait_for(before + 1, std::chrono::seconds(30))) {
      std::printf("push %d: no delivery within 30s\n", i);
      continue;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(receiver.requests()[before].at - pushed).count());
  }
  std::printf("push -> delivery through the inbound hook, copy of a 100 KB layer included, %zu pushes: p50 %.1f ms, p99 %.1f ms, "
              "max %.1f ms\n",
              ms.size(), percentile(ms, 0.5), percentile(ms, 0.99), percentile(ms, 1.0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "";
  int n = argc > 2 ? std::atoi(argv[2]) : 0;
  if (what == "copy") return bench_copy(n > 0 ? n : 3);
  if (what == "sync") return bench_sync(n > 0 ? n : 200);
  if (what == "rss") return bench_rss(n > 0 ? n : 1024, argc > 3 ? std::max(1, std::atoi(argv[3])) : 1);
  if (what == "latency") return bench_latency(n > 0 ? n : 30);
  std::fprintf(stderr, "usage: bench_mirror copy [ROUNDS] | sync [N] | rss [MB] [LAYERS] | latency [N]\n");
  return 2;
}
