#include "api/dashboard.h"

#include <algorithm>
#include <cstdio>
#include <string>

namespace bw::api {

using json = nlohmann::json;

namespace {

constexpr const char* k_css = R"CSS(
:root{--fg:#1d232b;--muted:#5d6875;--line:#dde2e8;--bg:#f6f7f9;--ok:#1a7f37;--warn:#9a6700;--bad:#c62828;--accent:#0b5cad}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header{background:#16202c;color:#fff;padding:14px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0}
header .meta{color:#c5d0dc}
main{padding:16px 24px;max-width:1400px}
.tiles{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:16px}
.tile{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px}
.tile b{display:block;font-size:22px}
.tile span{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.tile.t-bad{border-color:var(--bad)} .tile.t-bad b{color:var(--bad)} .tile.t-warn b{color:var(--warn)}
section{background:#fff;border:1px solid var(--line);border-radius:6px;margin-bottom:16px}
section h2{font-size:15px;margin:0;padding:10px 14px;border-bottom:1px solid var(--line)}
section p.empty{color:var(--muted);padding:4px 14px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:7px 14px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.04em}
tr:last-child td{border-bottom:0}
code{font:12.5px ui-monospace,"DejaVu Sans Mono",monospace;background:#eef1f4;padding:1px 4px;border-radius:3px}
.ref{font-weight:600;word-break:break-all}
.muted{color:var(--muted)}
.plat{white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.ok{background:var(--ok)} .warn{background:var(--warn)} .bad{background:var(--bad)} .idle{background:#8a94a0}
.err{color:var(--bad)}
button{font:inherit;padding:3px 10px;border:1px solid var(--accent);background:#fff;color:var(--accent);border-radius:4px;cursor:pointer}
button:disabled{opacity:.6;cursor:default}
form{margin:0}
.pager{margin:0;padding:8px 14px;color:var(--muted);display:flex;gap:16px;flex-wrap:wrap}
.pager a{color:var(--accent)}
details summary{cursor:pointer;color:var(--accent)}
.graph{overflow:auto;padding:4px 14px 12px;max-height:640px}
.legend .sw{display:inline-block;width:20px;height:10px;border:1px solid #8a94a0;border-radius:3px;margin:0 4px 0 10px;vertical-align:-1px}
.sw.up{background:#eef4fb}.sw.mi{background:#f1effa}.sw.pr{background:#fff}.sw.im{background:#eef8f0}
pre.log{font:12px ui-monospace,"DejaVu Sans Mono",monospace;background:#0f1720;color:#d7e0ea;padding:8px 10px;border-radius:4px;
max-height:260px;max-width:720px;overflow:auto;white-space:pre-wrap;word-break:break-all;margin:6px 0 0}
)CSS";

constexpr const char* k_retry_js = R"JS(
(function(){
  var t = sessionStorage.getItem('basewatch-token');
  document.querySelectorAll('form.retry').forEach(function(f){
    f.addEventListener('submit', function(e){
      e.preventDefault();
      var b = f.querySelector('button');
      b.disabled = true; b.textContent = 'Queuing';
      var h = {}; if (t) h['Authorization'] = 'Bearer ' + t;
      fetch(f.getAttribute('action'), {method: 'POST', headers: h}).then(function(r){
        b.textContent = r.status === 202 ? 'Queued' : 'Failed (' + r.status + ')';
        if (r.status === 202) setTimeout(function(){ location.reload(); }, 1500); else b.disabled = false;
      }).catch(function(){ b.textContent = 'Failed'; b.disabled = false; });
    });
  });
})();
)JS";

std::string esc(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return html_escape(v.get_ref<const std::string&>());
  return html_escape(v.dump());
}

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

int64_t num(const json& obj, const char* key) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<int64_t>() : 0;
}

// "sha256:0123456789abcdef..." -> <code title=full>0123456789ab</code>
std::string short_digest(const std::string& digest) {
  if (digest.empty()) return "<span class=\"muted\">-</span>";
  auto colon = digest.find(':');
  std::string hex = colon == std::string::npos ? digest : digest.substr(colon + 1);
  return "<code title=\"" + html_escape(digest) + "\">" + html_escape(hex.substr(0, 12)) + "</code>";
}

std::string span_text(int64_t seconds) {
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 86400) return std::to_string(seconds / 3600) + "h " + std::to_string(seconds % 3600 / 60) + "m";
  return std::to_string(seconds / 86400) + "d " + std::to_string(seconds % 86400 / 3600) + "h";
}

// An RFC 3339 stamp as "5m ago" / "in 3m", with the stamp as the tooltip.
std::string when(const std::string& stamp, TimePoint now, const char* never = "never") {
  if (stamp.empty()) return std::string("<span class=\"muted\">") + never + "</span>";
  auto t = parse_rfc3339(stamp);
  if (!t) return html_escape(stamp);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - *t).count();
  std::string text = secs >= 0 ? span_text(secs) + " ago" : "in " + span_text(-secs);
  if (secs == 0) text = "now";
  return "<time datetime=\"" + html_escape(stamp) + "\" title=\"" + html_escape(stamp) + "\">" + text + "</time>";
}

std::string badge(const std::string& cls, const std::string& text) {
  return "<span class=\"badge " + cls + "\">" + html_escape(text) + "</span>";
}

std::string tile(const std::string& label, int64_t value, const char* cls = "") {
  return std::string("<div class=\"tile ") + cls + "\"><b>" + std::to_string(value) + "</b><span>" + html_escape(label) +
         "</span></div>";
}

// A link to another page of references; the default page size stays out of it.
std::string page_href(size_t offset, size_t limit) {
  if (limit == k_dashboard_page_size) return "/?offset=" + std::to_string(offset);
  return "/?limit=" + std::to_string(limit) + "&amp;offset=" + std::to_string(offset);
}

// "References 201–400 of 10000 · 3 with errors, listed first", previous/next.
std::string images_pager(const DashboardInput& in, size_t shown) {
  size_t total = in.images_total ? in.images_total : shown;
  bool paged = in.images_limit > 0 && (in.images_offset > 0 || total > shown);
  if (!paged && in.images_failing == 0) return "";
  std::string h = "<p class=\"pager\"><span>";
  if (shown > 0) {
    h += "References " + std::to_string(in.images_offset + 1) + "&ndash;" + std::to_string(in.images_offset + shown) + " of " +
         std::to_string(total);
  } else {
    h += "No references on this page, " + std::to_string(total) + " in all";
  }
  if (in.images_failing > 0) h += " &middot; " + std::to_string(in.images_failing) + " with errors, listed first";
  h += "</span>";
  if (paged && in.images_offset > 0) {
    size_t prev = in.images_offset > in.images_limit ? in.images_offset - in.images_limit : 0;
    if (prev >= total && total > 0) prev = (total - 1) / in.images_limit * in.images_limit;  // from past the end: the last page
    h += "<a rel=\"prev\" href=\"" + page_href(prev, in.images_limit) + "\">&larr; Previous " + std::to_string(in.images_limit) + "</a>";
  }
  if (paged && in.images_offset + shown < total) {
    h += "<a rel=\"next\" href=\"" + page_href(in.images_offset + shown, in.images_limit) + "\">Next " +
         std::to_string(std::min(in.images_limit, total - in.images_offset - shown)) + " &rarr;</a>";
  }
  return h + "</p>";
}

std::string images_section(const DashboardInput& in) {
  const json& images = in.images;
  TimePoint now = in.now;
  size_t shown = images.is_array() ? images.size() : 0;
  std::string h = "<section id=\"images\"><h2>Watched bases</h2>";
  if (shown == 0 && in.images_total == 0) return h + "<p class=\"empty\">Nothing is watched yet.</p></section>";
  std::string pager = images_pager(in, shown);
  h += pager;
  if (shown == 0) return h + "</section>";
  h += "<table><thead><tr><th>Reference</th><th>Platforms</th><th>Tag digest</th><th>Last check</th>"
       "<th>Last change</th><th>Feeds</th><th>State</th></tr></thead><tbody>";
  for (const auto& i : images) {
    h += "<tr><td class=\"ref\">" + esc(i.value("ref", json())) + "</td><td>";
    const json& digests = i.contains("platforms") ? i["platforms"] : json::object();
    const json& wanted = i.contains("watched_platforms") ? i["watched_platforms"] : json::array();
    for (const auto& p : wanted) {
      std::string name = p.is_string() ? p.get<std::string>() : p.dump();
      h += "<div class=\"plat\">" + html_escape(name) + " " + short_digest(str(digests, name.c_str())) + "</div>";
    }
    h += "</td><td>" + short_digest(str(i, "digest")) + "</td>";
    h += "<td>" + when(str(i, "last_checked"), now) + "</td>";
    h += "<td>" + when(str(i, "last_changed"), now) + "</td><td>";
    std::string feeds;
    for (const auto& d : i.value("dependents", json::array())) feeds += (feeds.empty() ? "" : ", ") + esc(d);
    if (i.value("produced", false)) feeds += std::string(feeds.empty() ? "" : " ") + "<span class=\"muted\">(built here)</span>";
    h += (feeds.empty() ? "<span class=\"muted\">watch only</span>" : feeds) + "</td><td>";
    std::string err = str(i, "last_error");
    if (!err.empty()) h += badge("bad", "error") + "<div class=\"err\">" + html_escape(err) + "</div>";
    else if (str(i, "last_checked").empty()) h += badge("idle", "waiting");
    else h += badge("ok", "ok");
    h += "</td></tr>";
  }
  return h + "</tbody></table>" + pager + "</section>";
}

std::string deliveries_section(const json& deliveries, TimePoint now) {
  std::string h = "<section id=\"deliveries\"><h2>Deliveries waiting, failing or dead</h2>";
  if (!deliveries.is_array() || deliveries.empty()) return h + "<p class=\"empty\">None: every rebuild request was delivered.</p></section>";
  h += "<table><thead><tr><th>Delivery</th><th>Trigger</th><th>Project</th><th>Changed</th><th>State</th>"
       "<th>Attempts</th><th>Next attempt</th><th>Last error</th><th></th></tr></thead><tbody>";
  for (const auto& d : deliveries) {
    std::string id = str(d, "id");
    std::string state = str(d, "state");
    std::string cls = state == "dead" ? "bad" : state == "failed" ? "warn" : "idle";
    h += "<tr><td><code>" + html_escape(id) + "</code></td><td>" + esc(d.value("trigger", json())) + "</td><td>" +
         esc(d.value("project", json())) + "</td><td>";
    for (const auto& r : d.value("refs", json::array())) h += "<div class=\"ref\">" + esc(r) + "</div>";
    std::string waiting;
    if (d.contains("waiting_for") && d["waiting_for"].is_object()) {
      waiting = "<div class=\"plat\">waits for the copy to " + esc(d["waiting_for"].value("mirror", json())) + "</div>";
    }
    h += "</td><td>" + badge(cls, state) + waiting + "</td><td>" + std::to_string(num(d, "attempts")) + "</td><td>" +
         when(str(d, "next_attempt_at"), now, "-") + "</td><td class=\"err\">" + esc(d.value("last_error", json())) +
         "</td><td><form class=\"retry\" method=\"post\" action=\"/v1/deliveries/" + html_escape(id) +
         "/retry\"><button type=\"submit\">Retry</button></form></td></tr>";
  }
  return h + "</tbody></table></section>";
}

// A duration in ms as "850ms", "12.3s", "4m 05s".
std::string duration_text(int64_t ms) {
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 60'000) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lldm %02llds", static_cast<long long>(ms / 60'000), static_cast<long long>(ms % 60'000 / 1000));
  return buf;
}

// Task builds: each one's last attempt, with its exit code, duration, the
// digest it pushed and the end of its log (folded).
std::string builds_section(const json& builds, TimePoint now) {
  std::string h = "<section id=\"builds\"><h2>Builds</h2>";
  if (!builds.is_array() || builds.empty()) return h + "<p class=\"empty\">No build has run yet.</p></section>";
  h += "<table><thead><tr><th>Delivery</th><th>Project</th><th>Trigger</th><th>State</th><th>Last attempt</th>"
       "<th>Exit code</th><th>Took</th><th>Pushed</th><th>Error and log</th></tr></thead><tbody>";
  for (const auto& d : builds) {
    std::string state = str(d, "state");
    std::string cls = state == "delivered" ? "ok" : state == "dead" ? "bad" : state == "failed" ? "warn" : "idle";
    const json& a = d.contains("last_attempt") ? d["last_attempt"] : json();
    h += "<tr><td><code>" + esc(d.value("id", json())) + "</code></td><td>" + esc(d.value("project", json())) + "</td><td>" +
         esc(d.value("trigger", json())) + "</td><td>" + badge(cls, state == "delivered" ? "built" : state) + "</td>";
    if (!a.is_object()) {
      h += "<td colspan=\"5\" class=\"muted\">not started</td></tr>";
      continue;
    }
    h += "<td>" + when(str(a, "at"), now) + "</td><td>" + std::to_string(num(a, "status")) + "</td><td>" +
         duration_text(num(a, "duration_ms")) + "</td><td>" + short_digest(str(a, "pushed_digest")) + "</td><td>";
    std::string err = str(a, "error");
    if (!err.empty()) h += "<div class=\"err\">" + html_escape(err) + "</div>";
    std::string tail = str(a, "output_tail");
    if (!tail.empty()) h += "<details><summary>log tail</summary><pre class=\"log\">" + html_escape(tail) + "</pre></details>";
    h += "</td></tr>";
  }
  return h + "</tbody></table></section>";
}

std::string mirrors_section(const json& mirrors, TimePoint now) {
  if (!mirrors.is_array() || mirrors.empty()) return "";
  std::string h = "<section id=\"mirrors\"><h2>Mirrors: local copies</h2><table><thead><tr><th>Mirror</th><th>Upstream</th>"
                  "<th>State</th><th>Digest</th><th>Last copy</th><th>Waiting</th><th>Last error</th></tr></thead><tbody>";
  for (const auto& m : mirrors) {
    std::string state = str(m, "state");
    std::string cls = state == "in-sync" ? "ok" : state == "failed" || state == "drift" ? "bad" : "warn";
    std::string last = "-";
    if (m.contains("last_copy") && m["last_copy"].is_object()) {
      const json& c = m["last_copy"];
      last = when(str(c, "at"), now) + ": " + std::to_string(num(c, "blobs_uploaded")) + " uploaded, " +
             std::to_string(num(c, "blobs_mounted")) + " mounted, " + std::to_string(num(c, "blobs_skipped")) + " there";
    }
    int64_t waiting = num(m, "waiting_deliveries");
    h += "<tr><td class=\"ref\">" + esc(m.value("mirror", json())) + "</td><td class=\"ref\">" + esc(m.value("upstream", json())) +
         "</td><td>" + badge(cls, state) + "</td><td>" + short_digest(str(m, "mirror_digest")) + "</td><td>" + last +
         "</td><td>" + (waiting ? badge("warn", std::to_string(waiting) + " rebuild(s)") : std::string("-")) +
         "</td><td class=\"err\">" + esc(m.value("last_error", json())) + "</td></tr>";
  }
  return h + "</tbody></table></section>";
}

std::string events_section(const json& events, TimePoint now) {
  std::string h = "<section id=\"events\"><h2>Recent changes</h2>";
  if (!events.is_array() || events.empty()) return h + "<p class=\"empty\">No base has changed yet.</p></section>";
  h += "<table><thead><tr><th>When</th><th>Reference</th><th>Outcome</th><th>Source</th><th>Digest</th>"
       "<th>Platforms moved</th><th>Deliveries</th></tr></thead><tbody>";
  for (const auto& e : events) {
    std::string outcome = str(e, "outcome");
    std::string cls = outcome == "fired" ? "ok" : outcome == "stale-pin" ? "warn" : "idle";
    h += "<tr><td>" + when(str(e, "detected_at"), now) + "</td><td class=\"ref\">" + esc(e.value("ref", json())) +
         "</td><td>" + badge(cls, outcome) + "</td><td>" + esc(e.value("source", json())) + "</td><td>" +
         short_digest(str(e, "old_digest")) + " &rarr; " + short_digest(str(e, "new_digest")) + "</td><td>";
    if (e.contains("platforms") && e["platforms"].is_object()) {
      for (const auto& [p, od] : e["platforms"].items()) h += "<div class=\"plat\">" + html_escape(p) + "</div>";
    }
    h += "</td><td>";
    for (const auto& id : e.value("deliveries", json::array())) h += "<div><code>" + esc(id) + "</code></div>";
    h += "</td></tr>";
  }
  return h + "</tbody></table></section>";
}

// Several instances on one database (the status names a lease): who
// leads, and each instance with its last heartbeat. Alone (SQLite) there is
// nothing to show.
bool shared_cluster(const json& status) {
  return status.contains("cluster") && status["cluster"].is_object() && status["cluster"].value("lease_seconds", json()).is_number();
}

std::string cluster_section(const json& status, TimePoint now) {
  if (!shared_cluster(status)) return "";
  const json& c = status["cluster"];
  std::string leader = str(c, "leader"), self = str(c, "instance");
  std::string h = "<section id=\"cluster\"><h2>Cluster</h2><p>";
  h += leader.empty() ? "<span class=\"err\">No instance leads right now</span> (the lease ran out; the next one takes it within "
                           + std::to_string(num(c, "lease_seconds")) + "s)."
                      : "Leader <code>" + html_escape(leader) + "</code> since " + when(str(c, "leader_since"), now) +
                            (leader == self ? "; this page comes from it." : "; this page comes from <code>" + html_escape(self) + "</code>, a follower.");
  h += "</p>";
  const json& list = c.contains("instances") && c["instances"].is_array() ? c["instances"] : json::array();
  if (!list.empty()) {
    h += "<table><thead><tr><th>Instance</th><th>Role</th><th>Host</th><th>PID</th><th>Version</th><th>Last seen</th></tr></thead><tbody>";
    for (const auto& i : list) {
      std::string id = str(i, "id");
      h += "<tr><td><code>" + html_escape(id) + "</code></td><td>" + (id == leader ? badge("ok", "leader") : badge("idle", "follower")) +
           "</td><td>" + esc(i.value("host", json())) + "</td><td>" + std::to_string(num(i, "pid")) + "</td><td>" +
           esc(i.value("version", json())) + "</td><td>" + when(str(i, "last_seen"), now) + "</td></tr>";
    }
    h += "</tbody></table>";
  }
  return h + "</section>";
}

std::string service_section(const json& status, TimePoint now) {
  std::string h = cluster_section(status, now);
  const json& regs = status.contains("registries") ? status["registries"] : json::object();
  const json& hooks = status.contains("inbound") ? status["inbound"] : json::array();
  const json& errors = status.contains("errors") ? status["errors"] : json::array();
  if (errors.is_array() && !errors.empty()) {
    h += "<section id=\"problems\"><h2>Problems</h2><table><tbody>";
    for (const auto& e : errors) h += "<tr><td class=\"err\">" + esc(e) + "</td></tr>";
    h += "</tbody></table></section>";
  }
  if (status.contains("policy") && status["policy"].is_object()) {
    const json& pol = status["policy"];
    h += "<section id=\"policy\"><h2>Policy: references against the mirrors</h2><p>";
    std::string line;
    if (pol.contains("counts") && pol["counts"].is_object()) {
      for (const auto& [name, n] : pol["counts"].items()) {
        if (!n.is_number() || n.get<int64_t>() == 0) continue;
        line += (line.empty() ? "" : ", ") + std::to_string(n.get<int64_t>()) + " " + html_escape(name);
      }
    }
    h += line.empty() ? "No references." : line + ".";
    int64_t broken = pol.value("violations", json(0)).is_number() ? pol["violations"].get<int64_t>() : 0;
    h += broken ? " <span class=\"err\">" + std::to_string(broken) + " break the policy.</span></p>" : " The policy holds.</p>";
    const json& first = pol.contains("first_violations") ? pol["first_violations"] : json::array();
    if (first.is_array() && !first.empty()) {
      h += "<table><thead><tr><th>Status</th><th>Place</th><th>Written</th><th>Should name</th><th>Detail</th></tr></thead><tbody>";
      for (const auto& v : first) {
        std::string where = str(v, "file") + ":" + std::to_string(num(v, "line"));
        h += "<tr><td class=\"err\">" + esc(v.value("status", json())) + "</td><td><code>" + html_escape(where) +
             "</code></td><td class=\"ref\">" + esc(v.value("written", json())) + "</td><td class=\"ref\">" +
             esc(v.value("mirror", json())) + "</td><td>" + esc(v.value("detail", json())) + "</td></tr>";
      }
      h += "</tbody></table>";
    }
    h += "</section>";
  }
  h += "<section id=\"registries\"><h2>Registries</h2>";
  if (!regs.is_object() || regs.empty()) {
    h += "<p class=\"empty\">No registry asked yet.</p>";
  } else {
    h += "<table><thead><tr><th>Registry</th><th>Requests</th><th>Rate limit left</th><th>Last error</th></tr></thead><tbody>";
    for (const auto& [host, r] : regs.items()) {
      std::string limit = r.value("ratelimit_remaining", json()).is_number()
                              ? std::to_string(num(r, "ratelimit_remaining")) +
                                    (r.value("ratelimit_limit", json()).is_number() ? " / " + std::to_string(num(r, "ratelimit_limit")) : "")
                              : "<span class=\"muted\">not reported</span>";
      h += "<tr><td class=\"ref\">" + html_escape(host) + "</td><td>" + std::to_string(num(r, "requests")) + "</td><td>" +
           limit + "</td><td class=\"err\">" + esc(r.value("last_error", json())) + "</td></tr>";
    }
    h += "</tbody></table>";
  }
  h += "</section>";
  if (hooks.is_array() && !hooks.empty()) {
    h += "<section id=\"inbound\"><h2>Inbound hooks</h2><table><thead><tr><th>Name</th><th>Path</th><th>Format</th>"
         "<th>Received</th><th>Accepted</th><th>Refused</th><th>Last</th></tr></thead><tbody>";
    for (const auto& k : hooks) {
      h += "<tr><td>" + esc(k.value("name", json())) + "</td><td><code>" + esc(k.value("path", json())) + "</code></td><td>" +
           esc(k.value("format", json())) + "</td><td>" + std::to_string(num(k, "received")) + "</td><td>" +
           std::to_string(num(k, "accepted")) + "</td><td>" + std::to_string(num(k, "rejected")) + "</td><td>" +
           when(str(k, "last_received_at"), now) + " " + esc(k.value("last_outcome", json())) + "</td></tr>";
    }
    h += "</tbody></table></section>";
  }
  return h;
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_dashboard(const DashboardInput& in) {
  const json& s = in.status;
  const json& c = s.contains("counts") ? s["counts"] : json::object();
  std::string h = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<meta http-equiv=\"refresh\" content=\"30\"><title>basewatch</title><style>";
  h += k_css;
  h += "</style></head><body><header><h1>basewatch</h1><span class=\"meta\">version " + esc(s.value("version", json())) +
       " &middot; up " + span_text(num(s, "uptime_seconds")) + " &middot; last poll " +
       when(str(s, "last_poll"), in.now) + " &middot; next poll " + when(str(s, "next_poll"), in.now, "-") +
       (shared_cluster(s) ? " &middot; " + (str(s["cluster"], "leader") == str(s["cluster"], "instance") ? std::string("leader")
                                                                                                         : std::string("follower"))
                          : std::string()) +
       "</span></header><main><div class=\"tiles\">";
  int64_t failed = num(c, "failed"), dead = num(c, "dead");
  h += tile("references", num(c, "references")) + tile("projects", num(c, "projects")) + tile("pending", num(c, "pending")) +
       tile("failed", failed, failed ? "t-warn" : "") + tile("dead", dead, dead ? "t-bad" : "") +
       tile("delivered", num(c, "delivered"));
  if (num(c, "mirrors") > 0) {
    int64_t behind = num(c, "mirrors_out_of_sync");
    h += tile("mirrors", num(c, "mirrors")) + tile("out of sync", behind, behind ? "t-warn" : "");
  }
  h += "</div>";
  if (!in.graph_svg.empty()) {
    h += "<section id=\"graph-section\"><h2>Dependency graph</h2><p class=\"pager\"><span>";
    h += in.graph_change.empty() ? "No change yet." : "The latest change and what it rebuilt, highlighted: <code>" + html_escape(in.graph_change) + "</code>";
    h += "</span><span class=\"legend\"><i class=\"sw up\"></i>upstream <i class=\"sw mi\"></i>mirror <i class=\"sw pr\"></i>"
         "project <i class=\"sw im\"></i>produced image &middot; dashed: copied to the mirror</span>";
    if (!in.graph_note.empty()) h += "<span>" + html_escape(in.graph_note) + "</span>";
    h += "</p><div class=\"graph\">" + in.graph_svg + "</div></section>";
  }
  h += images_section(in);
  h += mirrors_section(in.mirrors, in.now);
  h += deliveries_section(in.deliveries, in.now);
  h += builds_section(in.builds, in.now);
  h += events_section(in.events, in.now);
  h += service_section(s, in.now);
  if (in.token_required) h += "<p class=\"muted\">Signed in with the API token kept in this tab.</p>";
  h += "</main><script>";
  h += k_retry_js;
  h += "</script></body></html>\n";
  return h;
}

std::string render_login_page() {
  std::string h = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>basewatch: sign in</title><style>";
  h += k_css;
  h += R"HTML(</style></head><body><header><h1>basewatch</h1></header><main>
<section><h2>API token needed</h2><form id="login" style="padding:14px">
<p>This service has <code>api.token_file</code> set. Paste the token to see the dashboard; it is kept only in this tab.</p>
<p><input id="token" type="password" autocomplete="off" size="48" aria-label="API token"> <button type="submit">Open</button></p>
<p id="msg" class="err"></p></form></section></main>
<script>
(function(){
  var key = 'basewatch-token';
  var msg = document.getElementById('msg');
  function open(t){
    fetch(location.pathname + location.search, {headers: {'Authorization': 'Bearer ' + t}}).then(function(r){
      if (r.ok) return r.text().then(function(html){
        sessionStorage.setItem(key, t); document.open(); document.write(html); document.close();
      });
      sessionStorage.removeItem(key);
      msg.textContent = r.status === 401 ? 'That token was refused.' : 'The service answered ' + r.status + '.';
    }).catch(function(){ msg.textContent = 'The service cannot be reached.'; });
  }
  document.getElementById('login').addEventListener('submit', function(e){
    e.preventDefault(); open(document.getElementById('token').value.trim());
  });
  var saved = sessionStorage.getItem(key);
  if (saved) open(saved);
})();
</script></body></html>
)HTML";
  return h;
}

}  // namespace bw::api
