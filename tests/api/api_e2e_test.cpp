// The API, metrics, the dashboard (in headless Chromium) and `basewatch
// status` against the real binary with a real registry and receiver.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "tests/api/helpers.h"

using namespace bw::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Service {
  TempDir dir{"bw-api"};
  int port = free_port();
  LocalRegistry registry;
  Receiver receiver;
  std::unique_ptr<Process> bw;
  std::string d1, d2;
  std::string ref;
  std::string config;

  // A watched tag that moved once, whose only delivery is dead (the
  // receiver answers 500 and one attempt is all there is).
  explicit Service(const std::string& extra_config = "") {
    receiver.set_status(500);
    d1 = registry.push_image("team/base", "1", "one");
    ref = registry.host() + "/team/base:1";
    dir.write("web/Dockerfile", "FROM " + ref + "\nRUN true\n");
    config = dir.write("config.yaml",
        "database: " + dir.path() + "/basewatch.db\n"
        "listen: 127.0.0.1:" + std::to_string(port) + "\n"
        "poll: {interval: 1h, jitter: 0%, settle: 0s}\n"
        "retry: {max_attempts: 1}\n"
        "registries:\n  " + registry.host() + ": {insecure: true}\n"
        "projects:\n  - {name: web, dockerfile: web/Dockerfile, triggers: [ci]}\n"
        "triggers:\n  ci: {type: webhook, url: " + receiver.url("/rebuild") + "}\n"
        "inbound:\n  - {name: local, path: /hooks/local, format: distribution}\n" + extra_config);
  }
  void start(const std::string& token = "") {
    bw = start_basewatch(config, port, dir.path() + "/basewatch.log");
    REQUIRE(bw->running());
    REQUIRE(wait_until([&] {
      auto images = get_json(port, "/v1/images", token);
      return images.is_array() && images.size() == 1 && images[0]["digest"] == d1;
    }, 20s));
    d2 = registry.push_image("team/base", "1", "two");
    auto r = http_call(port, "POST", "/v1/check", "{\"ref\": \"" + ref + "\"}", token.empty() ? std::map<std::string, std::string>{}
                                                                                      : std::map<std::string, std::string>{{"Authorization", "Bearer " + token}});
    REQUIRE(r.status == 202);
    REQUIRE(wait_until([&] {
      auto dead = get_json(port, "/v1/deliveries?state=dead", token);
      return dead.is_array() && dead.size() == 1;
    }, 20s));
  }
  ~Service() {
    if (bw) {
      bw->signal(SIGTERM);
      bw->wait(10s);
    }
  }
};

}  // namespace

