// The outbox dispatcher. dispatch_once(now) is the step function: it sends
// the due deliveries (bounded concurrency), records each attempt, and sets
// the next attempt with capped exponential backoff and jitter, or marks the
// delivery dead when attempts run out. A delivery keeps its id (the
// receiver's idempotency key) across retries and restarts.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

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
  Dispatcher(db::Store& store, const ClockSource& clock, int concurrency = 4);
  // Replaces the triggers (on reload). Deliveries naming a trigger that no
  // longer exists fail with that error and are retried (it may come back).
  void set_triggers(std::map<std::string, std::unique_ptr<Trigger>> triggers, RetryPolicy policy);
  DispatchStats dispatch_once(TimePoint now);

 private:
  db::Store& m_store;
  const ClockSource& m_clock;
  int m_concurrency;
  std::mutex m_mutex;
  std::map<std::string, std::shared_ptr<Trigger>> m_triggers;
  RetryPolicy m_policy;
};

}  // namespace bw::triggers
