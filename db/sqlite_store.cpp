#include "db/sqlite_store.h"

#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <unordered_map>

namespace bw::db {

using json = nlohmann::json;

namespace {

// A statement from the store's cache, with positional binds; reset (not
// finalised) on scope exit, which also ends its read of the database.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}
  ~Stmt() {
    if (m_stmt) {
      sqlite3_reset(m_stmt);
      sqlite3_clear_bindings(m_stmt);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool prepared() const { return m_stmt != nullptr; }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(m_stmt, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(m_stmt, i, v);
    return *this;
  }
  Stmt& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int step() { return m_stmt ? sqlite3_step(m_stmt) : SQLITE_MISUSE; }
  std::string text(int col) const {
    auto p = sqlite3_column_text(m_stmt, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(m_stmt, col))) : "";
  }
  int64_t i64(int col) const { return sqlite3_column_int64(m_stmt, col); }
  bool is_null(int col) const { return sqlite3_column_type(m_stmt, col) == SQLITE_NULL; }
  Error error(const std::string& what) const {
    return make_error(ErrorKind::io, "database: " + what + ": " + sqlite3_errmsg(m_db));
  }

 private:
  sqlite3* m_db;
  sqlite3_stmt* m_stmt;
};

Status done(Stmt& s, const std::string& what) {
  if (!s.prepared()) return s.error(what);
  int rc = s.step();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return s.error(what);
  return ok_status();
}

// done(), and not_found with `missing` when the statement changed no row.
Status changed_one(sqlite3* db, Stmt& s, const std::string& what, const std::string& missing) {
  BW_TRY(auto x, done(s, what));
  (void)x;
  if (sqlite3_changes(db) == 0) return make_error(ErrorKind::not_found, missing);
  return ok_status();
}

std::string platforms_to_json(const std::map<std::string, std::string>& m) { return json(m).dump(); }

std::map<std::string, std::string> platforms_from_json(const std::string& s) {
  std::map<std::string, std::string> out;
  if (s.empty()) return out;
  auto j = json::parse(s, nullptr, false);
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) {
      if (v.is_string()) out[k] = v.get<std::string>();
    }
  }
  return out;
}

const char* k_ref_columns = "ref, digest, media_type, platforms, last_checked, last_changed, next_check, last_error, error_kind, failures";

RefState read_ref(const Stmt& s) {
  RefState r;
  r.ref = s.text(0);
  r.digest = s.text(1);
  r.media_type = s.text(2);
  r.platforms = platforms_from_json(s.text(3));
  r.last_checked = s.i64(4);
  r.last_changed = s.i64(5);
  r.next_check = s.i64(6);
  r.last_error = s.text(7);
  r.error_kind = s.text(8);
  r.failures = static_cast<int>(s.i64(9));
  return r;
}

const char* k_delivery_columns =
    "id, trigger, project, state, payload, attempts, created_at, next_attempt_at, updated_at, delivered_at, last_status, last_error, "
    "wait_job";

Delivery read_delivery(const Stmt& s) {
  Delivery d;
  d.id = s.text(0);
  d.trigger = s.text(1);
  d.project = s.text(2);
  d.state = parse_delivery_state(s.text(3)).value_or(DeliveryState::pending);
  d.payload = s.text(4);
  d.attempts = static_cast<int>(s.i64(5));
  d.created_at = s.i64(6);
  d.next_attempt_at = s.i64(7);
  d.updated_at = s.i64(8);
  d.delivered_at = s.i64(9);
  d.last_status = static_cast<int>(s.i64(10));
  d.last_error = s.text(11);
  d.wait_job = s.i64(12);
  return d;
}

const char* k_mirror_columns =
    "mirror, upstream, upstream_digest, mirror_digest, state, last_copy, last_error, checked_at, updated_at";

MirrorState read_mirror(const Stmt& s) {
  MirrorState m;
  m.mirror = s.text(0);
  m.upstream = s.text(1);
  m.upstream_digest = s.text(2);
  m.mirror_digest = s.text(3);
  m.state = s.text(4);
  m.last_copy = s.text(5);
  m.last_error = s.text(6);
  m.checked_at = s.i64(7);
  m.updated_at = s.i64(8);
  return m;
}

const char* k_job_columns =
    "id, mirror, upstream, digest, reason, state, attempts, created_at, next_attempt_at, updated_at, last_error, mirror_digest";

CopyJob read_job(const Stmt& s) {
  CopyJob j;
  j.id = s.i64(0);
  j.mirror = s.text(1);
  j.upstream = s.text(2);
  j.digest = s.text(3);
  j.reason = s.text(4);
  j.state = s.text(5);
  j.attempts = static_cast<int>(s.i64(6));
  j.created_at = s.i64(7);
  j.next_attempt_at = s.i64(8);
  j.updated_at = s.i64(9);
  j.last_error = s.text(10);
  j.mirror_digest = s.text(11);
  return j;
}

