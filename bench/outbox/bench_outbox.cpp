// Outbox benchmark (run by hand; see README.md).
//
// 1. Backlog: N pending deliveries (default 10,000, as after a long CI outage)
//    in a real SQLite database, sent by the real Dispatcher through the real
//    HttplibClient to a local HTTP receiver: time and throughput.
// 2. Latency: an idle dispatcher, a tag that moves on a fake registry, and
//    the real Watcher::poll_once (which writes the event and the delivery in
//    one transaction); the time from the start of the poll that detects the
//    change to the receiver seeing the first attempt, over R rounds. The
//    serve loop is reproduced as app/service.cpp runs it: a dispatcher thread
//    that sleeps until the next due delivery or 1 s, woken by the poller when
//    poll_once reports a change. Run with `--no-wake` to see what the wake-up
//    is worth (the dispatcher then finds the delivery on its 1 s tick).
//
// `--nodelay` sends through a client with TCP_NODELAY (see NoDelayClient).
//
//   bench_outbox [--deliveries N] [--rounds R] [--no-wake] [--nodelay]
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/waker.h"
#include "db/store.h"
#include "net/http.h"
#include "registry/client.h"
#include "tests/unit/fake_registry.h"
#include "triggers/dispatcher.h"
#include "triggers/trigger.h"
#include "util/ids.h"
#include "watcher/watcher.h"

using namespace bw;
using steady = std::chrono::steady_clock;

namespace {


// Records when each delivery id first arrived.
struct Receiver {
  httplib::Server server;
  int port = 0;
  std::thread thread;
  std::mutex mutex;
  std::map<std::string, steady::time_point> first;
  std::atomic<size_t> requests{0};

