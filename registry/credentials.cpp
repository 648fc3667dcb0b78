#include "registry/credentials.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "util/files.h"
#include "util/strings.h"

extern char** environ;

namespace bw::registry {

using json = nlohmann::json;

namespace {

constexpr const char* k_docker_hub_key = "https://index.docker.io/v1/";

// "https://ghcr.io/v2/" -> "ghcr.io"; "Host:5000" -> "host:5000".
std::string reduce_key(std::string_view key) {
  std::string k = to_lower(key);
  if (auto sep = k.find("://"); sep != std::string::npos) k = k.substr(sep + 3);
  if (auto slash = k.find('/'); slash != std::string::npos) k = k.substr(0, slash);
  return k;
}

bool same_registry(std::string_view key, const std::string& registry) {
  std::string k = reduce_key(key);
  if (registry == "docker.io") return k == "docker.io" || k == "index.docker.io" || k == "registry-1.docker.io";
  return k == registry;
}

// The value of `object[key]` for the registry: exact server key first, then
// any key that reduces to the same host (in the object's order).
const json* find_for(const json& object, const std::string& registry, std::string* found_key) {
  if (!object.is_object()) return nullptr;
  std::string exact = docker_server_url(registry);
  if (auto it = object.find(exact); it != object.end()) {
    *found_key = exact;
    return &*it;
  }
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (same_registry(it.key(), registry)) {
      *found_key = it.key();
      return &*it;
    }
  }
  return nullptr;
}

std::string first_line(std::string_view s, size_t max = 200) {
  s = trim(s);
  auto nl = s.find('\n');
  std::string out(s.substr(0, nl));
  if (out.size() > max) out = out.substr(0, max) + "...";
  return out;
}

Result<Credentials> from_helper(const std::string& helper, const std::string& registry, const std::string& source,
                                const HelperRunner& run, bool& found) {
  found = false;
  std::string program = "docker-credential-" + helper;
  auto res = run(helper, docker_server_url(registry));
  if (!res) return make_error(ErrorKind::unauthorized, source + ": " + program + ": " + res.error().message);
  if (res->status != 0) {
    std::string said = first_line(res->out.empty() ? res->err : res->out);
    // The protocol's "no credentials for this server": not an error.
    if (to_lower(res->out + res->err).find("credentials not found") != std::string::npos) return Credentials{};
    return make_error(ErrorKind::unauthorized, source + ": " + program + " get failed (exit " + std::to_string(res->status) +
                                                   (said.empty() ? ")" : "): " + said));
  }
  auto j = json::parse(res->out, nullptr, false);
  if (!j.is_object()) return make_error(ErrorKind::bad_answer, source + ": " + program + " get did not print a JSON object");
  auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
  Credentials c;
  std::string user = str("Username"), secret = str("Secret");
  if (secret.empty()) return Credentials{};
  if (user == "<token>") {
    c.identity_token = secret;
  } else {
    c.username = user;
    c.password = secret;
  }
  found = true;
  return c;
}

}  // namespace

Result<std::string> base64_decode(std::string_view text) {
  auto value = [](char ch) -> int {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] != '='; ++i) {
    int v = value(text[i]);
    if (v < 0) return make_error(ErrorKind::invalid, "not base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  for (; i < text.size(); ++i) {
    if (text[i] != '=') return make_error(ErrorKind::invalid, "not base64");
  }
  if (bits >= 6) return make_error(ErrorKind::invalid, "not base64");
  return out;
}

std::string docker_server_url(const std::string& registry) {
  return registry == "docker.io" ? k_docker_hub_key : registry;
}

Result<Credentials> docker_config_credentials(const std::string& json_text, const std::string& source,
                                              const std::string& registry, const HelperRunner& run) {
  auto j = json::parse(json_text, nullptr, false);
  if (!j.is_object()) return make_error(ErrorKind::invalid, source + ": not a JSON object");
  std::string key;
  std::string helper;
  static const json k_none = json::object();
  const json& helpers = j.contains("credHelpers") ? j["credHelpers"] : k_none;
  const json& auths = j.contains("auths") ? j["auths"] : k_none;
  if (auto h = find_for(helpers, registry, &key); h && h->is_string()) {
    helper = h->get<std::string>();
  } else if (j.contains("credsStore") && j["credsStore"].is_string()) {
    helper = j["credsStore"].get<std::string>();
  }
  if (!helper.empty()) {
    bool found = false;
    BW_TRY(Credentials c, from_helper(helper, registry, source, run, found));
    if (found) return c;
  }
  const json* entry = find_for(auths, registry, &key);
  if (!entry || !entry->is_object()) return Credentials{};
  std::string where = source + ": auths[\"" + key + "\"]";
  auto str = [&](const char* k) { return entry->contains(k) && (*entry)[k].is_string() ? (*entry)[k].get<std::string>() : std::string(); };
  Credentials c;
  c.identity_token = str("identitytoken");
  c.registry_token = str("registrytoken");
  if (std::string auth = str("auth"); !auth.empty()) {
    auto decoded = base64_decode(auth);
    auto colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) return make_error(ErrorKind::invalid, where + ".auth is not base64 of user:password");
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
  } else {
    c.username = str("username");
    c.password = str("password");
  }
  // docker login with a token stores a placeholder user next to the identity token.
  if (!c.identity_token.empty() && c.password.empty()) c.username.clear();
  return c;
}

Result<Credentials> load_docker_config_credentials(const std::string& path, const std::string& registry,
                                                   const HelperRunner& run) {
  auto text = read_file(path);
  if (!text) return make_error(ErrorKind::unauthorized, "docker_config " + path + ": " + text.error().message);
  return docker_config_credentials(*text, path, registry, run);
}

Result<HelperOutput> run_credential_helper(const std::string& helper, const std::string& server_url, Millis timeout) {
  std::string program = "docker-credential-" + helper;
  for (char ch : helper) {
    if (ch == '/' || ch == '\0') return make_error(ErrorKind::invalid, program + ": a helper name cannot hold '/'");
  }
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return make_error(ErrorKind::io, program + ": pipe: " + std::strerror(errno));
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return make_error(ErrorKind::io, program + ": pipe: " + std::strerror(errno));
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return make_error(ErrorKind::io, program + ": pipe: " + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The helper starts with default signal handling and nothing blocked: basewatch
  // ignores SIGPIPE and blocks SIGTERM/SIGINT/SIGHUP in its threads, and both
  // would otherwise be inherited.
  sigset_t defaults, empty;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigemptyset(&empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<std::string> args{program, "get"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, program.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    return make_error(ErrorKind::unauthorized, "cannot run " + program + ": " + std::strerror(rc));
  }
  // The server URL is tiny: it fits in the pipe without blocking. A helper
  // that exits without reading must not kill us with SIGPIPE.
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  ssize_t wrote = write(in[1], server_url.data(), server_url.size());
  if (wrote < 0 && errno == EPIPE) {
    timespec zero{};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  close(in[1]);

  HelperOutput result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<pollfd, 2> fds{pollfd{out[0], POLLIN, 0}, pollfd{err[0], POLLIN, 0}};
  bool timed_out = false;
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    int n = poll(fds.data(), fds.size(), static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        std::string& dest = i == 0 ? result.out : result.err;
        if (dest.size() < (1u << 20)) dest.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  if (timed_out) kill(-pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return make_error(ErrorKind::timeout, program + " get did not answer within " + format_duration(timeout));
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return result;
}

}  // namespace bw::registry
