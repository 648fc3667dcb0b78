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
//   refs_bench FOLDER [RUNS] [OUT]
//
// With OUT, the outputs are written there too (refs.json, refs.sarif,
// refs.txt, and every finding's fields with and without --pin in
// findings.txt, findings-pin.txt), so that two builds can be compared byte
// for byte.
//
// Wall and CPU time per pass are printed (best and median). Each pass is its
// own function (scan_pass, refs_pass, and inside refs_pass collect_all,
// fake_answers, then the library's queries, judge and render_json), so an
// instruction count splits the same way:
//   valgrind --tool=callgrind --callgrind-out-file=cg.out refs_bench FOLDER 1
//   callgrind_annotate --inclusive=yes cg.out | grep -E 'scan_pass|refs_pass|collect|judge|render_json|queries|fake_answers'

#include <algorithm>
#include <chrono>
#include <ctime>
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

double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

struct Input {
  std::vector<bw::refs::ProjectFile> files;
  std::vector<std::string> texts;
};

// The uses of every file, kept per file as collect() gives them, and
// pointers to all of them in order: what `basewatch refs` holds
// (app/cmd_refs.cpp).
struct Collected {
  std::vector<std::vector<bw::refs::Use>> per_file;
  std::vector<const bw::refs::Use*> uses;
};

// What refs_pass judged.
struct RefsOut {
  size_t findings = 0, json_bytes = 0;
};

// The baseline: dockerfile::scan of every file, as `scan` does.
[[gnu::noinline]] size_t scan_pass(const Input& in) {
  size_t n = 0;
  for (size_t i = 0; i < in.files.size(); ++i) n += bw::dockerfile::scan(in.texts[i], in.files[i].file, in.files[i].options).images.size();
  return n;
}

[[gnu::noinline]] Collected collect_all(const Input& in) {
  Collected c;
  c.per_file.reserve(in.files.size());
  for (size_t i = 0; i < in.files.size(); ++i) {
    auto u = bw::refs::collect(in.files[i], in.texts[i]);
    if (u) c.per_file.push_back(std::move(*u));
  }
  for (const auto& list : c.per_file) {
    for (const auto& u : list) c.uses.push_back(&u);
  }
  return c;
}

// Registry lookups off: every reference asked about is found, with one digest.
[[gnu::noinline]] bw::refs::Answers fake_answers(const std::vector<const bw::refs::Use*>& uses, const bw::config::Config& cfg) {
  bw::refs::Answers answers;
  for (const auto& q : bw::refs::queries(uses, cfg)) {
    bw::refs::Lookup l;
    l.found = true;
    l.digest = "sha256:" + std::string(64, 'd');
    answers[q.ref.tag.empty() ? q.ref.str() : q.ref.tag_ref()] = l;
  }
  return answers;
}

