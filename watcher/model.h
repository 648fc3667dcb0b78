// The model: what is watched and who depends on it. Built from the config
// and the scanned Dockerfiles; rebuilt on SIGHUP and when a Dockerfile's
// content changes.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "dockerfile/dockerfile.h"
#include "dockerfile/graph.h"
#include "oci/platform.h"
#include "oci/reference.h"

namespace bw::watcher {

struct BaseUse {
  std::string ref;     // normalised tag ref that is watched
  std::string pinned;  // digest when the Dockerfile pins it
  std::string kind;    // runtime | buildtime
  std::string via;
  int line = 0;
  std::string stage;
};

struct Project {
  std::string name;
  std::string dockerfile;
  std::string context;
  std::string image;  // normalised tag ref it produces, or ""
  std::vector<std::string> platforms;
  std::vector<std::string> triggers;
  Millis quiet{0};
  std::vector<BaseUse> bases;  // unused stages left out
  std::string content_hash;    // sha256 of the Dockerfile, to notice edits
  std::string error;           // "path:line: message" when it could not be scanned
};

struct WatchItem {
  oci::Reference ref;  // tag ref (no digest)
  std::vector<oci::Platform> platforms;  // union of everyone's, sorted
  Millis interval{0};
  std::vector<std::string> triggers;     // from watch: entries (no project)
  std::set<std::string> projects;        // direct users
  bool produced = false;                 // an image some project builds
};

struct Model {
  std::vector<Project> projects;
  std::map<std::string, WatchItem> items;  // key: tag ref
  std::shared_ptr<dockerfile::Graph> graph;
  std::vector<std::string> errors;  // per-project scan errors, for status

  const Project* project(const std::string& name) const;
};

// Expands a `dockerfiles:` glob (`*`, `?`, `[..]` within a segment, `**`
// across folders), sorted.
std::vector<std::string> expand_glob(const std::string& pattern);

// Scans every project's Dockerfile(s) and builds the graph. A broken
// Dockerfile is recorded on its project (and in errors), never fatal; a
// dependency cycle between projects is an error (ErrorKind::invalid).
Result<Model> build_model(const config::Config& cfg);

// The first platform of a project, as "os/arch[/variant]", for scanning.
std::string scan_platform(const config::Config& cfg, const std::vector<std::string>& platforms);

}  // namespace bw::watcher
