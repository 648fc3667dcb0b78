// The PostgreSQL engine under the contract suite: one real server per test
// binary (tests/support/postgres.h), a new database for each database asked.
#include "db/pg_store.h"
#include "tests/db/engine.h"
#include "tests/support/postgres.h"

namespace bw::testing {

namespace {

class PgEngine final : public TestEngine {
 public:
  std::string new_database() override {
    std::string name = shared_postgres().create_database();
    std::string uri = shared_postgres().uri(name);
    m_names[uri] = name;
    return uri;
  }

  Result<std::unique_ptr<db::Store>> open_at(const std::string& database, int schema) override {
    BW_TRY(auto s, db::PgStore::open(database, schema));
    return std::unique_ptr<db::Store>(std::move(s));
  }

  void set_schema_version(const std::string& database, int version) override {
    shared_postgres().query(m_names.at(database), "UPDATE basewatch_schema SET version=" + std::to_string(version));
  }

 private:
  std::map<std::string, std::string> m_names;  // URI -> database name
};

}  // namespace

TestEngine& test_engine() {
  static PgEngine engine;
  return engine;
}

}  // namespace bw::testing
