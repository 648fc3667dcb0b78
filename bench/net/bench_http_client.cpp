// What the HTTP client costs basewatch per HEAD, against libcurl doing the
// same requests in the same run: is an event-loop client (libcurl's multi
// interface, one thread for every connection) cheaper than basewatch's
// thread per request on cpp-httplib?
//
//   bench_http_client [REQUESTS=20000] [CONNECTIONS=50] [ROUNDS=3]
//
// One real docker-registry on loopback holds one image; every mode sends
// REQUESTS HEADs of its manifest (basewatch's Accept header) over
// CONNECTIONS keep-alive connections, and the modes alternate ROUNDS times;
// then wrk (the peer bench_scale measures capacity with) on the same URL for
// BW_BENCH_WRK_SECONDS (10). The figure is the client's CPU (user + system,
// getrusage) per request: the registry is another process. README.md has
// the numbers.
#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "net/http.h"
#include "tests/support/support.h"

using namespace bw;
using namespace bw::testing;

namespace {

const char* const k_accept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct Outcome {
  int ok = 0;
  double wall = 0, cpu = 0;
};

// Splits `total` over `threads` and runs `body(count, ok)` on each.
template <typename Body>
Outcome threads_of(int total, int threads, Body body) {
  std::atomic<int> ok{0};
  double c0 = cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    int count = total / threads + (i < total % threads ? 1 : 0);
    ts.emplace_back([&, count] { ok += body(count); });
  }
  for (auto& t : ts) t.join();
  Outcome o;
  o.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.cpu = cpu_seconds() - c0;
  o.ok = ok.load();
  return o;
}

// basewatch's own transport: net::HttplibClient, one pool shared by the
// threads, as the watcher's workers share it.
Outcome run_basewatch(const std::string& url, int total, int conns) {
  net::HttplibClient client;
  return threads_of(total, conns, [&](int count) {
    int ok = 0;
    for (int i = 0; i < count; ++i) {
      net::Request req;
      req.method = "HEAD";
      req.url = url;
      req.headers = {{"Accept", k_accept}, {"User-Agent", "basewatch-bench"}};
      auto res = client.send(req);
      if (res && res->status == 200 && !res->header("docker-content-digest").empty()) ++ok;
    }
    return ok;
  });
}

size_t count_digest(char* line, size_t size, size_t n, void* found) {
  if (size * n > 22 && strncasecmp(line, "docker-content-digest:", 22) == 0) ++*static_cast<int*>(found);
  return size * n;
}

CURL* make_easy(const std::string& url, curl_slist* headers, int* found) {
  CURL* e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, count_digest);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, found);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  return e;
}

curl_slist* curl_headers() {
  curl_slist* h = curl_slist_append(nullptr, (std::string("Accept: ") + k_accept).c_str());
  return curl_slist_append(h, "User-Agent: basewatch-bench");
}

// libcurl's easy interface: a thread per connection, as basewatch's workers.
Outcome run_curl_easy(const std::string& url, int total, int conns) {
  curl_slist* headers = curl_headers();
  auto o = threads_of(total, conns, [&](int count) {
    int found = 0, ok = 0;
    CURL* e = make_easy(url, headers, &found);
    for (int i = 0; i < count; ++i) {
      found = 0;
      if (curl_easy_perform(e) == CURLE_OK && found) ++ok;
    }
    curl_easy_cleanup(e);
    return ok;
  });
  curl_slist_free_all(headers);
  return o;
}

// libcurl's multi interface the way an event loop uses it: one thread,
// epoll, curl_multi_socket_action on each ready socket, a handle re-added
// as soon as its answer is in.
struct Loop {
  int epfd = epoll_create1(0);
  long timeout_ms = -1;
  std::map<curl_socket_t, bool> known;
  static int on_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
    auto* loop = static_cast<Loop*>(userp);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(loop->epfd, EPOLL_CTL_DEL, s, nullptr);
      loop->known.erase(s);
      return 0;
    }
    epoll_event ev{};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    bool is_known = loop->known.count(s) > 0;
    epoll_ctl(loop->epfd, is_known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    loop->known[s] = true;
    return 0;
  }
  static int on_timer(CURLM*, long ms, void* userp) {
    static_cast<Loop*>(userp)->timeout_ms = ms;
    return 0;
  }
};

