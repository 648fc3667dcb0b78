#include "watcher/model.h"

#include <fnmatch.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <filesystem>

#include "config/mirrors.h"
#include "util/crypto.h"
#include "util/files.h"
#include "util/strings.h"

namespace bw::watcher {

namespace fs = std::filesystem;

const Project* Model::project(const std::string& name) const {
  for (const auto& p : projects) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

namespace {

void glob_walk(const fs::path& dir, const std::vector<std::string>& segs, size_t i, std::vector<std::string>& out) {
  std::error_code ec;
  if (i == segs.size()) {
    if (fs::is_regular_file(dir, ec)) out.push_back(dir.string());
    return;
  }
  const std::string& seg = segs[i];
  if (seg == "**") {
    glob_walk(dir, segs, i + 1, out);  // zero folders
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end; it != end;
         it.increment(ec)) {
      if (ec) break;
      if (it->is_directory(ec) && !it->is_symlink(ec)) glob_walk(it->path(), segs, i + 1, out);
    }
    return;
  }
  if (seg.find_first_of("*?[") == std::string::npos) {
    fs::path next = dir / seg;
    if (fs::exists(next, ec)) glob_walk(next, segs, i + 1, out);
    return;
  }
  for (fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end; it != end; it.increment(ec)) {
    if (ec) break;
    std::string name = it->path().filename().string();
    if (fnmatch(seg.c_str(), name.c_str(), FNM_PERIOD) == 0) glob_walk(it->path(), segs, i + 1, out);
  }
}

std::vector<oci::Platform> parse_platforms(const std::vector<std::string>& texts) {
  std::vector<oci::Platform> out;
  for (const auto& t : texts) {
    if (auto p = oci::parse_platform(t)) out.push_back(*p);
  }
  return out;
}

// The stat half of a SourceFile (mtime_ns and size; -1 when missing).
SourceFile stat_source(const std::string& path) {
  SourceFile f;
  f.path = path;
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0) {
    f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    f.size = static_cast<int64_t>(st.st_size);
  }
  return f;
}

}  // namespace

std::string glob_project_name(const std::string& pattern, const std::string& file, const std::string& entry_name) {
  // The folders before the first one with a wildcard are the glob's root.
  fs::path root;
  for (const auto& part : fs::path(pattern).parent_path()) {
    if (part.string().find_first_of("*?[") != std::string::npos) break;
    root /= part;
  }
  fs::path rel = fs::path(file).lexically_relative(root);
  if (rel.empty() || rel.native().rfind("..", 0) == 0) rel = fs::path(file).filename();
  std::string name = rel.parent_path().generic_string();
  if (name.empty()) name = root.filename().string();  // a Dockerfile at the root itself
  if (rel.filename() != "Dockerfile") name += (name.empty() ? "" : "/") + rel.filename().string();
  return entry_name.empty() ? name : entry_name + "/" + name;
}

