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

 private:
  TempDir m_dir{"bw-db-sqlite"};
  int m_count = 0;
};

}  // namespace

TestEngine& test_engine() {
  static SqliteEngine engine;
  return engine;
}

}  // namespace bw::testing
