// The cluster: what several `basewatch serve` instances sharing one
// PostgreSQL database keep there to agree on one leader, find each other,
// and reach the leader.
//
//   - The lease (one row: epoch, holder, since, expires_at). The leader
//     renews it; when it runs out unrenewed, another instance takes it with
//     the next epoch. Every write the leader makes checks the epoch in the
//     same transaction (Store::set_fence), so a leader that lost the lease
//     (it hung, lost its connection) cannot write after another took over.
//     Times are the server's clock, so the instances' clocks need not agree.
//   - The instances (one row each, refreshed by a heartbeat): what
//     /v1/status `cluster.instances` lists.
//   - Requests for the leader (a check now, a mirror sync) that any
//     instance's API or inbound hooks receive: a row each, taken by the
//     leader, and a NOTIFY on the channel `basewatch` that wakes it at once.
//     A request made while no instance leads waits for the next leader.
//
// cluster/leadership.h decides with these; db/ only reads and writes them.
// One engine: PostgreSQL (pg_cluster.h). A SQLite file serves one
// instance and has no cluster.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "util/result.h"
#include "util/time.h"

namespace bw::db {

// The lease as the server sees it.
struct Lease {
  int64_t epoch = 0;       // 0: never taken
  std::string holder;      // instance id, "" when never taken
  int64_t since = 0;       // unix ms (server clock) when the holder took it
  int64_t expires_in = 0;  // ms until it runs out (server clock); <= 0: it has run out
};

// One `basewatch serve`.
struct Instance {
  std::string id;
  std::string host;
  int64_t pid = 0;
  std::string version;
  int64_t started_at = 0;  // unix ms (its own clock)
  int64_t last_seen = 0;   // unix ms (server clock): its last heartbeat
};

// A request for the leader. kind "check" (ref "" for all; source manual or
// webhook); others are the leader's to define (the mirror copier's "sync").
struct Ask {
  std::string kind;
  std::string ref;
  std::string source;
};

class Cluster {
 public:
  virtual ~Cluster() = default;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // A link of its own to the cluster of `database` (a connection, kept
  // and reconnected). PostgreSQL only: a SQLite path is ErrorKind::invalid.
  // `timeouts`: how long a call may wait for the server (row locks, a cut
  // network), 0 for libpq's defaults.
  static Result<std::unique_ptr<Cluster>> open(const std::string& database, Millis timeouts = Millis(0));

  // One lease step for `instance`. With `epoch` (the epoch it holds, 0:
  // none) still the lease's, renews it: it now runs out `lease` from now.
  // Else, when the lease has run out (or was never taken, or released),
  // takes it: the next epoch, since = now. Else leaves it. Returns the
  // lease as it is afterwards: the caller holds it when holder and epoch
  // are its own.
  virtual Result<Lease> claim(const std::string& instance, int64_t epoch, Millis lease) = 0;
  // Gives the lease up at once (it has run out) when `epoch` of `instance`
  // still holds it, and tells the others (NOTIFY released).
  virtual Status release(const std::string& instance, int64_t epoch) = 0;
  // The lease, read without taking part.
  virtual Result<Lease> lease() = 0;

  // Says `self` is alive (last_seen = now) and forgets instances not seen
  // for `forget_after`.
  virtual Status heartbeat(const Instance& self, Millis forget_after) = 0;
  // Removes an instance that stops.
  virtual Status leave(const std::string& instance) = 0;
  // Every instance, oldest (started_at, then id) first.
  virtual Result<std::vector<Instance>> instances() = 0;

  // Stores a request for the leader and wakes it (NOTIFY request).
  virtual Status ask(const Ask& ask) = 0;
  // The leader of `epoch` takes every request, oldest first: deleted in
  // one transaction that checks the epoch as Store::set_fence does
  // (ErrorKind::fenced when another holds the lease: they stay for it).
  virtual Result<std::vector<Ask>> take_asks(int64_t epoch) = 0;

  // NOTIFY basewatch, `topic`: every instance listening gets `topic`.
  virtual Status notify(const std::string& topic) = 0;
  // Listens on the channel from now on (again after a reconnect), and
  // waits up to `timeout` for notifications: their topics, in order, as
  // soon as one comes (empty when none came). A connection that broke is
  // made again (notifications sent meanwhile are lost: the caller's
  // periodic steps cover them).
  virtual Result<std::vector<std::string>> wait(Millis timeout) = 0;

 protected:
  Cluster() = default;
};

}  // namespace bw::db
