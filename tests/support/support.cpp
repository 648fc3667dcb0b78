// Test support: real processes and real HTTP servers on 127.0.0.1.
#include "tests/support/support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "net/http.h"
#include "util/crypto.h"

extern char** environ;

namespace bw::testing {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------
// Small helpers

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool starts_with_ci(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == lower(prefix);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string tail(const std::string& s, size_t n = 4000) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::string url_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Parses "a=1&b=2&a=3" (form or query) into decoded pairs, in order.
std::vector<std::pair<std::string, std::string>> parse_query(const std::string& query) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    std::string part = query.substr(start, end - start);
    if (!part.empty()) {
      size_t eq = part.find('=');
      if (eq == std::string::npos) {
        out.emplace_back(url_decode(part), "");
      } else {
        out.emplace_back(url_decode(part.substr(0, eq)), url_decode(part.substr(eq + 1)));
      }
    }
    start = end + 1;
  }
  return out;
}

std::string base64url(std::string_view bytes) {
  std::string s = bw::base64_encode(bytes);
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

// Parses the parameters of a challenge: `Bearer realm="x",service="y"`.
std::map<std::string, std::string> challenge_params(const std::string& challenge) {
  std::map<std::string, std::string> out;
  size_t i = challenge.find(' ');
  if (i == std::string::npos) return out;
  while (i < challenge.size()) {
    while (i < challenge.size() && (challenge[i] == ' ' || challenge[i] == ',')) ++i;
    size_t eq = challenge.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = lower(challenge.substr(i, eq - i));
    i = eq + 1;
    std::string value;
    if (i < challenge.size() && challenge[i] == '"') {
      ++i;
      while (i < challenge.size() && challenge[i] != '"') {
        if (challenge[i] == '\\' && i + 1 < challenge.size()) ++i;
        value += challenge[i++];
      }
      ++i;
    } else {
      while (i < challenge.size() && challenge[i] != ',') value += challenge[i++];
    }
    out[key] = value;
  }
  return out;
}

// "linux/arm64/v8" -> os, architecture, variant.
struct Platform {
  std::string os, architecture, variant;
};

Platform parse_platform(const std::string& text) {
  Platform p;
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, '/')) parts.push_back(part);
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty()) {
    throw std::invalid_argument("platform must be os/arch[/variant]: " + text);
  }
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  return p;
}

ordered_json platform_json(const Platform& p) {
  ordered_json j = {{"architecture", p.architecture}, {"os", p.os}};
  if (!p.variant.empty()) j["variant"] = p.variant;
  return j;
}

}  // namespace

// A minimal valid ustar archive holding one regular file.
std::string make_tar(const std::string& name, const std::string& content) {
  if (name.size() >= 100) throw std::invalid_argument("tar member name too long");
  std::string header(512, '\0');
  auto put = [&header](size_t offset, const std::string& value) { header.replace(offset, value.size(), value); };
  auto octal = [](uint64_t value, size_t width) {  // width includes the NUL
    char buf[32];
    std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(value));
    return std::string(buf);
  };
  put(0, name);                         // name
  put(100, octal(0644, 8));             // mode
  put(108, octal(0, 8));                // uid
  put(116, octal(0, 8));                // gid
  put(124, octal(content.size(), 12));  // size
  put(136, octal(0, 12));               // mtime: fixed, so equal content gives equal digests
  put(148, std::string(8, ' '));        // checksum placeholder
  header[156] = '0';                    // regular file
  put(257, std::string("ustar\0", 6));  // magic
  put(263, "00");                       // version
  put(265, "root");                     // uname
  put(297, "root");                     // gname
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  char chk[8];
  std::snprintf(chk, sizeof chk, "%06o", sum);
  header.replace(148, 6, chk, 6);
  header[154] = '\0';
  header[155] = ' ';
  std::string out = header + content;
  out.append((512 - content.size() % 512) % 512, '\0');
  out.append(1024, '\0');  // two zero blocks
  return out;
}

namespace {

// ---------------------------------------------------------------------------
// Spawning

struct CStrings {
  std::vector<std::string> storage;
  std::vector<char*> pointers;
  explicit CStrings(std::vector<std::string> strings) : storage(std::move(strings)) {
    for (auto& s : storage) pointers.push_back(s.data());
    pointers.push_back(nullptr);
  }
  char* const* get() { return pointers.data(); }
};

std::vector<std::string> merged_environment(const std::map<std::string, std::string>& extra_env) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    std::string key = entry.substr(0, entry.find('='));
    if (extra_env.count(key) == 0) env.push_back(entry);
  }
  for (const auto& [key, value] : extra_env) env.push_back(key + "=" + value);
  return env;
}

