// Shared pieces of the integration tests: the basewatch binary under test,
// a config writer, and a JSON GET against its API.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <string>

#include "tests/support/support.h"

namespace bw::testing {

// Set by CMake: the path of the basewatch binary.
inline std::string basewatch_binary() { return BASEWATCH_BINARY; }

inline nlohmann::json get_json(int port, const std::string& path, const std::string& token = "") {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(5, 0);
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  auto res = c.Get(path.c_str(), h);
  if (!res || res->status != 200) return nullptr;
  return nlohmann::json::parse(res->body, nullptr, false);
}

// A service on `database` polling every second: one project, web (its
// Dockerfile at web/Dockerfile), whose ci trigger posts to `receiver`.
// `extra` is more top-level YAML.
inline std::string web_config(const std::string& database, int api_port, const LocalRegistry& registry,
                              const Receiver& receiver, const std::string& extra = "") {
  return "database: \"" + database + "\"\n"
         "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
         "log: {level: debug}\n"
         "poll: {interval: 1s, jitter: 0%, settle: 0s}\n" + extra +
         "registries:\n"
         "  " + registry.host() + ": {insecure: true}\n"
         "projects:\n"
         "  - name: web\n"
         "    dockerfile: web/Dockerfile\n"
         "    triggers: [ci]\n"
         "triggers:\n"
         "  ci: {type: webhook, url: \"" + receiver.url("/hooks/rebuild") + "\", timeout: 5s}\n";
}

// Runs `basewatch serve -c config` and waits until /healthz answers.
inline std::unique_ptr<Process> start_basewatch(const std::string& config, int api_port, const std::string& log,
                                                std::map<std::string, std::string> env = {}) {
  auto p = std::make_unique<Process>(std::vector<std::string>{basewatch_binary(), "serve", "-c", config}, env, log);
  bool up = wait_until([&] { return !get_json(api_port, "/healthz").is_null() || !p->running(); }, std::chrono::seconds(20));
  (void)up;
  return p;
}

}  // namespace bw::testing
