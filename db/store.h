// The store: watched references and their digests, the history of changes
// (events), and the outbox of deliveries with their attempts.
//
// An interface with one engine per database: SQLite (sqlite_store.h, the
// default: one file, nothing to install) and PostgreSQL (pg_store.h: a
// server several instances can share). Store::open picks the engine from
// the `database:` value. The callers (watcher, dispatcher, API, commands)
// see only this interface; tests/db runs one contract suite against every
// engine, so an engine's answers are the interface's, not its own.
//
// Every engine:
//   - is safe to call from several threads (the API reads while the watcher
//     and the dispatcher write); transaction() holds the store for its
//     duration, and calls from inside it on the same thread join it;
//   - keeps a schema version, migrates older databases forward on open, and
//     refuses a database newer than k_schema_version with the same message
//     (newer_schema_message, ErrorKind::invalid);
//   - returns expected failures as values (ErrorKind::not_found for "no such
//     row" where a method says so, ErrorKind::io for database trouble).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "util/result.h"
#include "util/time.h"

namespace bw::db {

// The version of the logical schema (tables, columns, meanings) this binary
// reads and writes; every engine's migrations end at it.
constexpr int k_schema_version = 3;

// Every table of the logical schema, parents before the tables that refer
// to them: what `basewatch db copy` copies, in this order. Each engine holds
// exactly these (plus its own bookkeeping, such as basewatch_schema), with
// the same column names (tests/db checks both).
inline constexpr const char* k_tables[] = {"refs", "events", "deliveries", "attempts", "meta", "mirrors", "copy_jobs"};

// Rows of one table as text, engine-neutral: integers in decimal, NULL as
// nullopt. `columns` names each value of a row, in order.
struct TableRows {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
};

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
  // A copy job this delivery waits for (0: none): a project that builds FROM
  // a mirror is rebuilt once the mirror holds the new content. Not due while
  // set; release_delivery clears it.
  int64_t wait_job = 0;
};

struct Attempt {
  std::string delivery_id;
  int64_t at = 0;
  int status = 0;
  std::string error;
  int64_t duration_ms = 0;
  std::string output_tail;  // command triggers: the end of the build log
  std::string pushed_digest;  // build triggers: the digest of the image they pushed, "" when none (schema 3)
};

// A mirrored reference: one upstream tag's copy in the team's registry.
struct MirrorState {
  std::string mirror;           // normalised tag ref of the copy (the key)
  std::string upstream;         // normalised tag ref it copies
  std::string upstream_digest;  // the upstream tag's digest when last seen
  std::string mirror_digest;    // what the mirror's tag names when last seen or written; "" when absent
  std::string state;            // in-sync | copying | failed | drift | missing
  std::string last_copy;        // JSON of the last finished copy (at, bytes, blobs, seconds), "" when none
  std::string last_error;
  int64_t checked_at = 0;       // the last comparison of the two
  int64_t updated_at = 0;
};

// A durable copy job: copy `upstream` at `digest` into `mirror`. Written in
// the same transaction as the event that calls for it; done, or retried
// with backoff (it survives restarts and SIGKILL).
struct CopyJob {
  int64_t id = 0;
  std::string mirror, upstream;  // tag refs
  std::string digest;            // the upstream digest to copy
  std::string reason;            // change | recorded | baseline | missing | drift | sync | manual
  std::string state = "pending"; // pending | done
  int attempts = 0;
  int64_t created_at = 0, next_attempt_at = 0, updated_at = 0;
  std::string last_error;
  std::string mirror_digest;     // done: what the mirror tag names (another digest for a platform subset)
};

// A leader's fence (see Store::set_fence): the epoch of the cluster's
// lease the leader holds, and how long one of its transactions may sit idle
// on the server before the server ends it (a leader stopped in the middle
// of one must not keep the lease row locked).
struct Fence {
  int64_t epoch = 0;  // 0: no fence
  Millis idle_limit{0};
};

class Store {
 public:
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Opens (creating if needed) and migrates the database that `database`
  // names: a postgresql:// or postgres:// URI (PostgreSQL), else a file
  // path (SQLite; ":memory:" works for tests). Errors of kind invalid are
  // the user's to fix (a bad URI, refused credentials, a database of a
  // newer schema); others are operational (the server cannot be reached).
  static Result<std::unique_ptr<Store>> open(const std::string& database);

