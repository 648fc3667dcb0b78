// `basewatch serve` as systemd runs it: the sd_notify protocol on a socket the
// test owns, SIGHUP reloads (valid and refused), Dockerfile rescans without a
// signal, SIGTERM parking an in-flight delivery, and the journald and JSON
// log formats. Real binary, real registry, real receiver, all on loopback.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/integration/helpers.h"
#include "tests/systemd/notify.h"

using namespace bw::testing;
using json = nlohmann::json;

namespace {

std::string config_text(const TempDir& dir, int api_port, const std::string& registry, const std::string& rest) {
  return "database: " + dir.path() + "/basewatch.db\n"
         "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
         "poll: {interval: 1s, jitter: 0%, settle: 0s}\n"
         "registries:\n"
         "  " + registry + ": {insecure: true}\n" + rest;
}

std::set<std::string> watched_refs(int api_port) {
  std::set<std::string> out;
  auto images = get_json(api_port, "/v1/images");
  if (!images.is_array()) return out;
  for (const auto& i : images) out.insert(i["ref"].get<std::string>());
  return out;
}

json image(int api_port, const std::string& ref) {
  auto images = get_json(api_port, "/v1/images");
  if (!images.is_array()) return nullptr;
  for (const auto& i : images) {
    if (i["ref"] == ref) return i;
  }
  return nullptr;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("serve speaks sd_notify: READY once listening, STATUS, WATCHDOG, RELOADING/READY, STOPPING, exit 0",
          "[integration][systemd]") {
  LocalRegistry registry;
  std::string d1 = registry.push_image("team/alpine", "3.20", "one");
  TempDir dir("bw-notify");
  int api_port = free_port();
  std::string ref = registry.host() + "/team/alpine:3.20";
  dir.write("web/Dockerfile", "FROM " + ref + "\n");
  std::string config = dir.write("config.yaml", config_text(dir, api_port, registry.host(),
                                                            "projects:\n  - name: web\n    dockerfile: web/Dockerfile\n"));
  NotifySocket notify(dir.path() + "/notify.sock");
  Process bw({basewatch_binary(), "serve", "-c", config},
             {{"NOTIFY_SOCKET", notify.path()}, {"WATCHDOG_USEC", "400000"}}, dir.path() + "/basewatch.log");

  int ready = notify.wait_for("READY=1", 0, std::chrono::seconds(20));
  REQUIRE(ready >= 0);
  // The listener is up by the time READY=1 is sent.
  CHECK(!get_json(api_port, "/healthz").is_null());
  auto before = notify.messages();
  REQUIRE(before.size() >= 3);
  CHECK(before[0] == "STATUS=starting: opening the database, scanning Dockerfiles");
  CHECK(before[static_cast<size_t>(ready) - 1] == "STATUS=watching 1 reference, not polled yet, 0 pending deliveries");

  // STATUS= follows the first poll; WATCHDOG=1 every 200ms (half of 400ms).
  int polled = notify.wait_for("STATUS=watching 1 reference, last poll ", ready, std::chrono::seconds(10));
  REQUIRE(polled >= 0);
  CHECK(std::regex_match(notify.messages()[static_cast<size_t>(polled)],
                         std::regex(R"(STATUS=watching 1 reference, last poll \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z, 0 pending deliveries)")));
  REQUIRE(wait_until([&] { return notify.count("WATCHDOG=1") >= 4; }, std::chrono::seconds(10)));

  bw.signal(SIGHUP);
  int reloading = notify.wait_for("RELOADING=1\n", ready + 1, std::chrono::seconds(10));
  REQUIRE(reloading >= 0);
  CHECK(std::regex_match(notify.messages()[static_cast<size_t>(reloading)],
                         std::regex("RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\nSTATUS=reloading " + config)));
  int ready_again = notify.wait_for("READY=1", reloading, std::chrono::seconds(10));
  CHECK(ready_again > reloading);
  CHECK(image(api_port, ref)["digest"] == d1);  // state kept across the reload

  bw.signal(SIGTERM);
  auto code = bw.wait(std::chrono::seconds(15));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  int stopping = notify.find("STOPPING=1");
  CHECK(stopping > ready_again);
  CHECK(notify.find("READY=1", stopping) == -1);
  CHECK(bw.log().find("stopped; database closed") != std::string::npos);
}

TEST_CASE("SIGHUP applies a valid config and refuses a broken one with its file:line, still serving",
          "[integration][systemd]") {
  LocalRegistry registry;
  std::string alpine = registry.push_image("team/alpine", "3.20", "alpine");
  std::string debian = registry.push_image("team/debian", "12", "debian");
  TempDir dir("bw-reload");
  int api_port = free_port();
  std::string ref1 = registry.host() + "/team/alpine:3.20";
  std::string ref2 = registry.host() + "/team/debian:12";
  dir.write("web/Dockerfile", "FROM " + ref1 + "\n");
  dir.write("worker/Dockerfile", "FROM " + ref2 + "\n");
  std::string one_project = config_text(dir, api_port, registry.host(),
                                        "projects:\n"
                                        "  - name: web\n"
                                        "    dockerfile: web/Dockerfile\n");
  std::string config = dir.write("config.yaml", one_project);
  NotifySocket notify(dir.path() + "/notify.sock");
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log", {{"NOTIFY_SOCKET", notify.path()}});
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] { return image(api_port, ref1)["digest"] == alpine; }, std::chrono::seconds(15)));
  CHECK(watched_refs(api_port) == std::set<std::string>{ref1});
  auto first_check = image(api_port, ref1)["last_changed"];

  // A new project: its base becomes watched and resolved; the old state stays.
  // (with a registry setting changed too, applied by the reload)
  std::string two_projects = std::regex_replace(one_project, std::regex("\\{insecure: true\\}"),
                                                "{insecure: true, requests_per_minute: 600}") +
                             "  - name: worker\n    dockerfile: worker/Dockerfile\n";
  REQUIRE(two_projects != one_project + "  - name: worker\n    dockerfile: worker/Dockerfile\n");
  dir.write("config.yaml", two_projects);
  bw->signal(SIGHUP);
  REQUIRE(wait_until([&] { return image(api_port, ref2)["digest"] == debian; }, std::chrono::seconds(15)));
  CHECK(watched_refs(api_port) == std::set<std::string>{ref1, ref2});
  CHECK(image(api_port, ref1)["digest"] == alpine);
  CHECK(image(api_port, ref1)["last_changed"] == first_check);
  CHECK(bw->log().find("reloaded " + config) != std::string::npos);
  CHECK(bw->log().find("reload: registry settings changed for " + registry.host() + "\n") != std::string::npos);
  CHECK(bw->log().find("takes effect on restart") == std::string::npos);

  // A broken config (a misspelt key on line 10): refused, named by file:line,
  // the running config stays and the API still answers.
  std::string broken = one_project + "  - name: worker\n    dockerfil: worker/Dockerfile\n";
  dir.write("config.yaml", broken);
  auto checked = run({basewatch_binary(), "config", "check", "-c", config});
  REQUIRE(checked.status == 2);
  REQUIRE(checked.errors.rfind("basewatch: " + config + ":10:5: projects[1]: unknown key \"dockerfil\"", 0) == 0);
  std::string message = checked.errors.substr(std::string("basewatch: ").size());
  message = message.substr(0, message.find('\n'));
  int readies = notify.count("READY=1");
  bw->signal(SIGHUP);
  REQUIRE(wait_until([&] { return notify.count("READY=1") > readies; }, std::chrono::seconds(10)));
  CHECK(bw->log().find("reload refused, keeping the running config: " + message) != std::string::npos);
  CHECK(bw->running());
  CHECK(!get_json(api_port, "/healthz").is_null());
  CHECK(watched_refs(api_port) == std::set<std::string>{ref1, ref2});
  CHECK(notify.count("WATCHDOG=1") == 0);  // no $WATCHDOG_USEC, no pings

  bw->signal(SIGTERM);
  auto code = bw->wait(std::chrono::seconds(15));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

