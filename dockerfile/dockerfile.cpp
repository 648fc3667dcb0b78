#include "dockerfile/dockerfile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <deque>
#include <limits>
#include <set>

#include "dockerfile/lexer.h"
#include "dockerfile/shell.h"
#include "oci/platform.h"
#include "util/files.h"
#include "util/strings.h"

namespace bw::dockerfile {
namespace {

// Real Dockerfiles are kilobytes; this only stops runaway input.
constexpr size_t k_max_file_size = 4 * 1024 * 1024;
constexpr std::string_view k_scratch = "scratch";
constexpr std::string_view k_syntax_arg = "BUILDKIT_SYNTAX";
const char* const k_no_expansion = "'from' doesn't support variable expansion, define alias stage instead";

const std::set<std::string, std::less<>> k_instructions = {
    "add",   "arg",        "cmd",   "copy", "entrypoint", "env",  "expose", "from",   "healthcheck",
    "label", "maintainer", "onbuild", "run", "shell",     "stopsignal", "user", "volume", "workdir"};

// ASCII lowercase: what to_lower does in the C locale, without a call per byte.
std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool is_separator(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }

size_t count_fields(std::string_view s) {
  size_t n = 0;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_separator(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_separator(s[i])) ++i;
    if (i > start) ++n;
  }
  return n;
}

std::vector<std::string> split_fields(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_separator(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_separator(s[i])) ++i;
    if (i > start) out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

// Go's %q for the ASCII a Dockerfile holds.
std::string go_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

bool valid_stage_name(std::string_view name) {
  if (name.empty() || name.front() < 'a' || name.front() > 'z') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

// strconv.Atoi: optional sign, decimal digits, within 64 bits; anything
// else (including an out-of-range number) is not an index but a name.
std::optional<long long> parse_index(std::string_view s) {
  bool negative = !s.empty() && s.front() == '-';
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  if (s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  auto first = s.find_first_not_of('0');
  s = first == std::string_view::npos ? std::string_view("0") : s.substr(first);
  const std::string_view limit = negative ? "9223372036854775808" : "9223372036854775807";
  if (s.size() > limit.size() || (s.size() == limit.size() && s > limit)) return std::nullopt;
  unsigned long long v = 0;
  for (char c : s) v = v * 10 + static_cast<unsigned long long>(c - '0');
  if (negative) return v == 9223372036854775808ULL ? std::numeric_limits<long long>::min() : -static_cast<long long>(v);
  return static_cast<long long>(v);
}

// BuildKit's BFlags: "--name=value" words checked against the flags an
// instruction defines. With `strict`, a flag it does not define is an error;
// otherwise only the defined ones are checked, since new BuildKit versions
// add flags that do not change which images a build pulls.
struct FlagSpec {
  std::string name;
  enum Type { boolean, string, strings } type;
};

const std::vector<FlagSpec> k_from_flags = {{"platform", FlagSpec::string}};
const std::vector<FlagSpec> k_copy_flags = {{"from", FlagSpec::string}};
const std::vector<FlagSpec> k_run_flags = {{"mount", FlagSpec::strings}};
const std::vector<FlagSpec> k_no_flags;

Result<std::map<std::string, std::vector<std::string>>> parse_flags(const std::vector<std::string>& flags,
                                                                    const std::vector<FlagSpec>& spec, bool strict) {
  std::map<std::string, std::vector<std::string>> values;
  if (flags.empty()) return values;
  std::set<std::string> used;
  for (const auto& flag : flags) {
    if (flag.rfind("--", 0) != 0) return make_error(ErrorKind::invalid, "Arg should start with -- : " + flag);
    if (flag == "--") break;
    std::string name = flag.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    auto it = std::find_if(spec.begin(), spec.end(), [&](const FlagSpec& f) { return f.name == name; });
    if (it == spec.end()) {
      if (strict) return make_error(ErrorKind::invalid, "Unknown flag: " + name);
      continue;
    }
    if (!used.insert(name).second && it->type != FlagSpec::strings) {
      return make_error(ErrorKind::invalid, "Duplicate flag specified: " + name);
    }
    if (it->type == FlagSpec::boolean) {
      if (has_value && value.empty()) return make_error(ErrorKind::invalid, "Missing a value on flag: " + name);
      auto lower = to_lower(value);
      if (!lower.empty() && lower != "true" && lower != "false") {
        return make_error(ErrorKind::invalid, "Expecting boolean value for flag " + name + ", not: " + value);
      }
    } else if (!has_value) {
      return make_error(ErrorKind::invalid, "Missing a value on flag: " + name);
    }
    values[name].push_back(value);
  }
  return values;
}

// One field of a CSV record, and where its text starts in the record; `exact`
// when the field is that many characters there (no "" inside quotes).
struct CsvField {
  std::string text;
  size_t begin = 0;
  bool exact = true;
};

// One record of Go's encoding/csv: comma-separated fields, a field may be
// quoted with "" standing for a quote inside it.
Result<std::vector<CsvField>> parse_csv_record(std::string_view s) {
  auto fail = [](const std::string& cause) { return make_error(ErrorKind::invalid, "failed to parse csv mounts: " + cause); };
  if (s.empty()) return fail("EOF");
  std::vector<CsvField> fields;
  size_t i = 0;
  while (true) {
    CsvField f;
    std::string& field = f.text;
    if (i < s.size() && s[i] == '"') {
      ++i;
      f.begin = i;
      while (true) {
        if (i >= s.size()) return fail("extraneous or missing \" in quoted-field");
        if (s[i] == '"') {
          if (i + 1 < s.size() && s[i + 1] == '"') {
            field += '"';
            f.exact = false;
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += s[i++];
      }
      if (i < s.size() && s[i] != ',') return fail("extraneous or missing \" in quoted-field");
    } else {
      f.begin = i;
      while (i < s.size() && s[i] != ',') {
        if (s[i] == '"') return fail("bare \" in non-quoted-field");
        field += s[i++];
      }
    }
    fields.push_back(std::move(f));
    if (i >= s.size()) break;
    ++i;  // ','
  }
  return fields;
}

struct Mount {
  std::string type = "bind";
  std::string from;
  size_t from_begin = 0;    // where `from`'s value starts in the mount's value
  bool from_exact = false;  // its characters stand there as they are
};

// The parts of RUN --mount that matter here: its type and `from`. BuildKit
// resolves `from` before expanding variables, so a '$' in it is an error.
Result<Mount> parse_mount(std::string_view value) {
  BW_TRY(auto fields, parse_csv_record(value));
  Mount m;
  for (const auto& csv : fields) {
    const std::string& field = csv.text;
    auto eq = field.find('=');
    auto key = ascii_lower(std::string_view(field).substr(0, eq));
    if (eq == std::string::npos) {
      if (key == "readonly" || key == "ro" || key == "readwrite" || key == "rw" || key == "required") continue;
      return make_error(ErrorKind::invalid, "invalid field '" + field + "' must be a key=value pair");
    }
    auto v = field.substr(eq + 1);
    if (key == "type") {
      m.type = ascii_lower(v);
    } else if (key == "from") {
      auto dollar = v.find('$');
      if (dollar != std::string::npos && dollar + 1 < v.size()) return make_error(ErrorKind::invalid, k_no_expansion);
      m.from = v;
      m.from_begin = csv.begin + eq + 1;
      m.from_exact = csv.exact;
    }
  }
  return m;
}

// An image (or stage) named outside FROM.
struct Use {
  std::string via;      // "copy" | "mount" | "onbuild"
  std::string written;  // as in the file
  int line = 0;
  std::vector<SourceRange> source;
  long stage = -1;      // the stage it names, when it names one
  std::optional<oci::Reference> ref;  // the external image, when it is one
};

struct Stage {
  size_t index = 0;
  std::string name;  // lowercased; empty when unnamed
  std::string base_written;
  std::vector<SourceRange> base_source;
  std::optional<std::string> platform;
  int line = 0;
  std::vector<Use> uses;
  std::set<std::string> args;  // ARG names declared in the stage
  std::string base_expanded;
  std::set<std::string> base_unset;
  long base_stage = -1;
  std::optional<oci::Reference> base_ref;
  std::optional<std::string> unresolved;  // keep_unresolved: why the base is no reference

  std::string label() const { return name.empty() ? std::to_string(index) : name; }
  // The name BuildKit uses in messages.
  std::string buildkit_name() const { return name.empty() ? "stage-" + std::to_string(index) : name; }
};

// The index of the n-th flag of `ins` that starts with `prefix`.
std::optional<size_t> nth_flag(const Instruction& ins, std::string_view prefix, size_t n) {
  for (size_t i = 0; i < ins.flags.size(); ++i) {
    if (ins.flags[i].rfind(prefix, 0) == 0 && n-- == 0) return i;
  }
  return std::nullopt;
}

class Scanner {
 public:
  Scanner(std::string_view text, const std::string& path, const ScanOptions& options)
      : m_text(text), m_path(path), m_options(options) {}

  // What a successful run found besides the images.
  void details(ScanResult& out) {
    out.warnings = std::move(m_warnings);
    out.global_args = std::move(m_globals);
    out.stage_args = m_inheriting;
    out.escape = m_escape;
  }

  Result<std::vector<ImageUse>> run() {
    if (m_text.empty()) return fail(0, "the Dockerfile cannot be empty");
    if (m_text.size() > k_max_file_size) {
      return fail(0, "file is larger than " + std::to_string(k_max_file_size / (1024 * 1024)) + " MiB");
    }
    BW_TRY(auto syntax, syntax_image());
    BW_TRY(auto file, parse_lines(m_text, m_path));
    m_escape = file.escape;
    if (file.instructions.empty()) return fail(0, "file with no instructions");
    for (const auto& ins : file.instructions) {
      if (auto st = read_instruction(ins); !st) return st.error();
    }
    if (m_stages.empty()) return fail(0, "dockerfile contains no stages to build");

    if (auto st = expand_bases(); !st) return st.error();
    BW_TRY(size_t target, find_target());
    if (auto st = resolve_uses(); !st) return st.error();
    if (auto st = check_cycles(); !st) return st.error();
    if (auto st = parse_references(); !st) return st.error();
    return classify(target, std::move(syntax));
  }

 private:
  Error fail(int line, std::string_view message) const {
    return make_error(ErrorKind::invalid, located(m_path, line, message));
  }

  // The frontend image BuildKit pulls first: the BUILDKIT_SYNTAX build arg,
  // else the `# syntax=` directive.
  Result<std::optional<ImageUse>> syntax_image() {
    ImageUse use;
    if (auto it = m_options.build_args.find(std::string(k_syntax_arg)); it != m_options.build_args.end()) {
      auto value = std::string(trim(it->second));
      use.written = value.substr(0, value.find(' '));
      use.line = 0;
    } else {
      auto directive = detect_syntax(m_text);
      if (directive.image.empty()) return std::optional<ImageUse>();
      use.written = directive.image;
      use.line = directive.line;
      use.source.push_back(SourceRange{directive.offset, directive.image.size(), directive.line, directive.column});
    }
    auto ref = oci::parse_reference(use.written);
    if (!ref) return fail(use.line, ref.error().message);
    use.ref = *ref;
    use.kind = "buildtime";
    use.via = "syntax";
    if (ref->pinned()) use.pinned = ref->digest;
    return std::optional<ImageUse>(std::move(use));
  }

  Status read_instruction(const Instruction& ins) {
    if (!k_instructions.count(ins.command)) return fail(ins.line, "unknown instruction: " + ins.keyword);
    if (ins.command == "from") return read_from(ins);
    if (ins.command == "arg") {
      BW_TRY(auto args, read_arg(ins));
      if (m_stages.empty()) {
        for (auto& a : args) m_globals.push_back(std::move(a));
      } else {
        for (auto& a : args) {
          m_stage_args.insert(a.name);
          m_stages.back().args.insert(a.name);
          if (!a.value) m_inheriting.emplace_back(a.name, a.line);
        }
      }
      return ok_status();
    }
    if (ins.command == "env" || ins.command == "label") {
      if (auto st = read_name_values(ins); !st) return st.error();
    }
    std::vector<Use> uses;
    if (ins.command == "copy" || ins.command == "add") {
      size_t n = ins.json ? ins.json_args.size() : count_fields(ins.args);
      if (n < 2) {
        return fail(ins.line, to_upper_ascii(ins.command) +
                                  " requires at least two arguments, but only one was provided. Destination could "
                                  "not be determined");
      }
      if (ins.command == "copy" && !ins.flags.empty()) {
        auto flags = parse_flags(ins.flags, k_copy_flags, false);
        if (!flags) return fail(ins.line, flags.error().message);
        if (auto it = flags->find("from"); it != flags->end() && !it->second.front().empty()) {
          Use use{"copy", it->second.front(), ins.line, {}, -1, std::nullopt};
          if (auto f = nth_flag(ins, "--from=", 0)) use.source = flag_chars_source(ins, ins.pieces, *f, 7, use.written.size());
          uses.push_back(std::move(use));
        }
      }
    } else if (ins.command == "run" && !ins.flags.empty()) {
      auto flags = parse_flags(ins.flags, k_run_flags, false);
      if (!flags) return fail(ins.line, flags.error().message);
      size_t n = 0;
      for (const auto& value : (*flags)["mount"]) {
        auto mount = parse_mount(value);
        if (!mount) return fail(ins.line, mount.error().message);
        if (!mount->from.empty() && mount->type != "tmpfs") {
          uses.push_back(Use{"mount", mount->from, ins.line, mount_source(ins, ins.pieces, n, *mount), -1, std::nullopt});
        }
        ++n;
      }
    } else if (ins.command == "onbuild") {
      BW_TRY(auto triggered, read_onbuild(ins));
      uses = std::move(triggered);
    }
    if (m_stages.empty()) return fail(ins.line, "no build stage in current context");
    for (auto& u : uses) m_stages.back().uses.push_back(std::move(u));
    return ok_status();
  }

  // The file ranges of characters [begin, begin + len) of flag `flag` of
  // `ins` (quotes and escapes removed), or none when they are not contiguous.
  std::vector<SourceRange> flag_chars_source(const Instruction& ins, const std::vector<Piece>& pieces, size_t flag,
                                             size_t begin, size_t len) const {
    if (flag >= ins.flag_sources.size()) return {};
    const auto& src = ins.flag_sources[flag];
    if (len == 0 || begin + len > src.size()) return {};
    for (size_t k = begin + 1; k < begin + len; ++k) {
      if (src[k] != src[k - 1] + 1) return {};
    }
    return source_of(pieces, m_text, src[begin], src[begin + len - 1] + 1);
  }

  // Where the `from=` value of the n-th --mount flag stands.
  std::vector<SourceRange> mount_source(const Instruction& ins, const std::vector<Piece>& pieces, size_t n,
                                        const Mount& mount) const {
    auto flag = nth_flag(ins, "--mount=", n);
    if (!flag || !mount.from_exact) return {};
    return flag_chars_source(ins, pieces, *flag, 8 + mount.from_begin, mount.from.size());
  }

  // ENV and LABEL: BuildKit's parseNameVal. "NAME value" (the legacy form)
  // needs both; "a=b c=d" needs '=' in every word.
  Status read_name_values(const Instruction& ins) {
    auto words = split_words(ins.args, m_escape);
    if (words.empty()) return ok_status();
    const std::string key = to_upper_ascii(ins.command);
    if (words.front().find('=') == std::string::npos) {
      if (count_fields(ins.args) < 2) return fail(ins.line, key + " must have two arguments");
      return ok_status();
    }
    for (const auto& w : words) {
      if (w.find('=') == std::string::npos) {
        return fail(ins.line, "Syntax error - can't find = in " + go_quote(w) + ". Must be of the form: name=value");
      }
    }
    return ok_status();
  }

  void warn(int line, std::string_view message) { m_warnings.push_back(located(m_path, line, "warning: " + std::string(message))); }

  static std::string to_upper_ascii(std::string s) {
    for (auto& c : s) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return s;
  }

  // FROM [--platform=<p>] <image> [AS <name>]
  Status read_from(const Instruction& ins) {
    auto args = split_fields(ins.args);
    std::string name;
    if (args.size() == 3 && equals_icase(args[1], "as")) {
      name = ascii_lower(args[2]);
      if (!valid_stage_name(name)) {
        return fail(ins.line, "invalid name for build stage: " + go_quote(args[2]) +
                                  ", name can't start with a number or contain symbols");
      }
    } else if (args.size() != 1) {
      return fail(ins.line, "FROM requires either one or three arguments");
    }
    auto flags = parse_flags(ins.flags, k_from_flags, true);
    if (!flags) return fail(ins.line, flags.error().message);
    // BuildKit lints these (the file still builds): a later stage of the same
    // name wins for COPY --from and --target, FROM takes the latest before it.
    if (name == "scratch" || name == "context") {
      warn(ins.line, "ReservedStageName: '" + name + "' is reserved and should not be used as a stage name");
    }
    if (!name.empty()) {
      auto [it, fresh] = m_stage_index.emplace(name, m_stages.size());
      if (!fresh) {
        warn(ins.line, "DuplicateStageName: Duplicate stage name '" + name + "', stage names should be unique");
        it->second = m_stages.size();
      }
    }
    Stage stage;
    stage.index = m_stages.size();
    stage.name = name;
    stage.base_written = args[0];
    {
      size_t at = 0;
      while (at < ins.args.size() && is_separator(ins.args[at])) ++at;
      stage.base_source = source_of(ins.pieces, m_text, ins.args_offset + at, ins.args_offset + at + args[0].size());
    }
    stage.line = ins.line;
    if (auto it = flags->find("platform"); it != flags->end()) stage.platform = it->second.front();
    m_stages.push_back(std::move(stage));
    return ok_status();
  }

  // ARG name[=default] ...
  Result<std::vector<GlobalArg>> read_arg(const Instruction& ins) {
    auto words = split_words_at(ins.args, m_escape);
    if (words.empty()) return fail(ins.line, "ARG requires at least one argument");
    std::vector<GlobalArg> out;
    for (const auto& word : words) {
      const std::string& w = word.text;
      GlobalArg a;
      a.line = ins.line;
      if (auto eq = w.find('='); eq != std::string::npos) {
        if (eq == 0) return fail(ins.line, "ARG names can not be blank");
        a.name = w.substr(0, eq);
        a.value = w.substr(eq + 1);
        // The word keeps its quotes and escapes, so it stands in the file as is.
        size_t at = ins.args_offset + word.begin + eq + 1;
        a.value_source = source_of(ins.pieces, m_text, at, ins.args_offset + word.end);
      } else {
        a.name = w;
      }
      out.push_back(std::move(a));
    }
    return out;
  }

  // ONBUILD <instruction>: its COPY --from and RUN --mount from= run in the
  // builds that use this image, so problems inside the trigger are theirs.
  Result<std::vector<Use>> read_onbuild(const Instruction& ins) {
    if (ins.trigger.empty()) return fail(ins.line, "ONBUILD requires at least one argument");
    auto flags = parse_flags(ins.flags, k_no_flags, true);
    if (!flags) return fail(ins.line, flags.error().message);
    const auto& trig = ins.trigger.front();
    auto upper = to_upper_ascii(trig.command);
    if (upper == "ONBUILD") return fail(ins.line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    if (upper == "MAINTAINER" || upper == "FROM") return fail(ins.line, upper + " isn't allowed as an ONBUILD trigger");
    std::vector<Use> uses;
    if (trig.command == "copy") {
      auto f = parse_flags(trig.flags, k_copy_flags, false);
      if (f) {
        if (auto it = f->find("from"); it != f->end() && !it->second.front().empty()) {
          Use use{"onbuild", it->second.front(), ins.line, {}, -1, std::nullopt};
          if (auto i = nth_flag(trig, "--from=", 0)) use.source = flag_chars_source(trig, ins.pieces, *i, 7, use.written.size());
          uses.push_back(std::move(use));
        }
      }
    } else if (trig.command == "run") {
      auto f = parse_flags(trig.flags, k_run_flags, false);
      if (f) {
        size_t n = 0;
        for (const auto& value : (*f)["mount"]) {
          auto mount = parse_mount(value);
          if (mount && !mount->from.empty() && mount->type != "tmpfs") {
            uses.push_back(Use{"onbuild", mount->from, ins.line, mount_source(trig, ins.pieces, n, *mount), -1, std::nullopt});
          }
          ++n;
        }
      }
    }
    return uses;
  }

  // The variables FROM sees: the platform ARGs, then the ARGs declared before
  // the first FROM, each taking its build arg when one is given.
  Result<Env> from_env() {
    auto platform = oci::parse_platform(m_options.platform);
    if (!platform) return fail(0, platform.error().message);
    Env env;
    const auto& p = *platform;
    for (const char* prefix : {"TARGET", "BUILD"}) {
      std::string pre = prefix;
      env[pre + "PLATFORM"] = p.str();
      env[pre + "OS"] = p.os;
      env[pre + "ARCH"] = p.architecture;
      env[pre + "VARIANT"] = p.variant;
    }
    for (auto& [key, value] : env) {
      if (auto it = m_options.build_args.find(key); it != m_options.build_args.end()) value = it->second;
    }
    LexOptions lex;
    lex.escape = m_escape;
    for (const auto& a : m_globals) {
      if (auto it = m_options.build_args.find(a.name); it != m_options.build_args.end()) {
        env[a.name] = it->second;
      } else if (a.value) {
        auto expanded = process_word(*a.value, env, lex);
        if (!expanded) {
          return fail(a.line, "failed to process " + go_quote(*a.value) + ": " + expanded.error().message);
        }
        env[a.name] = expanded->text;
      }
    }
    return env;
  }

  // "; VERSION is not set" style hints for a FROM whose expansion failed.
  std::string unset_hint(const std::set<std::string>& unset) const {
    std::string hint;
    for (const auto& name : unset) {
      hint += m_stage_args.count(name)
                  ? "; ARG " + name + " is declared inside a stage, FROM only sees ARGs declared before the first FROM"
                  : "; " + name + " is not set";
    }
    return hint;
  }

  Status expand_bases() {
    BW_TRY(auto env, from_env());
    LexOptions lex;
    lex.escape = m_escape;
    std::map<std::string, size_t> earlier;  // stage name -> index, stages before the current one
    for (auto& stage : m_stages) {
      auto expanded = process_word(stage.base_written, env, lex);
      if (!expanded) {
        return fail(stage.line,
                    "failed to process " + go_quote(stage.base_written) + ": " + expanded.error().message);
      }
      stage.base_expanded = expanded->text;
      stage.base_unset = expanded->unset;
      if (stage.base_expanded.empty()) {
        std::set<std::string> hidden;
        for (const auto& n : expanded->unset) {
          if (m_stage_args.count(n)) hidden.insert(n);
        }
        std::string message = "base name (" + stage.base_written + ") should not be blank" + unset_hint(hidden);
        if (!m_options.keep_unresolved || expanded->unset.empty()) return fail(stage.line, message);
        stage.unresolved = message;
      }
      if (stage.platform) {
        auto p = process_word(*stage.platform, env, lex);
        if (!p) {
          return fail(stage.line, "failed to process arguments for platform " + *stage.platform + ": failed to process " +
                                      go_quote(*stage.platform) + ": " + p.error().message);
        }
      }
      if (auto it = earlier.find(ascii_lower(stage.base_expanded)); it != earlier.end()) {
        stage.base_stage = static_cast<long>(it->second);
      }
      if (!stage.name.empty()) earlier[stage.name] = stage.index;  // the latest of a duplicated name
    }
    return ok_status();
  }

  std::optional<size_t> stage_by_name(std::string_view name) const {
    auto it = m_stage_index.find(ascii_lower(name));
    if (it == m_stage_index.end()) return std::nullopt;
    return it->second;
  }

  Result<size_t> find_target() const {
    if (m_options.target.empty()) return m_stages.size() - 1;
    if (auto i = stage_by_name(m_options.target)) return *i;
    return fail(0, "target stage " + go_quote(m_options.target) + " could not be found");
  }

  // COPY --from / mount from=: a stage name (any stage), a stage index, or
  // an image. Inside ONBUILD a stage name or number means a stage of the
  // build that runs the trigger, which is not known here.
  Status resolve_uses() {
    for (auto& stage : m_stages) {
      for (auto& use : stage.uses) {
        auto by_name = stage_by_name(use.written);
        auto index = by_name ? std::nullopt : parse_index(use.written);
        if (use.via == "onbuild") {
          if (by_name || index) use.stage = -2;
          continue;
        }
        if (by_name) {
          use.stage = static_cast<long>(*by_name);
        } else if (index) {
          if (*index < 0 || *index >= static_cast<long long>(m_stages.size())) {
            return fail(use.line, "invalid stage index " + std::to_string(*index));
          }
          use.stage = static_cast<long>(*index);
        }
      }
    }
    return ok_status();
  }

  // Stages that need each other through COPY --from or mounts (and FROM)
  // can never build. Iterative DFS, so deep chains cannot overflow the stack.
  Status check_cycles() const {
    const size_t n = m_stages.size();
    std::vector<std::vector<std::pair<size_t, int>>> edges(n);  // (to, line)
    for (const auto& s : m_stages) {
      if (s.base_stage >= 0) edges[s.index].emplace_back(static_cast<size_t>(s.base_stage), s.line);
      for (const auto& u : s.uses) {
        if (u.stage >= 0) edges[s.index].emplace_back(static_cast<size_t>(u.stage), u.line);
      }
    }
    enum : char { white, grey, black };
    std::vector<char> color(n, white);
    for (size_t root = 0; root < n; ++root) {
      if (color[root] != white) continue;
      std::vector<std::pair<size_t, size_t>> stack{{root, 0}};
      color[root] = grey;
      while (!stack.empty()) {
        auto& [node, next] = stack.back();
        if (next == edges[node].size()) {
          color[node] = black;
          stack.pop_back();
          continue;
        }
        auto [to, line] = edges[node][next++];
        if (color[to] == grey) {
          return fail(line, "circular dependency detected on stage: " + m_stages[root].buildkit_name());
        }
        if (color[to] == white) {
          color[to] = grey;
          stack.emplace_back(to, 0);
        }
      }
    }
    return ok_status();
  }

  // Every image reference is checked, in stages the target reaches or not,
  // as BuildKit does.
  Status parse_references() {
    for (auto& stage : m_stages) {
      if (stage.base_stage < 0 && stage.base_expanded != k_scratch && !stage.unresolved) {
        auto ref = oci::parse_reference(stage.base_expanded);
        if (!ref) {
          std::string message = ref.error().message;
          if (stage.base_expanded != stage.base_written) message += " (expanded from " + go_quote(stage.base_written) + ")";
          message += unset_hint(stage.base_unset);
          if (!m_options.keep_unresolved || stage.base_unset.empty()) return fail(stage.line, message);
          stage.unresolved = message;
        } else {
          stage.base_ref = *ref;
        }
      }
      for (auto& use : stage.uses) {
        if (use.stage != -1 || use.written == k_scratch) continue;
        auto ref = oci::parse_reference(use.written);
        if (!ref) {
          std::string message = ref.error().message;
          if (use.written.find('$') != std::string::npos) message += "; " + std::string(k_no_expansion);
          return fail(use.line, message);
        }
        use.ref = *ref;
      }
    }
    return ok_status();
  }

  Result<std::vector<ImageUse>> classify(size_t target, std::optional<ImageUse> syntax) const {
    const size_t n = m_stages.size();
    std::vector<char> reached(n, 0), runtime(n, 0);
    std::deque<size_t> queue{target};
    reached[target] = 1;
    while (!queue.empty()) {
      const auto& s = m_stages[queue.front()];
      queue.pop_front();
      auto visit = [&](long i) {
        if (i >= 0 && !reached[static_cast<size_t>(i)]) {
          reached[static_cast<size_t>(i)] = 1;
          queue.push_back(static_cast<size_t>(i));
        }
      };
      visit(s.base_stage);
      for (const auto& u : s.uses) {
        if (u.via != "onbuild") visit(u.stage);
      }
    }
    for (long i = static_cast<long>(target); i >= 0; i = m_stages[static_cast<size_t>(i)].base_stage) {
      runtime[static_cast<size_t>(i)] = 1;
    }

    std::vector<ImageUse> out;
    if (syntax) out.push_back(std::move(*syntax));
    for (const auto& stage : m_stages) {
      const char* used_kind = reached[stage.index] ? "buildtime" : "unused";
      if (stage.base_ref || stage.unresolved) {
        ImageUse use;
        if (stage.base_ref) use.ref = *stage.base_ref;
        use.written = stage.base_written;
        use.line = stage.line;
        use.stage = stage.label();
        use.kind = runtime[stage.index] ? "runtime" : used_kind;
        use.via = "from";
        use.platform = stage.platform;
        if (use.ref.pinned()) use.pinned = use.ref.digest;
        use.source = stage.base_source;
        use.unset.assign(stage.base_unset.begin(), stage.base_unset.end());
        use.unresolved = stage.unresolved;
        out.push_back(std::move(use));
      }
      for (const auto& u : stage.uses) {
        if (!u.ref) continue;
        ImageUse use;
        use.ref = *u.ref;
        use.written = u.written;
        use.line = u.line;
        use.stage = stage.label();
        use.kind = used_kind;
        use.via = u.via;
        if (use.ref.pinned()) use.pinned = use.ref.digest;
        use.source = u.source;
        out.push_back(std::move(use));
      }
    }
    return out;
  }

  std::string_view m_text;
  const std::string& m_path;
  const ScanOptions& m_options;
  char m_escape = '\\';
  std::vector<GlobalArg> m_globals;
  std::vector<std::pair<std::string, int>> m_inheriting;  // ARG NAME (no value) inside stages, with its line
  std::vector<std::string> m_warnings;
  std::vector<Stage> m_stages;
  std::map<std::string, size_t> m_stage_index;  // stage name -> index
  std::set<std::string> m_stage_args;
};

}  // namespace

ScanResult scan(std::string_view text, const std::string& path, const ScanOptions& options) {
  ScanResult result;
  Scanner scanner(text, path, options);
  auto images = scanner.run();
  if (images) {
    result.images = std::move(*images);
    scanner.details(result);
  } else {
    result.error = images.error().message;
  }
  return result;
}

ScanResult scan_file(const std::string& path, const ScanOptions& options) {
  // open/fstat/read rather than iostreams: a scan of thousands of files is
  // mostly this. Anything unusual (a pipe, a special file) goes the slow way.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    ScanResult result;
    if (static_cast<uint64_t>(st.st_size) > k_max_file_size) {
      ::close(fd);
      result.error = located(path, 0, "file is larger than " + std::to_string(k_max_file_size / (1024 * 1024)) + " MiB");
      return result;
    }
    std::string text(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < text.size()) {
      ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    text.resize(got);  // a file that shrank while being read
    return scan(text, path, options);
  }
  if (fd >= 0) ::close(fd);
  auto text = read_file(path);
  if (!text) {
    ScanResult result;
    result.error = text.error().message;
    return result;
  }
  return scan(*text, path, options);
}

}  // namespace bw::dockerfile
