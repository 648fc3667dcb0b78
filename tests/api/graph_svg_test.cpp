// The dependency graph picture: what is drawn (kinds, mirrors, states, the
// latest change's path), where (every edge points right, no box overlaps
// another, long edges go round), and the SVG (escaped, nothing external).
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "api/graph_svg.h"

using namespace bw;

namespace {

const std::string k_old = "sha256:" + std::string(64, '1');
const std::string k_new = "sha256:" + std::string(64, '2');

// upstream alpine (copied to a mirror) -> base -> internal/base -> app, web;
// web also builds FROM golang's mirror; tools FROM busybox's upstream
// (a rule copies it too).
struct Fixture {
  watcher::Model model;
  std::vector<db::RefState> rows;
  std::vector<db::MirrorState> mirrors;
  std::vector<db::Delivery> deliveries;
  Fixture() {
    auto use = [](const std::string& ref, const std::string& mirror = "") {
      return watcher::BaseUse{ref, mirror, "", "runtime", "from", 1, "0"};
    };
    auto project = [](const std::string& name, const std::string& image, std::vector<watcher::BaseUse> bases) {
      watcher::Project p;
      p.name = name;
      p.image = image;
      p.bases = std::move(bases);
      return p;
    };
    model.projects = {project("base", "registry.example.com/internal/base:1", {use("docker.io/library/alpine:3.20")}),
                      project("app", "registry.example.com/app/app:1", {use("registry.example.com/internal/base:1")}),
                      project("web", "", {use("registry.example.com/internal/base:1"),
                                          use("docker.io/library/golang:1.23", "registry.example.com/hub/library/golang:1.23")}),
                      project("tools", "", {use("docker.io/library/busybox:1")})};
    for (const char* name : {"alpine:3.20", "golang:1.23", "busybox:1"}) {
      watcher::WatchItem item;
      item.mirror = std::string("registry.example.com/hub/library/") + name;
      model.items[std::string("docker.io/library/") + name] = item;
    }
    std::vector<dockerfile::ProjectInput> inputs;
    for (const auto& p : model.projects) {
      dockerfile::ProjectInput in{p.name, p.image, {}};
      for (const auto& b : p.bases) in.bases.push_back(b.ref);
      inputs.push_back(in);
    }
    model.graph = std::make_shared<dockerfile::Graph>(dockerfile::Graph::build(inputs).value());
    auto row = [](const std::string& ref, const std::string& error = "") {
      db::RefState r;
      r.ref = ref;
      r.digest = k_new;
      r.last_checked = 1000;
      r.last_error = error;
      return r;
    };
    rows = {row("docker.io/library/alpine:3.20"), row("registry.example.com/internal/base:1"), row("docker.io/library/golang:1.23")};
    auto copy = [](const std::string& name, const std::string& state, const std::string& error = "") {
      db::MirrorState m;
      m.mirror = "registry.example.com/hub/library/" + name;
      m.upstream = "docker.io/library/" + name;
      m.upstream_digest = m.mirror_digest = k_new;
      m.state = state;
      m.last_error = error;
      return m;
    };
    mirrors = {copy("alpine:3.20", "in-sync"), copy("golang:1.23", "failed", "copy of sha256:2222: HTTP 500")};
    auto delivery = [](const std::string& id, const std::string& name, db::DeliveryState state) {
      db::Delivery d;
      d.id = id;
      d.trigger = "rebuild";
      d.project = name;
      d.state = state;
      d.last_error = state == db::DeliveryState::failed ? "buildah build linux/amd64: exit status 1" : "";
      return d;
    };
    // Newest first: app's newest failed, an older one was delivered.
    deliveries = {delivery("d_3", "app", db::DeliveryState::failed), delivery("d_2", "base", db::DeliveryState::delivered),
                  delivery("d_1", "app", db::DeliveryState::delivered)};
  }
  api::RefRows rows_fn() const {
    return [this](const std::vector<std::string>& refs) {
      std::vector<db::RefState> out;
      for (const auto& r : rows) {
        if (std::find(refs.begin(), refs.end(), r.ref) != refs.end()) out.push_back(r);
      }
      return out;
    };
  }
  api::Picture picture(bool with_change = true) const {
    std::vector<db::Event> chain;
    if (with_change) chain.push_back(db::Event{7, "docker.io/library/alpine:3.20", k_old, k_new, {}, "fired", "poll", 0, {"d_2"}});
    return api::graph_picture(model, rows_fn(), mirrors, deliveries, chain);
  }
};

const api::PictureNode* node(const api::Picture& p, const std::string& id) {
  for (const auto& n : p.nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

bool has_edge(const api::Picture& p, const std::string& from, const std::string& to, bool* highlighted = nullptr,
              bool* copy = nullptr) {
  for (const auto& e : p.edges) {
    if (p.nodes[e.from].id == from && p.nodes[e.to].id == to) {
      if (highlighted) *highlighted = e.highlighted;
      if (copy) *copy = e.copy;
      return true;
    }
  }
  return false;
}

}  // namespace

TEST_CASE("graph picture: upstreams, their mirrors, projects and images, each with its state", "[unit][api][graph]") {
  Fixture f;
  auto p = f.picture();
  std::map<std::string, std::pair<std::string, std::string>> kinds;
  for (const auto& n : p.nodes) kinds[n.id] = {n.kind, n.state};
  CHECK(kinds == std::map<std::string, std::pair<std::string, std::string>>{
                     {"docker.io/library/alpine:3.20", {"upstream", "changed"}},
                     {"registry.example.com/hub/library/alpine:3.20", {"mirror", "ok"}},  // in sync
                     {"docker.io/library/golang:1.23", {"upstream", "ok"}},
                     {"registry.example.com/hub/library/golang:1.23", {"mirror", "error"}},  // its copy failed
                     {"docker.io/library/busybox:1", {"upstream", "unknown"}},
                     {"registry.example.com/hub/library/busybox:1", {"mirror", "waiting"}},  // not copied yet
                     {"base", {"project", "built"}},
                     {"app", {"project", "failed"}},  // its newest delivery
                     {"web", {"project", "idle"}},
                     {"tools", {"project", "idle"}},
                     {"registry.example.com/internal/base:1", {"image", "ok"}},
                     {"registry.example.com/app/app:1", {"image", "unknown"}}});
  bool copy = false;
  // web builds FROM golang's mirror: upstream -> mirror -> web. tools names busybox's upstream: the copy is a side node.
  CHECK(has_edge(p, "docker.io/library/golang:1.23", "registry.example.com/hub/library/golang:1.23", nullptr, &copy));
  CHECK(copy);
  CHECK(has_edge(p, "registry.example.com/hub/library/golang:1.23", "web"));
  CHECK(has_edge(p, "docker.io/library/busybox:1", "tools"));
  CHECK(has_edge(p, "docker.io/library/busybox:1", "registry.example.com/hub/library/busybox:1", nullptr, &copy));
  CHECK(has_edge(p, "base", "registry.example.com/internal/base:1"));
  CHECK(has_edge(p, "registry.example.com/internal/base:1", "app"));
  CHECK(has_edge(p, "registry.example.com/internal/base:1", "web"));
  CHECK(p.edges.size() == 10);
  CHECK(node(p, "registry.example.com/hub/library/golang:1.23")->detail == "copy of sha256:2222: HTTP 500");
  CHECK_FALSE(has_edge(p, "docker.io/library/golang:1.23", "web"));  // web pulls the copy, not the upstream
  CHECK(node(p, "app")->detail == "rebuild d_3: buildah build linux/amd64: exit status 1");
  CHECK(p.change == "docker.io/library/alpine:3.20 sha256:111111111111 -> sha256:222222222222");
  CHECK(p.note.empty());
}

TEST_CASE("graph picture: the latest change's path is highlighted, and nothing else", "[unit][api][graph]") {
  Fixture f;
  auto p = f.picture();
  std::set<std::string> lit;
  for (const auto& n : p.nodes) {
    if (n.highlighted) lit.insert(n.id);
  }
  CHECK(lit == std::set<std::string>{"docker.io/library/alpine:3.20", "registry.example.com/hub/library/alpine:3.20", "base",
                                     "registry.example.com/internal/base:1", "app", "web", "registry.example.com/app/app:1"});
  bool hl = false;
  CHECK(has_edge(p, "docker.io/library/alpine:3.20", "base", &hl));
  CHECK(hl);
  CHECK(has_edge(p, "registry.example.com/internal/base:1", "web", &hl));
  CHECK(hl);
  CHECK(has_edge(p, "registry.example.com/hub/library/golang:1.23", "web", &hl));
  CHECK_FALSE(hl);  // web is on the path, golang's mirror is not
  CHECK(has_edge(p, "docker.io/library/busybox:1", "tools", &hl));
  CHECK_FALSE(hl);

  auto quiet = f.picture(false);
  CHECK(quiet.change.empty());
  CHECK(std::none_of(quiet.nodes.begin(), quiet.nodes.end(), [](const api::PictureNode& n) { return n.highlighted; }));
  CHECK(node(quiet, "docker.io/library/alpine:3.20")->state == "ok");
}

TEST_CASE("graph layout: layers in build order, every edge points right, no boxes overlap, long edges go round",
          "[unit][api][graph]") {
  Fixture f;
  auto p = f.picture();
  auto l = api::layout_picture(p);
  REQUIRE(l.nodes.size() == p.nodes.size());
  auto at = [&](const std::string& id) { return l.nodes[static_cast<size_t>(node(p, id) - p.nodes.data())]; };
  CHECK(at("docker.io/library/alpine:3.20").layer == 0);
  CHECK(at("base").layer == 1);
  CHECK(at("registry.example.com/internal/base:1").layer == 2);
  CHECK(at("app").layer == 3);
  CHECK(at("registry.example.com/app/app:1").layer == 4);
  CHECK(at("web").layer == 3);
  CHECK(at("registry.example.com/hub/library/golang:1.23").layer == 1);
  for (size_t e = 0; e < p.edges.size(); ++e) {
    const auto& a = l.nodes[p.edges[e].from];
    const auto& b = l.nodes[p.edges[e].to];
    CHECK(a.x + a.width < b.x);
    const auto& pts = l.edges[e].points;
    REQUIRE(pts.size() == static_cast<size_t>(b.layer - a.layer + 1));  // a waypoint in each layer between
    for (size_t i = 1; i < pts.size(); ++i) CHECK(pts[i - 1].first < pts[i].first);
  }
  for (size_t i = 0; i < l.nodes.size(); ++i) {
    CHECK(l.nodes[i].x >= 0);
    CHECK(l.nodes[i].x + l.nodes[i].width <= l.width);
    CHECK(l.nodes[i].y + l.nodes[i].height <= l.height);
    CHECK(l.nodes[i].width >= 7.3 * static_cast<double>(l.nodes[i].label.size()));
    for (size_t j = i + 1; j < l.nodes.size(); ++j) {
      const auto& a = l.nodes[i];
      const auto& b = l.nodes[j];
      bool apart = a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
      CHECK(apart);
    }
  }
}

TEST_CASE("graph svg: inline, every text escaped, classes a page can style, nothing loaded from elsewhere", "[unit][api][graph]") {
  Fixture f;
  f.rows.push_back(db::RefState{"docker.io/library/busybox:1", k_new, "", {}, 1, 0, 0, "bad \"<script>\" & more", "", 1});
  auto p = f.picture();
  std::string svg = api::render_graph_svg(p, api::layout_picture(p));
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"graph\"", 0) == 0);
  CHECK(svg.find("<g class=\"node kind-upstream s-changed hl\" data-id=\"docker.io/library/alpine:3.20\"") != std::string::npos);
  CHECK(svg.find("<g class=\"node kind-project s-failed hl\" data-id=\"app\"") != std::string::npos);
  CHECK(svg.find("class=\"edge copy\"") != std::string::npos);
  CHECK(svg.find("class=\"edge hl\"") != std::string::npos);
  CHECK(svg.find("bad &quot;&lt;script&gt;&quot; &amp; more") != std::string::npos);
  CHECK(svg.find("<script") == std::string::npos);
  CHECK(svg.find("href") == std::string::npos);
  CHECK(svg.find("@import") == std::string::npos);
  CHECK(svg.find("url(http") == std::string::npos);
  std::string doc = api::render_graph_svg(p, api::layout_picture(p), true);
  CHECK(doc.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 0) == 0);
  // Long names lose their middle on the box, never in the tooltip.
  std::string long_ref = "registry.example.com/a/very/long/path/to/some/team/and/its/image:2026.11.28";
  CHECK(api::layout_picture(api::Picture{{{long_ref, "upstream", "ok", "", false}}, {}, "", ""}).nodes[0].label ==
        "registry.example.com/a\u2026nd/its/image:2026.11.28");
}

