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

  void exec(const std::string& database, const std::string& sql) override { shared_postgres().query(m_names.at(database), sql); }

  std::set<std::string> tables(const std::string& database) override {
    return split(shared_postgres().query(m_names.at(database),
                                         "SELECT string_agg(table_name, ',') FROM information_schema.tables "
                                         "WHERE table_schema = current_schema() AND table_name NOT LIKE 'basewatch\\_%'"));
  }

  std::set<std::string> columns(const std::string& database, const std::string& table) override {
    return split(shared_postgres().query(m_names.at(database), "SELECT string_agg(column_name, ',') FROM information_schema.columns "
                                                               "WHERE table_schema = current_schema() AND table_name = '" +
                                                                   table + "'"));
  }

 private:
  static std::set<std::string> split(const std::string& list) {
    std::set<std::string> out;
    size_t from = 0;
    while (from < list.size()) {
      size_t comma = list.find(',', from);
      if (comma == std::string::npos) comma = list.size();
      out.insert(list.substr(from, comma - from));
      from = comma + 1;
    }
    return out;
  }

  std::map<std::string, std::string> m_names;  // URI -> database name
};

}  // namespace

TestEngine& test_engine() {
  static PgEngine engine;
  return engine;
}

}  // namespace bw::testing
