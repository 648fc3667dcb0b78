// The config file (YAML) as a typed struct. Every key of docs/product.md is
// here; unknown keys, wrong types, bad durations and unreadable secret files
// are errors that name file:line:column and the key.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"
#include "util/time.h"

namespace bw::config {

// Where a value came from, for error messages about values that are only
// found wrong later (an unreachable Dockerfile, an unknown trigger name).
struct Mark {
  std::string file;
  int line = 0;    // 1-based
  int column = 0;  // 1-based
  std::string str() const;  // "file:line:column"
};

struct RegistryConfig {
  std::string host;  // key as it appears in references: "docker.io", "127.0.0.1:5000"
  std::string username;
  std::string password;  // from password_file; never logged
  std::string docker_config;
  bool insecure = false;
  std::string ca_file;
  int requests_per_minute = 0;  // 0: no client-side budget
  int concurrency = 0;          // 0: only the global poll.concurrency applies
};

struct WatchConfig {
  std::string ref;
  std::vector<std::string> platforms;  // empty: defaults.platforms
  std::optional<Millis> interval;
  std::vector<std::string> triggers;
  Mark mark;
};

// A weekly quiet window, in UTC: deliveries of the project wait for the
// next window and collect every change until then. Syntax:
//   "<days> HH:MM-HH:MM"   days: daily | * | mon,wed | mon-fri | fri-mon
// e.g. "sat 02:00-06:00", "mon-fri 22:00-06:00" (past midnight: it starts on
// the named days), "sat,sun 00:00-24:00".
struct QuietWindow {
  unsigned days = 0;  // bit 0 = Monday ... bit 6 = Sunday: the days a window starts on
  int start = 0;      // minutes after midnight UTC
  int end = 0;        // minutes after midnight UTC (1..1440); <= start: ends the next day
  std::string text;
  // `t` itself when it is inside a window, else the start of the next one.
  TimePoint next_open(TimePoint t) const;
};
// Errors (ErrorKind::invalid) read `invalid quiet window "X": <cause>`.
Result<QuietWindow> parse_quiet_window(std::string_view text);

struct ProjectConfig {
  std::string name;
  std::string dockerfile;   // one file, or
  std::string dockerfiles;  // a glob (one project per file)
  std::string context;
  std::map<std::string, std::string> build_args;
  std::string target;
  std::vector<std::string> platforms;  // empty: defaults.platforms
  std::string image;
  std::vector<std::string> triggers;
  std::optional<Millis> quiet;  // per-project debounce window (a duration), or
  std::optional<QuietWindow> quiet_window;  // a weekly window
  Mark mark;
  Mark image_mark;  // the `image` value, else the project's mapping
  Mark dockerfile_mark;  // of the dockerfile: (or dockerfiles:) value
};

struct TriggerConfig {
  std::string name;
  std::string type;  // webhook | command | github | gitlab | build
  // webhook
  std::string url;
  std::string secret;  // from secret_file
  std::map<std::string, std::string> headers;
  Millis timeout{10'000};
  // command
  std::vector<std::string> command;
  std::string workdir;
  // github
  std::string repository, event_type, workflow, ref;
  std::string token;  // from token_file
  std::string api_url = "https://api.github.com";
  // gitlab: url, project, ref, token
  std::string project;
  // build: the project's Dockerfile built by `builder` and pushed to its
  // `image` (unless push is false); `args` are extra builder flags.
  std::string builder = "buildah";  // buildah | podman
  bool push = true;
  std::vector<std::string> args;
  Mark mark;          // the trigger's name
  Mark builder_mark;  // the `builder` value, else the trigger's name
};

struct InboundConfig {
  std::string name;
  std::string path;
  std::string format;  // distribution | dockerhub | acr | harbor | ghcr | quay | generic
  std::string secret;  // from secret_file
  size_t max_body = 1 << 20;
  Mark mark;
};

// A repository, or every repository below a path ("docker.io/library/*"),
// normalised as references are: "alpine" is docker.io/library/alpine,
// "docker.io/*" is all of Docker Hub.
struct RepoPattern {
  std::string registry;    // lowercased host[:port]
  std::string repository;  // a path; "" with prefix: the whole registry
  bool prefix = false;     // written with a trailing "/*"
  std::string str() const;  // "registry/repository" or "registry/repository/*"
  // Whether `registry`/`repository` is this repository or below the prefix.
  bool covers(const std::string& registry, const std::string& repository) const;
};

// A `mirrors:` rule: copies of `from` live at `to` (the rest of the path
// below a prefix, and the tag, are kept).
struct MirrorConfig {
  RepoPattern from, to;
  bool all_platforms = true;           // platforms: all (the default): byte-identical copies
  std::vector<std::string> platforms;  // else the platforms copied
  bool referrers = true;               // copy signatures, SBOMs, attestations too
  std::vector<std::string> tags;       // kept besides the tags the Dockerfiles and watch: use
  Mark mark, from_mark, to_mark;
};

// A host pattern of policy.allowed_registries: a registry as references
// name it ("registry.example.com", "127.0.0.1:5000", "docker.io"), or
// "*.corp.example.com": any host with one or more whole labels before that
// suffix ("a.corp.example.com", "x.y.corp.example.com"; never
// "evilcorp.example.com" nor "a.corp.example.com.attacker.io", nor the
// suffix itself). The port is part of the host: "host" matches references
// without a port, "host:5000" that port only.
struct HostPattern {
  std::string text;      // as written
  bool wildcard = false;  // "*.suffix"
  std::string host;      // lowercased; the suffix (without "*.") for a wildcard
  std::string port;      // "" when none
  bool matches(std::string_view registry) const;
};
// Errors (ErrorKind::invalid) read `invalid host pattern "X": <cause>`.
Result<HostPattern> parse_host_pattern(std::string_view text);

// `policy:`, what `basewatch refs` (and /v1/status) holds references to.
struct PolicyConfig {
  bool require_mirror = false;  // a reference that bypasses a mirror breaks it
  // When set, a reference to any other registry breaks it; unset: any registry.
  std::optional<std::vector<HostPattern>> allowed_registries;
  // Whether `registry` is allowed (always, when allowed_registries is unset).
  bool allows(std::string_view registry) const;
};

struct Config {
  std::string file;  // the config file's path
  Mark mark;         // where the document starts, for errors about the whole file
  // A SQLite file path (resolved against the config's folder) or a PostgreSQL
  // URI (its passfile= and ssl*= file parameters resolved the same way).
  std::string database;
  // ha.lease: how long the leader's lease lasts when several instances
  // share a PostgreSQL database (cluster/leadership.h). ha: with a SQLite
  // database is an error.
  Millis ha_lease{15'000};
  std::string listen = "127.0.0.1:8780";
  std::string api_token;  // from api.token_file
  std::string log_level = "info";
  std::string log_format = "text";
  Millis poll_interval{15 * 60'000};
  double poll_jitter = 0.10;  // fraction of the interval
  int poll_concurrency = 8;
  Millis poll_settle{2 * 60'000};
  std::vector<std::string> default_platforms{"linux/amd64"};
  std::map<std::string, RegistryConfig> registries;
  std::vector<WatchConfig> watch;
  std::vector<ProjectConfig> projects;
  std::map<std::string, TriggerConfig> triggers;
  int retry_max_attempts = 10;
  Millis retry_initial{5000};
  Millis retry_max{3'600'000};
  std::vector<InboundConfig> inbound;
  // Task builds (command and build triggers): how many run at once, all
  // triggers together, and where their logs go (default: "builds" next to
  // the database).
  int builds_concurrency = 2;
  std::string builds_logs;
  // Local copies of public content (config/mirrors.h maps references).
  std::vector<MirrorConfig> mirrors;
  PolicyConfig policy;

  const RegistryConfig* registry(const std::string& host) const;
};

// `serve` and `check` need something to watch; other commands (digest,
// refs, graph) do not. Error (ErrorKind::invalid):
//   config.yaml:1:1: nothing to watch: add projects: (Dockerfiles) or watch: (references)
Status require_something_to_watch(const Config& config);

// Parses YAML text; `file` names the place in errors and anchors relative
// paths (Dockerfiles, *_file secrets). Errors (ErrorKind::invalid) read
//   config.yaml:4:3: poll: unknown key "intervall" (expected one of: interval, jitter, concurrency, settle)
Result<Config> parse(const std::string& text, const std::string& file);
Result<Config> load(const std::string& path);

// The config file to use: the -c value, else $BASEWATCH_CONFIG, else
// /etc/basewatch/config.yaml.
std::string default_path(const std::string& given);

// A one-line-per-key summary with secrets shown as "(set)".
std::string describe(const Config& config);

}  // namespace bw::config