TEST_CASE("graph picture: a graph too large is cut to the latest change's path and its neighbours", "[unit][api][graph]") {
  watcher::Model model;
  std::vector<dockerfile::ProjectInput> inputs;
  for (int i = 0; i < 400; ++i) {
    watcher::Project p;
    p.name = "p" + std::to_string(i);
    std::string base = "docker.io/library/base" + std::to_string(i % 200) + ":1";
    p.bases.push_back(watcher::BaseUse{base, "", "", "runtime", "from", 1, "0"});
    model.projects.push_back(p);
    inputs.push_back({p.name, "", {base}});
  }
  model.graph = std::make_shared<dockerfile::Graph>(dockerfile::Graph::build(inputs).value());
  db::Event latest{1, "docker.io/library/base7:1", k_old, k_new, {}, "fired", "poll", 0, {}};
  auto p = api::graph_picture(model, nullptr, {}, {}, {latest});
  CHECK(p.nodes.size() <= api::k_picture_max_nodes);
  CHECK(node(p, "docker.io/library/base7:1"));
  CHECK(node(p, "p7"));
  CHECK(node(p, "p207"));
  CHECK(p.note == "showing " + std::to_string(p.nodes.size()) + " of 600 nodes: the latest change's path and its neighbours "
                  "(the whole graph: /v1/graph?format=dot)");
}

