// The `policy` section of /v1/status, basewatch_policy_violations and the
// dashboard's Policy section: the findings of `basewatch refs`, judged from
// the digests the store has recorded instead of HEAD requests.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "db/store.h"
#include "refs/refs.h"
#include "watcher/model.h"

namespace bw::api {

// Every Dockerfile of the model's projects, scanned as `basewatch refs` does.
std::vector<refs::ProjectFile> project_files(const config::Config& cfg, const watcher::Model& model);

// What the store recorded for a reference, as a refs::Lookup.
// The upstream side reads the refs table (what the watcher polls). The
// mirror side reads the mirrors table (db::Store::get_mirror: what the
// mirror's tag holds, and, while the copy is in step, the upstream's
// platform digests, which a copy keeps byte for byte); a mirror no rule
// copies to falls back to the refs table. A reference never checked is
// "not checked yet".
refs::Lookup recorded_lookup(db::Store& store, const oci::Reference& ref, bool mirror_side);

// The references of the model's projects and their findings, reused while
// the model is the same (the Dockerfiles are read once per model).
class PolicyCache {
 public:
  // {"require_mirror", "allowed_registries", "counts": {status: n},
  //  "violations": n, "first_violations": [refs --json entries, at most 20]}
  nlohmann::json status_json(const config::Config& cfg, std::shared_ptr<const watcher::Model> model, db::Store& store);

 private:
  std::mutex m_mutex;
  std::shared_ptr<const watcher::Model> m_model;
  std::vector<refs::Use> m_uses;
};

inline constexpr size_t k_policy_first_violations = 20;

}  // namespace bw::api