TEST_CASE("status, images, events, deliveries and metrics through a real HTTP client", "[integration][api]") {
  Service s;
  s.start();
  auto status = get_json(s.port, "/v1/status");
  REQUIRE(status.is_object());
  CHECK(status["version"].is_string());
  CHECK(status["uptime_seconds"].is_number());
  CHECK(status["counts"]["references"] == 1);
  CHECK(status["counts"]["projects"] == 1);
  CHECK(status["counts"]["pending"] == 0);
  CHECK(status["counts"]["failed"] == 0);
  CHECK(status["counts"]["dead"] == 1);
  CHECK(status["last_poll"].is_string());
  CHECK(status["next_poll"].is_string());
  REQUIRE(status["registries"].contains(s.registry.host()));
  CHECK(status["registries"][s.registry.host()]["requests"].get<int>() >= 2);
  CHECK(status["registries"][s.registry.host()]["last_error"].is_null());
  CHECK(status["registries"][s.registry.host()].contains("ratelimit_remaining"));
  CHECK(status["inbound"] == json::parse(R"([{"accepted":0,"format":"distribution","last_outcome":null,"last_received_at":null,
      "name":"local","path":"/hooks/local","received":0,"rejected":0}])"));
  // SQLite: one instance, which leads from its start; no lease.
  const json& cluster = status["cluster"];
  REQUIRE(cluster.is_object());
  std::string self = cluster["instance"];
  CHECK(cluster["leader"] == self);
  CHECK(cluster["leader_since"] == status["started_at"]);
  CHECK(cluster["lease_seconds"].is_null());
  REQUIRE(cluster["instances"].size() == 1);
  CHECK(cluster["instances"][0]["id"] == self);
  CHECK(cluster["instances"][0]["pid"] == s.bw->pid());
  CHECK(cluster["instances"][0]["version"] == status["version"]);
  CHECK(cluster["instances"][0]["host"].is_string());
  CHECK(cluster["instances"][0]["last_seen"].is_string());
  CHECK(self.rfind(cluster["instances"][0]["host"].get<std::string>() + "-" + std::to_string(s.bw->pid()) + "-", 0) == 0);

  auto images = get_json(s.port, "/v1/images");
  REQUIRE(images.size() == 1);
  CHECK(images[0]["ref"] == s.ref);
  CHECK(images[0]["digest"] == s.d2);
  CHECK(images[0]["platforms"] == json{{"linux/amd64", s.d2}});
  CHECK(images[0]["dependents"] == json::array({"web"}));
  CHECK(images[0]["last_checked"].is_string());
  CHECK(images[0]["last_changed"].is_string());
  CHECK(images[0]["last_error"].is_null());

  auto events = get_json(s.port, "/v1/events");
  REQUIRE(events.size() == 1);
  CHECK(events[0]["source"] == "manual");
  CHECK(events[0]["new_digest"] == s.d2);

  auto dead = get_json(s.port, "/v1/deliveries?state=dead");
  REQUIRE(dead.size() == 1);
  std::string id = dead[0]["id"];
  CHECK(dead[0]["trigger"] == "ci");
  CHECK(dead[0]["project"] == "web");
  CHECK(dead[0]["last_attempt"]["status"] == 500);
  auto bad_state = http_call(s.port, "GET", "/v1/deliveries?state=lost");
  CHECK(bad_state.status == 400);
  CHECK(bad_state.body == R"({"detail":"expected pending, delivered, failed or dead","error":"invalid state"})");
  auto one = get_json(s.port, "/v1/deliveries/" + id);
  CHECK(one["payload"]["changes"][0]["new_digest"] == s.d2);
  CHECK(http_call(s.port, "GET", "/v1/deliveries/d_nope").body == R"({"detail":"d_nope","error":"no such delivery"})");

  auto graph = get_json(s.port, "/v1/graph");
  CHECK(graph["nodes"].is_array());
  auto dot = http_call(s.port, "GET", "/v1/graph?format=dot");
  CHECK(dot.status == 200);
  CHECK(dot.body.find("digraph") != std::string::npos);

  CHECK(http_call(s.port, "POST", "/v1/check", "{\"ref\": \"r.io/not/watched:1\"}").body ==
        R"({"detail":"r.io/not/watched:1","error":"reference not watched"})");
  // `curl -X POST URL` sends neither Content-Length nor a body: an empty
  // body, so every reference (cpp-httplib alone waited for the connection
  // to close, then said 400).
  RunResult bare = run({"curl", "-sS", "-X", "POST", "-w", " %{http_code}", "http://127.0.0.1:" + std::to_string(s.port) + "/v1/check"});
  CHECK(bare.output == R"({"ref":null,"state":"queued"} 202)");
  CHECK(http_call(s.port, "GET", "/healthz").status == 200);
  CHECK(http_call(s.port, "GET", "/readyz").status == 200);

  auto metrics = http_call(s.port, "GET", "/metrics");
  REQUIRE(metrics.status == 200);
  CHECK(metrics.content_type.rfind("text/plain", 0) == 0);
  const std::string& m = metrics.body;
  CHECK(m.find("# TYPE basewatch_build_info gauge\nbasewatch_build_info{version=\"" + status["version"].get<std::string>() + "\"} 1\n") != std::string::npos);
  CHECK(m.find("basewatch_references_watched 1\n") != std::string::npos);
  CHECK(m.find("basewatch_deliveries{state=\"dead\"} 1\n") != std::string::npos);
  CHECK(m.find("basewatch_deliveries{state=\"pending\"} 0\n") != std::string::npos);
  CHECK(m.find("# TYPE basewatch_deliveries gauge\n") != std::string::npos);

  // Retry through the API: queued again, attempted again (and dead again, the receiver still fails).
  size_t before = s.receiver.count();
  auto retry = http_call(s.port, "POST", "/v1/deliveries/" + id + "/retry");
  CHECK(retry.status == 202);
  CHECK(retry.body == R"({"id":")" + id + R"(","state":"queued"})");
  CHECK(s.receiver.wait_for(before + 1, 10s));
  CHECK(http_call(s.port, "POST", "/v1/deliveries/d_nope/retry").status == 404);
}

