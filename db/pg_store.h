// The PostgreSQL engine of the store (libpq): a server that several
// basewatch instances can share. `database:` is a connection URI,
// postgresql://user@host:port/dbname?sslmode=...&passfile=..., which libpq
// parses itself.
//
// As the SQLite engine: one connection behind a recursive mutex (calls are
// serialised; transaction() holds it until it ends, calls from inside it
// join it), statements prepared once per connection (PQprepare, named by
// their SQL), and the schema version in a table of its own
// (basewatch_schema) with forward migrations run under an advisory lock, so
// two instances starting together migrate once.
//
// A call that fails because the connection broke (the server restarted, a
// network cut) is retried once on a fresh connection when it is not inside
// a transaction; inside one, the transaction fails (its writes are rolled
// back by the server) and the next call outside reconnects.
//
// Errors never hold the URI's password: the URI is shown through
// redact_database and libpq's messages lose any password they quote.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "db/store.h"

namespace bw::db {

namespace pg {
class Rows;
}

class PgStore final : public Store {
 public:
  ~PgStore() override;

  // Connects and migrates to `schema` (k_schema_version but in tests of the
  // migrations). Errors: ErrorKind::invalid for what the user must fix (a
  // URI libpq cannot read, a server that answers but refuses us: a wrong
  // password, an unknown role or database, pg_hba; a newer schema),
  // ErrorKind::network for a server that cannot be reached (or does not
  // accept connections yet), ErrorKind::io for the rest.
  static Result<std::unique_ptr<PgStore>> open(const std::string& uri, int schema = k_schema_version);

  int schema_version() override;
  Status transaction(const std::function<Status()>& fn) override;
  // The fence check is one statement after BEGIN: SELECT the lease row
  // (basewatch_lease) with this epoch FOR KEY SHARE. Taking the lease over
  // locks the row FOR UPDATE (pg_cluster.h), which waits for every fenced
  // transaction holding it, and a transaction that begins after the
  // takeover finds another epoch. The lease's renewal is an UPDATE of
  // non-key columns, which KEY SHARE does not block. A fenced session also
  // gets idle_in_transaction_session_timeout = fence.idle_limit, so a
  // leader stopped inside a transaction (SIGSTOP) cannot hold the row.
  Status set_fence(const Fence& fence) override;

  Result<std::optional<RefState>> get_ref(const std::string& ref) override;
  Result<std::vector<RefState>> list_refs() override;
  Result<std::vector<RefState>> get_refs(const std::vector<std::string>& refs) override;
  Result<std::set<std::string>> failing_refs() override;
  Result<std::map<std::string, int64_t>> next_checks() override;
  Status put_ref(const RefState& state) override;
  Status touch_ref(const std::string& ref, int64_t checked_at, int64_t next_check) override;
  Status set_ref_error(const std::string& ref, const std::string& kind, const std::string& message, int64_t checked_at,
                       int64_t next_check) override;
  Status delete_ref(const std::string& ref) override;

  Result<int64_t> add_event(const Event& event) override;
  Result<std::vector<Event>> list_events(int limit) override;

  Status add_delivery(const Delivery& d) override;
  Result<std::optional<Delivery>> find_settling(const std::string& trigger, const std::string& project, int64_t now) override;
  Status update_settling(const std::string& id, const std::string& payload, int64_t next_attempt_at) override;
  Result<std::vector<Delivery>> due_deliveries(int64_t now, int limit) override;
  Result<std::optional<Delivery>> get_delivery(const std::string& id) override;
  Result<std::vector<Delivery>> list_deliveries(std::optional<DeliveryState> state, int limit) override;
  Status record_attempt(const Attempt& attempt, DeliveryState new_state, int64_t next_attempt_at) override;
  Result<std::vector<Attempt>> list_attempts(const std::string& delivery_id) override;
  Status requeue(const std::string& id, int64_t now) override;
  Result<std::map<std::string, int64_t>> delivery_counts() override;
  Result<std::optional<int64_t>> next_due() override;

  Status set_delivery_wait(const std::string& id, int64_t job) override;
  Result<std::vector<Delivery>> waiting_deliveries(int64_t job) override;
  Status release_delivery(const std::string& id, const std::string& payload) override;
  Result<std::map<std::string, int64_t>> waiting_by_mirror() override;

