// Config files and docker config.json are outside input: whatever they hold,
// parsing ends in a value or an error with a place, never a crash or a throw.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config.h"
#include "registry/credentials.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = bw::config::parse(text, "/fuzz/config.yaml");
  if (!cfg.ok()) {
    // Every config error names the file first.
    if (cfg.error().message.rfind("/fuzz/config.yaml:", 0) != 0) std::abort();
  }
  // The same bytes as a docker config.json, for two registries; helpers are
  // never run (a fake runner answers "not found").
  auto no_helper = [](const std::string&, const std::string&) -> bw::Result<bw::registry::HelperOutput> {
    return bw::registry::HelperOutput{1, "", "credentials not found in native keychain"};
  };
  (void)bw::registry::docker_config_credentials(text, "/fuzz/config.json", "docker.io", no_helper);
  (void)bw::registry::docker_config_credentials(text, "/fuzz/config.json", "127.0.0.1:5000", no_helper);
  (void)bw::registry::base64_decode(text);
  return 0;
}
