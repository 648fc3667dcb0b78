// Test support: a real PostgreSQL server (Debian's postgresql, 15) that the
// test starts itself. initdb in a temporary folder (as the postgres user via
// `runuser -u postgres --` when the tests run as root, the folder then owned
// by postgres), `pg_ctl start` on a free loopback port with its unix socket
// in that folder, stopped and removed at the end. The binaries come from
// /usr/lib/postgresql/*/bin (the newest), never from PATH.
//
// Starting a cluster costs seconds: a test binary shares one server
// (shared_postgres()) and takes one database per test case. Clients connect
// over TCP as the role `basewatch` (scram-sha-256, the password in a
// passfile); the harness itself connects as the superuser over the socket.
// A guard process stops the server and removes the folder if the test
// binary dies without doing so.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace bw::testing {

struct PostgresOptions {
  // Tests run without fsync (their data need not survive the machine);
  // benchmarks measure a server as shipped: fsync, full_page_writes and
  // synchronous_commit on.
  bool durable = false;
};

class PostgresServer {
 public:
  // initdb + start; throws std::runtime_error (with the server's log) when
  // that fails.
  explicit PostgresServer(PostgresOptions options = {});
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return m_port; }
  static constexpr const char* k_user = "basewatch";  // the role clients log in as
  const std::string& password() const { return m_password; }
  // A passfile (mode 0600) with the role's password for this server.
  const std::string& passfile() const { return m_passfile; }

  // A new, empty database owned by the role; returns its name.
  std::string create_database();
  // postgresql://basewatch@127.0.0.1:PORT/NAME?passfile=... (no password in it).
  std::string uri(const std::string& database) const;
  // postgresql://basewatch:PASSWORD@127.0.0.1:PORT/NAME with `password` inline.
  std::string uri_with_password(const std::string& database, const std::string& password) const;

  // Runs `sql` as the superuser in `database`; returns the first column of
  // the first row ("" when there is none). Throws on an error.
  std::string query(const std::string& database, const std::string& sql) const;
  // Closes every client connection to `database` (pg_terminate_backend):
  // what a server restart does to them, without the restart.
  void terminate_connections(const std::string& database) const;

  // pg_ctl stop (fast) / start: the same port, the same data.
  void stop();
  void start();
  bool running() const { return m_running; }
  std::string log() const;

 private:
  // Runs a PostgreSQL program (as postgres when we are root); throws with
  // its output when it fails.
  void run_pg(const std::string& program, const std::vector<std::string>& args) const;

  PostgresOptions m_options;
  std::string m_bin;   // /usr/lib/postgresql/N/bin
  std::unique_ptr<class TempDir> m_dir;
  std::string m_data, m_socket_dir, m_log, m_passfile, m_password;
  int m_port = 0;
  int m_databases = 0;
  bool m_running = false;
  bool m_as_postgres = false;  // root: programs run as postgres
  pid_t m_guard = -1;
};

// One server per test binary, started on first use, stopped at exit.
PostgresServer& shared_postgres();

}  // namespace bw::testing
