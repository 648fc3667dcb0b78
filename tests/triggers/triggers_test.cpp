// Unit tests of the trigger types against the fakes at their seams
// (net::FakeHttpClient, triggers::FakeProcessRunner), the dispatcher's build
// handling, and the trigger keys of the config. No sockets, no processes, no
// sleeping.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <future>
#include <filesystem>
#include <fstream>
#include <map>

#include "triggers/dispatcher.h"
#include "triggers/trigger.h"
#include "util/metrics.h"

using namespace bw;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string payload_for(const std::string& id, const std::string& project = "web") {
  json p = {{"type", "base.updated"},
            {"delivery_id", id},
            {"created_at", "2026-11-28T12:00:00Z"},
            {"project", {{"name", project}, {"dockerfile", "/srv/" + project + "/Dockerfile"}, {"image", nullptr}}},
            {"changes",
             json::array({{{"ref", "docker.io/library/alpine:3.20"}, {"old_digest", "sha256:aa"}, {"new_digest", "sha256:bb"}},
                          {{"ref", "docker.io/library/golang:1.23"}, {"old_digest", "sha256:cc"}, {"new_digest", "sha256:dd"}}})},
            {"plan", json::array({project, "worker"})}};
  return p.dump();
}

db::Delivery delivery(const std::string& id, const std::string& trigger = "ci", const std::string& project = "web") {
  db::Delivery d;
  d.id = id;
  d.trigger = trigger;
  d.project = project;
  d.payload = payload_for(id, project);
  return d;
}

