// The dashboard's HTML from fixed views: what a person needs is on the page,
// and nothing from the state can inject markup.
#include <catch2/catch.hpp>

#include "api/dashboard.h"

using namespace bw;
using json = nlohmann::json;

namespace {

const std::string k_d1 = "sha256:0123456789abcdef" + std::string(48, '1');
const std::string k_d2 = "sha256:fedcba9876543210" + std::string(48, '2');

api::DashboardInput input() {
  api::DashboardInput in;
  in.now = *parse_rfc3339("2026-11-28T12:10:00Z");
  in.status = {{"version", "0.1.0"}, {"uptime_seconds", 3725}, {"last_poll", "2026-11-28T12:09:30Z"},
               {"next_poll", "2026-11-28T12:14:00Z"},
               {"counts", {{"references", 2}, {"projects", 1}, {"pending", 1}, {"failed", 0}, {"dead", 1}, {"delivered", 4}}},
               {"registries", {{"docker.io", {{"requests", 12}, {"ratelimit_remaining", 93}, {"ratelimit_limit", 100}, {"last_error", nullptr}}}}},
               {"errors", json::array({"web: Dockerfile:3: unknown instruction <FRUM>"})},
               {"inbound", json::array({{{"name", "hub"}, {"path", "/hooks/hub"}, {"format", "dockerhub"}, {"received", 3},
                                          {"accepted", 2}, {"rejected", 1}, {"last_received_at", "2026-11-28T12:05:00Z"},
                                          {"last_outcome", "accepted"}}})}};
  in.images = json::array({
      {{"ref", "docker.io/library/alpine:3.20"}, {"watched_platforms", {"linux/amd64", "linux/arm64"}},
       {"dependents", {"web", "worker"}}, {"produced", false}, {"digest", k_d1},
       {"platforms", {{"linux/amd64", k_d2}, {"linux/arm64", k_d1}}}, {"last_checked", "2026-11-28T12:09:30Z"},
       {"last_changed", "2026-11-28T10:10:00Z"}, {"last_error", nullptr}},
      {{"ref", "r.io/<script>alert(1)</script>:1"}, {"watched_platforms", {"linux/amd64"}}, {"dependents", json::array()},
       {"produced", false}, {"digest", nullptr}, {"platforms", json::object()}, {"last_checked", "2026-11-28T12:09:00Z"},
       {"last_changed", nullptr}, {"last_error", "registry r.io: 401 \"unauthorized\" <b>"}}});
  in.events = json::array({{{"id", 7}, {"ref", "docker.io/library/alpine:3.20"}, {"old_digest", k_d2}, {"new_digest", k_d1},
                            {"platforms", {{"linux/amd64", {{"old", k_d2}, {"new", k_d1}}}}}, {"outcome", "fired"},
                            {"source", "webhook"}, {"detected_at", "2026-11-28T12:00:00Z"}, {"deliveries", {"d_01ABC"}}}});
  in.deliveries = json::array({{{"id", "d_01DEAD"}, {"trigger", "ci"}, {"project", "web"}, {"state", "dead"}, {"attempts", 10},
                                {"next_attempt_at", nullptr}, {"last_error", "HTTP 500"}, {"refs", {"docker.io/library/alpine:3.20"}}}});
  return in;
}

bool has(const std::string& page, const std::string& text) { return page.find(text) != std::string::npos; }

}  // namespace

