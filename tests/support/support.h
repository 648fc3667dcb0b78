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

// A minimal valid ustar archive holding one regular file (mode 0644, mtime
// 0, so equal content gives equal bytes): a real image layer.
std::string make_tar(const std::string& name, const std::string& content);

// A child process with stdout+stderr appended to a log file. The destructor
// sends SIGTERM, waits up to 5 s, then SIGKILL.
// The child runs in its own session (setsid), so the destructor signals its
// whole process group. It also gets PR_SET_PDEATHSIG(SIGKILL): if the test
// binary dies, the child dies too. Linux ties that to the *thread* that
// constructed the Process, so construct it on a thread that outlives it.
// The constructor throws std::runtime_error when the program cannot be
// executed (not found, not executable).
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
// status is the exit code, 128+signal when killed by a signal, 127 when the
// program could not be executed (the reason is in errors), and -1 when the
// timeout passed (the process group is then killed with SIGKILL).
struct RunResult {
  int status = -1;
  std::string output;    // stdout
  std::string errors;    // stderr
};
RunResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env = {},
              const std::string& stdin_data = "", std::chrono::milliseconds timeout = std::chrono::seconds(60));

// What a running process holds and has used, from /proc (benchmarks):
// VmRSS and VmHWM in KB, and its CPU seconds (user + system, all threads).
struct Memory {
  long rss_kb = 0, hwm_kb = 0;
};
Memory memory_of(pid_t pid);
double cpu_seconds_of(pid_t pid);

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

  // Additions:
  // Notification actions the registry should not send (e.g. {"pull"}); the
  // harness works around registry 2.8 ignoring this without a media type list.
  std::vector<std::string> notify_ignore_actions;
  // Basic credentials the harness sends to the token realm when it pushes to
  // a registry in token mode (empty: anonymous token requests).
  std::string token_user, token_password;
  // The registry's log level (error, warn, info, debug).
  std::string log_level = "info";
};

// The answer to a manifest HEAD (LocalRegistry::head_manifest).
struct HeadResult {
  int status = 0;                // 0 when no HTTP answer came
  std::string digest;            // Docker-Content-Digest
  std::string content_type;
  std::string www_authenticate;
  std::string error;             // transport error, when status is 0
};

// A real CNCF distribution registry (`docker-registry serve`) on a free
// loopback port with its own storage under a temp dir. start() waits until
// GET /v2/ answers.
// Pushes authenticate by themselves: Basic as the first htpasswd user (in map
// order), or in token mode a token from the realm (with token_user/password).
// The harness itself GETs nothing for pushes of its own manifests, so a
// notification endpoint sees only push events from them (plus a pull per
// HEAD/GET that a test makes). Not thread-safe: use one from one thread.
class LocalRegistry {
 public:
  explicit LocalRegistry(RegistryOptions options = {});
  ~LocalRegistry();
  const std::string& host() const { return m_host; }  // "127.0.0.1:PORT"
  int port() const { return m_port; }
  pid_t pid() const;  // the docker-registry process (for benchmarks reading its CPU time)
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

  // Additions:
  // "http://127.0.0.1:PORT"
  std::string url() const;
  // HEAD with the full Accept set and exactly the given Authorization header
  // value ("" sends none; no automatic auth).
  HeadResult head_manifest(const std::string& repo, const std::string& reference,
                           const std::string& authorization = "");
  // GET of a manifest with the full Accept set (using the push credentials);
  // returns the body, sets *media_type when given. Throws on a non-200 answer.
  std::string get_manifest(const std::string& repo, const std::string& reference, std::string* media_type = nullptr);
  // DELETE of a manifest by digest (removes the tags pointing at it). Throws
  // on a non-202 answer.
  void delete_manifest(const std::string& repo, const std::string& digest);
  // Stops the registry (SIGTERM, then SIGKILL); start() brings it back on the
  // same port with the same storage. The constructor calls start().
  void stop();
  void start();
  bool running() const;
  // How long the last start() took until GET /v2/ answered.
  std::chrono::milliseconds startup_time() const { return m_startup_time; }
  const std::string& config_path() const { return m_config_path; }
  std::string log_path() const;
  // Uploads `bytes` as a blob of `repo` (POST + PUT, monolithic) and returns
  // its digest. Throws on an unexpected answer.
  std::string upload_blob(const std::string& repo, const std::string& bytes);
  // PUTs a manifest (exact bytes, `media_type` as Content-Type) under
  // `reference` (a tag or its digest) and returns its digest; throws when
  // the registry refuses it or computes another digest.
  std::string put_manifest(const std::string& repo, const std::string& reference, const std::string& media_type,
                           const std::string& bytes);