  Status put_mirror(const MirrorState& m) override;
  Result<std::optional<MirrorState>> get_mirror(const std::string& mirror) override;
  Result<std::vector<MirrorState>> list_mirrors() override;
  Status delete_mirror(const std::string& mirror) override;

  Result<int64_t> add_copy_job(const CopyJob& job) override;
  Result<std::optional<CopyJob>> get_copy_job(int64_t id) override;
  Result<std::vector<CopyJob>> due_copy_jobs(int64_t now, int limit) override;
  Result<std::vector<CopyJob>> pending_copy_jobs(const std::string& mirror) override;
  Status fail_copy_job(int64_t id, const std::string& error, int64_t now, int64_t next_attempt_at) override;
  Status finish_copy_job(int64_t id, const std::string& mirror_digest, int64_t now) override;
  Result<std::optional<int64_t>> next_copy_due() override;

  Status set_meta(const std::string& key, const std::string& value) override;
  Result<std::optional<std::string>> get_meta(const std::string& key) override;

  Status read_rows(const std::string& table, size_t batch, const std::function<Status(const TableRows&)>& fn) override;
  Status write_rows(const std::string& table, const TableRows& rows) override;
  // Sets each identity column's sequence past the highest id in its table.
  Status finish_copy() override;
  Result<std::map<std::string, int64_t>> row_counts() override;

  // How many times a fresh connection replaced a broken one (tests, logs).
  int reconnects();

 private:
  using Rows = pg::Rows;
  struct Connection;
  explicit PgStore(std::string uri);

  // Runs `sql` (prepared on first use on this connection) with text
  // parameters; retried once on a fresh connection when the connection
  // broke outside a transaction. `what` names the call in errors. Takes
  // m_mutex itself.
  using Params = std::vector<std::optional<std::string>>;  // nullopt is NULL
  Result<Rows> run(const char* what, const std::string& sql, const Params& params = {});
  // run() for a read: on the read connection unless this thread is inside
  // a transaction. Retried once on a fresh connection the same way.
  Result<Rows> read(const char* what, const std::string& sql, const Params& params = {});
  // Prepares (once per connection) and runs `sql` on `c`; *broken says the
  // connection failed under it.
  Result<Rows> execute(Connection& c, const char* what, const std::string& sql, const Params& params, bool* broken);
  // A simple-protocol statement (BEGIN, COMMIT, migrations, cursors); no
  // retry. query() returns its rows.
  Status exec(const char* what, const std::string& sql);
  Result<Rows> query(const char* what, const std::string& sql);
  // A working connection: the current one, or a new one when there is none
  // or it broke (never inside a transaction).
  Status connect();
  Status migrate(int schema);
  // Runs a lone write: as it is without a fence (or inside a transaction,
  // which checked the fence when it began), else in a transaction of its
  // own that checks the fence first.
  template <typename F>
  auto fenced(F&& write) -> decltype(write());
  Error error(const char* what, const std::string& detail) const;

  std::string m_uri;
  std::vector<std::string> m_secrets;  // the URI's passwords, never shown
  std::unique_ptr<Connection> m_conn;
  int m_tx_depth = 0;  // transactions entered on the thread holding m_mutex
  std::atomic<std::thread::id> m_txn_thread{};  // the thread inside transaction(), if any
  // The reads made outside a transaction (the API's pages, the watcher's row
  // reads) go to connections of their own, so a page does not wait for a
  // batch being written on the writer's; a transaction's own thread reads
  // on its connection and sees its writes. Four, as SQLite's readers: with
  // one, sixteen API clients queued behind each other's round trips (p99
  // 1 s on /v1/status during a 100,000-reference cycle, bench/scale). Each
  // is opened on first use, the first free one is taken (one caller at a
  // time uses the first only), and they are taken in turn when all are busy.
  struct ReadSlot {
    std::mutex mutex;
    std::unique_ptr<Connection> conn;
  };
  static constexpr size_t k_readers = 4;
  std::array<ReadSlot, k_readers> m_readers;
  std::atomic<size_t> m_next_reader{0};
  Fence m_fence;        // epoch 0: none
  std::string m_session;  // SET statements every connection of this store runs first
  std::atomic<int> m_reconnects{0};  // of either connection
  std::recursive_mutex m_mutex;
};

}  // namespace bw::db
