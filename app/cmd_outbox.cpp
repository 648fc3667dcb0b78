// basewatch deliveries and basewatch redeliver: the trigger outbox.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app/cli.h"
#include "app/commands.h"
#include "api/views.h"
#include "db/store.h"
#include "util/strings.h"

namespace bw::app {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- deliveries ----

int cmd_deliveries(const std::string& config_path, const std::string& state_text, bool as_json) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  std::optional<db::DeliveryState> state;
  if (!state_text.empty()) {
    state = db::parse_delivery_state(state_text);
    if (!state) {
      std::cerr << "basewatch: --state: expected pending, delivered, failed or dead\n";
      return k_exit_usage;
    }
  }
  auto store = db::Store::open(cfg->database);
  if (!store) {
    std::cerr << "basewatch: " << store.error().message << "\n";
    return exit_for(store.error());
  }
  auto list = (*store)->list_deliveries(state, 1000);
  if (!list) {
    std::cerr << "basewatch: " << list.error().message << "\n";
    return k_exit_failure;
  }
  if (as_json) {
    json out = json::array();
    for (const auto& d : *list) out.push_back(api::delivery_json(d, false));
    std::cout << out.dump(2) << "\n";
    return k_exit_ok;
  }
  for (const auto& d : *list) {
    json j = api::delivery_json(d, false);
    std::cout << d.id << "\t" << db::to_string(d.state) << "\t" << d.trigger << "\t" << (d.project.empty() ? "-" : d.project)
              << "\tattempts " << d.attempts << "\tcreated " << api::iso_or_null_text(d.created_at);
    if (j.contains("refs")) std::cout << "\t" << join(j["refs"].get<std::vector<std::string>>(), " ");
    if (!d.last_error.empty()) std::cout << "\t" << d.last_error;
    std::cout << "\n";
  }
  return k_exit_ok;
}

int cmd_redeliver(const std::string& config_path, const std::string& id) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  auto store = db::Store::open(cfg->database);
  if (!store) {
    std::cerr << "basewatch: " << store.error().message << "\n";
    return exit_for(store.error());
  }
  auto st = (*store)->requeue(id, to_unix_ms(Clock::now()));
  if (!st) {
    std::cerr << "basewatch: " << st.error().message << "\n";
    return st.error().kind == ErrorKind::not_found ? k_exit_usage : k_exit_failure;
  }
  std::cout << "queued " << id << " (a running basewatch sends it within a second)\n";
  return k_exit_ok;
}

}  // namespace

void add_outbox_commands(CLI::App& app, Commands& out) {
  struct Options {
    std::string config, state, id;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* deliveries = app.add_subcommand("deliveries", "Show the trigger outbox");
  add_config_option(*deliveries, o->config);
  deliveries->add_option("--state", o->state, "pending, delivered, failed or dead");
  deliveries->add_flag("--json", o->json, "One JSON document on stdout");
  out.push_back({deliveries, [o] { return cmd_deliveries(o->config, o->state, o->json); }});

  auto* redeliver = app.add_subcommand("redeliver", "Queue one delivery again (same id)");
  add_config_option(*redeliver, o->config);
  redeliver->add_option("ID", o->id, "Delivery id")->required();
  out.push_back({redeliver, [o] { return cmd_redeliver(o->config, o->id); }});
}

}  // namespace bw::app