TEST_CASE("the latest chain: a change from basewatch's own push goes back to the change that built it", "[unit][api][graph]") {
  Fixture f;
  auto event = [](int64_t id, const std::string& ref, const std::string& outcome, const std::string& source) {
    return db::Event{id, ref, k_old, k_new, {}, outcome, source, id, {}};
  };
  // Newest first: internal/base moved because base's build pushed it, after
  // alpine moved; an unrelated change in between, and one that only recorded.
  std::vector<db::Event> events = {event(9, "docker.io/library/busybox:1", "recorded", "poll"),
                                   event(8, "registry.example.com/internal/base:1", "fired", "build"),
                                   event(7, "registry.example.com/hub/library/golang:1.23", "fired", "poll"),
                                   event(6, "docker.io/library/alpine:3.20", "fired", "webhook"),
                                   event(5, "docker.io/library/alpine:3.20", "fired", "poll")};
  auto chain = api::latest_chain(events, *f.model.graph);
  REQUIRE(chain.size() == 2);
  CHECK(chain[0].id == 6);
  CHECK(chain[1].id == 8);
  auto p = api::graph_picture(f.model, f.rows_fn(), f.mirrors, f.deliveries, chain);
  CHECK(p.change == "docker.io/library/alpine:3.20 sha256:111111111111 -> sha256:222222222222, then "
                    "registry.example.com/internal/base:1 built");
  CHECK(node(p, "base")->highlighted);
  CHECK(node(p, "registry.example.com/internal/base:1")->state == "changed");
  CHECK(node(p, "registry.example.com/app/app:1")->highlighted);
  CHECK_FALSE(node(p, "tools")->highlighted);

  // A change that did not come from a build is its own chain.
  events[1].source = "poll";
  chain = api::latest_chain(events, *f.model.graph);
  REQUIRE(chain.size() == 1);
  CHECK(chain[0].id == 8);
  // Nothing fired: nothing to highlight.
  CHECK(api::latest_chain({events[0]}, *f.model.graph).empty());
}
