// The outbox on real parts: the real basewatch binary, a real docker-registry
// and real HTTP receivers, all on 127.0.0.1. Retries under one id until a
// 2xx and never after; dead after max_attempts; GitHub and GitLab requests
// checked field by field; SIGKILL with a delivery pending; settle batching;
// a chain whose base project is built by a command trigger that pushes to
// the registry.
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "tests/integration/helpers.h"

using namespace bw::testing;
using json = nlohmann::json;

namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Decodes application/x-www-form-urlencoded.
std::map<std::string, std::string> form_of(const std::string& body) {
  auto decode = [](const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size()) {
        out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += s[i] == '+' ? ' ' : s[i];
      }
    }
    return out;
  };
  std::map<std::string, std::string> out;
  for (size_t start = 0; start <= body.size();) {
    size_t amp = body.find('&', start);
    std::string pair = body.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    size_t eq = pair.find('=');
    out[decode(pair.substr(0, eq))] = eq == std::string::npos ? "" : decode(pair.substr(eq + 1));
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

std::string head(int api_port) {
  return "database: basewatch.db\n"
         "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
         "log: {level: debug}\n";
}

// The deliveries of the API, by trigger name.
std::map<std::string, json> deliveries_by_trigger(int api_port) {
  std::map<std::string, json> out;
  auto all = get_json(api_port, "/v1/deliveries");
  if (all.is_array()) {
    for (auto& d : all) out[d["trigger"].get<std::string>()] = d;
  }
  return out;
}

bool baseline_seen(int api_port, size_t refs) {
  auto images = get_json(api_port, "/v1/images");
  if (!images.is_array() || images.size() != refs) return false;
  for (auto& i : images) {
    if (!i["digest"].is_string()) return false;
  }
  return true;
}

void stop(Process& bw) {
  bw.signal(SIGTERM);
  auto code = bw.wait(10s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

}  // namespace

TEST_CASE("one change, four triggers: retried under one id until a 2xx, dead after max_attempts, "
          "GitHub and GitLab requests as documented",
          "[integration][outbox]") {
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "release one");
  Receiver flaky, down, github, gitlab;
  int flaky_calls = 0;
  std::mutex m;
  flaky.set_handler([&](const ReceivedRequest&) {
    std::lock_guard lock(m);
    return std::make_pair(++flaky_calls <= 2 ? 503 : 200, std::string("ok"));
  });
  down.set_status(500);
  github.set_status(204);
  gitlab.set_status(201);

  TempDir dir("bw-outbox");
  int api_port = free_port();
  dir.write("web/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20\n");
  dir.write("gh-token", "ghp_test_token\n");
  dir.write("gl-token", "glptt-test-token\n");
  std::string config = dir.write("config.yaml", head(api_port) +
      "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
      "retry: {max_attempts: 3, initial: 300ms, max: 600ms}\n"
      "registries: {\"" + registry.host() + "\": {insecure: true}}\n"
      "projects:\n"
      "  - name: web\n"
      "    dockerfile: web/Dockerfile\n"
      "    triggers: [flaky, down, gh, gl]\n"
      "triggers:\n"
      "  flaky: {type: webhook, url: \"" + flaky.url("/hook") + "\", timeout: 5s}\n"
      "  down: {type: webhook, url: \"" + down.url("/hook") + "\", timeout: 5s}\n"
      "  gh: {type: github, repository: org/web, event_type: base-image-updated, token_file: gh-token,\n"
      "       api_url: \"" + github.url("/api/v3") + "\"}\n"
      "  gl: {type: gitlab, url: \"" + gitlab.url("/") + "\", project: group/web, ref: main, token_file: gl-token}\n");
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] { return baseline_seen(api_port, 1); }, 20s));

  std::string d2 = registry.push_image("team/alpine", "3.20", "release two");
  REQUIRE(flaky.wait_for(3, 20s));
  REQUIRE(down.wait_for(3, 20s));
  REQUIRE(github.wait_for(1, 10s));
  REQUIRE(gitlab.wait_for(1, 10s));
  std::this_thread::sleep_for(2s);  // several more backoff periods: nothing more may come
  CHECK(flaky.count() == 3);
  CHECK(down.count() == 3);
  CHECK(github.count() == 1);
  CHECK(gitlab.count() == 1);

  // One id across the retries, the same bytes each time.
  auto fr = flaky.requests();
  std::string id = fr[0].headers.at("x-basewatch-delivery");
  for (const auto& r : fr) {
    CHECK(r.headers.at("x-basewatch-delivery") == id);
    CHECK(r.body == fr[0].body);
  }
  auto body = json::parse(fr[0].body);
  CHECK(body["delivery_id"] == id);
  CHECK(body["changes"][0]["new_digest"] == d2);

  auto ds = deliveries_by_trigger(api_port);
  REQUIRE(ds.size() == 4);
  CHECK(ds["flaky"]["id"] == id);
  CHECK(ds["flaky"]["state"] == "delivered");
  CHECK(ds["flaky"]["attempts"] == 3);
  CHECK(ds["down"]["state"] == "dead");
  CHECK(ds["down"]["attempts"] == 3);
  CHECK(ds["down"]["last_error"] == "HTTP 500");
  CHECK(ds["gh"]["state"] == "delivered");
  CHECK(ds["gh"]["last_status"] == 204);
  CHECK(ds["gl"]["state"] == "delivered");
  CHECK(ds["gl"]["last_status"] == 201);

  // GitHub: repository_dispatch, field by field.
  auto g = github.requests()[0];
  CHECK(g.method == "POST");
  CHECK(g.path == "/api/v3/repos/org/web/dispatches");
  CHECK(g.headers.at("accept") == "application/vnd.github+json");
  CHECK(g.headers.at("authorization") == "Bearer ghp_test_token");
  CHECK(g.headers.at("x-github-api-version") == "2022-11-28");
  CHECK(g.headers.at("content-type") == "application/json");
  CHECK(g.headers.at("user-agent").rfind("basewatch/", 0) == 0);
  auto gb = json::parse(g.body);
  CHECK(gb.size() == 2);
  CHECK(gb["event_type"] == "base-image-updated");
  CHECK(gb["client_payload"]["delivery_id"] == ds["gh"]["id"]);
  CHECK(gb["client_payload"]["project"]["name"] == "web");
  CHECK(gb["client_payload"]["changes"][0]["ref"] == registry.host() + "/team/alpine:3.20");
  CHECK(gb["client_payload"]["changes"][0]["old_digest"] == d1);
  CHECK(gb["client_payload"]["changes"][0]["new_digest"] == d2);
  CHECK(gb["client_payload"]["plan"] == json::array({"web"}));

  // GitLab: the pipeline trigger API, field by field.
  auto l = gitlab.requests()[0];
  CHECK(l.method == "POST");
  CHECK(l.path == "/api/v4/projects/group%2Fweb/trigger/pipeline");
  CHECK(l.query.empty());
  CHECK(l.headers.at("content-type") == "application/x-www-form-urlencoded");
  CHECK(form_of(l.body) == std::map<std::string, std::string>{
                               {"token", "glptt-test-token"},
                               {"ref", "main"},
                               {"variables[BASEWATCH_DELIVERY_ID]", ds["gl"]["id"].get<std::string>()},
                               {"variables[BASEWATCH_PROJECT]", "web"},
                               {"variables[BASEWATCH_CHANGED_REFS]", registry.host() + "/team/alpine:3.20"},
                               {"variables[BASEWATCH_TRIGGER]", "gl"}});

  // Secrets stay out of the log.
  std::string log = bw->log();
  CHECK(log.find("ghp_test_token") == std::string::npos);
  CHECK(log.find("glptt-test-token") == std::string::npos);
  stop(*bw);
}