std::map<std::string, std::string> headers_of(const net::Request& r) { return {r.headers.begin(), r.headers.end()}; }

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
  size_t start = 0;
  while (start <= body.size()) {
    size_t amp = body.find('&', start);
    std::string pair = body.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    size_t eq = pair.find('=');
    out[decode(pair.substr(0, eq))] = eq == std::string::npos ? "" : decode(pair.substr(eq + 1));
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

Result<net::Response> answer(int status, std::string body = "", std::multimap<std::string, std::string> headers = {}) {
  net::Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

config::TriggerConfig github_config() {
  config::TriggerConfig t;
  t.name = "gh";
  t.type = "github";
  t.repository = "org/web";
  t.event_type = "base-image-updated";
  t.token = "ghp_secret";
  t.api_url = "https://api.github.test/";
  return t;
}

config::TriggerConfig gitlab_config() {
  config::TriggerConfig t;
  t.name = "gl";
  t.type = "gitlab";
  t.url = "https://gitlab.example.test";
  t.project = "group/sub/web";
  t.ref = "main";
  t.token = "glptt-secret";
  return t;
}

// A temp folder for build logs, removed at the end.
struct LogDir {
  fs::path path = fs::temp_directory_path() / ("bw-triggers-test-" + std::to_string(::getpid()));
  LogDir() { fs::remove_all(path); }
  ~LogDir() { fs::remove_all(path); }
};

Result<triggers::ProcessResult> exited(int code) {
  triggers::ProcessResult r;
  r.exit_code = code;
  r.duration = Millis(1234);
  return r;
}

void write(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

}  // namespace

TEST_CASE("github repository_dispatch: the documented request, field by field", "[unit][triggers][github]") {
  net::FakeHttpClient http([](const net::Request&) { return answer(204); });
  triggers::GitHubTrigger t(github_config(), http);
  CHECK(std::string(t.type()) == "github");
  auto d = delivery("d_01");
  auto out = t.deliver(d);
  CHECK(out.delivered);
  CHECK(out.status == 204);
  REQUIRE(http.requests().size() == 1);
  auto r = http.requests()[0];
  CHECK(r.method == "POST");
  CHECK(r.url == "https://api.github.test/repos/org/web/dispatches");
  auto h = headers_of(r);
  CHECK(h["Accept"] == "application/vnd.github+json");
  CHECK(h["Authorization"] == "Bearer ghp_secret");
  CHECK(h["X-GitHub-Api-Version"] == "2022-11-28");
  CHECK(h["Content-Type"] == "application/json");
  CHECK(h["User-Agent"] == std::string("basewatch/") + BASEWATCH_VERSION);
  auto body = json::parse(r.body);
  CHECK(body.size() == 2);
  CHECK(body["event_type"] == "base-image-updated");
  CHECK(body["client_payload"] == json::parse(d.payload));
  CHECK(body["client_payload"].size() <= 10);  // GitHub's limit on top-level properties
}

TEST_CASE("github workflow_dispatch: ref and three string inputs", "[unit][triggers][github]") {
  net::FakeHttpClient http([](const net::Request&) { return answer(204); });
  auto cfg = github_config();
  cfg.workflow = "rebuild base.yml";
  cfg.ref = "main";
  triggers::GitHubTrigger t(cfg, http);
  REQUIRE(t.deliver(delivery("d_02")).delivered);
  auto r = http.requests()[0];
  CHECK(r.url == "https://api.github.test/repos/org/web/actions/workflows/rebuild%20base.yml/dispatches");
  CHECK(headers_of(r)["Authorization"] == "Bearer ghp_secret");
  auto body = json::parse(r.body);
  CHECK(body == json{{"ref", "main"},
                     {"inputs",
                      {{"basewatch_delivery_id", "d_02"},
                       {"basewatch_project", "web"},
                       {"basewatch_changed_refs", "docker.io/library/alpine:3.20 docker.io/library/golang:1.23"}}}});
  CHECK(body["inputs"].size() <= 10);
}

TEST_CASE("github: which refusals are retried", "[unit][triggers][github]") {
  int status = 0;
  std::multimap<std::string, std::string> headers;
  std::string reply;
  net::FakeHttpClient http([&](const net::Request&) { return answer(status, reply, headers); });
  triggers::GitHubTrigger t(github_config(), http);

  status = 422;
  reply = R"({"message":"Unexpected inputs provided: [\"x\"]","documentation_url":"https://docs.github.com"})";
  auto out = t.deliver(delivery("d_1"));
  CHECK_FALSE(out.delivered);
  CHECK_FALSE(out.retryable);
  CHECK(out.status == 422);
  CHECK(out.error == "HTTP 422: Unexpected inputs provided: [\"x\"]");

  for (int s : {400, 401, 404}) {
    status = s;
    reply = R"({"message":"Bad credentials"})";
    CHECK_FALSE(t.deliver(delivery("d_1")).retryable);
  }
  status = 403;
  CHECK_FALSE(t.deliver(delivery("d_1")).retryable);
  headers = {{"x-ratelimit-remaining", "0"}};
  CHECK(t.deliver(delivery("d_1")).retryable);  // a primary rate limit
  headers = {{"retry-after", "60"}};
  CHECK(t.deliver(delivery("d_1")).retryable);  // a secondary one
  headers.clear();
  for (int s : {408, 429, 500, 502, 503}) {
    status = s;
    reply = "";
    auto o = t.deliver(delivery("d_1"));
    CHECK(o.retryable);
    CHECK(o.error == "HTTP " + std::to_string(s));
  }
  net::FakeHttpClient down([](const net::Request&) -> Result<net::Response> {
    return make_error(ErrorKind::network, "connection refused");
  });
  triggers::GitHubTrigger t2(github_config(), down);
  auto o = t2.deliver(delivery("d_1"));
  CHECK(o.retryable);
  CHECK(o.status == 0);
  CHECK(o.error == "connection refused");
}

TEST_CASE("github: a body over 64 KB is sent with its changes shortened", "[unit][triggers][github]") {
  net::FakeHttpClient http([](const net::Request&) { return answer(204); });
  triggers::GitHubTrigger t(github_config(), http);
  auto d = delivery("d_big");
  auto body = json::parse(d.payload);
  for (int i = 0; i < 400; ++i) {
    body["changes"].push_back({{"ref", "r.example/x/y:" + std::to_string(i)}, {"old_digest", "sha256:1"}, {"new_digest", "sha256:2"},
                               {"platforms", {{"linux/amd64", {{"old", std::string(64, 'a')}, {"new", std::string(64, 'b')}}}}},
                               {"detected_at", "2026-11-28T12:00:00Z"}, {"source", "poll"}});
  }
  d.payload = body.dump();
  REQUIRE(d.payload.size() > triggers::k_github_payload_limit);
  REQUIRE(t.deliver(d).delivered);
  auto sent = json::parse(http.requests()[0].body)["client_payload"];
  CHECK(http.requests()[0].body.size() < 65'536);
  CHECK(sent["truncated"] == true);
  CHECK(sent["delivery_id"] == "d_big");
  CHECK(sent["changes"].size() == body["changes"].size());
  CHECK(sent["changes"][401] == json{{"ref", "r.example/x/y:399"}, {"old_digest", "sha256:1"}, {"new_digest", "sha256:2"}});
}

TEST_CASE("gitlab pipeline trigger: the documented form fields, field by field", "[unit][triggers][gitlab]") {
  net::FakeHttpClient http([](const net::Request&) { return answer(201, R"({"id":4711,"status":"created"})"); });
  triggers::GitLabTrigger t(gitlab_config(), http);
  CHECK(std::string(t.type()) == "gitlab");
  auto out = t.deliver(delivery("d_03"));
  CHECK(out.delivered);
  CHECK(out.status == 201);
  auto r = http.requests()[0];
  CHECK(r.method == "POST");
  CHECK(r.url == "https://gitlab.example.test/api/v4/projects/group%2Fsub%2Fweb/trigger/pipeline");
  CHECK(r.url.find("glptt") == std::string::npos);  // the token never rides in the URL
  CHECK(headers_of(r)["Content-Type"] == "application/x-www-form-urlencoded");
  auto form = form_of(r.body);
  CHECK(form == std::map<std::string, std::string>{
                    {"token", "glptt-secret"},
                    {"ref", "main"},
                    {"variables[BASEWATCH_DELIVERY_ID]", "d_03"},
                    {"variables[BASEWATCH_PROJECT]", "web"},
                    {"variables[BASEWATCH_CHANGED_REFS]", "docker.io/library/alpine:3.20 docker.io/library/golang:1.23"},
                    {"variables[BASEWATCH_TRIGGER]", "gl"}});
}

TEST_CASE("gitlab: a refused trigger is not retried, a server error is", "[unit][triggers][gitlab]") {
  int status = 400;
  net::FakeHttpClient http([&](const net::Request&) { return answer(status, R"({"message":{"base":["Reference not found"]}})"); });
  triggers::GitLabTrigger t(gitlab_config(), http);
  auto out = t.deliver(delivery("d_1"));
  CHECK_FALSE(out.retryable);
  CHECK(out.error == R"(HTTP 400: {"base":["Reference not found"]})");
  status = 502;
  CHECK(t.deliver(delivery("d_1")).retryable);
}

TEST_CASE("a stored body that is not JSON is refused without a request", "[unit][triggers]") {
  net::FakeHttpClient http([](const net::Request&) { return answer(204); });
  triggers::GitLabTrigger t(gitlab_config(), http);
  auto d = delivery("d_bad");
  d.payload = "not json";
  auto out = t.deliver(d);
  CHECK_FALSE(out.delivered);
  CHECK_FALSE(out.retryable);
  CHECK(out.error == "delivery d_bad: the stored payload is not a JSON object");
  CHECK(http.requests().empty());
}

TEST_CASE("command: argv, stdin, BASEWATCH_* variables, workdir and log", "[unit][triggers][command]") {
  LogDir logs;
  std::string payload_seen;
  triggers::FakeProcessRunner runner([&](const triggers::ProcessSpec& s) {
    for (const auto& [k, v] : s.env) {
      if (k == "BASEWATCH_PAYLOAD_FILE") {
        std::ifstream in(v);
        payload_seen.assign(std::istreambuf_iterator<char>(in), {});
      }
    }
    write(s.log_path, "building...\nok\n");
    return exited(0);
  });
  config::TriggerConfig cfg;
  cfg.name = "build";
  cfg.type = "command";
  cfg.command = {"buildah", "bud", "-t", "x", "."};
  cfg.timeout = Millis(90'000);
  triggers::CommandTrigger t(cfg, runner, logs.path.string(), {{"web", "/srv/web-context"}});
  CHECK(std::string(t.type()) == "command");
  CHECK(t.is_build());

  auto d = delivery("d_04");
  d.attempts = 2;
  auto out = t.deliver(d);
  CHECK(out.delivered);
  CHECK(out.status == 0);
  CHECK(out.output_tail == "building...\nok\n");
  REQUIRE(runner.specs().size() == 1);
  auto s = runner.specs()[0];
  CHECK(s.argv == cfg.command);
  CHECK(s.stdin_data == d.payload);
  CHECK(payload_seen == d.payload);
  CHECK(s.timeout == Millis(90'000));
  CHECK(s.workdir == "/srv/web-context");
  CHECK(s.log_path == (logs.path / "d_04.3.log").string());
  std::map<std::string, std::string> env(s.env.begin(), s.env.end());
  CHECK(env == std::map<std::string, std::string>{
                   {"BASEWATCH_DELIVERY_ID", "d_04"},
                   {"BASEWATCH_PROJECT", "web"},
                   {"BASEWATCH_CHANGED_REFS", "docker.io/library/alpine:3.20 docker.io/library/golang:1.23"},
                   {"BASEWATCH_PAYLOAD_FILE", (logs.path / "d_04.json").string()}});
  CHECK_FALSE(fs::exists(logs.path / "d_04.json"));  // removed after the run
  CHECK(fs::exists(s.log_path));                      // the log stays

  // workdir wins over the context; without either, the Dockerfile's folder.
  cfg.workdir = "/work/dir";
  triggers::CommandTrigger with_workdir(cfg, runner, logs.path.string(), {{"web", "/srv/web-context"}});
  with_workdir.deliver(d);
  CHECK(runner.specs().back().workdir == "/work/dir");
  cfg.workdir.clear();
  triggers::CommandTrigger bare(cfg, runner, logs.path.string(), {});
  bare.deliver(d);
  CHECK(runner.specs().back().workdir == "/srv/web");
}

TEST_CASE("command: exit codes, timeouts and failures to start become outcomes", "[unit][triggers][command]") {
  LogDir logs;
  Result<triggers::ProcessResult> next = exited(3);
  triggers::FakeProcessRunner runner([&](const triggers::ProcessSpec& s) {
    write(s.log_path, std::string(6000, 'x') + "\nstep 9/9 failed\n");
    return next;
  });
  config::TriggerConfig cfg;
  cfg.type = "command";
  cfg.command = {"make", "image"};
  cfg.timeout = Millis(30 * 60'000);
  triggers::CommandTrigger t(cfg, runner, logs.path.string(), {});
  std::string log = (logs.path / "d_05.1.log").string();

  auto out = t.deliver(delivery("d_05"));
  CHECK_FALSE(out.delivered);
  CHECK(out.retryable);
  CHECK(out.status == 3);
  CHECK(out.error == "exit status 3 (log: " + log + ")");
  CHECK(out.output_tail.size() <= triggers::k_output_tail_bytes);
  CHECK(out.output_tail == "step 9/9 failed\n");  // the cut first line is left out

  triggers::ProcessResult timed;
  timed.timed_out = true;
  timed.signal = 15;
  timed.exit_code = 143;
  next = timed;
  out = t.deliver(delivery("d_05"));
  CHECK(out.status == 143);
  CHECK(out.error == "timed out after 30m; the process group was killed (log: " + log + ")");

  triggers::ProcessResult killed;
  killed.signal = 9;
  killed.exit_code = 137;
  next = killed;
  CHECK(t.deliver(delivery("d_05")).error == "killed by signal 9 (log: " + log + ")");

  next = make_error(ErrorKind::io, "cannot run \"make\": No such file or directory");
  out = t.deliver(delivery("d_05"));
  CHECK_FALSE(out.delivered);
  CHECK(out.status == 0);
  CHECK(out.error == "cannot run \"make\": No such file or directory");
}

TEST_CASE("make_trigger builds each type from its config, given its seam", "[unit][triggers]") {
  net::FakeHttpClient http([](const net::Request&) { return answer(204); });
  triggers::FakeProcessRunner runner([](const triggers::ProcessSpec&) { return exited(0); });
  triggers::Seams seams;
  seams.http = &http;
  seams.runner = &runner;
  config::TriggerConfig c;
  for (std::string type : {"webhook", "github", "gitlab", "command"}) {
    c.type = type;
    auto t = triggers::make_trigger(c, seams);
    REQUIRE(t);
    CHECK(t->type() == type);
  }
  c.type = "carrier-pigeon";
  CHECK_FALSE(triggers::make_trigger(c, seams));
  c.type = "command";
  triggers::Seams no_runner;
  no_runner.http = &http;
  CHECK_FALSE(triggers::make_trigger(c, no_runner));
}

TEST_CASE("the dispatcher: a 4xx that cannot succeed is dead at once and counted", "[unit][triggers][dispatcher]") {
  auto store = std::move(db::Store::open(":memory:").value());
  FakeClock clock;
  net::FakeHttpClient http([](const net::Request&) { return answer(401, R"({"message":"Bad credentials"})"); });
  triggers::Dispatcher dispatcher(*store, clock);
  std::map<std::string, std::unique_ptr<triggers::Trigger>> ts;
  ts["gh"] = std::make_unique<triggers::GitHubTrigger>(github_config(), http);
  dispatcher.set_triggers(std::move(ts), triggers::RetryPolicy{});
  Labels dead{{"trigger_type", "github"}, {"outcome", "dead"}};
  double before = Metrics::global().counter_value("basewatch_deliveries_attempted_total", dead);
  auto d = delivery("d_401", "gh");
  d.created_at = d.next_attempt_at = to_unix_ms(clock.now());
  REQUIRE(store->add_delivery(d).ok());
  auto stats = dispatcher.dispatch_once(clock.now());
  CHECK(stats.dead == 1);
  auto stored = store->get_delivery("d_401").value();
  CHECK(stored->state == db::DeliveryState::dead);
  CHECK(stored->attempts == 1);
  CHECK(stored->last_error == "HTTP 401: Bad credentials");
  CHECK(Metrics::global().counter_value("basewatch_deliveries_attempted_total", dead) == before + 1);
}

TEST_CASE("the dispatcher runs builds beside webhooks, at most builds.concurrency at once", "[unit][triggers][dispatcher]") {
  LogDir logs;
  auto store = std::move(db::Store::open(":memory:").value());
  FakeClock clock;
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  int running = 0, most = 0;
  triggers::FakeProcessRunner runner([&](const triggers::ProcessSpec& s) {
    std::unique_lock lock(m);
    most = std::max(most, ++running);
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    --running;
    write(s.log_path, "built\n");
    return exited(0);
  });
  net::FakeHttpClient http([](const net::Request&) { return answer(204); });
  config::TriggerConfig cmd;
  cmd.type = "command";
  cmd.command = {"build"};
  config::TriggerConfig hook;
  hook.type = "webhook";
  hook.url = "https://ci.example.test/hook";
  Labels built{{"trigger_type", "command"}, {"outcome", "delivered"}};
  double before = Metrics::global().counter_value("basewatch_deliveries_attempted_total", built);
  {
    triggers::Dispatcher dispatcher(*store, clock, 4, 1);
    std::map<std::string, std::unique_ptr<triggers::Trigger>> ts;
    ts["build"] = std::make_unique<triggers::CommandTrigger>(cmd, runner, logs.path.string(), std::map<std::string, std::string>{});
    ts["ci"] = std::make_unique<triggers::WebhookTrigger>(hook, http);
    dispatcher.set_triggers(std::move(ts), triggers::RetryPolicy{});
    int64_t now = to_unix_ms(clock.now());
    for (const auto& [id, trig] : std::vector<std::pair<std::string, std::string>>{{"d_b1", "build"}, {"d_b2", "build"}, {"d_w1", "ci"}}) {
      auto d = delivery(id, trig);
      d.created_at = d.next_attempt_at = now;
      REQUIRE(store->add_delivery(d).ok());
    }
    auto s1 = dispatcher.dispatch_once(clock.now());
    CHECK(s1.builds_started == 1);  // the limit is 1
    CHECK(s1.delivered == 1);       // the webhook did not wait for the build
    CHECK(store->get_delivery("d_w1").value()->state == db::DeliveryState::delivered);
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return running == 1; });
    }
    CHECK(dispatcher.running_builds() == 1);
    CHECK(dispatcher.dispatch_once(clock.now()).builds_started == 0);  // still busy; the running one is not started twice
    // With an idle wait (as serve sets it), a call that can start nothing
    // returns as soon as a build ends instead of sleeping the whole wait (an
    // hour here: a hang fails the test). Whether it runs before or after the
    // release, it must come back.
    dispatcher.set_idle_wait(Millis(3'600'000));
    auto idle = std::async(std::launch::async, [&] { return dispatcher.dispatch_once(clock.now()); });
    {
      std::lock_guard lock(m);
      release = true;
      cv.notify_all();
    }
    triggers::DispatchStats total = idle.get();
    dispatcher.set_idle_wait(Millis(0));
    total += dispatcher.wait_builds();
    total += dispatcher.dispatch_once(clock.now());  // starts the second build if the idle call did not
    total += dispatcher.wait_builds();
    CHECK(total.builds_started == 1);
    CHECK(total.delivered == 2);
    // The destructor waits for the second build, which records its attempt.
  }
  CHECK(most == 1);
  for (const char* id : {"d_b1", "d_b2"}) {
    auto d = store->get_delivery(id).value();
    CHECK(d->state == db::DeliveryState::delivered);
    auto attempts = store->list_attempts(id).value();
    REQUIRE(attempts.size() == 1);
    CHECK(attempts[0].status == 0);
    CHECK(attempts[0].output_tail == "built\n");
  }
  CHECK(Metrics::global().counter_value("basewatch_deliveries_attempted_total", built) == before + 2);
}

TEST_CASE("config: builds keys, trigger URLs and limits", "[unit][triggers][config]") {
  auto ok = config::parse("database: /var/lib/bw/bw.db\nprojects: [{name: a, dockerfile: /D}]\n", "/etc/bw/config.yaml");
  REQUIRE(ok.ok());
  CHECK(ok->builds_concurrency == 2);
  CHECK(ok->builds_logs == "/var/lib/bw/builds");
  auto set = config::parse("builds: {concurrency: 3, logs: logs/builds}\nprojects: [{name: a, dockerfile: /D}]\n"
                           "triggers:\n  b: {type: command, command: [make], workdir: src}\n",
                           "/etc/bw/config.yaml");
  REQUIRE(set.ok());
  CHECK(set->builds_concurrency == 3);
  CHECK(set->builds_logs == "/etc/bw/logs/builds");
  CHECK(set->triggers.at("b").workdir == "/etc/bw/src");

  LogDir dir;
  fs::create_directories(dir.path);
  std::string token = (dir.path / "token").string();
  write(token, "t0ken\n");
  auto error = [](const std::string& text) {
    auto c = config::parse(text + "projects: [{name: a, dockerfile: /D}]\n", "/etc/bw/config.yaml");
    return c.ok() ? std::string("(no error)") : c.error().message;
  };
  CHECK(error("builds: {concurrency: 0}\n") == "/etc/bw/config.yaml:1:23: builds.concurrency: must be between 1 and 64");
  CHECK(error("builds: {parallel: 2}\n") ==
        "/etc/bw/config.yaml:1:10: builds: unknown key \"parallel\" (expected one of: concurrency, logs)");
  CHECK(error("triggers:\n  gl: {type: gitlab, url: gitlab.example.com, project: \"42\", ref: main, token_file: " + token + "}\n") ==
        "/etc/bw/config.yaml:2:27: triggers.gl.url: expected an http:// or https:// URL");
  CHECK(error("triggers:\n  gh: {type: github, repository: o/r, api_url: api.github.com, token_file: " + token + "}\n") ==
        "/etc/bw/config.yaml:2:48: triggers.gh.api_url: expected an http:// or https:// URL");
  CHECK(error("triggers:\n  gh: {type: github, repository: o/r, event_type: " + std::string(101, 'e') +
              ", token_file: " + token + "}\n") ==
        "/etc/bw/config.yaml:2:51: triggers.gh.event_type: must be 100 characters or fewer (GitHub's limit)");
}

TEST_CASE("quiet windows: syntax, errors to the letter, and the next opening", "[unit][triggers][config][quiet]") {
  auto w = config::parse_quiet_window("sat 02:00-06:00");
  REQUIRE(w.ok());
  CHECK(w->days == (1u << 5));
  CHECK(w->start == 120);
  CHECK(w->end == 360);
  CHECK(config::parse_quiet_window("mon-fri 22:00-06:00")->days == 0x1f);
  CHECK(config::parse_quiet_window("fri-mon 00:00-24:00")->days == ((1u << 4) | (1u << 5) | (1u << 6) | 1u));
  CHECK(config::parse_quiet_window("Sat,SUN 00:00-24:00")->days == ((1u << 5) | (1u << 6)));
  CHECK(config::parse_quiet_window("daily 03:00-04:00")->days == 0x7f);
  CHECK(config::parse_quiet_window("* 03:00-04:00")->days == 0x7f);

  auto err = [](const std::string& text) { return config::parse_quiet_window(text).error().message; };
  CHECK(err("saturday") == R"(invalid quiet window "saturday": expected "<days> HH:MM-HH:MM", e.g. "sat 02:00-06:00")");
  CHECK(err("caturday 02:00-06:00") ==
        R"(invalid quiet window "caturday 02:00-06:00": unknown day "caturday" (use mon..sun, a range such as mon-fri, or daily))");
  CHECK(err("sat 2:00-6:00") == R"(invalid quiet window "sat 2:00-6:00": expected a time range HH:MM-HH:MM (UTC), got "2:00-6:00")");
  CHECK(err("sat 24:00-06:00") == R"(invalid quiet window "sat 24:00-06:00": expected a time range HH:MM-HH:MM (UTC), got "24:00-06:00")");
  CHECK(err("sat 06:00-06:00") == R"(invalid quiet window "sat 06:00-06:00": the window is empty)");

  // 2026-11-28 is a Saturday.
  auto at = [](const std::string& stamp) { return parse_rfc3339(stamp).value(); };
  auto sat = *config::parse_quiet_window("sat 02:00-06:00");
  CHECK(sat.next_open(at("2026-11-28T01:59:00Z")) == at("2026-11-28T02:00:00Z"));
  CHECK(sat.next_open(at("2026-11-28T03:00:00Z")) == at("2026-11-28T03:00:00Z"));  // inside: now
  CHECK(sat.next_open(at("2026-11-28T06:00:00Z")) == at("2026-12-05T02:00:00Z"));  // just closed: next week
  CHECK(sat.next_open(at("2026-11-25T12:00:00Z")) == at("2026-11-28T02:00:00Z"));  // from a Wednesday
  auto nights = *config::parse_quiet_window("mon-fri 22:00-06:00");
  CHECK(nights.next_open(at("2026-11-28T05:00:00Z")) == at("2026-11-28T05:00:00Z"));  // Friday's night, still open
  CHECK(nights.next_open(at("2026-11-28T07:00:00Z")) == at("2026-11-30T22:00:00Z"));  // the weekend: Monday night

  // In the config: a duration or a window; anything else names both forms.
  auto c = config::parse("projects: [{name: a, dockerfile: /D, quiet: \"sat 02:00-06:00\"}, {name: b, dockerfile: /E, quiet: 1d}]\n",
                         "/etc/bw/config.yaml");
  REQUIRE(c.ok());
  REQUIRE(c->projects[0].quiet_window);
  CHECK(c->projects[0].quiet_window->text == "sat 02:00-06:00");
  CHECK_FALSE(c->projects[0].quiet);
  CHECK(c->projects[1].quiet == Millis(86'400'000));
  CHECK_FALSE(c->projects[1].quiet_window);
  auto bad = config::parse("projects: [{name: a, dockerfile: /D, quiet: \"sat 02:00\"}]\n", "/etc/bw/config.yaml");
  CHECK(bad.error().message ==
        "/etc/bw/config.yaml:1:45: projects[0].quiet: invalid quiet window \"sat 02:00\": expected a time range HH:MM-HH:MM (UTC), "
        "got \"02:00\" (a duration such as 1d, or a weekly window such as \"sat 02:00-06:00\")");
}
