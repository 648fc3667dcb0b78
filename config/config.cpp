#include "config/config.h"

#include <yaml-cpp/exceptions.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "config/mirrors.h"
#include "config/yaml_tree.h"
#include "oci/reference.h"
#include "util/database_uri.h"
#include "util/files.h"
#include "util/strings.h"

namespace bw::config {

namespace fs = std::filesystem;

std::string Mark::str() const { return file + ":" + std::to_string(line) + ":" + std::to_string(column); }

const RegistryConfig* Config::registry(const std::string& host) const {
  auto it = registries.find(host);
  return it == registries.end() ? nullptr : &it->second;
}

std::string default_path(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("BASEWATCH_CONFIG"); env && *env) return env;
  return "/etc/basewatch/config.yaml";
}

namespace {

constexpr int k_minutes_per_day = 24 * 60;
constexpr int64_t k_ms_per_minute = 60'000;

Error window_error(std::string_view text, const std::string& cause) {
  return make_error(ErrorKind::invalid, "invalid quiet window \"" + std::string(text) + "\": " + cause);
}

// "mon".."sun" -> 0..6, else -1.
int weekday(std::string_view name) {
  static const char* const k_days[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
  std::string l = to_lower(name);
  for (int i = 0; i < 7; ++i) {
    if (l == k_days[i]) return i;
  }
  return -1;
}

// "HH:MM" -> minutes; 24:00 only when `end`. -1 when malformed.
int clock_minutes(std::string_view s, bool end) {
  if (s.size() != 5 || s[2] != ':') return -1;
  for (size_t i : {0, 1, 3, 4}) {
    if (s[i] < '0' || s[i] > '9') return -1;
  }
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (m > 59 || h > 24 || (h == 24 && (m != 0 || !end))) return -1;
  return h * 60 + m;
}

}  // namespace

Result<QuietWindow> parse_quiet_window(std::string_view text) {
  auto parts = split(trim(text), ' ');
  std::vector<std::string> words;
  for (auto& p : parts) {
    if (!p.empty()) words.push_back(p);
  }
  if (words.size() != 2) return window_error(text, "expected \"<days> HH:MM-HH:MM\", e.g. \"sat 02:00-06:00\"");
  QuietWindow w;
  w.text = std::string(trim(text));
  if (words[0] == "daily" || words[0] == "*") {
    w.days = 0x7f;
  } else {
    for (const auto& item : split(words[0], ',')) {
      auto dash = item.find('-');
      int from = weekday(item.substr(0, dash));
      int to = dash == std::string::npos ? from : weekday(item.substr(dash + 1));
      if (from < 0 || to < 0) return window_error(text, "unknown day \"" + item + "\" (use mon..sun, a range such as mon-fri, or daily)");
      for (int d = from;; d = (d + 1) % 7) {
        w.days |= 1u << d;
        if (d == to) break;
      }
    }
  }
  auto dash = words[1].find('-');
  w.start = dash == std::string::npos ? -1 : clock_minutes(std::string_view(words[1]).substr(0, dash), false);
  w.end = dash == std::string::npos ? -1 : clock_minutes(std::string_view(words[1]).substr(dash + 1), true);
  if (w.start < 0 || w.end < 0) return window_error(text, "expected a time range HH:MM-HH:MM (UTC), got \"" + words[1] + "\"");
  if (w.start == w.end) return window_error(text, "the window is empty");
  return w;
}

TimePoint QuietWindow::next_open(TimePoint t) const {
  int64_t ms = to_unix_ms(t);
  int64_t day_ms = k_minutes_per_day * k_ms_per_minute;
  int64_t day = ms >= 0 ? ms / day_ms : (ms - day_ms + 1) / day_ms;
  std::optional<int64_t> best;
  // A window that started yesterday may still be open; one starts within a week.
  for (int64_t d = day - 1; d <= day + 7; ++d) {
    int wd = static_cast<int>(((d + 3) % 7 + 7) % 7);  // 1970-01-01 was a Thursday
    if (!(days & (1u << wd))) continue;
    int64_t open = d * day_ms + start * k_ms_per_minute;
    int64_t close = d * day_ms + (end > start ? end : end + k_minutes_per_day) * k_ms_per_minute;
    if (open <= ms && ms < close) return t;
    if (open > ms && (!best || open < *best)) best = open;
  }
  return best ? from_unix_ms(*best) : t;
}

namespace {

// Walks the YAML tree, converting values and recording the first error with
// its place. Conversion never throws out of here.
class Reader {
 public:
  explicit Reader(std::string file) : m_file(std::move(file)) {
    m_dir = fs::path(m_file).parent_path().string();
  }

  Mark mark(const yaml::Node& n) const {
    auto m = n.Mark();
    return Mark{m_file, m.line + 1, m.column + 1};
  }

