#include "dockerfile/pin.h"

#include <algorithm>
#include <map>
#include <string>

#include "dockerfile/rewrite.h"

namespace bw::dockerfile {

namespace {

Error cannot_pin(const std::string& path, const ImageUse& use, const std::string& why) {
  return make_error(ErrorKind::invalid, located(path, use.line, "cannot pin \"" + use.written + "\": " + why));
}

}  // namespace

Result<SourceRange> reference_span(std::string_view text, const std::string& path, const ImageUse& use) {
  // The parser's own record of where the token stands (ImageUse::source).
  if (use.source.size() > 1) return cannot_pin(path, use, "the reference is split across lines");
  if (use.source.empty()) return cannot_pin(path, use, "its characters do not stand side by side in the file");
  const SourceRange& r = use.source.front();
  if (r.offset + r.length > text.size() || text.substr(r.offset, r.length) != use.written) {
    return cannot_pin(path, use, "its characters do not stand side by side in the file");
  }
  return r;
}

Result<PinnedFile> pin_bases(std::string_view text, const std::string& path, const ScanOptions& options,
                             const std::vector<BasePin>& pins) {
  auto before = scan(text, path, options);
  if (before.error) return make_error(ErrorKind::invalid, *before.error);

  std::map<std::string, const BasePin*> by_name;
  for (const auto& p : pins) {
    for (const auto& n : p.names) by_name.emplace(n, &p);
  }
  std::vector<const BasePin*> pin_of(before.images.size(), nullptr);
  std::vector<Edit> edits;
  PinnedFile out;
  std::vector<bool> used(pins.size(), false);
  for (size_t i = 0; i < before.images.size(); ++i) {
    const ImageUse& use = before.images[i];
    // ONBUILD runs in the builds FROM this image, `# syntax=` is not pulled
    // by buildah or podman, and a written digest is already exact.
    if (use.via != "from" && use.via != "copy" && use.via != "mount") continue;
    if (use.pinned) continue;
    auto it = by_name.find(use.ref.tag_ref());
    if (it == by_name.end()) continue;
    const BasePin& pin = *it->second;
    used[static_cast<size_t>(it->second - pins.data())] = true;
    pin_of[i] = &pin;
    BW_TRY(auto span, reference_span(text, path, use));
    edits.push_back(Edit{span.offset, span.length, pin.pinned()});
    out.pinned.push_back(PinnedUse{use.line, use.via, use.stage, use.written, pin.pinned()});
  }
  for (size_t i = 0; i < pins.size(); ++i) {
    if (!used[i]) out.unmatched.push_back(pins[i].ref);
  }
  std::sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < edits.size(); ++i) {
    if (edits[i].offset < edits[i - 1].offset + edits[i - 1].length) {
      return make_error(ErrorKind::internal, located(path, 0, "overlapping references"));
    }
  }
  out.text = apply_edits(text, edits);

  // The copy must read as the original does, but for the pins.
  auto after = scan(out.text, path, options);
  if (after.error || after.images.size() != before.images.size()) {
    return make_error(ErrorKind::internal, located(path, 0, "the pinned copy does not read like the original" +
                                                                (after.error ? ": " + *after.error : std::string())));
  }
  for (size_t i = 0; i < after.images.size(); ++i) {
    const ImageUse& a = after.images[i];
    const ImageUse& b = before.images[i];
    bool same_place = a.line == b.line && a.stage == b.stage && a.kind == b.kind && a.via == b.via;
    bool as_meant = pin_of[i] ? a.ref.str() == pin_of[i]->pinned() : a.ref.str() == b.ref.str();
    if (!same_place || !as_meant) {
      return make_error(ErrorKind::internal, located(path, b.line, "the pinned copy does not read like the original"));
    }
    if (a.kind == "runtime" && a.via == "from") {
      out.runtime_base = a;
      out.runtime_base_pinned = pin_of[i] != nullptr;
    }
  }
  return out;
}

}  // namespace bw::dockerfile