// Migrations: index i takes the schema from version i to i+1. Never edit a
// released step; append a new one.
const char* const k_migrations[] = {
    R"sql(
CREATE TABLE refs (
  ref TEXT PRIMARY KEY,
  digest TEXT NOT NULL DEFAULT '',
  media_type TEXT NOT NULL DEFAULT '',
  platforms TEXT NOT NULL DEFAULT '{}',
  last_checked INTEGER NOT NULL DEFAULT 0,
  last_changed INTEGER NOT NULL DEFAULT 0,
  next_check INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  error_kind TEXT NOT NULL DEFAULT '',
  failures INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ref TEXT NOT NULL,
  old_digest TEXT NOT NULL,
  new_digest TEXT NOT NULL,
  platforms TEXT NOT NULL DEFAULT '{}',
  outcome TEXT NOT NULL,
  source TEXT NOT NULL,
  detected_at INTEGER NOT NULL,
  deliveries TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX events_ref ON events(ref, detected_at);
CREATE TABLE deliveries (
  id TEXT PRIMARY KEY,
  trigger TEXT NOT NULL,
  project TEXT NOT NULL,
  state TEXT NOT NULL,
  payload TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  delivered_at INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
CREATE TABLE attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  delivery_id TEXT NOT NULL REFERENCES deliveries(id),
  at INTEGER NOT NULL,
  status INTEGER NOT NULL,
  error TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  output_tail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql",
    // 2: mirrors, their copy jobs, and deliveries that wait for a copy.
    R"sql(
CREATE TABLE mirrors (
  mirror TEXT PRIMARY KEY,
  upstream TEXT NOT NULL,
  upstream_digest TEXT NOT NULL DEFAULT '',
  mirror_digest TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'missing',
  last_copy TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '',
  checked_at INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE copy_jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  mirror TEXT NOT NULL,
  upstream TEXT NOT NULL,
  digest TEXT NOT NULL,
  reason TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_error TEXT NOT NULL DEFAULT '',
  mirror_digest TEXT NOT NULL DEFAULT ''
);
CREATE INDEX copy_jobs_due ON copy_jobs(state, next_attempt_at);
CREATE INDEX copy_jobs_mirror ON copy_jobs(mirror, state);
ALTER TABLE deliveries ADD COLUMN wait_job INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_wait ON deliveries(wait_job);
)sql",
    // 3: build triggers record the digest of the image they pushed.
    R"sql(
ALTER TABLE attempts ADD COLUMN pushed_digest TEXT NOT NULL DEFAULT '';
)sql",
};
static_assert(std::size(k_migrations) == k_schema_version, "one SQLite migration per schema version");

}  // namespace

struct SqliteStore::Statements {
  std::unordered_map<std::string, sqlite3_stmt*> by_sql;
  // The statement for `sql` on `db`, prepared on first use (parsing the SQL
  // was a third of the CPU an unchanged poll cycle spent in SQLite), kept
  // until close; nullptr when it does not compile.
  sqlite3_stmt* get(sqlite3* db, const std::string& sql) {
    if (auto it = by_sql.find(sql); it != by_sql.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return nullptr;
    }
    by_sql.emplace(sql, stmt);
    return stmt;
  }
  ~Statements() {
    for (auto& [sql, stmt] : by_sql) sqlite3_finalize(stmt);
  }
};

struct SqliteStore::ReadConn {
  sqlite3* db = nullptr;
  Statements statements;
  std::mutex mutex;
  ~ReadConn() {
    for (auto& [sql, stmt] : statements.by_sql) sqlite3_finalize(stmt);
    statements.by_sql.clear();
    if (db) sqlite3_close_v2(db);
  }
};

class SqliteStore::Reader {
 public:
  Reader(SqliteStore& store, ReadConn* conn, std::unique_lock<std::mutex> read_lock)
      : m_store(store), m_conn(conn), m_read_lock(std::move(read_lock)) {}
  explicit Reader(SqliteStore& store) : m_store(store), m_write_lock(store.m_mutex) {}
  sqlite3* db() const { return m_conn ? m_conn->db : m_store.m_db; }
  sqlite3_stmt* prepare(const std::string& sql) {
    return m_conn ? m_conn->statements.get(m_conn->db, sql) : m_store.prepare(sql);
  }

 private:
  SqliteStore& m_store;
  ReadConn* m_conn = nullptr;
  std::unique_lock<std::mutex> m_read_lock;
  std::unique_lock<std::recursive_mutex> m_write_lock;
};

SqliteStore::Reader SqliteStore::reader() {
  if (m_readers.empty() || m_txn_thread.load() == std::this_thread::get_id()) return Reader(*this);
  // A free one if there is; else wait for the next in turn.
  size_t start = m_next_reader++;
  for (size_t i = 0; i < m_readers.size(); ++i) {
    ReadConn* c = m_readers[(start + i) % m_readers.size()].get();
    std::unique_lock lock(c->mutex, std::try_to_lock);
    if (lock.owns_lock()) return Reader(*this, c, std::move(lock));
  }
  ReadConn* c = m_readers[start % m_readers.size()].get();
  return Reader(*this, c, std::unique_lock(c->mutex));
}

