// The process seam for task builds. CommandTrigger runs its argv through a
// ProcessRunner: RealProcessRunner forks and execs (no shell), FakeProcessRunner
// answers from a handler so unit tests run no processes. Abstract so it can
// be faked, as ninja's CommandRunner.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "util/result.h"
#include "util/time.h"

namespace bw::triggers {

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is searched in PATH when it has no '/'
  // Added to the inherited environment (replacing variables of the same name).
  std::vector<std::pair<std::string, std::string>> env;
  std::string workdir;     // "" keeps basewatch's working directory
  std::string stdin_data;  // written to the child's stdin, which is then closed
  Millis timeout{0};       // 0: none. On timeout the whole process group is killed.
  std::string log_path;    // stdout and stderr both go here (created, truncated)
  bool append_log = false; // append to log_path instead of truncating it (a build's later steps)
  // When it becomes true while the process runs, the process group is killed
  // and the result says `cancelled` (basewatch is stopping).
  const std::atomic<bool>* cancel = nullptr;
};

struct ProcessResult {
  int exit_code = -1;  // the exit status, or 128+signal when a signal ended it
  int signal = 0;      // the signal that ended it, 0 when it exited
  bool timed_out = false;
  bool cancelled = false;
  Millis duration{0};
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Runs to completion (or timeout/cancel). An Error only when the process
  // could not be started at all: the log file cannot be created, the program
  // cannot be executed, the working directory does not exist.
  virtual Result<ProcessResult> run(const ProcessSpec& spec) = 0;
};

// fork + execvpe in a new session (so the build is its own process group),
// stdin from a pipe, stdout+stderr appended to the log file. Thread-safe.
class RealProcessRunner final : public ProcessRunner {
 public:
  Result<ProcessResult> run(const ProcessSpec& spec) override;
};

// Answers from a handler and records every spec.
class FakeProcessRunner final : public ProcessRunner {
 public:
  using Handler = std::function<Result<ProcessResult>(const ProcessSpec&)>;
  explicit FakeProcessRunner(Handler handler) : m_handler(std::move(handler)) {}
  Result<ProcessResult> run(const ProcessSpec& spec) override;
  std::vector<ProcessSpec> specs() const;

 private:
  Handler m_handler;
  mutable std::mutex m_mutex;
  std::vector<ProcessSpec> m_specs;
};

// The last `max_bytes` of a file, without the partial line it would start
// with (unless that is all there is); "" when the file cannot be read.
std::string read_tail(const std::string& path, size_t max_bytes);

}  // namespace bw::triggers