TEST_CASE("the dashboard lists builds: state, exit code, duration, pushed digest, error and the log's tail", "[api][dashboard]") {
  auto in = input();
  in.builds = json::array(
      {{{"id", "d_01BUILT"}, {"trigger", "rebuild"}, {"project", "base"}, {"state", "delivered"},
        {"last_attempt", {{"at", "2026-11-28T12:09:00Z"}, {"status", 0}, {"duration_ms", 12345}, {"error", nullptr},
                          {"output_tail", "STEP 2/2: RUN apk upgrade\nbasewatch: pushed r.test/base:1@" + k_d1 + "\n"},
                          {"pushed_digest", k_d1}}}},
       {{"id", "d_01FAIL"}, {"trigger", "rebuild"}, {"project", "app"}, {"state", "failed"},
        {"last_attempt", {{"at", "2026-11-28T12:08:00Z"}, {"status", 3}, {"duration_ms", 850},
                          {"error", "buildah build linux/amd64: exit status 3: Error: <RUN> failed"},
                          {"output_tail", "make: *** [all] Error 3 <b>\n"}, {"pushed_digest", nullptr}}}},
       {{"id", "d_01WAIT"}, {"trigger", "rebuild"}, {"project", "worker"}, {"state", "pending"}}});
  std::string page = api::render_dashboard(in);
  CHECK(has(page, "<section id=\"builds\"><h2>Builds</h2>"));
  CHECK(has(page, "<td><code>d_01BUILT</code></td><td>base</td><td>rebuild</td><td><span class=\"badge ok\">built</span></td>"));
  CHECK(has(page, "<td>0</td><td>12.3s</td><td><code title=\"" + k_d1 + "\">0123456789ab</code></td>"));
  CHECK(has(page, "<summary>log tail</summary><pre class=\"log\">STEP 2/2: RUN apk upgrade\nbasewatch: pushed r.test/base:1@" + k_d1));
  CHECK(has(page, "<span class=\"badge warn\">failed</span>"));
  CHECK(has(page, "<td>3</td><td>850ms</td><td><span class=\"muted\">-</span></td>"));
  CHECK(has(page, "<div class=\"err\">buildah build linux/amd64: exit status 3: Error: &lt;RUN&gt; failed</div>"));
  CHECK(has(page, "make: *** [all] Error 3 &lt;b&gt;"));
  CHECK(has(page, "<td colspan=\"5\" class=\"muted\">not started</td>"));
  CHECK_FALSE(has(page, "<RUN>"));

  in.builds = json::array();
  CHECK(has(api::render_dashboard(in), "<p class=\"empty\">No build has run yet.</p>"));
}

TEST_CASE("the dashboard shows bases, platforms, short digests, times, feeds, deliveries and events", "[api][dashboard]") {
  std::string page = api::render_dashboard(input());
  CHECK(has(page, "<!DOCTYPE html>"));
  CHECK(has(page, "version 0.1.0"));
  CHECK(has(page, "up 1h 2m"));
  CHECK(has(page, ">30s ago</time>"));  // last poll
  CHECK(has(page, ">in 4m</time>"));    // next poll
  CHECK(has(page, "<td class=\"ref\">docker.io/library/alpine:3.20</td>"));
  CHECK(has(page, "linux/arm64 <code title=\"" + k_d1 + "\">0123456789ab</code>"));
  CHECK(has(page, "linux/amd64 <code title=\"" + k_d2 + "\">fedcba987654</code>"));
  CHECK(has(page, ">2h 0m ago</time>"));  // last change
  CHECK(has(page, "web, worker"));
  CHECK(has(page, "<form class=\"retry\" method=\"post\" action=\"/v1/deliveries/d_01DEAD/retry\">"));
  CHECK(has(page, "<span class=\"badge bad\">dead</span>"));
  CHECK(has(page, "<span class=\"badge ok\">fired</span>"));
  CHECK(has(page, "<td>webhook</td>"));
  CHECK(has(page, "93 / 100"));
  CHECK(has(page, "web: Dockerfile:3: unknown instruction &lt;FRUM&gt;"));
  CHECK(has(page, "<code>/hooks/hub</code>"));
  // Nothing loaded from elsewhere.
  CHECK_FALSE(has(page, "http://"));
  CHECK_FALSE(has(page, "https://"));
}

TEST_CASE("every value from the state is escaped", "[api][dashboard]") {
  std::string page = api::render_dashboard(input());
  CHECK_FALSE(has(page, "<script>alert"));
  CHECK(has(page, "r.io/&lt;script&gt;alert(1)&lt;/script&gt;:1"));
  CHECK(has(page, "registry r.io: 401 &quot;unauthorized&quot; &lt;b&gt;"));
  CHECK(api::html_escape("a&b<c>\"d'") == "a&amp;b&lt;c&gt;&quot;d&#39;");
}