TEST_CASE("the dashboard in headless Chromium: bases, digests, feeds, events and a retry button", "[integration][api][dashboard]") {
  REQUIRE(access(k_chromium, X_OK) == 0);  // scripts/install-deps installs chromium
  Service s;
  s.start();
  std::string url = "http://127.0.0.1:" + std::to_string(s.port) + "/";

  auto page = http_call(s.port, "GET", "/");
  REQUIRE(page.status == 200);
  CHECK(page.content_type == "text/html; charset=utf-8");

  auto dom = chromium(s.dir.path(), {"--dump-dom", url});
  INFO(dom.errors);
  REQUIRE(dom.status == 0);
  const std::string& html = dom.output;
  CHECK(html.find("<td class=\"ref\">" + s.ref + "</td>") != std::string::npos);
  CHECK(html.find(s.d2.substr(7, 12)) != std::string::npos);  // short digests
  CHECK(html.find("linux/amd64") != std::string::npos);
  CHECK(html.find("<td>web</td>") != std::string::npos);  // what the base feeds
  CHECK(html.find("<span class=\"badge bad\">dead</span>") != std::string::npos);
  std::string id = get_json(s.port, "/v1/deliveries?state=dead")[0]["id"];
  CHECK(html.find("action=\"/v1/deliveries/" + id + "/retry\"") != std::string::npos);
  CHECK(html.find("<td>manual</td>") != std::string::npos);  // the event and its source
  CHECK(html.find("<span class=\"badge ok\">fired</span>") != std::string::npos);

  std::string shot = s.dir.path() + "/dash.png";
  auto screenshot = chromium(s.dir.path(), {"--screenshot=" + shot, "--window-size=1280,900", "--hide-scrollbars", url});
  INFO(screenshot.errors);
  CHECK(screenshot.status == 0);
  REQUIRE(std::filesystem::exists(shot));
  CHECK(std::filesystem::file_size(shot) > 10'000);
  if (const char* keep = std::getenv("BASEWATCH_DASHBOARD_SHOT")) std::filesystem::copy_file(shot, keep, std::filesystem::copy_options::overwrite_existing);
}

TEST_CASE("with api.token_file, /v1/* and / need the bearer token; the page asks for it", "[integration][api]") {
  const std::string token = "api-token-123";
  TempDir tokens("bw-token");
  std::string token_file = tokens.write("api-token", token + "\n");
  Service s("api: {token_file: " + token_file + "}\n");
  s.start(token);
  auto r = http_call(s.port, "GET", "/v1/status");
  CHECK(r.status == 401);
  CHECK(r.body == R"x({"detail":"send Authorization: Bearer <token> (api.token_file)","error":"unauthorized"})x");
  r = http_call(s.port, "GET", "/v1/status", "", {{"Authorization", "Bearer wrong"}});
  CHECK(r.status == 401);
  r = http_call(s.port, "POST", "/v1/check", "", {});
  CHECK(r.status == 401);
  CHECK(http_call(s.port, "GET", "/v1/status", "", {{"Authorization", "Bearer " + token}}).status == 200);
  CHECK(http_call(s.port, "GET", "/metrics").status == 200);  // scrapers need no token
  CHECK(http_call(s.port, "GET", "/healthz").status == 200);

  auto login = http_call(s.port, "GET", "/");
  CHECK(login.status == 401);
  CHECK(login.content_type == "text/html; charset=utf-8");
  CHECK(login.body.find("API token needed") != std::string::npos);
  CHECK(login.body.find(s.ref) == std::string::npos);  // nothing of the state leaks
  auto dash = http_call(s.port, "GET", "/", "", {{"Authorization", "Bearer " + token}});
  CHECK(dash.status == 200);
  CHECK(dash.body.find(s.ref) != std::string::npos);
  // The inbound hook authenticates on its own (here: no secret), not with the API token.
  CHECK(http_call(s.port, "POST", "/hooks/local", R"({"events":[]})").status == 202);

  // basewatch status: the token from the environment or a file.
  auto url = "http://127.0.0.1:" + std::to_string(s.port);
  auto denied = run({basewatch_binary(), "status", "--url", url});
  CHECK(denied.status == 1);
  CHECK(denied.errors.find("unauthorized") != std::string::npos);
  auto via_env = run({basewatch_binary(), "status", "--url", url, "--json"}, {{"BASEWATCH_API_TOKEN", token}});
  REQUIRE(via_env.status == 0);
  auto j = json::parse(via_env.output, nullptr, false);
  REQUIRE(j.is_object());
  CHECK(j["counts"]["dead"] == 1);
  CHECK(j["images"][0]["ref"] == s.ref);
  auto via_file = run({basewatch_binary(), "status", "--url", url, "--token-file", token_file});
  CHECK(via_file.status == 0);
  CHECK(via_file.output.find(s.ref) != std::string::npos);
}

TEST_CASE("basewatch status prints a readable table from the config's listen address", "[integration][api][cli]") {
  Service s;
  s.start();
  auto out = run({basewatch_binary(), "status", "-c", s.config});
  INFO(out.errors);
  REQUIRE(out.status == 0);
  const std::string& t = out.output;
  CHECK(t.find("basewatch ") == 0);
  CHECK(t.find("references 1") != std::string::npos);
  CHECK(t.find("dead 1") != std::string::npos);
  CHECK(t.find(s.ref) != std::string::npos);
  CHECK(t.find(s.d2.substr(7, 12)) != std::string::npos);
  CHECK(t.find("web") != std::string::npos);
  CHECK(t.find("cluster") == std::string::npos);  // alone on SQLite: nothing to say about leaders
  auto js = run({basewatch_binary(), "status", "-c", s.config, "--json"});
  REQUIRE(js.status == 0);
  auto j = json::parse(js.output, nullptr, false);
  REQUIRE(j.is_object());
  CHECK(j["images"][0]["digest"] == s.d2);
  auto down = run({basewatch_binary(), "status", "--url", "http://127.0.0.1:" + std::to_string(free_port())});
  CHECK(down.status == 1);
  CHECK(down.errors.rfind("basewatch: cannot reach basewatch at http://127.0.0.1:", 0) == 0);
}

namespace {

// Six tags of one image on a real registry plus one tag that is not there
// (its checks fail), all watched; waits until every one has been checked.
struct ManyRefs {
  TempDir dir{"bw-api-paging"};
  int port = free_port();
  LocalRegistry registry;
  std::unique_ptr<Process> bw;
  std::string missing;

  ManyRefs() {
    std::string watch;
    for (const char* tag : {"t0", "t1", "t2", "t3", "t4", "latest"}) {
      registry.push_image("team/base", tag, std::string("content of ") + tag);
      watch += "  - ref: " + registry.host() + "/team/base:" + tag + "\n";
    }
    missing = registry.host() + "/team/base:missing";
    watch += "  - ref: " + missing + "\n";
    std::string config = dir.write("config.yaml",
        "database: " + dir.path() + "/basewatch.db\n"
        "listen: 127.0.0.1:" + std::to_string(port) + "\n"
        "poll: {interval: 1h, jitter: 0%}\n"
        "registries:\n  " + registry.host() + ": {insecure: true}\n"
        "watch:\n" + watch);
    bw = start_basewatch(config, port, dir.path() + "/basewatch.log");
    REQUIRE(bw->running());
    REQUIRE(wait_until([&] {
      auto images = get_json(port, "/v1/images");
      if (!images.is_array() || images.size() != 7) return false;
      for (const auto& i : images) {
        if (i["last_checked"].is_null()) return false;
      }
      return true;
    }, 20s));
  }
  ~ManyRefs() {
    bw->signal(SIGTERM);
    bw->wait(10s);
  }
  HttpAnswer get(const std::string& path) const { return http_call(port, "GET", path); }
};

json slice(const json& list, size_t offset, size_t limit) {
  json out = json::array();
  for (size_t i = offset; i < list.size() && i < offset + limit; ++i) out.push_back(list[i]);
  return out;
}

}  // namespace

TEST_CASE("/v1/images pages: slices of the full list, X-Total-Count and Link", "[integration][api]") {
  ManyRefs s;
  auto whole = s.get("/v1/images");
  REQUIRE(whole.status == 200);
  json full = whole.json();
  REQUIRE(full.size() == 7);
  CHECK(whole.header("X-Total-Count") == "7");
  CHECK(whole.count("Link") == 0);
  for (size_t limit : {1, 2, 3, 7}) {
    for (size_t offset = 0; offset <= 8; ++offset) {
      std::string q = "limit=" + std::to_string(limit) + "&offset=" + std::to_string(offset);
      auto page = s.get("/v1/images?" + q);
      INFO(q);
      REQUIRE(page.status == 200);
      CHECK(page.content_type == "application/json");
      CHECK(page.json() == slice(full, offset, limit));
      CHECK(page.count("X-Total-Count") == 1);
      CHECK(page.header("X-Total-Count") == "7");
      bool more = offset + limit < 7;
      CHECK((page.header("Link").find("rel=\"next\"") != std::string::npos) == more);
      CHECK((page.header("Link").find("rel=\"prev\"") != std::string::npos) == (offset > 0));
    }
  }
  CHECK(s.get("/v1/images?limit=3").header("Link") == "</v1/images?limit=3&offset=3>; rel=\"next\"");
  CHECK(s.get("/v1/images?limit=3&offset=3").header("Link") ==
        "</v1/images?limit=3&offset=6>; rel=\"next\", </v1/images?limit=3&offset=0>; rel=\"prev\"");
  CHECK(s.get("/v1/images?limit=3&offset=6").header("Link") == "</v1/images?limit=3&offset=3>; rel=\"prev\"");
  CHECK(s.get("/v1/images?offset=5").json() == slice(full, 5, 7));  // an offset alone runs to the end
  CHECK(s.get("/v1/images?limit=1000").json() == full);
  // Following the next links walks the whole list.
  json walked = json::array();
  std::string next = "/v1/images?limit=2";
  for (int pages = 0; !next.empty() && pages < 10; ++pages) {
    auto page = s.get(next);
    REQUIRE(page.status == 200);
    for (auto& i : page.json()) walked.push_back(i);
    std::string link = page.header("Link");
    auto end = link.find(">; rel=\"next\"");
    next = end == std::string::npos ? "" : link.substr(1, end - 1);
  }
  CHECK(walked == full);
}

TEST_CASE("/v1/images?ref= normalises the reference, ?errors=1 lists the failing ones, bad values are 400", "[integration][api]") {
  ManyRefs s;
  json full = s.get("/v1/images").json();
  REQUIRE(full.size() == 7);
  std::string latest = s.registry.host() + "/team/base:latest";

  auto one = s.get("/v1/images?ref=" + s.registry.host() + "/team/base");  // no tag: :latest
  REQUIRE(one.status == 200);
  REQUIRE(one.json().size() == 1);
  CHECK(one.json()[0]["ref"] == latest);
  for (const auto& i : full) {
    if (i["ref"] == latest) CHECK(one.json()[0] == i);
  }
  CHECK(one.header("X-Total-Count") == "1");
  auto encoded = s.get("/v1/images?ref=" + s.registry.host() + "%2Fteam%2Fbase%3At3");
  REQUIRE(encoded.json().size() == 1);
  CHECK(encoded.json()[0]["ref"] == s.registry.host() + "/team/base:t3");

  auto unwatched = s.get("/v1/images?ref=" + s.registry.host() + "/team/other:1");
  CHECK(unwatched.status == 404);
  CHECK(unwatched.body == R"({"detail":")" + s.registry.host() + R"(/team/other:1","error":"reference not watched"})");

  auto errors = s.get("/v1/images?errors=1");
  REQUIRE(errors.status == 200);
  REQUIRE(errors.json().size() == 1);
  CHECK(errors.json()[0]["ref"] == s.missing);
  CHECK(errors.json()[0]["last_error"].is_string());
  CHECK(errors.json()[0]["error_kind"] == "not_found");
  CHECK(errors.header("X-Total-Count") == "1");
  CHECK(s.get("/v1/images?errors=1&ref=" + latest).json() == json::array());
  CHECK(s.get("/v1/images?errors=0&limit=2").json() == slice(full, 0, 2));

  auto bad = [&](const std::string& query) {
    auto r = s.get("/v1/images?" + query);
    CHECK(r.status == 400);
    CHECK(r.content_type == "application/json");
    return r.body;
  };
  CHECK(bad("limit=0") == R"({"detail":"expected an integer from 1 to 1000, got \"0\"","error":"invalid limit"})");
  CHECK(bad("limit=1001") == R"({"detail":"expected an integer from 1 to 1000, got \"1001\"","error":"invalid limit"})");
  CHECK(bad("limit=all") == R"({"detail":"expected an integer from 1 to 1000, got \"all\"","error":"invalid limit"})");
  CHECK(bad("offset=-3") == R"({"detail":"expected an integer of 0 or more, got \"-3\"","error":"invalid offset"})");
  CHECK(bad("errors=true") == R"({"detail":"expected 1 or 0, got \"true\"","error":"invalid errors"})");
  CHECK(bad("ref=Team/Base") ==
        R"({"detail":"invalid reference \"Team/Base\": repository name must be lowercase","error":"invalid ref"})");
  CHECK(bad("limit=%FF") == "{\"detail\":\"expected an integer from 1 to 1000, got \\\"\xEF\xBF\xBD\\\"\",\"error\":\"invalid limit\"}");
}

