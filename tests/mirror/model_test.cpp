// The watch model with mirrors: a base named on either side of a rule is
// watched at its upstream, knows its mirror, and the graph reaches the
// project from the upstream; watch: entries and kept tags too.
#include <catch2/catch.hpp>

#include "config/config.h"
#include "tests/support/support.h"
#include "watcher/model.h"

using namespace bw;

TEST_CASE("every base, watch: entry and kept tag on either side of a rule is watched at its upstream", "[unit][mirror]") {
  testing::TempDir dir("bw-mirror-model");
  dir.write("a/Dockerfile", "FROM mir.test/base/alpine:3.20\n");
  dir.write("b/Dockerfile", "FROM up.test/library/node:20\n");
  auto cfg = config::parse(
      "mirrors:\n"
      "  - {from: up.test/library/*, to: mir.test/hub/library/*}\n"
      "  - {from: up.test/library/alpine, to: mir.test/base/alpine, tags: ['3.19']}\n"
      "watch:\n"
      "  - ref: mir.test/hub/library/redis:7\n"
      "projects:\n"
      "  - {name: a, dockerfile: a/Dockerfile}\n"
      "  - {name: b, dockerfile: b/Dockerfile}\n",
      dir.path() + "/c.yaml");
  REQUIRE(cfg.ok());
  auto model = watcher::build_model(*cfg);
  REQUIRE(model.ok());
  std::map<std::string, std::string> mirror_of;
  for (const auto& [key, item] : model->items) mirror_of[key] = item.mirror;
  CHECK(mirror_of == std::map<std::string, std::string>{
                         {"up.test/library/alpine:3.20", "mir.test/base/alpine:3.20"},
                         {"up.test/library/alpine:3.19", "mir.test/base/alpine:3.19"},
                         {"up.test/library/node:20", "mir.test/hub/library/node:20"},
                         {"up.test/library/redis:7", "mir.test/hub/library/redis:7"}});
  CHECK(model->items.at("up.test/library/alpine:3.20").mirror_rule == 1);
  CHECK(model->items.at("up.test/library/node:20").mirror_rule == 0);
  // a names the mirror: it builds FROM the copy; b names the upstream.
  const auto* a = model->project("a");
  REQUIRE(a);
  REQUIRE(a->bases.size() == 1);
  CHECK(a->bases[0].ref == "up.test/library/alpine:3.20");
  CHECK(a->bases[0].mirror == "mir.test/base/alpine:3.20");
  CHECK(model->project("b")->bases[0].mirror.empty());
  CHECK(model->items.at("up.test/library/alpine:3.20").projects == std::set<std::string>{"a"});
  // A change of the upstream reaches the project that builds FROM its copy.
  CHECK(model->graph->impact("up.test/library/alpine:3.20") == std::vector<std::string>{"a"});
}
