// The engine a contract test binary runs against. contract_test.cpp is
// compiled once per engine, each time linked with one file that defines
// test_engine() (engine_sqlite.cpp, ...): the same cases, unchanged, against
// every engine behind db::Store.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "db/store.h"

namespace bw::testing {

class TestEngine {
 public:
  virtual ~TestEngine() = default;
  // The `database:` value of a new, empty database of this engine (a file in
  // a fresh folder, a fresh database on the test's server).
  virtual std::string new_database() = 0;
  // Opens `database` migrated only up to `schema` (an older basewatch's
  // database, for the migration cases).
  virtual Result<std::unique_ptr<db::Store>> open_at(const std::string& database, int schema) = 0;
  // Writes the stored schema version behind the store's back (as a newer
  // basewatch would have).
  virtual void set_schema_version(const std::string& database, int version) = 0;
  // Runs SQL on the database behind the store's back (rows as an older
  // basewatch wrote them, with only the columns its schema had).
  virtual void exec(const std::string& database, const std::string& sql) = 0;
  // The tables the database holds, by name, without the engine's own
  // bookkeeping (sqlite_sequence; basewatch_schema and the cluster's basewatch_*).
  virtual std::set<std::string> tables(const std::string& database) = 0;
  // The columns of `table`, by name.
  virtual std::set<std::string> columns(const std::string& database, const std::string& table) = 0;
};

TestEngine& test_engine();

}  // namespace bw::testing