// Forks and execs argv with fds in/out/err as 0/1/2, in a new session. Only
// async-signal-safe calls happen in the child (everything is prepared before
// fork), because the test binary has threads. Returns the pid, or -1 with
// *exec_error set when exec failed (the child is reaped then).
pid_t spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env, int in_fd,
            int out_fd, int err_fd, std::string* exec_error) {
  if (argv.empty()) throw std::invalid_argument("spawn: empty argv");
  CStrings cargv(argv);
  CStrings cenv(merged_environment(extra_env));
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(report[0]);
    close(report[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}) {
      struct sigaction sa {};
      sa.sa_handler = SIG_DFL;
      sigaction(sig, &sa, nullptr);
    }
    // Move the fds out of the 0..2 range first so the dup2s cannot clobber each other.
    int fds[3] = {in_fd, out_fd, err_fd};
    for (int& fd : fds) {
      if (fd >= 0 && fd < 3) fd = fcntl(fd, F_DUPFD, 3);
    }
    for (int i = 0; i < 3; ++i) {
      if (fds[i] >= 0) dup2(fds[i], i);
    }
    // Nothing else of the parent's (listening sockets, pipes) leaks into the child.
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {  // kernels before 5.11
      for (int fd = 3; fd < 4096; ++fd) {
        if (fd != report[1]) close(fd);
      }
    }
    execvpe(cargv.get()[0], cargv.get(), cenv.get());
    int e = errno;
    ssize_t ignored = write(report[1], &e, sizeof e);
    (void)ignored;
    _exit(127);
  }
  close(report[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(report[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (exec_error) *exec_error = "cannot execute " + argv[0] + ": " + std::strerror(child_errno);
    return -1;
  }
  return pid;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Blocks SIGPIPE in this thread while alive (writing to a pipe whose reader
// exited must not kill the test binary), and swallows one that came meanwhile.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    m_was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &m_old);
  }
  ~SigpipeGuard() {
    if (!m_was_pending) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      struct timespec zero {};
      while (sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t m_old;
  bool m_was_pending = false;
};

// ---------------------------------------------------------------------------
// HTTP client helpers

const char* const k_accept_all =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

const char* const k_docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";
const char* const k_docker_list = "application/vnd.docker.distribution.manifest.list.v2+json";
const char* const k_docker_config = "application/vnd.docker.container.image.v1+json";
const char* const k_docker_layer = "application/vnd.docker.image.rootfs.diff.tar";
const char* const k_oci_manifest = "application/vnd.oci.image.manifest.v1+json";
const char* const k_oci_index = "application/vnd.oci.image.index.v1+json";
const char* const k_oci_config = "application/vnd.oci.image.config.v1+json";
const char* const k_oci_layer = "application/vnd.oci.image.layer.v1.tar";

struct Url {
  std::string scheme_host_port;  // "http://127.0.0.1:5000"
  std::string path;              // "/token" (with query, if any)
};

Url split_url(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) throw std::invalid_argument("not an absolute URL: " + url);
  size_t slash = url.find('/', scheme + 3);
  if (slash == std::string::npos) return {url, "/"};
  return {url.substr(0, slash), url.substr(slash)};
}

std::unique_ptr<httplib::Client> make_client(const std::string& scheme_host_port) {
  auto client = std::make_unique<httplib::Client>(scheme_host_port);
  client->set_connection_timeout(2, 0);
  client->set_read_timeout(15, 0);
  client->set_write_timeout(15, 0);
  client->set_url_encode(false);
  client->set_keep_alive(false);
  return client;
}

}  // namespace

// ===========================================================================
// TempDir

TempDir::TempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp && *tmp) ? tmp : "/tmp";
  std::string templ = base + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp " + templ + ": " + std::strerror(errno));
  m_path = buf.data();
}

TempDir::~TempDir() {
  if (std::getenv("BASEWATCH_KEEP_TEST_DIRS")) {
    std::cerr << "keeping test dir " << m_path << "\n";
    return;
  }
  std::error_code ec;
  fs::remove_all(m_path, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  fs::path full = fs::path(m_path) / name;
  fs::create_directories(full.parent_path());
  std::ofstream out(full, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + full.string());
  return full.string();
}

// ===========================================================================
// free_port

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    close(fd);
    throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + std::strerror(e));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// ===========================================================================
