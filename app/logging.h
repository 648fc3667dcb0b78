// spdlog to stderr: timestamps and levels for a terminal; under journald
// ($JOURNAL_STREAM) no timestamps and <N> priority prefixes; JSON lines with
// log.format: json.
#pragma once

#include <string>

namespace bw::app {

void setup_logging(const std::string& level, const std::string& format);

}  // namespace bw::app
