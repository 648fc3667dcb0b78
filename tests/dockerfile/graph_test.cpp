// The project graph: chains through produced images, diamonds, cycles,
// stable ordering, the three renderings, and its cost at 10,000 projects.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dockerfile/dockerfile.h"
#include "dockerfile/graph.h"

using bw::dockerfile::Graph;
using bw::dockerfile::ProjectInput;

namespace {

const std::string k_alpine = "docker.io/library/alpine:3.20";
const std::string k_golang = "docker.io/library/golang:1.23";
const std::string k_base_image = "registry.example.com/internal/base:latest";
const std::string k_app_image = "registry.example.com/app:latest";

// upstream alpine -> project base -> internal/base image -> project app -> app image
std::vector<ProjectInput> chain() {
  return {
      {"app", k_app_image, {k_base_image}},
      {"base", k_base_image, {k_alpine}},
  };
}

Graph build_ok(const std::vector<ProjectInput>& projects) {
  auto g = Graph::build(projects);
  INFO((g.ok() ? std::string() : g.error().message));
  REQUIRE(g.ok());
  return *g;
}

std::string build_error(const std::vector<ProjectInput>& projects) {
  auto g = Graph::build(projects);
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().kind == bw::ErrorKind::invalid);
  return g.error().message;
}

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("graph: a chain through a produced image") {
  auto g = build_ok(chain());
  CHECK(g.impact(k_alpine) == Strings{"base", "app"});
  CHECK(g.impact(k_base_image) == Strings{"app"});
  CHECK(g.impact(k_app_image).empty());
  CHECK(g.impact("docker.io/library/unknown:1").empty());
  CHECK(g.direct_users(k_alpine) == Strings{"base"});
  CHECK(g.direct_users(k_base_image) == Strings{"app"});
  CHECK(g.upstream_refs() == Strings{k_alpine});

  std::vector<std::pair<std::string, std::string>> nodes;
  for (const auto& n : g.nodes()) nodes.emplace_back(n.id, n.kind);
  CHECK(nodes == std::vector<std::pair<std::string, std::string>>{
                     {k_alpine, "upstream"},
                     {"base", "project"},
                     {"app", "project"},
                     {k_app_image, "image"},
                     {k_base_image, "image"},
                 });
  std::vector<std::pair<std::string, std::string>> edges;
  for (const auto& e : g.edges()) edges.emplace_back(e.from, e.to);
  CHECK(edges == std::vector<std::pair<std::string, std::string>>{
                     {k_alpine, "base"},
                     {"base", k_base_image},
                     {k_base_image, "app"},
                     {"app", k_app_image},
                 });
}

TEST_CASE("graph: a diamond builds the shared base once, before both sides, and the top last") {
  auto g = build_ok({
      {"top", "", {"registry.example.com/left:1", "registry.example.com/right:1"}},
      {"right", "registry.example.com/right:1", {k_base_image, k_golang}},
      {"left", "registry.example.com/left:1", {k_base_image}},
      {"base", k_base_image, {k_alpine}},
  });
  CHECK(g.impact(k_alpine) == Strings{"base", "left", "right", "top"});
  CHECK(g.impact(k_golang) == Strings{"right", "top"});
  CHECK(g.upstream_refs() == Strings{k_alpine, k_golang});
}

TEST_CASE("graph: ties are broken by name, dependencies still come first") {
  auto g = build_ok({
      {"zeta", "", {k_alpine}},
      {"alpha", "", {k_alpine, "registry.example.com/zz:1"}},
      {"mid", "", {k_alpine}},
      {"zz-producer", "registry.example.com/zz:1", {k_golang}},
  });
  CHECK(g.impact(k_alpine) == Strings{"alpha", "mid", "zeta"});
  CHECK(g.impact(k_golang) == Strings{"zz-producer", "alpha"});
}

TEST_CASE("graph: the plan of a subset is ordered among that subset") {
  // c depends on x, which k_alpine does not reach: among {a, c}, name order.
  auto g = build_ok({
      {"x", "registry.example.com/x:1", {k_golang}},
      {"c", "", {"registry.example.com/x:1", k_alpine}},
      {"a", "", {k_alpine}},
  });
  CHECK(g.impact(k_alpine) == Strings{"a", "c"});
  CHECK(g.impact(k_golang) == Strings{"x", "c"});
}

TEST_CASE("graph: cycles between projects are an error naming them") {
  CHECK(build_error({
            {"a", "registry.example.com/a:1", {"registry.example.com/b:1"}},
            {"b", "registry.example.com/b:1", {"registry.example.com/a:1"}},
        }) == "dependency cycle between projects: a -> b -> a");
  CHECK(build_error({
            {"web", "registry.example.com/web:1", {"registry.example.com/api:1"}},
            {"db", "registry.example.com/db:1", {"registry.example.com/web:1", k_alpine}},
            {"api", "registry.example.com/api:1", {"registry.example.com/db:1"}},
            {"downstream", "", {"registry.example.com/web:1"}},
            {"fine", "registry.example.com/fine:1", {k_alpine}},
        }) == "dependency cycle between projects: api -> web -> db -> api");
  CHECK(build_error({{"self", "registry.example.com/self:1", {"registry.example.com/self:1"}}}) ==
        "dependency cycle between projects: self -> self");
}

