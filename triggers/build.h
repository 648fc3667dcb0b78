// type: build — a task build basewatch runs itself, as ACR Tasks do: the
// builder (buildah, or podman) builds the project's Dockerfile and pushes
// its `image`, without a shell, through the process seam.
//
// Each attempt:
//  1. reads the project (Seams::build_project) and its Dockerfile, and pins
//     every base the delivery names to the exact digest it carries, through
//     the mirror when the change has one (dockerfile/pin.h), in a private
//     copy of the Dockerfile (`-f`) in a private temporary folder (0700);
//  2. writes there, when basewatch's `registries:` has credentials for a
//     registry the build pulls from or pushes to, an auth file (0600) for
//     `--authfile`; for registries on plain HTTP, a registries.conf
//     (CONTAINERS_REGISTRIES_CONF) that marks them insecure; for `ca_file`s,
//     a folder for `--cert-dir`;
//  3. runs, per platform, `<builder> build --pull=always -f <copy> --platform
//     P [--target] [--build-arg]... --annotation ... [args] -t <local> <context>`,
//     then pushes: `push --digestfile` for one platform, or a manifest list
//     (`manifest create`, `manifest add`, `manifest push --all --digestfile`)
//     for several; then removes its local names (the bases stay cached);
//  4. removes the temporary folder, whatever happened.
// Every step's output goes to <builds.logs>/<delivery id>.<attempt>.log,
// between a line naming the command and one saying how it ended and how
// long it took ("basewatch: push: done in 0.412s"). The attempt keeps the exit code, the
// duration, the pushed digest and the log's tail; `timeout` covers all the
// steps together (the whole process group is killed). A failure is retried
// as retry.* says.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dockerfile/dockerfile.h"
#include "dockerfile/pin.h"
#include "triggers/process.h"
#include "triggers/task.h"
#include "triggers/trigger.h"

namespace bw::triggers {

// The OCI annotations a build writes on each image it pushes. buildah (and
// podman, which is buildah inside) write base.name and base.digest by
// themselves, from the FROM as written and the digest they pulled; a pinned
// runtime base is written as basewatch pinned it.
constexpr const char* k_annotation_base_name = "org.opencontainers.image.base.name";
constexpr const char* k_annotation_base_digest = "org.opencontainers.image.base.digest";
constexpr const char* k_annotation_created = "org.opencontainers.image.created";
constexpr const char* k_annotation_delivery = "io.basewatch.delivery";

// A change of the delivery body, as far as pinning cares.
struct BuildChange {
  std::string ref;         // the watched (upstream) reference
  std::string new_digest;  // what it moved to
  std::string mirror_ref, mirror_digest;  // what the build pulls when the project builds FROM a mirror ("" digest: not copied yet)
  std::string upstream_ref;
};
// The changes of a stored delivery body. ErrorKind::invalid when it is not
// the JSON of a delivery or a change lacks ref/new_digest.
Result<std::vector<BuildChange>> build_changes(const db::Delivery& delivery);

// What to pin for the delivery's changes: each change's base (by its ref,
// its upstream and its mirror name) to its new digest, or to the mirror's
// copy (mirror.ref@mirror.digest) when the change has a mirror; a change
// whose mirror digest is not known is not pinned.
std::vector<dockerfile::BasePin> base_pins(const std::vector<BuildChange>& changes);

// One platform of a build and the pinned copy it is built from (platforms
// share a copy unless a FROM depends on TARGETARCH and the copies differ).
struct BuildVariant {
  std::string platform;    // as configured, e.g. "linux/arm64"
  std::string dockerfile;  // the pinned copy to build from
  std::optional<dockerfile::ImageUse> runtime_base;
  bool runtime_base_pinned = false;
};

// Everything the commands depend on, decided before anything runs.
struct BuildSettings {
  std::string builder = "buildah";
  bool push = true;
  std::vector<std::string> args;
  BuildProject project;
  std::string delivery_id;
  int attempt = 1;
  std::string created;               // RFC 3339, the attempt's start
  std::vector<BuildVariant> variants;  // in the project's platform order
  std::string authfile;       // "" when basewatch has no credentials for the build's registries
  std::string cert_dir;       // "" when no registry of the build has a ca_file
  std::string digest_file;    // where the push writes the pushed digest
  bool push_insecure = false; // the image's registry is on plain HTTP
};

// One program a build runs.
struct BuildStep {
  enum class Kind {
    required,  // a failure ends the build
    may_fail,  // a failure is logged and the build goes on (removing a name that may not exist)
    cleanup,   // runs after the others, whatever happened; a failure is logged
  };
  std::string label;  // for the log and errors: "build linux/amd64", "push", ...
  std::vector<std::string> argv;
  Kind kind = Kind::required;
  std::string creates;  // the local name the step makes, when it makes one
  // Cleanup steps: argv[operands..] are local names, each removed only when
  // a step before created it (the step is skipped when none was).
  size_t operands = 0;
};

// The commands of a build, in order (pure: unit tests check every argv).
std::vector<BuildStep> plan_build(const BuildSettings& settings);

// The local (builder store) name of a build's image, per platform, and of
// its manifest list: localhost/basewatch-build:<delivery id>-<attempt>[-<platform>|-list].
std::string local_name(const BuildSettings& settings, const std::string& suffix = "");

// The auth file (containers-auth.json) for `--authfile`: {"auths": {host:
// {"auth": base64(user:password)} or {"identitytoken": ...}}}.
struct HostCredentials {
  std::string host;
  std::string username, password, identity_token;
};
std::string auth_file_json(const std::vector<HostCredentials>& credentials);

// A registries.conf that marks `insecure_hosts` as plain HTTP: `base` (the
// system's registries.conf, kept so its settings still apply to the build)
// followed by one [[registry]] table per host it does not name already. A
// `base` in the old v1 format cannot be mixed with tables and is left out
// (the drop-ins in registries.conf.d still apply).
std::string registries_conf_text(const std::string& base, const std::vector<std::string>& insecure_hosts);

// The last line of a builder's output that reports an error ("Error: ...",
// "error: ..."), with digests shortened to 12 hex digits and, past 300
// characters, its middle left out (the cause is at the end); "" when there
// is none.
std::string builder_error(const std::string& output);

// The problems with build triggers that `config check`, serve's start and
// reloads refuse, each "file:line:column: message" (found up front, not at
// the first change):
//   a builder that is not installed (`installed(program)` says, normally
//   program_on_path), a project whose build trigger pushes but that has no
//   `image:`, an `image:` that does not parse or names no tag, a
//   `dockerfiles:` glob that would push every file to one image, a `watch:`
//   entry naming a build trigger (no Dockerfile to build).
std::vector<std::string> check_builds(const config::Config& cfg, const std::function<bool(const std::string&)>& installed);

// True when `program` is an executable file in one of the folders of
// `path` (a PATH value; an empty entry is the working directory), or, when
// it has a '/', is itself one.
bool program_on_path(const std::string& program, const std::string& path);

class BuildTrigger final : public TaskTrigger {
 public:
  BuildTrigger(config::TriggerConfig cfg, const Seams& seams);
  Outcome deliver(const db::Delivery& delivery) override;
  const char* type() const override { return "build"; }

 private:
  std::function<std::optional<BuildProject>(const std::string&)> m_project;
  std::map<std::string, config::RegistryConfig> m_registries;
  const ClockSource* m_clock;
  std::function<void(const std::string&)> m_on_pushed;
};

}  // namespace bw::triggers