Outcome run_curl_multi(const std::string& url, int total, int conns) {
  curl_slist* headers = curl_headers();
  CURLM* m = curl_multi_init();
  Loop loop;
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, Loop::on_socket);
  curl_multi_setopt(m, CURLMOPT_SOCKETDATA, &loop);
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, Loop::on_timer);
  curl_multi_setopt(m, CURLMOPT_TIMERDATA, &loop);
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(conns));
  std::vector<int> found(conns);
  int started = 0, ok = 0, done = 0, running = 0;
  double c0 = cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<CURL*> handles;
  for (int i = 0; i < conns && started < total; ++i, ++started) {
    CURL* e = make_easy(url, headers, &found[i]);
    curl_easy_setopt(e, CURLOPT_PRIVATE, reinterpret_cast<void*>(static_cast<intptr_t>(i)));
    handles.push_back(e);
    curl_multi_add_handle(m, e);
  }
  curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
  std::vector<epoll_event> events(conns + 1);
  while (done < total) {
    int n = epoll_wait(loop.epfd, events.data(), static_cast<int>(events.size()),
                       loop.timeout_ms < 0 ? 1000 : static_cast<int>(loop.timeout_ms));
    if (n <= 0) {
      // The timer fired; libcurl says the next one only when it changes.
      loop.timeout_ms = -1;
      curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    } else {
      for (int i = 0; i < n; ++i) {
        int flags = (events[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                    (events[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(m, events[i].data.fd, flags, &running);
      }
    }
    CURLMsg* msg;
    int queued;
    while ((msg = curl_multi_info_read(m, &queued))) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* e = msg->easy_handle;
      void* p = nullptr;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, &p);
      int slot = static_cast<int>(reinterpret_cast<intptr_t>(p));
      if (msg->data.result == CURLE_OK && found[slot]) ++ok;
      ++done;
      curl_multi_remove_handle(m, e);
      if (started < total) {
        ++started;
        found[slot] = 0;
        curl_multi_add_handle(m, e);
      }
    }
  }
  Outcome o;
  o.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.cpu = cpu_seconds() - c0;
  o.ok = ok;
  for (CURL* e : handles) curl_easy_cleanup(e);
  curl_multi_cleanup(m);
  close(loop.epfd);
  curl_slist_free_all(headers);
  return o;
}

// wrk, the client bench_scale measures the registries' capacity with (GET:
// wrk cannot read HEAD answers that carry a Content-Length), for
// WRK_SECONDS on the same URL and connections: its CPU (a child's rusage)
// over the requests it counted.
Outcome run_wrk(const std::string& url, int, int conns) {
  const char* secs = std::getenv("BW_BENCH_WRK_SECONDS");
  std::string cmd = "wrk -t2 -c" + std::to_string(conns) + " -d" + (secs ? secs : "10") + "s -H 'Accept: " + k_accept +
                    "' " + url + " 2>&1";
  rusage before{}, after{};
  getrusage(RUSAGE_CHILDREN, &before);
  auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int rc = p ? pclose(p) : -1;
  Outcome o;
  o.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  getrusage(RUSAGE_CHILDREN, &after);
  auto secs_of = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  o.cpu = secs_of(after.ru_utime) + secs_of(after.ru_stime) - secs_of(before.ru_utime) - secs_of(before.ru_stime);
  // "NNN requests in 10.00s, ..."
  auto at = out.find(" requests in ");
  if (rc != 0 || at == std::string::npos) {
    std::fprintf(stderr, "bench_http_client: wrk failed (is it installed? apt-get install wrk):\n%s", out.c_str());
    std::exit(2);
  }
  auto start = out.rfind('\n', at);
  o.ok = std::atoi(out.c_str() + (start == std::string::npos ? 0 : start + 1));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  int total = argc > 1 ? std::atoi(argv[1]) : 20000;
  int conns = argc > 2 ? std::atoi(argv[2]) : 50;
  int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  curl_global_init(CURL_GLOBAL_ALL);
  RegistryOptions options;
  LocalRegistry reg(options);
  reg.push_image("bench/app", "latest", "bench");
  const std::string url = reg.url() + "/v2/bench/app/manifests/latest";
  std::printf("registry %s, %d HEADs per mode over %d connections, %d rounds\n", reg.host().c_str(), total, conns, rounds);
  struct Mode {
    const char* name;
    Outcome (*run)(const std::string&, int, int);
    std::vector<double> per_request;
    bool counts_itself = false;  // wrk runs for a time, not a number of requests
  };
  std::vector<Mode> modes = {{"basewatch (net::HttplibClient, a thread per connection)", run_basewatch, {}},
                             {"libcurl easy (a thread per connection)", run_curl_easy, {}},
                             {"libcurl multi (one thread, epoll)", run_curl_multi, {}},
                             {"wrk -t2 (GET; bench_scale's measure of capacity)", run_wrk, {}, true}};
  for (int r = 0; r < rounds; ++r) {
    for (auto& mode : modes) {
      Outcome o = mode.run(url, total, conns);
      if (mode.counts_itself ? o.ok <= 0 : o.ok != total) {
        std::fprintf(stderr, "bench_http_client: %s: %d of %d answers had a digest\n", mode.name, o.ok, total);
        return 1;
      }
      int requests = mode.counts_itself ? o.ok : total;
      double us = o.cpu / requests * 1e6;
      mode.per_request.push_back(us);
      std::printf("round %d  %-58s %6.0f req/s  CPU %6.1f us per request\n", r + 1, mode.name, requests / o.wall, us);
      std::fflush(stdout);
    }
  }
  const auto& base = modes[0].per_request;
  for (size_t i = 1; i < modes.size(); ++i) {
    std::printf("%s / basewatch, CPU per request:", modes[i].name);
    for (int r = 0; r < rounds; ++r) std::printf(" %.2f", modes[i].per_request[r] / base[r]);
    std::printf("\n");
  }
  curl_global_cleanup();
  return 0;
}