TEST_CASE("graph: ambiguous inputs are errors") {
  CHECK(build_error({{"web", "", {k_alpine}}, {"web", "", {k_golang}}}) == "two projects are named \"web\"");
  CHECK(build_error({{"b", k_base_image, {k_alpine}}, {"a", k_base_image, {k_golang}}}) ==
        "projects a and b both produce the image " + k_base_image);
  CHECK(build_error({{"", "", {k_alpine}}}) == "a project has an empty name");
}

TEST_CASE("graph: the order does not depend on the order of the input") {
  std::vector<ProjectInput> projects = {
      {"base", k_base_image, {k_alpine}},
      {"app", k_app_image, {k_base_image, k_golang}},
      {"worker", "", {k_base_image}},
      {"tools", "", {k_golang}},
      {"docs", "", {}},
  };
  auto reference = build_ok(projects).to_json();
  std::mt19937 rng(42);
  for (int i = 0; i < 10; ++i) {
    std::shuffle(projects.begin(), projects.end(), rng);
    for (auto& p : projects) std::shuffle(p.bases.begin(), p.bases.end(), rng);
    CHECK(build_ok(projects).to_json() == reference);
  }
}

TEST_CASE("graph: unused stages never become graph edges") {
  // The graph gets the bases a build uses; `unused` ones are left out by the
  // caller, exactly as below.
  auto scanned = bw::dockerfile::scan(
      "FROM golang:1.23 AS build\nFROM node:20 AS docs\nFROM alpine:3.20\nCOPY --from=build /app /app\n",
      "Dockerfile", {});
  REQUIRE_FALSE(scanned.error.has_value());
  ProjectInput web{"web", k_app_image, {}};
  for (const auto& use : scanned.images) {
    if (use.kind != "unused") web.bases.push_back(use.ref.tag_ref());
  }
  auto g = build_ok({web});
  CHECK(g.upstream_refs() == Strings{k_alpine, k_golang});
  CHECK(g.impact("docker.io/library/node:20").empty());
  CHECK(g.impact(k_golang) == Strings{"web"});
}

TEST_CASE("graph: text, JSON and dot renderings") {
  auto g = build_ok(chain());
  CHECK(g.to_json() ==
        R"({"edges":[{"from":"docker.io/library/alpine:3.20","to":"base"},)"
        R"({"from":"base","to":"registry.example.com/internal/base:latest"},)"
        R"({"from":"registry.example.com/internal/base:latest","to":"app"},)"
        R"({"from":"app","to":"registry.example.com/app:latest"}],)"
        R"("nodes":[{"id":"docker.io/library/alpine:3.20","kind":"upstream"},{"id":"base","kind":"project"},)"
        R"({"id":"app","kind":"project"},{"id":"registry.example.com/app:latest","kind":"image"},)"
        R"({"id":"registry.example.com/internal/base:latest","kind":"image"}]})");
  CHECK(g.to_text() ==
        "projects, in build order:\n"
        "  base\n"
        "    uses docker.io/library/alpine:3.20\n"
        "    produces registry.example.com/internal/base:latest\n"
        "  app\n"
        "    uses registry.example.com/internal/base:latest (built by base)\n"
        "    produces registry.example.com/app:latest\n"
        "upstream references:\n"
        "  docker.io/library/alpine:3.20 -> base\n");
  CHECK(g.to_dot() ==
        "digraph basewatch {\n"
        "  rankdir=LR;\n"
        "  \"docker.io/library/alpine:3.20\" [shape=ellipse];\n"
        "  \"base\" [shape=box, style=\"rounded,filled\", fillcolor=\"#dde8f7\"];\n"
        "  \"app\" [shape=box, style=\"rounded,filled\", fillcolor=\"#dde8f7\"];\n"
        "  \"registry.example.com/app:latest\" [shape=note];\n"
        "  \"registry.example.com/internal/base:latest\" [shape=note];\n"
        "  \"docker.io/library/alpine:3.20\" -> \"base\";\n"
        "  \"base\" -> \"registry.example.com/internal/base:latest\";\n"
        "  \"registry.example.com/internal/base:latest\" -> \"app\";\n"
        "  \"app\" -> \"registry.example.com/app:latest\";\n"
        "}\n");
}