TEST_CASE("SIGHUP applies a rotated registry password: the next check authenticates with it, no restart",
          "[integration][systemd]") {
  RegistryOptions options;
  options.htpasswd = {{"bot", "right-password"}};
  LocalRegistry registry(options);
  std::string alpine = registry.push_image("team/alpine", "3.20", "alpine");
  TempDir dir("bw-rotate");
  int api_port = free_port();
  std::string ref = registry.host() + "/team/alpine:3.20";
  dir.write("web/Dockerfile", "FROM " + ref + "\n");
  std::string secret = dir.write("registry-password", "wrong-password\n");
  std::string text = std::regex_replace(
      config_text(dir, api_port, registry.host(), "projects:\n  - name: web\n    dockerfile: web/Dockerfile\n"),
      std::regex("\\{insecure: true\\}"), "{insecure: true, username: bot, password_file: " + secret + "}");
  REQUIRE(text.find("password_file: " + secret) != std::string::npos);
  std::string config = dir.write("config.yaml", text);
  NotifySocket notify(dir.path() + "/notify.sock");
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log", {{"NOTIFY_SOCKET", notify.path()}});
  REQUIRE(bw->running());

  // The wrong password: the first check is refused and /v1/status says why.
  auto registry_error = [&]() -> json {
    auto st = get_json(api_port, "/v1/status");
    if (!st.is_object() || !st["registries"].contains(registry.host())) return nullptr;
    return st["registries"][registry.host()]["last_error"];
  };
  REQUIRE(wait_until([&] { return registry_error().is_string(); }, std::chrono::seconds(15)));
  CHECK(registry_error() == ref + ": credentials refused (Basic, user \"bot\")");
  CHECK(image(api_port, ref)["digest"].is_null());

  // The right password in the secret file, then SIGHUP: no restart.
  dir.write("registry-password", "right-password\n");
  int readies = notify.count("READY=1");
  bw->signal(SIGHUP);
  REQUIRE(wait_until([&] { return notify.count("READY=1") > readies; }, std::chrono::seconds(10)));
  CHECK(bw->log().find("reload: registry settings changed for " + registry.host() + "\n") != std::string::npos);
  // The refused reference's retry is 30 s away; the reload makes the
  // references of a changed registry due at once (no POST /v1/check here).
  REQUIRE(wait_until([&] { return image(api_port, ref)["digest"] == alpine; }, std::chrono::seconds(15)));
  CHECK(image(api_port, ref)["last_error"].is_null());
  std::string log = bw->log();
  CHECK(log.find("takes effect on restart") == std::string::npos);
  CHECK(log.find("wrong-password") == std::string::npos);
  CHECK(log.find("right-password") == std::string::npos);

  bw->signal(SIGTERM);
  auto code = bw->wait(std::chrono::seconds(15));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

TEST_CASE("an edited Dockerfile and a glob gaining a file are watched without SIGHUP", "[integration][systemd]") {
  LocalRegistry registry;
  std::string alpine = registry.push_image("team/alpine", "3.20", "alpine");
  std::string debian = registry.push_image("team/debian", "12", "debian");
  std::string busybox = registry.push_image("team/busybox", "1", "busybox");
  TempDir dir("bw-rescan");
  int api_port = free_port();
  std::string ref_alpine = registry.host() + "/team/alpine:3.20";
  std::string ref_debian = registry.host() + "/team/debian:12";
  std::string ref_busybox = registry.host() + "/team/busybox:1";
  dir.write("web/Dockerfile", "FROM " + ref_alpine + "\n");
  dir.write("services/api/Dockerfile", "FROM " + ref_alpine + "\n");
  std::string config = dir.write("config.yaml", config_text(dir, api_port, registry.host(),
                                                            "projects:\n"
                                                            "  - name: web\n"
                                                            "    dockerfile: web/Dockerfile\n"
                                                            "  - dockerfiles: services/*/Dockerfile\n"));
  auto bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log");
  REQUIRE(bw->running());
  REQUIRE(wait_until([&] { return image(api_port, ref_alpine)["digest"] == alpine; }, std::chrono::seconds(15)));
  CHECK(image(api_port, ref_alpine)["dependents"] == json::array({"api", "web"}));

  // web moves to debian: alpine stays watched for api only.
  dir.write("web/Dockerfile", "FROM " + ref_debian + " AS runtime\nRUN true\n");
  REQUIRE(wait_until([&] { return image(api_port, ref_debian)["digest"] == debian; }, std::chrono::seconds(15)));
  CHECK(image(api_port, ref_debian)["dependents"] == json::array({"web"}));
  CHECK(image(api_port, ref_alpine)["dependents"] == json::array({"api"}));
  CHECK(bw->log().find("Dockerfiles changed (" + dir.path() + "/web/Dockerfile changed): rescanned, watching 2 references") !=
        std::string::npos);

  // A new folder matching the glob becomes a project.
  dir.write("services/jobs/Dockerfile", "FROM " + ref_busybox + "\n");
  REQUIRE(wait_until([&] { return image(api_port, ref_busybox)["digest"] == busybox; }, std::chrono::seconds(15)));
  CHECK(image(api_port, ref_busybox)["dependents"] == json::array({"jobs"}));
  CHECK(watched_refs(api_port) == std::set<std::string>{ref_alpine, ref_busybox, ref_debian});
  CHECK(image(api_port, ref_alpine)["digest"] == alpine);  // state kept

  bw->signal(SIGTERM);
  auto code = bw->wait(std::chrono::seconds(15));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

namespace {

// A moved tag whose webhook is still being answered (the receiver holds it
// for `hold`) when SIGTERM comes with `stop_timeout` seconds to finish.
struct InFlight {
  LocalRegistry registry;
  Receiver receiver;
  TempDir dir{"bw-stop"};
  int api_port = free_port();
  std::string config;
  std::unique_ptr<NotifySocket> notify;
  std::unique_ptr<Process> bw;
  std::atomic<bool> release{false};

  void start(std::chrono::milliseconds hold, const std::string& stop_timeout) {
    std::string d1 = registry.push_image("team/alpine", "3.20", "one");
    receiver.set_reply_handler([this, hold](const ReceivedRequest&) {
      wait_until([&] { return release.load(); }, hold);  // a slow CI endpoint
      return Receiver::Reply{200, "ok", {}};
    });
    std::string ref = registry.host() + "/team/alpine:3.20";
    dir.write("web/Dockerfile", "FROM " + ref + "\n");
    config = dir.write("config.yaml", config_text(dir, api_port, registry.host(),
                                                  "projects:\n"
                                                  "  - name: web\n"
                                                  "    dockerfile: web/Dockerfile\n"
                                                  "    triggers: [ci]\n"
                                                  "triggers:\n"
                                                  "  ci:\n"
                                                  "    type: webhook\n"
                                                  "    url: " + receiver.url("/hook") + "\n"
                                                  "    timeout: 20s\n"));
    notify = std::make_unique<NotifySocket>(dir.path() + "/notify.sock");
    bw = start_basewatch(config, api_port, dir.path() + "/basewatch.log",
                         {{"BASEWATCH_STOP_TIMEOUT", stop_timeout}, {"NOTIFY_SOCKET", notify->path()}});
    REQUIRE(bw->running());
    REQUIRE(wait_until([&] { return image(api_port, ref)["digest"] == d1; }, std::chrono::seconds(15)));
    registry.push_image("team/alpine", "3.20", "two");
    REQUIRE(receiver.wait_for(1, std::chrono::seconds(15)));
  }
  json deliveries() {
    auto out = run({basewatch_binary(), "deliveries", "-c", config, "--json"});
    REQUIRE(out.status == 0);
    return json::parse(out.output, nullptr, false);
  }
};

}  // namespace

TEST_CASE("SIGTERM parks a delivery still in flight at the deadline: exit 0, the delivery stays pending",
          "[integration][systemd]") {
  InFlight f;
  f.start(std::chrono::seconds(8), "1");
  // STATUS= shows the delivery waiting for its answer.
  CHECK(f.notify->wait_for("STATUS=watching 1 reference, last poll ", 0, std::chrono::seconds(5)) >= 0);
  REQUIRE(wait_until([&] {
    for (const auto& m : f.notify->messages()) {
      if (m.rfind("STATUS=", 0) == 0 && m.ends_with(", 1 pending delivery")) return true;
    }
    return false;
  }, std::chrono::seconds(5)));
  auto sent = std::chrono::steady_clock::now();
  f.bw->signal(SIGTERM);
  auto code = f.bw->wait(std::chrono::seconds(6));
  f.release = true;
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(std::chrono::steady_clock::now() - sent < std::chrono::seconds(5));
  CHECK(f.bw->log().find("stopping: deliveries still busy after 1s; parked: unfinished deliveries stay pending in the "
                         "outbox for the next start") != std::string::npos);

  // Nothing lost: the delivery is in the outbox, pending, with no attempt recorded.
  auto list = f.deliveries();
  REQUIRE(list.is_array());
  REQUIRE(list.size() == 1);
  CHECK(list[0]["state"] == "pending");
  CHECK(list[0]["attempts"] == 0);
  CHECK(list[0]["id"] == f.receiver.requests()[0].headers.at("x-basewatch-delivery"));
}

TEST_CASE("a second SIGTERM/SIGINT stops waiting for deliveries in flight at once", "[integration][systemd]") {
  InFlight f;
  f.start(std::chrono::seconds(8), "30");
  auto sent = std::chrono::steady_clock::now();
  f.bw->signal(SIGTERM);
  REQUIRE(wait_until([&] { return f.bw->log().find("SIGTERM received, stopping") != std::string::npos; },
                     std::chrono::seconds(5)));
  f.bw->signal(SIGINT);
  auto code = f.bw->wait(std::chrono::seconds(6));
  f.release = true;
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(std::chrono::steady_clock::now() - sent < std::chrono::seconds(6));
  CHECK(f.bw->log().find("stopping: second signal, not waiting for deliveries; parked: unfinished deliveries stay pending "
                         "in the outbox for the next start") != std::string::npos);
  auto list = f.deliveries();
  REQUIRE(list.is_array());
  REQUIRE(list.size() == 1);
  CHECK(list[0]["state"] == "pending");
}

TEST_CASE("SIGTERM lets a delivery in flight finish within the deadline, records it, closes the database",
          "[integration][systemd]") {
  InFlight f;
  f.start(std::chrono::milliseconds(1500), "10");
  f.bw->signal(SIGTERM);
  auto code = f.bw->wait(std::chrono::seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(f.bw->log().find("parked") == std::string::npos);
  CHECK(f.bw->log().find("stopped; database closed") != std::string::npos);
  auto list = f.deliveries();
  REQUIRE(list.is_array());
  REQUIRE(list.size() == 1);
  CHECK(list[0]["state"] == "delivered");
  CHECK(list[0]["attempts"] == 1);
  // A clean close leaves no write-ahead log behind.
  CHECK(!std::filesystem::exists(f.dir.path() + "/basewatch.db-wal"));
}

TEST_CASE("under journald, log lines carry <N> priorities and no timestamps; log.format json is one object a line",
          "[integration][systemd]") {
  TempDir dir("bw-logs");
  int api_port = free_port();
  // An unreachable loopback registry: the poll fails with a warning.
  std::string ref = "127.0.0.1:1/team/alpine:3.20";
  dir.write("web/Dockerfile", "FROM " + ref + "\n");
  int runs = 0;  // a database per run: a failed poll is not retried within the hour
  auto write_config = [&](const std::string& log) {
    return dir.write("config.yaml", "database: " + dir.path() + "/basewatch" + std::to_string(++runs) + ".db\n"
                                    "listen: 127.0.0.1:" + std::to_string(api_port) + "\n" + log +
                                    "poll: {interval: 1h}\n"
                                    "registries: {'127.0.0.1:1': {insecure: true}}\n"
                                    "projects:\n  - name: web\n    dockerfile: web/Dockerfile\n");
  };
  auto run_and_stop = [&](const std::string& config, const std::string& log_path, bool journal) {
    { std::ofstream(log_path).flush(); }
    struct stat st{};
    REQUIRE(::stat(log_path.c_str(), &st) == 0);
    std::map<std::string, std::string> env;
    // Where JOURNAL_STREAM names another stream, it does not count.
    env["JOURNAL_STREAM"] = journal ? std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)
                                    : std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
    auto bw = start_basewatch(config, api_port, log_path, env);
    REQUIRE(bw->running());
    REQUIRE(wait_until([&] { return bw->log().find("check " + ref) != std::string::npos; }, std::chrono::seconds(10)));
    bw->signal(SIGTERM);
    auto code = bw->wait(std::chrono::seconds(10));
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    return lines_of(bw->log());
  };

  SECTION("journald text") {
    auto lines = run_and_stop(write_config(""), dir.path() + "/journal.log", true);
    REQUIRE(lines.size() >= 3);
    CHECK(lines[0].rfind("<6>basewatch ", 0) == 0);
    bool warned = false;
    for (const auto& l : lines) {
      CHECK(std::regex_match(l, std::regex("<[2-7]>.*")));
      if (l.rfind("<4>check " + ref + ": ", 0) == 0) warned = true;
    }
    CHECK(warned);
    CHECK(lines.back() == "<6>stopped; database closed");
  }
  SECTION("JOURNAL_STREAM naming another stream: a terminal's timestamps") {
    auto lines = run_and_stop(write_config(""), dir.path() + "/other.log", false);
    REQUIRE(!lines.empty());
    for (const auto& l : lines) CHECK(std::regex_match(l, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \w+ \[\d+\] .*)")));
  }
  SECTION("json, and json under journald") {
    for (bool journal : {false, true}) {
      auto lines = run_and_stop(write_config("log: {format: json}\n"), dir.path() + (journal ? "/j.log" : "/json.log"), journal);
      REQUIRE(lines.size() >= 3);
      bool warned = false;
      for (auto l : lines) {
        if (journal) {
          REQUIRE(std::regex_match(l, std::regex("<[2-7]>\\{.*")));
          l = l.substr(3);
        }
        auto j = json::parse(l, nullptr, false);
        REQUIRE(j.is_object());
        CHECK(std::regex_match(j["ts"].get<std::string>(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
        CHECK(j["thread"].is_number());
        if (j["level"] == "warning" && j["msg"].get<std::string>().rfind("check " + ref + ": ", 0) == 0) warned = true;
      }
      CHECK(warned);
      auto first = json::parse(journal ? lines[0].substr(3) : lines[0]);
      CHECK(first["level"] == "info");
      CHECK(first["msg"].get<std::string>().rfind("basewatch ", 0) == 0);
    }
  }
}
