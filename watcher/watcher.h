// The scheduler and change detection. poll_once(now) is the step function:
// it resolves every due reference (bounded concurrency, one request per
// repo:tag however many projects use it), then applies the results one by
// one as the single writer: a baseline for first sight, an event for a moved
// digest, and, when a watched platform's digest moved, the deliveries it
// causes, all in one transaction.
#pragma once

#include <atomic>
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

  // Resolves the due references and applies the results. With `all`, every
  // reference is due (basewatch check). `dry_run` records nothing and queues
  // nothing.
  // With `sink`, each report goes there as soon as it is applied and is not
  // kept in PollStats::reports (serve keeps none; check prints as it goes),
  // so a cycle holds no per-reference state once a result is applied.
  using ReportSink = std::function<void(CheckReport&&)>;
  PollStats poll_once(TimePoint now, bool all = false, bool dry_run = false, const ReportSink& sink = nullptr);

  // Makes `ref` (a tag ref; "" = all) due now; `source` marks the changes it
  // finds ("webhook" for inbound notifications). A reference the model does
  // not watch is ignored. Thread-safe.
  void request_check(const std::string& ref, const std::string& source);
  // When the next reference falls due (for the serve loop's sleep).
  TimePoint next_due(TimePoint now);

  TimePoint last_poll() const { return from_unix_ms(m_last_poll.load()); }

  // The gate of the cluster's leader (cluster/leadership.h, acting()):
  // while it is closed, poll_once sends no registry request and records
  // nothing; a cycle under way stops taking references when it closes.
  // Unset, it is always open (basewatch check, SQLite). Set it before
  // polling starts.
  void set_gate(std::function<bool()> open) { m_gate = std::move(open); }
  // Reads each reference's next check and the last poll time from the
  // store again: what the leader before this one wrote (on taking the
  // lease, and now and then on a follower, whose API shows them).
  Status resync();

 private:
  struct Due {
    const WatchItem* item;  // into the model this poll holds
    std::string source;
  };
  // A successful check's row, written with others in one transaction.
  struct PendingWrite {
    db::RefState state;
    bool touch = false;  // only the check times move (nothing new to store)
  };
  using Stored = Result<std::optional<db::RefState>>;
  CheckReport apply(const config::Config& cfg, const WatchItem& item, const Result<registry::Resolved>& result,
                    const Stored& stored, const std::string& source, TimePoint now, bool dry_run,
                    std::vector<PendingWrite>& batch);
  void flush(std::vector<PendingWrite>& batch, TimePoint now);
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
  std::atomic<int64_t> m_last_poll{0};
  std::function<bool()> m_gate;
};

// The delivery body of docs/product.md for one project (or a watch entry
// when project is null) and its batch of changes.
std::string make_payload(const std::string& delivery_id, TimePoint created_at, const Project* project,
                         const std::string& changes_json, const std::vector<std::string>& plan);

}  // namespace bw::watcher
