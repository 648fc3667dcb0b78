// spdlog to stderr: timestamps and levels for a terminal; under journald
// ($JOURNAL_STREAM) no timestamps and <N> priority prefixes; JSON lines with
// log.format: json.
#pragma once

#include <string>
#include <string_view>

namespace bw::app {

// Configures the "basewatch" logger (the default one). Safe to call again
// while other threads log: a reload applies log.level and log.format.
// Journald mode needs $JOURNAL_STREAM to name stderr's device:inode.
void setup_logging(const std::string& level, const std::string& format);

// `text` as the inside of a JSON string: `"`, `\` and control characters
// escaped, invalid UTF-8 bytes replaced by \ufffd.
std::string json_escape(std::string_view text);

}  // namespace bw::app
