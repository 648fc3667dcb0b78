// basewatch refs (every reference against the mirrors and the policy) and
// basewatch refs fix (rewrite bypasses to the mirror, byte-exact).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>

#include "app/cli.h"
#include "app/commands.h"
#include "app/logging.h"
#include "app/wiring.h"
#include "dockerfile/rewrite.h"
#include "net/http.h"
#include "refs/refs.h"
#include "registry/client.h"
#include "util/files.h"
#include "watcher/model.h"

namespace bw::app {

namespace fs = std::filesystem;

namespace {

// Every Dockerfile of every project, as the model names them.
std::vector<refs::ProjectFile> project_files(const config::Config& cfg) {
  std::vector<refs::ProjectFile> out;
  for (const auto& pc : cfg.projects) {
    auto add = [&](const std::string& name, const std::string& file) {
      refs::ProjectFile pf;
      pf.project = name;
      pf.file = file;
      pf.platforms = pc.platforms.empty() ? cfg.default_platforms : pc.platforms;
      pf.options.build_args = pc.build_args;
      pf.options.target = pc.target;
      pf.options.platform = watcher::scan_platform(cfg, pf.platforms);
      out.push_back(std::move(pf));
    };
    if (!pc.dockerfile.empty()) {
      add(pc.name, pc.dockerfile);
      continue;
    }
    for (const auto& f : watcher::expand_glob(pc.dockerfiles)) add(watcher::glob_project_name(pc.dockerfiles, f, pc.name), f);
  }
  return out;
}

struct Scanned {
  std::vector<refs::ProjectFile> files;
  std::map<std::string, std::string> texts;  // file -> content
  std::vector<std::vector<refs::Use>> uses;  // per file, parallel to files
  std::vector<std::string> errors;
};

Scanned scan_projects(const config::Config& cfg) {
  Scanned s;
  s.files = project_files(cfg);
  for (const auto& pf : s.files) {
    auto& text = s.texts[pf.file];
    if (text.empty()) {
      auto read = read_file(pf.file);
      if (!read) {
        s.errors.push_back(read.error().message);
        s.uses.emplace_back();
        continue;
      }
      text = std::move(*read);
    }
    auto uses = refs::collect(pf, text);
    if (!uses) s.errors.push_back(uses.error().message);
    s.uses.push_back(uses ? std::move(*uses) : std::vector<refs::Use>{});
  }
  return s;
}

// One resolve per reference, however many files name it.
refs::Answers look_up(const config::Config& cfg, const std::vector<refs::Use>& uses) {
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, registry_settings(cfg));
  refs::Answers answers;
  for (const auto& q : refs::queries(uses, cfg)) {
    std::vector<oci::Platform> platforms;
    for (const auto& p : q.platforms) {
      if (auto parsed = oci::parse_platform(p)) platforms.push_back(*parsed);
    }
    auto res = client.resolve(q.ref, platforms);
    refs::Lookup l;
    if (res) {
      l.found = true;
      l.digest = res->digest;
      l.platforms = res->platforms;
    } else if (res.error().kind != ErrorKind::not_found) {
      l.error = res.error().message;
    }
    answers[q.ref.tag.empty() ? q.ref.str() : q.ref.tag_ref()] = std::move(l);
  }
  return answers;
}

std::vector<refs::Use> flatten(const Scanned& s) {
  std::vector<refs::Use> all;
  for (const auto& list : s.uses) all.insert(all.end(), list.begin(), list.end());
  return all;
}

std::string place(const refs::Use& u) {
  return u.file + ":" + std::to_string(u.line()) + (u.column() > 0 ? ":" + std::to_string(u.column()) : "");
}

int cmd_refs(const std::string& config_path, bool as_json, bool as_sarif) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  setup_logging("warn", "text");
  auto scanned = scan_projects(*cfg);
  auto uses = flatten(scanned);
  auto answers = look_up(*cfg, uses);
  auto findings = refs::judge(uses, *cfg, answers, false);
  for (const auto& e : scanned.errors) std::cerr << "basewatch: " << e << "\n";
  bool lookup_failed = false;
  for (const auto& f : findings) lookup_failed = lookup_failed || f.lookup_failed;
  if (as_sarif) std::cout << refs::render_sarif(findings, BASEWATCH_VERSION);
  else if (as_json) std::cout << refs::render_json(findings);
  else std::cout << refs::render_table(findings);
  bool broken = false;
  for (const auto& f : findings) broken = broken || f.violation;
  return broken || lookup_failed || !scanned.errors.empty() ? k_exit_failure : k_exit_ok;
}