// Process

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> extra_env, std::string log_path)
    : m_log_path(std::move(log_path)) {
  int log_fd = open(m_log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot open log " + m_log_path + ": " + std::strerror(errno));
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::string exec_error;
  pid_t pid = -1;
  try {
    pid = spawn(argv, extra_env, null_fd, log_fd, log_fd, &exec_error);
  } catch (...) {
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    throw;
  }
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  if (pid < 0) throw std::runtime_error(exec_error);
  m_pid = pid;
}

Process::~Process() {
  // A child reaped earlier is left alone: its pid (the group id) may since
  // belong to somebody else.
  if (m_pid <= 0 || m_status) return;
  auto exited_unreaped = [this] {
    siginfo_t info{};
    return waitid(P_PID, static_cast<id_t>(m_pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == m_pid;
  };
  if (!exited_unreaped()) {
    ::kill(-m_pid, SIGTERM);
    if (!wait_until(exited_unreaped, std::chrono::seconds(5))) ::kill(-m_pid, SIGKILL);
  }
  // The leader is not reaped yet, so its pid still names our group: kill what
  // is left of it (grandchildren), then reap.
  ::kill(-m_pid, SIGKILL);
  int status = 0;
  while (waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
  }
  m_status = decode_status(status);
}

bool Process::running() {
  if (m_status) return false;
  if (m_pid <= 0) return false;
  int status = 0;
  pid_t r = waitpid(m_pid, &status, WNOHANG);
  if (r == 0) return true;
  if (r == m_pid) {
    m_status = decode_status(status);
  } else {
    m_status = -1;  // ECHILD: somebody else reaped it
  }
  return false;
}

void Process::signal(int sig) {
  if (running()) ::kill(m_pid, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (running()) {
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return m_status;
}

std::string Process::log() const { return read_file(m_log_path); }

// ===========================================================================
// run

Memory memory_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  Memory m;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss_kb = std::stol(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) m.hwm_kb = std::stol(line.substr(6));
  }
  return m;
}

double cpu_seconds_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command may hold spaces and parentheses: the fields start after the last ')'.
  auto close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

RunResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env,
              const std::string& stdin_data, std::chrono::milliseconds timeout) {
  RunResult result;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    throw std::runtime_error("pipe2 failed");
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    throw std::runtime_error("pipe2 failed");
  }
  SigpipeGuard sigpipe_guard;
  std::string exec_error;
  pid_t pid = -1;
  try {
    pid = spawn(argv, extra_env, in[0], out[1], err[1], &exec_error);
  } catch (...) {
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
    throw;
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    for (int fd : {in[1], out[0], err[0]}) close(fd);
    result.status = 127;
    result.errors = exec_error;
    return result;
  }
  for (int fd : {in[1], out[0], err[0]}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  int in_fd = in[1];
  size_t written = 0;
  if (stdin_data.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  int out_fd = out[0], err_fd = err[0];
  auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  char buf[65536];
  while (out_fd >= 0 || err_fd >= 0 || in_fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[3];
    nfds_t n = 0;
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    int r = poll(fds, n, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    for (nfds_t i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      int fd = fds[i].fd;
      if (fd == in_fd) {
        ssize_t w = write(in_fd, stdin_data.data() + written, stdin_data.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size()) {
          close(in_fd);  // EPIPE: the child does not read its input
          in_fd = -1;
        }
      } else {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got > 0) {
          (fd == out_fd ? result.output : result.errors).append(buf, static_cast<size_t>(got));
        } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
          close(fd);
          (fd == out_fd ? out_fd : err_fd) = -1;
        }
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd}) {
    if (fd >= 0) close(fd);
  }
  int status = 0;
  if (!timed_out) {
    // Output closed; the process may still be exiting (or may have closed its
    // output early and keep running).
    while (true) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        result.status = decode_status(status);
        break;
      }
      if (r < 0 && errno != EINTR) {
        result.status = -1;
        break;
      }
      if (Clock::now() >= deadline) {
        timed_out = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.status = -1;
    result.errors += "\n[run: timed out after " + std::to_string(timeout.count()) + " ms, killed]";
  }
  return result;
}

// ===========================================================================
// wait_until

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// ===========================================================================
// LocalRegistry

struct LocalRegistry::Answer {
  int status = 0;  // 0: no answer (transport error)
  std::string body;
  httplib::Headers headers;
  std::string error;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  std::string describe() const {
    if (status == 0) return "no answer: " + error;
    return "HTTP " + std::to_string(status) + " " + tail(body, 1000);
  }
};

LocalRegistry::LocalRegistry(RegistryOptions options) : m_options(std::move(options)) {
  const bool token = !m_options.token_realm.empty();
  if (token && !m_options.htpasswd.empty()) throw std::invalid_argument("LocalRegistry: htpasswd and token auth exclude each other");
  if (token && (m_options.token_service.empty() || m_options.token_issuer.empty() || m_options.token_rootcertbundle.empty())) {
    throw std::invalid_argument("LocalRegistry: token auth needs realm, service, issuer and rootcertbundle");
  }
  m_dir = std::make_unique<TempDir>("bw-registry");
  if (!m_options.htpasswd.empty()) {
    std::string file;
    for (const auto& [user, password] : m_options.htpasswd) {
      RunResult r = run({"htpasswd", "-Bbn", user, password});
      if (r.status != 0) throw std::runtime_error("htpasswd failed: " + r.errors);
      std::string line = r.output;
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      file += line + "\n";
    }
    m_dir->write("htpasswd", file);
    const auto& first = *m_options.htpasswd.begin();
    m_auth_header = "Basic " + bw::base64_encode(first.first + ":" + first.second);
  }
  start();
}

pid_t LocalRegistry::pid() const { return m_process ? m_process->pid() : -1; }

LocalRegistry::~LocalRegistry() { stop(); }

std::string LocalRegistry::url() const { return "http://" + m_host; }

std::string LocalRegistry::log_path() const { return m_dir->path() + "/registry.log"; }

std::string LocalRegistry::log() const { return read_file(log_path()); }

bool LocalRegistry::running() const { return m_process && m_process->running(); }

void LocalRegistry::write_config() {
  json config = {
      {"version", "0.1"},
      {"log", {{"level", m_options.log_level}, {"formatter", "text"}, {"accesslog", {{"disabled", false}}}}},
      {"storage",
       {{"filesystem", {{"rootdirectory", m_dir->path() + "/storage"}}},
        {"delete", {{"enabled", true}}},
        {"maintenance", {{"uploadpurging", {{"enabled", false}}}}}}},
      {"http", {{"addr", m_host}, {"secret", "basewatch-test-secret"}}},
  };
  if (!m_options.htpasswd.empty()) {
    config["auth"] = {{"htpasswd", {{"realm", "basewatch-test"}, {"path", m_dir->path() + "/htpasswd"}}}};
  } else if (!m_options.token_realm.empty()) {
    config["auth"] = {{"token",
                       {{"realm", m_options.token_realm},
                        {"service", m_options.token_service},
                        {"issuer", m_options.token_issuer},
                        {"rootcertbundle", m_options.token_rootcertbundle}}}};
  }
  if (!m_options.notify_url.empty()) {
    json headers = json::object();
    for (const auto& [name, value] : m_options.notify_headers) headers[name] = json::array({value});
    json endpoint = {{"name", "basewatch-test"}, {"url", m_options.notify_url}, {"headers", headers},
                     {"timeout", "1s"},          {"threshold", 3},                {"backoff", "1s"}};
    if (!m_options.notify_ignore_actions.empty()) {
      // Registry 2.8 drops ignore.actions unless ignore.mediatypes is not
      // empty (distribution issue #2916, fixed upstream only in 2025): name a
      // media type nothing uses so the action filter takes effect.
      endpoint["ignore"] = {{"mediatypes", {"application/vnd.basewatch.test.never"}},
                            {"actions", m_options.notify_ignore_actions}};
    }
    config["notifications"] = {{"endpoints", json::array({endpoint})}};
  }
  // JSON is YAML: the registry's parser reads it, and quoting is exact.
  m_config_path = m_dir->write("config.yml", config.dump(2) + "\n");
}

void LocalRegistry::start() {
  if (running()) return;
  const bool keep_port = m_port != 0;  // a restart keeps the address clients know
  std::string last_log;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (!keep_port) m_port = free_port();
    m_host = "127.0.0.1:" + std::to_string(m_port);
    write_config();
    const size_t log_offset = fs::exists(log_path()) ? fs::file_size(log_path()) : 0;
    auto t0 = Clock::now();
    m_process = std::make_unique<Process>(std::vector<std::string>{"docker-registry", "serve", m_config_path},
                                          std::map<std::string, std::string>{}, log_path());
    auto client = make_client(url());
    client->set_connection_timeout(0, 200000);
    client->set_read_timeout(2, 0);
    bool ready = wait_until(
        [&] {
          if (!m_process->running()) return true;
          auto res = client->Get("/v2/");
          return res && (res->status == 200 || res->status == 401);
        },
        std::chrono::seconds(30));
    if (ready && m_process->running()) {
      m_startup_time = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
      return;
    }
    std::string full = log();
    last_log = full.substr(std::min(log_offset, full.size()));
    m_process.reset();
    const bool port_taken = last_log.find("address already in use") != std::string::npos;
    if (!port_taken) break;
    if (keep_port) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  throw std::runtime_error("docker-registry did not start on " + m_host + "; its log:\n" + tail(last_log));
}

void LocalRegistry::stop() { m_process.reset(); }

LocalRegistry::Answer LocalRegistry::call(const std::string& method, const std::string& path, const std::string& repo,
                                          const std::string& body, const std::string& content_type,
                                          const std::string& accept) {
  auto once = [&]() {
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    if (!content_type.empty()) req.set_header("Content-Type", content_type);
    if (!accept.empty()) req.set_header("Accept", accept);
    if (!m_auth_header.empty()) {
      req.set_header("Authorization", m_auth_header);
    } else if (auto it = m_tokens.find(repo); it != m_tokens.end()) {
      req.set_header("Authorization", it->second);
    }
    auto client = make_client(url());
    auto res = client->send(req);
    Answer answer;
    if (!res) {
      answer.error = httplib::to_string(res.error());
      return answer;
    }
    answer.status = res->status;
    answer.body = res->body;
    answer.headers = res->headers;
    return answer;
  };
  Answer answer = once();
  if (answer.status == 401 && m_auth_header.empty() && starts_with_ci(answer.header("WWW-Authenticate"), "bearer ")) {
    fetch_token(repo, answer.header("WWW-Authenticate"));
    answer = once();
  }
  return answer;
}

void LocalRegistry::fetch_token(const std::string& repo, const std::string& challenge) {
  auto params = challenge_params(challenge);
  if (params["realm"].empty()) throw std::runtime_error("Bearer challenge without realm: " + challenge);
  Url realm = split_url(params["realm"]);
  std::string path = realm.path + (realm.path.find('?') == std::string::npos ? "?" : "&") +
                     "service=" + net::url_encode(params["service"]) + "&scope=" + net::url_encode("repository:" + repo + ":pull,push");
  auto client = make_client(realm.scheme_host_port);
  httplib::Headers headers;
  if (!m_options.token_user.empty()) {
    headers.emplace("Authorization", "Basic " + bw::base64_encode(m_options.token_user + ":" + m_options.token_password));
  }
  auto res = client->Get(path.c_str(), headers);
  if (!res) throw std::runtime_error("token request to " + params["realm"] + " failed: " + httplib::to_string(res.error()));
  if (res->status != 200) {
    throw std::runtime_error("token request answered HTTP " + std::to_string(res->status) + ": " + res->body);
  }
  json answer = json::parse(res->body);
  std::string token = answer.value("token", "");
  if (token.empty()) token = answer.value("access_token", "");
  if (token.empty()) throw std::runtime_error("token answer without a token: " + res->body);
  m_tokens[repo] = "Bearer " + token;
}

std::string LocalRegistry::upload_blob(const std::string& repo, const std::string& bytes) {
  const std::string digest = bw::sha256_digest(bytes);
  const std::string uploads = "/v2/" + repo + "/blobs/uploads/";
  Answer started = call("POST", uploads, repo);
  if (started.status != 202) {
    throw std::runtime_error("blob upload start for " + repo + ": " + started.describe() + "\nregistry log:\n" + tail(log()));
  }
  std::string location = started.header("Location");
  if (location.empty()) throw std::runtime_error("blob upload start without Location");
  if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0) {
    location = split_url(location).path;
  } else if (location.front() != '/') {
    location = uploads + location;  // relative to the uploads folder
  }
  location += (location.find('?') == std::string::npos ? "?" : "&");
  location += "digest=" + net::url_encode(digest);
  Answer done = call("PUT", location, repo, bytes, "application/octet-stream");
  if (done.status != 201) {
    throw std::runtime_error("blob upload for " + repo + ": " + done.describe() + "\nregistry log:\n" + tail(log()));
  }
  return digest;
}

std::string LocalRegistry::put_manifest(const std::string& repo, const std::string& reference,
                                        const std::string& media_type, const std::string& bytes) {
  const std::string digest = bw::sha256_digest(bytes);
  Answer answer = call("PUT", "/v2/" + repo + "/manifests/" + reference, repo, bytes, media_type);
  if (answer.status != 201) {
    throw std::runtime_error("manifest PUT " + repo + ":" + reference + ": " + answer.describe() +
                             "\nregistry log:\n" + tail(log()));
  }
  std::string returned = answer.header("Docker-Content-Digest");
  if (!returned.empty() && returned != digest) {
    throw std::runtime_error("registry computed digest " + returned + " but the manifest bytes hash to " + digest);
  }
  m_manifests[repo + "@" + digest] = {media_type, bytes.size()};
  return digest;
}

std::string LocalRegistry::push_single(const std::string& repo, const std::string& reference,
                                       const std::string& content, const std::string& platform, bool oci) {
  const Platform p = parse_platform(platform);
  const std::string layer = make_tar("content.txt", content);
  const std::string layer_digest = upload_blob(repo, layer);
  ordered_json config = {{"architecture", p.architecture}, {"os", p.os}};
  if (!p.variant.empty()) config["variant"] = p.variant;
  config["config"] = {{"Env", {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}};
  config["rootfs"] = {{"type", "layers"}, {"diff_ids", {layer_digest}}};  // uncompressed: diff_id == digest
  config["history"] = {{{"created_by", "basewatch test support"}}};
  const std::string config_bytes = config.dump();
  const std::string config_digest = upload_blob(repo, config_bytes);
  const char* media_type = oci ? k_oci_manifest : k_docker_manifest;
  ordered_json manifest = {
      {"schemaVersion", 2},
      {"mediaType", media_type},
      {"config", {{"mediaType", oci ? k_oci_config : k_docker_config}, {"size", config_bytes.size()}, {"digest", config_digest}}},
      {"layers", {{{"mediaType", oci ? k_oci_layer : k_docker_layer}, {"size", layer.size()}, {"digest", layer_digest}}}},
  };
  const std::string bytes = manifest.dump(3);  // indented like docker's own manifests
  const std::string digest = bw::sha256_digest(bytes);
  return put_manifest(repo, reference.empty() ? digest : reference, media_type, bytes);
}

std::string LocalRegistry::push_image(const std::string& repo, const std::string& tag, const std::string& content,
                                      const std::string& platform, bool oci) {
  if (tag.empty()) throw std::invalid_argument("push_image: empty tag");
  return push_single(repo, tag, content, platform, oci);
}

std::string LocalRegistry::push_platform_manifest(const std::string& repo, const std::string& content,
                                                  const std::string& platform) {
  return push_single(repo, "", content, platform, false);
}

std::string LocalRegistry::push_index(const std::string& repo, const std::string& tag,
                                      const std::vector<std::pair<std::string, std::string>>& platform_digests,
                                      const std::string& attestation_salt, bool oci) {
  ordered_json manifests = ordered_json::array();
  for (const auto& [platform, digest] : platform_digests) {
    std::string media_type;
    size_t size = 0;
    if (auto known = m_manifests.find(repo + "@" + digest); known != m_manifests.end()) {
      std::tie(media_type, size) = known->second;
    } else {
      size = get_manifest(repo, digest, &media_type).size();  // pushed by someone else
    }
    manifests.push_back({{"mediaType", media_type},
                         {"digest", digest},
                         {"size", size},
                         {"platform", platform_json(parse_platform(platform))}});
  }
  if (!attestation_salt.empty()) {
    // Shaped like BuildKit's provenance attestation: an OCI manifest whose
    // layer is an in-toto statement; the salt makes its content vary.
    const std::string first = platform_digests.empty() ? "" : platform_digests.front().second;
    ordered_json statement = {
        {"_type", "https://in-toto.io/Statement/v0.1"},
        {"predicateType", "https://slsa.dev/provenance/v0.2"},
        {"subject", ordered_json::array()},
        {"predicate", {{"builder", {{"id", "basewatch-test"}}}, {"salt", attestation_salt}}},
    };
    if (!first.empty()) {
      statement["subject"].push_back({{"name", "_"}, {"digest", {{"sha256", first.substr(first.find(':') + 1)}}}});
    }
    const std::string layer = statement.dump();
    const std::string layer_digest = upload_blob(repo, layer);
    ordered_json config = {{"architecture", "unknown"},
                           {"os", "unknown"},
                           {"config", json::object()},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", {layer_digest}}}}};
    const std::string config_bytes = config.dump();
    const std::string config_digest = upload_blob(repo, config_bytes);
    ordered_json manifest = {
        {"schemaVersion", 2},
        {"mediaType", k_oci_manifest},
        {"config", {{"mediaType", k_oci_config}, {"digest", config_digest}, {"size", config_bytes.size()}}},
        {"layers",
         {{{"mediaType", "application/vnd.in-toto+json"},
           {"digest", layer_digest},
           {"size", layer.size()},
           {"annotations", {{"in-toto.io/predicate-type", "https://slsa.dev/provenance/v0.2"}}}}}},
    };
    const std::string bytes = manifest.dump();
    const std::string digest = put_manifest(repo, bw::sha256_digest(bytes), k_oci_manifest, bytes);
    ordered_json annotations = {{"vnd.docker.reference.type", "attestation-manifest"}};
    if (!first.empty()) annotations["vnd.docker.reference.digest"] = first;
    manifests.push_back({{"mediaType", k_oci_manifest},
                         {"digest", digest},
                         {"size", bytes.size()},
                         {"annotations", annotations},
                         {"platform", {{"architecture", "unknown"}, {"os", "unknown"}}}});
  }
  const char* media_type = oci ? k_oci_index : k_docker_list;
  ordered_json index = {{"schemaVersion", 2}, {"mediaType", media_type}, {"manifests", manifests}};
  return put_manifest(repo, tag, media_type, index.dump(3));
}

HeadResult LocalRegistry::head_manifest(const std::string& repo, const std::string& reference,
                                        const std::string& authorization) {
  HeadResult result;
  auto client = make_client(url());
  httplib::Headers headers = {{"Accept", k_accept_all}};
  if (!authorization.empty()) headers.emplace("Authorization", authorization);
  auto res = client->Head(("/v2/" + repo + "/manifests/" + reference).c_str(), headers);
  if (!res) {
    result.error = httplib::to_string(res.error());
    return result;
  }
  result.status = res->status;
  result.digest = res->get_header_value("Docker-Content-Digest");
  result.content_type = res->get_header_value("Content-Type");
  result.www_authenticate = res->get_header_value("WWW-Authenticate");
  return result;
}

std::string LocalRegistry::head_digest(const std::string& repo, const std::string& tag, const std::string& basic_user,
                                       const std::string& basic_password) {
  std::string authorization;
  if (!basic_user.empty()) authorization = "Basic " + bw::base64_encode(basic_user + ":" + basic_password);
  HeadResult r = head_manifest(repo, tag, authorization);
  return r.status == 200 ? r.digest : "";
}

std::string LocalRegistry::get_manifest(const std::string& repo, const std::string& reference, std::string* media_type) {
  Answer answer = call("GET", "/v2/" + repo + "/manifests/" + reference, repo, "", "", k_accept_all);
  if (answer.status != 200) throw std::runtime_error("manifest GET " + repo + "@" + reference + ": " + answer.describe());
  if (media_type) {
    std::string type = answer.header("Content-Type");
    *media_type = type.substr(0, type.find(';'));
  }
  return answer.body;
}

void LocalRegistry::delete_manifest(const std::string& repo, const std::string& digest) {
  Answer answer = call("DELETE", "/v2/" + repo + "/manifests/" + digest, repo);
  if (answer.status != 202) throw std::runtime_error("manifest DELETE " + repo + "@" + digest + ": " + answer.describe());
}

// ===========================================================================
// Receiver

struct Receiver::Impl {
  httplib::Server server;
  std::thread thread;
  std::once_flag stop_once;
  mutable std::mutex mutex;
  mutable std::condition_variable cv;
  std::vector<ReceivedRequest> requests;
  int status = 200;
  std::function<std::pair<int, std::string>(const ReceivedRequest&)> handler;
  std::function<Reply(const ReceivedRequest&)> reply_handler;

  void handle(const httplib::Request& req, httplib::Response& res) {
    ReceivedRequest r;
    r.method = req.method;
    const std::string& target = req.target.empty() ? req.path : req.target;
    size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) r.query = target.substr(q + 1);
    for (const auto& [name, value] : req.headers) {
      // httplib adds these pseudo headers of its own.
      if (name == "REMOTE_ADDR" || name == "REMOTE_PORT" || name == "LOCAL_ADDR" || name == "LOCAL_PORT") continue;
      std::string key = lower(name);
      auto it = r.headers.find(key);
      if (it == r.headers.end()) {
        r.headers.emplace(key, value);
      } else {
        it->second += ", " + value;
      }
    }
    r.body = req.body;
    r.at = Clock::now();
    std::function<std::pair<int, std::string>(const ReceivedRequest&)> h;
    std::function<Reply(const ReceivedRequest&)> rh;
    Reply reply;
    {
      std::lock_guard<std::mutex> lock(mutex);
      h = handler;
      rh = reply_handler;
      reply.status = status;
      requests.push_back(r);
    }
    cv.notify_all();
    if (rh) {
      reply = rh(r);
    } else if (h) {
      auto [s, body] = h(r);
      reply.status = s;
      reply.body = std::move(body);
    }
    res.status = reply.status;
    std::string content_type = "text/plain";
    for (const auto& [name, value] : reply.headers) {
      if (lower(name) == "content-type") {
        content_type = value;
      } else {
        res.set_header(name, value);
      }
    }
    if (!reply.body.empty()) res.set_content(reply.body, content_type);
  }
};

Receiver::Receiver() : m_impl(std::make_unique<Impl>()) {
  Impl* impl = m_impl.get();
  auto handler = [impl](const httplib::Request& req, httplib::Response& res) { impl->handle(req, res); };
  const std::string any = ".*";
  impl->server.Get(any, handler);  // HEAD too
  impl->server.Post(any, handler);
  impl->server.Put(any, handler);
  impl->server.Patch(any, handler);
  impl->server.Delete(any, handler);
  impl->server.Options(any, handler);
  impl->server.set_keep_alive_timeout(1);  // idle keep-alive connections would delay stop()
  m_port = impl->server.bind_to_any_port("127.0.0.1");
  if (m_port <= 0) throw std::runtime_error("Receiver: cannot bind 127.0.0.1");
  impl->thread = std::thread([impl] { impl->server.listen_after_bind(); });
  if (!wait_until([impl] { return impl->server.is_running(); }, std::chrono::seconds(5))) {
    impl->server.stop();
    impl->thread.join();
    throw std::runtime_error("Receiver: server did not start");
  }
}

Receiver::~Receiver() { stop(); }

std::string Receiver::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(m_port) + (path.empty() || path[0] != '/' ? "/" : "") + path;
}

void Receiver::set_status(int status) {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  m_impl->status = status;
}

void Receiver::set_handler(std::function<std::pair<int, std::string>(const ReceivedRequest&)> handler) {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  m_impl->handler = std::move(handler);
}

void Receiver::set_reply_handler(std::function<Reply(const ReceivedRequest&)> handler) {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  m_impl->reply_handler = std::move(handler);
}

std::vector<ReceivedRequest> Receiver::requests() const {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  return m_impl->requests;
}

size_t Receiver::count() const {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  return m_impl->requests.size();
}

void Receiver::clear() {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  m_impl->requests.clear();
}

bool Receiver::wait_for(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(m_impl->mutex);
  return m_impl->cv.wait_for(lock, timeout, [&] { return m_impl->requests.size() >= n; });
}

void Receiver::stop() {
  Impl* impl = m_impl.get();
  std::call_once(impl->stop_once, [impl] {
    impl->server.stop();
    if (impl->thread.joinable()) impl->thread.join();
  });
}

// ===========================================================================
// TokenIssuer

namespace {

template <typename T, void (*Free)(T*)>
struct OsslDeleter {
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, OsslDeleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, OsslDeleter<X509, X509_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OsslDeleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, OsslDeleter<BIO, BIO_free_all>>;

[[noreturn]] void openssl_fail(const std::string& what) { throw std::runtime_error("OpenSSL: " + what + " failed"); }

void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) openssl_fail("X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
// base32 without padding, in 12 groups of 4 joined by ':'.
std::string libtrust_key_id(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  if (len <= 0) openssl_fail("i2d_PUBKEY");
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int hash_len = 0;
  EVP_Digest(der, static_cast<size_t>(len), hash, &hash_len, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string b32;
  uint64_t buffer = 0;
  int bits = 0;
  for (int i = 0; i < 30; ++i) {
    buffer = (buffer << 8) | hash[i];
    bits += 8;
    while (bits >= 5) {
      b32 += alphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  std::string out;
  for (size_t i = 0; i < b32.size(); i += 4) {
    if (!out.empty()) out += ':';
    out += b32.substr(i, 4);
  }
  return out;
}

std::string rfc3339_utc(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

struct TokenIssuer::Impl {
  TokenIssuerOptions options;
  TempDir dir{"bw-token-issuer"};
  PkeyPtr key;
  X509Ptr cert;
  std::string cert_der;
  std::string bundle_path;
  std::string key_id;
  std::unique_ptr<Receiver> receiver;
  mutable std::mutex sign_mutex;
  std::atomic<size_t> issued{0};

  std::string sign(const std::string& input) const {
    std::lock_guard<std::mutex> lock(sign_mutex);
    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1) {
      openssl_fail("EVP_DigestSignInit");
    }
    size_t len = 0;
    auto data = reinterpret_cast<const unsigned char*>(input.data());
    if (EVP_DigestSign(ctx.get(), nullptr, &len, data, input.size()) != 1) openssl_fail("EVP_DigestSign");
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data, input.size()) != 1) {
      openssl_fail("EVP_DigestSign");
    }
    sig.resize(len);
    return sig;
  }

  // scopes: "type:name:a,b" items (several per string, space-separated).
  json access_for(const std::vector<std::string>& scopes) const {
    json access = json::array();
    for (const auto& scope_list : scopes) {
      std::stringstream ss(scope_list);
      std::string scope;
      while (ss >> scope) {
        size_t first = scope.find(':');
        size_t last = scope.rfind(':');
        if (first == std::string::npos || first == last) continue;
        std::string type = scope.substr(0, first);
        std::string name = scope.substr(first + 1, last - first - 1);  // may hold host:port
        std::vector<std::string> actions;
        std::stringstream as(scope.substr(last + 1));
        std::string action;
        while (std::getline(as, action, ',')) {
          if (action.empty()) continue;
          const auto& allowed = options.allowed_actions;
          if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), action) == allowed.end() &&
              std::find(allowed.begin(), allowed.end(), "*") == allowed.end()) {
            continue;
          }
          actions.push_back(action);
        }
        access.push_back({{"type", type}, {"name", name}, {"actions", actions}});
      }
    }
    return access;
  }

  std::string make_token(const std::vector<std::string>& scopes, const std::string& subject,
                         const std::string& audience) const {
    ordered_json header = {{"typ", "JWT"}, {"alg", "RS256"}};
    if (options.key_ref == TokenIssuerOptions::KeyRef::x5c) {
      header["x5c"] = {bw::base64_encode(cert_der)};
    } else {
      header["kid"] = key_id;
    }
    const auto now = static_cast<long long>(std::time(nullptr));
    ordered_json claims = {
        {"iss", options.issuer},
        {"sub", subject},
        {"aud", audience.empty() ? options.service : audience},
        {"exp", now + options.expires_in},
        {"nbf", now - 1},
        {"iat", now},
        {"jti", bw::hex_encode(bw::random_bytes(16))},
        {"access", access_for(scopes)},
    };
    const std::string input = base64url(header.dump()) + "." + base64url(claims.dump());
    return input + "." + base64url(sign(input));
  }

  Receiver::Reply answer(const ReceivedRequest& r) {
    Receiver::Reply reply;
    reply.headers.emplace("Content-Type", "application/json");
    if (r.path != "/token") {
      reply.status = 404;
      reply.body = R"({"error":"not found"})";
      return reply;
    }
    std::vector<std::pair<std::string, std::string>> params;
    std::string authorization;
    if (r.method == "GET") {
      params = parse_query(r.query);
      auto it = r.headers.find("authorization");
      if (it != r.headers.end()) authorization = it->second;
    } else if (r.method == "POST") {
      params = parse_query(r.body);  // OAuth2: form-encoded body
    } else {
      reply.status = 405;
      reply.body = R"({"error":"method not allowed"})";
      return reply;
    }
    std::string service;
    std::vector<std::string> scopes;
    std::string grant_type, form_user, form_password;
    for (const auto& [k, v] : params) {
      if (k == "service") service = v;
      if (k == "scope") scopes.push_back(v);
      if (k == "grant_type") grant_type = v;
      if (k == "username") form_user = v;
      if (k == "password") form_password = v;
    }
    std::string subject;
    if (!options.user.empty()) {
      bool ok = false;
      if (r.method == "GET") {
        ok = starts_with_ci(authorization, "basic ") &&
             authorization.substr(6) == bw::base64_encode(options.user + ":" + options.password);
      } else if (r.method == "POST" && grant_type == "password") {
        ok = form_user == options.user && form_password == options.password;
      }
      if (!ok) {
        reply.status = 401;
        reply.headers.emplace("WWW-Authenticate", "Basic realm=\"basewatch-test-token\"");
        reply.body = R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})";
        return reply;
      }
      subject = options.user;
    }
    const std::string token = make_token(scopes, subject, service);
    ++issued;
    const auto now = std::time(nullptr);
    json body = {{"token", token},
                 {"access_token", token},
                 {"expires_in", options.expires_in},
                 {"issued_at", rfc3339_utc(now)}};
    reply.body = body.dump();
    return reply;
  }
};