TEST_CASE("the dashboard pages through references, failing ones first", "[integration][api][dashboard]") {
  ManyRefs s;
  auto first = s.get("/?limit=2");
  REQUIRE(first.status == 200);
  CHECK(first.content_type == "text/html; charset=utf-8");
  const std::string& html = first.body;
  CHECK(html.find("<span>References 1&ndash;2 of 7 &middot; 1 with errors, listed first</span>") != std::string::npos);
  CHECK(html.find("<a rel=\"next\" href=\"/?limit=2&amp;offset=2\">Next 2 &rarr;</a>") != std::string::npos);
  CHECK(html.find("rel=\"prev\"") == std::string::npos);
  // The failing reference is the first row; only two rows are on the page.
  auto row = html.find("<td class=\"ref\">");
  REQUIRE(row != std::string::npos);
  CHECK(html.compare(row, 16 + s.missing.size(), "<td class=\"ref\">" + s.missing) == 0);
  auto begin = html.find("<section id=\"images\">");
  auto end = html.find("</section>", begin);
  REQUIRE(end != std::string::npos);
  std::string section = html.substr(begin, end - begin);
  size_t rows = 0;
  for (auto at = section.find("<tr><td"); at != std::string::npos; at = section.find("<tr><td", at + 1)) ++rows;
  CHECK(rows == 2);

  auto last = s.get("/?limit=2&offset=6");
  CHECK(last.body.find("<span>References 7&ndash;7 of 7 &middot; 1 with errors, listed first</span>"
                       "<a rel=\"prev\" href=\"/?limit=2&amp;offset=4\">&larr; Previous 2</a></p>") != std::string::npos);
  CHECK(last.body.find("rel=\"next\"") == std::string::npos);

  // The default page holds 200: all seven, no links, the failing one still first.
  auto all = s.get("/");
  CHECK(all.body.find("<span>References 1&ndash;7 of 7 &middot; 1 with errors, listed first</span></p>") != std::string::npos);
  CHECK(all.body.find("rel=\"next\"") == std::string::npos);

  auto bad = s.get("/?offset=x");
  CHECK(bad.status == 400);
  CHECK(bad.body == R"({"detail":"expected an integer of 0 or more, got \"x\"","error":"invalid offset"})");

  // In a real browser (strict CSP): the page and its next link.
  REQUIRE(access(k_chromium, X_OK) == 0);
  auto dom = chromium(s.dir.path(), {"--dump-dom", "http://127.0.0.1:" + std::to_string(s.port) + "/?limit=2&offset=2"});
  INFO(dom.errors);
  REQUIRE(dom.status == 0);
  CHECK(dom.output.find("References 3–4 of 7") != std::string::npos);
  CHECK(dom.output.find("href=\"/?limit=2&amp;offset=4\"") != std::string::npos);
  CHECK(dom.output.find("href=\"/?limit=2&amp;offset=0\"") != std::string::npos);
}
