// Test support: real services on loopback for integration tests.
// Everything here starts real processes (docker-registry, basewatch) and real
// HTTP servers bound to 127.0.0.1 on free ports, each with its own temporary
// folder. Nothing here fakes the registry.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace bw::testing {

// A fresh folder under $TMPDIR (or /tmp), removed on destruction unless
// BASEWATCH_KEEP_TEST_DIRS is set (then its path is printed).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "bwtest");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return m_path; }
  // Writes `content` to path()/name (creating folders) and returns the full path.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string m_path;
};

// A free TCP port on 127.0.0.1 (bind to port 0, read it back, close).
int free_port();

// A child process with stdout+stderr appended to a log file. The destructor
// sends SIGTERM, waits up to 5 s, then SIGKILL.
class Process {
 public:
  Process(std::vector<std::string> argv, std::map<std::string, std::string> extra_env, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  pid_t pid() const { return m_pid; }
  bool running();
  void signal(int sig);
  // Waits for exit; returns the exit status (128+signal when killed), or
  // nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  std::string log() const;  // the log file's content so far
  const std::string& log_path() const { return m_log_path; }

 private:
  pid_t m_pid = -1;
  std::optional<int> m_status;
  std::string m_log_path;
};

// Runs a command to completion; returns exit status and combined output.
struct RunResult {
  int status = -1;
  std::string output;    // stdout
  std::string errors;    // stderr
};
RunResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env = {},
              const std::string& stdin_data = "", std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Polls `pred` every 20 ms until it is true or the timeout passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

struct RegistryOptions {
  // bcrypt htpasswd auth: user -> password (the harness writes the file with `htpasswd -Bbn`).
  std::map<std::string, std::string> htpasswd;
  // Token auth: the registry verifies JWTs signed by the key in this bundle.
  std::string token_realm, token_service, token_issuer, token_rootcertbundle;
  // Notification endpoint URL (distribution notifications), with headers.
  std::string notify_url;
  std::map<std::string, std::string> notify_headers;
};

// A real CNCF distribution registry (`docker-registry serve`) on a free
// loopback port with its own storage under a temp dir. start() waits until
// GET /v2/ answers.
class LocalRegistry {
 public:
  explicit LocalRegistry(RegistryOptions options = {});
  ~LocalRegistry();
  const std::string& host() const { return m_host; }  // "127.0.0.1:PORT"
  int port() const { return m_port; }
  std::string log() const;

  // Pushes a single-platform image (a real tar layer holding one file whose
  // content is `content`, a config blob for os/arch, a schema 2 manifest, or OCI
  // when `oci` is true) to repo:tag. Returns the manifest digest.
  std::string push_image(const std::string& repo, const std::string& tag, const std::string& content,
                         const std::string& platform = "linux/amd64", bool oci = false);
  // Pushes an index to repo:tag whose entries are the given platform ->
  // manifest digests (the manifests must have been pushed to repo by digest or
  // tag before). `attestation_salt`, when non-empty, adds an attestation entry
  // (unknown/unknown) whose manifest content varies with it. Returns the index digest.
  std::string push_index(const std::string& repo, const std::string& tag,
                         const std::vector<std::pair<std::string, std::string>>& platform_digests,
                         const std::string& attestation_salt = "", bool oci = true);
  // Pushes a manifest for `platform` by digest only (no tag) and returns its
  // digest; used to build indexes.
  std::string push_platform_manifest(const std::string& repo, const std::string& content, const std::string& platform);
  // HEAD with the full Accept set; the Docker-Content-Digest, or "" on failure.
  std::string head_digest(const std::string& repo, const std::string& tag,
                          const std::string& basic_user = "", const std::string& basic_password = "");

 private:
  RegistryOptions m_options;
  std::unique_ptr<class TempDir> m_dir;
  std::unique_ptr<Process> m_process;
  std::string m_host;
  int m_port = 0;
  std::string m_auth_header;  // Basic header for pushes when htpasswd is set
};

struct ReceivedRequest {
  std::string method;
  std::string path;     // without the query
  std::string query;    // raw query string
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  std::chrono::steady_clock::time_point at;
};

// A real HTTP server on 127.0.0.1:free port recording every request. The
// status it answers can be changed at any time (default 200), or set by a
// handler for full control.
class Receiver {
 public:
  Receiver();
  ~Receiver();
  int port() const { return m_port; }
  std::string url(const std::string& path = "/") const;  // http://127.0.0.1:PORT/path
  void set_status(int status);
  // When set, decides the answer's status and body per request.
  void set_handler(std::function<std::pair<int, std::string>(const ReceivedRequest&)> handler);
  std::vector<ReceivedRequest> requests() const;
  size_t count() const;
  // Waits until at least n requests arrived.
  bool wait_for(size_t n, std::chrono::milliseconds timeout) const;
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
  int m_port = 0;
};

}  // namespace bw::testing
