// Who leads: the gate every leader loop (poll, dispatch, copy) asks before
// each step and before each outside effect, and the way requests reach the
// leader.
//
// Alone on its database (SQLite), an instance leads from its start (Solo):
// the gate is always open and requests go straight to its own loops. With
// PostgreSQL, several instances share the database and the cluster's lease
// (db/cluster.h) decides (LeaseKeeper): the one holding it acts, the others
// answer the API, the dashboard and inbound hooks and pass requests to the
// leader through the database.
//
// The keeper's promises, with L = ha.lease:
//   - It renews the lease every L/3. A renewal that starts at t (this
//     process's clock) lets it act until t + 4L/5: the lease, renewed at
//     or after t by the server's clock, runs out no sooner than t + L. So a
//     leader that cannot renew (its database is gone, it was stopped) has
//     stopped acting before any other instance may take over.
//   - acting() is a comparison with that deadline on CLOCK_BOOTTIME (which
//     goes on while the process is stopped or the machine sleeps): a
//     leader resumed after SIGSTOP finds its gate closed without waiting
//     for its keeper thread.
//   - A follower reads when the lease runs out and claims it then: a dead
//     or hung leader is replaced at most L after its last renewal.
//   - What a leader writes goes through a fenced store (Store::set_fence,
//     set by the taking hook to the new epoch): a write racing a takeover
//     is refused, so a resumed old leader changes nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "db/cluster.h"
#include "util/result.h"
#include "util/shared_read.h"
#include "util/time.h"

namespace bw::cluster {

// Milliseconds on a clock that counts time the process was stopped and
// the machine suspended: what lease deadlines are measured on.
class Ticks {
 public:
  virtual ~Ticks() = default;
  virtual Millis now() const = 0;
};

// CLOCK_BOOTTIME.
class BootTicks final : public Ticks {
 public:
  Millis now() const override;
};

// This process as the cluster lists it: id "<host>-<pid>-<6 hex>" (the
// random part tells apart a restarted process that got the same pid, as
// in a container where every process is pid 1).
db::Instance this_instance(const std::string& version, TimePoint started_at);

// The lease's timing, all from L = ha.lease (pure; see the header comment).
struct Timing {
  Millis lease;
  Millis renew_every() const;   // L/3
  Millis act_for() const;       // 4L/5 after the start of a renewal
  Millis retry_after() const;   // after a failed step: L/10, within [50ms, 1s]
  Millis forget_after() const;  // instances unheard of for 3L (at least 1 min) leave the list
  Millis idle_limit() const;    // a fenced transaction idle this long is ended by the server: L/2 (at least 200ms)
  Millis link_timeouts() const; // the keeper's calls wait at most L/2 (at least 200ms) for the server
  // When a follower steps again after seeing another instance hold a
  // lease with `expires_in` ms left: just after it runs out, and at least
  // every L/3 (the heartbeat).
  Millis follow_delay(int64_t expires_in) const;
};

// What /v1/status `cluster` shows.
struct View {
  std::string instance;      // this one's id
  std::string leader;        // the holder of a lease that has not run out; "" when none
  int64_t leader_since = 0;  // unix ms
  std::vector<db::Instance> instances;
  Millis lease{0};           // ha.lease; 0 when alone (SQLite)
};

// What the service does when leadership changes and requests arrive. All
// run on the keeper's thread (Solo: on the caller's).
struct Hooks {
  // This instance took the lease (or regained it after a lapse) with
  // `epoch`; runs before acting() turns true: fence the leader's store,
  // read the schedule and budgets the previous leader left.
  std::function<void(int64_t epoch)> taking;
  // acting() just turned true: wake the loops.
  std::function<void()> acting;
  // This instance stopped acting (lost the lease, or could not renew it in
  // time). The loops stop at their next gate check by themselves.
  std::function<void(const std::string& why)> stopped;
  // On the leader: a request (db::Ask) or a nudge (kind = the topic, ref
  // and source empty) for its loops.
  std::function<void(const db::Ask&)> ask;
};

class Leadership {
 public:
  virtual ~Leadership() = default;
  Leadership(const Leadership&) = delete;
  Leadership& operator=(const Leadership&) = delete;