  void fail(const yaml::Node& n, const std::string& message) {
    if (!m_error.empty()) return;  // the first error is the one to fix first
    m_error = mark(n).str() + ": " + message;
  }
  bool failed() const { return !m_error.empty(); }
  const std::string& error() const { return m_error; }

  // Checks that `n` is a mapping with only `known` keys.
  bool mapping(const yaml::Node& n, const std::string& where, std::initializer_list<const char*> known) {
    if (!n.IsMap()) {
      fail(n, where + ": expected a mapping");
      return false;
    }
    for (const auto& kv : n) {
      std::string key = kv.first.Scalar();
      bool ok = false;
      for (const char* k : known) ok = ok || key == k;
      if (!ok) {
        std::vector<std::string> names(known.begin(), known.end());
        std::string hint;
        if (std::string near = closest(key, names); !near.empty()) {
          hint = "did you mean \"" + near + "\"?";
        } else {
          hint = "expected one of: " + join(names, ", ");
        }
        fail(kv.first, (where.empty() ? "" : where + ": ") + "unknown key \"" + key + "\" (" + hint + ")");
        return false;
      }
    }
    return true;
  }

  // A list of mappings under `key`: each item, named "key[i]", must have only
  // `known` keys; `fn(item, where)` reads it. Stops at the first bad item.
  template <typename Fn>
  void each_mapping(const yaml::Node& parent, const char* key, std::initializer_list<const char*> known, Fn fn) {
    auto list = parent[key];
    if (!list) return;
    if (!list.IsSequence()) {
      fail(list, std::string(key) + ": expected a list");
      return;
    }
    for (size_t i = 0; i < list.size(); ++i) {
      const yaml::Node n = list[i];
      std::string where = std::string(key) + "[" + std::to_string(i) + "]";
      if (!mapping(n, where, known)) return;
      fn(n, where);
    }
  }

  std::string key_path(const std::string& where, const std::string& key) const {
    return where.empty() ? key : where + "." + key;
  }

  bool scalar(const yaml::Node& n, const std::string& key, std::string& out) {
    if (!n.IsScalar()) {
      fail(n, key + ": expected a string");
      return false;
    }
    out = n.Scalar();
    return true;
  }

  void string(const yaml::Node& parent, const char* key, const std::string& where, std::string& out) {
    if (auto n = parent[key]) scalar(n, key_path(where, key), out);
  }

  void boolean(const yaml::Node& parent, const char* key, const std::string& where, bool& out) {
    auto n = parent[key];
    if (!n) return;
    std::string s;
    if (!scalar(n, key_path(where, key), s)) return;
    std::string l = to_lower(s);
    if (l == "true" || l == "yes" || l == "on") out = true;
    else if (l == "false" || l == "no" || l == "off") out = false;
    else fail(n, key_path(where, key) + ": expected true or false, got \"" + s + "\"");
  }

  void integer(const yaml::Node& parent, const char* key, const std::string& where, int& out, int min, int max) {
    auto n = parent[key];
    if (!n) return;
    std::string s;
    if (!scalar(n, key_path(where, key), s)) return;
    char* end = nullptr;
    long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0') {
      fail(n, key_path(where, key) + ": expected a whole number, got \"" + s + "\"");
    } else if (v < min || v > max) {
      fail(n, key_path(where, key) + ": must be between " + std::to_string(min) + " and " + std::to_string(max));
    } else {
      out = static_cast<int>(v);
    }
  }

  void duration(const yaml::Node& parent, const char* key, const std::string& where, Millis& out) {
    auto n = parent[key];
    if (!n) return;
    std::string s;
    if (!scalar(n, key_path(where, key), s)) return;
    auto d = parse_duration(s);
    if (!d) fail(n, key_path(where, key) + ": " + d.error().message);
    else out = *d;
  }

  void opt_duration(const yaml::Node& parent, const char* key, const std::string& where, std::optional<Millis>& out) {
    if (!parent[key]) return;
    Millis d{0};
    duration(parent, key, where, d);
    out = d;
  }

  void string_list(const yaml::Node& parent, const char* key, const std::string& where, std::vector<std::string>& out) {
    auto n = parent[key];
    if (!n) return;
    if (!n.IsSequence()) {
      fail(n, key_path(where, key) + ": expected a list");
      return;
    }
    out.clear();
    for (const auto& item : n) {
      std::string s;
      if (!scalar(item, key_path(where, key) + " item", s)) return;
      out.push_back(s);
    }
  }