TEST_CASE("SIGKILL with a delivery pending and the receiver down: after a restart exactly one delivery, same id",
          "[integration][outbox]") {
  LocalRegistry registry;
  registry.push_image("team/alpine", "3.20", "release one");
  TempDir dir("bw-kill");
  int api_port = free_port();
  int dead_port = free_port();  // nothing listens here: connection refused
  dir.write("web/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20\n");
  auto write_config = [&](const std::string& url) {
    return dir.write("config.yaml", head(api_port) +
        "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
        "retry: {max_attempts: 10, initial: 300ms, max: 1s}\n"
        "registries: {\"" + registry.host() + "\": {insecure: true}}\n"
        "projects: [{name: web, dockerfile: web/Dockerfile, triggers: [ci]}]\n"
        "triggers: {ci: {type: webhook, url: \"" + url + "\", timeout: 2s}}\n");
  };
  std::string config = write_config("http://127.0.0.1:" + std::to_string(dead_port) + "/hook");
  std::string id;
  {
    auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch-1.log");
    REQUIRE(bw->running());
    REQUIRE(wait_until([&] { return baseline_seen(api_port, 1); }, 20s));
    registry.push_image("team/alpine", "3.20", "release two");
    REQUIRE(wait_until([&] {
      auto ds = deliveries_by_trigger(api_port);
      return ds.count("ci") && ds["ci"]["attempts"].get<int>() >= 1;
    }, 20s));
    auto ds = deliveries_by_trigger(api_port);
    id = ds["ci"]["id"];
    CHECK(ds["ci"]["state"] == "failed");
    bw->signal(SIGKILL);
    REQUIRE(bw->wait(10s).has_value());
  }
  Receiver receiver;
  config = write_config(receiver.url("/hook"));  // the CI is back (at its address)
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch-2.log");
  REQUIRE(bw->running());
  REQUIRE(receiver.wait_for(1, 20s));
  std::this_thread::sleep_for(2s);  // poll cycles and dispatcher wake-ups: nothing more comes
  REQUIRE(receiver.count() == 1);
  auto r = receiver.requests()[0];
  CHECK(r.headers.at("x-basewatch-delivery") == id);
  CHECK(json::parse(r.body)["delivery_id"] == id);
  auto ds = deliveries_by_trigger(api_port);
  CHECK(ds.size() == 1);
  CHECK(ds["ci"]["state"] == "delivered");
  stop(*bw);
}

