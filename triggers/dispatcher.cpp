#include "triggers/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <vector>

#include "util/metrics.h"

namespace bw::triggers {

DispatchStats& DispatchStats::operator+=(const DispatchStats& o) {
  attempted += o.attempted;
  delivered += o.delivered;
  failed += o.failed;
  dead += o.dead;
  builds_started += o.builds_started;
  return *this;
}

Millis retry_delay(const RetryPolicy& policy, int attempts, double unit_random) {
  double ms = static_cast<double>(policy.initial.count());
  for (int i = 1; i < attempts && ms < static_cast<double>(policy.max.count()); ++i) ms *= 2;
  ms = std::min(ms, static_cast<double>(policy.max.count()));
  double factor = 1.0 + policy.jitter * (2.0 * unit_random - 1.0);
  return Millis(static_cast<int64_t>(ms * factor));
}

Dispatcher::Dispatcher(db::Store& store, const ClockSource& clock, int concurrency, int build_limit)
    : m_store(store), m_clock(clock), m_concurrency(std::max(1, concurrency)), m_build_limit(std::max(1, build_limit)) {}

Dispatcher::~Dispatcher() {
  int n = running_builds();
  if (n > 0) spdlog::info("waiting for {} running build(s) to end", n);
  reap_builds(true);
}

void Dispatcher::set_triggers(std::map<std::string, std::unique_ptr<Trigger>> triggers, RetryPolicy policy) {
  std::lock_guard lock(m_mutex);
  m_triggers.clear();
  for (auto& [name, t] : triggers) m_triggers[name] = std::move(t);
  m_policy = policy;
}

int Dispatcher::running_builds() const {
  std::lock_guard lock(m_build_mutex);
  return static_cast<int>(m_running.size());
}

void Dispatcher::reap_builds(bool all) {
  std::list<Build> ended;
  {
    std::lock_guard lock(m_build_mutex);
    for (auto it = m_builds.begin(); it != m_builds.end();) {
      if (all || it->done->load()) {
        ended.push_back(std::move(*it));
        it = m_builds.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& b : ended) b.thread.join();
}

DispatchStats Dispatcher::wait_builds() {
  reap_builds(true);
  std::lock_guard lock(m_build_mutex);
  DispatchStats s = m_build_stats;
  m_build_stats = {};
  return s;
}

void Dispatcher::attempt(const db::Delivery& d, const std::shared_ptr<Trigger>& trigger, const RetryPolicy& policy,
                         DispatchStats& stats, std::mutex& m) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  // Asked right before the send: a leader that lost its lease mid-batch
  // (it was stopped, its database went away) sends no more.
  if (m_gate && !m_gate()) return;
  auto started = std::chrono::steady_clock::now();
  Outcome out;
  if (!trigger) out.error = "trigger \"" + d.trigger + "\" is not configured";
  else out = trigger->deliver(d);
  auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  TimePoint at = m_clock.now();
  db::Attempt a{d.id, to_unix_ms(at), out.status, out.error, took.count(), out.output_tail, out.pushed_digest};
  int attempts = d.attempts + 1;
  db::DeliveryState state;
  int64_t next_at = 0;
  if (out.delivered) {
    state = db::DeliveryState::delivered;
  } else if (attempts >= policy.max_attempts || !out.retryable) {
    state = db::DeliveryState::dead;
  } else {
    state = db::DeliveryState::failed;
    std::uniform_real_distribution<double> u(0, 1);
    next_at = to_unix_ms(at + retry_delay(policy, attempts, u(rng)));
  }
  auto st = m_store.record_attempt(a, state, next_at);
  const char* outcome = state == db::DeliveryState::delivered ? "delivered" : state == db::DeliveryState::dead ? "dead" : "failed";
  Metrics::global().counter_add("basewatch_deliveries_attempted_total", "Delivery attempts by trigger type and outcome.",
                                {{"trigger_type", trigger ? trigger->type() : "none"}, {"outcome", outcome}});
  if (!st) {
    // Not recorded (the database is gone, or this instance lost the lease
    // and the write was fenced): the delivery stays due as it was and goes
    // out again under the same id.
    spdlog::error("outbox: recording attempt of {}: {}", d.id, st.error().message);
    spdlog::warn("delivery {} ({}) answered {} but its attempt is not recorded: it stays due and is sent again under its id", d.id,
                 d.trigger, out.delivered ? std::to_string(out.status) : out.error);
    return;
  }
  std::lock_guard lock(m);
  ++stats.attempted;
  if (state == db::DeliveryState::delivered) {
    ++stats.delivered;
    spdlog::info("delivery {} ({} for {}) delivered: {} in {}ms", d.id, d.trigger, d.project.empty() ? "-" : d.project,
                 out.status, took.count());
  } else if (state == db::DeliveryState::dead) {
    ++stats.dead;
    spdlog::error("delivery {} ({}) dead after {} attempt(s): {}", d.id, d.trigger, attempts, out.error);
  } else {
    ++stats.failed;
    spdlog::warn("delivery {} ({}) attempt {} failed: {}; next at {}", d.id, d.trigger, attempts, out.error,
                 format_rfc3339(from_unix_ms(next_at)));
  }
}

DispatchStats Dispatcher::dispatch_once(TimePoint now) {
  DispatchStats stats;
  reap_builds(false);
  {
    std::lock_guard lock(m_build_mutex);
    stats += m_build_stats;
    m_build_stats = {};
  }
  if (m_gate && !m_gate()) return stats;
  auto due = m_store.due_deliveries(to_unix_ms(now), m_concurrency * 8 + 64);
  if (!due) {
    spdlog::error("outbox: {}", due.error().message);
    return stats;
  }
  if (due->empty()) return stats;
  std::map<std::string, std::shared_ptr<Trigger>> triggers;
  RetryPolicy policy;
  {
    std::lock_guard lock(m_mutex);
    triggers = m_triggers;
    policy = m_policy;
  }
  auto trigger_of = [&](const db::Delivery& d) -> std::shared_ptr<Trigger> {
    auto it = triggers.find(d.trigger);
    return it == triggers.end() ? nullptr : it->second;
  };

  std::vector<db::Delivery> list;
  int waiting = 0;  // due builds that could not start
  uint64_t ended_before = 0;
  {
    std::lock_guard lock(m_build_mutex);
    ended_before = m_builds_ended;
  }
  for (auto& d : *due) {
    auto t = trigger_of(d);
    if (!t || !t->is_build()) {
      list.push_back(std::move(d));
      continue;
    }
    if (m_gate && !m_gate()) break;
    std::lock_guard lock(m_build_mutex);
    // Running already, or no slot free: it stays due for a later call.
    if (m_running.count(d.id) || static_cast<int>(m_running.size()) >= m_build_limit) {
      ++waiting;
      continue;
    }
    // `due` may be stale: a build of this delivery can have ended (recorded,
    // then left m_running) since it was read. Read it again under the lock.
    auto fresh = m_store.get_delivery(d.id);
    if (!fresh || !*fresh || (*fresh)->attempts != d.attempts ||
        ((*fresh)->state != db::DeliveryState::pending && (*fresh)->state != db::DeliveryState::failed)) {
      continue;
    }
    m_running.insert(d.id);
    ++stats.builds_started;
    auto done = std::make_shared<std::atomic<bool>>(false);
    m_builds.push_back(Build{std::thread([this, d, t, policy, done] {
                                 DispatchStats s;
                                 std::mutex m;
                                 attempt(d, t, policy, s, m);
                                 std::lock_guard build_lock(m_build_mutex);
                                 m_build_stats += s;
                                 m_running.erase(d.id);
                                 ++m_builds_ended;
                                 done->store(true);
                                 m_build_ended.notify_all();
                               }),
                             done});
  }

  std::atomic<size_t> next{0};
  std::mutex stats_mutex;
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < list.size();) attempt(list[i], trigger_of(list[i]), policy, stats, stats_mutex);
  };
  size_t n = std::min(list.size(), static_cast<size_t>(m_concurrency));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n; ++t) threads.emplace_back(worker);
  if (n > 0) worker();
  for (auto& t : threads) t.join();
  if (list.empty() && stats.builds_started == 0 && waiting > 0 && m_idle_wait.count() > 0) {
    std::unique_lock lock(m_build_mutex);
    m_build_ended.wait_for(lock, m_idle_wait, [&] { return m_builds_ended != ended_before; });
  }
  return stats;
}

}  // namespace bw::triggers
