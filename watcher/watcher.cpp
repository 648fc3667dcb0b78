#include "watcher/watcher.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <random>
#include <thread>

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
}

void Watcher::reload(std::shared_ptr<const config::Config> cfg, std::shared_ptr<const Model> model) {
  std::lock_guard lock(m_mutex);
  m_cfg = std::move(cfg);
  m_model = std::move(model);
}

std::shared_ptr<const Model> Watcher::model() const {
  std::lock_guard lock(m_mutex);
  return m_model;
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

TimePoint Watcher::next_due(TimePoint now) {
  std::lock_guard lock(m_mutex);
  if (m_request_all || !m_requested.empty()) return now;
  TimePoint next = now + std::chrono::hours(24);
  for (const auto& [key, item] : m_model->items) {
    auto it = m_next_check.find(key);
    TimePoint due = it == m_next_check.end() ? now : from_unix_ms(it->second);
    due = std::max(due, m_client.available_at(item.ref.registry));
    next = std::min(next, due);
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

Status Watcher::resync() {
  BW_TRY(auto next, m_store.next_checks());
  BW_TRY(auto last, m_store.get_meta("last_poll"));
  std::lock_guard lock(m_mutex);
  m_next_check = std::move(next);
  if (last) m_last_poll = std::strtoll(last->c_str(), nullptr, 10);
  return ok_status();
}

PollStats Watcher::poll_once(TimePoint now, bool all, bool dry_run, const ReportSink& sink) {
  PollStats stats;
  const auto open = [this] { return !m_gate || m_gate(); };
  // Not the leader: nothing is due here, and requests stay queued.
  if (!open()) return stats;
  // Due items point into `model`, which this call keeps alive: no copies of
  // the watch set per cycle.
  std::vector<Due> due;
  std::shared_ptr<const Model> model;
  std::shared_ptr<const config::Config> cfg;
  {
    std::lock_guard lock(m_mutex);
    model = m_model;
    cfg = m_cfg;
    due.reserve(model->items.size());
    for (const auto& [key, item] : model->items) {
      std::string source = "poll";
      bool is_due = all;
      if (m_request_all) {
        is_due = true;
        source = m_request_all_source;
      }
      if (auto r = m_requested.find(key); r != m_requested.end()) {
        is_due = true;
        source = r->second;
      }
      auto nc = m_next_check.find(key);
      if (nc == m_next_check.end() || nc->second <= to_unix_ms(now)) is_due = true;
      // A registry paused by Retry-After is left alone until it may be asked again.
      if (is_due && m_client.available_at(item.ref.registry) > now && !all) continue;
      if (is_due) due.push_back(Due{&item, std::move(source)});
    }
    m_request_all = false;
    for (const auto& d : due) m_requested.erase(d.item->ref.tag_ref());
    // Requests for references a reload took out of the model are void.
    for (auto it = m_requested.begin(); it != m_requested.end();) {
      it = model->items.count(it->first) ? std::next(it) : m_requested.erase(it);
    }
  }
  if (due.empty()) return stats;

  // Workers resolve; this thread applies each result as it arrives (the one
  // writer) and drops it. When several registries are due, one registry may
  // hold at most `cap` workers, so a slow or failing registry leaves workers
  // for the others.
  size_t n_threads = std::min<size_t>(due.size(), static_cast<size_t>(std::max(1, cfg->poll_concurrency)));
  std::map<std::string, size_t> in_flight;
  for (const auto& d : due) in_flight[d.item->ref.registry] = 0;
  size_t cap = n_threads > in_flight.size() ? n_threads - (in_flight.size() - 1) : 1;
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<bool> taken(due.size(), false);
  size_t remaining = due.size();
  struct Done {
    size_t index;
    Stored stored;  // the row as the worker read it: apply needs no second read
    Result<registry::Resolved> result;
    bool skipped = false;  // the gate closed before it was asked: nothing to apply
  };
  std::deque<Done> done;

  size_t first_open = 0;  // every item before it is taken: the scan starts here, not at 0
  auto take = [&](std::unique_lock<std::mutex>& lock) -> std::optional<size_t> {
    while (true) {
      if (remaining == 0) return std::nullopt;
      while (first_open < due.size() && taken[first_open]) ++first_open;
      for (size_t i = first_open; i < due.size(); ++i) {
        if (!taken[i] && in_flight[due[i].item->ref.registry] < cap) {
          taken[i] = true;
          --remaining;
          ++in_flight[due[i].item->ref.registry];
          return i;
        }
      }
      cv.wait(lock);
    }
  };
  auto worker = [&] {
    std::unique_lock lock(mutex);
    while (auto i = take(lock)) {
      lock.unlock();
      const WatchItem& item = *due[*i].item;
      if (!open()) {
        lock.lock();
        --in_flight[item.ref.registry];
        done.push_back(Done{*i, Stored(std::optional<db::RefState>()), make_error(ErrorKind::fenced, "not the leader"), true});
        cv.notify_all();
        continue;
      }
      Stored stored = m_store.get_ref(item.ref.tag_ref());
      registry::Known k;
      const registry::Known* kp = nullptr;
      if (stored && *stored && !(*stored)->digest.empty()) {
        k.digest = (*stored)->digest;
        k.platforms = (*stored)->platforms;
        kp = &k;
      }
      auto started = std::chrono::steady_clock::now();
      // A row that cannot be read is not checked: without it a moved digest
      // would look like a first sight.
      Result<registry::Resolved> result = stored ? m_client.resolve(item.ref, item.platforms, kp)
                                                 : Result<registry::Resolved>(stored.error());
      std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
      Metrics::global().histogram_observe("basewatch_check_duration_seconds", "Time to resolve one reference.",
                                          {{"registry", item.ref.registry}}, took.count());
      lock.lock();
      --in_flight[item.ref.registry];
      done.push_back(Done{*i, std::move(stored), std::move(result)});
      cv.notify_all();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(n_threads);
  for (size_t t = 0; t < n_threads; ++t) threads.emplace_back(worker);

  if (!sink) stats.reports.reserve(due.size());
  // Unchanged and first-sight rows are written in batches, one transaction
  // per batch (a commit per reference was most of an unchanged cycle's CPU);
  // a batch waits at most k_batch_wait for more. Changes commit on their own.
  constexpr size_t k_batch_max = 256;
  constexpr auto k_batch_wait = std::chrono::milliseconds(100);
  std::vector<PendingWrite> batch;
  auto batch_due = std::chrono::steady_clock::time_point::max();
  for (size_t applied = 0; applied < due.size();) {
    std::unique_lock lock(mutex);
    if (done.empty() && !batch.empty()) {
      if (!cv.wait_until(lock, batch_due, [&] { return !done.empty(); })) {
        lock.unlock();
        flush(batch, now);
        batch_due = std::chrono::steady_clock::time_point::max();
        continue;
      }
    }
    cv.wait(lock, [&] { return !done.empty(); });
    Done d = std::move(done.front());
    done.pop_front();
    lock.unlock();
    if (d.skipped) {
      ++applied;
      continue;
    }
    size_t i = d.index;
    const auto& result = d.result;
    auto report = apply(*cfg, *due[i].item, result, d.stored, due[i].source, now, dry_run, batch);
    ++applied;
    if (!batch.empty() && batch_due == std::chrono::steady_clock::time_point::max()) {
      batch_due = std::chrono::steady_clock::now() + k_batch_wait;
    }
    if (batch.size() >= k_batch_max) {
      flush(batch, now);
      batch_due = std::chrono::steady_clock::time_point::max();
    }
    ++stats.checked;
    if (result.ok()) stats.requests += result.value().requests;
    if (report.outcome == "error") ++stats.errors;
    if (report.outcome == "changed") ++stats.changed;
    if (sink) sink(std::move(report));
    else stats.reports.push_back(std::move(report));
  }
  for (auto& t : threads) t.join();
  flush(batch, now);
  m_last_poll = to_unix_ms(now);
  if (!dry_run) m_store.set_meta("last_poll", std::to_string(to_unix_ms(now)));
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
    return ok_status();
  });
  std::lock_guard lock(m_mutex);
  if (st) {
    for (const auto& w : batch) m_next_check[w.state.ref] = w.state.next_check;
  } else {
    // Nothing of the batch was written: check these again soon rather than
    // at once (a broken database must not turn the poll loop into a spin).
    spdlog::error("recording {} checked reference(s) failed: {}", batch.size(), st.error().message);
    for (const auto& w : batch) m_next_check[w.state.ref] = to_unix_ms(now) + k_first_backoff.count();
  }
  batch.clear();
}

CheckReport Watcher::apply(const config::Config& cfg, const WatchItem& item, const Result<registry::Resolved>& result,
                           const Stored& stored, const std::string& source, TimePoint now, bool dry_run,
                           std::vector<PendingWrite>& batch) {
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
      m_next_check[rep.ref] = now_ms + k_first_backoff.count();
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
      m_next_check[rep.ref] = next;
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
      m_next_check[rep.ref] = state.next_check;
    }
    return m_store.put_ref(state);
  };

  if (!old || old->digest.empty()) {
    rep.outcome = "baseline";
    spdlog::info("baseline {} at {}", rep.ref, r.digest);
    if (!dry_run) batch.push_back(PendingWrite{std::move(state), false});
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
      batch.push_back(PendingWrite{std::move(state), touch});
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
      auto st = m_store.transaction([&]() -> Status {
        BW_TRY(auto a, commit_state());
        (void)a;
        BW_TRY(auto id, m_store.add_event(ev));
        (void)id;
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

  auto write = [&]() -> Status {
    BW_TRY(auto a, commit_state());
    (void)a;
    for (const auto& t : targets) {
      std::string project = t.project ? t.project->name : "";
      Millis delay = std::max(cfg.poll_settle, t.project ? t.project->quiet : Millis(0));
      BW_TRY(auto settling, m_store.find_settling(t.trigger, project, now_ms));
      if (settling) {
        // Join the batch that is still settling: one delivery, several changes.
        json body = json::parse(settling->payload, nullptr, false);
        if (!body.is_object()) return make_error(ErrorKind::internal, "stored payload of " + settling->id + " is not JSON");
        json changes = json::array();
        for (auto& c : body["changes"]) {
          if (c.value("ref", "") != rep.ref) changes.push_back(c);
          else change["old_digest"] = c.value("old_digest", old->digest);  // first old, latest new
        }
        changes.push_back(change);
        std::vector<std::string> merged = body["plan"].get<std::vector<std::string>>();
        merge_plan(merged, plan);
        std::string payload = make_payload(settling->id, from_unix_ms(settling->created_at), t.project, changes.dump(), merged);
        BW_TRY(auto b, m_store.update_settling(settling->id, payload, settling->next_attempt_at));
        (void)b;
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
      d.payload = make_payload(d.id, now, t.project, json::array({change}).dump(), plan);
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
