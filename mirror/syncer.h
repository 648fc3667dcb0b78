// The copier: carries out the durable copy jobs the watcher writes.
// sync_once(now) is the step function (serve runs it on its own thread,
// `basewatch check` once after its poll): it copies each due job's upstream
// digest into its mirror, records the outcome, and releases the deliveries
// that waited for it.
//
// Per mirror, jobs run oldest first; only the newest pending job of a mirror
// moves its tag (an older one is copied by digest, and its deliveries then
// wait for the newest), so the tag never goes back to older content. A job
// that fails stays pending with capped exponential backoff (retry.initial
// doubling to retry.max): the copy survives restarts and SIGKILL, and blobs
// already copied are skipped the next time (a HEAD each).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "db/store.h"
#include "mirror/copy.h"
#include "registry/client.h"
#include "util/time.h"

namespace bw::mirror {

struct SyncStats {
  int copied = 0;     // jobs done by a copy
  int already = 0;    // jobs done because the mirror held it already
  int failed = 0;     // jobs that failed this time (they stay pending)
  int released = 0;   // deliveries released
  int64_t bytes_uploaded = 0;
};

class Syncer {
 public:
  Syncer(std::shared_ptr<const config::Config> cfg, db::Store& store, registry::Client& client, const ClockSource& clock);

  void reload(std::shared_ptr<const config::Config> cfg);

  // Runs the jobs due at `now` (at most `limit`). Never throws; errors land
  // in the jobs and the mirrors' rows.
  SyncStats sync_once(TimePoint now, int limit = 16);

  // When the next job falls due, if any.
  std::optional<TimePoint> next_due();

  // The copy options a rule asks for.
  static CopyOptions options_for(const config::MirrorConfig& rule);

  // Called after deliveries were released (serve wakes the dispatcher).
  void on_release(std::function<void()> fn) { m_on_release = std::move(fn); }
  // Asked before each job: false stops the step (another instance leads).
  void set_gate(std::function<bool()> gate) { m_gate = std::move(gate); }

 private:
  const config::MirrorConfig* rule_for(const config::Config& cfg, const std::string& mirror) const;
  Millis backoff(const config::Config& cfg, int attempts) const;
  // The payload a waiting delivery is sent with once `job` is done: each
  // change that reached the project through this mirror names the digest
  // the mirror's tag now holds.
  std::string released_payload(const std::string& payload, const db::CopyJob& job, const std::string& mirror_digest) const;

  std::shared_ptr<const config::Config> m_cfg;
  mutable std::mutex m_mutex;  // m_cfg
  db::Store& m_store;
  registry::Client& m_client;
  const ClockSource& m_clock;
  Copier m_copier;
  std::function<void()> m_on_release;
  std::function<bool()> m_gate;
};

}  // namespace bw::mirror
