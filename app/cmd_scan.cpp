// basewatch scan: the external images Dockerfiles pull.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app/cli.h"
#include "app/commands.h"
#include "dockerfile/dockerfile.h"
#include "oci/platform.h"

namespace bw::app {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool is_dockerfile_name(const std::string& name) {
  return name == "Dockerfile" || (name.size() > 11 && name.ends_with(".Dockerfile")) || name.rfind("Dockerfile.", 0) == 0;
}

std::vector<std::string> find_dockerfiles(const std::vector<std::string>& paths, std::vector<std::string>& missing) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end; it != end;
           it.increment(ec)) {
        if (ec) break;
        if (it->is_directory(ec) && (it->path().filename() == ".git" || it->path().filename() == "node_modules")) {
          it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec) && is_dockerfile_name(it->path().filename().string())) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(p);
    } else {
      missing.push_back(p);
    }
  }
  return out;
}

// A JSON string: plain ASCII as is, anything else through nlohmann (invalid
// UTF-8 in a path or a Dockerfile becomes U+FFFD instead of an exception).
void append_json_string(std::string& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (plain) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

void append_json_string_or_null(std::string& out, const std::optional<std::string>& s) {
  if (s) append_json_string(out, *s);
  else out += "null";
}

// One entry of `scan --json`'s "files", written straight to text in the
// layout json::dump(2) gives (keys sorted): thousands of files stay cheap.
void append_scan_json(std::string& out, const std::string& path, const dockerfile::ScanResult& res) {
  out += "    {\n      \"error\": ";
  append_json_string_or_null(out, res.error);
  out += ",\n      \"images\": ";
  if (res.images.empty()) out += "[]";
  for (size_t i = 0; i < res.images.size(); ++i) {
    const auto& img = res.images[i];
    out += i == 0 ? "[\n        {\n          \"kind\": " : ",\n        {\n          \"kind\": ";
    append_json_string(out, img.kind);
    out += ",\n          \"line\": " + std::to_string(img.line) + ",\n          \"pinned\": ";
    append_json_string_or_null(out, img.pinned);
    out += ",\n          \"platform\": ";
    append_json_string_or_null(out, img.platform);
    out += ",\n          \"ref\": ";
    append_json_string(out, img.ref.tag_ref());  // the digest is in "pinned"
    out += ",\n          \"stage\": ";
    append_json_string(out, img.stage);
    out += ",\n          \"via\": ";
    append_json_string(out, img.via);
    out += ",\n          \"written\": ";
    append_json_string(out, img.written);
    out += "\n        }";
  }
  if (!res.images.empty()) out += "\n      ]";
  out += ",\n      \"path\": ";
  append_json_string(out, path);
  out += ",\n      \"warnings\": ";
  if (res.warnings.empty()) out += "[]";
  for (size_t i = 0; i < res.warnings.size(); ++i) {
    out += i == 0 ? "[\n        " : ",\n        ";
    append_json_string(out, res.warnings[i]);
  }
  if (!res.warnings.empty()) out += "\n      ]";
  out += "\n    }";
}

int cmd_scan(const std::vector<std::string>& paths, const std::vector<std::string>& build_args, const std::string& target,
             const std::string& platform, bool as_json) {
  dockerfile::ScanOptions opts;
  for (const auto& kv : build_args) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      // docker build --build-arg NAME takes the value from the environment.
      const char* v = std::getenv(kv.c_str());
      if (v) opts.build_args[kv] = v;
      continue;
    }
    opts.build_args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  opts.target = target;
  if (!platform.empty()) {
    auto p = oci::parse_platform(platform);
    if (!p) {
      std::cerr << "basewatch: --platform: " << p.error().message << "\n";
      return k_exit_usage;
    }
    opts.platform = platform;
  }
  std::vector<std::string> missing;
  auto files = find_dockerfiles(paths, missing);
  bool failed = !missing.empty();
  std::vector<std::pair<std::string, dockerfile::ScanResult>> results;
  results.reserve(missing.size() + files.size());
  for (const auto& m : missing) {
    dockerfile::ScanResult res;
    res.error = m + ": no such file or folder";
    results.emplace_back(m, std::move(res));
  }
  for (const auto& f : files) {
    auto res = dockerfile::scan_file(f, opts);
    if (res.error) failed = true;
    results.emplace_back(f, std::move(res));
  }
  if (as_json) {
    std::string out = results.empty() ? "{\n  \"files\": []" : "{\n  \"files\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
      if (i > 0) out += ",\n";
      append_scan_json(out, results[i].first, results[i].second);
    }
    out += results.empty() ? "\n}\n" : "\n  ]\n}\n";
    std::cout << out;
  } else {
    for (const auto& [path, res] : results) {
      if (res.error) {
        std::cout << "error: " << *res.error << "\n";
        continue;
      }
      std::cout << path << "\n";
      for (const auto& w : res.warnings) std::cout << "  " << w << "\n";
      for (const auto& i : res.images) {
        std::cout << "  " << i.line << "\t" << i.kind << "\t" << i.via << "\t" << i.ref.tag_ref() << "\t(stage " << i.stage << ")"
                  << (i.pinned ? " pinned" : "") << "\n";
      }
    }
  }
  if (files.empty() && missing.empty()) {
    std::cerr << "basewatch: no Dockerfile found\n";
    return k_exit_failure;
  }
  return failed ? k_exit_failure : k_exit_ok;
}

}  // namespace

void add_scan_commands(CLI::App& app, Commands& out) {
  struct Options {
    std::vector<std::string> build_args, paths;
    std::string target, platform;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* scan = app.add_subcommand("scan", "List the external images Dockerfiles depend on");
  scan->add_option("--build-arg", o->build_args, "K=V build argument (repeatable)")->allow_extra_args(false);
  scan->add_option("--target", o->target, "Target stage (default: the last)");
  scan->add_option("--platform", o->platform, "OS/ARCH[/VARIANT] for TARGETPLATFORM and friends (default linux/amd64)");
  scan->add_flag("--json", o->json, "One JSON document on stdout");
  scan->add_option("PATH", o->paths, "Dockerfiles, or folders searched for Dockerfile, *.Dockerfile, Dockerfile.*")->required();
  out.push_back({scan, [o] { return cmd_scan(o->paths, o->build_args, o->target, o->platform, o->json); }});
}

}  // namespace bw::app
