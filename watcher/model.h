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
  std::string ref;     // normalised tag ref that is watched (the upstream when the Dockerfile names a mirror)
  std::string mirror;  // the mirror's tag ref when the Dockerfile names a mirror (it builds FROM the copy), else ""
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
  std::map<std::string, std::string> build_args;  // as configured, for scanning and task builds
  std::string target;                             // "" is the last stage
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
  // A `mirrors:` rule copies it: the copy's tag ref, and the rule (an index
  // into Config::mirrors); "" and -1 when none does.
  std::string mirror;
  int mirror_rule = -1;
};

// What a Dockerfile looked like when the model was built, to notice edits
// cheaply: stat first, the content hash only when the stat moved.
struct SourceFile {
  std::string path;
  int64_t mtime_ns = -1;  // -1: could not be read
  int64_t size = -1;
  std::string content_hash;  // sha256 hex, "" when it could not be read
};

struct Model {
  std::vector<Project> projects;
  std::vector<SourceFile> sources;                       // every Dockerfile read, in project order
  std::map<std::string, std::vector<std::string>> globs;  // `dockerfiles:` pattern -> the files it matched
  std::map<std::string, WatchItem> items;  // key: tag ref
  // The items a mirrors: rule copies, as (mirror, upstream) tag refs sorted
  // by mirror: what /v1/mirrors and the status counts list, without a walk
  // over every item.
  std::vector<std::pair<std::string, std::string>> mirrored;
  std::shared_ptr<dockerfile::Graph> graph;
  std::vector<std::string> errors;  // per-project scan errors, for status
  // BuildKit lint warnings of Dockerfiles that still build ("path:line:
  // warning: DuplicateStageName: ..."); shown with the errors in status.
  std::vector<std::string> warnings;

  const Project* project(const std::string& name) const;
};

// The project name of `file`, matched by the `dockerfiles:` glob `pattern`:
// its path below the glob's fixed folders, so names are unique by
// construction ("services/**/Dockerfile" names "services/team/api/Dockerfile"
// "team/api"; a file not named Dockerfile keeps its name: "web/Dockerfile.prod").
// Prefixed with the entry's `name` when it has one.
std::string glob_project_name(const std::string& pattern, const std::string& file, const std::string& entry_name);

// Expands a `dockerfiles:` glob (`*`, `?`, `[..]` within a segment, `**`
// across folders), sorted.
std::vector<std::string> expand_glob(const std::string& pattern);

// Scans every project's Dockerfile(s) and builds the graph. A broken
// Dockerfile is recorded on its project (and in errors), never fatal; a
// dependency cycle between projects is an error (ErrorKind::invalid).
//
// With `previous` (a rescan or a reload), a project whose Dockerfile can no
// longer be scanned keeps the bases it had, so a file caught half-edited
// never stops a base from being watched; the error is still reported.
Result<Model> build_model(const config::Config& cfg, const Model* previous = nullptr);

// Why the Dockerfiles on disk no longer match `model`, or "" when they do:
// a Dockerfile whose content changed, appeared or went away, or a
// `dockerfiles:` glob that matches other files now. A file whose stat
// changed but whose content did not is not a change. Cheap enough to call
// every few seconds: one stat per file, a read only when the stat moved, one
// walk per glob.
std::string stale_reason(const Model& model);

// The first platform of a project, as "os/arch[/variant]", for scanning.
std::string scan_platform(const config::Config& cfg, const std::vector<std::string>& platforms);

}  // namespace bw::watcher
