#include "app/service.h"

#include <malloc.h>

#include <signal.h>
#include <systemd/sd-daemon.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/server.h"
#include "app/cli.h"
#include "app/logging.h"
#include "app/wiring.h"
#include "util/strings.h"
#include "util/waker.h"

namespace bw::app {

namespace {

// Set once, waited for with a deadline.
class Latch {
 public:
  void done() {
    std::lock_guard lock(m_mutex);
    m_done = true;
    m_cv.notify_all();
  }
  bool wait_until(std::chrono::steady_clock::time_point t) {
    std::unique_lock lock(m_mutex);
    return m_cv.wait_until(lock, t, [&] { return m_done; });
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_done = false;
};

// The leader's loops: each a step function on its own thread that runs
// only while this instance acts as the leader. The gate (Leadership::
// acting()) is asked before every step; while it is closed the loop waits
// to be woken (the leadership's acting hook wakes every loop) or checks
// again after k_follower_wait. A step returns when it is due again; its
// waker cuts the wait short (new work, the gate opening, stop).
//
// Adding a loop is one line, `loops.add("a mirror copy", copy_waker, step)`,
// plus the gate inside the step's own fan-out (set_gate) and the leader's
// store (Runtime::loop_store) for its writes: see ARCHITECTURE.md.
class LeaderLoops {
 public:
  using Step = std::function<std::chrono::steady_clock::time_point()>;
  explicit LeaderLoops(const cluster::Leadership& lead) : m_lead(lead) {}
  ~LeaderLoops() {
    stop();
    join();
  }
  LeaderLoops(const LeaderLoops&) = delete;
  LeaderLoops& operator=(const LeaderLoops&) = delete;

  // `what` names it while it is busy at a stop ("a registry poll").
  void add(std::string what, Waker& waker, Step step) {
    std::lock_guard lock(m_mutex);
    auto loop = std::make_unique<Loop>();
    loop->what = std::move(what);
    loop->waker = &waker;
    Loop* l = loop.get();
    loop->thread = std::thread([this, l, step = std::move(step)] {
      while (!l->waker->stopped()) {
        auto until = std::chrono::steady_clock::now() + k_follower_wait;
        if (m_lead.acting()) until = step();
        if (!l->waker->wait_until(until)) break;
      }
      l->ended = true;
    });
    m_loops.push_back(std::move(loop));
  }
  // From the leadership's acting hook (its own thread).
  void wake_all() {
    std::lock_guard lock(m_mutex);
    for (auto& l : m_loops) l->waker->wake();
  }
  void stop() {
    std::lock_guard lock(m_mutex);
    for (auto& l : m_loops) l->waker->stop();
  }
  // Joins every loop, in the order they were added (after stop()), without
  // holding the mutex: busy() is asked meanwhile.
  void join() {
    std::vector<Loop*> loops;
    {
      std::lock_guard lock(m_mutex);
      for (auto& l : m_loops) loops.push_back(l.get());
    }
    for (Loop* l : loops) {
      if (l->thread.joinable()) l->thread.join();
    }
  }
  // The first loop still in a step, "" when all ended.
  std::string busy() {
    std::lock_guard lock(m_mutex);
    for (const auto& l : m_loops) {
      if (!l->ended) return l->what;
    }
    return "";
  }