// What `refs --json` does on top: collect, look up, judge, render, and
// free it all, as the scan pass frees what it scanned (so both passes of
// the next run start from the same heap).
[[gnu::noinline]] RefsOut refs_pass(const Input& in, const bw::config::Config& cfg) {
  RefsOut out;
  auto collected = collect_all(in);
  const auto& uses = collected.uses;
  auto answers = fake_answers(uses, cfg);
  auto findings = bw::refs::judge(uses, cfg, answers, false);
  out.json_bytes = bw::refs::render_json(findings).size();
  out.findings = findings.size();
  return out;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Every field of every finding, one line each.
std::string fields(const std::vector<bw::refs::Finding>& findings) {
  std::string out;
  for (const auto& f : findings) {
    const std::string index = std::to_string(f.use->index), flags = std::to_string(f.violation) + std::to_string(f.lookup_failed);
    for (std::string_view field : {std::string_view(f.use->file()), std::string_view(":"), std::string_view(index), std::string_view("\t"),
                                   f.ref, std::string_view("\t"), f.status, std::string_view("\t"), f.mirror, std::string_view("\t"),
                                   f.detail, std::string_view("\t"), std::string_view(flags), std::string_view("\t"), f.fix,
                                   std::string_view("\t"), f.fix_reason, std::string_view("\n")}) {
      out += field;
    }
  }
  return out;
}

// Registry answers of every kind, chosen by the reference's hash: missing,
// not found, unreadable, another digest, platforms, or the mirror's digest.
bw::refs::Answers varied_answers(const std::vector<const bw::refs::Use*>& uses, const bw::config::Config& cfg) {
  bw::refs::Answers answers;
  for (const auto& q : bw::refs::queries(uses, cfg)) {
    std::string key = q.ref.tag.empty() ? q.ref.str() : q.ref.tag_ref();
    bw::refs::Lookup l;
    switch (std::hash<std::string>{}(key) % 7) {
      case 0: continue;
      case 1: break;
      case 2: l.error = "connection refused"; break;
      case 3: l.found = true; l.digest = "sha256:" + std::string(64, 'e'); break;
      case 4:
        l.found = true;
        l.digest = "sha256:" + std::string(64, 'e');
        l.platforms["linux/amd64"] = "sha256:" + std::string(64, 'd');
        break;
      default: l.found = true; l.digest = "sha256:" + std::string(64, 'd');
    }
    answers[key] = l;
  }
  return answers;
}

void write_outputs(const std::string& dir, const std::vector<const bw::refs::Use*>& uses, const bw::config::Config& cfg) {
  fs::create_directories(dir);
  auto answers = fake_answers(uses, cfg);
  auto findings = bw::refs::judge(uses, cfg, answers, false);
  write_file(dir + "/refs.json", bw::refs::render_json(findings));
  write_file(dir + "/refs.sarif", bw::refs::render_sarif(findings, "bench"));
  write_file(dir + "/refs.txt", bw::refs::render_table(findings));
  write_file(dir + "/findings.txt", fields(findings));
  write_file(dir + "/findings-pin.txt", fields(bw::refs::judge(uses, cfg, answers, true)));
  // Every status: the internal registry as the mirror of public.ecr.aws for
  // one platform, one registry outside the policy, answers of every kind.
  auto varied = cfg;
  auto r = rule("public.ecr.aws/*", "registry.example.com:5000/*");
  r.all_platforms = false;
  r.platforms = {"linux/amd64"};
  varied.mirrors.push_back(r);
  std::vector<bw::config::HostPattern> allowed;
  for (const char* h : {"docker.io", "ghcr.io", "quay.io", "gcr.io", "public.ecr.aws", "registry.example.com:5000", "cgr.dev",
                        "mirror.example.com"}) {
    allowed.push_back(*bw::config::parse_host_pattern(h));
  }
  varied.policy.allowed_registries = allowed;
  auto varied_in = varied_answers(uses, varied);
  auto vf = bw::refs::judge(uses, varied, varied_in, false);
  write_file(dir + "/varied.json", bw::refs::render_json(vf));
  write_file(dir + "/varied.sarif", bw::refs::render_sarif(vf, "bench"));
  write_file(dir + "/varied.txt", bw::refs::render_table(vf));
  write_file(dir + "/varied-findings.txt", fields(vf));
  write_file(dir + "/varied-findings-pin.txt", fields(bw::refs::judge(uses, varied, varied_in, true)));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double best(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: refs_bench FOLDER [RUNS] [OUT]\n");
    return 2;
  }
  int runs = argc > 2 ? std::atoi(argv[2]) : 10;
  if (runs < 1) runs = 1;
  Input in;
  auto& files = in.files;
  auto& texts = in.texts;
  for (const auto& e : fs::recursive_directory_iterator(argv[1])) {
    if (!e.is_regular_file()) continue;
    std::string name = e.path().filename().string();
    if (name != "Dockerfile" && !name.ends_with(".Dockerfile") && !name.starts_with("Dockerfile.")) continue;
    std::ifstream f(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
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

  // Each run times scan, then refs, on the same files: the ratio is taken
  // within one run, under the same load.
  std::vector<double> scan_wall, refs_wall, scan_cpu, refs_cpu;
  size_t images = 0;
  RefsOut last;
  for (int r = 0; r < runs; ++r) {
    auto t0 = Clock::now();
    double c0 = cpu_ms();
    images = scan_pass(in);
    auto t1 = Clock::now();
    double c1 = cpu_ms();
    last = refs_pass(in, cfg);
    auto t2 = Clock::now();
    double c2 = cpu_ms();
    scan_wall.push_back(ms(t1 - t0));
    refs_wall.push_back(ms(t2 - t1));
    scan_cpu.push_back(c1 - c0);
    refs_cpu.push_back(c2 - c1);
  }
  std::printf("%zu files, %zu images scanned, %zu references judged, %zu bytes of JSON\n", files.size(), images, last.findings,
              last.json_bytes);
  std::printf("wall: scan best %.1f ms, median %.1f ms; refs best %.1f ms, median %.1f ms  (ratio %.2f best, %.2f median)\n",
              best(scan_wall), median(scan_wall), best(refs_wall), median(refs_wall), best(refs_wall) / best(scan_wall),
              median(refs_wall) / median(scan_wall));
  std::printf("cpu:  scan best %.1f ms, median %.1f ms; refs best %.1f ms, median %.1f ms  (ratio %.2f best, %.2f median)\n",
              best(scan_cpu), median(scan_cpu), best(refs_cpu), median(refs_cpu), best(refs_cpu) / best(scan_cpu),
              median(refs_cpu) / median(scan_cpu));
  auto collected = collect_all(in);
  const auto& uses = collected.uses;
  if (argc > 3) write_outputs(argv[3], uses, cfg);

  // refs fix --write: every file rewritten, scanned again, compared.
  auto answers = fake_answers(uses, cfg);
  auto findings = bw::refs::judge(uses, cfg, answers, false);
  std::map<std::string, std::vector<const bw::refs::Finding*>> by_file;
  for (const auto& f : findings) {
    if (!f.fix.empty()) by_file[f.use->file()].push_back(&f);
  }
  size_t rewritten = 0, left = 0, wrong_files = 0, stray_bytes = 0, changed_files = 0;
  auto t0 = Clock::now();
  for (size_t i = 0; i < files.size(); ++i) {
    auto it = by_file.find(files[i].file);
    if (it == by_file.end()) continue;
    std::vector<bw::dockerfile::RewriteRequest> requests;
    for (const auto* f : it->second) requests.push_back({f->use->index, std::string(f->fix)});
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