TEST_CASE("empty state reads as such, and the login page asks for the token", "[api][dashboard]") {
  api::DashboardInput in;
  in.now = *parse_rfc3339("2026-11-28T12:10:00Z");
  in.status = {{"version", "0.1.0"}, {"last_poll", nullptr}};
  std::string page = api::render_dashboard(in);
  CHECK(has(page, "Nothing is watched yet."));
  CHECK(has(page, "None: every rebuild request was delivered."));
  CHECK(has(page, "No base has changed yet."));
  CHECK(has(page, "last poll <span class=\"muted\">never</span>"));
  std::string login = api::render_login_page();
  CHECK(has(login, "API token needed"));
  CHECK(has(login, "sessionStorage"));
  CHECK(has(login, "'Authorization': 'Bearer ' + t"));
  CHECK(has(login, "fetch(location.pathname + location.search,"));  // the page asked for, /?offset=200 too
}

TEST_CASE("a long list shows one page, the total, failing ones first and links to the other pages", "[api][dashboard]") {
  api::DashboardInput in = input();
  in.images_total = 10'000;
  in.images_limit = api::k_dashboard_page_size;
  in.images_failing = 3;
  in.images_offset = 0;
  std::string page = api::render_dashboard(in);
  CHECK(has(page, "<p class=\"pager\"><span>References 1&ndash;2 of 10000 &middot; 3 with errors, listed first</span>"
                  "<a rel=\"next\" href=\"/?offset=2\">Next 200 &rarr;</a></p>"));
  CHECK_FALSE(has(page, "rel=\"prev\""));

  in.images_offset = 400;
  page = api::render_dashboard(in);
  CHECK(has(page, "<span>References 401&ndash;402 of 10000 &middot; 3 with errors, listed first</span>"
                  "<a rel=\"prev\" href=\"/?offset=200\">&larr; Previous 200</a><a rel=\"next\" href=\"/?offset=402\">Next 200 &rarr;</a>"));

  // The last page: no next; a page size other than the default stays in the links.
  in.images_total = 6;
  in.images_limit = 2;
  in.images_offset = 4;
  in.images_failing = 0;
  page = api::render_dashboard(in);
  CHECK(has(page, "<p class=\"pager\"><span>References 5&ndash;6 of 6</span>"
                  "<a rel=\"prev\" href=\"/?limit=2&amp;offset=2\">&larr; Previous 2</a></p>"));
  CHECK_FALSE(has(page, "rel=\"next\""));
  CHECK(has(page, "<td class=\"ref\">docker.io/library/alpine:3.20</td>"));

  // Past the end: nothing to show, a way back to the last page.
  in.images = json::array();
  in.images_offset = 600;
  page = api::render_dashboard(in);
  CHECK(has(page, "<span>No references on this page, 6 in all</span><a rel=\"prev\" href=\"/?limit=2&amp;offset=4\">"));
  CHECK_FALSE(has(page, "Nothing is watched yet."));
}

TEST_CASE("everything on one page: no pager, unless some failed", "[api][dashboard]") {
  api::DashboardInput in = input();
  in.images_total = 2;
  in.images_limit = api::k_dashboard_page_size;
  CHECK_FALSE(has(api::render_dashboard(in), "class=\"pager\""));
  in.images_failing = 1;
  CHECK(has(api::render_dashboard(in), "<p class=\"pager\"><span>References 1&ndash;2 of 2 &middot; 1 with errors, listed first</span></p>"));
  CHECK(api::k_dashboard_page_size == 200);
}

