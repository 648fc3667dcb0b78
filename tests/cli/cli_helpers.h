// Shared pieces of the CLI tests: running the real basewatch binary and the
// expected shape of one `scan --json` image.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "tests/integration/helpers.h"

namespace bw::testing {

// `basewatch ARGS...`, bounded in time.
inline RunResult basewatch(std::vector<std::string> args, const std::map<std::string, std::string>& env = {}) {
  args.insert(args.begin(), basewatch_binary());
  return run(args, env, "", std::chrono::seconds(30));
}

// One entry of a file's "images" in `scan --json`, every key product.md names.
inline nlohmann::json image(const std::string& ref, const std::string& written, int line, const std::string& stage,
                            const std::string& kind, const std::string& via, nlohmann::json platform = nullptr,
                            nlohmann::json pinned = nullptr) {
  return {{"ref", ref},   {"written", written}, {"line", line},         {"stage", stage},
          {"kind", kind}, {"via", via},         {"platform", platform}, {"pinned", pinned}};
}

inline nlohmann::json scanned(const std::string& path, std::vector<nlohmann::json> images) {
  return {{"path", path}, {"error", nullptr}, {"images", images}, {"warnings", nlohmann::json::array()}};
}

inline nlohmann::json failed(const std::string& path, const std::string& error) {
  return {{"path", path}, {"error", error}, {"images", nlohmann::json::array()}, {"warnings", nlohmann::json::array()}};
}

}  // namespace bw::testing
