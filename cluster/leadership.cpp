#include "cluster/leadership.h"

#include <spdlog/spdlog.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <random>

namespace bw::cluster {

namespace {

// The keeper's wait for notifications is cut into pieces this long, so
// stop() is noticed soon.
constexpr Millis k_wait_slice{200};

std::string short_hex(size_t n) {
  static const char* hex = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  for (size_t i = 0; i < n; ++i) out += hex[rd() % 16];
  return out;
}

}  // namespace

Millis BootTicks::now() const {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return Millis(static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000);
}

db::Instance this_instance(const std::string& version, TimePoint started_at) {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || !*name) std::snprintf(name, sizeof(name), "localhost");
  db::Instance self;
  self.host = name;
  self.pid = static_cast<int64_t>(getpid());
  self.version = version;
  self.started_at = to_unix_ms(started_at);
  self.id = self.host + "-" + std::to_string(self.pid) + "-" + short_hex(6);
  return self;
}

Millis Timing::renew_every() const { return lease / 3; }
Millis Timing::act_for() const { return lease * 4 / 5; }
Millis Timing::retry_after() const { return std::clamp(lease / 10, Millis(50), Millis(1000)); }
Millis Timing::forget_after() const { return std::max(lease * 3, Millis(60'000)); }
Millis Timing::idle_limit() const { return std::max(lease / 2, Millis(200)); }
Millis Timing::link_timeouts() const { return std::max(lease / 2, Millis(200)); }
Millis Timing::follow_delay(int64_t expires_in) const {
  return std::clamp(Millis(expires_in + 5), Millis(5), renew_every());
}

void Leadership::set_hooks(Hooks hooks) { m_hooks = std::move(hooks); }

// ---- Solo ----

Status Solo::ask(const db::Ask& a) {
  if (m_hooks.ask) m_hooks.ask(a);
  return ok_status();
}

Status Solo::nudge(const std::string& topic) { return ask(db::Ask{topic, "", ""}); }

View Solo::view() {
  View v;
  v.instance = m_self.id;
  v.leader = m_self.id;
  v.leader_since = m_self.started_at;
  db::Instance me = m_self;
  me.last_seen = to_unix_ms(Clock::now());
  v.instances.push_back(me);
  return v;
}

// ---- LeaseKeeper ----

LeaseKeeper::LeaseKeeper(db::Cluster& keeper, db::Cluster& api, db::Instance self, Millis lease, const Ticks& ticks)
    : m_keeper(keeper), m_api(api), m_self(std::move(self)), m_timing{lease}, m_ticks(ticks) {}

LeaseKeeper::~LeaseKeeper() { stop(); }

bool LeaseKeeper::acting() const { return m_leading.load() && m_ticks.now().count() < m_deadline.load(); }

Status LeaseKeeper::ask(const db::Ask& a) { return m_api.ask(a); }

Status LeaseKeeper::nudge(const std::string& topic) { return m_api.notify(topic); }

View LeaseKeeper::view() {
  return m_view.get([this] {
    View v;
    v.instance = m_self.id;
    v.lease = m_timing.lease;
    if (auto lease = m_api.lease(); lease && lease->epoch > 0 && lease->expires_in > 0) {
      v.leader = lease->holder;
      v.leader_since = lease->since;
    }
    if (auto listed = m_api.instances()) v.instances = std::move(*listed);
    return v;
  });
}

void LeaseKeeper::trouble(const char* what, const Error& e) {
  // The heartbeat and the lease fail alike when the database is away: one
  // line for the trouble, until it clears or changes.
  if (e.message == m_trouble) return;
  m_trouble = e.message;
  spdlog::warn("cluster: {}: {}", what, e.message);
}

Millis LeaseKeeper::step() {
  const Millis t0 = m_ticks.now();
  if (m_announced && t0.count() >= m_deadline.load()) {
    // The renewals failed for too long: the gate closed by itself at the
    // deadline; say so once.
    m_announced = false;
    std::string why = "the lease (epoch " + std::to_string(m_epoch.load()) + ") could not be renewed in time";
    spdlog::warn("cluster: stopped acting as the leader: {}", why);
    if (m_hooks.stopped) m_hooks.stopped(why);
  }
  if (t0 >= m_next_heartbeat) {
    auto beat = m_keeper.heartbeat(m_self, m_timing.forget_after());
    if (beat) m_next_heartbeat = t0 + m_timing.renew_every();
    else trouble("heartbeat", beat.error());
  }
  const int64_t held = m_leading.load() ? m_epoch.load() : 0;
  auto answer = held == 0 && m_leaving.load() ? m_keeper.lease() : m_keeper.claim(m_self.id, held, m_timing.lease);
  if (!answer) {
    trouble("the lease", answer.error());
    return m_timing.retry_after();
  }
  if (!m_trouble.empty()) {
    spdlog::info("cluster: the database answers again");
    m_trouble.clear();
  }
  const db::Lease& lease = *answer;
  if (lease.holder == m_self.id && lease.epoch > 0) {
    m_deadline = (t0 + m_timing.act_for()).count();
    bool anew = lease.epoch != held;
    if (anew || !m_announced) {
      m_epoch = lease.epoch;
      m_leading = false;  // closed while the hooks prepare
      if (m_hooks.taking) m_hooks.taking(lease.epoch);
      m_leading = true;
      m_announced = true;
      m_leader_seen.clear();
      spdlog::info("cluster: leading (epoch {}){}", lease.epoch, anew ? "" : ": the lease was renewed again");
      if (m_hooks.acting) m_hooks.acting();
    }
    take_asks();
    return m_timing.renew_every();
  }
  if (m_leading.exchange(false)) {
    std::string why = "instance " + lease.holder + " holds the lease (epoch " + std::to_string(lease.epoch) + ")";
    if (m_announced) {
      spdlog::warn("cluster: lost the lease: {}; following", why);
      if (m_hooks.stopped) m_hooks.stopped(why);
    }
    m_announced = false;
  }
  m_epoch = 0;
  if (lease.holder != m_leader_seen && lease.expires_in > 0) {
    m_leader_seen = lease.holder;
    spdlog::info("cluster: following: instance {} leads (epoch {})", lease.holder, lease.epoch);
  }
  return m_timing.follow_delay(lease.expires_in);
}

void LeaseKeeper::take_asks() {
  if (!acting()) return;
  auto asks = m_keeper.take_asks(m_epoch.load());
  if (!asks) {
    trouble("requests", asks.error());
    return;
  }
  for (const auto& a : *asks) {
    if (m_hooks.ask) m_hooks.ask(a);
  }
}

bool LeaseKeeper::notified(const std::string& topic) {
  if (topic == "released") return !m_leading.load();
  if (!acting()) return false;
  if (topic == "request") {
    take_asks();
  } else if (m_hooks.ask) {
    m_hooks.ask(db::Ask{topic, "", ""});
  }
  return false;
}

void LeaseKeeper::start() {
  std::lock_guard lock(m_stop_mutex);
  if (m_thread.joinable() || m_stopped) return;
  // The first step here: the service knows whether it leads when it says
  // it is ready.
  Millis first = step();
  m_thread = std::thread([this, first] { run(first); });
}

void LeaseKeeper::run(Millis first) {
  for (Millis next = first;; next = step()) {
    Millis due = m_ticks.now() + next;
    while (true) {
      {
        std::lock_guard lock(m_stop_mutex);
        if (m_stopping) return;
      }
      Millis left = due - m_ticks.now();
      if (left.count() <= 0) break;
      auto notes = m_keeper.wait(std::min(left, k_wait_slice));
      if (!notes) {
        // The link broke and could not be made again yet: wait, then let
        // the step try (and report) it.
        std::unique_lock lock(m_stop_mutex);
        m_stop_cv.wait_for(lock, std::min(left, m_timing.retry_after()), [&] { return m_stopping; });
        break;
      }
      bool now = false;
      for (const auto& topic : *notes) now = notified(topic) || now;
      if (now) break;
    }
  }
}

void LeaseKeeper::stop() {
  {
    std::lock_guard lock(m_stop_mutex);
    if (m_stopped) return;
    m_stopped = true;
    m_stopping = true;
    m_stop_cv.notify_all();
  }
  if (m_thread.joinable()) m_thread.join();
  if (m_leading.exchange(false)) {
    // Given up at once: the next leader need not wait for it to run out.
    if (auto st = m_keeper.release(m_self.id, m_epoch.load()); !st) spdlog::warn("cluster: giving up the lease: {}", st.error().message);
    else spdlog::info("cluster: gave up the lease (epoch {})", m_epoch.load());
  }
  (void)m_keeper.leave(m_self.id);
  m_announced = false;
  m_epoch = 0;
}

}  // namespace bw::cluster
