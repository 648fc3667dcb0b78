// The dependency graph across projects: upstream references feed projects,
// projects produce images, and produced images feed other projects (chains).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "util/result.h"

namespace bw::dockerfile {

struct ProjectInput {
  std::string name;
  std::string image;              // normalised tag ref it produces, or empty
  std::vector<std::string> bases; // normalised tag refs it uses (runtime and buildtime, not unused)
};

struct GraphNode {
  std::string id;    // the reference, or the project name
  std::string kind;  // "upstream" | "project" | "image"
};

struct GraphEdge {
  std::string from;
  std::string to;
};

class Graph {
 public:
  // Error (ErrorKind::invalid) when projects form a cycle; the message names
  // them: "dependency cycle between projects: a -> b -> a".
  static Result<Graph> build(const std::vector<ProjectInput>& projects);

  const std::vector<GraphNode>& nodes() const { return m_nodes; }
  const std::vector<GraphEdge>& edges() const { return m_edges; }

  // Every project a change of `ref` (a normalised tag ref) reaches, directly
  // or through produced images, dependencies before dependents; ties broken
  // by name so the order is stable.
  std::vector<std::string> impact(const std::string& ref) const;
  // Projects that use `ref` directly.
  std::vector<std::string> direct_users(const std::string& ref) const;
  // References that are not produced by any project: what must be polled upstream.
  std::vector<std::string> upstream_refs() const;
  // Text, JSON ({"nodes":[...],"edges":[...]}) and Graphviz dot renderings.
  std::string to_text() const;
  std::string to_json() const;
  std::string to_dot() const;

 private:
  std::vector<GraphNode> m_nodes;
  std::vector<GraphEdge> m_edges;
  // The projects using a reference, by name and by number (impact() works
  // on numbers: projects are numbered in name order, so the smallest ready
  // number is the smallest ready name).
  struct Users {
    std::set<std::string> names;
    std::vector<uint32_t> ids;
  };
  std::map<std::string, Users> m_users;                       // ref -> projects using it
  std::map<std::string, std::string> m_produced_by;           // image ref -> project
  std::map<std::string, std::string> m_produces;              // project -> image ref
  std::map<std::string, size_t> m_topo_rank;                  // project -> position in build order
  std::map<std::string, std::set<std::string>> m_bases;      // project -> refs it uses
  std::vector<std::string> m_order;                           // every project, in build order
  std::vector<std::string> m_names;                           // number -> project
  std::vector<std::vector<uint32_t>> m_successors;            // number -> users of the image it produces
};

}  // namespace bw::dockerfile