TEST_CASE("two bases of one project moving inside settle become one delivery with two changes", "[integration][outbox]") {
  LocalRegistry registry;
  std::string go1 = registry.push_image("team/golang", "1.23", "go one");
  std::string al1 = registry.push_image("team/alpine", "3.20", "alpine one");
  Receiver receiver;
  TempDir dir("bw-settle");
  int api_port = free_port();
  dir.write("web/Dockerfile",
            "FROM " + registry.host() + "/team/golang:1.23 AS build\nRUN go build\n"
            "FROM " + registry.host() + "/team/alpine:3.20\nCOPY --from=build /app /app\n");
  std::string config = dir.write("config.yaml", head(api_port) +
      "poll: {interval: 1s, jitter: 0%, settle: 4s}\n"
      "registries: {\"" + registry.host() + "\": {insecure: true}}\n"
      "projects: [{name: web, dockerfile: web/Dockerfile, triggers: [ci]}]\n"
      "triggers: {ci: {type: webhook, url: \"" + receiver.url("/hook") + "\"}}\n");
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] { return baseline_seen(api_port, 2); }, 20s));

  std::string go2 = registry.push_image("team/golang", "1.23", "go two");
  std::this_thread::sleep_for(1500ms);  // the second base moves a poll or two later, still inside settle
  std::string al2 = registry.push_image("team/alpine", "3.20", "alpine two");
  REQUIRE(receiver.wait_for(1, 20s));
  std::this_thread::sleep_for(2s);
  REQUIRE(receiver.count() == 1);
  auto body = json::parse(receiver.requests()[0].body);
  REQUIRE(body["changes"].size() == 2);
  std::map<std::string, std::string> moved;
  for (auto& c : body["changes"]) moved[c["ref"]] = c["new_digest"];
  CHECK(moved == std::map<std::string, std::string>{{registry.host() + "/team/golang:1.23", go2},
                                                    {registry.host() + "/team/alpine:3.20", al2}});
  auto events = get_json(api_port, "/v1/events");
  REQUIRE(events.is_array());
  CHECK(events.size() == 2);
  for (auto& e : events) CHECK(e["deliveries"] == json::array({body["delivery_id"]}));
  stop(*bw);
}

