#include "triggers/command.h"

#include <filesystem>
#include <system_error>

#include "util/files.h"
#include "util/strings.h"

namespace bw::triggers {

namespace fs = std::filesystem;

std::string CommandTrigger::log_path(const std::string& delivery_id, int attempt) const {
  return (fs::path(m_log_dir) / (delivery_id + "." + std::to_string(attempt) + ".log")).string();
}

Outcome CommandTrigger::deliver(const db::Delivery& d) {
  auto summary = summarize(d);
  if (!summary) return refused(summary.error());
  std::error_code ec;
  fs::create_directories(m_log_dir, ec);
  if (ec) {
    Outcome out;
    out.error = "cannot create the build log folder " + m_log_dir + ": " + ec.message();
    return out;
  }
  std::string payload_file = (fs::path(m_log_dir) / (d.id + ".json")).string();
  if (auto st = write_file_atomic(payload_file, d.payload); !st) {
    Outcome out;
    out.error = st.error().message;
    return out;
  }

  ProcessSpec spec;
  spec.argv = m_cfg.command;
  spec.stdin_data = d.payload;
  spec.timeout = m_cfg.timeout;
  spec.log_path = log_path(d.id, d.attempts + 1);
  spec.env = {{"BASEWATCH_DELIVERY_ID", d.id},
              {"BASEWATCH_PROJECT", summary->project},
              {"BASEWATCH_CHANGED_REFS", join(summary->changed_refs, " ")},
              {"BASEWATCH_PAYLOAD_FILE", payload_file}};
  if (!m_cfg.workdir.empty()) {
    spec.workdir = m_cfg.workdir;
  } else if (auto c = m_contexts.find(summary->project); c != m_contexts.end() && !c->second.empty()) {
    spec.workdir = c->second;
  } else if (!summary->dockerfile.empty()) {
    spec.workdir = fs::path(summary->dockerfile).parent_path().string();
  }

  auto res = m_runner.run(spec);
  fs::remove(payload_file, ec);
  Outcome out;
  if (!res) {
    out.error = res.error().message;
    return out;
  }
  out.status = res->exit_code;
  out.output_tail = read_tail(spec.log_path, k_output_tail_bytes);
  if (res->timed_out) {
    out.error = "timed out after " + format_duration(m_cfg.timeout) + "; the process group was killed";
  } else if (res->signal != 0) {
    out.error = "killed by signal " + std::to_string(res->signal);
  } else if (res->exit_code != 0) {
    out.error = "exit status " + std::to_string(res->exit_code);
  } else {
    out.delivered = true;
  }
  if (!out.delivered) out.error += " (log: " + spec.log_path + ")";
  return out;
}

}  // namespace bw::triggers
