// The HTTP API on `listen`: health, status, images, graph, events, the
// outbox, check-now, metrics. Handlers only read from the store and the
// watcher's model; the one write (retry) goes through the store's single
// connection, and requests for the leader (check now) through
// Deps::leadership. Every instance of a cluster serves it. Served by
// cpp-httplib's thread pool.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "cluster/leadership.h"
#include "config/config.h"
#include "db/store.h"
#include "registry/client.h"
#include "util/result.h"
#include "util/time.h"
#include "watcher/watcher.h"

namespace bw::api {

struct Deps {
  db::Store* store = nullptr;
  watcher::Watcher* watcher = nullptr;
  registry::Client* registry = nullptr;
  const ClockSource* clock = nullptr;
  TimePoint started_at;
  // Who leads (/v1/status `cluster`), and the way requests reach the
  // leader's loops: a check now (POST /v1/check, inbound hooks) is an ask,
  // a queued retry a nudge ("outbox"). Alone (SQLite) they go to this
  // instance's loops; with several instances, through the database to
  // whichever leads.
  cluster::Leadership* leadership = nullptr;
};

class Server {
 public:
  // The config is shared with the other parts (the watch list can be long).
  Server(Deps deps, std::shared_ptr<const config::Config> cfg);
  Server(Deps deps, const config::Config& cfg) : Server(std::move(deps), std::make_shared<const config::Config>(cfg)) {}
  ~Server();
  // Binds `listen` ("host:port", "[::1]:port"); error when the address is taken.
  Status start();
  void stop();
  int port() const { return m_port; }
  void set_ready(bool ready) { m_ready = ready; }
  void reload(std::shared_ptr<const config::Config> cfg);
  void reload(const config::Config& cfg) { reload(std::make_shared<const config::Config>(cfg)); }

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
  std::thread m_thread;
  int m_port = 0;
  std::atomic<bool> m_ready{false};
};

// "127.0.0.1:8780" -> host, port; "[::1]:8780" too.
Result<std::pair<std::string, int>> parse_listen(const std::string& listen);

}  // namespace bw::api
