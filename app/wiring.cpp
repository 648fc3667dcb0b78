#include "app/wiring.h"

#include <cstdlib>
#include <filesystem>

#include "triggers/process.h"
#include "util/database_uri.h"
#include "util/strings.h"

namespace bw::app {

std::vector<registry::RegistrySettings> registry_settings(const config::Config& cfg) {
  std::vector<registry::RegistrySettings> out;
  for (const auto& [host, r] : cfg.registries) {
    registry::RegistrySettings s;
    s.host = host;
    s.insecure = r.insecure;
    s.ca_file = r.ca_file;
    s.username = r.username;
    s.password = r.password;
    s.docker_config = r.docker_config;
    s.requests_per_minute = r.requests_per_minute;
    s.concurrency = r.concurrency;
    out.push_back(std::move(s));
  }
  return out;
}

Result<config::Config> load_watching_config(const std::string& path) {
  BW_TRY(auto cfg, config::load(path));
  if (auto st = config::require_something_to_watch(cfg); !st) return st.error();
  return cfg;
}

std::map<std::string, std::unique_ptr<triggers::Trigger>> make_triggers(const config::Config& cfg, Runtime& rt) {
  std::map<std::string, std::unique_ptr<triggers::Trigger>> out;
  // Stateless, so one for the whole process (make_triggers runs again on reload).
  static triggers::RealProcessRunner runner;
  triggers::Seams seams;
  seams.http = rt.http.get();
  seams.runner = &runner;
  seams.build_logs = cfg.builds_logs;
  for (const auto& p : cfg.projects) {
    if (p.dockerfile.empty()) continue;  // globbed projects: the Dockerfile's folder, from the payload
    seams.project_contexts[p.name] =
        p.context.empty() ? std::filesystem::path(p.dockerfile).parent_path().string() : p.context;
  }
  // Build triggers read the project from the running model at each attempt,
  // so Dockerfile rescans and reloads count.
  watcher::Watcher* w = rt.watcher.get();
  seams.build_project = [w](const std::string& name) -> std::optional<triggers::BuildProject> {
    auto model = w->model();
    const watcher::Project* p = model->project(name);
    if (!p) return std::nullopt;
    return triggers::BuildProject{p->name, p->dockerfile, p->context, p->build_args, p->target, p->platforms, p->image};
  };
  seams.registries = cfg.registries;
  seams.clock = &rt.clock;
  seams.on_pushed = [w, waker = &rt.poll_waker](const std::string& image) {
    if (!w->model()->items.count(image)) return;  // nothing builds FROM it
    w->request_check(image, "build");
    waker->wake();
  };
  for (const auto& [name, t] : cfg.triggers) out[name] = triggers::make_trigger(t, seams);
  return out;
}

std::vector<std::string> config_problems(const config::Config& cfg) {
  const char* path = std::getenv("PATH");
  std::string search = path ? path : "/usr/local/bin:/usr/bin:/bin";
  return triggers::check_builds(cfg, [&](const std::string& program) { return triggers::program_on_path(program, search); });
}

triggers::RetryPolicy retry_policy(const config::Config& cfg) {
  triggers::RetryPolicy p;
  p.max_attempts = cfg.retry_max_attempts;
  p.initial = cfg.retry_initial;
  p.max = cfg.retry_max;
  return p;
}

Result<std::unique_ptr<Runtime>> make_runtime(std::shared_ptr<const config::Config> shared, bool cluster) {
  auto rt = std::make_unique<Runtime>();
  rt->cfg = std::move(shared);
  const config::Config& cfg = *rt->cfg;
  if (auto problems = config_problems(cfg); !problems.empty()) return make_error(ErrorKind::invalid, join(problems, "\n"));
  BW_TRY(auto model, watcher::build_model(cfg));
  BW_TRY(rt->store, db::Store::open(cfg.database));
  db::Instance self = cluster::this_instance(BASEWATCH_VERSION, rt->clock.now());
  if (cluster && is_postgres_uri(cfg.database)) {
    cluster::Timing timing{cfg.ha_lease};
    BW_TRY(rt->leader_store, db::Store::open(cfg.database));
    BW_TRY(rt->keeper_link, db::Cluster::open(cfg.database, timing.link_timeouts()));
    BW_TRY(rt->api_link, db::Cluster::open(cfg.database, timing.link_timeouts()));
    rt->leadership = std::make_unique<cluster::LeaseKeeper>(*rt->keeper_link, *rt->api_link, self, cfg.ha_lease, rt->ticks);
  } else if (cluster) {
    rt->leadership = std::make_unique<cluster::Solo>(self);
  }
  rt->http = std::make_unique<net::HttplibClient>();
  rt->registry = std::make_unique<registry::Client>(*rt->http, rt->clock, registry_settings(cfg));
  rt->watcher = std::make_unique<watcher::Watcher>(rt->cfg, std::make_shared<const watcher::Model>(std::move(model)), rt->loop_store(),
                                                   *rt->registry, rt->clock);
  rt->dispatcher = std::make_unique<triggers::Dispatcher>(rt->loop_store(), rt->clock, 4, cfg.builds_concurrency);
  rt->dispatcher->set_triggers(make_triggers(cfg, *rt), retry_policy(cfg));
  // The serve loop runs dispatch_once again at once while a delivery is due;
  // builds waiting for a slot are due, so let it pause instead of spinning.
  rt->dispatcher->set_idle_wait(Millis(100));
  rt->syncer = std::make_unique<mirror::Syncer>(rt->cfg, rt->loop_store(), *rt->registry, rt->clock);
  if (rt->shared()) {
    // Only the leader polls, copies and delivers, and only while it holds the lease.
    cluster::Leadership* lead = rt->leadership.get();
    rt->watcher->set_gate([lead] { return lead->acting(); });
    rt->dispatcher->set_gate([lead] { return lead->acting(); });
    rt->syncer->set_gate([lead] { return lead->acting(); });
  }
  return rt;
}

}  // namespace bw::app