 private:
  static constexpr auto k_follower_wait = std::chrono::seconds(1);
  struct Loop {
    std::string what;
    Waker* waker = nullptr;
    std::thread thread;
    std::atomic<bool> ended{false};
  };
  const cluster::Leadership& m_lead;
  std::mutex m_mutex;  // m_loops
  std::vector<std::unique_ptr<Loop>> m_loops;
};

std::chrono::steady_clock::time_point steady_at(TimePoint when, TimePoint now) {
  auto delta = std::chrono::duration_cast<std::chrono::steady_clock::duration>(when - now);
  return std::chrono::steady_clock::now() + std::max(delta, std::chrono::steady_clock::duration::zero());
}

constexpr auto k_max_dispatch_sleep = std::chrono::seconds(1);  // notices deliveries queued by other processes (redeliver)
constexpr auto k_max_copy_sleep = std::chrono::seconds(1);      // notices copy jobs due after a backoff
constexpr auto k_rescan_every = std::chrono::seconds(2);        // how soon a Dockerfile edit is noticed
constexpr auto k_status_every = std::chrono::seconds(1);        // STATUS= refresh (sent only when it changed)
constexpr int k_default_stop_seconds = 20;                      // keep below the unit's TimeoutStopSec=
constexpr auto k_follower_resync = std::chrono::seconds(10);    // a follower reads the leader's schedule and budgets

// Seconds SIGTERM waits for in-flight deliveries and builds:
// $BASEWATCH_STOP_TIMEOUT, else k_default_stop_seconds.
std::chrono::seconds stop_deadline() {
  const char* v = std::getenv("BASEWATCH_STOP_TIMEOUT");
  if (v && *v) {
    char* end = nullptr;
    long n = std::strtol(v, &end, 10);
    if (end && *end == '\0' && n >= 0 && n <= 86400) return std::chrono::seconds(n);
    spdlog::warn("BASEWATCH_STOP_TIMEOUT={} is not a number of seconds; using {}", v, k_default_stop_seconds);
  }
  return std::chrono::seconds(k_default_stop_seconds);
}

uint64_t monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

void notify(const std::string& state) { sd_notify(0, state.c_str()); }

std::string plural(int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// Settings the running service cannot change without a restart; a reload
// that changes them says so. (registries: are applied by the reload.)
std::vector<std::string> restart_only_changes(const config::Config& a, const config::Config& b) {
  std::vector<std::string> out;
  if (a.database != b.database) out.push_back("database");
  if (a.listen != b.listen) out.push_back("listen");
  if (a.ha_lease != b.ha_lease) out.push_back("ha.lease");
  return out;
}

}  // namespace

std::string status_line(size_t references, TimePoint last_poll, int64_t pending, size_t errors, const std::string& role) {
  std::string s = "watching " + plural(static_cast<int64_t>(references), "reference", "references") + ", ";
  if (to_unix_ms(last_poll) <= 0) s += "not polled yet";
  else s += "last poll " + format_rfc3339(last_poll);
  s += ", " + plural(pending, "pending delivery", "pending deliveries");
  if (errors > 0) s += ", " + plural(static_cast<int64_t>(errors), "Dockerfile error", "Dockerfile errors");
  if (!role.empty()) s += "; " + role;
  return s;
}

int serve(const std::string& config_path) {
  // Signals go to the main thread only: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto loaded = load_watching_config(config_path);
  if (!loaded) {
    setup_logging("info", "text");
    spdlog::error("{}", loaded.error().message);
    notify("STATUS=" + loaded.error().message);  // what `systemctl status` shows
    return k_exit_usage;
  }
  // One copy of the config, shared by the watcher, the API and this loop.
  auto cfg = std::make_shared<const config::Config>(std::move(*loaded));
  setup_logging(cfg->log_level, cfg->log_format);
  spdlog::info("basewatch {} starting; {}", BASEWATCH_VERSION, config::describe(*cfg));
  notify("STATUS=starting: opening the database, scanning Dockerfiles");
  auto rt_result = make_runtime(cfg, /*cluster=*/true);
  if (!rt_result) {
    spdlog::error("{}", rt_result.error().message);
    notify("STATUS=" + rt_result.error().message);
    return rt_result.error().kind == ErrorKind::invalid ? k_exit_usage : k_exit_failure;
  }
  std::unique_ptr<Runtime> rt_owner = std::move(*rt_result);
  Runtime& rt = *rt_owner;
  for (const auto& e : rt.watcher->model()->errors) spdlog::error("{}", e);

  // The running config: replaced by SIGHUP (main thread), read by the poll
  // thread when a Dockerfile rescan rebuilds the model. The mutex also
  // keeps a reload and a rescan from swapping models at the same time.
  std::mutex reload_mutex;
  std::shared_ptr<const config::Config> running = cfg;

  Waker& poll_waker = rt.poll_waker;  // builds that pushed an image wake it too
  Waker dispatch_waker, copy_waker, housekeeping_waker;
  cluster::Leadership& lead = *rt.leadership;
  LeaderLoops loops(lead);

  // Registry budgets: only the leader sends registry requests, so it keeps
  // them in the database and the next leader starts from them (and a
  // follower shows them). Alone there is nobody to hand them to.
  std::mutex budgets_mutex;  // the keeper, the housekeeper and the closer use them
  std::string budgets_saved;
  auto restore_budgets = [&] {
    auto stored = rt.loop_store().get_meta(k_budgets_meta);
    if (stored && *stored) rt.registry->restore_budgets(registry::decode_budgets(**stored));
  };
  auto save_budgets = [&] {
    std::lock_guard lock(budgets_mutex);
    std::string now = registry::encode_budgets(rt.registry->budgets());
    if (now == budgets_saved) return;
    if (rt.loop_store().set_meta(k_budgets_meta, now)) budgets_saved = now;
  };

  // What this instance does when it takes the lease (it was a follower, or
  // its lease had lapsed), and with the requests that reach the leader.
  const cluster::Timing timing{cfg->ha_lease};
  cluster::Hooks hooks;
  hooks.taking = [&](int64_t epoch) {
    // Before the gate opens: every write of the loops checks this epoch, and
    // the schedule and budgets are the previous leader's.
    if (auto st = rt.loop_store().set_fence(db::Fence{epoch, timing.idle_limit()}); !st) {
      spdlog::error("cluster: fencing the leader's store: {}", st.error().message);
    }
    if (auto st = rt.watcher->resync(); !st) spdlog::warn("cluster: reading the schedule: {}", st.error().message);
    restore_budgets();
    std::lock_guard lock(budgets_mutex);
    budgets_saved.clear();
  };
  hooks.acting = [&] { loops.wake_all(); };
  hooks.ask = [&](const db::Ask& a) {
    if (a.kind == "check") {
      rt.watcher->request_check(a.ref, a.source);
      poll_waker.wake();
    } else if (a.kind == "outbox") {
      dispatch_waker.wake();

    } else {
      spdlog::debug("cluster: a request of kind \"{}\" is not for this basewatch; ignored", a.kind);
    }
  };
  lead.set_hooks(hooks);

  api::Deps deps;
  deps.store = rt.store.get();
  deps.watcher = rt.watcher.get();
  deps.registry = rt.registry.get();
  deps.clock = &rt.clock;
  deps.started_at = from_unix_ms(lead.self().started_at);  // the cluster's started_at and leader_since alike
  deps.leadership = &lead;
  api::Server server(deps, cfg);
  cfg.reset();  // from here `running` (and what it was shared with) holds it
  if (auto st = server.start(); !st) {
    spdlog::error("{}", st.error().message);
    notify("STATUS=" + st.error().message);
    return k_exit_failure;
  }
  server.set_ready(true);
  lead.start();

  // STATUS= from the main loop, sent only when the line changes.
  std::string last_status;
  auto refresh_status = [&](bool force) {
    auto model = rt.watcher->model();
    int64_t pending = 0;
    if (auto counts = rt.store->delivery_counts()) {
      for (const char* state : {"pending", "failed"}) {
        if (auto it = counts->find(state); it != counts->end()) pending += it->second;
      }
    }
    std::string role = !rt.shared() ? "" : lead.acting() ? "leading" : "following";
    std::string line = status_line(model->items.size(), rt.watcher->last_poll(), pending, model->errors.size(), role);
    if (line == last_status && !force) return;
    last_status = line;
    notify("STATUS=" + line);
  };
  // Database open, Dockerfiles scanned, listener up. Parsing the config's
  // YAML tree took about 1 KB per watched reference for a moment; give
  // those pages back instead of keeping them for the life of the service.
  malloc_trim(0);
  refresh_status(true);
  notify("READY=1");
  spdlog::info("ready: {}", last_status);

  // Rebuilds the model when Dockerfiles changed on disk; on the
  // housekeeping thread.
  std::string last_rescan_error;
  auto rescan = [&] {
    auto current = rt.watcher->model();
    std::string why = watcher::stale_reason(*current);
    if (why.empty()) return;
    std::lock_guard lock(reload_mutex);
    current = rt.watcher->model();  // a reload may have just swapped it
    auto model = watcher::build_model(*running, current.get());
    if (!model) {
      // Logged once per distinct problem, not every rescan.
      if (model.error().message != last_rescan_error) {
        spdlog::error("Dockerfiles changed ({}) but the new model is refused, keeping the running one: {}", why,
                      model.error().message);
      }
      last_rescan_error = model.error().message;
      return;
    }
    last_rescan_error.clear();
    for (const auto& e : model->errors) spdlog::error("{}", e);
    size_t items = model->items.size();
    rt.watcher->reload(running, std::make_shared<const watcher::Model>(std::move(*model)));
    spdlog::info("Dockerfiles changed ({}): rescanned, watching {}", why, plural(static_cast<int64_t>(items), "reference", "references"));
  };

  // The leader's loops. A step runs only while this instance leads.
  // Continuous scheduling: each poll step applies the results that arrived
  // and hands what is due to the watcher's workers, never waiting for a
  // request; a result wakes the loop at once.
  rt.watcher->on_result([&] { poll_waker.wake(); });
  loops.add("a registry poll", poll_waker, [&] {
    bool copies = false;
    auto stats = rt.watcher->step(rt.clock.now(), [&](watcher::CheckReport&& r) { copies = copies || r.copy_queued; });
    if (copies) copy_waker.wake();
    if (stats.changed > 0) dispatch_waker.wake();
    TimePoint now = rt.clock.now();
    return steady_at(rt.watcher->next_wake(now), now);
  });
  // Copies for mirrors: jobs the watcher wrote, retried with backoff;
  // deliveries they release go out at once.
  rt.syncer->on_release([&] { dispatch_waker.wake(); });
  loops.add("a mirror copy (its job stays pending; it resumes after the start)", copy_waker, [&] {
    rt.syncer->sync_once(rt.clock.now());
    TimePoint now = rt.clock.now();
    auto until = std::chrono::steady_clock::now() + k_max_copy_sleep;
    if (auto next = rt.syncer->next_due()) until = std::min(until, steady_at(*next, now));
    return until;
  });
  loops.add("deliveries", dispatch_waker, [&] {
    rt.dispatcher->dispatch_once(rt.clock.now());
    TimePoint now = rt.clock.now();
    auto until = std::chrono::steady_clock::now() + k_max_dispatch_sleep;
    if (auto next = rt.store->next_due(); next && *next) until = std::min(until, steady_at(from_unix_ms(**next), now));
    return until;
  });

  // Every instance: Dockerfile rescans; with several, the leader records
  // the registry budgets and a follower reads the leader's schedule and
  // budgets for its API.
  std::thread housekeeper([&] {
    auto next_resync = std::chrono::steady_clock::now() + k_follower_resync;
    while (housekeeping_waker.wait_until(std::chrono::steady_clock::now() + k_rescan_every)) {
      rescan();
      if (!rt.shared()) continue;
      if (lead.acting()) {
        save_budgets();
      } else if (std::chrono::steady_clock::now() >= next_resync) {
        (void)rt.watcher->resync();
        restore_budgets();
        next_resync = std::chrono::steady_clock::now() + k_follower_resync;
      }
    }
  });

  // The main loop: signals, the watchdog, STATUS=. WATCHDOG=1 comes from
  // here at half the interval systemd asks for, after a store query, so a
  // wedged database (or a wedged main thread) stops the pings.
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) <= 0) watchdog_usec = 0;
  auto tick = std::chrono::duration_cast<std::chrono::steady_clock::duration>(k_status_every);
  if (watchdog_usec > 0) tick = std::min(tick, std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::microseconds(watchdog_usec / 2)));
  if (watchdog_usec > 0) spdlog::info("watchdog: pinging every {}ms", std::chrono::duration_cast<Millis>(tick).count());