  // The gate. Thread-safe and cheap: ask before every step and every
  // outside effect (a registry request, a delivery, a copy).
  virtual bool acting() const = 0;
  // Several instances share the database (a lease decides); false alone.
  virtual bool shared() const = 0;
  virtual const db::Instance& self() const = 0;
  // Set before start() and before the API serves.
  void set_hooks(Hooks hooks);
  // A request for the leader, wherever it leads; kept until a leader takes
  // it. Errors: the database could not store it.
  virtual Status ask(const db::Ask& ask) = 0;
  // Wakes the leader's loop for `topic` ("outbox": deliveries were queued
  // or requeued); nothing is kept.
  virtual Status nudge(const std::string& topic) = 0;
  virtual View view() = 0;
  // Starts keeping the lease: a first step on the caller's thread (so the
  // instance knows whether it leads when it says it is ready), then its
  // own thread. stop() gives the lease up at once when held, so another
  // instance takes over without waiting it out: call it once the loops
  // have ended.
  virtual void start() = 0;
  virtual void stop() = 0;
  // This instance is stopping: it keeps a lease it holds (its last
  // attempts are still recorded under it) until stop(), but takes none.
  virtual void leaving() {}

 protected:
  Leadership() = default;
  Hooks m_hooks;
};

// Alone on its database: always acting, requests go to hooks.ask at once.
class Solo final : public Leadership {
 public:
  explicit Solo(db::Instance self) : m_self(std::move(self)) {}
  bool acting() const override { return true; }
  bool shared() const override { return false; }
  const db::Instance& self() const override { return m_self; }
  Status ask(const db::Ask& ask) override;
  Status nudge(const std::string& topic) override;
  View view() override;
  void start() override {}
  void stop() override {}

 private:
  db::Instance m_self;
};

// One of several instances on a PostgreSQL database. `keeper` is the
// keeper thread's link (claims, heartbeats, LISTEN); `api` serves ask,
// nudge and view from the API's threads. step() and notified() are the
// step functions tests drive without the thread.
class LeaseKeeper final : public Leadership {
 public:
  LeaseKeeper(db::Cluster& keeper, db::Cluster& api, db::Instance self, Millis lease, const Ticks& ticks);
  ~LeaseKeeper() override;

  bool acting() const override;
  bool shared() const override { return true; }
  const db::Instance& self() const override { return m_self; }
  Status ask(const db::Ask& ask) override;
  Status nudge(const std::string& topic) override;
  View view() override;
  void start() override;
  void stop() override;
  void leaving() override { m_leaving = true; }

  // One step: the heartbeat when due, then claim (renew, take, or see who
  // holds it), then, leading, take the requests. Returns how long until
  // the next step is due.
  Millis step();
  // A notification on the channel; true when the next step should come now
  // (the lease was released and this instance follows).
  bool notified(const std::string& topic);
  // The epoch held (0 when following).
  int64_t epoch() const { return m_epoch.load(); }
  const Timing& timing() const { return m_timing; }

 private:
  void take_asks();
  // Logs a failed call once per distinct message (and again when it clears).
  void trouble(const char* what, const Error& e);
  void run(Millis first);

  db::Cluster& m_keeper;
  db::Cluster& m_api;
  db::Instance m_self;
  Timing m_timing;
  const Ticks& m_ticks;

  std::atomic<int64_t> m_epoch{0};
  std::atomic<bool> m_leading{false};     // holds m_epoch (as of the last answer)
  std::atomic<bool> m_leaving{false};     // stopping: claims no lease
  std::atomic<int64_t> m_deadline{0};     // Ticks ms: acting until then
  bool m_announced = false;               // hooks.taking/acting ran for the current stretch of acting
  std::string m_leader_seen;              // the other holder last logged
  std::string m_trouble;                  // the last problem logged
  Millis m_next_heartbeat{0};

  // view() from many API threads at once: one reads the database, the
  // others arriving meanwhile share its answer (sixteen clients of
  // /v1/status queued on the api link's round trips: p99 1.3 s during a
  // 100,000-reference cycle, bench/scale).
  SharedRead<View> m_view;

  std::mutex m_stop_mutex;
  std::condition_variable m_stop_cv;
  bool m_stopping = false;
  bool m_stopped = false;
  std::thread m_thread;
};

}  // namespace bw::cluster
