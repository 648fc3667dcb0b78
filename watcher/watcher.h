// The scheduler and change detection. poll_once(now) is the step function:
// it resolves every due reference (bounded concurrency, one request per
// repo:tag however many projects use it), then applies the results one by
// one as the single writer: a baseline for first sight, an event for a moved
// digest, and, when a watched platform's digest moved, the deliveries it
// causes, all in one transaction.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <thread>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "db/store.h"
#include "registry/client.h"
#include "util/time.h"
#include "watcher/model.h"

namespace bw::watcher {

// What one check of one reference found; what `basewatch check` prints.
struct CheckReport {
  std::string ref;
  std::string outcome;  // baseline | unchanged | changed | recorded | stale-pin | error
  std::vector<std::string> already_built;  // projects not fired: their image is built on the new digest
  std::string old_digest, new_digest;
  std::map<std::string, std::pair<std::string, std::string>> platforms;  // moved watched platforms
  std::vector<std::string> deliveries;
  std::string error;
  std::string source;  // poll | webhook | manual
  // A mirrored reference: the mirror's state after this check, and whether
  // a copy job was queued ("" / false when no mirror covers it).
  std::string mirror_state;
  bool copy_queued = false;
};

struct PollStats {
  int checked = 0;
  int changed = 0;
  int errors = 0;
  int requests = 0;
  std::vector<CheckReport> reports;
};

class Watcher {
 public:
  // The config is shared, not copied: with thousands of `watch:` entries a
  // copy per part was most of the memory a watched reference cost.
  Watcher(std::shared_ptr<const config::Config> cfg, std::shared_ptr<const Model> model, db::Store& store,
          registry::Client& client, const ClockSource& clock);
  Watcher(const config::Config& cfg, std::shared_ptr<const Model> model, db::Store& store, registry::Client& client,
          const ClockSource& clock)
      : Watcher(std::make_shared<const config::Config>(cfg), std::move(model), store, client, clock) {}

  // Swaps in a new config and model (SIGHUP, Dockerfile edits); state in the
  // store is kept.
  void reload(std::shared_ptr<const config::Config> cfg, std::shared_ptr<const Model> model);
  void reload(const config::Config& cfg, std::shared_ptr<const Model> model) {
    reload(std::make_shared<const config::Config>(cfg), std::move(model));
  }
  std::shared_ptr<const Model> model() const;

  // Resolves the due references and applies the results, and returns when
  // all of them are applied (basewatch check, tests). With `all`, every
  // reference is due. `dry_run` records nothing and queues nothing.
  // With `sink`, each report goes there as soon as it is applied and is not
  // kept in PollStats::reports (serve keeps none; check prints as it goes),
  // so a cycle holds no per-reference state once a result is applied.
  using ReportSink = std::function<void(CheckReport&&)>;
  PollStats poll_once(TimePoint now, bool all = false, bool dry_run = false, const ReportSink& sink = nullptr);

  // The continuous step (serve): applies the results that have arrived,
  // hands the references due at `now` to the workers, and returns at once,
  // never waiting for a request. Each reference falls due on its own; a
  // slow request holds one worker and nothing else (a registry holds at
  // most its share of the workers while others have work). Call it again
  // at next_wake(), or when on_result() fires.
  PollStats step(TimePoint now, const ReportSink& sink = nullptr);
  // When step() has something to do: a result to apply, a reference due, a
  // batch of writes to commit.
  TimePoint next_wake(TimePoint now);
  // Called (on a worker thread) when a result arrives; serve wakes its loop.
  void on_result(std::function<void()> fn);

  // Makes `ref` (a tag ref; "" = all) due now; `source` marks the changes it
  // finds ("webhook" for inbound notifications). A reference being checked
  // right now is checked again once that check is applied; a reference the
  // model does not watch is ignored. Thread-safe.
  void request_check(const std::string& ref, const std::string& source);
  // When the next reference falls due (for status: next_poll).
  TimePoint next_due(TimePoint now);

  TimePoint last_poll() const { return from_unix_ms(m_last_poll.load()); }

  ~Watcher();

  // The gate of the cluster's leader (cluster/leadership.h, acting()):
  // while it is closed, poll_once sends no registry request and records
  // nothing; a cycle under way stops taking references when it closes.
  // Unset, it is always open (basewatch check, SQLite). Set it before
  // polling starts.
  void set_gate(std::function<bool()> open) { m_gate = std::move(open); }
  // How many answers may wait to be applied before the workers stop taking
  // jobs (default k_unapplied_max). Set it before polling starts (tests).
  void set_unapplied_max(size_t n) {
    std::lock_guard lock(m_pool_mutex);  // the workers read it under this lock
    m_unapplied_max = std::max<size_t>(1, n);
  }
  // Reads each reference's next check and the last poll time from the
  // store again: what the leader before this one wrote (on taking the
  // lease, and now and then on a follower, whose API shows them).
  Status resync();