// Writes `content` over `path` so that a reader sees the old file or the
// new one, never a part: a temporary file beside it, fsync, rename, with
// the old file's mode.
Status write_atomically(const std::string& path, const std::string& content) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_error(ErrorKind::io, path + ": " + std::strerror(errno));
  std::string tmp = path + ".basewatch-XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return make_error(ErrorKind::io, path + ": cannot create a temporary file beside it: " + std::strerror(errno));
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(ErrorKind::io, path + ": " + what + ": " + std::strerror(e));
  };
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write");
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd, st.st_mode & 07777) != 0) return fail("chmod");
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return make_error(ErrorKind::io, path + ": close: " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return make_error(ErrorKind::io, path + ": rename: " + std::strerror(e));
  }
  // The rename itself lasts once the folder is on disk.
  std::string dir = fs::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return ok_status();
}

int cmd_refs_fix(const std::string& config_path, bool pin, bool write) {
  auto cfg = load_config(config_path);
  if (!cfg) return k_exit_usage;
  setup_logging("warn", "text");
  auto scanned = scan_projects(*cfg);
  auto uses = flatten(scanned);
  auto answers = look_up(*cfg, uses);
  auto findings = refs::judge(uses, *cfg, answers, pin);
  for (const auto& e : scanned.errors) std::cerr << "basewatch: " << e << "\n";
  bool left = !scanned.errors.empty();

  // Per file (a file that several projects share is fixed as its first
  // project reads it), the requests and what they came from.
  std::map<std::string, size_t> first_of;  // file -> index in scanned.files
  for (size_t i = 0; i < scanned.files.size(); ++i) first_of.emplace(scanned.files[i].file, i);
  std::map<std::string, std::vector<const refs::Finding*>> wanted;
  for (const auto& f : findings) {
    if (f.use->project != scanned.files[first_of[f.use->file]].project) continue;
    bool needed = f.status == "bypass" || (pin && !f.fix.empty());
    if (!f.fix.empty()) {
      wanted[f.use->file].push_back(&f);
    } else if (needed || (pin && !f.fix_reason.empty() && f.status != "unmirrored" && f.status != "forbidden")) {
      std::cerr << place(*f.use) << ": left " << f.use->image.written << ": " << f.fix_reason << "\n";
      left = left || f.status == "bypass";
    }
  }
  int status = k_exit_ok;
  for (const auto& [file, list] : wanted) {
    const auto& pf = scanned.files[first_of[file]];
    std::vector<dockerfile::RewriteRequest> requests;
    for (const auto* f : list) requests.push_back({f->use->index, f->fix});
    auto options = pf.options;
    options.keep_unresolved = true;
    const std::string& before = scanned.texts[file];
    auto plan = dockerfile::plan_rewrites(before, file, options, requests);
    for (size_t i = 0; i < list.size(); ++i) {
      if (plan.outcomes[i].done) continue;
      std::cerr << place(*list[i]->use) << ": left " << list[i]->use->image.written << ": " << plan.outcomes[i].reason << "\n";
      left = true;
    }
    if (plan.edits.empty()) continue;
    std::string after = dockerfile::apply_edits(before, plan.edits);
    if (!write) {
      std::cout << refs::unified_diff(file, before, after);
      continue;
    }
    if (auto st = write_atomically(file, after); !st) {
      std::cerr << "basewatch: " << st.error().message << "\n";
      status = k_exit_failure;
      continue;
    }
    size_t n = 0;
    for (const auto& o : plan.outcomes) n += o.done;
    std::cerr << file << ": " << n << (n == 1 ? " reference" : " references") << " rewritten\n";
  }
  return left ? k_exit_failure : status;
}

}  // namespace

void add_refs_commands(CLI::App& app, Commands& out) {
  struct Options {
    std::string config;
    bool json = false, sarif = false, pin = false, write = false;
  };
  auto o = std::make_shared<Options>();
  auto* refs = app.add_subcommand("refs", "Every image reference of every project against the mirrors and the policy");
  add_config_option(*refs, o->config);
  auto* json_flag = refs->add_flag("--json", o->json, "One JSON document on stdout");
  refs->add_flag("--sarif", o->sarif, "SARIF 2.1.0 on stdout (for code scanning)")->excludes(json_flag);
  auto* fix = refs->add_subcommand("fix", "Rewrite references that bypass a mirror to the mirror (a unified diff, or --write)");
  add_config_option(*fix, o->config);
  fix->add_flag("--pin", o->pin, "Also write or refresh @sha256: pins with the digest the mirror holds");
  fix->add_flag("--write", o->write, "Edit the files in place (atomically) instead of printing a diff");
  out.push_back({fix, [o] { return cmd_refs_fix(o->config, o->pin, o->write); }});
  out.push_back({refs, [o] { return cmd_refs(o->config, o->json, o->sarif); }});
}

}  // namespace bw::app
