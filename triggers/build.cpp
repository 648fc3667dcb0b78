#include "triggers/build.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <system_error>

#include "dockerfile/lexer.h"
#include "dockerfile/pin.h"
#include "oci/reference.h"
#include "registry/credentials.h"
#include "util/crypto.h"
#include "util/files.h"
#include "util/strings.h"

namespace bw::triggers {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr Millis k_cleanup_timeout{60'000};  // each cleanup step, outside the build's own timeout
constexpr size_t k_error_line_max = 300;
constexpr const char* k_local_repository = "localhost/basewatch-build";
constexpr const char* k_system_registries_conf = "/etc/containers/registries.conf";

// "linux/arm64/v8" -> "linux-arm64-v8": a tag suffix.
std::string platform_suffix(const std::string& platform) {
  std::string s = platform;
  std::replace(s.begin(), s.end(), '/', '-');
  return s;
}

void append(std::vector<std::string>& to, const std::vector<std::string>& more) { to.insert(to.end(), more.begin(), more.end()); }

// An argv as one line for the log, quoting what a reader would misread.
std::string command_line(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

// The build's log: basewatch's own lines ("basewatch: ...") between the
// builder's output, all in the attempt's file.
class BuildLog {
 public:
  explicit BuildLog(std::string path) : m_path(std::move(path)) {
    std::ofstream(m_path, std::ios::trunc);  // a new attempt, a new file
  }
  const std::string& path() const { return m_path; }
  void line(const std::string& text) const {
    std::ofstream out(m_path, std::ios::app);
    out << "basewatch: " << text << "\n";
  }

 private:
  std::string m_path;
};

// A private folder for one attempt's files, removed with everything in it.
class TempFolder {
 public:
  TempFolder() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/basewatch-build-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data())) m_path = buf.data();  // mode 0700
    else m_error = "cannot create a temporary folder from " + pattern + ": " + std::strerror(errno);
  }
  ~TempFolder() {
    if (m_path.empty()) return;
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const std::string& path() const { return m_path; }
  const std::string& error() const { return m_error; }

 private:
  std::string m_path;
  std::string m_error;
};

// Writes a file only its owner may read (created so, never widened).
Status write_private(const std::string& path, const std::string& content, mode_t mode = 0600) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return make_error(ErrorKind::io, "cannot create " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      return make_error(ErrorKind::io, "cannot write " + path + ": " + std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return make_error(ErrorKind::io, "cannot write " + path + ": " + std::strerror(errno));
  return ok_status();
}

BuildStep make_step(std::string label, std::vector<std::string> argv, BuildStep::Kind kind, std::string creates = "",
                    size_t operands = 0) {
  BuildStep step;
  step.label = std::move(label);
  step.argv = std::move(argv);
  step.kind = kind;
  step.creates = std::move(creates);
  step.operands = operands;
  return step;
}

// "1.234s": how long a step took, for the log (bench/builds reads it).
std::string seconds_text(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", std::chrono::duration<double>(d).count());
  return buf;
}

uintmax_t file_size(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

// What a file holds from `offset` on, at most k_output_tail_bytes of its end.
std::string read_from(const std::string& path, uintmax_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  uintmax_t size = file_size(path);
  offset = std::max(offset, size > k_output_tail_bytes ? size - k_output_tail_bytes : 0);
  in.seekg(static_cast<std::streamoff>(offset));
  return {std::istreambuf_iterator<char>(in), {}};
}

bool is_v1_registries_conf(const std::string& text) {
  for (const auto& raw : split(text, '\n')) {
    auto line = trim(raw);
    if (line.rfind("[registries.", 0) == 0) return true;
  }
  return false;
}

std::string json_string(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

Result<std::vector<BuildChange>> build_changes(const db::Delivery& d) {
  auto invalid = [&](const std::string& why) { return make_error(ErrorKind::invalid, "delivery " + d.id + ": " + why); };
  auto body = json::parse(d.payload, nullptr, false);
  if (!body.is_object()) return invalid("the stored payload is not a JSON object");
  std::vector<BuildChange> out;
  auto changes = body.find("changes");
  if (changes == body.end() || !changes->is_array()) return invalid("the stored payload has no changes");
  for (const auto& c : *changes) {
    if (!c.is_object()) return invalid("a change is not a JSON object");
    BuildChange bc;
    bc.ref = json_string(c, "ref");
    bc.new_digest = json_string(c, "new_digest");
    if (bc.ref.empty() || !oci::is_valid_digest(bc.new_digest)) return invalid("a change lacks ref or new_digest");
    if (auto m = c.find("mirror"); m != c.end() && m->is_object()) {
      bc.mirror_ref = json_string(*m, "ref");
      bc.mirror_digest = json_string(*m, "digest");
      // The digest is "" until the copy is made (a copy of some platforms
      // only); the delivery is sent once it is filled in.
      if (bc.mirror_ref.empty() || (!bc.mirror_digest.empty() && !oci::is_valid_digest(bc.mirror_digest))) {
        return invalid("a change's mirror lacks ref, or its digest is not one");
      }
    }
    if (auto u = c.find("upstream"); u != c.end() && u->is_object()) bc.upstream_ref = json_string(*u, "ref");
    out.push_back(std::move(bc));
  }
  return out;
}

std::string local_name(const BuildSettings& s, const std::string& suffix) {
  return std::string(k_local_repository) + ":" + s.delivery_id + "-" + std::to_string(s.attempt) + (suffix.empty() ? "" : "-" + suffix);
}

std::vector<BuildStep> plan_build(const BuildSettings& s) {
  const std::string& b = s.builder;
  const BuildProject& p = s.project;
  std::vector<std::string> auth, certs;
  if (!s.authfile.empty()) auth = {"--authfile", s.authfile};
  if (!s.cert_dir.empty()) certs = {"--cert-dir", s.cert_dir};
  const bool multi = s.variants.size() > 1;
  // push: false with an image keeps the result under that name; otherwise
  // (pushed, or nothing to name it) the local names go afterwards.
  const bool keep = !s.push && !p.image.empty();
  std::vector<BuildStep> steps;
  std::vector<std::string> locals;
  for (const auto& v : s.variants) {
    std::vector<std::string> argv = {b, "build", "--pull=always", "-f", v.dockerfile, "--platform", v.platform};
    if (!p.target.empty()) append(argv, {"--target", p.target});
    for (const auto& [k, val] : p.build_args) append(argv, {"--build-arg", k + "=" + val});
    append(argv, {"--annotation", std::string(k_annotation_delivery) + "=" + s.delivery_id});
    append(argv, {"--annotation", std::string(k_annotation_created) + "=" + s.created});
    if (v.runtime_base && v.runtime_base_pinned) {
      append(argv, {"--annotation", std::string(k_annotation_base_name) + "=" + v.runtime_base->ref.tag_ref()});
      append(argv, {"--annotation", std::string(k_annotation_base_digest) + "=" + v.runtime_base->ref.digest});
    }
    append(argv, auth);
    append(argv, certs);
    append(argv, s.args);
    std::string local = local_name(s, multi ? platform_suffix(v.platform) : "");
    append(argv, {"-t", local, p.context});
    locals.push_back(local);
    steps.push_back(make_step("build " + v.platform, std::move(argv), BuildStep::Kind::required, local, 0));
  }
  std::vector<std::string> tls;
  if (s.push_insecure) tls = {"--tls-verify=false"};
  if (!multi) {
    const std::string& local = locals.front();
    if (s.push) {
      std::vector<std::string> argv = {b, "push"};
      append(argv, auth);
      append(argv, certs);
      append(argv, tls);
      append(argv, {"--digestfile", s.digest_file, local, "docker://" + p.image});
      steps.push_back(make_step("push", std::move(argv), BuildStep::Kind::required));
    } else if (keep) {
      steps.push_back(make_step("tag", {b, "tag", local, p.image}, BuildStep::Kind::required));
    }
    // With `keep` this only removes the temporary name.
    steps.push_back(make_step("clean up", {b, "rmi", local}, BuildStep::Kind::cleanup, "", 2));
    return steps;
  }
  std::string list = keep ? p.image : local_name(s, "list");
  if (keep) steps.push_back(make_step("remove the old list", {b, "manifest", "rm", list}, BuildStep::Kind::may_fail));
  steps.push_back(make_step("manifest create", {b, "manifest", "create", list}, BuildStep::Kind::required, list, 0));
  for (const auto& local : locals) {
    steps.push_back(make_step("manifest add", {b, "manifest", "add", list, "containers-storage:" + local}, BuildStep::Kind::required));
  }
  if (s.push) {
    std::vector<std::string> argv = {b, "manifest", "push", "--all"};
    append(argv, auth);
    append(argv, certs);
    append(argv, tls);
    append(argv, {"--digestfile", s.digest_file, list, "docker://" + p.image});
    steps.push_back(make_step("push", std::move(argv), BuildStep::Kind::required));
  }
  if (!keep) {
    steps.push_back(make_step("clean up", {b, "manifest", "rm", list}, BuildStep::Kind::cleanup, "", 3));
    std::vector<std::string> argv = {b, "rmi"};
    append(argv, locals);
    steps.push_back(make_step("clean up", std::move(argv), BuildStep::Kind::cleanup, "", 2));
  }
  return steps;
}

std::string auth_file_json(const std::vector<HostCredentials>& credentials) {
  json auths = json::object();
  for (const auto& c : credentials) {
    json entry = json::object();
    if (!c.identity_token.empty()) entry["identitytoken"] = c.identity_token;
    else entry["auth"] = base64_encode(c.username + ":" + c.password);
    auths[c.host] = entry;
  }
  return json{{"auths", auths}}.dump(2) + "\n";
}

std::string registries_conf_text(const std::string& base, const std::vector<std::string>& insecure_hosts) {
  std::string out;
  bool keep_base = !base.empty() && !is_v1_registries_conf(base);
  if (keep_base) {
    out = base;
    if (out.back() != '\n') out += '\n';
  }
  out += "# Written by basewatch for one build: registries on plain HTTP (registries.<host>.insecure).\n";
  for (const auto& host : insecure_hosts) {
    if (keep_base && base.find("\"" + host + "\"") != std::string::npos) continue;  // the system file already says
    out += "[[registry]]\nlocation = \"" + host + "\"\ninsecure = true\n";
  }
  return out;
}

std::string builder_error(const std::string& output) {
  std::string found;
  for (const auto& raw : split(output, '\n')) {
    auto line = trim(raw);
    if (line.rfind("Error: ", 0) == 0 || line.rfind("error: ", 0) == 0) found = std::string(line);
  }
  // Digests make the builder's lines long: 12 hex digits say which.
  std::string out;
  for (size_t i = 0; i < found.size();) {
    if (found.compare(i, 7, "sha256:") == 0 && i + 7 + 64 <= found.size() &&
        found.find_first_not_of("0123456789abcdef", i + 7) >= i + 7 + 64) {
      out += found.substr(i, 7 + 12) + "...";
      i += 7 + 64;
    } else {
      out += found[i++];
    }
  }
  // The cause comes last ("...: authentication required"): keep the end.
  if (out.size() > k_error_line_max) out = out.substr(0, 100) + " ... " + out.substr(out.size() - (k_error_line_max - 105));
  return out;
}

BuildTrigger::BuildTrigger(config::TriggerConfig cfg, const Seams& seams)
    : TaskTrigger(std::move(cfg), *seams.runner, seams.build_logs),
      m_project(seams.build_project),
      m_registries(seams.registries),
      m_clock(seams.clock),
      m_on_pushed(seams.on_pushed) {}

std::vector<dockerfile::BasePin> base_pins(const std::vector<BuildChange>& changes) {
  std::vector<dockerfile::BasePin> pins;
  for (const auto& c : changes) {
    if (!c.mirror_ref.empty() && c.mirror_digest.empty()) continue;  // the copy's digest is not known: nothing exact to pin
    dockerfile::BasePin pin;
    pin.names = {c.ref};
    if (!c.upstream_ref.empty()) pin.names.push_back(c.upstream_ref);
    if (!c.mirror_ref.empty()) {
      pin.names.push_back(c.mirror_ref);
      pin.ref = c.mirror_ref;
      pin.digest = c.mirror_digest;
    } else {
      pin.ref = c.ref;
      pin.digest = c.new_digest;
    }
    pins.push_back(std::move(pin));
  }
  return pins;
}

namespace {

using Env = std::vector<std::pair<std::string, std::string>>;

// One pinned copy per distinct text (a FROM may depend on TARGETARCH) in
// `folder`, and s.variants, one per platform. Returns the registries the
// copies name (what the build pulls from).
Result<std::set<std::string>> write_pinned_copies(const BuildProject& project, const std::string& text,
                                                  const std::vector<dockerfile::BasePin>& pins, const std::string& folder,
                                                  const BuildLog& log, BuildSettings& s) {
  std::set<std::string> hosts;
  std::map<std::string, std::string> copies;  // text -> path
  std::set<std::string> said;
  std::error_code ec;
  const std::string name = fs::path(project.dockerfile).filename().string();
  for (const auto& platform : project.platforms) {
    dockerfile::ScanOptions opts;
    opts.build_args = project.build_args;
    opts.target = project.target;
    opts.platform = platform;
    auto pinned = dockerfile::pin_bases(text, project.dockerfile, opts, pins);
    if (!pinned) return make_error(ErrorKind::invalid, "cannot pin the bases: " + pinned.error().message);
    for (const auto& u : pinned->pinned) {
      std::string note = project.dockerfile + ":" + std::to_string(u.line) + ": " + u.written + " -> " + u.pinned;
      if (said.insert(note).second) log.line("pinned " + note);
    }
    for (const auto& ref : pinned->unmatched) {
      if (said.insert("unmatched " + ref).second) log.line("note: " + ref + " is not in the Dockerfile any more; built as it stands");
    }
    for (const auto& use : dockerfile::scan(pinned->text, project.dockerfile, opts).images) hosts.insert(use.ref.registry);
    auto [it, fresh] = copies.emplace(pinned->text, "");
    if (fresh) {
      it->second = folder + "/" + (copies.size() == 1 ? name : name + "." + std::to_string(copies.size()));
      BW_TRY(auto written, write_private(it->second, pinned->text, 0644));
      (void)written;
      // buildah reads <Dockerfile>.dockerignore next to the file it is given.
      for (const char* ignore : {".dockerignore", ".containerignore"}) {
        std::string next_to = project.dockerfile + ignore;
        if (fs::exists(next_to, ec)) fs::copy_file(next_to, it->second + ignore, ec);
      }
    }
    s.variants.push_back(BuildVariant{platform, it->second, pinned->runtime_base, pinned->runtime_base_pinned});
  }
  return hosts;
}

// What basewatch's registries: say about the build's registries, as files
// in `folder`: the auth file (s.authfile), the CAs (s.cert_dir), and for
// plain HTTP a registries.conf (in `env`) and s.push_insecure.
Status write_registry_files(const std::set<std::string>& hosts, const std::string& push_host,
                            const std::map<std::string, config::RegistryConfig>& registries, const std::string& builder,
                            const std::string& folder, const BuildLog& log, BuildSettings& s, Env& env) {
  std::vector<HostCredentials> creds;
  std::vector<std::string> insecure;  // sorted: hosts is a set
  std::string cert_text;
  for (const auto& host : hosts) {
    auto r = registries.find(host);
    if (r == registries.end()) continue;
    const config::RegistryConfig& rc = r->second;
    HostCredentials hc{host, rc.username, rc.password, ""};
    if (rc.username.empty() && !rc.docker_config.empty()) {
      BW_TRY(auto c, registry::load_docker_config_credentials(rc.docker_config, host,
                                                             [](const std::string& helper, const std::string& url) {
                                                               return registry::run_credential_helper(helper, url);
                                                             }));
      hc.username = c.username;
      hc.password = c.password;
      hc.identity_token = c.identity_token;
      if (!c.registry_token.empty() && c.identity_token.empty() && c.username.empty()) {
        log.line("note: registry " + host + ": a registrytoken cannot be handed to " + builder + "; it goes there without credentials");
      }
    }
    if (!hc.username.empty() || !hc.identity_token.empty()) creds.push_back(std::move(hc));
    if (rc.insecure) {
      insecure.push_back(host);  // pulled from (a FROM may name the registry it pushes to, too)
      if (host == push_host) s.push_insecure = true;
    }
    if (!rc.ca_file.empty()) {
      auto ca = read_file(rc.ca_file);
      if (!ca) return make_error(ErrorKind::io, "registry " + host + ": ca_file: " + ca.error().message);
      cert_text += *ca + "\n";
    }
  }
  if (!creds.empty()) {
    s.authfile = folder + "/auth.json";
    BW_TRY(auto written, write_private(s.authfile, auth_file_json(creds)));
    (void)written;
    std::vector<std::string> named;
    for (const auto& c : creds) named.push_back(c.host);
    log.line("credentials for " + join(named, ", ") + " from registries: (a private auth file)");
  }
  if (!cert_text.empty()) {
    s.cert_dir = folder + "/certs";
    std::error_code ec;
    fs::create_directory(s.cert_dir, ec);
    BW_TRY(auto written, write_private(s.cert_dir + "/registries.crt", cert_text, 0644));
    (void)written;
  }
  if (!insecure.empty()) {
    const char* given = std::getenv("CONTAINERS_REGISTRIES_CONF");
    std::string base_path = given && *given ? given : k_system_registries_conf;
    std::error_code ec;
    auto base = fs::exists(base_path, ec) ? read_file(base_path) : Result<std::string>(std::string());
    std::string conf_path = folder + "/registries.conf";
    BW_TRY(auto written, write_private(conf_path, registries_conf_text(base ? *base : "", insecure), 0644));
    (void)written;
    if (base && !base->empty() && is_v1_registries_conf(*base)) {
      log.line("note: " + base_path + " is in the v1 format, which cannot be mixed with basewatch's tables: left out of this build");
    }
    env.emplace_back("CONTAINERS_REGISTRIES_CONF", conf_path);
    log.line("plain HTTP for " + join(insecure, ", ") + " (CONTAINERS_REGISTRIES_CONF=" + conf_path + ")");
  }
  return ok_status();
}

// Runs the steps of plan_build(s); `pushed` gets the digest the push wrote
// (and `on_pushed` is told at once). The Outcome of the first required step
// that failed, else delivered.
Outcome run_steps(ProcessRunner& runner, const config::TriggerConfig& cfg, const std::function<void(const std::string&)>& on_pushed,
                  const BuildSettings& s, const Env& env, const BuildLog& log, std::chrono::steady_clock::time_point deadline,
                  std::string& pushed) {
  // The required steps in order until one fails, then the cleanup of what
  // they made.
  std::optional<Outcome> failure;
  std::set<std::string> created;
  for (auto step : plan_build(s)) {
    if (step.kind != BuildStep::Kind::cleanup && failure) continue;
    if (step.kind == BuildStep::Kind::cleanup) {
      auto first = step.argv.begin() + static_cast<std::ptrdiff_t>(std::min(step.operands, step.argv.size()));
      step.argv.erase(std::remove_if(first, step.argv.end(), [&](const std::string& n) { return !created.count(n); }), step.argv.end());
      if (step.argv.size() <= step.operands) continue;
    }
    ProcessSpec spec;
    spec.argv = step.argv;
    spec.env = env;
    spec.workdir = s.project.context;
    spec.log_path = log.path();
    spec.append_log = true;
    if (step.kind == BuildStep::Kind::cleanup) {
      spec.timeout = k_cleanup_timeout;
    } else {
      spec.timeout = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (spec.timeout.count() <= 0) {
        ProcessResult timed;
        timed.timed_out = true;
        failure = task_outcome(timed, cfg.timeout, log.path(), cfg.builder + " " + step.label + ": ");
        continue;
      }
    }
    log.line(step.label + ": " + command_line(step.argv));
    const auto output_from = file_size(log.path());
    const auto step_started = std::chrono::steady_clock::now();
    auto run = runner.run(spec);
    bool ok = run && run->exit_code == 0 && !run->timed_out && run->signal == 0;
    log.line(step.label + ": " + (ok ? "done" : "failed") + " in " + seconds_text(std::chrono::steady_clock::now() - step_started));
    if (ok && !step.creates.empty()) created.insert(step.creates);
    if (ok && step.label == "push") {
      // Pushed: the projects FROM the image need not wait for the cleanup.
      auto digest = read_file(s.digest_file);
      pushed = digest ? std::string(trim(*digest)) : "";
      if (oci::is_valid_digest(pushed) && on_pushed) on_pushed(s.project.image);
    }
    if (ok || step.kind == BuildStep::Kind::cleanup || step.kind == BuildStep::Kind::may_fail) {
      if (!ok) log.line(step.label + " failed (" + (run ? run_failure(*run, spec.timeout) : run.error().message) + "); going on");
      continue;
    }
    Outcome out = task_outcome(run, cfg.timeout, log.path(), cfg.builder + " " + step.label + ": ");
    if (run && !run->timed_out && run->signal == 0) {
      // The builder's own words: which base could not be pulled, what the
      // registry refused (never a secret: credentials live in the auth file).
      std::string why = builder_error(read_from(log.path(), output_from));
      auto at = out.error.rfind(" (log: ");
      if (!why.empty() && at != std::string::npos) out.error.insert(at, ": " + why);
    }
    failure = std::move(out);
  }
  if (failure) {
    failure->output_tail = read_tail(log.path(), k_output_tail_bytes);
    return *failure;
  }
  Outcome out;
  out.delivered = true;
  return out;
}

}  // namespace

Outcome BuildTrigger::deliver(const db::Delivery& d) {
  auto changes = build_changes(d);
  if (!changes) return refused(changes.error());
  if (auto cannot = prepare_log_folder()) return *cannot;
  BuildLog log(log_path(d.id, d.attempts + 1));
  // Failures before the builder runs: in the log and in the attempt.
  auto fail = [&](const std::string& why) {
    log.line("error: " + why);
    Outcome out;
    out.error = why + " (log: " + log.path() + ")";
    out.output_tail = read_tail(log.path(), k_output_tail_bytes);
    return out;
  };
  const auto deadline = std::chrono::steady_clock::now() + m_cfg.timeout;
  RealClock real_clock;
  const ClockSource& clock = m_clock ? *m_clock : real_clock;

  std::optional<BuildProject> found = m_project ? m_project(d.project) : std::nullopt;
  if (d.project.empty() || !found) {
    return fail("project \"" + d.project + "\" is not configured: a build trigger builds a project's Dockerfile");
  }
  // The builder runs in the context folder: relative paths (relative to
  // basewatch's working directory, as the config resolved them) are made
  // absolute first.
  std::error_code ec;
  BuildProject project = *found;
  project.dockerfile = fs::absolute(project.dockerfile, ec).lexically_normal().string();
  project.context = fs::absolute(project.context, ec).lexically_normal().string();
  log.line("delivery " + d.id + ", attempt " + std::to_string(d.attempts + 1) + ": building project " + project.name +
           " (" + project.dockerfile + ") with " + m_cfg.builder);
  if (m_cfg.push && project.image.empty()) return fail("project " + project.name + " has no image: to push to");
  auto text = read_file(project.dockerfile);
  if (!text) return fail("cannot read the Dockerfile: " + text.error().message);
  if (!fs::exists(project.context, ec)) return fail("the build context " + project.context + " does not exist");
  if (!fs::is_directory(project.context, ec)) return fail("the build context " + project.context + " is not a folder");
  std::string push_host;
  if (!project.image.empty()) {
    auto img = oci::parse_reference(project.image);
    if (!img) return fail("image " + project.image + ": " + img.error().message);
    push_host = img->registry;
  }

  TempFolder tmp;
  if (tmp.path().empty()) return fail(tmp.error());
  BuildSettings s;
  s.builder = m_cfg.builder;
  s.push = m_cfg.push;
  s.args = m_cfg.args;
  s.project = project;
  s.delivery_id = d.id;
  s.attempt = d.attempts + 1;
  s.created = format_rfc3339(clock.now());
  s.digest_file = tmp.path() + "/digest";
  for (const auto& c : *changes) {
    if (!c.mirror_ref.empty() && c.mirror_digest.empty()) {
      log.line("note: the delivery does not say what " + c.mirror_ref + " holds; built from it as it stands");
    }
  }
  auto hosts = write_pinned_copies(project, *text, base_pins(*changes), tmp.path(), log, s);
  if (!hosts) return fail(hosts.error().message);
  if (!push_host.empty()) hosts->insert(push_host);
  Env env = {{"BASEWATCH_DELIVERY_ID", d.id}, {"BASEWATCH_PROJECT", project.name}};
  if (auto st = write_registry_files(*hosts, push_host, m_registries, m_cfg.builder, tmp.path(), log, s, env); !st) {
    return fail(st.error().message);
  }

  std::string pushed;
  Outcome out = run_steps(m_runner, m_cfg, m_on_pushed, s, env, log, deadline, pushed);
  if (!out.error.empty()) return out;
  if (s.push) {
    if (!oci::is_valid_digest(pushed)) {
      return fail(m_cfg.builder + " push exited 0 but wrote no digest to --digestfile: the image may not have been pushed");
    }
    out.pushed_digest = pushed;
    log.line("pushed " + project.image + "@" + pushed);
  }
  out.output_tail = read_tail(log.path(), k_output_tail_bytes);
  return out;
}

bool program_on_path(const std::string& program, const std::string& path) {
  auto runnable = [](const std::string& file) {
    struct stat st{};
    return ::stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(file.c_str(), X_OK) == 0;
  };
  if (program.empty()) return false;
  if (program.find('/') != std::string::npos) return runnable(program);
  for (const auto& dir : split(path, ':')) {
    if (runnable((dir.empty() ? std::string(".") : dir) + "/" + program)) return true;
  }
  return false;
}

std::vector<std::string> check_builds(const config::Config& cfg, const std::function<bool(const std::string&)>& installed) {
  std::vector<std::string> out;
  for (const auto& [name, t] : cfg.triggers) {
    if (t.type == "build" && !installed(t.builder)) {
      out.push_back(t.builder_mark.str() + ": triggers." + name + ".builder: " + t.builder +
                    " is not installed (not found on PATH); install it, or set builder: to one that is");
    }
  }
  auto build_trigger = [&](const std::vector<std::string>& names) -> const config::TriggerConfig* {
    for (const auto& n : names) {
      auto it = cfg.triggers.find(n);
      if (it != cfg.triggers.end() && it->second.type == "build") return &it->second;
    }
    return nullptr;
  };
  for (size_t i = 0; i < cfg.projects.size(); ++i) {
    const auto& p = cfg.projects[i];
    const config::TriggerConfig* t = build_trigger(p.triggers);
    if (!t) continue;
    std::string where = "projects[" + std::to_string(i) + "]";
    if (!p.image.empty()) {
      auto ref = oci::parse_reference(p.image);
      if (!ref) {
        out.push_back(p.image_mark.str() + ": " + where + ".image: " + ref.error().message);
        continue;
      }
      if (ref->pinned()) {
        out.push_back(p.image_mark.str() + ": " + where + ".image: \"" + p.image +
                      "\" names a digest; trigger \"" + t->name + "\" pushes to a tag");
        continue;
      }
    }
    bool pushes = false;
    for (const auto& n : p.triggers) {
      auto it = cfg.triggers.find(n);
      if (it == cfg.triggers.end() || it->second.type != "build" || !it->second.push) continue;
      pushes = true;
      if (p.image.empty()) {
        out.push_back(p.mark.str() + ": " + where + ": trigger \"" + n +
                      "\" builds and pushes (push: true), but the project has no image: to push to");
        break;
      }
    }
    if (pushes && !p.image.empty() && !p.dockerfiles.empty()) {
      out.push_back(p.image_mark.str() + ": " + where + ".image: every Dockerfile of the dockerfiles: glob would be built "
                    "and pushed to this one image; give each its own project, or push: false");
    }
  }
  for (size_t i = 0; i < cfg.watch.size(); ++i) {
    if (const auto* t = build_trigger(cfg.watch[i].triggers)) {
      out.push_back(cfg.watch[i].mark.str() + ": watch[" + std::to_string(i) + "].triggers: trigger \"" + t->name +
                    "\" is a build: it builds a project's Dockerfile, and a watch: entry has none");
    }
  }
  return out;
}

}  // namespace bw::triggers
