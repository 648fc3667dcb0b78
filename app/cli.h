#pragma once

namespace bw::app {

// Exit status: 0 success; 1 an operational failure; 2 a usage or config error.
constexpr int k_exit_ok = 0;
constexpr int k_exit_failure = 1;
constexpr int k_exit_usage = 2;

int run_cli(int argc, char** argv);

}  // namespace bw::app