TEST_CASE("mirrors: a section with each copy's state, and the deliveries that wait for one", "[api][dashboard]") {
  auto in = input();
  CHECK_FALSE(has(api::render_dashboard(in), "id=\"mirrors\""));  // no mirrors: no section, no tiles
  in.status["counts"]["mirrors"] = 2;
  in.status["counts"]["mirrors_out_of_sync"] = 1;
  in.mirrors = json::array({{{"mirror", "registry.example.com/hub/library/alpine:3.20"}, {"upstream", "docker.io/library/alpine:3.20"},
                             {"state", "in-sync"}, {"mirror_digest", k_d1},
                             {"last_copy", {{"at", "2026-11-28T12:00:00Z"}, {"blobs_uploaded", 3}, {"blobs_mounted", 1}, {"blobs_skipped", 2}}},
                             {"waiting_deliveries", 0}, {"last_error", nullptr}},
                            {{"mirror", "registry.example.com/hub/library/node:20"}, {"upstream", "docker.io/library/node:20"},
                             {"state", "failed"}, {"mirror_digest", k_d2}, {"last_copy", nullptr}, {"waiting_deliveries", 2},
                             {"last_error", "PUT registry.example.com/hub/library/node blob: HTTP 503 <down>"}}});
  in.deliveries[0]["waiting_for"] = {{"copy_job", 4}, {"mirror", "registry.example.com/hub/library/node:20"}};
  std::string page = api::render_dashboard(in);
  CHECK(has(page, "<section id=\"mirrors\"><h2>Mirrors: local copies</h2>"));
  CHECK(has(page, "<td class=\"ref\">registry.example.com/hub/library/alpine:3.20</td><td class=\"ref\">docker.io/library/alpine:3.20</td>"
                  "<td><span class=\"badge ok\">in-sync</span></td>"));
  CHECK(has(page, ">10m ago</time>: 3 uploaded, 1 mounted, 2 there"));
  CHECK(has(page, "<span class=\"badge bad\">failed</span>"));
  CHECK(has(page, "<span class=\"badge warn\">2 rebuild(s)</span>"));
  CHECK(has(page, "HTTP 503 &lt;down&gt;"));
  CHECK(has(page, "waits for the copy to registry.example.com/hub/library/node:20"));
  CHECK(has(page, "out of sync"));
}

TEST_CASE("the dashboard shows who leads when several instances share the database, and nothing of it alone",
          "[api][dashboard][cluster]") {
  auto alone = input();
  alone.status["cluster"] = {{"instance", "web-1-7-aaaaaa"}, {"leader", "web-1-7-aaaaaa"}, {"leader_since", "2026-11-28T11:00:00Z"},
                             {"lease_seconds", nullptr},
                             {"instances", json::array({{{"id", "web-1-7-aaaaaa"}, {"host", "web-1"}, {"pid", 7},
                                                         {"version", "0.1.0"}, {"last_seen", "2026-11-28T12:10:00Z"}}})}};
  std::string solo = api::render_dashboard(alone);
  CHECK_FALSE(has(solo, "id=\"cluster\""));
  CHECK_FALSE(has(solo, "leader"));
  CHECK_FALSE(has(solo, "follower"));

  auto shared = input();
  shared.status["cluster"] = {
      {"instance", "web-2-9-bbbbbb"}, {"leader", "web-1-7-aaaaaa"}, {"leader_since", "2026-11-28T12:05:00Z"}, {"lease_seconds", 15},
      {"instances", json::array({{{"id", "web-1-7-aaaaaa"}, {"host", "web-1"}, {"pid", 7}, {"version", "0.1.0"},
                                  {"last_seen", "2026-11-28T12:09:58Z"}},
                                 {{"id", "web-2-9-bbbbbb"}, {"host", "<b>web-2</b>"}, {"pid", 9}, {"version", "0.1.0"},
                                  {"last_seen", "2026-11-28T12:09:59Z"}}})}};
  std::string page = api::render_dashboard(shared);
  CHECK(has(page, "&middot; follower</span>"));
  CHECK(has(page, "<section id=\"cluster\"><h2>Cluster</h2><p>Leader <code>web-1-7-aaaaaa</code> since "));
  CHECK(has(page, ">5m ago</time>; this page comes from <code>web-2-9-bbbbbb</code>, a follower.</p>"));
  CHECK(has(page, "<tr><td><code>web-1-7-aaaaaa</code></td><td><span class=\"badge ok\">leader</span></td><td>web-1</td><td>7</td>"));
  CHECK(has(page, "<td><span class=\"badge idle\">follower</span></td><td>&lt;b&gt;web-2&lt;/b&gt;</td><td>9</td>"));
  CHECK(has(page, ">2s ago</time>"));

  shared.status["cluster"]["leader"] = nullptr;
  shared.status["cluster"]["leader_since"] = nullptr;
  std::string none = api::render_dashboard(shared);
  CHECK(has(none, "<span class=\"err\">No instance leads right now</span> (the lease ran out; the next one takes it within 15s)."));
}
