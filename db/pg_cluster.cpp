#include "db/pg_cluster.h"

#include <poll.h>

#include <algorithm>

#include "db/pg_link.h"
#include "util/database_uri.h"

namespace bw::db {

using pg::Rows;

namespace {

std::string num(int64_t v) { return std::to_string(v); }

const std::string k_now = pg::k_server_now;
const std::string k_lease_columns = "epoch, holder, since, expires_at - " + k_now;

Lease read_lease(const Rows& rows) {
  Lease l;
  l.epoch = rows.i64(0, 0);
  l.holder = rows.text(0, 1);
  l.since = rows.i64(0, 2);
  l.expires_in = rows.i64(0, 3);
  return l;
}

}  // namespace

PgCluster::PgCluster(std::string uri, Millis timeouts)
    : m_uri(std::move(uri)), m_secrets(database_passwords(m_uri)), m_timeouts(timeouts) {}

PgCluster::~PgCluster() {
  if (m_conn) PQfinish(m_conn);
}

Result<std::unique_ptr<PgCluster>> PgCluster::open(const std::string& uri, Millis timeouts) {
  std::unique_ptr<PgCluster> c(new PgCluster(uri, timeouts));
  std::lock_guard lock(c->m_mutex);
  BW_TRY(auto connected, c->connect());
  (void)connected;
  return c;
}

Error PgCluster::error(const char* what, const std::string& detail) const {
  return make_error(ErrorKind::io, std::string("database: ") + what + ": " + redact_secrets(detail, m_secrets));
}

Status PgCluster::connect() {
  if (m_conn && PQstatus(m_conn) == CONNECTION_OK) return ok_status();
  if (m_conn) {
    PQfinish(m_conn);
    m_conn = nullptr;
  }
  pg::Defaults extra;
  if (m_timeouts.count() > 0) {
    // A server that stops answering (a cut network, a hung machine) is
    // noticed within the timeouts, not after TCP's minutes.
    int64_t seconds = std::max<int64_t>(1, m_timeouts.count() / 1000);
    extra = {{"tcp_user_timeout", num(m_timeouts.count())},
             {"keepalives", "1"},
             {"keepalives_idle", num(seconds)},
             {"keepalives_interval", "1"},
             {"keepalives_count", "3"}};
  }
  BW_TRY(PGconn* conn, pg::connect(m_uri, m_secrets, extra));
  m_conn = conn;
  std::string session;
  if (m_timeouts.count() > 0) {
    session += "SET lock_timeout = " + num(m_timeouts.count()) + "; SET statement_timeout = " + num(m_timeouts.count()) + ";";
  }
  if (m_listening) session += " LISTEN basewatch;";
  if (!session.empty()) {
    Rows set(PQexec(m_conn, session.c_str()));
    if (!set.ok()) return error("session", set.message(m_conn));
  }
  return ok_status();
}

Result<Rows> PgCluster::run(const char* what, const std::string& sql, const Params& params, bool retry) {
  for (int attempt = 0;; ++attempt) {
    BW_TRY(auto connected, connect());
    (void)connected;
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    Rows rows(params.empty() ? PQexec(m_conn, sql.c_str())
                             : PQexecParams(m_conn, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                                            nullptr, 0));
    if (rows.ok()) return rows;
    if (PQstatus(m_conn) == CONNECTION_BAD && retry && attempt == 0) continue;
    return error(what, rows.message(m_conn));
  }
}

Result<Lease> PgCluster::claim(const std::string& instance, int64_t epoch, Millis lease) {
  std::lock_guard lock(m_mutex);
  const std::string ms = num(lease.count());
  if (epoch != 0) {
    BW_TRY(auto renewed, run("renew the lease",
                             "UPDATE basewatch_lease SET expires_at = " + k_now + " + $3 WHERE id=1 AND epoch=$1 AND holder=$2 RETURNING " +
                                 k_lease_columns,
                             {num(epoch), instance, ms}));
    if (renewed.size() == 1) return read_lease(renewed);
  }
  BW_TRY(auto current, run("read the lease", "SELECT " + k_lease_columns + " FROM basewatch_lease WHERE id=1"));
  if (current.size() != 1) return error("read the lease", "the lease row is missing");
  Lease seen = read_lease(current);
  if (seen.expires_in > 0) return seen;

  // Run out: take it, under the row's lock. FOR UPDATE waits for the old
  // leader's fenced transactions (FOR KEY SHARE) to end, and the time is
  // read again under the lock (a renewal may have come first).
  BW_TRY(auto began, run("take the lease", "BEGIN"));
  (void)began;
  auto taken = [&]() -> Result<Lease> {
    BW_TRY(auto locked, run("take the lease", "SELECT expires_at - " + k_now + " FROM basewatch_lease WHERE id=1 FOR UPDATE", {}, false));
    if (locked.size() != 1) return error("take the lease", "the lease row is missing");
    if (locked.i64(0, 0) > 0) {
      BW_TRY(auto now_held, run("take the lease", "SELECT " + k_lease_columns + " FROM basewatch_lease WHERE id=1", {}, false));
      return read_lease(now_held);
    }
    BW_TRY(auto updated, run("take the lease",
                             "UPDATE basewatch_lease SET epoch = epoch + 1, holder = $1, since = " + k_now + ", expires_at = " + k_now +
                                 " + $2 WHERE id=1 RETURNING " + k_lease_columns,
                             {instance, ms}, false));
    if (updated.size() != 1) return error("take the lease", "the lease row is missing");
    return read_lease(updated);
  }();
  if (!taken) {
    if (PQstatus(m_conn) == CONNECTION_OK) Rows(PQexec(m_conn, "ROLLBACK"));
    return taken;
  }
  BW_TRY(auto committed, run("take the lease", "COMMIT", {}, false));
  (void)committed;
  return taken;
}

Status PgCluster::release(const std::string& instance, int64_t epoch) {
  std::lock_guard lock(m_mutex);
  BW_TRY(auto rows, run("release the lease",
                        "WITH released AS (UPDATE basewatch_lease SET expires_at = 0 WHERE id=1 AND epoch=$1 AND holder=$2 RETURNING 1) "
                        "SELECT pg_notify('basewatch', 'released') FROM released",
                        {num(epoch), instance}));
  (void)rows;
  return ok_status();
}

Result<Lease> PgCluster::lease() {
  std::lock_guard lock(m_mutex);
  BW_TRY(auto rows, run("read the lease", "SELECT " + k_lease_columns + " FROM basewatch_lease WHERE id=1"));
  if (rows.size() != 1) return Lease{};
  return read_lease(rows);
}

Status PgCluster::heartbeat(const Instance& self, Millis forget_after) {
  std::lock_guard lock(m_mutex);
  BW_TRY(auto seen, run("heartbeat",
                        "INSERT INTO basewatch_instances(id, host, pid, version, started_at, last_seen) VALUES($1,$2,$3,$4,$5," + k_now +
                            ") ON CONFLICT(id) DO UPDATE SET host=excluded.host, pid=excluded.pid, version=excluded.version, "
                            "started_at=excluded.started_at, last_seen=excluded.last_seen",
                        {self.id, self.host, num(self.pid), self.version, num(self.started_at)}));
  (void)seen;
  BW_TRY(auto forgot, run("heartbeat", "DELETE FROM basewatch_instances WHERE last_seen < " + k_now + " - $1",
                          {num(forget_after.count())}));
  (void)forgot;
  return ok_status();
}

Status PgCluster::leave(const std::string& instance) {
  std::lock_guard lock(m_mutex);
  BW_TRY(auto rows, run("leave", "DELETE FROM basewatch_instances WHERE id=$1", {instance}));
  (void)rows;
  return ok_status();
}

Result<std::vector<Instance>> PgCluster::instances() {
  std::lock_guard lock(m_mutex);
  BW_TRY(auto rows, run("instances", "SELECT id, host, pid, version, started_at, last_seen FROM basewatch_instances "
                                     "ORDER BY started_at, id COLLATE \"C\""));
  std::vector<Instance> out;
  for (int i = 0; i < rows.size(); ++i) {
    out.push_back(Instance{rows.text(i, 0), rows.text(i, 1), rows.i64(i, 2), rows.text(i, 3), rows.i64(i, 4), rows.i64(i, 5)});
  }
  return out;
}

Status PgCluster::ask(const Ask& a) {
  std::lock_guard lock(m_mutex);
  // One statement: the notification goes out when the row is committed.
  BW_TRY(auto rows, run("ask the leader",
                        "WITH asked AS (INSERT INTO basewatch_requests(kind, ref, source, created_at) VALUES($1,$2,$3," + k_now +
                            ") RETURNING id) SELECT pg_notify('basewatch', 'request') FROM asked",
                        {a.kind, a.ref, a.source}));
  (void)rows;
  return ok_status();
}

Result<std::vector<Ask>> PgCluster::take_asks(int64_t epoch) {
  std::lock_guard lock(m_mutex);
  BW_TRY(auto began, run("take requests", "BEGIN"));
  (void)began;
  auto taken = [&]() -> Result<std::vector<Ask>> {
    BW_TRY(auto held, run("take requests", "SELECT epoch FROM basewatch_lease WHERE id=1 AND epoch=$1 FOR KEY SHARE", {num(epoch)}, false));
    if (held.size() == 0) {
      return make_error(ErrorKind::fenced, "database: fenced: the lease of epoch " + num(epoch) +
                                               " has passed to another instance; the requests are left for it");
    }
    BW_TRY(auto rows, run("take requests", "DELETE FROM basewatch_requests RETURNING id, kind, ref, source", {}, false));
    std::vector<std::pair<int64_t, Ask>> by_id;
    for (int i = 0; i < rows.size(); ++i) by_id.push_back({rows.i64(i, 0), Ask{rows.text(i, 1), rows.text(i, 2), rows.text(i, 3)}});
    std::sort(by_id.begin(), by_id.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Ask> out;
    for (auto& [id, a] : by_id) out.push_back(std::move(a));
    return out;
  }();
  if (!taken) {
    if (PQstatus(m_conn) == CONNECTION_OK) Rows(PQexec(m_conn, "ROLLBACK"));
    return taken;
  }
  BW_TRY(auto committed, run("take requests", "COMMIT", {}, false));
  (void)committed;
  return taken;
}

Status PgCluster::notify(const std::string& topic) {
  std::lock_guard lock(m_mutex);
  BW_TRY(auto rows, run("notify", "SELECT pg_notify('basewatch', $1)", {topic}));
  (void)rows;
  return ok_status();
}

void PgCluster::drain(std::vector<std::string>& out) {
  while (PGnotify* n = PQnotifies(m_conn)) {
    out.emplace_back(n->extra ? n->extra : "");
    PQfreemem(n);
  }
}

Result<std::vector<std::string>> PgCluster::wait(Millis timeout) {
  std::vector<std::string> out;
  int fd = -1;
  {
    std::lock_guard lock(m_mutex);
    if (!m_listening) {
      m_listening = true;
      if (m_conn && PQstatus(m_conn) == CONNECTION_OK) {
        Rows listened(PQexec(m_conn, "LISTEN basewatch"));
        if (!listened.ok()) return error("listen", listened.message(m_conn));
      }
    }
    BW_TRY(auto connected, connect());
    (void)connected;
    if (!PQconsumeInput(m_conn)) return error("listen", pg::one_line(PQerrorMessage(m_conn)));
    drain(out);
    if (!out.empty()) return out;
    fd = PQsocket(m_conn);
  }
  if (fd < 0) return out;
  pollfd p{fd, POLLIN, 0};
  ::poll(&p, 1, static_cast<int>(std::clamp<int64_t>(timeout.count(), 0, 60'000)));
  std::lock_guard lock(m_mutex);
  if (!m_conn) return out;
  // A broken connection shows here; the next call makes a new one.
  if (!PQconsumeInput(m_conn)) return error("listen", pg::one_line(PQerrorMessage(m_conn)));
  drain(out);
  return out;
}

Result<std::unique_ptr<Cluster>> Cluster::open(const std::string& database, Millis timeouts) {
  if (!is_postgres_uri(database)) {
    return make_error(ErrorKind::invalid, "database " + redact_database(database) +
                                              ": a SQLite file serves one instance; several instances need a PostgreSQL database");
  }
  BW_TRY(auto c, PgCluster::open(database, timeouts));
  return std::unique_ptr<Cluster>(std::move(c));
}

}  // namespace bw::db
