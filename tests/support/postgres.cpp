// Test support: a real PostgreSQL server started by the test (postgres.h).
#include "tests/support/postgres.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>

#include "tests/support/support.h"

extern char** environ;

namespace bw::testing {

namespace fs = std::filesystem;

namespace {

// The bin folder of the newest PostgreSQL under /usr/lib/postgresql.
std::string find_bin() {
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    if (!fs::exists(entry.path() / "bin" / "initdb")) continue;
    int version = std::atoi(name.c_str());
    if (version > best_version) {
      best_version = version;
      best = (entry.path() / "bin").string();
    }
  }
  if (best.empty()) {
    throw std::runtime_error("no PostgreSQL server under /usr/lib/postgresql/*/bin (scripts/install-deps installs postgresql)");
  }
  return best;
}

std::string random_hex(size_t n) {
  static const char* hex = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  for (size_t i = 0; i < n; ++i) out += hex[rd() % 16];
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

}  // namespace

PostgresServer::PostgresServer(PostgresOptions options) : m_options(options) {
  m_bin = find_bin();
  m_dir = std::make_unique<TempDir>("bw-pg");
  m_data = m_dir->path() + "/data";
  m_socket_dir = m_dir->path();
  m_log = m_dir->path() + "/postgres.log";
  m_passfile = m_dir->path() + "/pgpass";
  m_password = random_hex(24);
  m_as_postgres = geteuid() == 0;
  if (m_as_postgres) {
    // PostgreSQL refuses to run as root: its folder belongs to postgres.
    const passwd* pw = getpwnam("postgres");
    if (!pw) throw std::runtime_error("running as root, but there is no postgres user (install postgresql)");
    if (chown(m_dir->path().c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown " + m_dir->path());
  }
  run_pg("initdb", {"-D", m_data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
                    "--no-instructions", "-E", "UTF8", "--locale=C"});
  m_port = free_port();

  // The guard: a process of its own session that outlives us, waits for
  // this process to end and then stops the server and removes the folder
  // (only needed when we die without the destructor running).
  std::string stop = (m_as_postgres ? "runuser -u postgres -- " : std::string()) + "env -C " + shell_quote(m_dir->path()) + " " +
                     shell_quote(m_bin + "/pg_ctl") + " -D " + shell_quote(m_data) + " -m immediate stop";
  std::string script = "while kill -0 " + std::to_string(getpid()) + " 2>/dev/null; do sleep 1; done; " + stop +
                       "; rm -rf " + shell_quote(m_dir->path());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  const char* argv[] = {"/bin/sh", "-c", script.c_str(), nullptr};
  if (posix_spawn(&m_guard, "/bin/sh", &fa, &attr, const_cast<char* const*>(argv), environ) != 0) m_guard = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);

  start();
  query("postgres", std::string("CREATE ROLE ") + k_user + " LOGIN PASSWORD '" + m_password + "'");
  {
    std::ofstream out(m_passfile, std::ios::trunc);
    out << "127.0.0.1:" << m_port << ":*:" << k_user << ":" << m_password << "\n";
  }
  // libpq ignores a passfile that others can read.
  chmod(m_passfile.c_str(), 0600);
}

PostgresServer::~PostgresServer() {
  try {
    if (m_running) stop();
  } catch (const std::exception&) {
    // The guard's immediate stop below still ends it.
  }
  if (m_guard > 0) {
    kill(m_guard, SIGKILL);
    waitpid(m_guard, nullptr, 0);
  }
}

void PostgresServer::run_pg(const std::string& program, const std::vector<std::string>& args) const {
  // From the server's folder: postgres may not be allowed into our cwd.
  std::vector<std::string> argv;
  if (m_as_postgres) argv = {"runuser", "-u", "postgres", "--"};
  argv.insert(argv.end(), {"env", "-C", m_dir->path(), m_bin + "/" + program});
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run(argv, {}, "", std::chrono::seconds(120));
  if (r.status != 0) {
    throw std::runtime_error(program + " failed (" + std::to_string(r.status) + "): " + r.output + r.errors + "\n" + log());
  }
}

void PostgresServer::start() {
  // No fsync for tests: their data need not survive the machine, only the server.
  std::string options = "-p " + std::to_string(m_port) + " -k " + m_socket_dir + " -c listen_addresses=127.0.0.1 -c max_connections=100";
  if (!m_options.durable) options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off";
  run_pg("pg_ctl", {"-D", m_data, "-l", m_log, "-w", "-t", "60", "-o", options, "start"});
  m_running = true;
}

void PostgresServer::stop() {
  run_pg("pg_ctl", {"-D", m_data, "-m", "fast", "-w", "-t", "60", "stop"});
  m_running = false;
}

std::string PostgresServer::log() const { return read_all(m_log); }

std::string PostgresServer::create_database() {
  std::string name = "bw_" + std::to_string(++m_databases);
  query("postgres", "CREATE DATABASE " + name + " OWNER " + k_user);
  return name;
}

std::string PostgresServer::uri(const std::string& database) const {
  return std::string("postgresql://") + k_user + "@127.0.0.1:" + std::to_string(m_port) + "/" + database + "?passfile=" + m_passfile;
}

std::string PostgresServer::uri_with_password(const std::string& database, const std::string& password) const {
  return std::string("postgresql://") + k_user + ":" + password + "@127.0.0.1:" + std::to_string(m_port) + "/" + database;
}

std::string PostgresServer::query(const std::string& database, const std::string& sql) const {
  std::string conninfo = "host=" + m_socket_dir + " port=" + std::to_string(m_port) + " user=postgres dbname=" + database;
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("connect to " + database + " as postgres: " + why);
  }
  PGresult* res = PQexec(conn, sql.c_str());
  auto status = PQresultStatus(res);
  std::string out;
  std::string why = PQresultErrorMessage(res);
  if (status == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0) out = PQgetvalue(res, 0, 0);
  PQclear(res);
  PQfinish(conn);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) throw std::runtime_error(sql + ": " + why);
  return out;
}

void PostgresServer::terminate_connections(const std::string& database) const {
  query("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname='" + database +
                        "' AND pid <> pg_backend_pid()");
}

PostgresServer& shared_postgres() {
  static std::mutex mutex;
  static std::unique_ptr<PostgresServer> server;
  std::lock_guard lock(mutex);
  if (!server) server = std::make_unique<PostgresServer>();
  return *server;
}

}  // namespace bw::testing
