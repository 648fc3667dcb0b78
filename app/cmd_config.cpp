// basewatch config check: validates a config and scans its Dockerfiles.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app/cli.h"
#include "app/commands.h"
#include "app/wiring.h"
#include "watcher/model.h"

namespace bw::app {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

int cmd_config_check(const std::string& config_path) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  if (auto problems = config_problems(*cfg); !problems.empty()) {
    for (const auto& p : problems) std::cerr << "basewatch: " << p << "\n";
    return k_exit_usage;
  }
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::cerr << "basewatch: " << model.error().message << "\n";
    return exit_for(model.error());
  }
  // A config whose Dockerfiles cannot be read or scanned is not ok: say
  // what is wrong (each with its place) and nothing else.
  if (!model->errors.empty()) {
    for (const auto& e : model->errors) std::cerr << "basewatch: " << e << "\n";
    return k_exit_failure;
  }
  for (const auto& w : model->warnings) std::cerr << "basewatch: " << w << "\n";
  if (auto st = config::require_something_to_watch(*cfg); !st) {
    std::cerr << "basewatch: " << st.error().message << " (serve and check refuse this config)\n";
  }
  std::cout << cfg->file << ": ok (" << model->projects.size() << " projects, " << model->items.size()
            << " references to watch, " << cfg->triggers.size() << " triggers)\n";
  return k_exit_ok;
}

}  // namespace

void add_config_commands(CLI::App& app, Commands& out) {
  auto config_path = std::make_shared<std::string>();
  auto* config_cmd = app.add_subcommand("config", "Config file commands");
  config_cmd->require_subcommand(1);
  auto* config_check = config_cmd->add_subcommand("check", "Validate a config file (and scan its Dockerfiles) and exit");
  add_config_option(*config_check, *config_path);
  out.push_back({config_check, [config_path] { return cmd_config_check(*config_path); }});
}

}  // namespace bw::app
