#include "tests/support/images.h"

#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "util/crypto.h"

namespace bw::testing {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

constexpr const char* k_oci_manifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* k_oci_index = "application/vnd.oci.image.index.v1+json";
constexpr const char* k_oci_config = "application/vnd.oci.image.config.v1+json";
constexpr const char* k_oci_layer = "application/vnd.oci.image.layer.v1.tar";  // uncompressed: diff_id == digest

std::string octal(uint64_t value, size_t width) {  // width includes the NUL
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(value));
  return buf;
}

std::string tar_header(const TarEntry& e) {
  if (e.name.size() >= 100) throw std::invalid_argument("tar member name too long: " + e.name);
  std::string h(512, '\0');
  auto put = [&h](size_t offset, const std::string& value) { h.replace(offset, value.size(), value); };
  bool is_file = e.type == TarEntry::Type::file;
  put(0, e.type == TarEntry::Type::directory ? e.name + "/" : e.name);
  put(100, octal(e.mode, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(is_file ? e.content.size() : 0, 12));
  put(136, octal(0, 12));
  put(148, std::string(8, ' '));
  h[156] = is_file ? '0' : e.type == TarEntry::Type::directory ? '5' : '2';
  if (e.type == TarEntry::Type::symlink) put(157, e.content);
  put(257, std::string("ustar\0", 6));
  put(263, "00");
  put(265, "root");
  put(297, "root");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  char chk[8];
  std::snprintf(chk, sizeof chk, "%06o", sum);
  h.replace(148, 6, chk, 6);
  h[154] = '\0';
  h[155] = ' ';
  return h;
}

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + " is missing: install busybox-static (scripts/install-deps)");
  return {std::istreambuf_iterator<char>(in), {}};
}

struct PlatformParts {
  std::string os, architecture, variant;
};

PlatformParts parts_of(const std::string& platform) {
  PlatformParts p;
  auto a = platform.find('/');
  p.os = platform.substr(0, a);
  auto rest = a == std::string::npos ? std::string("amd64") : platform.substr(a + 1);
  auto b = rest.find('/');
  p.architecture = rest.substr(0, b);
  if (b != std::string::npos) p.variant = rest.substr(b + 1);
  return p;
}

// Pushes one busybox manifest (by tag, or by digest when `tag` is empty).
std::pair<std::string, size_t> push_one(LocalRegistry& registry, const std::string& repo, const std::string& tag,
                                        const std::string& marker, const std::string& platform) {
  const std::string& base = busybox_layer();
  const std::string release = tar_archive({{"etc", TarEntry::Type::directory, "", 0755},
                                           {"etc/release", TarEntry::Type::file, "release " + marker + "\n", 0644}});
  const std::string base_digest = registry.upload_blob(repo, base);
  const std::string release_digest = registry.upload_blob(repo, release);
  PlatformParts p = parts_of(platform);
  ordered_json config = {{"architecture", p.architecture}, {"os", p.os}};
  if (!p.variant.empty()) config["variant"] = p.variant;
  config["config"] = {{"Env", {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}, {"Cmd", {"/bin/sh"}}};
  config["rootfs"] = {{"type", "layers"}, {"diff_ids", {base_digest, release_digest}}};
  config["history"] = {{{"created_by", "busybox-static"}}, {{"created_by", "release " + marker}}};
  const std::string config_bytes = config.dump();
  const std::string config_digest = registry.upload_blob(repo, config_bytes);
  ordered_json manifest = {
      {"schemaVersion", 2},
      {"mediaType", k_oci_manifest},
      {"config", {{"mediaType", k_oci_config}, {"size", config_bytes.size()}, {"digest", config_digest}}},
      {"layers",
       {{{"mediaType", k_oci_layer}, {"size", base.size()}, {"digest", base_digest}},
        {{"mediaType", k_oci_layer}, {"size", release.size()}, {"digest", release_digest}}}},
  };
  const std::string bytes = manifest.dump();
  const std::string digest = sha256_digest(bytes);
  registry.put_manifest(repo, tag.empty() ? digest : tag, k_oci_manifest, bytes);
  return {digest, bytes.size()};
}

}  // namespace

std::string tar_archive(const std::vector<TarEntry>& entries) {
  std::string out;
  for (const auto& e : entries) {
    out += tar_header(e);
    if (e.type == TarEntry::Type::file) {
      out += e.content;
      out.append((512 - e.content.size() % 512) % 512, '\0');
    }
  }
  out.append(1024, '\0');
  return out;
}

const std::string& busybox_layer() {
  static const std::string layer = [] {
    std::vector<TarEntry> entries = {{"bin", TarEntry::Type::directory, "", 0755},
                                     {"bin/busybox", TarEntry::Type::file, read_binary("/bin/busybox"), 0755}};
    for (const char* applet : {"sh", "cat", "echo", "ls", "mkdir", "cp", "rm", "test", "true", "false", "sleep", "env"}) {
      entries.push_back({std::string("bin/") + applet, TarEntry::Type::symlink, "busybox", 0777});
    }
    entries.push_back({"tmp", TarEntry::Type::directory, "", 01777});
    return tar_archive(entries);
  }();
  return layer;
}

std::string push_busybox(LocalRegistry& registry, const std::string& repo, const std::string& tag, const std::string& marker,
                         const std::string& platform) {
  return push_one(registry, repo, tag, marker, platform).first;
}

std::string push_busybox_index(LocalRegistry& registry, const std::string& repo, const std::string& tag, const std::string& marker,
                               const std::vector<std::string>& platforms) {
  ordered_json manifests = json::array();
  for (const auto& platform : platforms) {
    auto [digest, size] = push_one(registry, repo, "", marker, platform);
    PlatformParts p = parts_of(platform);
    ordered_json pl = {{"architecture", p.architecture}, {"os", p.os}};
    if (!p.variant.empty()) pl["variant"] = p.variant;
    manifests.push_back({{"mediaType", k_oci_manifest}, {"digest", digest}, {"size", size}, {"platform", pl}});
  }
  ordered_json index = {{"schemaVersion", 2}, {"mediaType", k_oci_index}, {"manifests", manifests}};
  return registry.put_manifest(repo, tag, k_oci_index, index.dump());
}

std::vector<json> platform_manifests(LocalRegistry& registry, const std::string& repo, const std::string& reference) {
  std::string media_type;
  json doc = json::parse(registry.get_manifest(repo, reference, &media_type));
  if (!doc.contains("manifests")) return {doc};
  std::vector<json> out;
  for (const auto& m : doc["manifests"]) out.push_back(json::parse(registry.get_manifest(repo, m["digest"].get<std::string>())));
  return out;
}

BuildahStore::BuildahStore() : m_dir(std::make_unique<TempDir>("bw-buildah")) {
  std::string conf = m_dir->write("storage.conf", "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + m_dir->path() +
                                                     "/root\"\nrunroot = \"" + m_dir->path() + "/run\"\n");
  m_env = {{"STORAGE_DRIVER", "vfs"}, {"BUILDAH_ISOLATION", "chroot"}, {"CONTAINERS_STORAGE_CONF", conf}};
}

RunResult BuildahStore::buildah(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {"buildah"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, m_env, "", timeout);
}

}  // namespace bw::testing
