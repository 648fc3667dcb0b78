// The descriptor graph a copy is driven by, from bytes a registry sent.
// The first byte picks the Content-Type the registry claimed; the rest is
// the body. Invariants, beyond "no crash, no leak, no hang":
//   - a parsed manifest's descriptors all have valid digests and sizes in range;
//   - filter_index of a parsed index gives an index that parses again, whose
//     entries are the ones it says it kept, in order;
//   - plan_copy lists every blob once and the root last.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "mirror/copy.h"
#include "mirror/manifest.h"
#include "oci/reference.h"
#include "util/crypto.h"

using namespace bw;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

const char* const k_types[] = {"",
                               "application/json",
                               "application/vnd.oci.image.index.v1+json",
                               "application/vnd.oci.image.manifest.v1+json",
                               "application/vnd.docker.distribution.manifest.list.v2+json",
                               "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
                               "application/vnd.docker.distribution.manifest.v1+prettyjws",
                               "application/vnd.oci.artifact.manifest.v1+json"};

void check_descriptors(const std::vector<mirror::Descriptor>& ds) {
  for (const auto& d : ds) {
    check(oci::is_valid_digest(d.digest));
    check(d.size >= 0 && d.size <= mirror::k_max_blob_bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view type = k_types[data[0] % (sizeof k_types / sizeof k_types[0])];
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto m = mirror::parse_manifest(body, type);
  if (!m) return 0;
  check_descriptors(m->manifests);
  check_descriptors(m->blobs);
  if (m->subject) check(oci::is_valid_digest(m->subject->digest));
  if (m->index) check(m->blobs.empty());

  mirror::Node root;
  root.body = std::string(body);
  root.digest = sha256_digest(root.body);
  root.media_type = m->media_type;
  root.manifest = *m;
  auto plan = mirror::plan_copy(root, {});
  check(!plan.manifests.empty() && plan.manifests.back() == &root);
  std::set<std::string> blobs;
  for (const auto& b : plan.blobs) check(blobs.insert(b.digest).second);

  if (m->index) {
    static const oci::Platform wanted[] = {*oci::parse_platform("linux/amd64"), *oci::parse_platform("linux/arm/v7")};
    for (const auto& w : wanted) {
      auto f = mirror::filter_index(body, {w});
      if (!f) continue;
      auto again = mirror::parse_manifest(f->body, "application/vnd.oci.image.index.v1+json");
      check(again.ok() && again->index);
      check(again->manifests.size() == f->kept.size());
      for (size_t i = 0; i < f->kept.size(); ++i) check(again->manifests[i].digest == f->kept[i]);
    }
  }
  return 0;
}