std::vector<std::string> expand_glob(const std::string& pattern) {
  std::vector<std::string> out;
  fs::path p(pattern);
  std::vector<std::string> segs;
  for (const auto& part : p.relative_path()) segs.push_back(part.string());
  glob_walk(p.is_absolute() ? p.root_path() : fs::path("."), segs, 0, out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string scan_platform(const config::Config& cfg, const std::vector<std::string>& platforms) {
  if (!platforms.empty()) return platforms.front();
  if (!cfg.default_platforms.empty()) return cfg.default_platforms.front();
  return "linux/amd64";
}

Result<Model> build_model(const config::Config& cfg, const Model* previous) {
  Model m;
  size_t project_index = 0;  // of the projects: entry being read
  auto add_project = [&](const config::ProjectConfig& pc, const std::string& name, const std::string& file) {
    Project p;
    p.name = name;
    p.dockerfile = file;
    p.context = pc.context.empty() ? fs::path(file).parent_path().string() : pc.context;
    p.platforms = pc.platforms.empty() ? cfg.default_platforms : pc.platforms;
    p.triggers = pc.triggers;
    p.build_args = pc.build_args;
    p.target = pc.target;
    p.quiet = pc.quiet.value_or(Millis(0));
    if (!pc.image.empty()) {
      auto img = oci::parse_reference(pc.image);
      if (img) p.image = img->tag_ref();
      else p.error = pc.image_mark.str() + ": image: " + img.error().message;
    }
    SourceFile source = stat_source(file);
    auto text = read_file(file);
    if (text) source.content_hash = sha256_hex(*text);
    else source.mtime_ns = source.size = -1;
    m.sources.push_back(source);
    if (!text) {
      std::string cause = file + ": " + text.error().message.substr(std::min(text.error().message.size(), file.size() + 2));
      // A `dockerfile:` names the file: point at that line of the config.
      p.error = pc.dockerfile.empty() ? cause
                                      : pc.dockerfile_mark.str() + ": projects[" + std::to_string(project_index) +
                                            "].dockerfile: " + cause;
    } else {
      p.content_hash = source.content_hash;
      dockerfile::ScanOptions opts;
      opts.build_args = pc.build_args;
      opts.target = pc.target;
      opts.platform = scan_platform(cfg, p.platforms);
      auto scanned = dockerfile::scan(*text, file, opts);
      for (auto& w : scanned.warnings) m.warnings.push_back(std::move(w));
      if (scanned.error) {
        p.error = *scanned.error;
      } else {
        for (const auto& use : scanned.images) {
          if (use.kind == "unused") continue;
          BaseUse b;
          b.ref = use.ref.tag_ref();
          // A Dockerfile that names a mirror is watched at the upstream the
          // mirror copies (a HEAD there is what decides "changed").
          if (auto up = config::upstream_of(cfg.mirrors, use.ref.registry, use.ref.repository); up && !use.ref.tag.empty()) {
            b.mirror = b.ref;
            b.ref = up->upstream + ":" + use.ref.tag;
          }
          b.pinned = use.pinned.value_or("");
          b.kind = use.kind;
          b.via = use.via;
          b.line = use.line;
          b.stage = use.stage;
          if (use.ref.tag.empty()) continue;  // digest-only: nothing can move
          p.bases.push_back(std::move(b));
        }
      }
    }
    if (!p.error.empty()) {
      m.errors.push_back(p.error);
      if (previous) {
        const Project* before = previous->project(p.name);
        if (before && before->dockerfile == p.dockerfile && p.bases.empty()) p.bases = before->bases;
      }
    }
    m.projects.push_back(std::move(p));
  };

  for (const auto& pc : cfg.projects) {
    project_index = static_cast<size_t>(&pc - cfg.projects.data());
    if (!pc.dockerfile.empty()) {
      add_project(pc, pc.name, pc.dockerfile);
      continue;
    }
    auto files = expand_glob(pc.dockerfiles);
    m.globs[pc.dockerfiles] = files;
    if (files.empty()) m.errors.push_back(pc.mark.str() + ": dockerfiles: no file matches " + pc.dockerfiles);
    for (const auto& f : files) {
      add_project(pc, glob_project_name(pc.dockerfiles, f, pc.name), f);
    }
  }

  std::vector<dockerfile::ProjectInput> inputs;
  for (const auto& p : m.projects) {
    dockerfile::ProjectInput in{p.name, p.image, {}};
    for (const auto& b : p.bases) in.bases.push_back(b.ref);
    std::sort(in.bases.begin(), in.bases.end());
    in.bases.erase(std::unique(in.bases.begin(), in.bases.end()), in.bases.end());
    inputs.push_back(std::move(in));
  }
  BW_TRY(auto graph, dockerfile::Graph::build(inputs));
  m.graph = std::make_shared<dockerfile::Graph>(std::move(graph));

  std::set<std::string> produced;
  for (const auto& p : m.projects) {
    if (!p.image.empty()) produced.insert(p.image);
  }
  auto item_for = [&](const oci::Reference& ref) -> WatchItem& {
    auto& item = m.items[ref.tag_ref()];
    if (item.ref.repository.empty()) {
      item.ref = ref;
      item.ref.digest.clear();
      item.interval = cfg.poll_interval;
      item.produced = produced.count(item.ref.tag_ref()) > 0;
    }
    return item;
  };
  auto add_platforms = [](WatchItem& item, const std::vector<oci::Platform>& ps) {
    for (const auto& p : ps) {
      if (std::find(item.platforms.begin(), item.platforms.end(), p) == item.platforms.end()) item.platforms.push_back(p);
    }
  };
  for (const auto& p : m.projects) {
    for (const auto& b : p.bases) {
      auto ref = oci::parse_reference(b.ref);
      if (!ref) continue;
      auto& item = item_for(*ref);
      item.projects.insert(p.name);
      add_platforms(item, parse_platforms(p.platforms));
    }
  }
  for (const auto& w : cfg.watch) {
    auto ref = oci::parse_reference(w.ref);
    if (!ref) {
      m.errors.push_back(w.mark.str() + ": watch ref: " + ref.error().message);
      continue;
    }
    if (auto up = config::upstream_of(cfg.mirrors, ref->registry, ref->repository); up && !ref->tag.empty()) {
      // A mirror named in watch: is watched at its upstream too.
      auto upstream = oci::parse_reference(up->upstream + ":" + ref->tag);
      if (upstream) ref = upstream;
    }
    auto& item = item_for(*ref);
    add_platforms(item, parse_platforms(w.platforms.empty() ? cfg.default_platforms : w.platforms));
    if (w.interval) item.interval = std::min(item.interval, *w.interval);
    for (const auto& t : w.triggers) item.triggers.push_back(t);
  }
  // Tags a mirror rule keeps besides those in use: a repository rule's for
  // its repository, a prefix rule's for each repository below it in use.
  for (const auto& rule : cfg.mirrors) {
    if (rule.tags.empty()) continue;
    std::vector<oci::Reference> repos;
    if (!rule.from.prefix) {
      oci::Reference r;
      r.registry = rule.from.registry;
      r.repository = rule.from.repository;
      repos.push_back(r);
    } else {
      std::set<std::string> seen;
      for (const auto& [key, item] : m.items) {
        if (rule.from.covers(item.ref.registry, item.ref.repository) && seen.insert(item.ref.name()).second) repos.push_back(item.ref);
      }
    }
    for (auto repo : repos) {
      for (const auto& tag : rule.tags) {
        repo.tag = tag;
        repo.digest.clear();
        add_platforms(item_for(repo), parse_platforms(cfg.default_platforms));
      }
    }
  }
  for (auto& [key, item] : m.items) {
    std::sort(item.platforms.begin(), item.platforms.end(), [](const oci::Platform& a, const oci::Platform& b) { return a.str() < b.str(); });
    if (auto mm = config::mirror_of(cfg.mirrors, item.ref.registry, item.ref.repository)) {
      item.mirror = mm->mirror + ":" + item.ref.tag;
      item.mirror_rule = static_cast<int>(mm->rule - cfg.mirrors.data());
      m.mirrored.emplace_back(item.mirror, key);
    }
  }
  std::sort(m.mirrored.begin(), m.mirrored.end());
  return m;
}

std::string stale_reason(const Model& model) {
  for (const auto& [pattern, files] : model.globs) {
    if (expand_glob(pattern) != files) return "dockerfiles: " + pattern + " matches other files";
  }
  // File times are coarse (a few ms): an edit that keeps the size right
  // after the scan can keep the mtime too, so a recently modified file is
  // hashed even when its stat did not move (git's "racily clean" problem).
  timespec wall{};
  clock_gettime(CLOCK_REALTIME, &wall);
  int64_t now_ns = static_cast<int64_t>(wall.tv_sec) * 1'000'000'000 + wall.tv_nsec;
  constexpr int64_t k_racy_ns = 3'000'000'000;
  for (const auto& before : model.sources) {
    SourceFile now = stat_source(before.path);
    bool racy = now.mtime_ns >= 0 && now_ns - now.mtime_ns < k_racy_ns;
    if (now.mtime_ns == before.mtime_ns && now.size == before.size && !racy) continue;
    auto text = read_file(before.path);
    std::string hash = text ? sha256_hex(*text) : "";
    if (hash == before.content_hash) continue;
    if (before.content_hash.empty()) return before.path + " appeared";
    if (hash.empty()) return before.path + " went away";
    return before.path + " changed";
  }
  return "";
}

}  // namespace bw::watcher
