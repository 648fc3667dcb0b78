#include "triggers/task.h"

#include <filesystem>
#include <system_error>

#include "util/time.h"

namespace bw::triggers {

namespace fs = std::filesystem;

std::string task_log_path(const std::string& folder, const std::string& delivery_id, int attempt) {
  return (fs::path(folder) / (delivery_id + "." + std::to_string(attempt) + ".log")).string();
}

Status make_log_folder(const std::string& folder) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) return make_error(ErrorKind::io, "cannot create the build log folder " + folder + ": " + ec.message());
  return ok_status();
}

std::string TaskTrigger::log_path(const std::string& delivery_id, int attempt) const {
  return task_log_path(m_log_dir, delivery_id, attempt);
}

std::optional<Outcome> TaskTrigger::prepare_log_folder() const {
  if (auto st = make_log_folder(m_log_dir); !st) return failed(st.error());
  return std::nullopt;
}

std::string run_failure(const ProcessResult& r, Millis timeout) {
  if (r.timed_out) return "timed out after " + format_duration(timeout) + "; the process group was killed";
  if (r.signal != 0) return "killed by signal " + std::to_string(r.signal);
  if (r.exit_code != 0) return "exit status " + std::to_string(r.exit_code);
  return "";
}

Outcome task_outcome(const Result<ProcessResult>& run, Millis timeout, const std::string& log_path, const std::string& what) {
  Outcome out;
  if (!run) {
    out.error = what + run.error().message;
    out.output_tail = read_tail(log_path, k_output_tail_bytes);
    return out;
  }
  out.status = run->exit_code;
  out.output_tail = read_tail(log_path, k_output_tail_bytes);
  std::string failure = run_failure(*run, timeout);
  if (failure.empty()) {
    out.delivered = true;
  } else {
    out.error = what + failure + " (log: " + log_path + ")";
  }
  return out;
}

}  // namespace bw::triggers
