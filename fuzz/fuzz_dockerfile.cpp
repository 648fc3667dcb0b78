// libFuzzer target for the Dockerfile parser. Every input is scanned with
// fixed options, then with options derived from the input (build args from
// its last line, a platform and BUILDKIT_SYNTAX picked by its first byte, a
// stage of the first result as target); its first line also goes through the
// shell-word expander directly, and the images found feed the project graph.
// Besides crashes, hangs and leaks it aborts on broken invariants of results.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "dockerfile/dockerfile.h"
#include "dockerfile/graph.h"
#include "dockerfile/shell.h"

using namespace bw::dockerfile;

namespace {

const char* const k_platforms[] = {"linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64", "linux/riscv64"};

void require(bool ok) {
  if (!ok) std::abort();
}

void check(const ScanResult& r, const std::string& path) {
  static const std::set<std::string> kinds = {"runtime", "buildtime", "unused"};
  static const std::set<std::string> vias = {"from", "copy", "mount", "syntax", "onbuild"};
  if (r.error) {
    require(r.images.empty());
    require(r.error->rfind(path + ":", 0) == 0);
    return;
  }
  for (const auto& use : r.images) {
    require(kinds.count(use.kind) == 1);
    require(vias.count(use.via) == 1);
    require(!use.ref.registry.empty() && !use.ref.repository.empty());
    require(use.kind != "runtime" || use.via == "from");
    require((use.via == "syntax") == use.stage.empty());
    require(use.pinned.has_value() == use.ref.pinned());
    require(!use.platform || use.via == "from");
  }
}

// "K=V K2=V2" -> build args.
void add_build_args(std::string_view line, ScanOptions& options) {
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    auto word = line.substr(start, i - start);
    auto eq = word.find('=');
    if (eq != std::string_view::npos && eq > 0) options.build_args[std::string(word.substr(0, eq))] = word.substr(eq + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string path = "fuzz/Dockerfile";

  const ScanOptions fixed;
  const auto first = scan(text, path, fixed);
  check(first, path);

  ScanOptions derived;
  const uint8_t selector = size ? data[0] : 0;
  derived.platform = k_platforms[selector % (sizeof k_platforms / sizeof k_platforms[0])];
  auto trimmed = text;
  while (!trimmed.empty() && trimmed.back() == '\n') trimmed.remove_suffix(1);
  auto nl = trimmed.rfind('\n');
  add_build_args(nl == std::string_view::npos ? trimmed : trimmed.substr(nl + 1), derived);
  if (selector & 0x80) derived.build_args["BUILDKIT_SYNTAX"] = "docker/dockerfile:1.7 --frontend-arg";
  if (!first.images.empty()) {
    const auto& stage = first.images[selector % first.images.size()].stage;
    derived.target = (selector & 0x40) ? stage : std::string("Missing-") + stage;
  }
  check(scan(text, path, derived), path);

  LexOptions lex;
  lex.escape = (selector & 1) ? '`' : '\\';
  lex.raw_quotes = selector & 2;
  lex.raw_escapes = selector & 4;
  lex.skip_unset = selector & 8;
  const Env env = {{"A", "a/b.c"}, {"EMPTY", ""}, {"V", "1.2.3"}, {"TARGETARCH", "arm64"}};
  auto line = text.substr(0, std::min(text.find('\n'), size_t{4096}));
  auto word = process_word(line, env, lex);
  if (word) require(word->text.size() <= k_max_expanded_size);

  // The images of the first scan as the bases of a few projects that also
  // produce some of them, so chains and cycles both occur.
  std::vector<ProjectInput> projects;
  for (size_t i = 0; i < first.images.size() && i < 16; ++i) {
    ProjectInput p;
    p.name = "p" + std::to_string(i % 5);
    if (projects.size() <= i % 5) projects.resize(i % 5 + 1);
    auto& target = projects[i % 5];
    target.name = p.name;
    target.bases.push_back(first.images[i].ref.tag_ref());
    if ((selector >> (i % 8)) & 1) target.image = first.images[(i + 1) % first.images.size()].ref.tag_ref();
  }
  auto graph = Graph::build(projects);
  if (graph) {
    (void)graph->to_json();
    (void)graph->to_dot();
    (void)graph->to_text();
    for (const auto& ref : graph->upstream_refs()) (void)graph->impact(ref);
  }
  return 0;
}
