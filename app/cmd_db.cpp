// basewatch db copy: moves a whole state from one database to another
// (SQLite path or PostgreSQL URI, either way).

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "app/cli.h"
#include "app/commands.h"
#include "db/copy.h"
#include "db/store.h"
#include "util/database_uri.h"

namespace bw::app {

namespace fs = std::filesystem;

namespace {

bool is_file(const std::string& database) { return !is_postgres_uri(database) && database != ":memory:"; }

int cmd_db_copy(const std::string& src, const std::string& dst) {
  auto fail = [](const std::string& what, const Error& e) {
    std::cerr << "basewatch: " << what << e.message << "\n";
    return exit_for(e);
  };
  std::error_code same_error;
  if (src == dst || (is_file(src) && is_file(dst) && fs::equivalent(src, dst, same_error))) {
    return fail("", make_error(ErrorKind::invalid, "db copy: SRC and DST are the same database"));
  }
  // The source must exist: opening a missing file would make an empty one.
  if (is_file(src) && !fs::exists(src)) {
    return fail("", make_error(ErrorKind::invalid, src + ": no such database file"));
  }
  auto from = db::Store::open(src);
  if (!from) return fail("", from.error());
  bool made = is_file(dst) && !fs::exists(dst);
  auto to = db::Store::open(dst);
  if (!to) return fail("", to.error());
  auto copied = db::copy_store(**from, **to);
  if (!copied) {
    // A file this command made holds nothing of value: leave no trace.
    if (made) {
      to->reset();
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(dst + suffix, ec);
    }
    return fail(redact_database(dst) + ": ", copied.error());
  }
  std::cout << "copied " << redact_database(src) << " to " << redact_database(dst) << ":";
  bool first = true;
  for (const char* table : db::k_tables) {
    std::cout << (first ? " " : ", ") << table << " " << copied->at(table);
    first = false;
  }
  std::cout << "\n";
  return k_exit_ok;
}

}  // namespace

void add_db_commands(CLI::App& app, Commands& out) {
  struct Options {
    std::string src, dst;
  };
  auto o = std::make_shared<Options>();
  auto* db_cmd = app.add_subcommand("db", "Database commands");
  db_cmd->require_subcommand(1);
  auto* copy = db_cmd->add_subcommand(
      "copy", "Copy the whole state (references, events, the outbox) from SRC into DST, which must be empty");
  copy->add_option("SRC", o->src, "A SQLite file or a postgresql:// URI")->required();
  copy->add_option("DST", o->dst, "A SQLite file (made when missing) or a postgresql:// URI, empty")->required();
  out.push_back({copy, [o] { return cmd_db_copy(o->src, o->dst); }});
}

}  // namespace bw::app
