#include "dockerfile/rewrite.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "dockerfile/shell.h"
#include "oci/platform.h"

namespace bw::dockerfile {
namespace {

constexpr size_t k_none = std::string::npos;

// A value with, for each character, the file offset it was written at
// (k_none: it comes from the config, the platform, or nowhere in the file),
// and for each boundary between characters (0..size) the file offset where
// inserting text puts it there (k_none inside a variable's value).
struct Traced {
  std::string text;
  std::vector<size_t> from;
  std::vector<size_t> insert_at;
};

using TracedEnv = std::map<std::string, Traced, std::less<>>;

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

// The $-expansion of a word, as process_word does it for the forms that
// references use ($X, ${X}, ${X:-w}, ${X-w}, ${X:+w}, ${X+w}, quotes and the
// escape character), keeping where each character came from. Anything else
// is "not traced" (nullopt); callers check the text against process_word.
class Tracer {
 public:
  Tracer(std::string_view word, const std::vector<size_t>& offsets, size_t end_offset, const TracedEnv& env, char escape)
      : m_word(word), m_offsets(offsets), m_end(end_offset), m_env(env), m_escape(escape) {}

  std::optional<Traced> run() {
    Traced out;
    if (!expand(0, m_word.size(), out, true)) return std::nullopt;
    out.insert_at.resize(out.text.size() + 1, k_none);
    out.insert_at[out.text.size()] = m_end;
    return out;
  }

 private:
  size_t offset(size_t raw) const { return raw < m_offsets.size() ? m_offsets[raw] : m_end; }

  void literal(Traced& out, char c, size_t raw, bool top) {
    out.insert_at.resize(out.text.size() + 1, k_none);
    out.insert_at[out.text.size()] = top ? offset(raw) : k_none;
    out.text += c;
    out.from.push_back(offset(raw));
  }

  void value(Traced& out, const Traced& v, size_t raw, bool top) {
    out.insert_at.resize(out.text.size() + 1, k_none);
    if (v.text.empty()) return;
    out.insert_at[out.text.size()] = top ? offset(raw) : k_none;
    for (size_t i = 0; i < v.text.size(); ++i) {
      if (i > 0) out.insert_at.push_back(k_none);
      out.text += v.text[i];
      out.from.push_back(v.from.empty() ? k_none : v.from[i]);
    }
  }

  // The closing '}' of a ${ that starts at `open` ('$'), or npos.
  size_t closing(size_t open, size_t end) const {
    int depth = 0;
    for (size_t i = open; i < end; ++i) {
      if (m_word[i] == m_escape) {
        ++i;
        continue;
      }
      if (m_word[i] == '$' && i + 1 < end && m_word[i + 1] == '{') {
        ++depth;
        ++i;
      } else if (m_word[i] == '}' && --depth == 0) {
        return i;
      }
    }
    return std::string_view::npos;
  }

  bool expand(size_t begin, size_t end, Traced& out, bool top) {
    size_t i = begin;
    char quote = 0;
    while (i < end) {
      char c = m_word[i];
      if (quote == '\'') {
        if (c == '\'') quote = 0;
        else literal(out, c, i, top);
        ++i;
        continue;
      }
      if (c == '\'' && !quote) {
        quote = '\'';
        ++i;
        continue;
      }
      if (c == '"') {
        quote = quote ? 0 : '"';
        ++i;
        continue;
      }
      if (c == m_escape) {
        if (i + 1 >= end) return false;
        char next = m_word[i + 1];
        if (quote == '"' && next != '"' && next != '$' && next != m_escape) {
          literal(out, c, i, top);
          ++i;
          continue;
        }
        literal(out, next, i + 1, top);
        i += 2;
        continue;
      }
      if (c != '$') {
        literal(out, c, i, top);
        ++i;
        continue;
      }
      if (i + 1 < end && is_name_start(m_word[i + 1])) {
        size_t j = i + 1;
        while (j < end && is_name_char(m_word[j])) ++j;
        if (!variable(std::string(m_word.substr(i + 1, j - i - 1)), out, i, top)) return false;
        i = j;
        continue;
      }
      if (i + 1 < end && m_word[i + 1] == '{') {
        size_t close = closing(i, end);
        if (close == std::string_view::npos) return false;
        size_t j = i + 2;
        while (j < close && is_name_char(m_word[j])) ++j;
        std::string name(m_word.substr(i + 2, j - i - 2));
        if (name.empty() || !is_name_start(name[0])) return false;
        if (j == close) {
          if (!variable(name, out, i, top)) return false;
        } else {
          bool colon = m_word[j] == ':';
          size_t op = colon ? j + 1 : j;
          if (op >= close || (m_word[op] != '-' && m_word[op] != '+')) return false;
          auto it = m_env.find(name);
          bool set = it != m_env.end() && (!colon || !it->second.text.empty());
          bool use_word = m_word[op] == '-' ? !set : set;
          if (use_word) {
            if (!expand(op + 1, close, out, top)) return false;
          } else if (m_word[op] == '-') {
            value(out, it->second, i, top);
          }
        }
        i = close + 1;
        continue;
      }
      literal(out, c, i, top);
      ++i;
    }
    return quote == 0;
  }

