// /v1/images is written directly (no JSON tree): it must read back as the
// very document images_json builds, odd bytes included.
#include <catch2/catch.hpp>

#include "api/views.h"

using namespace bw;
using json = nlohmann::json;

TEST_CASE("images_json_text is images_json, written directly", "[api][views]") {
  watcher::Model model;
  auto add = [&](const std::string& text, std::vector<std::string> platforms, std::set<std::string> projects, bool produced) {
    watcher::WatchItem item;
    item.ref = *oci::parse_reference(text);
    for (const auto& p : platforms) item.platforms.push_back(*oci::parse_platform(p));
    item.projects = std::move(projects);
    item.produced = produced;
    model.items[item.ref.tag_ref()] = item;
  };
  add("alpine:3.20", {"linux/amd64", "linux/arm64"}, {"web", "worker"}, false);
  add("r.io/team/app:1", {"linux/amd64"}, {}, true);
  add("r.io/never/checked:2", {"linux/amd64"}, {"web"}, false);
  std::vector<db::RefState> refs(2);
  refs[0].ref = "docker.io/library/alpine:3.20";
  refs[0].digest = "sha256:" + std::string(64, 'a');
  refs[0].media_type = "application/vnd.oci.image.index.v1+json";
  refs[0].platforms = {{"linux/amd64", "sha256:" + std::string(64, 'b')}, {"linux/arm64", "sha256:" + std::string(64, 'c')}};
  refs[0].last_checked = 1'795'870'000'000;
  refs[0].last_changed = 1'795'860'000'000;
  refs[0].next_check = 1'795'870'900'000;
  refs[1].ref = "r.io/team/app:1";
  refs[1].last_checked = 1'795'870'000'000;
  refs[1].last_error = "registry r.io: 401 \"unauthorized\"\n\ttab \x01 and a bad byte \xff";
  refs[1].error_kind = "unauthorized";

  std::string text = api::images_json_text(refs, model);
  json parsed = json::parse(text, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  json tree = api::images_json(refs, model);
  REQUIRE(parsed.size() == 3);
  // The bad byte reads back as U+FFFD; everything else is identical.
  CHECK(parsed[2]["last_error"] == "registry r.io: 401 \"unauthorized\"\n\ttab \x01 and a bad byte \xef\xbf\xbd");
  tree[2]["last_error"] = parsed[2]["last_error"];
  CHECK(parsed == tree);
  CHECK(text == tree.dump());
  CHECK(api::images_json_text({}, watcher::Model{}) == "[]");
}