TEST_CASE("a chain: the base project's command build pushes internal/base, then app fires", "[integration][outbox][chain]") {
  LocalRegistry registry;
  registry.push_image("team/alpine", "3.20", "alpine one");
  registry.push_image("internal/base", "latest", "base built on alpine one");
  Receiver receiver;
  TempDir dir("bw-chain");
  int api_port = free_port();
  std::string out = dir.path() + "/build-out";
  std::filesystem::create_directories(out);
  dir.write("base/Dockerfile", "FROM " + registry.host() + "/team/alpine:3.20\nRUN apk upgrade\n");
  dir.write("app/Dockerfile", "FROM " + registry.host() + "/internal/base:latest\nCOPY app /app\n");
  std::string script = std::string(BASEWATCH_SOURCE_DIR) + "/tests/triggers/push_image.sh";
  std::string config = dir.write("config.yaml", head(api_port) +
      "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
      "registries: {\"" + registry.host() + "\": {insecure: true}}\n"
      "builds: {concurrency: 1, logs: build-logs}\n"
      "projects:\n"
      "  - {name: base, dockerfile: base/Dockerfile, image: \"" + registry.host() + "/internal/base:latest\", triggers: [build-base]}\n"
      "  - {name: app, dockerfile: app/Dockerfile, triggers: [ci]}\n"
      "triggers:\n"
      "  build-base:\n"
      "    type: command\n"
      "    command: [\"" + script + "\", \"" + registry.host() + "\", internal/base, latest, \"" + out + "\"]\n"
      "    timeout: 30s\n"
      "  ci: {type: webhook, url: \"" + receiver.url("/hook") + "\"}\n");
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] { return baseline_seen(api_port, 2); }, 20s));

  std::string alpine2 = registry.push_image("team/alpine", "3.20", "alpine two");
  REQUIRE(receiver.wait_for(1, 30s));
  std::this_thread::sleep_for(1500ms);
  REQUIRE(receiver.count() == 1);  // app fired once, for the new internal/base only
  std::string pushed = slurp(out + "/digest");
  pushed.erase(pushed.find_last_not_of('\n') + 1);
  REQUIRE(pushed.rfind("sha256:", 0) == 0);
  auto app = json::parse(receiver.requests()[0].body);
  CHECK(app["project"]["name"] == "app");
  REQUIRE(app["changes"].size() == 1);
  CHECK(app["changes"][0]["ref"] == registry.host() + "/internal/base:latest");
  CHECK(app["changes"][0]["new_digest"] == pushed);
  CHECK(app["plan"] == json::array({"app"}));

  // What the build got: the payload on stdin and in the file, the variables,
  // the project's folder as working directory.
  auto ds = deliveries_by_trigger(api_port);
  REQUIRE(ds.count("build-base"));
  std::string build_id = ds["build-base"]["id"];
  auto payload = json::parse(slurp(out + "/stdin"));
  CHECK(payload["delivery_id"] == build_id);
  CHECK(payload["plan"] == json::array({"base", "app"}));
  CHECK(payload["changes"][0]["new_digest"] == alpine2);
  CHECK(slurp(out + "/payload") == slurp(out + "/stdin"));
  std::string env = slurp(out + "/env");
  CHECK(env.find("BASEWATCH_DELIVERY_ID=" + build_id + "\n") != std::string::npos);
  CHECK(env.find("BASEWATCH_PROJECT=base\n") != std::string::npos);
  CHECK(env.find("BASEWATCH_CHANGED_REFS=" + registry.host() + "/team/alpine:3.20\n") != std::string::npos);
  CHECK(env.find("BASEWATCH_PAYLOAD_FILE=" + dir.path() + "/build-logs/" + build_id + ".json\n") != std::string::npos);
  CHECK(slurp(out + "/pwd") == std::filesystem::canonical(dir.path() + "/base").string() + "\n");

  // The attempt keeps the exit code, the duration and the log's tail.
  auto build = ds["build-base"];
  CHECK(build["state"] == "delivered");
  CHECK(build["last_status"] == 0);
  REQUIRE(build.contains("last_attempt"));
  CHECK(build["last_attempt"]["status"] == 0);
  CHECK(build["last_attempt"]["duration_ms"].get<int64_t>() >= 0);
  CHECK(build["last_attempt"]["output_tail"] == "pushed internal/base:latest " + pushed + "\n");
  CHECK(slurp(dir.path() + "/build-logs/" + build_id + ".1.log") == "pushed internal/base:latest " + pushed + "\n");
  stop(*bw);
}
