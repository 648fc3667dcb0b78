#include "app/service.h"

#include <signal.h>
#include <systemd/sd-daemon.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "api/server.h"
#include "app/cli.h"
#include "app/logging.h"
#include "app/wiring.h"

namespace bw::app {

namespace {

// A sleep that another thread can cut short.
class Waker {
 public:
  void wake() {
    std::lock_guard lock(m_mutex);
    m_woken = true;
    m_cv.notify_all();
  }
  void stop() {
    std::lock_guard lock(m_mutex);
    m_stopped = true;
    m_cv.notify_all();
  }
  // Returns false once stopped.
  bool wait_until(std::chrono::steady_clock::time_point t) {
    std::unique_lock lock(m_mutex);
    m_cv.wait_until(lock, t, [&] { return m_woken || m_stopped; });
    m_woken = false;
    return !m_stopped;
  }
  bool stopped() {
    std::lock_guard lock(m_mutex);
    return m_stopped;
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_woken = false;
  bool m_stopped = false;
};

std::chrono::steady_clock::time_point steady_at(TimePoint when, TimePoint now) {
  auto delta = std::chrono::duration_cast<std::chrono::steady_clock::duration>(when - now);
  return std::chrono::steady_clock::now() + std::max(delta, std::chrono::steady_clock::duration::zero());
}

constexpr auto k_max_dispatch_sleep = std::chrono::seconds(1);  // notices deliveries queued by other processes (redeliver)
constexpr auto k_max_poll_sleep = std::chrono::seconds(5);      // notices Dockerfile edits and reloads

}  // namespace

int serve(const std::string& config_path) {
  // Signals go to the main thread only: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto cfg = config::load(config_path);
  if (!cfg) {
    setup_logging("info", "text");
    spdlog::error("{}", cfg.error().message);
    return k_exit_usage;
  }
  setup_logging(cfg->log_level, cfg->log_format);
  spdlog::info("basewatch {} starting; {}", BASEWATCH_VERSION, config::describe(*cfg));
  auto rt_result = make_runtime(*cfg);
  if (!rt_result) {
    spdlog::error("{}", rt_result.error().message);
    return rt_result.error().kind == ErrorKind::invalid ? k_exit_usage : k_exit_failure;
  }
  Runtime& rt = **rt_result;
  for (const auto& e : rt.watcher->model()->errors) spdlog::error("{}", e);

  Waker poll_waker, dispatch_waker;
  api::Deps deps;
  deps.store = rt.store.get();
  deps.watcher = rt.watcher.get();
  deps.registry = rt.registry.get();
  deps.clock = &rt.clock;
  deps.started_at = rt.clock.now();
  deps.wake_dispatcher = [&] { dispatch_waker.wake(); };
  deps.wake_poller = [&] { poll_waker.wake(); };
  api::Server server(deps, *cfg);
  if (auto st = server.start(); !st) {
    spdlog::error("{}", st.error().message);
    return k_exit_failure;
  }
  server.set_ready(true);
  sd_notify(0, "READY=1");

  std::thread poller([&] {
    while (!poll_waker.stopped()) {
      auto stats = rt.watcher->poll_once(rt.clock.now());
      if (stats.changed > 0) dispatch_waker.wake();
      TimePoint now = rt.clock.now();
      auto until = std::min(steady_at(rt.watcher->next_due(now), now), std::chrono::steady_clock::now() + k_max_poll_sleep);
      if (!poll_waker.wait_until(until)) break;
    }
  });
  std::thread dispatcher([&] {
    while (!dispatch_waker.stopped()) {
      rt.dispatcher->dispatch_once(rt.clock.now());
      TimePoint now = rt.clock.now();
      auto until = std::chrono::steady_clock::now() + k_max_dispatch_sleep;
      if (auto next = rt.store->next_due(); next && *next) until = std::min(until, steady_at(from_unix_ms(**next), now));
      if (!dispatch_waker.wait_until(until)) break;
    }
  });

  int exit_code = k_exit_ok;
  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      auto fresh = config::load(config_path);
      if (!fresh) {
        spdlog::error("reload refused, keeping the running config: {}", fresh.error().message);
      } else if (auto model = watcher::build_model(*fresh); !model) {
        spdlog::error("reload refused, keeping the running config: {}", model.error().message);
      } else {
        for (const auto& e : model->errors) spdlog::error("{}", e);
        rt.watcher->reload(*fresh, std::make_shared<const watcher::Model>(std::move(*model)));
        rt.dispatcher->set_triggers(make_triggers(*fresh, *rt.http), retry_policy(*fresh));
        server.reload(*fresh);
        spdlog::info("reloaded {}", config_path);
        poll_waker.wake();
      }
      sd_notify(0, "READY=1");
      continue;
    }
    spdlog::info("{} received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify(0, "STOPPING=1");
    break;
  }
  poll_waker.stop();
  dispatch_waker.stop();
  poller.join();
  dispatcher.join();
  server.stop();
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace bw::app