  auto next_tick = std::chrono::steady_clock::now();
  int stop_signal = 0;
  while (stop_signal == 0) {
    auto now = std::chrono::steady_clock::now();
    if (now >= next_tick) {
      refresh_status(false);
      if (watchdog_usec > 0) notify("WATCHDOG=1");
      next_tick = now + tick;
    }
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(next_tick - std::chrono::steady_clock::now());
    if (wait.count() < 0) wait = std::chrono::nanoseconds(0);
    timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000), static_cast<long>(wait.count() % 1'000'000'000)};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig < 0) continue;  // timeout (EAGAIN) or EINTR
    if (sig != SIGHUP) {
      stop_signal = sig;
      break;
    }
    notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()) + "\nSTATUS=reloading " + config_path);
    {
      std::lock_guard lock(reload_mutex);
      auto fresh_loaded = load_watching_config(config_path);
      auto fresh = fresh_loaded ? std::make_shared<const config::Config>(std::move(*fresh_loaded)) : nullptr;
      if (!fresh) {
        spdlog::error("reload refused, keeping the running config: {}", fresh_loaded.error().message);
      } else if (auto problems = config_problems(*fresh); !problems.empty()) {
        for (const auto& p : problems) spdlog::error("reload refused, keeping the running config: {}", p);
      } else if (auto model = watcher::build_model(*fresh, rt.watcher->model().get()); !model) {
        spdlog::error("reload refused, keeping the running config: {}", model.error().message);
      } else {
        for (const auto& field : restart_only_changes(*running, *fresh)) {
          spdlog::warn("reload: {} changed; it takes effect on restart (systemctl restart basewatch)", field);
        }
        for (const auto& e : model->errors) spdlog::error("{}", e);
        setup_logging(fresh->log_level, fresh->log_format);
        // Before the watcher's reload: its next poll uses the new settings.
        // Hosts only: the settings hold secrets.
        auto changed_hosts = rt.registry->update_settings(registry_settings(*fresh));
        if (!changed_hosts.empty()) spdlog::info("reload: registry settings changed for {}", join(changed_hosts, ", "));
        auto new_model = std::make_shared<const watcher::Model>(std::move(*model));
        rt.watcher->reload(fresh, new_model);
        // A fixed password or CA should not wait out the backoff of the
        // checks it failed: the references on those registries are due now.
        for (const auto& [key, item] : new_model->items) {
          if (std::find(changed_hosts.begin(), changed_hosts.end(), item.ref.registry) != changed_hosts.end()) {
            rt.watcher->request_check(key, "poll");
          }
        }
        rt.dispatcher->set_triggers(make_triggers(*fresh, rt), retry_policy(*fresh));
        rt.syncer->reload(fresh);
        server.reload(fresh);
        running = fresh;
        rt.cfg = fresh;
        spdlog::info("reloaded {}; {}", config_path, config::describe(*running));
        malloc_trim(0);  // the old config and model, and the YAML tree
        poll_waker.wake();
      }
    }
    refresh_status(true);
    notify("READY=1");
  }

  // Stop: no new polls or sends; what is in flight gets until the deadline.
  // A delivery whose attempt has not been recorded is still pending in the
  // outbox and goes out again after the restart (same id), so nothing is lost.
  auto deadline_span = stop_deadline();
  spdlog::info("{} received, stopping (in-flight deliveries get {}s)", stop_signal == SIGTERM ? "SIGTERM" : "SIGINT",
               deadline_span.count());
  notify("STOPPING=1\nSTATUS=stopping");
  lead.leaving();
  loops.stop();
  housekeeping_waker.stop();
  std::atomic<bool> loops_ended{false};
  std::atomic<int> builds_left{0};
  Latch closed;
  // Joins and closes on its own thread so the deadline also bounds the
  // teardown (a dispatcher waiting for a build to end).
  std::thread closer([&] {
    loops.join();
    loops_ended = true;
    housekeeper.join();
    server.stop();
    builds_left = rt_owner->dispatcher->running_builds();
    rt_owner->dispatcher.reset();  // waits for builds (their attempts are recorded)
    // Nothing of this instance acts any more: give the lease up, so another
    // instance takes over now instead of when it runs out.
    if (rt_owner->shared() && lead.acting()) save_budgets();
    lead.stop();
    rt_owner.reset();  // closes the database
    closed.done();
  });
  // A second SIGTERM/SIGINT (Ctrl-C twice) stops waiting at once.
  auto deadline = std::chrono::steady_clock::now() + deadline_span;
  bool ended = false, hurried = false;
  do {
    ended = closed.wait_until(std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
    timespec zero{0, 0};
    int again = ended ? -1 : sigtimedwait(&signals, nullptr, &zero);
    hurried = again == SIGTERM || again == SIGINT;
  } while (!ended && !hurried && std::chrono::steady_clock::now() < deadline);
  if (!ended) {
    // Still inside a registry request, a delivery or a build: leave it.
    // Every committed transaction is durable (SQLite WAL) and an attempt
    // not recorded leaves its delivery pending, so exiting now is what a
    // crash would do, which the store is built for; systemd ends the
    // builds' processes with the rest of the unit's cgroup.
    std::string busy = !loops_ended ? loops.busy() : plural(builds_left.load(), "build", "builds");
    if (busy.empty()) busy = plural(builds_left.load(), "build", "builds");
    if (hurried) {
      spdlog::warn("stopping: second signal, not waiting for {}; parked: unfinished deliveries stay pending in the outbox for "
                   "the next start",
                   busy);
    } else {
      spdlog::warn("stopping: {} still busy after {}s; parked: unfinished deliveries stay pending in the outbox for the next start",
                   busy, deadline_span.count());
    }
    spdlog::default_logger()->flush();
    std::_Exit(k_exit_ok);
  }
  closer.join();
  spdlog::info("stopped; database closed");
  return k_exit_ok;
}

}  // namespace bw::app
