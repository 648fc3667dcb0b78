// /v1/images is written directly (no JSON tree): it must read back as the
// very document images_json builds, odd bytes included. Its pages
// (?limit=&offset=&ref=&errors=1) are slices of that same document.
#include <catch2/catch.hpp>

#include <variant>

#include "db/store.h"

#include "api/views.h"
#include "net/http.h"

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

// ---- GET /v1/images?limit=&offset=&ref=&errors=1 ----

namespace {

// Seven watched references; r.io/app/e:1 and r.io/app/g:1 failed their last
// check, r.io/app/c:1 was never checked (no row).
struct Fixture {
  watcher::Model model;
  std::vector<db::RefState> rows;
  std::set<std::string> failing{"r.io/app/e:1", "r.io/app/g:1"};
  Fixture() {
    for (char c = 'a'; c <= 'g'; ++c) {
      watcher::WatchItem item;
      item.ref = *oci::parse_reference(std::string("r.io/app/") + c + ":1");
      item.platforms.push_back(*oci::parse_platform("linux/amd64"));
      item.projects = {std::string("p") + c};
      model.items[item.ref.tag_ref()] = item;
      if (c == 'c') continue;
      db::RefState r;
      r.ref = item.ref.tag_ref();
      r.digest = "sha256:" + std::string(64, c);
      r.last_checked = 1'795'870'000'000 + c;
      if (failing.count(r.ref)) r.last_error = std::string("registry r.io: 500 for ") + c;
      rows.push_back(r);
    }
    watcher::WatchItem hub;
    hub.ref = *oci::parse_reference("alpine:3.20");
    hub.platforms.push_back(*oci::parse_platform("linux/amd64"));
    model.items[hub.ref.tag_ref()] = hub;
  }
  // What the unpaged answer says, as JSON.
  json full() const { return json::parse(api::images_json_text(rows, model)); }
  json page(const api::ImagesPage& p) const { return json::parse(api::images_json_text(rows, p.items)); }
};

api::ImagesQuery query(const std::multimap<std::string, std::string>& params) {
  auto parsed = api::parse_images_query(params);
  REQUIRE(std::holds_alternative<api::ImagesQuery>(parsed));
  return std::get<api::ImagesQuery>(parsed);
}

std::string refused(const std::multimap<std::string, std::string>& params) {
  auto parsed = api::parse_images_query(params);
  REQUIRE(std::holds_alternative<api::ApiError>(parsed));
  const auto& e = std::get<api::ApiError>(parsed);
  CHECK(e.status == 400);
  return e.error + ": " + e.detail;
}

json slice(const json& list, size_t offset, size_t limit) {
  json out = json::array();
  for (size_t i = offset; i < list.size() && i < offset + limit; ++i) out.push_back(list[i]);
  return out;
}

}  // namespace

TEST_CASE("images query: parameters, defaults and each invalid value named to the letter", "[api][views]") {
  auto none = query({});
  CHECK_FALSE(none.limit);
  CHECK(none.offset == 0);
  CHECK_FALSE(none.ref);
  CHECK_FALSE(none.errors_only);
  auto q = query({{"limit", "100"}, {"offset", "200"}, {"errors", "1"}, {"ref", "alpine:3.20"}, {"other", "x"}});
  CHECK(q.limit == size_t{100});
  CHECK(q.offset == 200);
  CHECK(q.errors_only);
  CHECK(q.ref == std::string("docker.io/library/alpine:3.20"));  // normalised like POST /v1/check
  CHECK(query({{"limit", "1"}}).limit == size_t{1});
  CHECK(query({{"limit", "1000"}}).limit == size_t{1000});
  CHECK_FALSE(query({{"errors", "0"}}).errors_only);

  CHECK(refused({{"limit", "0"}}) == "invalid limit: expected an integer from 1 to 1000, got \"0\"");
  CHECK(refused({{"limit", "1001"}}) == "invalid limit: expected an integer from 1 to 1000, got \"1001\"");
  CHECK(refused({{"limit", "ten"}}) == "invalid limit: expected an integer from 1 to 1000, got \"ten\"");
  CHECK(refused({{"limit", ""}}) == "invalid limit: expected an integer from 1 to 1000, got \"\"");
  CHECK(refused({{"limit", "+5"}}) == "invalid limit: expected an integer from 1 to 1000, got \"+5\"");
  CHECK(refused({{"offset", "-1"}}) == "invalid offset: expected an integer of 0 or more, got \"-1\"");
  CHECK(refused({{"offset", "1e3"}}) == "invalid offset: expected an integer of 0 or more, got \"1e3\"");
  CHECK(refused({{"offset", std::string(19, '9')}}) ==
        "invalid offset: expected an integer of 0 or more, got \"" + std::string(19, '9') + "\"");
  CHECK(refused({{"errors", "yes"}}) == "invalid errors: expected 1 or 0, got \"yes\"");
  CHECK(refused({{"ref", "Alpine:3.20"}}) == "invalid ref: invalid reference \"Alpine:3.20\": repository name must be lowercase");
  CHECK(refused({{"ref", ""}}) == "invalid ref: invalid reference \"\": reference is empty");
}

