// The SQLite store: watched references and their digests, the history of
// changes (events), and the outbox of deliveries with their attempts.
//
// One connection in WAL mode behind a mutex: every write goes through this
// object, so there is exactly one writer; readers (the HTTP API) share it.
// The schema version lives in PRAGMA user_version; open() migrates forward
// and refuses a database newer than this binary knows.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "util/result.h"
#include "util/time.h"

struct sqlite3;
struct sqlite3_stmt;

namespace bw::db {

constexpr int k_schema_version = 2;

struct RefState {
  std::string ref;         // normalised tag ref
  std::string digest;      // the tag's digest (an index digest for multi-arch)
  std::string media_type;
  std::map<std::string, std::string> platforms;  // "linux/amd64" -> digest
  int64_t last_checked = 0;  // unix ms, 0 = never
  int64_t last_changed = 0;
  int64_t next_check = 0;
  std::string last_error;
  std::string error_kind;
  int failures = 0;  // consecutive failed checks
};

struct Event {
  int64_t id = 0;
  std::string ref;
  std::string old_digest, new_digest;
  // platform -> {old, new}: the watched platforms whose digest moved.
  std::map<std::string, std::pair<std::string, std::string>> platforms;
  // "fired" (deliveries queued), "recorded" (index moved, no watched platform
  // did), "stale-pin" (a pinned base's tag moved), "unwatched" (no project).
  std::string outcome;
  std::string source;  // poll | webhook
  int64_t detected_at = 0;
  std::vector<std::string> deliveries;  // ids queued for it
};

enum class DeliveryState { pending, delivered, failed, dead };
const char* to_string(DeliveryState s);
std::optional<DeliveryState> parse_delivery_state(const std::string& s);

struct Delivery {
  std::string id;
  std::string trigger;
  std::string project;
  DeliveryState state = DeliveryState::pending;
  std::string payload;  // the exact body sent, fixed at the first attempt
  int attempts = 0;
  int64_t created_at = 0;
  int64_t next_attempt_at = 0;
  int64_t updated_at = 0;
  int64_t delivered_at = 0;
  int last_status = 0;  // HTTP status or exit code of the last attempt
  std::string last_error;
};

struct Attempt {
  std::string delivery_id;
  int64_t at = 0;
  int status = 0;
  std::string error;
  int64_t duration_ms = 0;
  std::string output_tail;  // command triggers: the end of the build log
  std::string pushed_digest;  // build triggers: the digest of the image they pushed, "" when none
};

class Store {
 public:
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Opens (creating if needed) and migrates. ":memory:" works for tests.
  static Result<std::unique_ptr<Store>> open(const std::string& path);
  int schema_version();

  // Runs `fn` in one transaction (BEGIN IMMEDIATE ... COMMIT); rolls back
  // when it returns an error. Other calls on this Store from inside `fn` are
  // allowed (the mutex is recursive).
  Status transaction(const std::function<Status()>& fn);

  // References.
  Result<std::optional<RefState>> get_ref(const std::string& ref);
  Result<std::vector<RefState>> list_refs();
  // The rows of `refs`, in that order; references without a row are left
  // out. One lookup by key each: a page of the API reads only its rows.
  Result<std::vector<RefState>> get_refs(const std::vector<std::string>& refs);
  // The references whose last check failed (last_error set), without
  // reading the rest of their rows.
  Result<std::set<std::string>> failing_refs();
  // Each reference's next_check, without reading the rest of its row.
  Result<std::map<std::string, int64_t>> next_checks();
  Status put_ref(const RefState& state);
  // A successful check that found what is stored: the check times move,
  // the error clears, the digests stay. not_found when there is no row.
  Status touch_ref(const std::string& ref, int64_t checked_at, int64_t next_check);
  Status set_ref_error(const std::string& ref, const std::string& kind, const std::string& message, int64_t checked_at,
                       int64_t next_check);
  Status delete_ref(const std::string& ref);

  // Events.
  Result<int64_t> add_event(const Event& event);
  Result<std::vector<Event>> list_events(int limit);

  // Outbox.
  Status add_delivery(const Delivery& d);
  // A pending delivery for (trigger, project) that has not been attempted
  // yet and is still waiting out its settle window: new changes join it.
  Result<std::optional<Delivery>> find_settling(const std::string& trigger, const std::string& project, int64_t now);
  Status update_settling(const std::string& id, const std::string& payload, int64_t next_attempt_at);
  Result<std::vector<Delivery>> due_deliveries(int64_t now, int limit);
  Result<std::optional<Delivery>> get_delivery(const std::string& id);
  Result<std::vector<Delivery>> list_deliveries(std::optional<DeliveryState> state, int limit);
  // Records an attempt and the delivery's new state in one transaction.
  Status record_attempt(const Attempt& attempt, DeliveryState new_state, int64_t next_attempt_at);
  Result<std::vector<Attempt>> list_attempts(const std::string& delivery_id);
  // Queues a delivery again (any state): due now, attempts kept. not_found when unknown.
  Status requeue(const std::string& id, int64_t now);
  Result<std::map<std::string, int64_t>> delivery_counts();
  // The earliest next_attempt_at of pending/failed deliveries, if any.
  Result<std::optional<int64_t>> next_due();

  // Small key/value state (last poll time and such).
  Status set_meta(const std::string& key, const std::string& value);
  Result<std::optional<std::string>> get_meta(const std::string& key);

 private:
  Store();
  Status exec(const char* sql);
  Status migrate();
  // The connection's prepared statement for `sql` (prepared on first use,
  // kept until close); nullptr when it does not compile. Call under m_mutex.
  sqlite3_stmt* prepare(const std::string& sql);

  struct Statements;
  std::unique_ptr<Statements> m_statements;
  sqlite3* m_db = nullptr;
  std::recursive_mutex m_mutex;
};

}  // namespace bw::db