 private:
  struct Answer;
  Answer call(const std::string& method, const std::string& path, const std::string& repo,
              const std::string& body = "", const std::string& content_type = "", const std::string& accept = "");
  void fetch_token(const std::string& repo, const std::string& challenge);
  std::string push_single(const std::string& repo, const std::string& reference, const std::string& content,
                          const std::string& platform, bool oci);
  void write_config();

  RegistryOptions m_options;
  std::unique_ptr<class TempDir> m_dir;
  std::unique_ptr<Process> m_process;
  std::string m_host;
  int m_port = 0;
  std::string m_auth_header;  // Basic header for pushes when htpasswd is set
  std::map<std::string, std::string> m_tokens;  // repo -> "Bearer ..." (token mode)
  // "repo@digest" -> (media type, size) of manifests pushed here, so push_index
  // need not GET them (a GET is a pull event in the registry's notifications).
  std::map<std::string, std::pair<std::string, size_t>> m_manifests;
  std::string m_config_path;
  std::chrono::milliseconds m_startup_time{0};
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

  // Additions:
  // A full answer: status, body, headers (Content-Type defaults to text/plain).
  struct Reply {
    int status = 200;
    std::string body;
    std::multimap<std::string, std::string> headers;
  };
  // When set, decides the whole answer per request (wins over set_handler).
  // Handlers run on the server's worker threads.
  void set_reply_handler(std::function<Reply(const ReceivedRequest&)> handler);
  void clear();  // forgets the recorded requests

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
  int m_port = 0;
};

// Addition: a minimal token issuer for the registry's `auth: token` mode.
// It makes an RSA-2048 key and a self-signed certificate (the rootcertbundle)
// and serves GET <realm>?service=..&scope=.. (and the OAuth2 form POST) on
// 127.0.0.1, answering {"token","access_token","expires_in","issued_at"} with
// an RS256 JWT that grants what the scope asks.
//
// Registry 2.8 accepts both ways of naming the key (checked by support_test):
// the `x5c` header (the certificate chain, verified against the bundle; our
// self-signed certificate is itself in the bundle) and a `kid` header equal to
// the libtrust key id of a key whose certificate is in the bundle.
struct TokenIssuerOptions {
  std::string service = "basewatch-test-registry";  // the registry's token.service (the JWT's aud)
  std::string issuer = "basewatch-test-issuer";
  // When user is set, token requests must carry these Basic credentials
  // (or the OAuth2 password grant), else they are answered 401.
  std::string user, password;
  int expires_in = 300;
  enum class KeyRef { x5c, kid };
  KeyRef key_ref = KeyRef::x5c;
  // When not empty, only these actions are granted (intersected with the scope).
  std::vector<std::string> allowed_actions;
};

class TokenIssuer {
 public:
  explicit TokenIssuer(TokenIssuerOptions options = {});  // makes the key and the bundle
  ~TokenIssuer();
  TokenIssuer(const TokenIssuer&) = delete;
  TokenIssuer& operator=(const TokenIssuer&) = delete;
  void start();  // binds 127.0.0.1:free port and serves; idempotent
  void stop();
  std::string realm() const;  // "http://127.0.0.1:PORT/token" (after start)
  const std::string& service() const;
  const std::string& issuer() const;
  const std::string& rootcertbundle() const;  // path of the PEM bundle
  const std::string& key_id() const;          // libtrust key id of the key
  size_t token_requests() const;              // requests to /token, refused ones included
  size_t tokens_issued() const;
  std::vector<ReceivedRequest> requests() const;
  // RegistryOptions with token_realm/service/issuer/rootcertbundle (and
  // token_user/password) filled in; starts the issuer when needed.
  RegistryOptions registry_options();
  // Signs a token directly, granting `scope` ("repository:name:pull,push",
  // several separated by spaces); audience defaults to service().
  std::string make_token(const std::string& scope, const std::string& subject = "",
                         const std::string& audience = "") const;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace bw::testing
