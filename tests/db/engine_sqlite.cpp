// The SQLite engine under the contract suite: each database a new file in
// one folder per test binary.
#include <sqlite3.h>

#include <stdexcept>

#include "db/sqlite_store.h"
#include "tests/db/engine.h"
#include "tests/support/support.h"

namespace bw::testing {

namespace {

class SqliteEngine final : public TestEngine {
 public:
  std::string new_database() override { return m_dir.path() + "/db-" + std::to_string(++m_count) + ".db"; }

  Result<std::unique_ptr<db::Store>> open_at(const std::string& database, int schema) override {
    BW_TRY(auto s, db::SqliteStore::open(database, schema));
    return std::unique_ptr<db::Store>(std::move(s));
  }

  void set_schema_version(const std::string& database, int version) override {
    sqlite3* raw = nullptr;
    if (sqlite3_open(database.c_str(), &raw) != SQLITE_OK) throw std::runtime_error("cannot open " + database);
    int rc = sqlite3_exec(raw, ("PRAGMA user_version=" + std::to_string(version)).c_str(), nullptr, nullptr, nullptr);
    sqlite3_close(raw);
    if (rc != SQLITE_OK) throw std::runtime_error("cannot set user_version of " + database);
  }

  void exec(const std::string& database, const std::string& sql) override {
    sqlite3* raw = nullptr;
    if (sqlite3_open(database.c_str(), &raw) != SQLITE_OK) throw std::runtime_error("cannot open " + database);
    char* err = nullptr;
    int rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &err);
    std::string message = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(raw);
    if (rc != SQLITE_OK) throw std::runtime_error("exec on " + database + ": " + message);
  }

  std::set<std::string> tables(const std::string& database) override {
    return strings(database, "SELECT name FROM sqlite_master WHERE type='table' AND name != 'sqlite_sequence'");
  }

  std::set<std::string> columns(const std::string& database, const std::string& table) override {
    return strings(database, "SELECT name FROM pragma_table_info('" + table + "')");
  }

 private:
  // The first column of every row of `sql`.
  static std::set<std::string> strings(const std::string& database, const std::string& sql) {
    sqlite3* raw = nullptr;
    if (sqlite3_open(database.c_str(), &raw) != SQLITE_OK) throw std::runtime_error("cannot open " + database);
    sqlite3_stmt* st = nullptr;
    std::set<std::string> out;
    if (sqlite3_prepare_v2(raw, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) out.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    }
    sqlite3_finalize(st);
    sqlite3_close(raw);
    return out;
  }

  TempDir m_dir{"bw-db-sqlite"};
  int m_count = 0;
};

}  // namespace

TestEngine& test_engine() {
  static SqliteEngine engine;
  return engine;
}

}  // namespace bw::testing
