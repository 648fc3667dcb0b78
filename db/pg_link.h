// Internal to db/: what the two PostgreSQL pieces (the store, pg_store.h,
// and the cluster link, pg_cluster.h) share about talking to the server
// through libpq: opening a connection the same way, with the same errors,
// and one PGresult at a time. Includes libpq-fe.h, so only db/ includes it.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "util/result.h"

namespace bw::db::pg {

// libpq's messages end in a newline and continue lines with "\n\t"; ours
// are one line.
std::string one_line(const char* text);

// One PGresult, cleared on scope exit.
class Rows {
 public:
  explicit Rows(PGresult* res) : m_res(res) {}
  Rows(Rows&& other) noexcept : m_res(std::exchange(other.m_res, nullptr)) {}
  Rows& operator=(Rows&&) = delete;
  ~Rows() {
    if (m_res) PQclear(m_res);
  }
  bool ok() const {
    auto st = m_res ? PQresultStatus(m_res) : PGRES_FATAL_ERROR;
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  }
  // The server's message (its primary text), else the connection's.
  std::string message(PGconn* conn) const {
    const char* primary = m_res ? PQresultErrorField(m_res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    return one_line(primary ? primary : PQerrorMessage(conn));
  }
  int size() const { return PQntuples(m_res); }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(m_res, row, col), static_cast<size_t>(PQgetlength(m_res, row, col)));
  }
  int64_t i64(int row, int col) const { return std::strtoll(PQgetvalue(m_res, row, col), nullptr, 10); }
  bool is_null(int row, int col) const { return PQgetisnull(m_res, row, col) != 0; }
  int columns() const { return PQnfields(m_res); }
  std::string column(int col) const { return PQfname(m_res, col); }
  // Rows an INSERT/UPDATE/DELETE touched.
  int64_t changed() const { return std::strtoll(PQcmdTuples(m_res), nullptr, 10); }

 private:
  PGresult* m_res;
};

// Connection parameters basewatch adds when the URI does not set them
// itself (keyword, value); the URI always wins.
using Defaults = std::vector<std::pair<std::string, std::string>>;

// Opens a connection to `uri` (libpq reads the URI) with the defaults every
// basewatch session gets (fallback_application_name=basewatch, UTF8,
// connect_timeout=10) plus `extra`, and the server's notices silenced.
// The caller owns the connection (PQfinish). Errors name the URI with its
// passwords redacted, and never hold one of `secrets`:
// ErrorKind::invalid for what the user must fix (a URI libpq cannot read;
// a server that answers but refuses us: password, role, database,
// pg_hba), ErrorKind::network for a server that cannot be reached (or does
// not accept connections yet), ErrorKind::io for the rest.
Result<PGconn*> connect(const std::string& uri, const std::vector<std::string>& secrets, const Defaults& extra = {});

// The server's clock in unix milliseconds, as an SQL expression: every
// lease and heartbeat time is the server's, so the instances' clocks
// need not agree.
inline constexpr const char* k_server_now = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

}  // namespace bw::db::pg
