#include "app/cli.h"

#include <malloc.h>

#include <csignal>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "app/commands.h"

namespace bw::app {

std::optional<config::Config> load_config(const std::string& given) {
  auto cfg = config::load(config::default_path(given));
  if (!cfg) {
    std::cerr << "basewatch: " << cfg.error().message << "\n";
    return std::nullopt;
  }
  return *cfg;
}

int exit_for(const Error& e) { return e.kind == ErrorKind::invalid ? k_exit_usage : k_exit_failure; }

void add_config_option(CLI::App& sub, std::string& path) { sub.add_option("-c,--config", path, "Config file"); }

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

int run_cli(int argc, char** argv) {
  // glibc gives each thread that allocates its own arena (up to 8 per core);
  // the poll workers are I/O bound, and two arenas keep memory per watched
  // reference small (bench/registry: 2.5 KB -> 1.8 KB peak RSS per reference).
  // MALLOC_ARENA_MAX in the environment still wins.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
  // A peer that closes a socket (or a pipe) while we write must be an EPIPE
  // error on that write, not a silent death of the process. Children get the
  // default back (triggers/process.cpp, registry/credentials.cpp).
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"basewatch: watches the base images your Dockerfiles build FROM and triggers rebuilds when they change"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("basewatch ") + BASEWATCH_VERSION);

  // The order here is the order of `basewatch --help` (and the man page).
  Commands commands;
  add_service_commands(app, commands);
  add_scan_commands(app, commands);
  add_graph_commands(app, commands);
  add_refs_commands(app, commands);
  add_status_commands(app, commands);
  add_config_commands(app, commands);
  add_outbox_commands(app, commands);
  add_mirror_commands(app, commands);
  add_db_commands(app, commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return k_exit_usage;
  }
  // The deepest chosen subcommand runs ("config check", not "config").
  for (const auto& c : commands) {
    if (c.sub->parsed()) return c.run();
  }
  return k_exit_usage;
}

}  // namespace bw::app
