// basewatch graph and basewatch impact: the dependency graph of the config.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app/cli.h"
#include "app/commands.h"
#include "watcher/model.h"

namespace bw::app {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- graph / impact ----

int cmd_graph(const std::string& config_path, const std::string& format) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::cerr << "basewatch: " << model.error().message << "\n";
    return exit_for(model.error());
  }
  for (const auto& e : model->errors) std::cerr << "basewatch: " << e << "\n";
  if (format == "json") std::cout << model->graph->to_json() << "\n";
  else if (format == "dot") std::cout << model->graph->to_dot();
  else std::cout << model->graph->to_text();
  return k_exit_ok;
}

int cmd_impact(const std::string& config_path, const std::string& ref_text, bool as_json) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  auto ref = oci::parse_reference(ref_text);
  if (!ref) {
    std::cerr << "basewatch: " << ref.error().message << "\n";
    return k_exit_usage;
  }
  auto model = watcher::build_model(*cfg);
  if (!model) {
    std::cerr << "basewatch: " << model.error().message << "\n";
    return exit_for(model.error());
  }
  auto plan = model->graph->impact(ref->tag_ref());
  if (as_json) {
    std::cout << json{{"ref", ref->tag_ref()}, {"plan", plan}}.dump() << "\n";
  } else {
    for (const auto& p : plan) std::cout << p << "\n";
  }
  return k_exit_ok;
}

}  // namespace

void add_graph_commands(CLI::App& app, Commands& out) {
  struct Options {
    std::string config, format = "text", ref;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* graph = app.add_subcommand("graph", "The dependency graph: upstream references, projects, produced images");
  add_config_option(*graph, o->config);
  graph->add_option("--format", o->format, "text, json or dot")->check(CLI::IsMember({"text", "json", "dot"}));
  out.push_back({graph, [o] { return cmd_graph(o->config, o->format); }});

  auto* impact = app.add_subcommand("impact", "What a change of REF rebuilds, in build order");
  add_config_option(*impact, o->config);
  impact->add_flag("--json", o->json, "One JSON document on stdout");
  impact->add_option("REF", o->ref, "Image reference")->required();
  out.push_back({impact, [o] { return cmd_impact(o->config, o->ref, o->json); }});
}

}  // namespace bw::app
