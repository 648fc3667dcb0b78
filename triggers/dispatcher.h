// The outbox dispatcher. dispatch_once(now) is the step function: it sends
// the due deliveries (bounded concurrency), records each attempt, and sets
// the next attempt with capped exponential backoff and jitter, or marks the
// delivery dead when attempts run out or the trigger says retrying cannot
// help. A delivery keeps its id (the receiver's idempotency key) across
// retries and restarts.
//
// Builds (triggers with is_build(), i.e. `command`) run on their own threads,
// at most `build_limit` at a time across all triggers, so a 30-minute build
// never holds up a webhook; dispatch_once starts them and returns. Their
// attempts are recorded when they end. A build that is still running when
// basewatch is killed leaves its delivery pending: it runs again after the
// restart (at least once, never lost).
#pragma once

#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "config/config.h"
#include "db/store.h"
#include "triggers/trigger.h"
#include "util/time.h"

namespace bw::triggers {

struct DispatchStats {
  int attempted = 0;
  int delivered = 0;
  int failed = 0;
  int dead = 0;
  int builds_started = 0;  // builds handed to their threads by this call
  DispatchStats& operator+=(const DispatchStats& o);
};

struct RetryPolicy {
  int max_attempts = 10;
  Millis initial{5000};
  Millis max{3'600'000};
  double jitter = 0.2;  // +-20%
};

// The wait before attempt number `attempts + 1` after `attempts` failures.
Millis retry_delay(const RetryPolicy& policy, int attempts, double unit_random);

class Dispatcher {
 public:
  Dispatcher(db::Store& store, const ClockSource& clock, int concurrency = 4, int build_limit = 2);
  // Waits for running builds to end (they are recorded).
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Replaces the triggers (on reload). Deliveries naming a trigger that no
  // longer exists fail with that error and are retried (it may come back).
  void set_triggers(std::map<std::string, std::unique_ptr<Trigger>> triggers, RetryPolicy policy);
  // Sends what is due at `now`; returns the attempts it made, plus those of
  // builds that ended since the last call.
  DispatchStats dispatch_once(TimePoint now);
  // Waits for every running build; returns what the builds that ended did
  // (and were not yet reported by dispatch_once).
  DispatchStats wait_builds();
  int running_builds() const;
  // For the serve loop, which calls dispatch_once again at once while
  // anything is due: when a call finds due deliveries but can start none
  // (their builds are running, or every build slot is taken), it waits up to
  // `wait` (or until a build ends) before returning, instead of letting the
  // loop spin. 0 (the default, for step-by-step tests): no wait.
  void set_idle_wait(Millis wait) { m_idle_wait = wait; }
  // The gate of the cluster's leader (cluster/leadership.h, acting()),
  // asked before every send and every build: while it is closed nothing is
  // sent or started, and nothing recorded (the deliveries stay due for the
  // leader). Unset, it is always open. Set it before dispatching starts.
  void set_gate(std::function<bool()> open) { m_gate = std::move(open); }

 private:
  struct Build {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  // Sends one delivery and records the attempt; adds to `stats` under `m`.
  void attempt(const db::Delivery& d, const std::shared_ptr<Trigger>& trigger, const RetryPolicy& policy,
               DispatchStats& stats, std::mutex& m);
  void reap_builds(bool all);

  db::Store& m_store;
  const ClockSource& m_clock;
  int m_concurrency;
  int m_build_limit;
  std::mutex m_mutex;
  std::map<std::string, std::shared_ptr<Trigger>> m_triggers;
  RetryPolicy m_policy;

  Millis m_idle_wait{0};
  std::function<bool()> m_gate;
  mutable std::mutex m_build_mutex;
  std::condition_variable m_build_ended;
  uint64_t m_builds_ended = 0;
  std::set<std::string> m_running;  // delivery ids of builds in flight
  std::list<Build> m_builds;
  DispatchStats m_build_stats;  // of ended builds, not yet reported
};

}  // namespace bw::triggers