Status SqliteStore::open_readers(const std::string& path) {
  // Four: the API's pages and the workers' reads seldom need more at once.
  constexpr int k_readers = 4;
  for (int i = 0; i < k_readers; ++i) {
    auto c = std::make_unique<ReadConn>();
    if (sqlite3_open_v2(path.c_str(), &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
      std::string msg = c->db ? sqlite3_errmsg(c->db) : "out of memory";
      return make_error(ErrorKind::io, "database " + path + ": " + msg);
    }
    sqlite3_busy_timeout(c->db, 5000);
    m_readers.push_back(std::move(c));
  }
  return ok_status();
}

SqliteStore::SqliteStore() : m_statements(std::make_unique<Statements>()) {}

SqliteStore::~SqliteStore() {
  m_readers.clear();
  m_statements.reset();  // finalised before the connection closes
  if (m_db) sqlite3_close_v2(m_db);
}

sqlite3_stmt* SqliteStore::prepare(const std::string& sql) { return m_statements->get(m_db, sql); }

Status SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(m_db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return make_error(ErrorKind::io, "database: " + msg);
  }
  return ok_status();
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path, int schema) {
  std::unique_ptr<SqliteStore> s(new SqliteStore());
  int rc = sqlite3_open_v2(path.c_str(), &s->m_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = s->m_db ? sqlite3_errmsg(s->m_db) : "out of memory";
    return make_error(ErrorKind::io, "database " + path + ": " + msg);
  }
  sqlite3_busy_timeout(s->m_db, 5000);
  // WAL: readers never block the writer; synchronous=NORMAL is durable
  // across process crashes (what the outbox needs) and fast.
  if (path != ":memory:") {
    BW_TRY(auto wal, s->exec("PRAGMA journal_mode=WAL"));
    (void)wal;
  }
  BW_TRY(auto pragmas, s->exec("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"));
  (void)pragmas;
  BW_TRY(auto migrated, s->migrate(schema));
  (void)migrated;
  if (path != ":memory:" && path.rfind("file:", 0) != 0) {
    BW_TRY(auto readers, s->open_readers(path));
    (void)readers;
  }
  return s;
}

int SqliteStore::schema_version() {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("PRAGMA user_version"));
  return s.step() == SQLITE_ROW ? static_cast<int>(s.i64(0)) : -1;
}

Status SqliteStore::migrate(int schema) {
  int version = schema_version();
  if (version < 0) return make_error(ErrorKind::io, std::string("database: cannot read schema version: ") + sqlite3_errmsg(m_db));
  if (version > k_schema_version) return make_error(ErrorKind::invalid, newer_schema_message(version));
  for (int v = version; v < std::min(schema, k_schema_version); ++v) {
    Status st = transaction([&]() -> Status {
      BW_TRY(auto a, exec(k_migrations[v]));
      (void)a;
      return exec(("PRAGMA user_version=" + std::to_string(v + 1)).c_str());
    });
    if (!st) return st;
  }
  return ok_status();
}

Status SqliteStore::set_fence(const Fence& fence) {
  if (fence.epoch == 0) return ok_status();
  return make_error(ErrorKind::invalid, "database: a SQLite file serves one instance; fencing several needs PostgreSQL");
}

Status SqliteStore::transaction(const std::function<Status()>& fn) {
  std::lock_guard lock(m_mutex);
  if (!sqlite3_get_autocommit(m_db)) return fn();  // already inside one: join it
  BW_TRY(auto began, exec("BEGIN IMMEDIATE"));
  (void)began;
  // Its reads see its writes: on the writer, not a read connection.
  m_txn_thread = std::this_thread::get_id();
  struct Clear {
    std::atomic<std::thread::id>& t;
    ~Clear() { t = std::thread::id(); }
  } clear{m_txn_thread};
  Status st = fn();
  if (!st) {
    exec("ROLLBACK");
    return st;
  }
  auto committed = exec("COMMIT");
  if (!committed) {
    exec("ROLLBACK");
    return committed;
  }
  return ok_status();
}

Result<std::optional<RefState>> SqliteStore::get_ref(const std::string& ref) {
  auto r = reader();
  Stmt s(r.db(), r.prepare((std::string("SELECT ") + k_ref_columns + " FROM refs WHERE ref=?")));
  if (!s.prepared()) return s.error("get ref");
  s.bind(1, ref);
  int rc = s.step();
  if (rc == SQLITE_ROW) return std::optional<RefState>(read_ref(s));
  if (rc == SQLITE_DONE) return std::optional<RefState>();
  return s.error("get ref");
}

