// libFuzzer target for refs fix's rewrites: scan the input, ask for every
// reference (all at once, and the one picked by the first byte) to name a
// mirror reference (pinned when the second byte says so), apply the plan,
// scan the result again and compare. Aborts when a done rewrite does not
// name its target, another reference changed, an edit falls outside the
// reference tokens and ARG defaults, or a source range does not hold its
// token.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dockerfile/dockerfile.h"
#include "dockerfile/rewrite.h"

using namespace bw::dockerfile;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

bool inside(const std::vector<SourceRange>& ranges, const Edit& e) {
  for (const auto& s : ranges) {
    if (e.offset >= s.offset && e.offset + e.length <= s.offset + s.length) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ScanOptions options;
  options.keep_unresolved = size > 0 && (data[0] & 1);
  auto before = scan(text, "Dockerfile", options);
  if (before.error) return 0;
  const bool pin = size > 1 && (data[1] & 1);
  const std::string digest = "sha256:" + std::string(64, 'c');
  std::vector<RewriteRequest> all;
  for (size_t i = 0; i < before.images.size(); ++i) {
    const auto& img = before.images[i];
    // Every range holds part of the token: joined, they are the written text
    // (FROM) or the value (the others, whose written text has no quotes).
    std::string joined;
    for (const auto& s : img.source) {
      require(s.offset + s.length <= text.size() && s.line >= 1 && s.column >= 1);
      joined += text.substr(s.offset, s.length);
    }
    require(img.source.empty() || joined == img.written);
    if (img.unresolved) continue;
    const auto& ref = img.ref;
    std::string target = "mirror.example.com/m/" + ref.repository + (ref.tag.empty() ? "" : ":" + ref.tag) +
                         (pin ? "@" + digest : ref.digest.empty() ? "" : "@" + ref.digest);
    all.push_back({i, target});
  }
  std::vector<std::vector<RewriteRequest>> plans{all};
  if (!all.empty()) plans.push_back({all[(size > 2 ? data[2] : 0) % all.size()]});
  for (const auto& requests : plans) {
    auto plan = plan_rewrites(text, "Dockerfile", options, requests);
    require(plan.error.empty());
    require(plan.outcomes.size() == requests.size());
    for (size_t i = 1; i < plan.edits.size(); ++i) {
      require(plan.edits[i].offset >= plan.edits[i - 1].offset + plan.edits[i - 1].length);
    }
    for (const auto& e : plan.edits) {
      bool ok = false;
      for (const auto& img : before.images) ok = ok || inside(img.source, e) ||
                                                  (e.length == 0 && !img.source.empty() &&
                                                   e.offset == img.source.back().offset + img.source.back().length);
      for (const auto& a : before.global_args) ok = ok || inside(a.value_source, e) ||
                                                    (e.length == 0 && !a.value_source.empty() &&
                                                     e.offset == a.value_source.back().offset + a.value_source.back().length);
      require(ok);
    }
    auto after = scan(apply_edits(text, plan.edits), "Dockerfile", options);
    require(!after.error);
    require(after.images.size() == before.images.size());
    for (size_t i = 0; i < before.images.size(); ++i) {
      std::string want = before.images[i].ref.str();
      for (size_t r = 0; r < requests.size(); ++r) {
        if (requests[r].use == i && plan.outcomes[r].done) want = requests[r].target;
      }
      require(after.images[i].ref.str() == want);
      require(after.images[i].via == before.images[i].via && after.images[i].line == before.images[i].line);
    }
  }
  return 0;
}