 private:
  using Stored = Result<std::optional<db::RefState>>;
  // One reference handed to the workers, with the model its item lives in.
  struct Job {
    std::shared_ptr<const Model> model;
    std::shared_ptr<const config::Config> cfg;
    const WatchItem* item = nullptr;
    std::string source;
    bool dry_run = false;
    // Its row, read with the next jobs of its registry in one store call
    // (a read per reference held every worker on the store's lock while a
    // batch was written, and was a round trip each on PostgreSQL).
    // On the heap: a job waits in a queue with up to every other reference
    // (100,000 at once), most of them not read yet.
    std::unique_ptr<Stored> stored;
  };
  // A successful check's row, written with others in one transaction.
  struct PendingWrite {
    db::RefState state;
    bool touch = false;  // only the check times move (nothing new to store)
    std::optional<db::MirrorState> mirror;  // the mirror's row, when it changed
    std::optional<db::CopyJob> job;         // a copy to queue
  };
  // The mirror's tag as a HEAD found it ("" absent), or why it could not be
  // asked; nullopt when the reference has no mirror or was not checked.
  using MirrorHead = std::optional<Result<std::string>>;
  CheckReport apply(const config::Config& cfg, const WatchItem& item, const Result<registry::Resolved>& result,
                    const Stored& stored, const MirrorHead& mirror_head, const std::string& source, TimePoint now,
                    bool dry_run, std::vector<PendingWrite>& batch);
  void flush(std::vector<PendingWrite>& batch, TimePoint now);

  struct Done;
  // Scheduling, under m_mutex: a reference's next check, in m_next_check and
  // in m_due (ordered by time) unless it is with the workers.
  void schedule(const std::string& key, int64_t at);
  // The references due at `now` (all with `all`), taken off the schedule.
  std::vector<Job> take_due(TimePoint now, bool all, bool dry_run);
  void enqueue(std::vector<Job> jobs);
  void work();
  // A worker is done with a job of `registry` (under m_pool_mutex): its
  // slot is free. The caller looks for a job before it waits again; other
  // workers are woken only when more than one can start (the lane is gone).
  void release_slot(const std::string& registry);
  // Reads the rows of `job` and of up to k_prefetch - 1 jobs after it in
  // its registry's queue (taken off the queue while they are read, then put
  // back at its front). Called with `lock` (on m_pool_mutex) held; releases
  // it for the read.
  void prefetch(Job& job, std::unique_lock<std::mutex>& lock);
  // Applies the results that have arrived; with `wait`, until none is
  // outstanding.
  void drain(TimePoint now, bool wait, PollStats& stats, const ReportSink& sink);
  // True when the project's current image already names the new base digest
  // in its org.opencontainers.image.base.digest annotation: it was built on
  // it (by a chain upstream, or by hand), so rebuilding again is waste.
  // Any doubt (no image, no annotation, an error) means false: rebuild.
  bool already_built(const Project& project, const registry::Resolved& base);
  static Millis jittered(const config::Config& cfg, Millis interval);
  static Millis backoff(const config::Config& cfg, int failures, Millis interval);

  std::shared_ptr<const config::Config> m_cfg;
  std::shared_ptr<const Model> m_model;
  db::Store& m_store;
  registry::Client& m_client;
  const ClockSource& m_clock;
  mutable std::mutex m_mutex;
  std::map<std::string, std::string> m_requested;  // ref -> source
  bool m_request_all = false;
  std::string m_request_all_source;
  std::map<std::string, int64_t> m_next_check;  // in-memory mirror of refs.next_check
  std::set<std::pair<int64_t, std::string>> m_due;  // (next check, key) of references not with the workers
  std::atomic<int64_t> m_last_poll{0};
  static constexpr size_t k_unapplied_max = 1024;  // four write batches
  static constexpr size_t k_trim_after = 10'000;  // checks between two malloc_trim at idle
  size_t m_checked_since_trim = 0;                // (loop thread only)
  bool m_last_poll_pending = false;  // m_last_poll goes to the store with the next batch (loop thread only)

  // The workers: persistent threads taking jobs from per-registry queues
  // (round robin, each registry within its share), under m_pool_mutex,
  // which is taken after m_mutex, never before.
  std::mutex m_pool_mutex;
  std::condition_variable m_work_cv, m_done_cv;
  // A registry's jobs: those waiting (each on the heap, so taking one frees
  // nothing under the lock) and how many are with a worker. A lane exists
  // while it has either; so the lanes are the registries with work.
  struct Lane {
    std::deque<std::unique_ptr<Job>> jobs;
    int busy = 0;
  };
  std::map<std::string, Lane> m_lanes;  // registry -> its lane
  int m_busy_total = 0;
  std::string m_next_registry;                      // where the round robin goes on
  std::set<std::string> m_in_flight;                // keys queued, being worked on, or done but not applied
  std::deque<std::unique_ptr<Done>> m_done;
  // Answers not yet applied (in m_done or being applied). While there are
  // m_unapplied_max, no worker takes another job: when the store writes
  // slower than the registries answer (PostgreSQL's round trips), the
  // answers waited in memory without a bound (bench/scale/README).
  size_t m_unapplied = 0;
  size_t m_unapplied_max = k_unapplied_max;
  std::vector<std::thread> m_workers;
  std::atomic<int> m_concurrency{8};
  bool m_stop = false;
  std::function<void()> m_on_result;
  // Unchanged and first-sight rows wait here for one transaction.
  std::vector<PendingWrite> m_batch;
  std::chrono::steady_clock::time_point m_batch_due = std::chrono::steady_clock::time_point::max();
  std::function<bool()> m_gate;
};

// The delivery body of docs/product.md for one project (or a watch entry
// when project is null) and its batch of changes.
std::string make_payload(const std::string& delivery_id, TimePoint created_at, const Project* project,
                         const std::string& changes_json, const std::vector<std::string>& plan);

}  // namespace bw::watcher
