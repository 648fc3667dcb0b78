// The PostgreSQL engine of the cluster (db/cluster.h): the bookkeeping
// tables basewatch_lease, basewatch_instances and basewatch_requests that
// pg_store.cpp makes, and LISTEN/NOTIFY on the channel `basewatch`.
//
// One connection of its own behind a mutex, made again when it broke (a
// server restart), listening again when it listened. wait() polls the
// connection's socket without holding the mutex.
//
// The lease's locks: taking it over locks the row FOR UPDATE (after a read
// without locks saw it run out), so it waits for the fenced transactions
// of the old leader that hold the row FOR KEY SHARE (pg_store.h); renewing
// it is an UPDATE of non-key columns, which those do not block.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "db/cluster.h"

struct pg_conn;

namespace bw::db {

namespace pg {
class Rows;
}

class PgCluster final : public Cluster {
 public:
  ~PgCluster() override;
  // Connects; errors as PgStore::open's. The tables must exist (any
  // PgStore::open of the database makes them).
  static Result<std::unique_ptr<PgCluster>> open(const std::string& uri, Millis timeouts);

  Result<Lease> claim(const std::string& instance, int64_t epoch, Millis lease) override;
  Status release(const std::string& instance, int64_t epoch) override;
  Result<Lease> lease() override;
  Status heartbeat(const Instance& self, Millis forget_after) override;
  Status leave(const std::string& instance) override;
  Result<std::vector<Instance>> instances() override;
  Status ask(const Ask& ask) override;
  Result<std::vector<Ask>> take_asks(int64_t epoch) override;
  Status notify(const std::string& topic) override;
  Result<std::vector<std::string>> wait(Millis timeout) override;

 private:
  PgCluster(std::string uri, Millis timeouts);
  // A working connection (listening when m_listening): the current one, or
  // a new one. Called with m_mutex held.
  Status connect();
  // Runs `sql` with text parameters, once more on a new connection when
  // the connection broke and `retry` (not inside a transaction). Called
  // with m_mutex held.
  using Params = std::vector<std::string>;
  Result<pg::Rows> run(const char* what, const std::string& sql, const Params& params = {}, bool retry = true);
  Error error(const char* what, const std::string& detail) const;
  // Moves the notifications libpq has read into `out`.
  void drain(std::vector<std::string>& out);

  std::string m_uri;
  std::vector<std::string> m_secrets;
  Millis m_timeouts;
  pg_conn* m_conn = nullptr;
  bool m_listening = false;
  std::mutex m_mutex;
};

}  // namespace bw::db