Result<std::vector<RefState>> SqliteStore::list_refs() {
  auto r = reader();
  Stmt s(r.db(), r.prepare((std::string("SELECT ") + k_ref_columns + " FROM refs ORDER BY ref")));
  if (!s.prepared()) return s.error("list refs");
  std::vector<RefState> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_ref(s));
  if (rc != SQLITE_DONE) return s.error("list refs");
  return out;
}

Result<std::vector<RefState>> SqliteStore::get_refs(const std::vector<std::string>& refs) {
  auto r = reader();
  const std::string sql = std::string("SELECT ") + k_ref_columns + " FROM refs WHERE ref=?";
  std::vector<RefState> out;
  out.reserve(refs.size());
  for (const auto& ref : refs) {
    Stmt s(r.db(), r.prepare(sql));
    if (!s.prepared()) return s.error("get refs");
    s.bind(1, ref);
    int rc = s.step();
    if (rc == SQLITE_ROW) out.push_back(read_ref(s));
    else if (rc != SQLITE_DONE) return s.error("get refs");
  }
  return out;
}

Result<std::set<std::string>> SqliteStore::failing_refs() {
  auto r = reader();
  Stmt s(r.db(), r.prepare("SELECT ref FROM refs WHERE last_error != ''"));
  if (!s.prepared()) return s.error("failing refs");
  std::set<std::string> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.insert(s.text(0));
  if (rc != SQLITE_DONE) return s.error("failing refs");
  return out;
}

Status SqliteStore::put_ref(const RefState& r) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("INSERT INTO refs(ref, digest, media_type, platforms, last_checked, last_changed, next_check, last_error, error_kind, failures) "
               "VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(ref) DO UPDATE SET digest=excluded.digest, media_type=excluded.media_type, "
               "platforms=excluded.platforms, last_checked=excluded.last_checked, last_changed=excluded.last_changed, "
               "next_check=excluded.next_check, last_error=excluded.last_error, error_kind=excluded.error_kind, failures=excluded.failures"));
  s.bind(1, r.ref).bind(2, r.digest).bind(3, r.media_type).bind(4, platforms_to_json(r.platforms)).bind(5, r.last_checked)
      .bind(6, r.last_changed).bind(7, r.next_check).bind(8, r.last_error).bind(9, r.error_kind).bind(10, r.failures);
  return done(s, "put ref");
}

Result<std::map<std::string, int64_t>> SqliteStore::next_checks() {
  auto r = reader();
  Stmt s(r.db(), r.prepare("SELECT ref, next_check FROM refs"));
  if (!s.prepared()) return s.error("next checks");
  std::map<std::string, int64_t> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.emplace_hint(out.end(), s.text(0), s.i64(1));
  if (rc != SQLITE_DONE) return s.error("next checks");
  return out;
}

Status SqliteStore::touch_ref(const std::string& ref, int64_t checked_at, int64_t next_check) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("UPDATE refs SET last_checked=?, next_check=?, last_error='', error_kind='', failures=0 WHERE ref=?"));
  s.bind(1, checked_at).bind(2, next_check).bind(3, ref);
  return changed_one(m_db, s, "touch ref", "no reference " + ref);
}

Status SqliteStore::set_ref_error(const std::string& ref, const std::string& kind, const std::string& message, int64_t checked_at,
                            int64_t next_check) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("INSERT INTO refs(ref, last_checked, next_check, last_error, error_kind, failures) VALUES(?,?,?,?,?,1) "
               "ON CONFLICT(ref) DO UPDATE SET last_checked=excluded.last_checked, next_check=excluded.next_check, "
               "last_error=excluded.last_error, error_kind=excluded.error_kind, failures=refs.failures+1"));
  s.bind(1, ref).bind(2, checked_at).bind(3, next_check).bind(4, message).bind(5, kind);
  return done(s, "set ref error");
}

Status SqliteStore::delete_ref(const std::string& ref) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("DELETE FROM refs WHERE ref=?"));
  s.bind(1, ref);
  return done(s, "delete ref");
}

Result<int64_t> SqliteStore::add_event(const Event& e) {
  std::lock_guard lock(m_mutex);
  json platforms = json::object();
  for (const auto& [p, od] : e.platforms) platforms[p] = {{"old", od.first}, {"new", od.second}};
  Stmt s(m_db, prepare("INSERT INTO events(ref, old_digest, new_digest, platforms, outcome, source, detected_at, deliveries) VALUES(?,?,?,?,?,?,?,?)"));
  s.bind(1, e.ref).bind(2, e.old_digest).bind(3, e.new_digest).bind(4, platforms.dump()).bind(5, e.outcome).bind(6, e.source)
      .bind(7, e.detected_at).bind(8, json(e.deliveries).dump());
  BW_TRY(auto ok, done(s, "add event"));
  (void)ok;
  return static_cast<int64_t>(sqlite3_last_insert_rowid(m_db));
}