  void string_map(const yaml::Node& parent, const char* key, const std::string& where,
                  std::map<std::string, std::string>& out) {
    auto n = parent[key];
    if (!n) return;
    if (!n.IsMap()) {
      fail(n, key_path(where, key) + ": expected a mapping");
      return;
    }
    for (const auto& kv : n) {
      std::string v;
      if (!scalar(kv.second, key_path(where, key) + "." + kv.first.Scalar(), v)) return;
      out[kv.first.Scalar()] = v;
    }
  }

  // A path relative to the config file's folder; $CREDENTIALS_DIRECTORY (as
  // systemd's LoadCredential= sets it) is expanded at the start.
  std::string resolve_path(const std::string& p) const {
    std::string path = p;
    for (const char* var : {"$CREDENTIALS_DIRECTORY", "${CREDENTIALS_DIRECTORY}"}) {
      if (path.rfind(var, 0) == 0) {
        const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
        path = std::string(dir ? dir : "") + path.substr(std::string(var).size());
      }
    }
    if (path.empty() || fs::path(path).is_absolute()) return path;
    return (fs::path(m_dir.empty() ? "." : m_dir) / path).lexically_normal().string();
  }

  // `<key>_file`: reads the secret; errors name the key's place.
  void secret_file(const yaml::Node& parent, const char* key, const std::string& where, std::string& out) {
    auto n = parent[key];
    if (!n) return;
    std::string p;
    if (!scalar(n, key_path(where, key), p)) return;
    auto content = read_secret_file(resolve_path(p));
    if (!content) fail(n, key_path(where, key) + ": cannot read secret: " + content.error().message);
    else out = *content;
  }

 private:
  std::string m_file;
  std::string m_dir;
  std::string m_error;
};

bool valid_platform_text(const std::string& p) {
  auto parts = split(p, '/');
  if (parts.size() < 2 || parts.size() > 3) return false;
  for (auto& s : parts) if (s.empty()) return false;
  return true;
}

void read_platforms(Reader& r, const yaml::Node& parent, const std::string& where, std::vector<std::string>& out) {
  r.string_list(parent, "platforms", where, out);
  if (auto n = parent["platforms"]; n && n.IsSequence()) {
    size_t i = 0;
    for (const auto& item : n) {
      if (i < out.size() && !valid_platform_text(out[i])) {
        r.fail(item, r.key_path(where, "platforms") + ": invalid platform \"" + out[i] + "\" (expected os/arch[/variant])");
      }
      ++i;
    }
  }
}

}  // namespace

Status require_something_to_watch(const Config& c) {
  // Tags kept by a repository rule are watched too (a prefix rule's tags
  // apply to the repositories that Dockerfiles and watch: use below it).
  bool kept_tags = false;
  for (const auto& m : c.mirrors) kept_tags = kept_tags || (!m.from.prefix && !m.tags.empty());
  if (!c.projects.empty() || !c.watch.empty() || kept_tags) return ok_status();
  return make_error(ErrorKind::invalid, c.mark.str() + ": nothing to watch: add projects: (Dockerfiles) or watch: (references)");
}

Result<HostPattern> parse_host_pattern(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorKind::invalid, "invalid host pattern \"" + std::string(text) + "\": " + why);
  };
  if (text.empty()) return bad("expected a registry host (registry.example.com, 127.0.0.1:5000) or *.domain");
  if (text.find("://") != std::string_view::npos) return bad("a pattern is a host, not a URL (no scheme)");
  if (text.find('/') != std::string_view::npos) return bad("a pattern names registries, not repositories (no /)");
  HostPattern p;
  p.text = std::string(text);
  std::string_view body = text;
  if (body.substr(0, 2) == "*.") {
    p.wildcard = true;
    body.remove_prefix(2);
  }
  if (body.find('*') != std::string_view::npos) {
    return bad("'*' stands only for whole labels at the start (*.example.com)");
  }
  if (body.empty()) return bad("'*' needs a domain after it (*.example.com)");
  // The host grammar of references ("host[:port]", "[v6]:port").
  auto ref = oci::parse_reference(std::string(body) + "/x");
  if (!ref || (ref->repository != "x" && ref->repository != "library/x")) {
    if (!ref) {
      const std::string& m = ref.error().message;
      auto colon = m.find("\": ");
      return bad(colon == std::string::npos ? m : m.substr(colon + 3));
    }
    return bad("expected a registry host (registry.example.com, 127.0.0.1:5000) or *.domain");
  }
  std::string host = to_lower(body);
  if (host == "index.docker.io") host = "docker.io";
  if (host.front() != '[') {
    if (auto colon = host.rfind(':'); colon != std::string::npos) {
      p.port = host.substr(colon + 1);
      host.resize(colon);
    }
  } else if (auto close = host.find(']'); close != std::string::npos && close + 1 < host.size()) {
    p.port = host.substr(close + 2);
    host.resize(close + 1);
  }
  if (p.wildcard && host.front() == '[') return bad("'*' stands for domain labels, not an IP address");
  p.host = std::move(host);
  return p;
}

