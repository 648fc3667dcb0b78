// Building the running parts from a config: shared by serve and check.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/leadership.h"
#include "config/config.h"
#include "db/cluster.h"
#include "db/store.h"
#include "mirror/syncer.h"
#include "net/http.h"
#include "registry/client.h"
#include "triggers/dispatcher.h"
#include "util/time.h"
#include "util/waker.h"
#include "watcher/model.h"
#include "watcher/watcher.h"

namespace bw::app {

std::vector<registry::RegistrySettings> registry_settings(const config::Config& cfg);
// config::load plus config::require_something_to_watch: what serve and check
// read (other commands accept a config that only names registries:).
Result<config::Config> load_watching_config(const std::string& path);
triggers::RetryPolicy retry_policy(const config::Config& cfg);

// The config's problems that only show against the machine and the trigger
// types (a builder that is not installed, a build trigger's project without
// an image:): each "file:line:column: message". config check, serve's start
// and reloads refuse a config that has any.
std::vector<std::string> config_problems(const config::Config& cfg);

struct Runtime {
  std::shared_ptr<const config::Config> cfg;  // one copy, shared by the parts
  RealClock clock;
  std::unique_ptr<db::Store> store;
  // With several instances (serve on PostgreSQL): a store of its own for
  // what the leader's loops write, fenced by the lease's epoch while this
  // instance leads (the API and the commands write through `store`,
  // unfenced). Null alone: the loops write through `store`.
  std::unique_ptr<db::Store> leader_store;
  // Who leads (serve only; null for check): Solo alone, else a LeaseKeeper
  // with its two links to the cluster. Declared before the parts whose
  // gate asks it, so it outlives them.
  cluster::BootTicks ticks;
  std::unique_ptr<db::Cluster> keeper_link, api_link;
  std::unique_ptr<cluster::Leadership> leadership;
  std::unique_ptr<net::HttplibClient> http;
  std::unique_ptr<registry::Client> registry;
  std::unique_ptr<watcher::Watcher> watcher;
  // Wakes serve's poll loop: a build that pushed an image asks for it to be
  // checked now, so the projects FROM it fire without waiting for the poll.
  Waker poll_waker;
  std::unique_ptr<triggers::Dispatcher> dispatcher;
  std::unique_ptr<mirror::Syncer> syncer;  // carries out copy jobs (mirrors:), on loop_store()

  // The store the leader's loops (poll, dispatch, copy) write through.
  db::Store& loop_store() { return leader_store ? *leader_store : *store; }
  // Several instances share the database (PostgreSQL, serve).
  bool shared() const { return leader_store != nullptr; }
};

// The triggers of `cfg`, wired to the runtime's parts (HTTP, the process
// runner, the running model for build triggers' projects, the watcher for
// pushed images).
std::map<std::string, std::unique_ptr<triggers::Trigger>> make_triggers(const config::Config& cfg, Runtime& rt);

// `cluster`: for serve, which takes part in the cluster on a PostgreSQL
// database (the watcher, the dispatcher and the copier get the leader's gate
// and store) and leads alone on SQLite. Errors: ErrorKind::invalid for
// config-level problems (a dependency cycle), others (the database) are
// operational.
Result<std::unique_ptr<Runtime>> make_runtime(std::shared_ptr<const config::Config> cfg, bool cluster = false);

// The meta key under which the leader keeps the registry budgets
// (registry::encode_budgets) for the next one.
inline constexpr const char* k_budgets_meta = "registry_budgets";

}  // namespace bw::app
