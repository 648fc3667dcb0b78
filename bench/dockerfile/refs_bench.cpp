// basewatch refs against the scan it is built on, in process and with
// registry lookups off (every mirror answers with the upstream's digest):
// reads every Dockerfile under FOLDER into memory, then times, in the same
// run, RUNS passes of (a) dockerfile::scan over all files and (b) what refs
// does on top of it: refs::collect (a scan keeping source ranges and
// unresolved references), refs::queries, refs::judge and the JSON report.
// Then refs fix --write's work once: plan_rewrites for every bypass, apply,
// scan again, and count files whose references are not the intended ones
// and bytes changed outside the planned edits.
//
//   refs_bench FOLDER [RUNS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "config/mirrors.h"
#include "dockerfile/dockerfile.h"
#include "dockerfile/rewrite.h"
#include "refs/refs.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bw::config::MirrorConfig rule(const std::string& from, const std::string& to) {
  bw::config::MirrorConfig m;
  m.from = *bw::config::parse_repo_pattern(from);
  m.to = *bw::config::parse_repo_pattern(to);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: refs_bench FOLDER [RUNS]\n");
    return 2;
  }
  int runs = argc > 2 ? std::atoi(argv[2]) : 10;
  std::vector<bw::refs::ProjectFile> files;
  std::vector<std::string> texts;
  for (const auto& e : fs::recursive_directory_iterator(argv[1])) {
    if (!e.is_regular_file()) continue;
    std::string name = e.path().filename().string();
    if (name != "Dockerfile" && !name.ends_with(".Dockerfile") && !name.starts_with("Dockerfile.")) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bw::refs::ProjectFile pf;
    pf.project = e.path().parent_path().filename().string();
    pf.file = e.path().string();
    pf.platforms = {"linux/amd64"};
    files.push_back(pf);
    texts.push_back(ss.str());
  }
  bw::config::Config cfg;
  cfg.mirrors = {rule("docker.io/library/*", "mirror.example.com/hub/library/*"), rule("docker.io/*", "mirror.example.com/hub/*"),
                 rule("ghcr.io/*", "mirror.example.com/ghcr/*"), rule("quay.io/*", "mirror.example.com/quay/*"),
                 rule("gcr.io/*", "mirror.example.com/gcr/*")};
  cfg.policy.require_mirror = true;

  std::vector<double> scan_ms, refs_ms;
  size_t images = 0, findings_n = 0, json_bytes = 0;
  std::vector<bw::refs::Use> uses;
  for (int r = 0; r < runs; ++r) {
    auto t0 = Clock::now();
    size_t n = 0;
    for (size_t i = 0; i < files.size(); ++i) n += bw::dockerfile::scan(texts[i], files[i].file, files[i].options).images.size();
    auto t1 = Clock::now();
    uses.clear();
    for (size_t i = 0; i < files.size(); ++i) {
      auto u = bw::refs::collect(files[i], texts[i]);
      if (u) uses.insert(uses.end(), std::make_move_iterator(u->begin()), std::make_move_iterator(u->end()));
    }
    bw::refs::Answers answers;
    for (const auto& q : bw::refs::queries(uses, cfg)) {
      bw::refs::Lookup l;
      l.found = true;
      l.digest = "sha256:" + std::string(64, 'd');
      answers[q.ref.tag.empty() ? q.ref.str() : q.ref.tag_ref()] = l;
    }
    auto findings = bw::refs::judge(uses, cfg, answers, false);
    json_bytes = bw::refs::render_json(findings).size();
    auto t2 = Clock::now();
    scan_ms.push_back(ms(t1 - t0));
    refs_ms.push_back(ms(t2 - t1));
    images = n;
    findings_n = findings.size();
  }
  std::sort(scan_ms.begin(), scan_ms.end());
  std::sort(refs_ms.begin(), refs_ms.end());
  std::printf("%zu files, %zu images scanned, %zu references judged, %zu bytes of JSON\n", files.size(), images, findings_n,
              json_bytes);
  std::printf("scan: best %.1f ms, median %.1f ms\n", scan_ms.front(), scan_ms[scan_ms.size() / 2]);
  std::printf("refs: best %.1f ms, median %.1f ms  (ratio %.2f best, %.2f median)\n", refs_ms.front(), refs_ms[refs_ms.size() / 2],
              refs_ms.front() / scan_ms.front(), refs_ms[refs_ms.size() / 2] / scan_ms[scan_ms.size() / 2]);

  // refs fix --write: every file rewritten, scanned again, compared.
  bw::refs::Answers answers;
  for (const auto& q : bw::refs::queries(uses, cfg)) {
    bw::refs::Lookup l;
    l.found = true;
    l.digest = "sha256:" + std::string(64, 'd');
    answers[q.ref.tag.empty() ? q.ref.str() : q.ref.tag_ref()] = l;
  }
  auto findings = bw::refs::judge(uses, cfg, answers, false);
  std::map<std::string, std::vector<const bw::refs::Finding*>> by_file;
  for (const auto& f : findings) {
    if (!f.fix.empty()) by_file[f.use->file].push_back(&f);
  }
  size_t rewritten = 0, left = 0, wrong_files = 0, stray_bytes = 0, changed_files = 0;
  auto t0 = Clock::now();
  for (size_t i = 0; i < files.size(); ++i) {
    auto it = by_file.find(files[i].file);
    if (it == by_file.end()) continue;
    std::vector<bw::dockerfile::RewriteRequest> requests;
    for (const auto* f : it->second) requests.push_back({f->use->index, f->fix});
    auto options = files[i].options;
    options.keep_unresolved = true;
    auto plan = bw::dockerfile::plan_rewrites(texts[i], files[i].file, options, requests);
    std::string after = bw::dockerfile::apply_edits(texts[i], plan.edits);
    changed_files += after != texts[i];
    auto before = bw::dockerfile::scan(texts[i], files[i].file, options);
    auto again = bw::dockerfile::scan(after, files[i].file, options);
    bool ok = !again.error && again.images.size() == before.images.size();
    for (size_t k = 0; ok && k < before.images.size(); ++k) {
      std::string want = before.images[k].ref.str();
      for (size_t r = 0; r < requests.size(); ++r) {
        if (requests[r].use == k && plan.outcomes[r].done) want = bw::oci::parse_reference(requests[r].target)->str();
      }
      ok = again.images[k].ref.str() == want;
    }
    wrong_files += !ok;
    for (const auto& o : plan.outcomes) (o.done ? rewritten : left) += 1;
    // Bytes outside the edits: the text between them must be the same.
    size_t at = 0, at_after = 0;
    for (const auto& e : plan.edits) {
      size_t n = e.offset - at;
      if (texts[i].compare(at, n, after, at_after, n) != 0) ++stray_bytes;
      at = e.offset + e.length;
      at_after += n + e.text.size();
    }
    if (texts[i].compare(at, std::string::npos, after, at_after, std::string::npos) != 0) ++stray_bytes;
  }
  auto t1 = Clock::now();
  std::printf("refs fix --write: %zu files changed, %zu references rewritten, %zu left; %zu files not scanning to the "
              "intended references, %zu stretches of unintended byte changes (%.1f ms)\n",
              changed_files, rewritten, left, wrong_files, stray_bytes, ms(t1 - t0));
  return wrong_files == 0 && stray_bytes == 0 ? 0 : 1;
}
