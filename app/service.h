// `basewatch serve`: wires the parts together and runs the loops until
// SIGTERM/SIGINT; SIGHUP reloads the config and the Dockerfiles.
#pragma once

#include <cstdint>
#include <string>

#include "util/time.h"

namespace bw::app {

// Runs the service until SIGTERM/SIGINT (exit 0 once in-flight work ended or
// was parked within $BASEWATCH_STOP_TIMEOUT seconds, default 20). Under
// systemd (Type=notify): READY=1 once the database is open, the Dockerfiles
// are scanned and the API listens; STATUS= lines; WATCHDOG=1 at half of
// $WATCHDOG_USEC; RELOADING=1 / READY=1 around a SIGHUP reload; STOPPING=1.
// Dockerfiles are rescanned every 2s (stat, then content hash) and the model
// is rebuilt when they changed or a `dockerfiles:` glob matches other files.
int serve(const std::string& config_path);

// The one-line STATUS= summary, e.g. "watching 3 references, last poll
// 2026-11-28T12:00:00Z, 1 pending delivery". `last_poll` at the epoch means
// none yet; `errors` (Dockerfiles that could not be scanned) shows when > 0;
// `role` ("leading", "following": several instances on one database) ends
// it after "; " when given.
std::string status_line(size_t references, TimePoint last_poll, int64_t pending, size_t errors, const std::string& role = "");

}  // namespace bw::app
