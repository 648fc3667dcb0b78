// libFuzzer target for pin_bases, which rewrites Dockerfiles for task builds.
// Each input is scanned, and every image it names (all of them, or every
// other one, picked by the first byte) is pinned to a digest, with a
// platform and a build arg line derived from the input. Besides crashes,
// hangs and leaks it aborts when a pinned copy breaks its promises: it
// scans, it names the same images in the same places with the pinned ones
// now at ref@digest, and nothing but the pinned tokens changed (the copy
// minus the new references is the original minus the old tokens).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dockerfile/dockerfile.h"
#include "dockerfile/pin.h"

using namespace bw::dockerfile;

namespace {

const char* const k_platforms[] = {"linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"};
const std::string k_digest = "sha256:" + std::string(64, 'f');

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const unsigned first = size ? data[0] : 0;
  ScanOptions options;
  options.platform = k_platforms[first % std::size(k_platforms)];
  if (auto nl = text.rfind('\n'); nl != std::string_view::npos && (first & 4)) {
    auto last = text.substr(nl + 1);
    if (auto eq = last.find('='); eq != std::string_view::npos && eq > 0 && eq < 64) {
      options.build_args[std::string(last.substr(0, eq))] = std::string(last.substr(eq + 1, 64));
    }
  }
  auto scanned = scan(text, "Dockerfile", options);
  std::vector<BasePin> pins;
  size_t n = 0;
  for (const auto& use : scanned.images) {
    if ((first & 8) && n++ % 2) continue;
    auto tag = use.ref.tag_ref();
    pins.push_back(BasePin{{tag}, tag, k_digest});
  }
  auto pinned = pin_bases(text, "Dockerfile", options, pins);
  if (scanned.error) {
    require(!pinned.ok());
    return 0;
  }
  if (!pinned.ok()) {
    // Refusing is allowed (a reference split across lines); saying why is not optional.
    require(pinned.error().message.rfind("Dockerfile:", 0) == 0);
    return 0;
  }
  auto again = scan(pinned->text, "Dockerfile", options);
  require(!again.error);
  require(again.images.size() == scanned.images.size());
  size_t pinned_uses = 0;
  for (size_t i = 0; i < again.images.size(); ++i) {
    require(again.images[i].line == scanned.images[i].line);
    require(again.images[i].kind == scanned.images[i].kind);
    if (again.images[i].ref.str() != scanned.images[i].ref.str()) {
      require(again.images[i].ref.digest == k_digest);
      ++pinned_uses;
    }
  }
  require(pinned_uses <= pinned->pinned.size());
  // Only lines that hold a pinned reference changed; line ends (CRLF
  // included), comments and continuations stay where they were.
  auto lines = [](std::string_view t) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (size_t nl; (nl = t.find('\n', start)) != std::string_view::npos; start = nl + 1) out.push_back(t.substr(start, nl - start));
    out.push_back(t.substr(start));
    return out;
  };
  auto before = lines(text), after = lines(pinned->text);
  require(before.size() == after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    require(before[i] == after[i] || after[i].find(k_digest) != std::string_view::npos);
  }
  if (pinned->pinned.empty()) require(pinned->text == text);
  return 0;
}
