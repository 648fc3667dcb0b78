#include "dockerfile/pin.h"

#include <algorithm>
#include <map>

#include "dockerfile/lexer.h"

namespace bw::dockerfile {

namespace {

bool is_separator(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }

// The instruction's joined text with, for each of its characters, where it
// stands in the file.
struct Logical {
  std::string text;
  std::vector<size_t> offset;
};

Logical logical_line(std::string_view file, int line, char escape) {
  Logical l;
  for (auto piece : instruction_pieces(file, line, escape)) {
    size_t at = static_cast<size_t>(piece.data() - file.data());
    for (size_t i = 0; i < piece.size(); ++i) {
      l.text += piece[i];
      l.offset.push_back(at + i);
    }
  }
  return l;
}

// A whitespace-separated word of the joined instruction: [begin, end) in it.
struct Word {
  size_t begin = 0;
  size_t end = 0;
};

std::vector<Word> words_of(const std::string& s) {
  std::vector<Word> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_separator(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_separator(s[i])) ++i;
    if (i > start) out.push_back(Word{start, i});
  }
  return out;
}

std::string unquoted(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '"' && c != '\'') out += c;
  }
  return out;
}

// [begin, end) of the joined text as a span of the file, when its
// characters stand side by side there (not split by a continuation).
std::optional<TextSpan> file_span(const Logical& l, size_t begin, size_t end) {
  if (begin >= end) return std::nullopt;
  if (l.offset[end - 1] - l.offset[begin] != end - 1 - begin) return std::nullopt;
  return TextSpan{l.offset[begin], l.offset[end - 1] + 1};
}

// The value part [begin, end) of a token such as "alpine", "\"alpine\"" or
// 'alpine': inside the quotes when it is quoted as a whole.
std::pair<size_t, size_t> inside_quotes(const std::string& s, size_t begin, size_t end) {
  if (end - begin >= 2 && (s[begin] == '"' || s[begin] == '\'') && s[end - 1] == s[begin]) return {begin + 1, end - 1};
  return {begin, end};
}

Error cannot_pin(const std::string& path, const ImageUse& use, const std::string& why) {
  return make_error(ErrorKind::invalid, located(path, use.line, "cannot pin \"" + use.written + "\": " + why));
}

}  // namespace

Result<std::vector<TextSpan>> reference_spans(std::string_view text, const std::string& path, char escape,
                                              const ImageUse& use) {
  Logical l = logical_line(text, use.line, escape);
  auto words = words_of(l.text);
  std::vector<TextSpan> spans;
  auto add = [&](size_t begin, size_t end) -> Status {
    auto span = file_span(l, begin, end);
    if (!span) return cannot_pin(path, use, "the reference is split across lines");
    spans.push_back(*span);
    return ok_status();
  };
  // words[0] is the keyword; flags are the leading words that start with "--".
  size_t first_arg = 1;
  while (first_arg < words.size() && l.text.compare(words[first_arg].begin, 2, "--") == 0) ++first_arg;
  if (use.via == "from") {
    if (first_arg >= words.size()) return cannot_pin(path, use, "no image after FROM");
    const Word& w = words[first_arg];
    if (l.text.substr(w.begin, w.end - w.begin) != use.written) {
      return cannot_pin(path, use, "the reference is split across lines");
    }
    BW_TRY(auto added, add(w.begin, w.end));
    (void)added;
    return spans;
  }
  for (size_t i = 1; i < first_arg; ++i) {
    const Word& w = words[i];
    std::string word = l.text.substr(w.begin, w.end - w.begin);
    if (use.via == "copy" && word.rfind("--from=", 0) == 0) {
      auto [b, e] = inside_quotes(l.text, w.begin + 7, w.end);
      if (unquoted(l.text.substr(b, e - b)) != use.written) continue;
      if (l.text.substr(b, e - b) != use.written) return cannot_pin(path, use, "its quoting is not understood");
      BW_TRY(auto added, add(b, e));
      (void)added;
    } else if (use.via == "mount" && word.rfind("--mount=", 0) == 0) {
      // Comma-separated fields, each key=value; a field or its value may be quoted.
      size_t field = w.begin + 8;
      bool in_quote = false;
      for (size_t p = field; p <= w.end; ++p) {
        if (p < w.end && l.text[p] == '"') in_quote = !in_quote;
        if (p < w.end && (in_quote || l.text[p] != ',')) continue;
        auto [fb, fe] = inside_quotes(l.text, field, p);
        field = p + 1;
        size_t eq = l.text.find('=', fb);
        if (eq == std::string::npos || eq >= fe) continue;
        std::string key = l.text.substr(fb, eq - fb);
        std::transform(key.begin(), key.end(), key.begin(), [](char c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; });
        if (key != "from") continue;
        auto [vb, ve] = inside_quotes(l.text, eq + 1, fe);
        if (l.text.substr(vb, ve - vb) != use.written) continue;
        BW_TRY(auto added, add(vb, ve));
        (void)added;
      }
    }
  }
  if (spans.empty()) return cannot_pin(path, use, "the reference was not found in its instruction");
  return spans;
}

Result<PinnedFile> pin_bases(std::string_view text, const std::string& path, const ScanOptions& options,
                             const std::vector<BasePin>& pins) {
  auto before = scan(text, path, options);
  if (before.error) return make_error(ErrorKind::invalid, *before.error);
  BW_TRY(auto parsed, parse_lines(text, path));

  std::map<std::string, const BasePin*> by_name;
  for (const auto& p : pins) {
    for (const auto& n : p.names) by_name.emplace(n, &p);
  }
  std::vector<const BasePin*> pin_of(before.images.size(), nullptr);
  std::map<size_t, std::pair<size_t, std::string>> replacements;  // begin -> (end, new text)
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
    BW_TRY(auto spans, reference_spans(text, path, parsed.escape, use));
    for (const auto& s : spans) replacements[s.begin] = {s.end, pin.pinned()};
    out.pinned.push_back(PinnedUse{use.line, use.via, use.stage, use.written, pin.pinned()});
  }
  for (size_t i = 0; i < pins.size(); ++i) {
    if (!used[i]) out.unmatched.push_back(pins[i].ref);
  }

  size_t at = 0;
  for (const auto& [begin, rest] : replacements) {
    if (begin < at) return make_error(ErrorKind::internal, located(path, 0, "overlapping references"));
    out.text.append(text.substr(at, begin - at));
    out.text += rest.second;
    at = rest.first;
  }
  out.text.append(text.substr(at));

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