TokenIssuer::TokenIssuer(TokenIssuerOptions options) : m_impl(std::make_unique<Impl>()) {
  Impl& impl = *m_impl;
  impl.options = std::move(options);
  impl.key.reset(EVP_RSA_gen(2048));
  if (!impl.key) openssl_fail("EVP_RSA_gen");
  impl.cert.reset(X509_new());
  X509* cert = impl.cert.get();
  if (!cert) openssl_fail("X509_new");
  X509_set_version(cert, 2);  // v3
  uint32_t serial = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>((serial & 0x7fffffff) | 1));
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 7L * 24 * 3600);
  X509_set_pubkey(cert, impl.key.get());
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("basewatch test token issuer"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  add_extension(cert, NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert, NID_key_usage, "critical,digitalSignature,keyCertSign");
  add_extension(cert, NID_subject_key_identifier, "hash");
  if (X509_sign(cert, impl.key.get(), EVP_sha256()) <= 0) openssl_fail("X509_sign");

  unsigned char* der = nullptr;
  int der_len = i2d_X509(cert, &der);
  if (der_len <= 0) openssl_fail("i2d_X509");
  impl.cert_der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(der_len));
  OPENSSL_free(der);

  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) openssl_fail("PEM_write_bio_X509");
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio.get(), &pem);
  impl.bundle_path = impl.dir.write("rootcertbundle.pem", std::string(pem, static_cast<size_t>(pem_len)));
  impl.key_id = libtrust_key_id(impl.key.get());
}