  Receiver() {
    server.set_tcp_nodelay(true);  // a CI's receiver would answer at once
    server.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      auto now = steady::now();
      ++requests;
      std::lock_guard lock(mutex);
      first.emplace(req.get_header_value("X-Basewatch-Delivery"), now);
      res.status = 204;
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Receiver() {
    server.stop();
    thread.join();
  }
  size_t count() {
    std::lock_guard lock(mutex);
    return first.size();
  }
  std::optional<steady::time_point> arrived(const std::string& id) {
    std::lock_guard lock(mutex);
    auto it = first.find(id);
    if (it == first.end()) return std::nullopt;
    return it->second;
  }
};

// For --nodelay: the same keep-alive client as net::HttplibClient's pool,
// with TCP_NODELAY set (cpp-httplib writes headers and body separately, so
// without it Nagle's algorithm and the peer's delayed ACK hold every POST
// body ~40 ms). One client per thread; POST only, which is all webhooks need.
class NoDelayClient final : public net::HttpClient {
 public:
  Result<net::Response> send(const net::Request& req) override {
    auto url = net::parse_url(req.url);
    if (!url) return url.error();
    thread_local std::map<std::string, std::unique_ptr<httplib::Client>> clients;
    auto& c = clients[url->origin()];
    if (!c) {
      c = std::make_unique<httplib::Client>(url->origin());
      c->set_keep_alive(true);
      c->set_tcp_nodelay(true);
    }
    httplib::Headers h;
    std::string type = "application/json";
    for (const auto& [k, v] : req.headers) {
      if (k == "Content-Type") type = v;
      else h.emplace(k, v);
    }
    auto res = c->Post(url->target, h, req.body, type);
    if (!res) return make_error(ErrorKind::network, httplib::to_string(res.error()));
    net::Response out;
    out.status = res->status;
    out.body = res->body;
    return out;
  }
};

double ms(steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

// The serve loop's dispatcher thread.
std::thread dispatcher_loop(triggers::Dispatcher& dispatcher, db::Store& store, const ClockSource& clock, Waker& waker) {
  return std::thread([&] {
    while (!waker.stopped()) {
      dispatcher.dispatch_once(clock.now());
      TimePoint now = clock.now();
      auto until = steady::now() + std::chrono::seconds(1);
      if (auto next = store.next_due(); next && *next) {
        auto delta = std::chrono::duration_cast<steady::duration>(from_unix_ms(**next) - now);
        until = std::min(until, steady::now() + std::max(delta, steady::duration::zero()));
      }
      if (!waker.wait_until(until)) break;
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  int n = 10'000, rounds = 200;
  bool wake = true, nodelay = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--deliveries" && i + 1 < argc) n = std::stoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::stoi(argv[++i]);
    else if (a == "--no-wake") wake = false;
    else if (a == "--nodelay") nodelay = true;
    else {
      std::fprintf(stderr, "usage: bench_outbox [--deliveries N] [--rounds R] [--no-wake] [--nodelay]\n");
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  auto dir = std::filesystem::temp_directory_path() / ("bench-outbox-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto store = std::move(db::Store::open((dir / "basewatch.db").string()).value());
  RealClock clock;
  net::HttplibClient httplib_client;
  NoDelayClient nodelay_client;
  net::HttpClient& http = nodelay ? static_cast<net::HttpClient&>(nodelay_client) : httplib_client;
  Receiver receiver;
  std::string url = "http://127.0.0.1:" + std::to_string(receiver.port) + "/hook";

  triggers::Dispatcher dispatcher(*store, clock, 4);
  config::TriggerConfig hook;
  hook.name = "ci";
  hook.type = "webhook";
  hook.url = url;
  hook.secret = "bench-secret";
  {
    std::map<std::string, std::unique_ptr<triggers::Trigger>> ts;
    ts["ci"] = std::make_unique<triggers::WebhookTrigger>(hook, http);
    dispatcher.set_triggers(std::move(ts), triggers::RetryPolicy{});
  }

  // 1. Backlog.
  {
    std::string payload(600, 'x');  // about the size of a one-change body
    auto t0 = steady::now();
    auto st = store->transaction([&]() -> Status {
      for (int i = 0; i < n; ++i) {
        db::Delivery d;
        d.id = new_delivery_id(clock.now());
        d.trigger = "ci";
        d.project = "p" + std::to_string(i % 50);
        d.created_at = d.next_attempt_at = to_unix_ms(clock.now());
        d.payload = "{\"delivery_id\":\"" + d.id + "\",\"pad\":\"" + payload + "\"}";
        BW_TRY(auto a, store->add_delivery(d));
        (void)a;
      }
      return ok_status();
    });
    if (!st) {
      std::fprintf(stderr, "queueing: %s\n", st.error().message.c_str());
      return 1;
    }
    auto queued = steady::now();
    Waker waker;
    auto loop = dispatcher_loop(dispatcher, *store, clock, waker);
    waker.wake();
    while (receiver.count() < static_cast<size_t>(n)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto done = steady::now();
    waker.stop();
    loop.join();
    auto counts = store->delivery_counts().value();
    std::printf("%s\n", nodelay ? "client: keep-alive, TCP_NODELAY" : "client: net::HttplibClient (keep-alive)");
    std::printf("backlog: %d deliveries queued in %.0f ms (one transaction); all delivered in %.0f ms = %.0f deliveries/s; "
                "receiver saw %zu requests; delivered in db: %lld\n",
                n, ms(queued - t0), ms(done - queued), n / (ms(done - queued) / 1000.0), receiver.requests.load(),
                static_cast<long long>(counts["delivered"]));
  }

  // 2. Latency from a detected change to the first attempt, dispatcher idle.
  {
    testing::FakeRegistry fake;
    net::FakeHttpClient reg_http([&](const net::Request& r) { return fake.handle(r); });
    registry::Client client(reg_http, clock, {});
    config::Config cfg;
    cfg.poll_settle = Millis(0);
    cfg.poll_jitter = 0;
    auto model = std::make_shared<watcher::Model>();
    watcher::Project p;
    p.name = "web";
    p.dockerfile = "/srv/web/Dockerfile";
    p.platforms = {"linux/amd64"};
    p.triggers = {"ci"};
    const std::string ref = "registry.example.com/team/base:1";
    p.bases.push_back(watcher::BaseUse{ref, "", "", "runtime", "from", 1, "0"});
    model->projects = {p};
    auto& item = model->items[ref];
    item.ref = *oci::parse_reference(ref);
    item.interval = Millis(3'600'000);
    item.projects.insert("web");
    item.platforms = {*oci::parse_platform("linux/amd64")};
    model->graph = std::make_shared<dockerfile::Graph>(
        dockerfile::Graph::build({dockerfile::ProjectInput{"web", "", {ref}}}).value());
    watcher::Watcher w(cfg, model, *store, client, clock);
    fake.put_manifest("team/base", "1", "v0");
    w.poll_once(clock.now(), true);  // baseline

    Waker waker;
    auto loop = dispatcher_loop(dispatcher, *store, clock, waker);
    std::vector<double> from_poll, from_commit;
    for (int r = 1; r <= rounds; ++r) {
      fake.put_manifest("team/base", "1", "v" + std::to_string(r));
      // Let the dispatcher settle into its idle sleep.
      std::this_thread::sleep_for(std::chrono::milliseconds(wake ? 20 : 50));
      auto t0 = steady::now();
      auto stats = w.poll_once(clock.now(), true);
      auto t1 = steady::now();
      if (stats.changed > 0 && wake) waker.wake();  // what service.cpp's poller does
      if (stats.reports.empty() || stats.reports[0].deliveries.size() != 1) {
        std::fprintf(stderr, "round %d: no delivery queued\n", r);
        return 1;
      }
      std::string id = stats.reports[0].deliveries[0];
      std::optional<steady::time_point> at;
      while (!(at = receiver.arrived(id))) std::this_thread::sleep_for(std::chrono::microseconds(200));
      from_poll.push_back(ms(*at - t0));
      from_commit.push_back(ms(*at - t1));
    }
    waker.stop();
    loop.join();
    std::printf("latency (%d rounds, dispatcher idle, %s): detected change -> first attempt at the receiver: "
                "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms; from the committed transaction: p50 %.2f ms, p99 %.2f ms\n",
                rounds, wake ? "woken by the poller as service.cpp does" : "no wake-up, 1 s tick only",
                percentile(from_poll, 50), percentile(from_poll, 90), percentile(from_poll, 99),
                percentile(from_poll, 100), percentile(from_commit, 50), percentile(from_commit, 99));
  }
  std::filesystem::remove_all(dir);
  return 0;
}
