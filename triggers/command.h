// type: command — a task build that basewatch runs itself: the argv without
// a shell, the delivery body on stdin and in $BASEWATCH_PAYLOAD_FILE, and
//   BASEWATCH_DELIVERY_ID, BASEWATCH_PROJECT,
//   BASEWATCH_CHANGED_REFS (space-separated), BASEWATCH_PAYLOAD_FILE
// in the environment. It runs in `workdir`, else the project's build
// context, else the Dockerfile's folder. stdout and stderr go to
// <builds.logs>/<delivery id>.<attempt>.log; the attempt keeps the exit code,
// the duration and the log's tail. Exit 0 is delivered; anything else, a
// timeout (the whole process group is killed) or a program that cannot be
// started is retried with the usual backoff.
#pragma once

#include "triggers/process.h"
#include "triggers/task.h"
#include "triggers/trigger.h"

namespace bw::triggers {

class CommandTrigger final : public TaskTrigger {
 public:
  CommandTrigger(config::TriggerConfig cfg, ProcessRunner& runner, std::string log_dir,
                 std::map<std::string, std::string> project_contexts)
      : TaskTrigger(std::move(cfg), runner, std::move(log_dir)), m_contexts(std::move(project_contexts)) {}
  Outcome deliver(const db::Delivery& delivery) override;
  const char* type() const override { return "command"; }

 private:
  std::map<std::string, std::string> m_contexts;
};

}  // namespace bw::triggers