bool HostPattern::matches(std::string_view registry) const {
  std::string r = to_lower(registry);
  std::string r_port;
  if (!r.empty() && r.front() == '[') {
    if (auto close = r.find(']'); close != std::string::npos && close + 1 < r.size()) {
      r_port = r.substr(close + 2);
      r.resize(close + 1);
    }
  } else if (auto colon = r.rfind(':'); colon != std::string::npos) {
    r_port = r.substr(colon + 1);
    r.resize(colon);
  }
  if (r_port != port) return false;
  if (!wildcard) return r == host;
  // Whole labels: something, then a dot, then exactly the suffix.
  return r.size() > host.size() + 1 && r.compare(r.size() - host.size(), host.size(), host) == 0 &&
         r[r.size() - host.size() - 1] == '.';
}

bool PolicyConfig::allows(std::string_view registry) const {
  if (!allowed_registries) return true;
  for (const auto& p : *allowed_registries) {
    if (p.matches(registry)) return true;
  }
  return false;
}

Result<Config> parse(const std::string& text, const std::string& file) {
  Config c;
  c.file = file;
  std::unique_ptr<yaml::Document> doc;
  try {
    doc = yaml::Document::parse(text);
  } catch (const YAML::Exception& e) {
    return make_error(ErrorKind::invalid, file + ":" + std::to_string(e.mark.line + 1) + ":" +
                                              std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  yaml::Node root = doc->root();
  Reader r(file);
  std::optional<Mark> ha_mark;  // where ha: is, for the check against the database
  try {
    if (!root || root.IsNull()) {
      return make_error(ErrorKind::invalid, file + ":1:1: the config is empty (at least projects: or watch: is needed)");
    }
    c.mark = r.mark(root);
    if (!r.mapping(root, "", {"database", "ha", "listen", "api", "log", "poll", "defaults", "registries", "watch",
                              "projects", "triggers", "retry", "inbound", "builds", "mirrors", "policy"}))
      return make_error(ErrorKind::invalid, r.error());

    r.string(root, "database", "", c.database);
    if (is_postgres_uri(c.database)) {
      // A connection URI: libpq reads it, but its file parameters are paths
      // like the config's others (relative to its folder, $CREDENTIALS_DIRECTORY).
      for (const char* key : {"passfile", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir"}) {
        c.database = map_uri_parameter(c.database, key, [&](const std::string& p) { return r.resolve_path(p); });
      }
    } else if (!c.database.empty()) {
      c.database = r.resolve_path(c.database);
    }
    if (auto ha = root["ha"]; ha && r.mapping(ha, "ha", {"lease"})) {
      for (const auto& kv : root) {
        if (kv.first.Scalar() == "ha") ha_mark = r.mark(kv.first);
      }
      r.duration(ha, "lease", "ha", c.ha_lease);
      if (ha["lease"] && !r.failed() && c.ha_lease.count() < 1000) r.fail(ha["lease"], "ha.lease: must be at least 1s");
    }
    r.string(root, "listen", "", c.listen);
    if (auto api = root["api"]; api && r.mapping(api, "api", {"token_file"})) r.secret_file(api, "token_file", "api", c.api_token);
    if (auto log = root["log"]; log && r.mapping(log, "log", {"level", "format"})) {
      r.string(log, "level", "log", c.log_level);
      r.string(log, "format", "log", c.log_format);
      static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error"};
      if (!levels.count(c.log_level)) r.fail(log["level"], "log.level: expected one of trace, debug, info, warn, error, got \"" + c.log_level + "\"");
      if (c.log_format != "text" && c.log_format != "json") r.fail(log["format"], "log.format: expected text or json, got \"" + c.log_format + "\"");
    }
    if (auto poll = root["poll"]; poll && r.mapping(poll, "poll", {"interval", "jitter", "concurrency", "settle"})) {
      r.duration(poll, "interval", "poll", c.poll_interval);
      if (poll["interval"] && c.poll_interval.count() < 1000) r.fail(poll["interval"], "poll.interval: must be at least 1s");
      if (auto j = poll["jitter"]) {
        std::string s;
        if (r.scalar(j, "poll.jitter", s)) {
          std::string t = s;
          bool pct = !t.empty() && t.back() == '%';
          if (pct) t.pop_back();
          char* end = nullptr;
          double v = std::strtod(t.c_str(), &end);
          if (t.empty() || *end != '\0' || v < 0 || (pct ? v > 100 : v > 1)) {
            r.fail(j, "poll.jitter: expected a percentage such as 10% (0% to 100%), got \"" + s + "\"");
          } else {
            c.poll_jitter = pct ? v / 100.0 : v;
          }
        }
      }
      r.integer(poll, "concurrency", "poll", c.poll_concurrency, 1, 256);
      r.duration(poll, "settle", "poll", c.poll_settle);
    }
    if (auto d = root["defaults"]; d && r.mapping(d, "defaults", {"platforms"})) read_platforms(r, d, "defaults", c.default_platforms);

    if (auto regs = root["registries"]) {
      if (!regs.IsMap()) r.fail(regs, "registries: expected a mapping of registry host to settings");
      else for (const auto& kv : regs) {
        RegistryConfig rc;
        rc.host = kv.first.Scalar();
        std::string where = "registries." + rc.host;
        if (!r.mapping(kv.second, where, {"username", "password_file", "docker_config", "insecure", "ca_file",
                                          "requests_per_minute", "concurrency"})) break;
        r.string(kv.second, "username", where, rc.username);
        r.secret_file(kv.second, "password_file", where, rc.password);
        r.string(kv.second, "docker_config", where, rc.docker_config);
        if (!rc.docker_config.empty()) rc.docker_config = r.resolve_path(rc.docker_config);
        r.boolean(kv.second, "insecure", where, rc.insecure);
        r.string(kv.second, "ca_file", where, rc.ca_file);
        if (!rc.ca_file.empty()) rc.ca_file = r.resolve_path(rc.ca_file);
        r.integer(kv.second, "requests_per_minute", where, rc.requests_per_minute, 0, 1'000'000);
        r.integer(kv.second, "concurrency", where, rc.concurrency, 0, 256);
        if (!rc.password.empty() && rc.username.empty()) r.fail(kv.second, where + ": password_file needs username");
        c.registries[rc.host] = rc;
      }
    }

    if (auto triggers = root["triggers"]) {
      if (!triggers.IsMap()) r.fail(triggers, "triggers: expected a mapping of trigger name to settings");
      else for (const auto& kv : triggers) {
        TriggerConfig t;
        t.name = kv.first.Scalar();
        t.mark = r.mark(kv.first);
        std::string where = "triggers." + t.name;
        const yaml::Node& n = kv.second;
        if (!n.IsMap()) { r.fail(n, where + ": expected a mapping"); break; }
        r.string(n, "type", where, t.type);
        if (t.type == "webhook") {
          if (!r.mapping(n, where, {"type", "url", "secret_file", "headers", "timeout"})) break;
        } else if (t.type == "command") {
          if (!r.mapping(n, where, {"type", "command", "workdir", "timeout"})) break;
          t.timeout = Millis(30 * 60'000);
        } else if (t.type == "github") {
          if (!r.mapping(n, where, {"type", "repository", "event_type", "workflow", "ref", "token_file", "api_url", "timeout"})) break;
        } else if (t.type == "gitlab") {
          if (!r.mapping(n, where, {"type", "url", "project", "ref", "token_file", "timeout"})) break;
        } else if (t.type == "build") {
          if (!r.mapping(n, where, {"type", "builder", "push", "args", "timeout"})) break;
          t.timeout = Millis(30 * 60'000);
        } else {
          std::string near = closest(t.type, {"webhook", "command", "github", "gitlab", "build"});
          r.fail(n["type"] ? n["type"] : n, where + ".type: expected one of webhook, command, github, gitlab, build" +
                                                (t.type.empty() ? std::string(" (missing)") : ", got \"" + t.type + "\"") +
                                                (near.empty() ? "" : " (did you mean \"" + near + "\"?)"));
          break;
        }
        r.string(n, "url", where, t.url);
        r.secret_file(n, "secret_file", where, t.secret);
        r.string_map(n, "headers", where, t.headers);
        r.duration(n, "timeout", where, t.timeout);
        r.string_list(n, "command", where, t.command);
        r.string(n, "workdir", where, t.workdir);
        if (!t.workdir.empty()) t.workdir = r.resolve_path(t.workdir);
        r.string(n, "repository", where, t.repository);
        r.string(n, "event_type", where, t.event_type);
        r.string(n, "workflow", where, t.workflow);
        r.string(n, "ref", where, t.ref);
        r.string(n, "project", where, t.project);
        r.string(n, "api_url", where, t.api_url);
        r.secret_file(n, "token_file", where, t.token);
        r.string(n, "builder", where, t.builder);
        t.builder_mark = n["builder"] ? r.mark(n["builder"]) : t.mark;
        r.boolean(n, "push", where, t.push);
        r.string_list(n, "args", where, t.args);
        auto need = [&](const char* key, const std::string& v) {
          if (v.empty()) r.fail(kv.first, where + ": " + key + " is required for type " + t.type);
        };
        if (t.type == "webhook") {
          need("url", t.url);
          if (!t.url.empty() && t.url.rfind("http://", 0) != 0 && t.url.rfind("https://", 0) != 0)
            r.fail(n["url"], where + ".url: expected an http:// or https:// URL");
        } else if (t.type == "command") {
          if (t.command.empty()) r.fail(kv.first, where + ": command is required for type command (a list: [program, args...])");
        } else if (t.type == "github") {
          need("repository", t.repository);
          need("token_file", t.token);
          if (t.workflow.empty() && t.event_type.empty()) t.event_type = "base-image-updated";
          if (!t.workflow.empty() && t.ref.empty()) r.fail(kv.first, where + ": ref is required with workflow");
          if (t.event_type.size() > 100) r.fail(n["event_type"], where + ".event_type: must be 100 characters or fewer (GitHub's limit)");
          if (t.api_url.rfind("http://", 0) != 0 && t.api_url.rfind("https://", 0) != 0)
            r.fail(n["api_url"], where + ".api_url: expected an http:// or https:// URL");
        } else if (t.type == "build") {
          if (t.builder != "buildah" && t.builder != "podman")
            r.fail(n["builder"], where + ".builder: expected buildah or podman, got \"" + t.builder + "\"");
        } else if (t.type == "gitlab") {
          need("url", t.url);
          need("project", t.project);
          need("ref", t.ref);
          need("token_file", t.token);
          if (!t.url.empty() && t.url.rfind("http://", 0) != 0 && t.url.rfind("https://", 0) != 0)
            r.fail(n["url"], where + ".url: expected an http:// or https:// URL");
        }
        c.triggers[t.name] = t;
      }
    }

    auto check_trigger_names = [&](const yaml::Node& n, const std::string& where, const std::vector<std::string>& names) {
      std::vector<std::string> defined;
      for (const auto& [name, t] : c.triggers) defined.push_back(name);
      for (const auto& name : names) {
        if (c.triggers.count(name)) continue;
        std::string near = closest(name, defined);
        r.fail(n["triggers"], where + ".triggers: unknown trigger \"" + name + "\"" +
                                  (near.empty() ? "" : " (did you mean \"" + near + "\"?)"));
      }
    };

    if (auto list = root["watch"]; list && list.IsSequence()) c.watch.reserve(list.size());
    r.each_mapping(root, "watch", {"ref", "platforms", "interval", "triggers"}, [&](const yaml::Node& n, const std::string& where) {
      WatchConfig w;
      w.mark = r.mark(n);
      r.string(n, "ref", where, w.ref);
      if (w.ref.empty()) r.fail(n, where + ": ref is required");
      read_platforms(r, n, where, w.platforms);
      r.opt_duration(n, "interval", where, w.interval);
      r.string_list(n, "triggers", where, w.triggers);
      check_trigger_names(n, where, w.triggers);
      c.watch.push_back(w);
    });

    std::set<std::string> names;
    r.each_mapping(root, "projects", {"name", "dockerfile", "dockerfiles", "context", "build_args", "target", "platforms",
                                      "image", "triggers", "quiet"}, [&](const yaml::Node& n, const std::string& where) {
      ProjectConfig p;
      p.mark = r.mark(n);
      r.string(n, "name", where, p.name);
      r.string(n, "dockerfile", where, p.dockerfile);
      r.string(n, "dockerfiles", where, p.dockerfiles);
      if (auto d = n["dockerfile"] ? n["dockerfile"] : n["dockerfiles"]) p.dockerfile_mark = r.mark(d);
      else p.dockerfile_mark = p.mark;
      r.string(n, "context", where, p.context);
      r.string_map(n, "build_args", where, p.build_args);
      r.string(n, "target", where, p.target);
      read_platforms(r, n, where, p.platforms);
      r.string(n, "image", where, p.image);
      p.image_mark = n["image"] ? r.mark(n["image"]) : p.mark;
      r.string_list(n, "triggers", where, p.triggers);
      if (auto q = n["quiet"]) {
        // A duration ("1d"), or a weekly window ("sat 02:00-06:00").
        std::string value;
        if (r.scalar(q, where + ".quiet", value)) {
          if (auto d = parse_duration(value)) {
            p.quiet = *d;
          } else if (auto w = parse_quiet_window(value)) {
            p.quiet_window = *w;
          } else {
            bool looks_like_window = value.find(':') != std::string::npos;
            r.fail(q, where + ".quiet: " + (looks_like_window ? w.error().message : d.error().message) +
                          " (a duration such as 1d, or a weekly window such as \"sat 02:00-06:00\")");
          }
        }
      }
      check_trigger_names(n, where, p.triggers);
      if (p.dockerfile.empty() == p.dockerfiles.empty()) {
        r.fail(n, where + ": exactly one of dockerfile or dockerfiles is required");
      }
      if (!p.dockerfile.empty()) p.dockerfile = r.resolve_path(p.dockerfile);
      if (!p.dockerfiles.empty()) p.dockerfiles = r.resolve_path(p.dockerfiles);
      if (!p.context.empty()) p.context = r.resolve_path(p.context);
      if (p.name.empty() && !p.dockerfile.empty()) p.name = fs::path(p.dockerfile).parent_path().filename().string();
      if (p.name.empty() && p.dockerfiles.empty()) r.fail(n, where + ": name is required");
      if (!p.name.empty() && !names.insert(p.name).second) r.fail(n["name"] ? n["name"] : n, where + ".name: duplicate project name \"" + p.name + "\"");
      c.projects.push_back(p);
    });

    if (auto retry = root["retry"]; retry && r.mapping(retry, "retry", {"max_attempts", "initial", "max"})) {
      r.integer(retry, "max_attempts", "retry", c.retry_max_attempts, 1, 1000);
      r.duration(retry, "initial", "retry", c.retry_initial);
      r.duration(retry, "max", "retry", c.retry_max);
    }

    if (auto builds = root["builds"]; builds && r.mapping(builds, "builds", {"concurrency", "logs"})) {
      r.integer(builds, "concurrency", "builds", c.builds_concurrency, 1, 64);
      r.string(builds, "logs", "builds", c.builds_logs);
      if (builds["logs"] && c.builds_logs.empty()) r.fail(builds["logs"], "builds.logs: expected a folder");
      if (!c.builds_logs.empty()) c.builds_logs = r.resolve_path(c.builds_logs);
    }

    static const std::set<std::string> formats{"distribution", "dockerhub", "acr", "harbor", "ghcr", "quay", "generic"};
    std::set<std::string> paths;
    r.each_mapping(root, "inbound", {"name", "path", "format", "secret_file"}, [&](const yaml::Node& n, const std::string& where) {
      InboundConfig in;
      in.mark = r.mark(n);
      r.string(n, "name", where, in.name);
      r.string(n, "path", where, in.path);
      r.string(n, "format", where, in.format);
      r.secret_file(n, "secret_file", where, in.secret);
      if (in.path.empty() || in.path[0] != '/') r.fail(n["path"] ? n["path"] : n, where + ".path: expected a path starting with /");
      else if (in.path.rfind("/v1/", 0) == 0 || in.path == "/metrics" || in.path == "/healthz" || in.path == "/readyz")
        r.fail(n["path"], where + ".path: \"" + in.path + "\" is taken by the API");
      else if (!paths.insert(in.path).second) r.fail(n["path"], where + ".path: duplicate path \"" + in.path + "\"");
      if (!formats.count(in.format)) {
        std::string near = closest(in.format, std::vector<std::string>(formats.begin(), formats.end()));
        r.fail(n["format"] ? n["format"] : n, where + ".format: expected one of distribution, dockerhub, acr, harbor, ghcr, quay, generic" +
                                                  (near.empty() ? "" : " (did you mean \"" + near + "\"?)"));
      }
      if (in.name.empty()) in.name = in.format;
      c.inbound.push_back(in);
    });

    r.each_mapping(root, "mirrors", {"from", "to", "platforms", "referrers", "tags"}, [&](const yaml::Node& n, const std::string& where) {
      MirrorConfig m;
      m.mark = r.mark(n);
      for (const char* side : {"from", "to"}) {
        auto v = n[side];
        if (!v) {
          r.fail(n, where + ": " + side + " is required");
          return;
        }
        std::string written;
        if (!r.scalar(v, where + "." + side, written)) return;
        auto pattern = parse_repo_pattern(written);
        if (!pattern) {
          r.fail(v, where + "." + side + ": " + pattern.error().message);
          return;
        }
        (std::string(side) == "from" ? m.from : m.to) = *pattern;
        (std::string(side) == "from" ? m.from_mark : m.to_mark) = r.mark(v);
      }
      if (m.from.prefix != m.to.prefix) {
        r.fail(n["to"], where + ".to: " + (m.from.prefix ? "from is a prefix (/*), so to must be one too"
                                                          : "from is one repository, so to must be one too (no /*)"));
        return;
      }
      if (auto pl = n["platforms"]) {
        std::string all;
        if (pl.IsScalar() && r.scalar(pl, where + ".platforms", all)) {
          if (all != "all") r.fail(pl, where + ".platforms: expected all or a list of os/arch[/variant], got \"" + all + "\"");
        } else {
          read_platforms(r, n, where, m.platforms);
          m.all_platforms = false;
          if (m.platforms.empty() && !r.failed()) r.fail(pl, where + ".platforms: the list is empty (use all)");
        }
      }
      r.boolean(n, "referrers", where, m.referrers);
      r.string_list(n, "tags", where, m.tags);
      if (auto tags = n["tags"]; tags && tags.IsSequence()) {
        for (size_t i = 0; i < m.tags.size() && !r.failed(); ++i) {
          // The tag grammar, checked the way references check it.
          auto ref = oci::parse_reference("x:" + m.tags[i]);
          if (!ref || ref->tag != m.tags[i]) r.fail(tags[i], where + ".tags: invalid tag \"" + m.tags[i] + "\"");
        }
      }
      c.mirrors.push_back(m);
    });
    if (!r.failed()) {
      if (std::string why = check_mirror_rules(c.mirrors); !why.empty()) return make_error(ErrorKind::invalid, why);
    }

    if (auto policy = root["policy"]; policy && r.mapping(policy, "policy", {"require_mirror", "allowed_registries"})) {
      r.boolean(policy, "require_mirror", "policy", c.policy.require_mirror);
      if (auto list = policy["allowed_registries"]) {
        if (!list.IsSequence()) {
          r.fail(list, "policy.allowed_registries: expected a list of registry hosts or *.domain patterns");
        } else if (list.size() == 0) {
          r.fail(list, "policy.allowed_registries: the list is empty (leave it out to allow any registry)");
        } else {
          std::vector<HostPattern> patterns;
          for (size_t i = 0; i < list.size() && !r.failed(); ++i) {
            std::string where = "policy.allowed_registries[" + std::to_string(i) + "]";
            std::string written;
            if (!r.scalar(list[i], where, written)) break;
            auto pattern = parse_host_pattern(written);
            if (!pattern) r.fail(list[i], where + ": " + pattern.error().message);
            else patterns.push_back(*pattern);
          }
          c.policy.allowed_registries = std::move(patterns);
        }
      }
    }
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws on odd node shapes (e.g. a sequence used as a map key).
    if (!r.failed()) {
      return make_error(ErrorKind::invalid, file + ":" + std::to_string(e.mark.line + 1) + ":" +
                                                std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
  }
  if (r.failed()) return make_error(ErrorKind::invalid, r.error());

  if (c.database.empty()) {
    const char* state = std::getenv("STATE_DIRECTORY");
    // systemd may pass several folders separated by ':'; the first is ours.
    std::string dir = state && *state ? split(state, ':')[0] : ".";
    c.database = (fs::path(dir) / "basewatch.db").string();
  }
  // Several instances share a server's database, never a file: a lease on
  // SQLite would promise a failover that cannot happen.
  if (ha_mark && !is_postgres_uri(c.database)) {
    return make_error(ErrorKind::invalid, ha_mark->str() + ": ha: needs a PostgreSQL database: (a SQLite file serves one instance)");
  }
  if (c.builds_logs.empty()) {
    // Next to a SQLite file; with a server, in the state folder.
    const char* state = std::getenv("STATE_DIRECTORY");
    fs::path db_dir = !is_postgres_uri(c.database) ? fs::path(c.database).parent_path()
                      : state && *state           ? fs::path(split(state, ':')[0])
                                                  : fs::path();
    c.builds_logs = ((db_dir.empty() ? fs::path(".") : db_dir) / "builds").string();
  }
  return c;
}

Result<Config> load(const std::string& path) {
  auto text = read_file(path);
  if (!text) return make_error(ErrorKind::invalid, path + ": cannot read config: " + text.error().message.substr(path.size() + 2));
  return parse(*text, path);
}

std::string describe(const Config& c) {
  std::ostringstream out;
  out << "config " << c.file << ": database=" << redact_database(c.database) << " listen=" << c.listen
      << " api.token=" << (c.api_token.empty() ? "(none)" : "(set)") << " poll.interval=" << format_duration(c.poll_interval)
      << " poll.jitter=" << static_cast<int>(c.poll_jitter * 100) << "% poll.concurrency=" << c.poll_concurrency
      << " poll.settle=" << format_duration(c.poll_settle) << " defaults.platforms=" << join(c.default_platforms, ",")
      << " registries=" << c.registries.size() << " watch=" << c.watch.size() << " projects=" << c.projects.size()
      << " triggers=" << c.triggers.size() << " inbound=" << c.inbound.size()
      << " builds.concurrency=" << c.builds_concurrency << " builds.logs=" << c.builds_logs << " mirrors=" << c.mirrors.size();
  if (is_postgres_uri(c.database)) out << " ha.lease=" << format_duration(c.ha_lease);
  for (const auto& [host, r] : c.registries) {
    out << " registry[" << host << "]={user=" << (r.username.empty() ? "(none)" : r.username)
        << " password=" << (r.password.empty() ? "(none)" : "(set)") << " insecure=" << (r.insecure ? "true" : "false") << "}";
  }
  return out.str();
}

}  // namespace bw::config
