// Real images for build tests: a root filesystem from Debian's
// busybox-static (/bin/busybox and the applet links a RUN needs), as an
// uncompressed tar layer, pushed to a LocalRegistry by the distribution API;
// and a buildah store of the test's own (vfs storage, chroot isolation:
// no daemon, no user namespaces).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace bw::testing {

// One member of a tar archive.
struct TarEntry {
  enum class Type { file, directory, symlink };
  std::string name;     // relative, no leading '/'
  Type type = Type::file;
  std::string content;  // a file's bytes, or a symlink's target
  unsigned mode = 0644;
};
// A ustar archive (fixed mtime and owner, so equal entries give equal bytes).
std::string tar_archive(const std::vector<TarEntry>& entries);

// The busybox root filesystem layer: bin/busybox, the applet links
// (sh, cat, echo, ls, mkdir, cp, rm, test, true, false, sleep, env), etc/, tmp/.
// Throws when /bin/busybox (Debian's busybox-static) is missing.
const std::string& busybox_layer();

// Pushes a busybox image to repo:tag: the busybox layer, then a small layer
// with etc/release holding "release <marker>\n", so each marker is another
// image. Returns the manifest's digest.
std::string push_busybox(LocalRegistry& registry, const std::string& repo, const std::string& tag, const std::string& marker,
                         const std::string& platform = "linux/amd64");
// The same for several platforms (the same busybox binary under each
// platform's config, which is enough for chroot builds on this machine), as
// an OCI index at repo:tag. Returns the index's digest.
std::string push_busybox_index(LocalRegistry& registry, const std::string& repo, const std::string& tag, const std::string& marker,
                               const std::vector<std::string>& platforms);

// The manifests of repo:reference as JSON: the manifest itself, or for an
// index every platform's manifest (in the index's order).
std::vector<nlohmann::json> platform_manifests(LocalRegistry& registry, const std::string& repo, const std::string& reference);

// A buildah store in a temporary folder and the environment that points
// buildah (and basewatch's builds) at it.
class BuildahStore {
 public:
  BuildahStore();
  const std::map<std::string, std::string>& env() const { return m_env; }
  // Runs `buildah ARGS...` against this store.
  RunResult buildah(const std::vector<std::string>& args, std::chrono::milliseconds timeout = std::chrono::seconds(120)) const;

 private:
  std::unique_ptr<TempDir> m_dir;
  std::map<std::string, std::string> m_env;
};

}  // namespace bw::testing
