#include "api/policy.h"

#include "config/mirrors.h"
#include "util/files.h"

namespace bw::api {

using json = nlohmann::json;

std::vector<refs::ProjectFile> project_files(const config::Config& cfg, const watcher::Model& model) {
  std::vector<refs::ProjectFile> out;
  // A globbed entry's projects are named below its name: match each model
  // project to the config entry its file came from.
  for (const auto& p : model.projects) {
    const config::ProjectConfig* pc = nullptr;
    for (const auto& c : cfg.projects) {
      if ((!c.dockerfile.empty() && c.dockerfile == p.dockerfile && c.name == p.name) ||
          (!c.dockerfiles.empty() && watcher::glob_project_name(c.dockerfiles, p.dockerfile, c.name) == p.name)) {
        pc = &c;
        break;
      }
    }
    refs::ProjectFile pf;
    pf.project = p.name;
    pf.file = p.dockerfile;
    pf.platforms = p.platforms;
    if (pc) {
      pf.options.build_args = pc->build_args;
      pf.options.target = pc->target;
    }
    pf.options.platform = watcher::scan_platform(cfg, p.platforms);
    out.push_back(std::move(pf));
  }
  return out;
}

refs::Lookup recorded_lookup(db::Store& store, const oci::Reference& ref, bool mirror_side) {
  refs::Lookup l;
  if (ref.tag.empty()) {
    l.error = "not checked yet";
    return l;
  }
  if (mirror_side) {
    // What the copier and the watcher recorded of the mirror's tag. Its
    // platforms are the upstream's while the copy is in step (a subset
    // keeps each platform's manifest byte for byte).
    auto m = store.get_mirror(ref.tag_ref());
    if (m && *m) {
      if ((*m)->mirror_digest.empty()) {
        l.error = (*m)->last_error;
        return l;
      }
      l.found = true;
      l.digest = (*m)->mirror_digest;
      if ((*m)->state == "in-sync") {
        if (auto up = store.get_ref((*m)->upstream); up && *up && (*up)->digest == (*m)->upstream_digest) l.platforms = (*up)->platforms;
      }
      return l;
    }
    if (!m) {
      l.error = m.error().message;
      return l;
    }
    // No copy recorded (a mirror no rule copies to): what the watcher saw, if anything.
  }
  auto row = store.get_ref(ref.tag_ref());
  if (!row || !*row || (*row)->digest.empty()) {
    l.error = row ? "not checked yet" : row.error().message;
    return l;
  }
  l.found = true;
  l.digest = (*row)->digest;
  l.platforms = (*row)->platforms;
  return l;
}

json PolicyCache::status_json(const config::Config& cfg, std::shared_ptr<const watcher::Model> model, db::Store& store) {
  std::lock_guard lock(m_mutex);
  if (model != m_model) {
    m_uses.clear();
    for (const auto& pf : project_files(cfg, *model)) {
      auto text = read_file(pf.file);
      if (!text) continue;  // in the model's errors already
      auto uses = refs::collect(pf, *text);
      if (!uses) continue;
      for (auto& u : *uses) m_uses.push_back(std::move(u));
    }
    m_model = std::move(model);
  }
  refs::Answers answers;
  for (const auto& q : refs::queries(m_uses, cfg)) {
    bool mirror_side = config::upstream_of(cfg.mirrors, q.ref.registry, q.ref.repository).has_value();
    answers[q.ref.tag.empty() ? q.ref.str() : q.ref.tag_ref()] = recorded_lookup(store, q.ref, mirror_side);
  }
  auto findings = refs::judge(m_uses, cfg, answers, false);
  json counts = json::object();
  for (const auto& [status, n] : refs::counts(findings)) counts[status] = n;
  json first = json::array();
  size_t violations = 0;
  std::vector<refs::Finding> shown;
  for (const auto& f : findings) {
    if (!f.violation) continue;
    ++violations;
    if (shown.size() < k_policy_first_violations) shown.push_back(f);
  }
  first = json::parse(refs::render_json(shown))["refs"];
  json allowed = nullptr;
  if (cfg.policy.allowed_registries) {
    allowed = json::array();
    for (const auto& p : *cfg.policy.allowed_registries) allowed.push_back(p.text);
  }
  return json{{"require_mirror", cfg.policy.require_mirror}, {"allowed_registries", allowed}, {"counts", counts},
              {"violations", violations}, {"first_violations", first}};
}

}  // namespace bw::api