TEST_CASE("every page is the same slice of the unpaged list", "[api][views]") {
  Fixture f;
  json full = f.full();
  REQUIRE(full.size() == 8);
  CHECK(full[0]["ref"] == "docker.io/library/alpine:3.20");  // the model's order
  for (size_t limit = 1; limit <= 9; ++limit) {
    for (size_t offset = 0; offset <= 9; ++offset) {
      api::ImagesQuery q;
      q.limit = limit;
      q.offset = offset;
      auto page = api::select_images(f.model, q, {});
      INFO("limit " << limit << " offset " << offset);
      CHECK(page.total == 8);
      CHECK(f.page(page) == slice(full, offset, limit));
    }
  }
  // Only the page's rows are needed to write it.
  api::ImagesQuery q;
  q.limit = 2;
  q.offset = 3;
  auto page = api::select_images(f.model, q, {});
  std::vector<db::RefState> rows;
  for (const auto& r : f.rows) {
    for (const auto* item : page.items) {
      if (item->first == r.ref) rows.push_back(r);
    }
  }
  CHECK(rows.size() == 1);  // r.io/app/c:1 was never checked: no row, still listed
  CHECK(json::parse(api::images_json_text(rows, page.items)) == slice(full, 3, 2));
  CHECK(api::images_json(rows, page.items) == slice(full, 3, 2));
  // An offset alone runs to the end.
  api::ImagesQuery from5;
  from5.offset = 5;
  CHECK(f.page(api::select_images(f.model, from5, {})) == slice(full, 5, 100));
}

TEST_CASE("ref, errors=1 and failing-first select in the list's order", "[api][views]") {
  Fixture f;
  json full = f.full();
  api::ImagesQuery one;
  one.ref = "r.io/app/d:1";
  auto page = api::select_images(f.model, one, f.failing);
  CHECK(page.total == 1);
  CHECK(f.page(page) == slice(full, 4, 1));
  one.ref = "r.io/app/zz:1";
  CHECK(api::select_images(f.model, one, f.failing).total == 0);

  api::ImagesQuery errors;
  errors.errors_only = true;
  page = api::select_images(f.model, errors, f.failing);
  CHECK(page.total == 2);
  json failing = f.page(page);
  REQUIRE(failing.size() == 2);
  CHECK(failing[0] == full[5]);
  CHECK(failing[1] == full[7]);
  CHECK(failing[0]["last_error"] == "registry r.io: 500 for e");
  errors.limit = 1;
  errors.offset = 1;
  CHECK(f.page(api::select_images(f.model, errors, f.failing)) == slice(failing, 1, 1));
  // A healthy ref with errors=1: watched, but not in the answer.
  api::ImagesQuery healthy;
  healthy.ref = "r.io/app/a:1";
  healthy.errors_only = true;
  CHECK(api::select_images(f.model, healthy, f.failing).items.empty());
  // A failing reference the model no longer watches is not counted.
  auto stale = f.failing;
  stale.insert("r.io/gone/x:1");
  CHECK(api::select_images(f.model, errors, stale).total == 2);

  api::ImagesQuery first;
  first.errors_first = true;
  first.limit = 3;
  page = api::select_images(f.model, first, f.failing);
  CHECK(page.total == 8);
  json top = f.page(page);
  REQUIRE(top.size() == 3);
  CHECK(top[0]["ref"] == "r.io/app/e:1");
  CHECK(top[1]["ref"] == "r.io/app/g:1");
  CHECK(top[2] == full[0]);
}