Result<std::vector<Event>> SqliteStore::list_events(int limit) {
  auto r = reader();
  Stmt s(r.db(), r.prepare("SELECT id, ref, old_digest, new_digest, platforms, outcome, source, detected_at, deliveries FROM events "
               "ORDER BY detected_at DESC, id DESC LIMIT ?"));
  if (!s.prepared()) return s.error("list events");
  s.bind(1, limit);
  std::vector<Event> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    Event e;
    e.id = s.i64(0);
    e.ref = s.text(1);
    e.old_digest = s.text(2);
    e.new_digest = s.text(3);
    auto p = json::parse(s.text(4), nullptr, false);
    if (p.is_object()) {
      for (auto& [k, v] : p.items()) e.platforms[k] = {v.value("old", ""), v.value("new", "")};
    }
    e.outcome = s.text(5);
    e.source = s.text(6);
    e.detected_at = s.i64(7);
    auto d = json::parse(s.text(8), nullptr, false);
    if (d.is_array()) {
      for (auto& id : d) if (id.is_string()) e.deliveries.push_back(id.get<std::string>());
    }
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return s.error("list events");
  return out;
}

Status SqliteStore::add_delivery(const Delivery& d) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("INSERT INTO deliveries(id, trigger, project, state, payload, attempts, created_at, next_attempt_at, updated_at, "
               "wait_job) VALUES(?,?,?,?,?,?,?,?,?,?)"));
  s.bind(1, d.id).bind(2, d.trigger).bind(3, d.project).bind(4, std::string(to_string(d.state))).bind(5, d.payload)
      .bind(6, d.attempts).bind(7, d.created_at).bind(8, d.next_attempt_at).bind(9, d.created_at).bind(10, d.wait_job);
  return done(s, "add delivery");
}

Result<std::optional<Delivery>> SqliteStore::find_settling(const std::string& trigger, const std::string& project, int64_t now) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare((std::string("SELECT ") + k_delivery_columns +
                " FROM deliveries WHERE trigger=? AND project=? AND state='pending' AND attempts=0 AND next_attempt_at>? "
                "ORDER BY created_at LIMIT 1")));
  if (!s.prepared()) return s.error("find settling");
  s.bind(1, trigger).bind(2, project).bind(3, now);
  int rc = s.step();
  if (rc == SQLITE_ROW) return std::optional<Delivery>(read_delivery(s));
  if (rc == SQLITE_DONE) return std::optional<Delivery>();
  return s.error("find settling");
}

Status SqliteStore::update_settling(const std::string& id, const std::string& payload, int64_t next_attempt_at) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("UPDATE deliveries SET payload=?, next_attempt_at=? WHERE id=? AND attempts=0"));
  s.bind(1, payload).bind(2, next_attempt_at).bind(3, id);
  return done(s, "update settling delivery");
}

Result<std::vector<Delivery>> SqliteStore::due_deliveries(int64_t now, int limit) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare((std::string("SELECT ") + k_delivery_columns +
                " FROM deliveries WHERE state IN ('pending','failed') AND next_attempt_at<=? AND wait_job=0 "
                "ORDER BY next_attempt_at, created_at LIMIT ?")));
  if (!s.prepared()) return s.error("due deliveries");
  s.bind(1, now).bind(2, limit);
  std::vector<Delivery> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_delivery(s));
  if (rc != SQLITE_DONE) return s.error("due deliveries");
  return out;
}

Result<std::optional<Delivery>> SqliteStore::get_delivery(const std::string& id) {
  auto r = reader();
  Stmt s(r.db(), r.prepare((std::string("SELECT ") + k_delivery_columns + " FROM deliveries WHERE id=?")));
  if (!s.prepared()) return s.error("get delivery");
  s.bind(1, id);
  int rc = s.step();
  if (rc == SQLITE_ROW) return std::optional<Delivery>(read_delivery(s));
  if (rc == SQLITE_DONE) return std::optional<Delivery>();
  return s.error("get delivery");
}

Result<std::vector<Delivery>> SqliteStore::list_deliveries(std::optional<DeliveryState> state, int limit) {
  auto r = reader();
  std::string sql = std::string("SELECT ") + k_delivery_columns + " FROM deliveries";
  if (state) sql += " WHERE state=?";
  sql += " ORDER BY created_at DESC, id DESC LIMIT ?";
  Stmt s(r.db(), r.prepare(sql));
  if (!s.prepared()) return s.error("list deliveries");
  int i = 1;
  if (state) s.bind(i++, std::string(to_string(*state)));
  s.bind(i, limit);
  std::vector<Delivery> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_delivery(s));
  if (rc != SQLITE_DONE) return s.error("list deliveries");
  return out;
}

