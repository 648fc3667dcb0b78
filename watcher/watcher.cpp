#include "watcher/watcher.h"

#include <malloc.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <random>
#include <unordered_map>
#include <thread>

#include "mirror/decide.h"
#include "oci/platform.h"
#include "util/ids.h"
#include "util/metrics.h"

namespace bw::watcher {

using json = nlohmann::json;

namespace {

constexpr Millis k_first_backoff{30'000};
constexpr const char* k_base_digest_annotation = "org.opencontainers.image.base.digest";

// The annotation on a manifest, an index, or an index entry; "" when absent.
std::string base_digest_of(const json& doc) {
  if (!doc.is_object()) return "";
  auto a = doc.find("annotations");
  if (a == doc.end() || !a->is_object()) return "";
  auto v = a->find(k_base_digest_annotation);
  return v != a->end() && v->is_string() ? v->get<std::string>() : "";
}

void count_change(const std::string& outcome) {
  Metrics::global().counter_add("basewatch_changes_detected_total",
                                "Moved digests by what basewatch did about them.", {{"outcome", outcome}});
}

json project_json(const Project* p) {
  if (!p) return nullptr;
  json j = {{"name", p->name}, {"dockerfile", p->dockerfile}};
  j["image"] = p->image.empty() ? json(nullptr) : json(p->image);
  return j;
}

// Appends `more` to `plan`, keeping the first occurrence of each project.
void merge_plan(std::vector<std::string>& plan, const std::vector<std::string>& more) {
  for (const auto& p : more) {
    if (std::find(plan.begin(), plan.end(), p) == plan.end()) plan.push_back(p);
  }
}

}  // namespace

std::string make_payload(const std::string& delivery_id, TimePoint created_at, const Project* project,
                         const std::string& changes_json, const std::vector<std::string>& plan) {
  json j;
  j["type"] = "base.updated";
  j["delivery_id"] = delivery_id;
  j["created_at"] = format_rfc3339(created_at);
  j["project"] = project_json(project);
  j["changes"] = json::parse(changes_json);
  j["plan"] = plan;
  return j.dump();
}

Watcher::Watcher(std::shared_ptr<const config::Config> cfg, std::shared_ptr<const Model> model, db::Store& store,
                 registry::Client& client, const ClockSource& clock)
    : m_cfg(std::move(cfg)), m_model(std::move(model)), m_store(store), m_client(client), m_clock(clock) {
  if (auto next = m_store.next_checks()) m_next_check = std::move(*next);
  m_concurrency = std::max(1, m_cfg->poll_concurrency);
  std::lock_guard lock(m_mutex);
  for (const auto& [key, item] : m_model->items) {
    auto it = m_next_check.try_emplace(key, 0).first;  // never checked: due now
    m_due.emplace(it->second, key);
  }
}

Watcher::~Watcher() {
  {
    std::lock_guard lock(m_pool_mutex);
    m_stop = true;
    m_work_cv.notify_all();
  }
  for (auto& t : m_workers) t.join();
}

void Watcher::reload(std::shared_ptr<const config::Config> cfg, std::shared_ptr<const Model> model) {
  std::lock_guard lock(m_mutex);
  m_cfg = std::move(cfg);
  m_model = std::move(model);
  m_concurrency = std::max(1, m_cfg->poll_concurrency);
  // References new to the model are due now; gone ones leave the schedule
  // when they come up (take_due skips what the model no longer has).
  std::lock_guard pool(m_pool_mutex);
  for (const auto& [key, item] : m_model->items) {
    if (m_in_flight.count(key)) continue;
    auto it = m_next_check.find(key);
    int64_t at = it == m_next_check.end() ? 0 : it->second;
    if (it == m_next_check.end()) m_next_check[key] = 0;
    m_due.emplace(at, key);  // a duplicate of an existing entry is harmless: take_due drops the stale one
  }
}

std::shared_ptr<const Model> Watcher::model() const {
  std::lock_guard lock(m_mutex);
  return m_model;
}

void Watcher::on_result(std::function<void()> fn) {
  std::lock_guard lock(m_pool_mutex);
  m_on_result = std::move(fn);
}

void Watcher::request_check(const std::string& ref, const std::string& source) {
  std::lock_guard lock(m_mutex);
  // Another instance's model may name a reference this one does not watch
  // (their configs or Dockerfiles differ for a moment): nothing to check.
  if (!ref.empty() && !m_model->items.count(ref)) return;
  if (ref.empty()) {
    m_request_all = true;
    m_request_all_source = source;
  } else {
    m_requested[ref] = source;
  }
}

Status Watcher::resync() {
  BW_TRY(auto next, m_store.next_checks());
  BW_TRY(auto last, m_store.get_meta("last_poll"));
  std::lock_guard lock(m_mutex);
  std::lock_guard pool(m_pool_mutex);
  // The schedule as the store has it (what the leader before this one
  // wrote); references with the workers keep theirs until applied.
  for (const auto& [key, item] : m_model->items) {
    if (m_in_flight.count(key)) continue;
    auto it = next.find(key);
    schedule(key, it == next.end() ? 0 : it->second);
  }
  if (last) m_last_poll = std::strtoll(last->c_str(), nullptr, 10);
  return ok_status();
}

void Watcher::schedule(const std::string& key, int64_t at) {
  auto it = m_next_check.find(key);
  if (it != m_next_check.end()) {
    m_due.erase({it->second, key});
    it->second = at;
  } else {
    m_next_check.emplace(key, at);
  }
  m_due.emplace(at, key);
}

TimePoint Watcher::next_due(TimePoint now) {
  std::lock_guard lock(m_mutex);
  if (m_request_all) return now;
  TimePoint next = now + std::chrono::hours(24);
  if (!m_due.empty()) next = std::min(next, std::max(now, from_unix_ms(m_due.begin()->first)));
  if (!m_requested.empty()) {
    // A requested reference is due now, unless it is being checked (it is
    // taken once that check is applied: a result wakes the loop) or its
    // registry is paused (then when the pause ends).
    std::lock_guard pool(m_pool_mutex);
    for (const auto& [key, source] : m_requested) {
      if (m_in_flight.count(key)) continue;
      auto item = m_model->items.find(key);
      if (item == m_model->items.end()) return now;  // dropped by the next step
      next = std::min(next, std::max(now, m_client.available_at(item->second.ref.registry)));
    }
  }
  return next;
}

TimePoint Watcher::next_wake(TimePoint now) {
  TimePoint next = next_due(now);
  std::lock_guard lock(m_pool_mutex);
  if (!m_done.empty()) return now;
  if (!m_batch.empty()) {
    auto left = std::chrono::duration_cast<Millis>(m_batch_due - std::chrono::steady_clock::now());
    next = std::min(next, now + std::max(left, Millis(0)));
  }
  return next;
}

Millis Watcher::jittered(const config::Config& cfg, Millis interval) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double j = cfg.poll_jitter;
  if (j <= 0) return interval;
  std::uniform_real_distribution<double> dist(-j, j);
  return Millis(static_cast<int64_t>(static_cast<double>(interval.count()) * (1.0 + dist(rng))));
}

Millis Watcher::backoff(const config::Config& cfg, int failures, Millis interval) {
  // 30s, 1m, 2m, ... capped at the poll interval: a failed check is retried
  // well before the next scheduled one (missed updates are users.md item 9).
  int64_t ms = k_first_backoff.count();
  for (int i = 1; i < failures && ms < interval.count(); ++i) ms *= 2;
  return jittered(cfg, Millis(std::min(ms, interval.count())));
}

struct Watcher::Done {
  Job job;
  Stored stored = std::optional<db::RefState>();  // the row as the worker read it: apply needs no second read
  Result<registry::Resolved> result = make_error(ErrorKind::internal, "not resolved");
  MirrorHead mirror_head;
  bool skipped = false;  // the gate closed before it was asked: nothing to apply
};

std::vector<Watcher::Job> Watcher::take_due(TimePoint now, bool all, bool dry_run) {
  std::vector<Job> jobs;
  // Not the leader: nothing is due here, and requests stay queued.
  if (m_gate && !m_gate()) return jobs;
  std::lock_guard lock(m_mutex);
  std::lock_guard pool(m_pool_mutex);
  auto model = m_model;
  auto cfg = m_cfg;
  auto take = [&](const std::string& key, std::string source) {
    auto item = model->items.find(key);
    if (item == model->items.end() || m_in_flight.count(key)) return false;
    // A registry paused by Retry-After (or its breaker) is left alone until
    // it may be asked again: its references wait for that moment.
    TimePoint available = m_client.available_at(item->second.ref.registry);
    if (available > now && !all) {
      schedule(key, to_unix_ms(available));
      return false;
    }
    if (auto it = m_next_check.find(key); it != m_next_check.end()) m_due.erase({it->second, key});
    m_in_flight.insert(key);
    jobs.push_back(Job{model, cfg, &item->second, std::move(source), dry_run, nullptr});
    return true;
  };
  const int64_t now_ms = to_unix_ms(now);
  if (all || m_request_all) {
    std::string source = all && !m_request_all ? "poll" : m_request_all_source;
    for (const auto& [key, item] : model->items) {
      auto r = m_requested.find(key);
      bool taken = take(key, r != m_requested.end() ? r->second : source);
      // A reference being checked now is checked again after this one.
      if (!taken && m_in_flight.count(key) && m_request_all) m_requested.emplace(key, source);
      else if (taken && r != m_requested.end()) m_requested.erase(r);
    }
    m_request_all = false;
  } else {
    for (auto r = m_requested.begin(); r != m_requested.end();) {
      if (!model->items.count(r->first)) {
        r = m_requested.erase(r);
      } else if (take(r->first, r->second)) {
        r = m_requested.erase(r);
      } else {
        ++r;  // in flight or paused: it stays requested
      }
    }
  }
  // Then what the schedule says is due, earliest first. A stale entry (a
  // key gone from the model, or left behind by a reschedule) is dropped.
  while (!m_due.empty() && m_due.begin()->first <= now_ms) {
    auto [at, key] = *m_due.begin();
    auto it = m_next_check.find(key);
    if (!model->items.count(key) || it == m_next_check.end() || it->second != at) {
      m_due.erase(m_due.begin());
      continue;
    }
    if (!take(key, "poll") && m_due.count({at, key})) {
      // Paused: take() moved it later. Anything else (in flight) leaves the schedule.
      m_due.erase({at, key});
    }
  }
  return jobs;
}

void Watcher::enqueue(std::vector<Job> jobs) {
  if (jobs.empty()) return;
  std::lock_guard lock(m_pool_mutex);
  for (auto& j : jobs) {
    std::string registry = j.item->ref.registry;
    m_lanes[registry].jobs.push_back(std::make_unique<Job>(std::move(j)));
  }
  // The pool grows to the largest poll.concurrency seen; a smaller one after
  // a reload caps how many work at once.
  while (m_workers.size() < static_cast<size_t>(m_concurrency.load())) m_workers.emplace_back([this] { work(); });
  m_work_cv.notify_all();
}

void Watcher::release_slot(const std::string& registry) {
  --m_busy_total;
  auto lane = m_lanes.find(registry);
  bool gone = --lane->second.busy == 0 && lane->second.jobs.empty();
  if (gone) m_lanes.erase(lane);
  // One slot is free, so one job can start, and the caller is a worker that
  // looks for one before it waits again (work()): it takes that job itself,
  // and no other worker is woken (an idle one woken here would find the slot
  // taken; waking all 50 for each answer was most of a cycle's CPU at 50
  // registries). When the registry has nothing left, the others' shares
  // grow and more than one can start: all are woken.
  if (gone) m_work_cv.notify_all();
}

void Watcher::prefetch(Job& job, std::unique_lock<std::mutex>& lock) {
  constexpr size_t k_prefetch = 64;
  const std::string registry = job.item->ref.registry;
  std::vector<std::unique_ptr<Job>> more;
  // The lane stays (this job is busy in it) while they are off its queue.
  auto& lane = m_lanes[registry];
  while (!lane.jobs.empty() && more.size() + 1 < k_prefetch && !lane.jobs.front()->stored) {
    more.push_back(std::move(lane.jobs.front()));
    lane.jobs.pop_front();
  }
  lock.unlock();
  std::vector<std::string> keys;
  keys.reserve(more.size() + 1);
  keys.push_back(job.item->ref.tag_ref());
  for (const auto& j : more) keys.push_back(j->item->ref.tag_ref());
  auto rows = m_store.get_refs(keys);
  std::unordered_map<std::string, db::RefState> by_ref;
  if (rows) {
    for (auto& r : *rows) by_ref.emplace(r.ref, std::move(r));
  }
  auto stored_of = [&](const std::string& key) -> Stored {
    if (!rows) return Stored(rows.error());
    auto it = by_ref.find(key);
    if (it == by_ref.end()) return std::optional<db::RefState>();
    return std::optional<db::RefState>(std::move(it->second));
  };
  job.stored = std::make_unique<Stored>(stored_of(keys[0]));
  for (size_t i = 0; i < more.size(); ++i) more[i]->stored = std::make_unique<Stored>(stored_of(keys[i + 1]));
  lock.lock();
  if (more.empty()) return;
  auto& q = m_lanes[registry].jobs;
  for (auto it = more.rbegin(); it != more.rend(); ++it) q.push_front(std::move(*it));
  m_work_cv.notify_all();  // they were off the queue while they were read
}

void Watcher::work() {
  std::unique_lock lock(m_pool_mutex);
  for (;;) {
    std::unique_ptr<Job> job;
    m_work_cv.wait(lock, [&] {
      if (m_stop) return true;
      if (m_busy_total >= m_concurrency.load()) return false;
      if (m_unapplied >= m_unapplied_max) return false;  // drain() wakes them
      // When several registries have work, one holds at most its share of
      // the workers, so a slow or hung registry leaves workers for the others.
      const int active = static_cast<int>(m_lanes.size());
      int conc = m_concurrency.load();
      int cap = conc > active ? conc - (active - 1) : 1;
      // Round robin over registries, from where the last take left off.
      auto start = m_lanes.upper_bound(m_next_registry);
      for (int pass = 0; pass < 2 && !job; ++pass) {
        for (auto it = pass == 0 ? start : m_lanes.begin(); it != (pass == 0 ? m_lanes.end() : start); ++it) {
          Lane& lane = it->second;
          if (lane.jobs.empty() || lane.busy >= cap) continue;
          job = std::move(lane.jobs.front());
          lane.jobs.pop_front();
          ++lane.busy;
          m_next_registry = it->first;
          break;
        }
      }
      return job != nullptr;
    });
    if (m_stop) return;
    const std::string registry = job->item->ref.registry;
    ++m_busy_total;
    if (!job->stored) prefetch(*job, lock);
    lock.unlock();

    auto done = std::make_unique<Done>();
    const WatchItem& item = *job->item;
    if (m_gate && !m_gate()) {
      // The lease was lost while it waited: nothing is asked or recorded;
      // it goes back on the schedule as it was.
      done->skipped = true;
      done->job = std::move(*job);
      job.reset();
      lock.lock();
      release_slot(registry);
      m_done.push_back(std::move(done));
      ++m_unapplied;
      m_done_cv.notify_all();
      continue;
    }
    done->stored = std::move(*job->stored);
    registry::Known k;
    const registry::Known* kp = nullptr;
    if (done->stored && *done->stored && !(*done->stored)->digest.empty()) {
      k.digest = (*done->stored)->digest;
      k.platforms = (*done->stored)->platforms;
      kp = &k;
    }
    auto started = std::chrono::steady_clock::now();
    // A row that cannot be read is not checked: without it a moved digest
    // would look like a first sight.
    done->result = done->stored ? m_client.resolve(item.ref, item.platforms, kp) : Result<registry::Resolved>(done->stored.error());
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
    Metrics::global().histogram_observe("basewatch_check_duration_seconds", "Time to resolve one reference.",
                                        {{"registry", item.ref.registry}}, took.count());
    // A mirrored reference: one HEAD of the mirror's tag too (drift, a
    // missing copy). Not when the upstream failed: an outage leaves the
    // mirror's last good copy alone.
    if (!item.mirror.empty() && done->result.ok() && !job->dry_run) {
      auto mref = oci::parse_reference(item.mirror);
      if (!mref) {
        done->mirror_head = Result<std::string>(mref.error());
      } else {
        auto head = m_client.resolve(*mref, {});
        if (head) done->mirror_head = Result<std::string>(head->digest);
        else if (head.error().kind == ErrorKind::not_found) done->mirror_head = Result<std::string>(std::string());
        else done->mirror_head = Result<std::string>(head.error());
      }
    }
    done->job = std::move(*job);
    job.reset();  // freed here, not under the lock
    lock.lock();
    release_slot(registry);
    // The loop is woken by the first answer it has not taken yet: it takes
    // every one there is when it runs (a wake per answer was a convoy on
    // this lock once the CPUs were busy).
    bool first = m_done.empty();
    m_done.push_back(std::move(done));
    ++m_unapplied;
    m_done_cv.notify_all();
    if (first && m_on_result) {
      auto notify = m_on_result;
      lock.unlock();
      notify();
      lock.lock();
    }
  }
}

void Watcher::drain(TimePoint now, bool wait, PollStats& stats, const ReportSink& sink) {
  // Unchanged and first-sight rows are written in batches, one transaction
  // per batch (a commit per reference was most of an unchanged cycle's CPU);
  // a batch waits at most k_batch_wait for more. Changes commit on their own.
  constexpr size_t k_batch_max = 256;
  constexpr auto k_batch_wait = std::chrono::milliseconds(100);
  for (;;) {
    // Every answer there is, taken at once; applied; then all put back on
    // the schedule at once (a lock of each kind per answer, with fifty
    // workers waiting for the same lock, held a cycle to a fraction of what
    // the registries answer).
    std::deque<std::unique_ptr<Done>> ready;
    {
      std::unique_lock lock(m_pool_mutex);
      if (m_done.empty() && wait && !m_in_flight.empty()) {
        if (!m_batch.empty()) {
          if (!m_done_cv.wait_until(lock, m_batch_due, [&] { return !m_done.empty(); })) {
            lock.unlock();
            flush(m_batch, now);
            m_batch_due = std::chrono::steady_clock::time_point::max();
            continue;
          }
        } else {
          m_done_cv.wait(lock, [&] { return !m_done.empty(); });
        }
      }
      if (m_done.empty()) break;
      ready.swap(m_done);
    }
    std::vector<std::string> back;  // the keys to put back on the schedule
    back.reserve(ready.size());
    for (auto& d : ready) {
      const WatchItem& item = *d->job.item;
      back.push_back(item.ref.tag_ref());
      if (d->skipped) continue;
      auto report = apply(*d->job.cfg, item, d->result, d->stored, d->mirror_head, d->job.source, now, d->job.dry_run, m_batch);
      if (!m_batch.empty() && m_batch_due == std::chrono::steady_clock::time_point::max()) {
        m_batch_due = std::chrono::steady_clock::now() + k_batch_wait;
      }
      if (m_batch.size() >= k_batch_max) {
        flush(m_batch, now);
        m_batch_due = std::chrono::steady_clock::time_point::max();
      }
      ++stats.checked;
      if (d->result.ok()) stats.requests += d->result.value().requests;
      if (report.outcome == "error") ++stats.errors;
      if (report.outcome == "changed") ++stats.changed;
      if (sink) sink(std::move(report));
      else stats.reports.push_back(std::move(report));
    }
    bool held_back;
    {
      std::lock_guard lock(m_mutex);
      std::lock_guard pool(m_pool_mutex);
      held_back = m_unapplied >= m_unapplied_max;
      m_unapplied -= ready.size();
      for (const auto& key : back) {
        m_in_flight.erase(key);
        // Back on the schedule: apply set its next check; a dry run (or a
        // job the closed gate skipped) keeps the one it had.
        auto it = m_next_check.find(key);
        int64_t at = it == m_next_check.end() ? 0 : it->second;
        if (!m_due.count({at, key})) m_due.emplace(at, key);
      }
    }
    if (held_back) m_work_cv.notify_all();
  }
}

PollStats Watcher::poll_once(TimePoint now, bool all, bool dry_run, const ReportSink& sink) {
  PollStats stats;
  auto jobs = take_due(now, all, dry_run);
  if (jobs.empty()) return stats;
  if (!sink) stats.reports.reserve(jobs.size());
  enqueue(std::move(jobs));
  drain(now, true, stats, sink);
  flush(m_batch, now);
  m_batch_due = std::chrono::steady_clock::time_point::max();
  m_last_poll = to_unix_ms(now);
  if (!dry_run) m_store.set_meta("last_poll", std::to_string(to_unix_ms(now)));
  return stats;
}

PollStats Watcher::step(TimePoint now, const ReportSink& sink) {
  PollStats stats;
  drain(now, false, stats, sink);
  enqueue(take_due(now, false, false));
  bool idle;
  {
    std::lock_guard lock(m_pool_mutex);
    idle = m_in_flight.empty();
  }
  if (!m_batch.empty() && (idle || std::chrono::steady_clock::now() >= m_batch_due)) {
    flush(m_batch, now);
    m_batch_due = std::chrono::steady_clock::time_point::max();
  }
  m_checked_since_trim += stats.checked;
  if (idle && m_checked_since_trim >= k_trim_after) {
    // A big cycle is over: the queues, jobs and answers it held are free;
    // give the pages back (glibc keeps them otherwise), a few ms at most.
    malloc_trim(0);
    m_checked_since_trim = 0;
  }
  if (stats.checked > 0) {
    m_last_poll = to_unix_ms(now);
    // Written with the batch it belongs to (a commit of its own on every
    // step was a tenth of an unchanged cycle's CPU), or now when there is
    // none to wait for.
    if (m_batch.empty()) m_store.set_meta("last_poll", std::to_string(to_unix_ms(now)));
    else m_last_poll_pending = true;
  }
  return stats;
}

void Watcher::flush(std::vector<PendingWrite>& batch, TimePoint now) {
  if (batch.empty()) return;
  auto st = m_store.transaction([&]() -> Status {
    for (const auto& w : batch) {
      if (w.touch) {
        auto touched = m_store.touch_ref(w.state.ref, w.state.last_checked, w.state.next_check);
        if (touched) continue;
        if (touched.error().kind != ErrorKind::not_found) return touched;
      }
      BW_TRY(auto put, m_store.put_ref(w.state));
      (void)put;
    }
    for (const auto& w : batch) {
      if (w.mirror) {
        BW_TRY(auto m, m_store.put_mirror(*w.mirror));
        (void)m;
      }
      if (w.job) {
        BW_TRY(auto j, m_store.add_copy_job(*w.job));
        (void)j;
      }
    }
    if (m_last_poll_pending) return m_store.set_meta("last_poll", std::to_string(m_last_poll.load()));
    return ok_status();
  });
  if (st) m_last_poll_pending = false;
  if (!st) {
    // Nothing of the batch was written: check these again soon rather than
    // at once (a broken database must not turn the poll loop into a spin).
    spdlog::error("recording {} checked reference(s) failed: {}", batch.size(), st.error().message);
    std::lock_guard lock(m_mutex);
    for (const auto& w : batch) schedule(w.state.ref, to_unix_ms(now) + k_first_backoff.count());
  }
  batch.clear();
}

CheckReport Watcher::apply(const config::Config& cfg, const WatchItem& item, const Result<registry::Resolved>& result,
                           const Stored& stored, const MirrorHead& mirror_head, const std::string& source, TimePoint now,
                           bool dry_run, std::vector<PendingWrite>& batch) {
  CheckReport rep;
  rep.ref = item.ref.tag_ref();
  rep.source = source;
  int64_t now_ms = to_unix_ms(now);
  static const std::optional<db::RefState> k_none;
  const std::optional<db::RefState>& old = stored ? *stored : k_none;
  if (!stored) {
    // The stored row could not be read, so nothing was checked: say so and
    // try again after a pause; writing now could lose what the row holds.
    rep.outcome = "error";
    rep.error = stored.error().message;
    spdlog::error("check {}: {}", rep.ref, rep.error);
    if (!dry_run) {
      std::lock_guard lock(m_mutex);
      schedule(rep.ref, now_ms + k_first_backoff.count());
    }
    return rep;
  }

  if (!result.ok()) {
    rep.outcome = "error";
    rep.error = result.error().message;
    int failures = (old ? old->failures : 0) + 1;
    int64_t next = now_ms + backoff(cfg, failures, item.interval).count();
    if (result.error().kind == ErrorKind::rate_limited) next = std::max(next, to_unix_ms(m_client.available_at(item.ref.registry)));
    if (!dry_run) {
      m_store.set_ref_error(rep.ref, to_string(result.error().kind), rep.error, now_ms, next);
      std::lock_guard lock(m_mutex);
      schedule(rep.ref, next);
    }
    spdlog::warn("check {}: {}", rep.ref, rep.error);
    return rep;
  }
  const registry::Resolved& r = result.value();
  db::RefState state;
  state.ref = rep.ref;
  state.digest = r.digest;
  state.media_type = r.media_type;
  state.platforms = r.platforms;
  state.last_checked = now_ms;
  state.last_changed = old ? old->last_changed : 0;
  state.next_check = now_ms + jittered(cfg, item.interval).count();
  rep.new_digest = r.digest;

  auto commit_state = [&]() -> Status {
    if (dry_run) return ok_status();
    {
      std::lock_guard lock(m_mutex);
      schedule(rep.ref, state.next_check);
    }
    return m_store.put_ref(state);
  };

  // What the mirror needs (mirror/decide.h): computed once the upstream's
  // outcome is known, recorded with the upstream's row or event.
  auto mirror_decision = [&](bool moved, bool changed) -> std::optional<mirror::MirrorDecision> {
    if (item.mirror.empty() || !mirror_head || dry_run) return std::nullopt;
    auto row = m_store.get_mirror(item.mirror);
    auto pending = m_store.pending_copy_jobs(item.mirror);
    if (!row || !pending) {
      spdlog::error("mirror {}: {}", item.mirror, !row ? row.error().message : pending.error().message);
      return std::nullopt;
    }
    mirror::MirrorCheck c;
    c.upstream_digest = r.digest;
    c.upstream_moved = moved;
    c.upstream_changed = changed;
    c.row = *row ? &**row : nullptr;
    c.job_pending = !pending->empty();
    c.head = *mirror_head;
    c.all_platforms = item.mirror_rule < 0 || item.mirror_rule >= static_cast<int>(cfg.mirrors.size()) ||
                      cfg.mirrors[static_cast<size_t>(item.mirror_rule)].all_platforms;
    auto d = mirror::decide_mirror(c);
    d.row.mirror = item.mirror;
    d.row.upstream = rep.ref;
    d.row.checked_at = now_ms;
    if (d.write) d.row.updated_at = now_ms;
    rep.mirror_state = d.row.state;
    rep.copy_queued = d.job;
    if (d.job) spdlog::info("{}: copy to {} queued ({})", rep.ref, item.mirror, d.reason);
    return d;
  };
  auto copy_job = [&](const mirror::MirrorDecision& d) {
    db::CopyJob j;
    j.mirror = item.mirror;
    j.upstream = rep.ref;
    j.digest = r.digest;
    j.reason = d.reason;
    j.created_at = j.next_attempt_at = now_ms;
    return j;
  };
  auto pending_write = [&](db::RefState&& st, bool touch) {
    {
      // On the schedule now; a batch that fails to commit moves it back.
      std::lock_guard lock(m_mutex);
      schedule(rep.ref, st.next_check);
    }
    PendingWrite w{std::move(st), touch, std::nullopt, std::nullopt};
    if (auto d = mirror_decision(false, false)) {
      if (d->write) w.mirror = d->row;
      if (d->job) w.job = copy_job(*d);
    }
    return w;
  };

  if (!old || old->digest.empty()) {
    rep.outcome = "baseline";
    spdlog::info("baseline {} at {}", rep.ref, r.digest);
    if (!dry_run) batch.push_back(pending_write(std::move(state), false));
    return rep;
  }
  rep.old_digest = old->digest;
  for (const auto& p : item.platforms) {
    std::string key = p.str();
    auto o = old->platforms.find(key);
    auto n = r.platforms.find(key);
    // A platform that appears or disappears is recorded, not fired: only a
    // moved digest of a platform we build for is a change.
    if (o != old->platforms.end() && n != r.platforms.end() && o->second != n->second) {
      rep.platforms[key] = {o->second, n->second};
    }
  }
  // Keep digests of platforms we knew but did not ask for this time.
  for (const auto& [k, v] : old->platforms) state.platforms.emplace(k, v);

  if (old->digest == r.digest && rep.platforms.empty()) {
    rep.outcome = "unchanged";
    if (!dry_run) {
      // The usual case: same digest, no platform digest that is not stored
      // yet, no error to clear... only the check times move.
      bool touch = state.platforms == old->platforms && state.media_type == old->media_type;
      batch.push_back(pending_write(std::move(state), touch));
    }
    return rep;
  }
  state.last_changed = now_ms;
  std::shared_ptr<const Model> model = this->model();
  db::Event ev;
  ev.ref = rep.ref;
  ev.old_digest = old->digest;
  ev.new_digest = r.digest;
  ev.platforms = rep.platforms;
  ev.source = source;
  ev.detected_at = now_ms;

  if (rep.platforms.empty()) {
    rep.outcome = "recorded";
    ev.outcome = "recorded";
    spdlog::info("{} moved {} -> {} but no watched platform changed: recorded, not fired", rep.ref, old->digest, r.digest);
    if (!dry_run) {
      auto md = mirror_decision(true, false);
      auto st = m_store.transaction([&]() -> Status {
        BW_TRY(auto a, commit_state());
        (void)a;
        BW_TRY(auto id, m_store.add_event(ev));
        (void)id;
        if (md) {
          // The index moved: the mirror copies it too (a new platform, new
          // attestations), though nothing is rebuilt.
          BW_TRY(auto m, m_store.put_mirror(md->row));
          (void)m;
          if (md->job) {
            BW_TRY(auto j, m_store.add_copy_job(copy_job(*md)));
            (void)j;
          }
        }
        return ok_status();
      });
      if (st) count_change("recorded");
    }
    return rep;
  }

  json change = {{"ref", rep.ref}, {"old_digest", old->digest}, {"new_digest", r.digest}, {"detected_at", format_rfc3339(now)},
                 {"source", source}};
  change["platforms"] = json::object();
  for (const auto& [p, od] : rep.platforms) change["platforms"][p] = {{"old", od.first}, {"new", od.second}};
  std::vector<std::string> plan = model->graph ? model->graph->impact(rep.ref) : std::vector<std::string>{};

  // Who fires: direct users with an unpinned use, and watch: triggers.
  struct Target {
    std::string trigger;
    const Project* project;
  };
  std::vector<Target> targets;
  bool stale_pin = false;
  for (const auto& name : item.projects) {
    const Project* p = model->project(name);
    if (!p) continue;
    bool unpinned = false;
    for (const auto& b : p->bases) {
      if (b.ref == rep.ref && b.pinned.empty()) unpinned = true;
    }
    if (!unpinned) {
      stale_pin = true;  // the build stays on its pinned digest: report, do not rebuild
      continue;
    }
    if (!p->triggers.empty() && already_built(*p, r)) {
      spdlog::info("{}: {} is already built on {} ({}): not rebuilt", rep.ref, p->name, r.digest, k_base_digest_annotation);
      rep.already_built.push_back(p->name);
      continue;
    }
    for (const auto& t : p->triggers) targets.push_back(Target{t, p});
  }
  for (const auto& t : item.triggers) targets.push_back(Target{t, nullptr});
  ev.outcome = !targets.empty()             ? "fired"
               : stale_pin                  ? "stale-pin"
               : !rep.already_built.empty() ? "already-built"
                                            : "unwatched";
  rep.outcome = "changed";

  // A project's weekly quiet window lives in the config (the model keeps
  // durations only); globbed projects are named "<name>/<folder>".
  auto window_of = [&](const Project* p) -> const config::QuietWindow* {
    if (!p) return nullptr;
    for (const auto& pc : cfg.projects) {
      if (pc.quiet_window && (pc.name == p->name || p->name.rfind(pc.name + "/", 0) == 0)) return &*pc.quiet_window;
    }
    return nullptr;
  };

  // The copy this move calls for, when a mirror covers the reference.
  auto md = mirror_decision(true, true);
  const bool all_platforms = item.mirror_rule < 0 || item.mirror_rule >= static_cast<int>(cfg.mirrors.size()) ||
                             cfg.mirrors[static_cast<size_t>(item.mirror_rule)].all_platforms;
  // The mirror a project builds FROM for this reference, "" when it names the upstream.
  auto mirror_of_project = [&](const Project* p) -> std::string {
    if (!p) return "";
    for (const auto& b : p->bases) {
      if (b.ref == rep.ref && !b.mirror.empty() && b.pinned.empty()) return b.mirror;
    }
    return "";
  };

  auto write = [&]() -> Status {
    BW_TRY(auto a, commit_state());
    (void)a;
    int64_t job_id = 0;
    if (md) {
      BW_TRY(auto m, m_store.put_mirror(md->row));
      (void)m;
      if (md->job) {
        BW_TRY(job_id, m_store.add_copy_job(copy_job(*md)));
      }
    }
    for (const auto& t : targets) {
      std::string project = t.project ? t.project->name : "";
      Millis delay = std::max(cfg.poll_settle, t.project ? t.project->quiet : Millis(0));
      // A project that builds FROM the mirror is rebuilt once the copy is
      // there: its change names the mirror (and the digest it will hold),
      // and its delivery waits for the copy job.
      json tc = change;
      std::string via = job_id ? mirror_of_project(t.project) : "";
      if (!via.empty()) {
        tc["mirror"] = {{"ref", via}, {"digest", all_platforms ? r.digest : ""}};
        tc["upstream"] = {{"ref", rep.ref}};
      }
      BW_TRY(auto settling, m_store.find_settling(t.trigger, project, now_ms));
      if (settling) {
        // Join the batch that is still settling: one delivery, several changes.
        json body = json::parse(settling->payload, nullptr, false);
        if (!body.is_object()) return make_error(ErrorKind::internal, "stored payload of " + settling->id + " is not JSON");
        json changes = json::array();
        for (auto& c : body["changes"]) {
          if (c.value("ref", "") != rep.ref) changes.push_back(c);
          else tc["old_digest"] = c.value("old_digest", old->digest);  // first old, latest new
        }
        changes.push_back(tc);
        std::vector<std::string> merged = body["plan"].get<std::vector<std::string>>();
        merge_plan(merged, plan);
        std::string payload = make_payload(settling->id, from_unix_ms(settling->created_at), t.project, changes.dump(), merged);
        BW_TRY(auto b, m_store.update_settling(settling->id, payload, settling->next_attempt_at));
        (void)b;
        if (!via.empty()) {
          BW_TRY(auto w, m_store.set_delivery_wait(settling->id, job_id));
          (void)w;
        }
        rep.deliveries.push_back(settling->id);
        continue;
      }
      db::Delivery d;
      d.id = new_delivery_id(now);
      d.trigger = t.trigger;
      d.project = project;
      d.created_at = now_ms;
      d.next_attempt_at = now_ms + delay.count();
      if (const auto* window = window_of(t.project)) d.next_attempt_at = to_unix_ms(window->next_open(from_unix_ms(d.next_attempt_at)));
      d.payload = make_payload(d.id, now, t.project, json::array({tc}).dump(), plan);
      if (!via.empty()) d.wait_job = job_id;
      BW_TRY(auto c, m_store.add_delivery(d));
      (void)c;
      rep.deliveries.push_back(d.id);
    }
    ev.deliveries = rep.deliveries;
    BW_TRY(auto id, m_store.add_event(ev));
    (void)id;
    return ok_status();
  };
  if (!dry_run) {
    auto st = m_store.transaction(write);
    if (!st) {
      // Nothing was written: the next poll sees the same change again.
      rep.outcome = "error";
      rep.error = st.error().message;
      rep.deliveries.clear();
      spdlog::error("recording change of {} failed: {}", rep.ref, rep.error);
      return rep;
    }
    count_change(ev.outcome);
  }
  spdlog::info("{} changed {} -> {} ({} platform(s)); {} delivery(ies) queued{}", rep.ref, old->digest, r.digest,
               rep.platforms.size(), rep.deliveries.size(), stale_pin ? "; a pinned base is now stale" : "");
  return rep;
}

bool Watcher::already_built(const Project& p, const registry::Resolved& base) {
  if (p.image.empty()) return false;
  auto ref = oci::parse_reference(p.image);
  if (!ref) return false;
  // The base's digest may be recorded as the tag's (an index) or as the
  // platform's manifest: either names the new content.
  std::set<std::string> fresh{base.digest};
  for (const auto& [platform, digest] : base.platforms) fresh.insert(digest);
  auto manifest = m_client.get_manifest(*ref, ref->tag.empty() ? ref->digest : ref->tag);
  if (!manifest) {
    spdlog::debug("{}: cannot read {} to compare its base: {}", p.name, p.image, manifest.error().message);
    return false;
  }
  json doc = json::parse(manifest->first, nullptr, false);
  if (std::string b = base_digest_of(doc); !b.empty()) return fresh.count(b) > 0;
  if (!doc.is_object() || !doc.contains("manifests") || !doc["manifests"].is_array()) return false;
  // An index without its own annotation: every image of a platform the
  // project builds must carry it (on its entry or in its manifest).
  std::vector<oci::Platform> wanted;
  for (const auto& text : p.platforms) {
    if (auto pl = oci::parse_platform(text)) wanted.push_back(*pl);
  }
  auto entries = oci::parse_index(manifest->first);
  if (!entries) return false;
  int checked = 0;
  for (size_t i = 0; i < entries->size() && i < doc["manifests"].size(); ++i) {
    const auto& e = (*entries)[i];
    if (e.attestation) continue;
    oci::Platform pl = oci::effective_platform(e);
    if (!wanted.empty() && std::none_of(wanted.begin(), wanted.end(), [&](const oci::Platform& w) { return oci::matches(w, pl); })) continue;
    std::string b = base_digest_of(doc["manifests"][i]);
    if (b.empty()) {
      auto m = m_client.get_manifest(*ref, e.digest);
      if (!m) return false;
      b = base_digest_of(json::parse(m->first, nullptr, false));
    }
    if (!fresh.count(b)) return false;
    ++checked;
  }
  return checked > 0;
}

}  // namespace bw::watcher
