#include "mirror/syncer.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <random>

#include "config/mirrors.h"
#include "util/metrics.h"

namespace bw::mirror {

using json = nlohmann::json;

namespace {

void count_copy(const char* outcome) {
  Metrics::global().counter_add("basewatch_mirror_copies_total", "Mirror copy jobs by outcome (copied, already, failed).",
                                {{"outcome", outcome}});
}

void count_bytes(const char* how, int64_t n) {
  if (n <= 0) return;
  Metrics::global().counter_add("basewatch_mirror_bytes_total",
                                "Bytes of blobs mirrored, by how they got there (uploaded, mounted, skipped).", {{"how", how}},
                                static_cast<double>(n));
}

json last_copy_json(const CopyReport& r, const db::CopyJob& job, TimePoint now) {
  return {{"at", format_rfc3339(now)},        {"digest", r.digest},
          {"reason", job.reason},             {"bytes_uploaded", r.bytes_uploaded},
          {"blobs_uploaded", r.blobs_uploaded}, {"blobs_mounted", r.blobs_mounted},
          {"blobs_skipped", r.blobs_skipped}, {"manifests", r.manifests},
          {"referrers", r.referrers},         {"seconds", r.seconds}};
}

}  // namespace

Syncer::Syncer(std::shared_ptr<const config::Config> cfg, db::Store& store, registry::Client& client, const ClockSource& clock)
    : m_cfg(std::move(cfg)), m_store(store), m_client(client), m_clock(clock), m_copier(client) {}

void Syncer::reload(std::shared_ptr<const config::Config> cfg) {
  std::lock_guard lock(m_mutex);
  m_cfg = std::move(cfg);
}

CopyOptions Syncer::options_for(const config::MirrorConfig& rule) {
  CopyOptions o;
  if (!rule.all_platforms) {
    for (const auto& p : rule.platforms) {
      if (auto parsed = oci::parse_platform(p)) o.platforms.push_back(*parsed);
    }
  }
  o.referrers = rule.referrers;
  o.force = true;  // the mirror follows its upstream: drift is repaired
  return o;
}

const config::MirrorConfig* Syncer::rule_for(const config::Config& cfg, const std::string& upstream) const {
  auto ref = oci::parse_reference(upstream);
  if (!ref) return nullptr;
  auto m = config::mirror_of(cfg.mirrors, ref->registry, ref->repository);
  return m ? m->rule : nullptr;
}

Millis Syncer::backoff(const config::Config& cfg, int attempts) const {
  int64_t ms = cfg.retry_initial.count();
  for (int i = 1; i < attempts && ms < cfg.retry_max.count(); ++i) ms *= 2;
  ms = std::min(ms, cfg.retry_max.count());
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return Millis(static_cast<int64_t>(static_cast<double>(ms) * jitter(rng)));
}

std::optional<TimePoint> Syncer::next_due() {
  auto next = m_store.next_copy_due();
  if (!next || !*next) return std::nullopt;
  return from_unix_ms(**next);
}

std::string Syncer::released_payload(const std::string& payload, const db::CopyJob& job, const std::string& mirror_digest) const {
  json body = json::parse(payload, nullptr, false);
  if (!body.is_object() || !body.contains("changes") || !body["changes"].is_array()) return payload;
  for (auto& c : body["changes"]) {
    if (!c.is_object() || !c.contains("mirror") || !c["mirror"].is_object()) continue;
    std::string ref = c["mirror"].value("ref", "");
    if (ref == job.mirror) {
      c["mirror"]["digest"] = mirror_digest;
    } else if (c["mirror"].value("digest", "").empty()) {
      // Another mirrored base of the same batch, copied before: what its tag holds.
      if (auto row = m_store.get_mirror(ref); row && *row) c["mirror"]["digest"] = (*row)->mirror_digest;
    }
  }
  return body.dump();
}

SyncStats Syncer::sync_once(TimePoint now, int limit) {
  SyncStats stats;
  std::shared_ptr<const config::Config> cfg;
  {
    std::lock_guard lock(m_mutex);
    cfg = m_cfg;
  }
  const int64_t now_ms = to_unix_ms(now);
  auto due = m_store.due_copy_jobs(now_ms, limit);
  if (!due) {
    spdlog::error("copy jobs: {}", due.error().message);
    return stats;
  }
  for (const auto& job : *due) {
    if (m_gate && !m_gate()) break;  // no longer the leader: the next one copies
    auto pending = m_store.pending_copy_jobs(job.mirror);
    if (!pending || pending->empty()) continue;
    if (pending->front().id != job.id) continue;  // an older job of this mirror goes first
    const db::CopyJob& newest = pending->back();
    const bool moves_tag = newest.id == job.id;

    auto src = oci::parse_reference(job.upstream);
    auto dst = oci::parse_reference(job.mirror);
    const config::MirrorConfig* rule = rule_for(*cfg, job.upstream);
    auto record_failure = [&](const std::string& message) {
      Millis wait = backoff(*cfg, job.attempts + 1);
      m_store.fail_copy_job(job.id, message, now_ms, now_ms + wait.count());
      db::MirrorState row;
      if (auto got = m_store.get_mirror(job.mirror); got && *got) row = **got;
      row.mirror = job.mirror;
      row.upstream = job.upstream;
      row.state = "failed";
      row.last_error = message;
      row.updated_at = now_ms;
      m_store.put_mirror(row);
      count_copy("failed");
      ++stats.failed;
      spdlog::warn("copy {} -> {}: {} (attempt {}; next in {})", job.upstream, job.mirror, message, job.attempts + 1,
                   format_duration(wait));
    };
    if (!src || !dst) {
      record_failure("cannot read the job's references");
      continue;
    }
    // Ends the job without a copy; each waiting delivery is handed to `then`.
    auto end_without_copy = [&](const std::function<Status(const db::Delivery&)>& then) {
      m_store.transaction([&]() -> Status {
        BW_TRY(auto f, m_store.finish_copy_job(job.id, "", now_ms));
        (void)f;
        BW_TRY(auto waiting, m_store.waiting_deliveries(job.id));
        for (const auto& d : waiting) {
          BW_TRY(auto x, then(d));
          (void)x;
        }
        return ok_status();
      });
    };
    if (!rule) {
      // The rule is gone (a reload): nothing to copy; the deliveries go out.
      end_without_copy([&](const db::Delivery& d) {
        ++stats.released;
        return m_store.release_delivery(d.id, d.payload);
      });
      spdlog::warn("copy {} -> {}: no mirrors: rule covers it any more; dropped", job.upstream, job.mirror);
      continue;
    }
    oci::Reference from = *src;
    from.digest = job.digest;
    oci::Reference to = *dst;
    if (!moves_tag) to.tag.clear();  // by digest only: a newer job moves the tag
    CopyOptions options = options_for(*rule);
    auto report = m_copier.copy(from, to, options);
    if (!report && report.error().kind == ErrorKind::not_found && !moves_tag) {
      // The upstream let go of an intermediate digest: the newer job copies
      // what the tag names now, and these deliveries wait for it.
      end_without_copy([&](const db::Delivery& d) { return m_store.set_delivery_wait(d.id, newest.id); });
      continue;
    }
    if (!report) {
      record_failure(report.error().message);
      continue;
    }
    const CopyReport& r = *report;
    auto st = m_store.transaction([&]() -> Status {
      BW_TRY(auto f, m_store.finish_copy_job(job.id, r.digest, now_ms));
      (void)f;
      db::MirrorState row;
      BW_TRY(auto got, m_store.get_mirror(job.mirror));
      if (got) row = *got;
      row.mirror = job.mirror;
      row.upstream = job.upstream;
      row.last_copy = last_copy_json(r, job, now).dump();
      row.updated_at = now_ms;
      if (moves_tag) {
        row.upstream_digest = job.digest;
        row.mirror_digest = r.digest;
        row.state = "in-sync";
        row.last_error.clear();
        row.checked_at = now_ms;
      }
      BW_TRY(auto put, m_store.put_mirror(row));
      (void)put;
      BW_TRY(auto waiting, m_store.waiting_deliveries(job.id));
      for (const auto& d : waiting) {
        if (!moves_tag) {
          BW_TRY(auto w, m_store.set_delivery_wait(d.id, newest.id));
          (void)w;
          continue;
        }
        // A batch may hold changes of several mirrors: it waits for each.
        int64_t other = 0;
        json body = json::parse(d.payload, nullptr, false);
        if (body.is_object() && body.contains("changes") && body["changes"].is_array()) {
          for (const auto& c : body["changes"]) {
            if (!c.is_object() || !c.contains("mirror") || !c["mirror"].is_object()) continue;
            std::string ref = c["mirror"].value("ref", "");
            if (ref == job.mirror) continue;
            BW_TRY(auto more, m_store.pending_copy_jobs(ref));
            if (!more.empty()) other = more.back().id;
          }
        }
        if (other) {
          BW_TRY(auto w, m_store.set_delivery_wait(d.id, other));
          (void)w;
          continue;
        }
        BW_TRY(auto rel, m_store.release_delivery(d.id, released_payload(d.payload, job, r.digest)));
        (void)rel;
        ++stats.released;
      }
      return ok_status();
    });
    if (!st) {
      // The copy is made; recording it failed: the job runs again and finds it there.
      spdlog::error("copy {} -> {}: recording it failed: {}", job.upstream, job.mirror, st.error().message);
      continue;
    }
    if (r.already) {
      ++stats.already;
      count_copy("already");
    } else {
      ++stats.copied;
      count_copy("copied");
    }
    stats.bytes_uploaded += r.bytes_uploaded;
    count_bytes("uploaded", r.bytes_uploaded);
    count_bytes("mounted", r.bytes_mounted);
    count_bytes("skipped", r.bytes_skipped);
    spdlog::info("copied {} -> {} ({}): {} blob(s) uploaded ({} bytes), {} mounted, {} already there, {:.1f}s{}", job.upstream,
                 job.mirror, r.digest, r.blobs_uploaded, r.bytes_uploaded, r.blobs_mounted, r.blobs_skipped, r.seconds,
                 moves_tag ? "" : " (by digest; a newer copy moves the tag)");
  }
  if (stats.released > 0 && m_on_release) m_on_release();
  return stats;
}

}  // namespace bw::mirror
