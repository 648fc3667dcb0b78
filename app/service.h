// `basewatch serve`: wires the parts together and runs the loops until
// SIGTERM/SIGINT; SIGHUP reloads the config and the Dockerfiles.
#pragma once

#include <string>

namespace bw::app {

int serve(const std::string& config_path);

}  // namespace bw::app
