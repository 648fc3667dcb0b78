#include "triggers/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <thread>

extern char** environ;

namespace bw::triggers {

namespace {

constexpr Millis k_kill_grace{2000};  // SIGTERM to SIGKILL, on timeout or cancel
constexpr int k_poll_ms = 10;

std::string errno_text(int e) { return std::strerror(e); }

// Closes every descriptor from `from` up, except `keep`. Runs in the child
// between fork and exec: only async-signal-safe calls.
void close_fds_from(int from, int keep) {
  bool ok = keep <= from || syscall(SYS_close_range, from, keep - 1, 0) == 0;
  ok = syscall(SYS_close_range, std::max(from, keep + 1), ~0U, 0) == 0 && ok;
  if (!ok) {  // no close_range (kernels before 5.9)
    for (int fd = from; fd < 4096; ++fd) {
      if (fd != keep) close(fd);
    }
  }
}

// Writes without raising SIGPIPE on this thread when the child closed its stdin.
ssize_t write_no_sigpipe(int fd, const char* data, size_t n) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ssize_t w = write(fd, data, n);
  int saved = errno;
  if (w < 0 && saved == EPIPE) {
    timespec zero{0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);  // consume the pending SIGPIPE
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return w;
}

}  // namespace

Result<ProcessResult> RealProcessRunner::run(const ProcessSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorKind::invalid, "no command to run");
  if (!spec.workdir.empty()) {
    struct stat st{};
    if (stat(spec.workdir.c_str(), &st) != 0) {
      return make_error(ErrorKind::io, "working directory " + spec.workdir + ": " + errno_text(errno));
    }
    if (!S_ISDIR(st.st_mode)) return make_error(ErrorKind::io, "working directory " + spec.workdir + ": not a directory");
  }
  int log_fd = open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (spec.append_log ? O_APPEND : O_TRUNC), 0640);
  if (log_fd < 0) return make_error(ErrorKind::io, "cannot create build log " + spec.log_path + ": " + errno_text(errno));

  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls (the parent has other threads).
  std::set<std::string> replaced;
  for (const auto& [k, v] : spec.env) replaced.insert(k);
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    std::string s(*e);
    if (!replaced.count(s.substr(0, s.find('=')))) env_strings.push_back(std::move(s));
  }
  for (const auto& [k, v] : spec.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = spec.argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  int in_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close(log_fd);
    return make_error(ErrorKind::io, "pipe: " + errno_text(e));
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close(log_fd);
    close(in_pipe[0]);
    close(in_pipe[1]);
    return make_error(ErrorKind::io, "pipe: " + errno_text(e));
  }
  auto started = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    for (int fd : {log_fd, in_pipe[0], in_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    return make_error(ErrorKind::io, "fork: " + errno_text(e));
  }
  if (pid == 0) {
    // The child: its own session and process group, so a timeout can kill
    // everything it started; default signal handling (serve blocks SIGTERM,
    // SIGINT and SIGHUP in every thread, and a blocked mask survives exec).
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaction(sig, &dfl, nullptr);
    dup2(in_pipe[0], 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    close_fds_from(3, err_pipe[1]);
    char tag = 'x';
    if (!spec.workdir.empty() && chdir(spec.workdir.c_str()) != 0) tag = 'd';
    else execvpe(argv[0], argv.data(), envp.data());
    int e = errno;
    char msg[1 + sizeof(int)];
    msg[0] = tag;
    std::memcpy(msg + 1, &e, sizeof(int));
    ssize_t ignored = write(err_pipe[1], msg, sizeof msg);
    (void)ignored;
    _exit(127);
  }
  close(in_pipe[0]);
  close(err_pipe[1]);
  close(log_fd);

  // exec succeeded when the CLOEXEC pipe closes without a message.
  char msg[1 + sizeof(int)];
  ssize_t got;
  do got = read(err_pipe[0], msg, sizeof msg);
  while (got < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (got == static_cast<ssize_t>(sizeof msg)) {
    close(in_pipe[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    int e = 0;
    std::memcpy(&e, msg + 1, sizeof(int));
    if (msg[0] == 'd') return make_error(ErrorKind::io, "working directory " + spec.workdir + ": " + errno_text(e));
    return make_error(ErrorKind::io, "cannot run \"" + spec.argv[0] + "\": " + errno_text(e));
  }

  int in_fd = in_pipe[1];
  fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
  size_t written = 0;
  if (spec.stdin_data.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  ProcessResult result;
  int status = 0;
  bool killing = false;
  std::chrono::steady_clock::time_point kill_at{};
  auto deadline = spec.timeout.count() > 0 ? started + spec.timeout : std::chrono::steady_clock::time_point::max();
  while (true) {
    if (in_fd >= 0) {
      ssize_t w = write_no_sigpipe(in_fd, spec.stdin_data.data() + written, spec.stdin_data.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == spec.stdin_data.size()) {
        close(in_fd);
        in_fd = -1;
      }
    }
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) break;
    auto now = std::chrono::steady_clock::now();
    if (!killing) {
      bool cancel = spec.cancel && spec.cancel->load();
      if (now >= deadline || cancel) {
        result.timed_out = !cancel;
        result.cancelled = cancel;
        killing = true;
        kill_at = now + k_kill_grace;
        kill(-pid, SIGTERM);
      }
    } else if (now >= kill_at) {
      kill(-pid, SIGKILL);
      kill_at = std::chrono::steady_clock::time_point::max();
    }
    if (in_fd >= 0) {
      pollfd p{in_fd, POLLOUT, 0};
      poll(&p, 1, k_poll_ms);
    } else {
      std::this_thread::sleep_for(Millis(k_poll_ms));
    }
  }
  if (in_fd >= 0) close(in_fd);
  // Whatever the build left running in its group goes with it.
  kill(-pid, SIGKILL);
  result.duration = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
    result.exit_code = 128 + result.signal;
  }
  return result;
}

Result<ProcessResult> FakeProcessRunner::run(const ProcessSpec& spec) {
  {
    std::lock_guard lock(m_mutex);
    m_specs.push_back(spec);
  }
  return m_handler(spec);
}

std::vector<ProcessSpec> FakeProcessRunner::specs() const {
  std::lock_guard lock(m_mutex);
  return m_specs;
}

std::string read_tail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  auto size = static_cast<size_t>(in.tellg());
  size_t from = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(from));
  std::string s(size - from, '\0');
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  s.resize(static_cast<size_t>(in.gcount()));
  if (from > 0) {
    auto nl = s.find('\n');
    if (nl != std::string::npos && nl + 1 < s.size()) s.erase(0, nl + 1);
  }
  return s;
}

}  // namespace bw::triggers