TEST_CASE("the Link header names the next and previous pages", "[api][views]") {
  api::ImagesQuery q;
  CHECK(api::images_link_header(q, 10'000).empty());  // no limit: one answer
  q.limit = 100;
  CHECK(api::images_link_header(q, 10'000) == "</v1/images?limit=100&offset=100>; rel=\"next\"");
  q.offset = 200;
  CHECK(api::images_link_header(q, 10'000) ==
        "</v1/images?limit=100&offset=300>; rel=\"next\", </v1/images?limit=100&offset=100>; rel=\"prev\"");
  q.offset = 9'900;
  CHECK(api::images_link_header(q, 10'000) == "</v1/images?limit=100&offset=9800>; rel=\"prev\"");
  q.offset = 50;
  q.errors_only = true;
  CHECK(api::images_link_header(q, 151) ==
        "</v1/images?limit=100&offset=150&errors=1>; rel=\"next\", </v1/images?limit=100&offset=0&errors=1>; rel=\"prev\"");
  q.offset = 0;
  CHECK(api::images_link_header(q, 100).empty());  // exactly one page
  q.ref = "r.io/a b:1";
  q.offset = 1;
  CHECK(api::images_link_header(q, 1) == "</v1/images?limit=100&offset=0&errors=1&ref=r.io%2Fa%20b%3A1>; rel=\"prev\"");
  CHECK(net::url_encode("a-z.0_9~/:@ ") == "a-z.0_9~%2F%3A%40%20");
}

TEST_CASE("the store reads the rows of a page and the failing references", "[api][views][db]") {
  auto store = db::Store::open(":memory:");
  REQUIRE(store);
  Fixture f;
  for (const auto& r : f.rows) REQUIRE((*store)->put_ref(r));
  auto rows = (*store)->get_refs({"r.io/app/d:1", "r.io/app/c:1", "r.io/app/a:1"});
  REQUIRE(rows);
  REQUIRE(rows->size() == 2);  // c has no row
  CHECK((*rows)[0].ref == "r.io/app/d:1");  // in the order asked
  CHECK((*rows)[0].digest == "sha256:" + std::string(64, 'd'));
  CHECK((*rows)[1].ref == "r.io/app/a:1");
  CHECK((*store)->get_refs({})->empty());
  auto failing = (*store)->failing_refs();
  REQUIRE(failing);
  CHECK(*failing == f.failing);
  REQUIRE((*store)->touch_ref("r.io/app/e:1", 1'795'870'100'000, 1'795'871'000'000));
  CHECK(*(*store)->failing_refs() == std::set<std::string>{"r.io/app/g:1"});
}

TEST_CASE("/v1/status cluster: who answers, who leads and since when, the lease, every instance", "[api][views][cluster]") {
  cluster::View v;
  v.instance = "web-2-9-bbbbbb";
  v.leader = "web-1-7-aaaaaa";
  v.leader_since = 1'795'867'200'000;
  v.lease = Millis(15'000);
  v.instances = {db::Instance{"web-1-7-aaaaaa", "web-1", 7, "0.1.0", 1, 1'795'867'210'000},
                 db::Instance{"web-2-9-bbbbbb", "web-2", 9, "0.1.0", 2, 0}};
  CHECK(api::cluster_json(v) == json::parse(R"({"instance": "web-2-9-bbbbbb", "leader": "web-1-7-aaaaaa",
      "leader_since": "2026-11-28T12:00:00Z", "lease_seconds": 15, "instances": [
      {"id": "web-1-7-aaaaaa", "host": "web-1", "pid": 7, "version": "0.1.0", "last_seen": "2026-11-28T12:00:10Z"},
      {"id": "web-2-9-bbbbbb", "host": "web-2", "pid": 9, "version": "0.1.0", "last_seen": null}]})"));
  v.lease = Millis(2'500);
  CHECK(api::cluster_json(v)["lease_seconds"] == 2.5);
  // Nobody leads (the lease ran out), or alone on SQLite (no lease).
  v.leader.clear();
  v.lease = Millis(0);
  auto j = api::cluster_json(v);
  CHECK(j["leader"].is_null());
  CHECK(j["leader_since"].is_null());
  CHECK(j["lease_seconds"].is_null());
}
