#include "api/graph_svg.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <numeric>
#include <set>

#include "api/dashboard.h"

namespace bw::api {

namespace {

// Geometry, in px. Text is a 12px monospace font: 7.3px a character covers
// DejaVu Sans Mono (0.6em) with a little room.
constexpr double k_char_width = 7.3;
constexpr double k_node_height = 40;
constexpr double k_node_padding = 12;
constexpr double k_min_node_width = 96;
constexpr double k_row_gap = 18;
constexpr double k_column_gap = 64;
constexpr double k_margin = 16;
constexpr size_t k_label_max = 46;  // longer names lose their middle ("docker.io/libr…ne:3.20")
constexpr int k_sweeps = 6;

int kind_rank(const std::string& kind) {
  if (kind == "upstream") return 0;
  if (kind == "mirror") return 1;
  if (kind == "project") return 2;
  return 3;
}

std::string short_digest(const std::string& d) {
  auto colon = d.find(':');
  return colon == std::string::npos ? d : d.substr(0, colon + 1) + d.substr(colon + 1, 12);
}

std::string shorten(const std::string& s) {
  if (s.size() <= k_label_max) return s;
  size_t keep = k_label_max - 1;
  return s.substr(0, keep / 2) + "\u2026" + s.substr(s.size() - (keep - keep / 2));
}

// The state of a watched reference from its stored row.
std::pair<std::string, std::string> ref_state(const db::RefState* row) {
  if (!row) return {"unknown", "not checked by basewatch"};
  if (!row->last_error.empty()) return {"error", row->last_error};
  if (row->last_checked == 0 || row->digest.empty()) return {"waiting", "not checked yet"};
  return {"ok", row->digest};
}

// A mirror's state from its stored row: the copy in sync, being made,
// failed, drifted from the upstream, or not made yet.
std::pair<std::string, std::string> mirror_state(const db::MirrorState* m) {
  if (!m) return {"waiting", "no copy yet"};
  if (m->state == "in-sync") return {"ok", m->mirror_digest};
  if (m->state == "copying") return {"copying", "copying " + m->upstream_digest};
  if (m->state == "failed") return {"error", m->last_error};
  if (m->state == "drift") return {"drift", "the copy no longer holds " + m->upstream_digest};
  return {"waiting", "no copy yet"};
}

// A project's state from its newest delivery.
std::pair<std::string, std::string> project_state(const watcher::Project& p, const db::Delivery* d) {
  if (!p.error.empty()) return {"error", p.error};
  if (!d) return {"idle", "nothing delivered yet"};
  std::string what = d->trigger + " " + d->id;
  switch (d->state) {
    case db::DeliveryState::delivered: return {"built", what + " delivered"};
    case db::DeliveryState::pending: return {"queued", what + " pending"};
    case db::DeliveryState::failed: return {"failed", what + ": " + d->last_error};
    case db::DeliveryState::dead: return {"dead", what + ": " + d->last_error};
  }
  return {"idle", ""};
}

}  // namespace

namespace {

// Fills in each node's state once the nodes are known (and a large graph
// cut): projects from their newest delivery, references from their rows.
void fill_states(Picture& pic, const watcher::Model& model, const RefRows& rows, const std::vector<db::MirrorState>& mirrors,
                 const std::vector<db::Delivery>& deliveries) {
  std::map<std::string, const db::MirrorState*> copy_of;
  for (const auto& m : mirrors) copy_of[m.mirror] = &m;
  std::map<std::string, const db::Delivery*> newest;  // project -> its newest delivery
  for (const auto& d : deliveries) newest.emplace(d.project, &d);
  std::vector<std::string> refs;
  for (const auto& n : pic.nodes) {
    if (n.kind != "project" && n.kind != "mirror") refs.push_back(n.id);
  }
  std::vector<db::RefState> found = rows ? rows(refs) : std::vector<db::RefState>{};
  std::map<std::string, const db::RefState*> row_of;
  for (const auto& r : found) row_of[r.ref] = &r;
  for (auto& n : pic.nodes) {
    std::string changed = n.state;  // "changed" was set for the latest change's reference
    if (n.kind == "project") {
      const watcher::Project* p = model.project(n.id);
      auto d = newest.find(n.id);
      std::tie(n.state, n.detail) =
          p ? project_state(*p, d == newest.end() ? nullptr : d->second) : std::make_pair(std::string("idle"), std::string());
    } else if (n.kind == "mirror") {
      auto m = copy_of.find(n.id);
      std::tie(n.state, n.detail) = mirror_state(m == copy_of.end() ? nullptr : m->second);
    } else {
      auto r = row_of.find(n.id);
      std::tie(n.state, n.detail) = ref_state(r == row_of.end() ? nullptr : r->second);
      if (changed == "changed" && n.state != "error") n.state = "changed";
    }
  }
}

}  // namespace

std::vector<db::Event> latest_chain(const std::vector<db::Event>& events, const dockerfile::Graph& graph) {
  // The image -> project that produces it, from the graph's edges.
  std::map<std::string, std::string> producer;
  std::set<std::string> projects;
  for (const auto& n : graph.nodes()) {
    if (n.kind == "project") projects.insert(n.id);
  }
  for (const auto& e : graph.edges()) {
    if (projects.count(e.from)) producer[e.to] = e.from;
  }
  std::vector<db::Event> chain;
  size_t at = 0;
  while (at < events.size() && events[at].outcome != "fired") ++at;
  if (at == events.size()) return chain;
  chain.push_back(events[at]);
  while (chain.back().source == "build") {
    auto p = producer.find(chain.back().ref);
    if (p == producer.end()) break;
    // The older change that fired this image's project.
    size_t cause = at + 1;
    for (; cause < events.size(); ++cause) {
      if (events[cause].outcome != "fired") continue;
      auto reached = graph.impact(events[cause].ref);
      if (std::find(reached.begin(), reached.end(), p->second) != reached.end()) break;
    }
    if (cause >= events.size()) break;
    at = cause;
    chain.push_back(events[at]);
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

Picture graph_picture(const watcher::Model& model, const RefRows& rows, const std::vector<db::MirrorState>& mirrors,
                      const std::vector<db::Delivery>& deliveries, const std::vector<db::Event>& chain) {
  Picture pic;
  if (!model.graph) return pic;

  std::map<std::pair<std::string, std::string>, size_t> index;  // (kind class, id) -> node
  auto add = [&](const std::string& id, const std::string& kind) -> size_t {
    // References share one namespace whatever their kind; projects have their own.
    auto key = std::make_pair(std::string(kind == "project" ? "p" : "r"), id);
    if (auto it = index.find(key); it != index.end()) return it->second;
    PictureNode n;
    n.id = id;
    n.kind = kind;
    pic.nodes.push_back(std::move(n));
    index[key] = pic.nodes.size() - 1;
    return pic.nodes.size() - 1;
  };
  std::set<std::pair<size_t, size_t>> have;
  auto link = [&](size_t from, size_t to, bool copy) {
    if (from == to || !have.insert({from, to}).second) return;
    pic.edges.push_back(PictureEdge{from, to, copy, false});
  };

  // Upstream references and, for those a mirrors: rule copies, the copy.
  for (const auto& node : model.graph->nodes()) {
    if (node.kind != "upstream") continue;
    size_t u = add(node.id, "upstream");
    if (auto it = model.items.find(node.id); it != model.items.end() && !it->second.mirror.empty()) {
      link(u, add(it->second.mirror, "mirror"), true);
    }
  }
  for (const auto& node : model.graph->nodes()) {
    if (node.kind != "upstream") add(node.id, node.kind);
  }
  for (const auto& e : model.graph->edges()) {
    const watcher::Project* to_project = index.count({"r", e.to}) ? nullptr : model.project(e.to);
    if (model.project(e.from) && !index.count({"r", e.from})) {  // project -> the image it produces
      link(add(e.from, "project"), add(e.to, "image"), false);
      continue;
    }
    size_t from = add(e.from, "upstream");
    if (!to_project) {
      link(from, add(e.to, "image"), false);
      continue;
    }
    // A project that names the base by its mirror builds FROM the copy.
    bool via_mirror = false, direct = false;
    for (const auto& b : to_project->bases) {
      if (b.ref != e.from) continue;
      if (!b.mirror.empty()) {
        via_mirror = true;
        size_t m = add(b.mirror, "mirror");
        link(from, m, true);
        link(m, add(e.to, "project"), false);
      } else {
        direct = true;
      }
    }
    if (direct || !via_mirror) link(from, add(e.to, "project"), false);
  }

  // The chain of the latest change: each change's reference, the mirror
  // copies of it, every project it reaches and what they produce.
  std::set<size_t> lit;
  for (const auto& change : chain) {
    if (pic.change.empty()) {
      pic.change = change.ref + " " + short_digest(change.old_digest) + " -> " + short_digest(change.new_digest);
    } else {
      pic.change += ", then " + change.ref + " built";
    }
    if (auto it = index.find({"r", change.ref}); it != index.end()) {
      lit.insert(it->second);
      pic.nodes[it->second].state = "changed";  // kept by fill_states unless its last check failed
    }
    for (const auto& e : pic.edges) {  // upstream <-> mirror of the changed reference
      if (e.copy && (pic.nodes[e.from].id == change.ref || pic.nodes[e.to].id == change.ref)) {
        lit.insert(e.from);
        lit.insert(e.to);
      }
    }
    for (const auto& name : model.graph->impact(change.ref)) {
      if (auto it = index.find({"p", name}); it != index.end()) lit.insert(it->second);
      if (const auto* p = model.project(name); p && !p->image.empty()) {
        if (auto img = index.find({"r", p->image}); img != index.end()) lit.insert(img->second);
      }
    }
  }
  for (size_t i : lit) pic.nodes[i].highlighted = true;
  for (auto& e : pic.edges) {
    // Forward along the path: into a project only from what the change reached.
    e.highlighted = lit.count(e.from) && lit.count(e.to);
  }

  if (pic.nodes.size() > k_picture_max_nodes) {
    // Keep the path and its neighbours (or, with no change, the first nodes).
    std::set<size_t> keep = lit;
    for (const auto& e : pic.edges) {
      if (lit.count(e.from) || lit.count(e.to)) {
        keep.insert(e.from);
        keep.insert(e.to);
      }
    }
    for (size_t i = 0; i < pic.nodes.size() && keep.size() < std::min<size_t>(k_picture_max_nodes, 60); ++i) keep.insert(i);
    while (keep.size() > k_picture_max_nodes) keep.erase(std::prev(keep.end()));
    std::vector<size_t> renumber(pic.nodes.size(), SIZE_MAX);
    Picture cut;
    cut.change = pic.change;
    for (size_t i : keep) {
      renumber[i] = cut.nodes.size();
      cut.nodes.push_back(pic.nodes[i]);
    }
    for (const auto& e : pic.edges) {
      if (renumber[e.from] != SIZE_MAX && renumber[e.to] != SIZE_MAX) {
        cut.edges.push_back(PictureEdge{renumber[e.from], renumber[e.to], e.copy, e.highlighted});
      }
    }
    cut.note = "showing " + std::to_string(cut.nodes.size()) + " of " + std::to_string(pic.nodes.size()) +
               " nodes: the latest change's path and its neighbours (the whole graph: /v1/graph?format=dot)";
    pic = std::move(cut);
  }
  fill_states(pic, model, rows, mirrors, deliveries);
  return pic;
}

Layout layout_picture(const Picture& pic) {
  const size_t n = pic.nodes.size();
  Layout out;
  out.nodes.resize(n);
  out.edges.resize(pic.edges.size());
  if (n == 0) return out;

  // Layers: longest path from the sources, in topological order (Kahn's).
  std::vector<std::vector<size_t>> succ(n), pred(n), incident(n);
  for (size_t i = 0; i < pic.edges.size(); ++i) {
    const auto& e = pic.edges[i];
    succ[e.from].push_back(e.to);
    pred[e.to].push_back(e.from);
    incident[e.from].push_back(i);
    incident[e.to].push_back(i);
  }
  std::vector<int> layer(n, 0);
  std::vector<size_t> indegree(n);
  for (size_t i = 0; i < n; ++i) indegree[i] = pred[i].size();
  std::deque<size_t> ready;
  for (size_t i = 0; i < n; ++i) {
    if (indegree[i] == 0) ready.push_back(i);
  }
  while (!ready.empty()) {
    size_t v = ready.front();
    ready.pop_front();
    for (size_t w : succ[v]) {
      layer[w] = std::max(layer[w], layer[v] + 1);
      if (--indegree[w] == 0) ready.push_back(w);
    }
  }
  int layers = 1 + *std::max_element(layer.begin(), layer.end());

  // Slots per layer: real nodes, and one waypoint per layer an edge crosses.
  struct Slot {
    size_t node = SIZE_MAX;  // a real node, or
    size_t edge = SIZE_MAX;  // a waypoint of this edge
    double key = 0;
  };
  std::vector<std::vector<Slot>> rows(static_cast<size_t>(layers));
  for (size_t i = 0; i < n; ++i) rows[static_cast<size_t>(layer[i])].push_back(Slot{i, SIZE_MAX, 0});
  for (size_t e = 0; e < pic.edges.size(); ++e) {
    for (int l = layer[pic.edges[e].from] + 1; l < layer[pic.edges[e].to]; ++l) rows[static_cast<size_t>(l)].push_back(Slot{SIZE_MAX, e, 0});
  }
  // A first order: by kind, then name (stable across refreshes).
  for (auto& row : rows) {
    std::stable_sort(row.begin(), row.end(), [&](const Slot& a, const Slot& b) {
      auto name = [&](const Slot& s) { return s.node != SIZE_MAX ? pic.nodes[s.node].id : pic.nodes[pic.edges[s.edge].from].id; };
      auto rank = [&](const Slot& s) { return s.node != SIZE_MAX ? kind_rank(pic.nodes[s.node].kind) : 9; };
      return std::make_pair(rank(a), name(a)) < std::make_pair(rank(b), name(b));
    });
  }
  // Where each node and waypoint stands in its layer, refreshed after each
  // layer is sorted.
  std::vector<std::map<size_t, size_t>> node_pos(static_cast<size_t>(layers)), edge_pos(static_cast<size_t>(layers));
  auto refresh = [&] {
    for (size_t l = 0; l < rows.size(); ++l) {
      node_pos[l].clear();
      edge_pos[l].clear();
      for (size_t i = 0; i < rows[l].size(); ++i) {
        if (rows[l][i].node != SIZE_MAX) node_pos[l][rows[l][i].node] = i;
        else edge_pos[l][rows[l][i].edge] = i;
      }
    }
  };
  // Where, in layer `l`, the thing at the other end of edge `e` (or its
  // waypoint there) stands.
  auto end_in = [&](size_t e, size_t l) -> std::optional<double> {
    const auto& edge = pic.edges[e];
    if (layer[edge.from] == static_cast<int>(l)) return static_cast<double>(node_pos[l][edge.from]);
    if (layer[edge.to] == static_cast<int>(l)) return static_cast<double>(node_pos[l][edge.to]);
    if (auto it = edge_pos[l].find(e); it != edge_pos[l].end()) return static_cast<double>(it->second);
    return std::nullopt;
  };
  refresh();
  for (int sweep = 0; sweep < k_sweeps; ++sweep) {
    bool down = sweep % 2 == 0;
    for (int step = 1; step < layers; ++step) {
      size_t l = static_cast<size_t>(down ? step : layers - 1 - step);
      size_t other = down ? l - 1 : l + 1;
      for (size_t i = 0; i < rows[l].size(); ++i) {
        Slot& s = rows[l][i];
        double sum = 0;
        int count = 0;
        if (s.node != SIZE_MAX) {
          for (size_t e : incident[s.node]) {
            if (auto p = end_in(e, other)) {
              sum += *p;
              ++count;
            }
          }
        } else if (auto p = end_in(s.edge, other)) {
          sum = *p;
          count = 1;
        }
        s.key = count ? sum / count : static_cast<double>(i);
      }
      std::stable_sort(rows[l].begin(), rows[l].end(), [](const Slot& a, const Slot& b) { return a.key < b.key; });
      refresh();
    }
  }

  // Boxes: columns as wide as their widest label, rows one pitch apart,
  // each layer centred on the tallest.
  size_t tallest = 0;
  for (const auto& row : rows) tallest = std::max(tallest, row.size());
  const double pitch = k_node_height + k_row_gap;
  double x = k_margin;
  std::vector<std::map<size_t, std::pair<double, double>>> waypoint(static_cast<size_t>(layers));  // edge -> (x, y)
  for (size_t l = 0; l < rows.size(); ++l) {
    double column = k_min_node_width;
    for (const auto& s : rows[l]) {
      if (s.node == SIZE_MAX) continue;
      const auto& node = pic.nodes[s.node];
      std::string label = shorten(node.id);
      size_t chars = 0;  // UTF-8 characters, not bytes
      for (unsigned char c : label) chars += (c & 0xC0) != 0x80;
      size_t kind_chars = node.kind.size() + 3 + node.state.size();
      column = std::max(column, 2 * k_node_padding + k_char_width * static_cast<double>(std::max(chars, kind_chars)));
      out.nodes[s.node].label = label;
    }
    double top = k_margin + (static_cast<double>(tallest - rows[l].size()) * pitch) / 2;
    for (size_t i = 0; i < rows[l].size(); ++i) {
      double y = top + static_cast<double>(i) * pitch;
      const auto& s = rows[l][i];
      if (s.node != SIZE_MAX) {
        out.nodes[s.node].x = x;
        out.nodes[s.node].y = y;
        out.nodes[s.node].width = column;
        out.nodes[s.node].height = k_node_height;
        out.nodes[s.node].layer = static_cast<int>(l);
      } else {
        waypoint[l][s.edge] = {x + column / 2, y + k_node_height / 2};
      }
    }
    x += column + k_column_gap;
  }
  out.width = x - k_column_gap + k_margin;
  out.height = 2 * k_margin + static_cast<double>(tallest) * pitch - k_row_gap;

  for (size_t e = 0; e < pic.edges.size(); ++e) {
    const auto& a = out.nodes[pic.edges[e].from];
    const auto& b = out.nodes[pic.edges[e].to];
    auto& pts = out.edges[e].points;
    pts.emplace_back(a.x + a.width, a.y + a.height / 2);
    for (int l = layer[pic.edges[e].from] + 1; l < layer[pic.edges[e].to]; ++l) pts.push_back(waypoint[static_cast<size_t>(l)][e]);
    pts.emplace_back(b.x, b.y + b.height / 2);
  }
  return out;
}

std::string render_graph_svg(const Picture& pic, const Layout& layout, bool standalone) {
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return std::string(buf);
  };
  std::string h;
  if (standalone) h += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  double width = std::max(layout.width, 240.0), height = std::max(layout.height, 60.0);
  h += "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"graph\" role=\"img\" aria-label=\"dependency graph\" width=\"" + num(width) +
       "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(width) + " " + num(height) + "\">";
  h += "<style>"
       ".edge{fill:none;stroke:#9aa5b1;stroke-width:1.4}.edge.copy{stroke-dasharray:5 4}"
       ".edge.hl{stroke:#d9480f;stroke-width:2.6}"
       ".node rect{fill:#fff;stroke:#8a94a0;stroke-width:1.2}.node.hl rect{stroke:#d9480f;stroke-width:3}"
       ".kind-upstream rect{fill:#eef4fb}.kind-mirror rect{fill:#f1effa}.kind-project rect{fill:#fff}.kind-image rect{fill:#eef8f0}"
       ".node text{font:12px ui-monospace,'DejaVu Sans Mono',monospace;fill:#1d232b}.node text.kind{font-size:10px;fill:#5d6875}"
       ".dot{stroke:none}.s-ok,.s-built{fill:#1a7f37}.s-changed{fill:#d9480f}.s-error,.s-dead{fill:#c62828}"
       ".s-failed,.s-queued,.s-copying,.s-drift{fill:#9a6700}.s-waiting,.s-idle,.s-unknown{fill:#8a94a0}"
       "</style><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" "
       "orient=\"auto-start-reverse\"><path d=\"M0 0L10 5L0 10z\" fill=\"#9aa5b1\"/></marker>"
       "<marker id=\"arrow-hl\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" "
       "orient=\"auto-start-reverse\"><path d=\"M0 0L10 5L0 10z\" fill=\"#d9480f\"/></marker></defs>";
  // Highlighted edges last, so they are drawn over the others.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t e = 0; e < pic.edges.size(); ++e) {
      const auto& edge = pic.edges[e];
      if (edge.highlighted != (pass == 1)) continue;
      const auto& pts = layout.edges[e].points;
      if (pts.size() < 2) continue;
      std::string d = "M" + num(pts[0].first) + " " + num(pts[0].second);
      for (size_t i = 1; i < pts.size(); ++i) {
        double dx = (pts[i].first - pts[i - 1].first) / 2;
        d += " C" + num(pts[i - 1].first + dx) + " " + num(pts[i - 1].second) + " " + num(pts[i].first - dx) + " " +
             num(pts[i].second) + " " + num(pts[i].first) + " " + num(pts[i].second);
      }
      h += "<path class=\"edge" + std::string(edge.copy ? " copy" : "") + (edge.highlighted ? " hl" : "") + "\" d=\"" + d +
           "\" marker-end=\"url(#" + (edge.highlighted ? "arrow-hl" : "arrow") + ")\" data-from=\"" +
           html_escape(pic.nodes[edge.from].id) + "\" data-to=\"" + html_escape(pic.nodes[edge.to].id) + "\"/>";
    }
  }
  for (size_t i = 0; i < pic.nodes.size(); ++i) {
    const auto& node = pic.nodes[i];
    const auto& box = layout.nodes[i];
    h += "<g class=\"node kind-" + node.kind + " s-" + node.state + (node.highlighted ? " hl" : "") + "\" data-id=\"" +
         html_escape(node.id) + "\" data-kind=\"" + node.kind + "\" data-state=\"" + node.state + "\"><title>" +
         html_escape(node.kind + " " + node.id + " (" + node.state + ")" + (node.detail.empty() ? "" : ": " + node.detail)) +
         "</title><rect x=\"" + num(box.x) + "\" y=\"" + num(box.y) + "\" width=\"" + num(box.width) + "\" height=\"" +
         num(box.height) + "\" rx=\"6\"/>";
    h += "<circle class=\"dot s-" + node.state + "\" cx=\"" + num(box.x + k_node_padding - 4) + "\" cy=\"" + num(box.y + 12) +
         "\" r=\"4\"/>";
    h += "<text class=\"kind\" x=\"" + num(box.x + k_node_padding + 4) + "\" y=\"" + num(box.y + 15) + "\">" +
         html_escape(node.kind + " \u00b7 " + node.state) + "</text>";
    h += "<text x=\"" + num(box.x + k_node_padding - 8) + "\" y=\"" + num(box.y + 31) + "\">" + html_escape(box.label) +
         "</text></g>";
  }
  h += "</svg>";
  return h;
}

}  // namespace bw::api