  // The schema version the database holds (k_schema_version once open), -1
  // when it cannot be read.
  virtual int schema_version() = 0;

  // Runs `fn` in one transaction; rolls back when it returns an error (and
  // returns that error), commits otherwise. Other calls on this Store from
  // inside `fn` (on the same thread) are allowed and join it, transaction()
  // included; other threads wait until it ends.
  virtual Status transaction(const std::function<Status()>& fn) = 0;

  // Fencing, for the leader of several instances on one database
  // (PostgreSQL; db/cluster.h keeps the lease). With a fence set, every
  // write through this Store object first checks, inside the write's own
  // transaction, that the cluster's lease still has fence.epoch, and keeps
  // the lease row locked against a takeover until that transaction ends:
  // a write commits only while its epoch holds the lease. After the lease
  // moved on, writes fail with ErrorKind::fenced and change nothing; reads
  // are not checked. Epoch 0 lifts the fence. The SQLite engine serves one
  // instance and refuses a fence (ErrorKind::invalid); epoch 0 is a no-op.
  virtual Status set_fence(const Fence& fence) = 0;

  // References.
  virtual Result<std::optional<RefState>> get_ref(const std::string& ref) = 0;
  // Every row, ordered by ref.
  virtual Result<std::vector<RefState>> list_refs() = 0;
  // The rows of `refs`, in that order; references without a row are left
  // out. One lookup by key each: a page of the API reads only its rows.
  virtual Result<std::vector<RefState>> get_refs(const std::vector<std::string>& refs) = 0;
  // The references whose last check failed (last_error set), without
  // reading the rest of their rows.
  virtual Result<std::set<std::string>> failing_refs() = 0;
  // Each reference's next_check, without reading the rest of its row.
  virtual Result<std::map<std::string, int64_t>> next_checks() = 0;
  // Inserts or replaces the whole row.
  virtual Status put_ref(const RefState& state) = 0;
  // A successful check that found what is stored: the check times move,
  // the error clears, the digests stay. not_found when there is no row.
  virtual Status touch_ref(const std::string& ref, int64_t checked_at, int64_t next_check) = 0;
  // A failed check: the error and the check times are set and failures
  // counts up; digests stay. Creates a row (failures 1) when there is none.
  virtual Status set_ref_error(const std::string& ref, const std::string& kind, const std::string& message, int64_t checked_at,
                               int64_t next_check) = 0;
  virtual Status delete_ref(const std::string& ref) = 0;

  // Events. add_event ignores event.id and returns the new id (increasing).
  virtual Result<int64_t> add_event(const Event& event) = 0;
  // The newest `limit` events, newest (detected_at, then id) first.
  virtual Result<std::vector<Event>> list_events(int limit) = 0;

  // Outbox.
  // Inserts id, trigger, project, state, payload, attempts, created_at and
  // next_attempt_at (updated_at = created_at; the rest start empty).
  virtual Status add_delivery(const Delivery& d) = 0;
  // A pending delivery for (trigger, project) that has not been attempted
  // yet and is still waiting out its settle window: new changes join it.
  // The oldest when there are several.
  virtual Result<std::optional<Delivery>> find_settling(const std::string& trigger, const std::string& project,
                                                        int64_t now) = 0;
  // New payload and due time of a delivery not attempted yet (else nothing).
  virtual Status update_settling(const std::string& id, const std::string& payload, int64_t next_attempt_at) = 0;
  // Pending and failed deliveries due at `now`, by next_attempt_at then
  // created_at, at most `limit`.
  virtual Result<std::vector<Delivery>> due_deliveries(int64_t now, int limit) = 0;
  virtual Result<std::optional<Delivery>> get_delivery(const std::string& id) = 0;
  // Newest (created_at, then id) first; all states when `state` is empty.
  virtual Result<std::vector<Delivery>> list_deliveries(std::optional<DeliveryState> state, int limit) = 0;
  // Records an attempt and the delivery's new state in one transaction:
  // attempts + 1, next_attempt_at, updated_at = attempt.at, last_status,
  // last_error, and delivered_at = attempt.at when the new state is delivered.
  virtual Status record_attempt(const Attempt& attempt, DeliveryState new_state, int64_t next_attempt_at) = 0;
  // The delivery's attempts, oldest first.
  virtual Result<std::vector<Attempt>> list_attempts(const std::string& delivery_id) = 0;
  // Queues a delivery again (any state): due now, attempts kept; pending
  // when never attempted, else failed. not_found when unknown.
  virtual Status requeue(const std::string& id, int64_t now) = 0;
  // Deliveries per state; all four states are present.
  virtual Result<std::map<std::string, int64_t>> delivery_counts() = 0;
  // The earliest next_attempt_at of pending/failed deliveries, if any.
  virtual Result<std::optional<int64_t>> next_due() = 0;

