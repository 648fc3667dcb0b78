// The command line, one file per group of commands (cmd_*.cpp), as ninja's
// tools or git's builtin/ are laid out. Each group adds its subcommands to
// the CLI11 app and says what runs when one is chosen; cli.cpp parses and
// dispatches. What the groups share (loading the config, exit codes, tables)
// is here.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "util/result.h"

namespace CLI {
class App;
}

namespace bw::app {

// A subcommand and what it runs when parsing chose it.
struct Command {
  CLI::App* sub = nullptr;
  std::function<int()> run;
};
using Commands = std::vector<Command>;

// Each adds its group's subcommands (options bound to storage the group
// owns) to `app` and appends what to run to `out`.
void add_service_commands(CLI::App& app, Commands& out);  // serve, check, digest (cmd_check.cpp)
void add_scan_commands(CLI::App& app, Commands& out);     // scan
void add_graph_commands(CLI::App& app, Commands& out);    // graph, impact
void add_status_commands(CLI::App& app, Commands& out);   // status
void add_outbox_commands(CLI::App& app, Commands& out);   // deliveries, redeliver
void add_config_commands(CLI::App& app, Commands& out);   // config check
void add_mirror_commands(CLI::App& app, Commands& out);   // import, mirror sync
void add_refs_commands(CLI::App& app, Commands& out);     // refs, refs fix
void add_db_commands(CLI::App& app, Commands& out);       // db copy

// The -c option every command that reads a config has.
void add_config_option(CLI::App& sub, std::string& path);

// Loads the config or prints its error on stderr; nullopt means exit 2.
std::optional<config::Config> load_config(const std::string& given);
// 2 for config-level errors (ErrorKind::invalid), else 1.
int exit_for(const Error& e);
// Prints rows as columns two spaces apart (the first row is the header).
void print_table(const std::vector<std::vector<std::string>>& rows);

}  // namespace bw::app