Status SqliteStore::record_attempt(const Attempt& a, DeliveryState new_state, int64_t next_attempt_at) {
  return transaction([&]() -> Status {
    Stmt ins(m_db, prepare("INSERT INTO attempts(delivery_id, at, status, error, duration_ms, output_tail, pushed_digest) "
                           "VALUES(?,?,?,?,?,?,?)"));
    ins.bind(1, a.delivery_id).bind(2, a.at).bind(3, a.status).bind(4, a.error).bind(5, a.duration_ms).bind(6, a.output_tail)
        .bind(7, a.pushed_digest);
    BW_TRY(auto x, done(ins, "record attempt"));
    (void)x;
    Stmt up(m_db, prepare("UPDATE deliveries SET state=?, attempts=attempts+1, next_attempt_at=?, updated_at=?, last_status=?, last_error=?, "
                  "delivered_at=CASE WHEN ?='delivered' THEN ? ELSE delivered_at END WHERE id=?"));
    std::string st = to_string(new_state);
    up.bind(1, st).bind(2, next_attempt_at).bind(3, a.at).bind(4, a.status).bind(5, a.error).bind(6, st).bind(7, a.at)
        .bind(8, a.delivery_id);
    return done(up, "update delivery");
  });
}

Result<std::vector<Attempt>> SqliteStore::list_attempts(const std::string& delivery_id) {
  auto r = reader();
  Stmt s(r.db(), r.prepare("SELECT delivery_id, at, status, error, duration_ms, output_tail, pushed_digest FROM attempts "
                       "WHERE delivery_id=? ORDER BY id"));
  if (!s.prepared()) return s.error("list attempts");
  s.bind(1, delivery_id);
  std::vector<Attempt> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    out.push_back(Attempt{s.text(0), s.i64(1), static_cast<int>(s.i64(2)), s.text(3), s.i64(4), s.text(5), s.text(6)});
  }
  if (rc != SQLITE_DONE) return s.error("list attempts");
  return out;
}

Status SqliteStore::requeue(const std::string& id, int64_t now) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("UPDATE deliveries SET state=CASE WHEN attempts=0 THEN 'pending' ELSE 'failed' END, next_attempt_at=?, updated_at=? WHERE id=?"));
  s.bind(1, now).bind(2, now).bind(3, id);
  return changed_one(m_db, s, "requeue", "no delivery with id " + id);
}

Result<std::map<std::string, int64_t>> SqliteStore::delivery_counts() {
  auto r = reader();
  Stmt s(r.db(), r.prepare("SELECT state, COUNT(*) FROM deliveries GROUP BY state"));
  if (!s.prepared()) return s.error("delivery counts");
  std::map<std::string, int64_t> out{{"pending", 0}, {"delivered", 0}, {"failed", 0}, {"dead", 0}};
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out[s.text(0)] = s.i64(1);
  if (rc != SQLITE_DONE) return s.error("delivery counts");
  return out;
}

Result<std::optional<int64_t>> SqliteStore::next_due() {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("SELECT MIN(next_attempt_at) FROM deliveries WHERE state IN ('pending','failed') AND wait_job=0"));
  if (!s.prepared() || s.step() != SQLITE_ROW) return s.error("next due");
  if (s.is_null(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(s.i64(0));
}

Status SqliteStore::set_delivery_wait(const std::string& id, int64_t job) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("UPDATE deliveries SET wait_job=? WHERE id=?"));
  s.bind(1, job).bind(2, id);
  return changed_one(m_db, s, "set delivery wait", "no delivery with id " + id);
}

Result<std::vector<Delivery>> SqliteStore::waiting_deliveries(int64_t job) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare(std::string("SELECT ") + k_delivery_columns + " FROM deliveries WHERE wait_job=? ORDER BY created_at, id"));
  if (!s.prepared()) return s.error("waiting deliveries");
  s.bind(1, job);
  std::vector<Delivery> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_delivery(s));
  if (rc != SQLITE_DONE) return s.error("waiting deliveries");
  return out;
}

Status SqliteStore::release_delivery(const std::string& id, const std::string& payload) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("UPDATE deliveries SET wait_job=0, payload=CASE WHEN attempts=0 THEN ? ELSE payload END WHERE id=?"));
  s.bind(1, payload).bind(2, id);
  return changed_one(m_db, s, "release delivery", "no delivery with id " + id);
}

Result<std::map<std::string, int64_t>> SqliteStore::waiting_by_mirror() {
  auto r = reader();
  Stmt s(r.db(), r.prepare("SELECT j.mirror, COUNT(*) FROM deliveries d JOIN copy_jobs j ON j.id=d.wait_job WHERE d.wait_job!=0 "
                       "GROUP BY j.mirror"));
  if (!s.prepared()) return s.error("waiting by mirror");
  std::map<std::string, int64_t> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out[s.text(0)] = s.i64(1);
  if (rc != SQLITE_DONE) return s.error("waiting by mirror");
  return out;
}