TokenIssuer::~TokenIssuer() { stop(); }

void TokenIssuer::start() {
  if (m_impl->receiver) return;
  auto receiver = std::make_unique<Receiver>();
  Impl* impl = m_impl.get();
  receiver->set_reply_handler([impl](const ReceivedRequest& r) { return impl->answer(r); });
  m_impl->receiver = std::move(receiver);
}

void TokenIssuer::stop() {
  if (m_impl->receiver) m_impl->receiver->stop();
}

std::string TokenIssuer::realm() const { return m_impl->receiver ? m_impl->receiver->url("/token") : ""; }
const std::string& TokenIssuer::service() const { return m_impl->options.service; }
const std::string& TokenIssuer::issuer() const { return m_impl->options.issuer; }
const std::string& TokenIssuer::rootcertbundle() const { return m_impl->bundle_path; }
const std::string& TokenIssuer::key_id() const { return m_impl->key_id; }
size_t TokenIssuer::tokens_issued() const { return m_impl->issued; }

std::vector<ReceivedRequest> TokenIssuer::requests() const {
  return m_impl->receiver ? m_impl->receiver->requests() : std::vector<ReceivedRequest>{};
}

size_t TokenIssuer::token_requests() const {
  size_t n = 0;
  for (const auto& r : requests()) n += r.path == "/token" ? 1 : 0;
  return n;
}

RegistryOptions TokenIssuer::registry_options() {
  start();
  RegistryOptions options;
  options.token_realm = realm();
  options.token_service = service();
  options.token_issuer = issuer();
  options.token_rootcertbundle = rootcertbundle();
  options.token_user = m_impl->options.user;
  options.token_password = m_impl->options.password;
  return options;
}

std::string TokenIssuer::make_token(const std::string& scope, const std::string& subject,
                                    const std::string& audience) const {
  return m_impl->make_token({scope}, subject, audience);
}

}  // namespace bw::testing