  // Deliveries waiting for a copy job (Delivery::wait_job). The job's id is
  // set at add_delivery, or later with set_delivery_wait (a change joining
  // a settling delivery moves it to the newer job).
  virtual Status set_delivery_wait(const std::string& id, int64_t job) = 0;
  // The deliveries that wait for `job`, oldest first.
  virtual Result<std::vector<Delivery>> waiting_deliveries(int64_t job) = 0;
  // Ends a delivery's wait: wait_job 0, and the payload it will be sent
  // with (only while not attempted). not_found when unknown.
  virtual Status release_delivery(const std::string& id, const std::string& payload) = 0;
  // How many deliveries wait for a copy, per mirror (of their job).
  virtual Result<std::map<std::string, int64_t>> waiting_by_mirror() = 0;

  // Mirrors: one row per mirrored reference.
  virtual Status put_mirror(const MirrorState& m) = 0;
  virtual Result<std::optional<MirrorState>> get_mirror(const std::string& mirror) = 0;
  // Every row, ordered by mirror.
  virtual Result<std::vector<MirrorState>> list_mirrors() = 0;
  virtual Status delete_mirror(const std::string& mirror) = 0;

  // Copy jobs. add_copy_job ignores job.id and returns the new id (increasing).
  virtual Result<int64_t> add_copy_job(const CopyJob& job) = 0;
  virtual Result<std::optional<CopyJob>> get_copy_job(int64_t id) = 0;
  // Pending jobs due at `now`, oldest (id) first, at most `limit`.
  virtual Result<std::vector<CopyJob>> due_copy_jobs(int64_t now, int limit) = 0;
  // Pending jobs (due or waiting out a backoff), oldest first; of one mirror when given.
  virtual Result<std::vector<CopyJob>> pending_copy_jobs(const std::string& mirror = "") = 0;
  // A failed attempt: attempts + 1, the error, the next try. not_found when unknown.
  virtual Status fail_copy_job(int64_t id, const std::string& error, int64_t now, int64_t next_attempt_at) = 0;
  // Done: state done, attempts + 1, what the mirror tag names. not_found when unknown.
  virtual Status finish_copy_job(int64_t id, const std::string& mirror_digest, int64_t now) = 0;
  // The earliest next_attempt_at of pending jobs, if any.
  virtual Result<std::optional<int64_t>> next_copy_due() = 0;

  // Small key/value state (last poll time and such).
  virtual Status set_meta(const std::string& key, const std::string& value) = 0;
  virtual Result<std::optional<std::string>> get_meta(const std::string& key) = 0;

  // The whole state, table by table (db/copy.h uses these; nothing else
  // should). read_rows calls `fn` with every row of `table` (one of
  // k_tables), at most `batch` at a time, all columns; write_rows inserts
  // rows exactly as given, ids included. After writing, finish_copy moves
  // the engine's id generators past the highest id written, so new events
  // and attempts never reuse a copied id.
  virtual Status read_rows(const std::string& table, size_t batch, const std::function<Status(const TableRows&)>& fn) = 0;
  virtual Status write_rows(const std::string& table, const TableRows& rows) = 0;
  virtual Status finish_copy() = 0;
  // Rows per table of k_tables.
  virtual Result<std::map<std::string, int64_t>> row_counts() = 0;

 protected:
  Store() = default;
};

// The message every engine refuses a newer database with.
std::string newer_schema_message(int version);

}  // namespace bw::db