Status SqliteStore::put_mirror(const MirrorState& m) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("INSERT INTO mirrors(mirror, upstream, upstream_digest, mirror_digest, state, last_copy, last_error, checked_at, "
                       "updated_at) VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(mirror) DO UPDATE SET upstream=excluded.upstream, "
                       "upstream_digest=excluded.upstream_digest, mirror_digest=excluded.mirror_digest, state=excluded.state, "
                       "last_copy=excluded.last_copy, last_error=excluded.last_error, checked_at=excluded.checked_at, "
                       "updated_at=excluded.updated_at"));
  s.bind(1, m.mirror).bind(2, m.upstream).bind(3, m.upstream_digest).bind(4, m.mirror_digest).bind(5, m.state).bind(6, m.last_copy)
      .bind(7, m.last_error).bind(8, m.checked_at).bind(9, m.updated_at);
  return done(s, "put mirror");
}

Result<std::optional<MirrorState>> SqliteStore::get_mirror(const std::string& mirror) {
  auto r = reader();
  Stmt s(r.db(), r.prepare(std::string("SELECT ") + k_mirror_columns + " FROM mirrors WHERE mirror=?"));
  if (!s.prepared()) return s.error("get mirror");
  s.bind(1, mirror);
  int rc = s.step();
  if (rc == SQLITE_ROW) return std::optional<MirrorState>(read_mirror(s));
  if (rc == SQLITE_DONE) return std::optional<MirrorState>();
  return s.error("get mirror");
}

Result<std::vector<MirrorState>> SqliteStore::list_mirrors() {
  auto r = reader();
  Stmt s(r.db(), r.prepare(std::string("SELECT ") + k_mirror_columns + " FROM mirrors ORDER BY mirror"));
  if (!s.prepared()) return s.error("list mirrors");
  std::vector<MirrorState> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_mirror(s));
  if (rc != SQLITE_DONE) return s.error("list mirrors");
  return out;
}

Status SqliteStore::delete_mirror(const std::string& mirror) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("DELETE FROM mirrors WHERE mirror=?"));
  s.bind(1, mirror);
  return done(s, "delete mirror");
}

Result<int64_t> SqliteStore::add_copy_job(const CopyJob& j) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("INSERT INTO copy_jobs(mirror, upstream, digest, reason, state, attempts, created_at, next_attempt_at, updated_at, "
                       "last_error, mirror_digest) VALUES(?,?,?,?,?,?,?,?,?,?,?)"));
  s.bind(1, j.mirror).bind(2, j.upstream).bind(3, j.digest).bind(4, j.reason).bind(5, j.state).bind(6, j.attempts)
      .bind(7, j.created_at).bind(8, j.next_attempt_at).bind(9, j.created_at).bind(10, j.last_error).bind(11, j.mirror_digest);
  BW_TRY(auto ok, done(s, "add copy job"));
  (void)ok;
  return static_cast<int64_t>(sqlite3_last_insert_rowid(m_db));
}

Result<std::optional<CopyJob>> SqliteStore::get_copy_job(int64_t id) {
  auto r = reader();
  Stmt s(r.db(), r.prepare(std::string("SELECT ") + k_job_columns + " FROM copy_jobs WHERE id=?"));
  if (!s.prepared()) return s.error("get copy job");
  s.bind(1, id);
  int rc = s.step();
  if (rc == SQLITE_ROW) return std::optional<CopyJob>(read_job(s));
  if (rc == SQLITE_DONE) return std::optional<CopyJob>();
  return s.error("get copy job");
}

Result<std::vector<CopyJob>> SqliteStore::due_copy_jobs(int64_t now, int limit) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare(std::string("SELECT ") + k_job_columns +
                       " FROM copy_jobs WHERE state='pending' AND next_attempt_at<=? ORDER BY id LIMIT ?"));
  if (!s.prepared()) return s.error("due copy jobs");
  s.bind(1, now).bind(2, limit);
  std::vector<CopyJob> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_job(s));
  if (rc != SQLITE_DONE) return s.error("due copy jobs");
  return out;
}

Result<std::vector<CopyJob>> SqliteStore::pending_copy_jobs(const std::string& mirror) {
  auto r = reader();
  std::string sql = std::string("SELECT ") + k_job_columns + " FROM copy_jobs WHERE state='pending'";
  if (!mirror.empty()) sql += " AND mirror=?";
  sql += " ORDER BY id";
  Stmt s(r.db(), r.prepare(sql));
  if (!s.prepared()) return s.error("pending copy jobs");
  if (!mirror.empty()) s.bind(1, mirror);
  std::vector<CopyJob> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_job(s));
  if (rc != SQLITE_DONE) return s.error("pending copy jobs");
  return out;
}

Status SqliteStore::fail_copy_job(int64_t id, const std::string& error, int64_t now, int64_t next_attempt_at) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("UPDATE copy_jobs SET attempts=attempts+1, last_error=?, updated_at=?, next_attempt_at=? WHERE id=?"));
  s.bind(1, error).bind(2, now).bind(3, next_attempt_at).bind(4, id);
  return changed_one(m_db, s, "fail copy job", "no copy job " + std::to_string(id));
}

