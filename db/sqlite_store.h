// The SQLite engine of the store (the default): one file in WAL mode. One
// connection behind a recursive mutex writes (exactly one writer: every write
// goes through this object); the reads the API and the watcher's workers make
// go to a few read-only connections of their own, so a page of the API never
// waits for a batch being written (WAL readers see the last commit). A thread
// inside a transaction reads on the writer, and sees its own writes. The schema
// version lives in PRAGMA user_version; open() migrates forward and refuses a
// database newer than this binary knows. Statements are prepared once per
// connection and reset after use.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "db/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace bw::db {

class SqliteStore final : public Store {
 public:
  ~SqliteStore() override;

  // Opens (creating if needed) the file at `path` and migrates it to
  // `schema` (k_schema_version but in tests of the migrations). ":memory:"
  // works for tests.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path, int schema = k_schema_version);

  int schema_version() override;
  Status transaction(const std::function<Status()>& fn) override;
  // One instance per file: a fence is refused (epoch 0 is a no-op).
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
  Status finish_copy() override;
  Result<std::map<std::string, int64_t>> row_counts() override;

 private:
  SqliteStore();
  Status exec(const char* sql);
  Status migrate(int schema);
  // The connection's prepared statement for `sql` (prepared on first use,
  // kept until close); nullptr when it does not compile. Call under m_mutex.
  sqlite3_stmt* prepare(const std::string& sql);

  struct Statements;
  std::unique_ptr<Statements> m_statements;
  sqlite3* m_db = nullptr;
  std::recursive_mutex m_mutex;
  std::atomic<std::thread::id> m_txn_thread{};  // the thread inside transaction(), if any

  // A read-only connection with its own statements.
  struct ReadConn;
  std::vector<std::unique_ptr<ReadConn>> m_readers;  // empty for ":memory:"
  std::atomic<size_t> m_next_reader{0};
  // Where a read runs: a free read connection (locked), or the writer (under
  // m_mutex) inside a transaction or when there is no read connection.
  class Reader;
  Reader reader();
  Status open_readers(const std::string& path);
};

}  // namespace bw::db
