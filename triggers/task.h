// What the trigger types that run programs themselves (`command` and
// `build`) share: where an attempt's log goes, and how the end of a run
// becomes an Outcome (the exit code, the log's tail, why it failed).
#pragma once

#include <optional>
#include <string>

#include "triggers/process.h"
#include "triggers/trigger.h"

namespace bw::triggers {

// How much of the end of a build log an attempt keeps.
constexpr size_t k_output_tail_bytes = 4096;

// <folder>/<delivery id>.<attempt>.log, attempt counted from 1.
std::string task_log_path(const std::string& folder, const std::string& delivery_id, int attempt);

// Creates the log folder (and its parents).
Status make_log_folder(const std::string& folder);

// Why a run that ended did not succeed, or "" when it exited 0:
//   "exit status 3", "killed by signal 9",
//   "timed out after 30m; the process group was killed"
std::string run_failure(const ProcessResult& result, Millis timeout);

// The Outcome of a task whose last run was `run` (an Error when it could
// not start): the exit code as status, the last k_output_tail_bytes of
// `log_path`, and the error `what` + the failure + " (log: <path>)".
// `what` is "" for a command (the failure is the whole story) and names the
// step for a build ("buildah push: ").
Outcome task_outcome(const Result<ProcessResult>& run, Millis timeout, const std::string& log_path,
                     const std::string& what = "");

}  // namespace bw::triggers