Status SqliteStore::finish_copy_job(int64_t id, const std::string& mirror_digest, int64_t now) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("UPDATE copy_jobs SET state='done', attempts=attempts+1, mirror_digest=?, last_error='', updated_at=? WHERE id=?"));
  s.bind(1, mirror_digest).bind(2, now).bind(3, id);
  return changed_one(m_db, s, "finish copy job", "no copy job " + std::to_string(id));
}

Result<std::optional<int64_t>> SqliteStore::next_copy_due() {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("SELECT MIN(next_attempt_at) FROM copy_jobs WHERE state='pending'"));
  if (!s.prepared() || s.step() != SQLITE_ROW) return s.error("next copy due");
  if (s.is_null(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(s.i64(0));
}

Status SqliteStore::set_meta(const std::string& key, const std::string& value) {
  std::lock_guard lock(m_mutex);
  Stmt s(m_db, prepare("INSERT INTO meta(key, value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"));
  s.bind(1, key).bind(2, value);
  return done(s, "set meta");
}

Result<std::optional<std::string>> SqliteStore::get_meta(const std::string& key) {
  auto r = reader();
  Stmt s(r.db(), r.prepare("SELECT value FROM meta WHERE key=?"));
  if (!s.prepared()) return s.error("get meta");
  s.bind(1, key);
  int rc = s.step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(s.text(0));
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  return s.error("get meta");
}

}  // namespace bw::db

namespace bw::db {

namespace {

bool is_table(const std::string& table) {
  return std::find_if(std::begin(k_tables), std::end(k_tables), [&](const char* t) { return table == t; }) != std::end(k_tables);
}

// A quoted SQL identifier.
std::string identifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

Status SqliteStore::read_rows(const std::string& table, size_t batch, const std::function<Status(const TableRows&)>& fn) {
  if (!is_table(table)) return make_error(ErrorKind::invalid, "database: no table " + table);
  std::lock_guard lock(m_mutex);
  sqlite3_stmt* raw = prepare("SELECT * FROM " + identifier(table));
  Stmt s(m_db, raw);
  if (!s.prepared()) return s.error("copy from " + table);
  TableRows out;
  int n = sqlite3_column_count(raw);
  for (int c = 0; c < n; ++c) out.columns.emplace_back(sqlite3_column_name(raw, c));
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    std::vector<std::optional<std::string>> row;
    row.reserve(static_cast<size_t>(n));
    for (int c = 0; c < n; ++c) row.push_back(s.is_null(c) ? std::nullopt : std::optional<std::string>(s.text(c)));
    out.rows.push_back(std::move(row));
    if (out.rows.size() >= std::max<size_t>(batch, 1)) {
      BW_TRY(auto taken, fn(out));
      (void)taken;
      out.rows.clear();
    }
  }
  if (rc != SQLITE_DONE) return s.error("copy from " + table);
  if (!out.rows.empty()) return fn(out);
  return ok_status();
}

Status SqliteStore::write_rows(const std::string& table, const TableRows& rows) {
  if (!is_table(table)) return make_error(ErrorKind::invalid, "database: no table " + table);
  if (rows.rows.empty()) return ok_status();
  std::string names, placeholders;
  for (size_t c = 0; c < rows.columns.size(); ++c) {
    names += (c ? ", " : "") + identifier(rows.columns[c]);
    placeholders += c ? ",?" : "?";
  }
  const std::string sql = "INSERT INTO " + identifier(table) + "(" + names + ") VALUES(" + placeholders + ")";
  const std::string what = "copy into " + table;
  return transaction([&]() -> Status {
    for (const auto& row : rows.rows) {
      if (row.size() != rows.columns.size()) return make_error(ErrorKind::internal, "database: " + what + ": a row of another width");
      Stmt s(m_db, prepare(sql));
      if (!s.prepared()) return s.error(what);
      for (size_t c = 0; c < row.size(); ++c) {
        // Text into an INTEGER column is stored as the integer it spells.
        if (row[c]) s.bind(static_cast<int>(c + 1), *row[c]);
      }
      BW_TRY(auto inserted, done(s, what));
      (void)inserted;
    }
    return ok_status();
  });
}

Status SqliteStore::finish_copy() {
  // Nothing to do: an AUTOINCREMENT table's sqlite_sequence follows the
  // highest id inserted, explicit ones included.
  return ok_status();
}

Result<std::map<std::string, int64_t>> SqliteStore::row_counts() {
  std::lock_guard lock(m_mutex);
  std::map<std::string, int64_t> out;
  for (const char* table : k_tables) {
    Stmt s(m_db, prepare(std::string("SELECT COUNT(*) FROM ") + identifier(table)));
    if (!s.prepared() || s.step() != SQLITE_ROW) return s.error("row counts");
    out[table] = s.i64(0);
  }
  return out;
}

}  // namespace bw::db
