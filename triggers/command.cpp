#include "triggers/command.h"

#include <filesystem>
#include <system_error>

#include "triggers/task.h"
#include "util/files.h"
#include "util/strings.h"

namespace bw::triggers {

namespace fs = std::filesystem;

Outcome CommandTrigger::deliver(const db::Delivery& d) {
  auto summary = summarize(d);
  if (!summary) return refused(summary.error());
  if (auto cannot = prepare_log_folder()) return *cannot;
  std::string payload_file = (fs::path(m_log_dir) / (d.id + ".json")).string();
  if (auto st = write_file_atomic(payload_file, d.payload); !st) return failed(st.error());

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
  std::error_code ec;
  fs::remove(payload_file, ec);
  return task_outcome(res, m_cfg.timeout, spec.log_path);
}

}  // namespace bw::triggers