TEST_CASE("graph: names that need quoting stay valid in dot and JSON") {
  auto g = build_ok({{"we\"ird\\name", "", {k_alpine}}});
  CHECK(g.to_dot().find("\"we\\\"ird\\\\name\" [shape=box") != std::string::npos);
  CHECK(g.to_json().find(R"("id":"we\"ird\\name")") != std::string::npos);
  auto empty = build_ok({});
  CHECK(empty.to_json() == R"({"edges":[],"nodes":[]})");
  CHECK(empty.to_text() == "projects, in build order:\n  (none)\nupstream references:\n  (none)\n");
}

TEST_CASE("graph: 10,000 projects build in well under a second") {
  // 100 upstream bases, 1,000 internal base projects on them, 9,000
  // applications each on one or two internal bases: chains and fan-out.
  std::vector<ProjectInput> projects;
  projects.reserve(10000);
  auto internal = [](size_t i) { return "registry.example.com/internal/base-" + std::to_string(i) + ":latest"; };
  for (size_t i = 0; i < 1000; ++i) {
    projects.push_back({"base-" + std::to_string(i), internal(i),
                        {"docker.io/library/up" + std::to_string(i % 100) + ":1"}});
  }
  for (size_t i = 0; i < 9000; ++i) {
    projects.push_back({"app-" + std::to_string(i), "registry.example.com/app-" + std::to_string(i) + ":latest",
                        {internal(i % 1000), internal((i * 7) % 1000)}});
  }
  auto start = std::chrono::steady_clock::now();
  auto g = Graph::build(projects);
  auto plan = g.ok() ? g->impact("docker.io/library/up0:1") : Strings{};
  auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(g.ok());
  CHECK(g->nodes().size() == 100 + 10000 + 10000);
  // up0 feeds base-0, base-100, ... base-900; app-i uses them when i % 100 == 0.
  REQUIRE(plan.size() == 10 + 90);
  CHECK(plan.front() == "base-0");
  CHECK(plan.back() == "app-900");  // ties by name: "app-900" > "app-8900"
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() < 1000);
}

namespace {

// The plan by its definition, the slow way: every project a change of `ref`
// reaches (its users, then the users of their images, and so on), then
// Kahn over those projects alone, always taking the smallest ready name.
Strings plan_by_definition(const std::vector<ProjectInput>& projects, const std::string& ref) {
  std::map<std::string, std::set<std::string>> users;  // ref -> projects
  std::map<std::string, std::string> produces;         // project -> image
  for (const auto& p : projects) {
    for (const auto& b : p.bases) users[b].insert(p.name);
    if (!p.image.empty()) produces[p.name] = p.image;
  }
  auto next = [&](const std::string& project) {
    std::set<std::string> out;
    if (auto it = produces.find(project); it != produces.end() && users.count(it->second)) out = users[it->second];
    return out;
  };
  std::set<std::string> reached;
  std::vector<std::string> todo(users[ref].begin(), users[ref].end());
  while (!todo.empty()) {
    std::string p = todo.back();
    todo.pop_back();
    if (!reached.insert(p).second) continue;
    for (const auto& q : next(p)) todo.push_back(q);
  }
  std::map<std::string, int> indegree;
  for (const auto& p : reached) indegree[p];
  for (const auto& p : reached) {
    for (const auto& q : next(p)) ++indegree[q];
  }
  Strings plan;
  while (!indegree.empty()) {
    auto it = std::find_if(indegree.begin(), indegree.end(), [](const auto& e) { return e.second == 0; });
    REQUIRE(it != indegree.end());
    std::string p = it->first;
    indegree.erase(it);
    for (const auto& q : next(p)) --indegree[q];
    plan.push_back(p);
  }
  return plan;
}

}  // namespace

TEST_CASE("graph: impact is the definition's plan on random graphs with chains, fan-out and shared bases") {
  // Projects numbered in a shuffled order use upstream references and the
  // images of projects numbered before them (so there is no cycle); names
  // are not in dependency order, so ties and dependencies both matter.
  std::mt19937 rng(7);
  for (int round = 0; round < 40; ++round) {
    const int n = 5 + static_cast<int>(rng() % 120);
    const int upstreams = 1 + static_cast<int>(rng() % 6);
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i) names.push_back("p" + std::to_string(rng() % 100000) + "-" + std::to_string(i));
    std::vector<ProjectInput> projects;
    std::vector<std::string> refs;
    for (int u = 0; u < upstreams; ++u) refs.push_back("docker.io/library/up" + std::to_string(u) + ":1");
    std::vector<std::string> images;
    for (int i = 0; i < n; ++i) {
      ProjectInput p;
      p.name = names[static_cast<size_t>(i)];
      int uses = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < uses; ++k) {
        bool internal = !images.empty() && rng() % 3 != 0;
        p.bases.push_back(internal ? images[rng() % images.size()] : refs[rng() % static_cast<size_t>(upstreams)]);
      }
      if (rng() % 2 == 0) {
        p.image = "registry.example.com/img-" + std::to_string(i) + ":latest";
        images.push_back(p.image);
      }
      projects.push_back(std::move(p));
    }
    std::shuffle(projects.begin(), projects.end(), rng);
    auto g = build_ok(projects);
    refs.insert(refs.end(), images.begin(), images.end());
    refs.push_back("docker.io/library/nobody-uses-this:1");
    for (const auto& ref : refs) {
      INFO("round " << round << ", " << ref);
      CHECK(g.impact(ref) == plan_by_definition(projects, ref));
    }
  }
}