  bool variable(const std::string& name, Traced& out, size_t raw, bool top) {
    auto it = m_env.find(name);
    if (it != m_env.end()) value(out, it->second, raw, top);
    return true;
  }

  std::string_view m_word;
  const std::vector<size_t>& m_offsets;
  size_t m_end;
  const TracedEnv& m_env;
  char m_escape;
};

std::vector<size_t> offsets_of(const std::vector<SourceRange>& ranges) {
  std::vector<size_t> out;
  for (const auto& r : ranges) {
    for (size_t i = 0; i < r.length; ++i) out.push_back(r.offset + i);
  }
  return out;
}

size_t end_of(const std::vector<SourceRange>& ranges) {
  return ranges.empty() ? k_none : ranges.back().offset + ranges.back().length;
}

// What FROM sees, traced: the platform ARGs, then the ARGs before the first
// FROM (a build arg wins over a default), as Scanner::from_env builds it.
std::optional<TracedEnv> traced_env(const ScanResult& scanned, const ScanOptions& options) {
  auto platform = oci::parse_platform(options.platform);
  if (!platform) return std::nullopt;
  TracedEnv env;
  for (const char* prefix : {"TARGET", "BUILD"}) {
    std::string pre = prefix;
    env[pre + "PLATFORM"].text = platform->str();
    env[pre + "OS"].text = platform->os;
    env[pre + "ARCH"].text = platform->architecture;
    env[pre + "VARIANT"].text = platform->variant;
  }
  for (auto& [key, value] : env) {
    if (auto it = options.build_args.find(key); it != options.build_args.end()) value = Traced{it->second, {}, {}};
  }
  for (const auto& a : scanned.global_args) {
    if (auto it = options.build_args.find(a.name); it != options.build_args.end()) {
      env[a.name] = Traced{it->second, {}, {}};
    } else if (a.value) {
      Env plain;
      for (const auto& [k, v] : env) plain[k] = v.text;
      LexOptions lex;
      lex.escape = scanned.escape;
      auto real = process_word(*a.value, plain, lex);
      if (!real) return std::nullopt;
      auto offsets = offsets_of(a.value_source);
      std::optional<Traced> traced;
      if (offsets.size() == a.value->size()) traced = Tracer(*a.value, offsets, end_of(a.value_source), env, scanned.escape).run();
      if (!traced || traced->text != real->text) traced = Traced{real->text, std::vector<size_t>(real->text.size(), k_none), {}};
      traced->insert_at.clear();  // an ARG's value is "inside a variable" for any FROM
      env[a.name] = std::move(*traced);
    }
  }
  return env;
}

// Where a reference's name ends in its text: the ':' of its tag or the '@'
// of its digest (the text's size when it has neither).
size_t name_end(std::string_view ref) {
  size_t at = ref.find('@');
  std::string_view name = ref.substr(0, at);
  size_t slash = name.rfind('/');
  size_t colon = name.find(':', slash == std::string_view::npos ? 0 : slash);
  if (colon != std::string_view::npos) return colon;
  return at == std::string_view::npos ? ref.size() : at;
}

// The one edit that turns traced[begin, end) into `want`, with the common
// prefix and suffix left alone; nullopt when the changing characters are not
// one contiguous run written in the file.
std::optional<Edit> edit_for(const Traced& t, size_t begin, size_t end, std::string_view want) {
  std::string_view have = std::string_view(t.text).substr(begin, end - begin);
  size_t p = 0;
  while (p < have.size() && p < want.size() && have[p] == want[p]) ++p;
  size_t q = 0;
  while (q < have.size() - p && q < want.size() - p && have[have.size() - 1 - q] == want[want.size() - 1 - q]) ++q;
  size_t a = begin + p, b = end - q;
  std::string repl(want.substr(p, want.size() - p - q));
  if (a == b) {
    if (repl.empty()) return Edit{0, 0, ""};  // nothing to change
    // A name put before a reference that starts with a variable goes into
    // that variable's default ("ARG BASE=alpine:3.20" gets the mirror), not
    // before the $ (a build arg for BASE would then be prefixed too).
    if (a == 0 && !t.from.empty() && t.insert_at.size() > 0 && t.from[0] != t.insert_at[0]) {
      if (t.from[0] == k_none) return std::nullopt;  // from a build arg or the platform
      return Edit{t.from[0], 0, repl};
    }
    if (t.insert_at.size() > a && t.insert_at[a] != k_none) return Edit{t.insert_at[a], 0, repl};
    if (a > 0 && t.from[a - 1] != k_none) return Edit{t.from[a - 1] + 1, 0, repl};
    if (a < t.from.size() && t.from[a] != k_none) return Edit{t.from[a], 0, repl};
    return std::nullopt;
  }
  for (size_t k = a; k < b; ++k) {
    if (t.from[k] == k_none) return std::nullopt;
    if (k > a && t.from[k] != t.from[k - 1] + 1) return std::nullopt;
  }
  return Edit{t.from[a], b - a, repl};
}

// The edits that turn `t` into `target`: one when the change is one run,
// else the name and the tag/digest part apart (a new name and a new pin).
std::optional<std::vector<Edit>> edits_for(const Traced& t, std::string_view target) {
  auto keep = [](std::optional<Edit> e) {
    std::vector<Edit> out;
    if (e && (e->length > 0 || !e->text.empty())) out.push_back(std::move(*e));
    return out;
  };
  if (auto whole = edit_for(t, 0, t.text.size(), target)) return keep(whole);
  size_t ne = name_end(t.text), nt = name_end(target);
  auto name = edit_for(t, 0, ne, target.substr(0, nt));
  if (!name) return std::nullopt;
  auto tail = edit_for(t, ne, t.text.size(), target.substr(nt));
  if (!tail) return std::nullopt;
  auto out = keep(name);
  for (auto& e : keep(tail)) out.push_back(std::move(e));
  return out;
}

bool inside(const std::vector<SourceRange>& ranges, const Edit& e) {
  for (const auto& r : ranges) {
    if (e.offset >= r.offset && e.offset + e.length <= r.offset + r.length) return true;
  }
  return false;
}

}  // namespace

std::string apply_edits(std::string_view text, const std::vector<Edit>& edits) {
  std::string out;
  out.reserve(text.size() + 256);
  size_t at = 0;
  for (const auto& e : edits) {
    out.append(text.substr(at, e.offset - at));
    out += e.text;
    at = e.offset + e.length;
  }
  out.append(text.substr(at));
  return out;
}

RewritePlan plan_rewrites(std::string_view text, const std::string& path, const ScanOptions& options,
                          const std::vector<RewriteRequest>& requests) {
  RewritePlan plan;
  plan.outcomes.resize(requests.size());
  auto scanned = scan(text, path, options);
  if (scanned.error) {
    plan.error = *scanned.error;
    for (auto& o : plan.outcomes) o.reason = "the Dockerfile does not scan: " + *scanned.error;
    return plan;
  }
  auto env = traced_env(scanned, options);
  Env plain;
  if (env) {
    for (const auto& [k, v] : *env) plain[k] = v.text;
  }

  // Which global ARG (name, line) an offset lies in, for reasons.
  auto arg_at = [&](const Edit& e) -> const GlobalArg* {
    for (const auto& a : scanned.global_args) {
      if (inside(a.value_source, e)) return &a;
      // An insertion right after a default's last character.
      if (e.length == 0 && !a.value_source.empty() && e.offset == end_of(a.value_source)) return &a;
    }
    return nullptr;
  };

  std::vector<std::vector<Edit>> wanted(requests.size());
  std::vector<bool> active(requests.size(), false);
  for (size_t r = 0; r < requests.size(); ++r) {
    auto& outcome = plan.outcomes[r];
    if (requests[r].use >= scanned.images.size()) {
      outcome.reason = "no such reference";
      continue;
    }
    const ImageUse& use = scanned.images[requests[r].use];
    if (use.unresolved) {
      outcome.reason = "it uses an ARG with no value";
      continue;
    }
    if (use.source.empty()) {
      outcome.reason = use.line == 0 ? "it comes from the BUILDKIT_SYNTAX build arg, not from the file"
                                     : "its characters are not written in one piece (quotes inside the flag)";
      continue;
    }
    auto target = oci::parse_reference(requests[r].target);
    if (!target) {
      outcome.reason = target.error().message;
      continue;
    }
    auto offsets = offsets_of(use.source);
    std::string raw;
    for (const auto& s : use.source) raw.append(text.substr(s.offset, s.length));
    std::optional<Traced> traced;
    if (use.via == "from") {
      if (env) traced = Tracer(raw, offsets, end_of(use.source), *env, scanned.escape).run();
      LexOptions lex;
      lex.escape = scanned.escape;
      auto real = process_word(raw, plain, lex);
      if (traced && (!real || real->text != traced->text)) traced.reset();
    } else {
      Traced t{raw, offsets, offsets};
      t.insert_at.push_back(end_of(use.source));
      traced = std::move(t);
    }
    if (!traced) {
      outcome.reason = "basewatch does not follow how it is built (only $X, ${X}, ${X:-...}, ${X:+...} and quotes)";
      continue;
    }
    auto parsed = oci::parse_reference(traced->text);
    if (!parsed || parsed->str() != use.ref.str()) {
      outcome.reason = "basewatch does not follow how it is built";
      continue;
    }
    auto edits = edits_for(*traced, requests[r].target);
    if (!edits) {
      outcome.reason = "the part that changes is not written in the file in one piece (a build arg, the platform, or "
                       "both a variable and text)";
      continue;
    }
    // An edit outside the reference's own characters is in an ARG default.
    bool ok = true;
    for (const auto& e : *edits) {
      if (inside(use.source, e) || (e.length == 0 && e.offset == end_of(use.source))) continue;
      const GlobalArg* a = arg_at(e);
      if (!a) {
        outcome.reason = "the part that changes is not written in the reference or an ARG default";
        ok = false;
        break;
      }
      for (const auto& [name, line] : scanned.stage_args) {
        if (name == a->name) {
          outcome.reason = "ARG " + a->name + " (line " + std::to_string(a->line) + ") is also used inside a stage (line " +
                           std::to_string(line) + "), where a new default would change the build";
          ok = false;
          break;
        }
      }
      if (!ok) break;
      if (outcome.how.empty()) outcome.how = "ARG " + a->name + " default (line " + std::to_string(a->line) + ")";
    }
    if (!ok) continue;
    if (outcome.how.empty()) outcome.how = "reference";
    wanted[r] = std::move(*edits);
    active[r] = !wanted[r].empty();
    if (wanted[r].empty()) outcome.done = true;  // already the target
  }

  // Check the plan by scanning its result; drop what changes a reference
  // wrongly and check again.
  std::map<size_t, std::string> target_of;  // image index -> wanted reference
  for (size_t r = 0; r < requests.size(); ++r) {
    if (auto t = oci::parse_reference(requests[r].target)) target_of[requests[r].use] = t->str();
  }
  for (size_t round = 0; round <= requests.size(); ++round) {
    std::vector<Edit> all;
    std::map<std::pair<size_t, size_t>, std::vector<size_t>> owners;  // (offset, length) -> requests
    bool conflict = false;
    for (size_t r = 0; r < requests.size() && !conflict; ++r) {
      if (!active[r]) continue;
      for (const auto& e : wanted[r]) {
        auto key = std::make_pair(e.offset, e.length);
        auto it = std::find_if(all.begin(), all.end(), [&](const Edit& o) { return o.offset == e.offset && o.length == e.length; });
        if (it != all.end() && it->text != e.text) {
          // One ARG default, two different values wanted.
          const GlobalArg* a = arg_at(e);
          std::string why = "ARG " + (a ? a->name + " (line " + std::to_string(a->line) + ")" : std::string("default")) +
                            " feeds references that need different values";
          plan.outcomes[r].reason = why;
          active[r] = false;
          for (size_t o : owners[key]) {
            plan.outcomes[o].reason = why;
            active[o] = false;
          }
          conflict = true;
          break;
        }
        if (it == all.end()) all.push_back(e);
        owners[key].push_back(r);
      }
    }
    if (conflict) continue;
    std::sort(all.begin(), all.end(), [](const Edit& a, const Edit& b) { return a.offset < b.offset; });
    bool overlap = false;
    for (size_t i = 1; i < all.size(); ++i) overlap = overlap || all[i].offset < all[i - 1].offset + all[i - 1].length;
    if (overlap) {
      for (size_t r = 0; r < requests.size(); ++r) {
        if (active[r]) plan.outcomes[r].reason = "its edits overlap another reference's";
        active[r] = false;
      }
      break;
    }
    std::string edited = apply_edits(text, all);
    auto again = scan(edited, path, options);
    std::vector<size_t> wrong;  // images that do not name what they should
    if (again.error || again.images.size() != scanned.images.size()) {
      for (size_t i = 0; i < scanned.images.size(); ++i) wrong.push_back(i);
    } else {
      for (size_t i = 0; i < scanned.images.size(); ++i) {
        const auto& before = scanned.images[i];
        const auto& after = again.images[i];
        bool requested_here = false;
        for (size_t r = 0; r < requests.size(); ++r) requested_here = requested_here || (active[r] && requests[r].use == i);
        std::string want = requested_here ? target_of[i] : before.ref.str();
        bool same_place = after.via == before.via && after.line == before.line && after.stage == before.stage &&
                          after.kind == before.kind;
        bool ok = same_place && (after.unresolved.has_value() == before.unresolved.has_value()) &&
                  (before.unresolved ? true : after.ref.str() == want);
        if (!ok) wrong.push_back(i);
      }
    }
    if (wrong.empty()) {
      plan.edits = std::move(all);
      for (size_t r = 0; r < requests.size(); ++r) {
        if (active[r]) plan.outcomes[r].done = true;
      }
      return plan;
    }
    // Blame: a request whose own reference came out wrong, else the requests
    // whose ARG edits reach a reference that was not to change.
    bool blamed = false;
    for (size_t i : wrong) {
      for (size_t r = 0; r < requests.size(); ++r) {
        if (active[r] && requests[r].use == i) {
          std::string got = again.error ? *again.error
                                        : (i < again.images.size() ? again.images[i].ref.str() : std::string("nothing"));
          bool shared = false;
          for (const auto& e : wanted[r]) shared = shared || !inside(scanned.images[i].source, e);
          if (!shared) {
            plan.outcomes[r].reason = "the edited line would read as " + got + ", not " + target_of[i];
            active[r] = false;
            blamed = true;
          }
        }
      }
    }
    if (blamed) continue;
    for (size_t r = 0; r < requests.size(); ++r) {
      if (!active[r]) continue;
      for (const auto& e : wanted[r]) {
        const GlobalArg* a = arg_at(e);
        if (!a) continue;
        size_t i = wrong.front();
        const auto& other = scanned.images[i];
        plan.outcomes[r].reason = "ARG " + a->name + " (line " + std::to_string(a->line) + ") also feeds line " +
                                  std::to_string(other.line) + " (" + other.ref.str() + "), which a new default would change";
        active[r] = false;
        blamed = true;
        break;
      }
    }
    if (!blamed) {
      for (size_t r = 0; r < requests.size(); ++r) {
        if (active[r]) plan.outcomes[r].reason = "the edited file would not scan to the intended references";
        active[r] = false;
      }
    }
  }
  return plan;
}

}  // namespace bw::dockerfile
