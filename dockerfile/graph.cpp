#include "dockerfile/graph.h"

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>

namespace bw::dockerfile {
namespace {

// Kahn's algorithm over projects numbered 0..n-1 in name order, always taking
// the smallest ready number: dependencies first, ties by name. Returns fewer
// than n entries when there is a cycle.
std::vector<size_t> build_order(const std::vector<std::vector<size_t>>& successors, std::vector<size_t>& indegree) {
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < indegree.size(); ++i) {
    if (indegree[i] == 0) ready.push(i);
  }
  std::vector<size_t> order;
  order.reserve(indegree.size());
  while (!ready.empty()) {
    size_t p = ready.top();
    ready.pop();
    order.push_back(p);
    for (size_t q : successors[p]) {
      if (--indegree[q] == 0) ready.push(q);
    }
  }
  return order;
}

std::string dot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

Result<Graph> Graph::build(const std::vector<ProjectInput>& projects) {
  Graph g;
  std::map<std::string, size_t> id_of;  // name -> number in name order
  for (const auto& p : projects) {
    if (p.name.empty()) return make_error(ErrorKind::invalid, "a project has an empty name");
    if (!id_of.emplace(p.name, 0).second) {
      return make_error(ErrorKind::invalid, "two projects are named \"" + p.name + "\"");
    }
  }
  std::vector<std::string> names;
  names.reserve(id_of.size());
  for (auto& [name, id] : id_of) {
    id = names.size();
    names.push_back(name);
  }

  for (const auto& p : projects) {
    if (p.image.empty()) continue;
    auto [it, fresh] = g.m_produced_by.emplace(p.image, p.name);
    if (!fresh) {
      auto [first, second] = std::minmax(it->second, p.name);
      return make_error(ErrorKind::invalid,
                        "projects " + first + " and " + second + " both produce the image " + p.image);
    }
    g.m_produces[p.name] = p.image;
  }
  for (const auto& p : projects) {
    auto& bases = g.m_bases[p.name];
    bases.insert(p.bases.begin(), p.bases.end());
    const auto id = static_cast<uint32_t>(id_of.find(p.name)->second);
    for (const auto& b : bases) {
      auto& users = g.m_users[b];
      users.names.insert(p.name);
      users.ids.push_back(id);
    }
  }

  // Project edges: producer -> user of its image.
  const size_t n = names.size();
  std::vector<std::vector<size_t>> successors(n);
  std::vector<std::vector<size_t>> predecessors(n);
  std::vector<size_t> indegree(n, 0);
  for (const auto& [producer, image] : g.m_produces) {
    auto users = g.m_users.find(image);
    if (users == g.m_users.end()) continue;
    size_t from = id_of[producer];
    for (uint32_t to : users->second.ids) {
      successors[from].push_back(to);
      predecessors[to].push_back(from);
      ++indegree[to];
    }
  }

  auto order = build_order(successors, indegree);
  if (order.size() < n) {
    // Every project left over has a predecessor that is left over too, so
    // walking predecessors from any of them must come back round: that
    // loop is a cycle. Smallest names first, so the message is stable.
    size_t start = n;
    for (size_t i = 0; i < n && start == n; ++i) {
      if (indegree[i] > 0) start = i;
    }
    std::vector<size_t> seen_at(n, n);
    std::vector<size_t> walk;
    size_t cur = start;
    while (seen_at[cur] == n) {
      seen_at[cur] = walk.size();
      walk.push_back(cur);
      size_t best = n;
      for (size_t p : predecessors[cur]) {
        if (indegree[p] > 0 && p < best) best = p;
      }
      cur = best;
    }
    std::vector<size_t> cycle(walk.begin() + static_cast<long>(seen_at[cur]), walk.end());
    std::reverse(cycle.begin(), cycle.end());  // producer before user
    std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
    std::string message = "dependency cycle between projects: ";
    for (size_t i : cycle) message += names[i] + " -> ";
    message += names[cycle.front()];
    return make_error(ErrorKind::invalid, message);
  }

  // What impact() walks: projects by number (name order) and each one's successors.
  g.m_successors.reserve(n);
  for (auto& next : successors) g.m_successors.emplace_back(next.begin(), next.end());
  g.m_names = std::move(names);

  for (size_t i = 0; i < order.size(); ++i) {
    g.m_order.push_back(g.m_names[order[i]]);
    g.m_topo_rank[g.m_names[order[i]]] = i;
  }

  for (const auto& ref : g.upstream_refs()) g.m_nodes.push_back(GraphNode{ref, "upstream"});
  for (const auto& name : g.m_order) g.m_nodes.push_back(GraphNode{name, "project"});
  for (const auto& [image, producer] : g.m_produced_by) g.m_nodes.push_back(GraphNode{image, "image"});
  for (const auto& name : g.m_order) {
    for (const auto& base : g.m_bases[name]) g.m_edges.push_back(GraphEdge{base, name});
    if (auto it = g.m_produces.find(name); it != g.m_produces.end()) g.m_edges.push_back(GraphEdge{name, it->second});
  }
  return g;
}

std::vector<std::string> Graph::impact(const std::string& ref) const {
  auto direct = m_users.find(ref);
  if (direct == m_users.end()) return {};
  // The reached projects (the direct users and everything downstream of
  // their images), then Kahn over them only, always taking the smallest
  // number: numbers are in name order, so ties are broken by name among
  // them (a cycle cannot exist: build() refused it).
  const size_t n = m_names.size();
  std::vector<uint32_t> queue;
  std::vector<char> reached(n, 0);
  for (uint32_t p : direct->second.ids) {
    if (!reached[p]) {
      reached[p] = 1;
      queue.push_back(p);
    }
  }
  for (size_t i = 0; i < queue.size(); ++i) {
    for (uint32_t q : m_successors[queue[i]]) {
      if (!reached[q]) {
        reached[q] = 1;
        queue.push_back(q);
      }
    }
  }
  std::vector<uint32_t> indegree(n, 0);  // edges among the reached projects (their successors are all reached)
  for (uint32_t p : queue) {
    for (uint32_t q : m_successors[p]) ++indegree[q];
  }
  std::priority_queue<uint32_t, std::vector<uint32_t>, std::greater<>> ready;
  for (uint32_t p : queue) {
    if (indegree[p] == 0) ready.push(p);
  }
  std::vector<std::string> plan;
  plan.reserve(queue.size());
  while (!ready.empty()) {
    uint32_t p = ready.top();
    ready.pop();
    for (uint32_t q : m_successors[p]) {
      if (--indegree[q] == 0) ready.push(q);
    }
    plan.push_back(m_names[p]);
  }
  return plan;
}

std::vector<std::string> Graph::direct_users(const std::string& ref) const {
  auto it = m_users.find(ref);
  if (it == m_users.end()) return {};
  return std::vector<std::string>(it->second.names.begin(), it->second.names.end());
}

std::vector<std::string> Graph::upstream_refs() const {
  std::vector<std::string> out;
  for (const auto& [ref, users] : m_users) {
    if (!m_produced_by.count(ref)) out.push_back(ref);
  }
  return out;
}

std::string Graph::to_text() const {
  std::string out = "projects, in build order:\n";
  if (m_order.empty()) out += "  (none)\n";
  for (const auto& name : m_order) {
    out += "  " + name + "\n";
    if (auto it = m_bases.find(name); it != m_bases.end()) {
      for (const auto& base : it->second) {
        out += "    uses " + base;
        if (auto p = m_produced_by.find(base); p != m_produced_by.end()) out += " (built by " + p->second + ")";
        out += "\n";
      }
    }
    if (auto it = m_produces.find(name); it != m_produces.end()) out += "    produces " + it->second + "\n";
  }
  out += "upstream references:\n";
  auto upstream = upstream_refs();
  if (upstream.empty()) out += "  (none)\n";
  for (const auto& ref : upstream) {
    out += "  " + ref + " ->";
    for (const auto& user : m_users.at(ref).names) out += " " + user;
    out += "\n";
  }
  return out;
}

std::string Graph::to_json() const {
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& node : m_nodes) nodes.push_back({{"id", node.id}, {"kind", node.kind}});
  nlohmann::json edges = nlohmann::json::array();
  for (const auto& edge : m_edges) edges.push_back({{"from", edge.from}, {"to", edge.to}});
  nlohmann::json doc = {{"nodes", std::move(nodes)}, {"edges", std::move(edges)}};
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Graph::to_dot() const {
  std::string out = "digraph basewatch {\n  rankdir=LR;\n";
  for (const auto& node : m_nodes) {
    const char* attrs = node.kind == "project" ? "shape=box, style=\"rounded,filled\", fillcolor=\"#dde8f7\""
                        : node.kind == "image" ? "shape=note"
                                               : "shape=ellipse";
    out += "  " + dot_quote(node.id) + " [" + attrs + "];\n";
  }
  for (const auto& edge : m_edges) out += "  " + dot_quote(edge.from) + " -> " + dot_quote(edge.to) + ";\n";
  out += "}\n";
  return out;
}

}  // namespace bw::dockerfile
