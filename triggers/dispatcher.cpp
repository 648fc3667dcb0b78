#include "triggers/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

namespace bw::triggers {

Millis retry_delay(const RetryPolicy& policy, int attempts, double unit_random) {
  double ms = static_cast<double>(policy.initial.count());
  for (int i = 1; i < attempts && ms < static_cast<double>(policy.max.count()); ++i) ms *= 2;
  ms = std::min(ms, static_cast<double>(policy.max.count()));
  double factor = 1.0 + policy.jitter * (2.0 * unit_random - 1.0);
  return Millis(static_cast<int64_t>(ms * factor));
}

Dispatcher::Dispatcher(db::Store& store, const ClockSource& clock, int concurrency)
    : m_store(store), m_clock(clock), m_concurrency(std::max(1, concurrency)) {}

void Dispatcher::set_triggers(std::map<std::string, std::unique_ptr<Trigger>> triggers, RetryPolicy policy) {
  std::lock_guard lock(m_mutex);
  m_triggers.clear();
  for (auto& [name, t] : triggers) m_triggers[name] = std::move(t);
  m_policy = policy;
}

DispatchStats Dispatcher::dispatch_once(TimePoint now) {
  DispatchStats stats;
  auto due = m_store.due_deliveries(to_unix_ms(now), m_concurrency * 8);
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
  std::vector<db::Delivery>& list = *due;
  std::atomic<size_t> next{0};
  std::mutex stats_mutex;
  auto worker = [&] {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    for (size_t i; (i = next.fetch_add(1)) < list.size();) {
      const db::Delivery& d = list[i];
      auto started = std::chrono::steady_clock::now();
      Outcome out;
      auto it = triggers.find(d.trigger);
      if (it == triggers.end() || !it->second) out.error = "trigger \"" + d.trigger + "\" is not configured";
      else out = it->second->deliver(d);
      auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
      TimePoint at = m_clock.now();
      db::Attempt a{d.id, to_unix_ms(at), out.status, out.error, took.count(), out.output_tail};
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
      if (!st) spdlog::error("outbox: recording attempt of {}: {}", d.id, st.error().message);
      std::lock_guard lock(stats_mutex);
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
  };
  size_t n = std::min(list.size(), static_cast<size_t>(m_concurrency));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  return stats;
}

}  // namespace bw::triggers
