// Task builds on real parts: the real basewatch binary runs Debian's buildah
// (vfs storage, chroot isolation, a store per test) against real
// docker-registry processes on 127.0.0.1, on busybox images with a real root
// filesystem so RUN works. One-stage and multi-stage (multi-platform)
// projects, a chain of two builds, an image already built on the new base,
// a failing build retried then dead, a timeout, a push the registry
// refuses, a context that vanished, and the config problems `config check`
// refuses.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "tests/api/helpers.h"
#include "tests/support/images.h"

using namespace bw::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Every build log of a folder, concatenated.
std::string all_logs(const std::string& folder) {
  std::string out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder, ec)) out += slurp(e.path().string());
  return out;
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// A basewatch serve with its own folder, buildah store and config.
struct Service {
  TempDir dir{"bw-builds"};
  BuildahStore store;
  int port = free_port();
  std::unique_ptr<Process> bw;

  std::string head(const std::vector<const LocalRegistry*>& insecure, const std::string& settle = "0s") const {
    std::string regs;
    for (const auto* r : insecure) regs += "  \"" + r->host() + "\": {insecure: true}\n";
    return "database: basewatch.db\n"
           "listen: 127.0.0.1:" + std::to_string(port) + "\n"
           "log: {level: debug}\n"
           "poll: {interval: 1h, jitter: 0%, settle: " + settle + "}\n"
           "builds: {concurrency: 2, logs: build-logs}\n"
           "registries:\n" + regs;
  }
  std::string logs() const { return dir.path() + "/build-logs"; }
  void start(const std::string& config_text) {
    std::string config = dir.write("config.yaml", config_text);
    bw = start_basewatch(config, port, dir.path() + "/basewatch.log", store.env());
    REQUIRE(bw->running());
  }
  std::string serve_log() const { return bw ? bw->log() : ""; }
  void check_now() { REQUIRE(http_call(port, "POST", "/v1/check", "{}").status == 202); }
  // Waits until every watched reference has a digest.
  void wait_baseline(size_t refs) {
    REQUIRE(wait_until([&] {
      auto images = get_json(port, "/v1/images");
      if (!images.is_array() || images.size() != refs) return false;
      for (auto& i : images) {
        if (!i["digest"].is_string()) return false;
      }
      return true;
    }, 20s));
  }
  // The project's delivery once it is delivered or dead (null after the timeout).
  json wait_settled(const std::string& project, std::chrono::milliseconds timeout = 60s) {
    json found;
    wait_until([&] {
      auto all = get_json(port, "/v1/deliveries");
      if (!all.is_array()) return false;
      for (auto& d : all) {
        if (d["project"] == project && (d["state"] == "delivered" || d["state"] == "dead")) {
          found = d;
          return true;
        }
      }
      return false;
    }, timeout);
    return found;
  }
  json delivery(const std::string& id) { return get_json(port, "/v1/deliveries/" + id); }
  ~Service() {
    if (bw) {
      bw->signal(SIGTERM);
      bw->wait(30s);
    }
  }
};

std::string annotation(const json& manifest, const std::string& key) {
  if (!manifest.contains("annotations") || !manifest["annotations"].contains(key)) return "";
  return manifest["annotations"][key].get<std::string>();
}

// upstream/busybox:1 -> project base (image internal/base:latest) ->
// project app (image apps/app:latest), both built by the build trigger;
// internal/base starts as a seed image (the app's baseline), and the
// service is up with both references seen.
struct Chain {
  LocalRegistry registry;
  std::string upstream = registry.host() + "/upstream/busybox:1";
  std::string internal = registry.host() + "/internal/base:latest";
  Service s;
  Chain() {
    push_busybox(registry, "upstream/busybox", "1", "v1");
    push_busybox(registry, "internal/base", "latest", "seed");
    s.dir.write("base/Dockerfile", "FROM " + upstream + "\nRUN echo hardened > /base-marker\n");
    s.dir.write("app/Dockerfile", "FROM " + internal + "\nRUN cat /base-marker /etc/release && echo app > /app-marker\n");
    s.start(s.head({&registry}) +
            // The upstream is copied to hub/upstream; the projects build from the upstream itself.
            "mirrors:\n  - {from: \"" + registry.host() + "/upstream/*\", to: \"" + registry.host() + "/hub/upstream/*\"}\n"
            "projects:\n"
            "  - {name: base, dockerfile: base/Dockerfile, image: \"" + internal + "\", triggers: [rebuild]}\n"
            "  - {name: app, dockerfile: app/Dockerfile, image: \"" + registry.host() + "/apps/app:latest\", triggers: [rebuild]}\n"
            "triggers:\n"
            "  rebuild: {type: build, timeout: 2m}\n");
    s.wait_baseline(2);
  }
};

// One project, web, FROM team/busybox:1, built by `rebuild` and pushed
// to apps/web:latest; the service is up with the base seen.
struct WebProject {
  LocalRegistry registry;
  Service s;
  WebProject(const std::string& dockerfile_rest, const std::string& retry, const std::string& timeout,
             const std::string& project_keys = "") {
    push_busybox(registry, "team/busybox", "1", "v1");
    s.dir.write("web/Dockerfile", "FROM " + registry.host() + "/team/busybox:1\n" + dockerfile_rest);
    s.start(s.head({&registry}) +
            "retry: " + retry + "\n"
            "projects:\n"
            "  - {name: web, dockerfile: web/Dockerfile, image: \"" + registry.host() + "/apps/web:latest\", " + project_keys +
            "triggers: [rebuild]}\n"
            "triggers:\n"
            "  rebuild: {type: build, timeout: " + timeout + "}\n");
    s.wait_baseline(1);
  }
  // The base moves, and basewatch is asked to look.
  void move_base() {
    push_busybox(registry, "team/busybox", "1", "v2");
    s.check_now();
  }
};

}  // namespace

TEST_CASE("a one-stage and a multi-stage, two-platform project are built and pushed for real, pinned to the payload's digest",
          "[integration][builds]") {
  LocalRegistry registry;
  const std::string base = registry.host() + "/team/busybox:1";
  push_busybox_index(registry, "team/busybox", "1", "v1", {"linux/amd64", "linux/arm64"});
  Service s;
  s.dir.write("one/Dockerfile", "FROM " + base + "\nRUN cat /etc/release && echo one > /one\n");
  // ARG in FROM, --platform, a stage alias, COPY --from a stage and an image.
  s.dir.write("multi/Dockerfile",
              "ARG BASE=" + base + "\n"
              "FROM --platform=$BUILDPLATFORM ${BASE} AS build\n"
              "RUN echo built > /artifact\n"
              "FROM " + base + " AS runtime\n"
              "COPY --from=build /artifact /artifact\n"
              "COPY --from=" + base + " /etc/release /base-release\n"
              "RUN cat /artifact /base-release\n");
  s.start(s.head({&registry}, "2s") +
          "projects:\n"
          "  - {name: one, dockerfile: one/Dockerfile, image: \"" + registry.host() + "/apps/one:latest\", triggers: [rebuild]}\n"
          "  - {name: multi, dockerfile: multi/Dockerfile, image: \"" + registry.host() + "/apps/multi:latest\",\n"
          "     platforms: [linux/amd64, linux/arm64], triggers: [rebuild]}\n"
          "triggers:\n"
          "  rebuild: {type: build, timeout: 2m}\n");
  s.wait_baseline(1);

  std::string v2 = push_busybox_index(registry, "team/busybox", "1", "v2", {"linux/amd64", "linux/arm64"});
  s.check_now();
  REQUIRE(wait_until([&] {
    auto all = get_json(s.port, "/v1/deliveries");
    return all.is_array() && all.size() == 2;
  }, 10s));
  // The tag moves again while the deliveries settle: the builds must use v2,
  // the digest that fired them, not what the tag names when they run.
  push_busybox_index(registry, "team/busybox", "1", "v3", {"linux/amd64", "linux/arm64"});

  for (const std::string project : {"one", "multi"}) {
    INFO(project);
    json d = s.wait_settled(project);
    INFO(s.serve_log());
    REQUIRE(d.is_object());
    INFO(d.dump(2));
    CHECK(d["state"] == "delivered");
    std::string pushed = d["last_attempt"]["pushed_digest"];
    CHECK(pushed == registry.head_digest("apps/" + project, "latest"));
    CHECK(d["last_attempt"]["status"] == 0);
    CHECK(d["last_attempt"]["duration_ms"].get<int64_t>() > 0);
    std::string log = slurp(s.logs() + "/" + d["id"].get<std::string>() + ".1.log");
    CHECK(log.find("release v2\n") != std::string::npos);  // RUN cat /etc/release, /base-release
    CHECK(log.find("release v3") == std::string::npos);
    CHECK(log.find("basewatch: pushed " + registry.host() + "/apps/" + project + ":latest@" + pushed + "\n") != std::string::npos);
    CHECK(d["last_attempt"]["output_tail"].get<std::string>().find("basewatch: pushed ") != std::string::npos);

    auto manifests = platform_manifests(registry, "apps/" + project, "latest");
    CHECK(manifests.size() == (project == "multi" ? 2u : 1u));
    for (const auto& m : manifests) {
      CHECK(annotation(m, "org.opencontainers.image.base.name") == base);
      CHECK(annotation(m, "org.opencontainers.image.base.digest") == v2);
      CHECK(annotation(m, "io.basewatch.delivery") == d["id"]);
      CHECK(annotation(m, "org.opencontainers.image.created").size() == 20);  // 2026-12-01T13:45:33Z
    }
  }
  // The multi-stage copy pinned every reference: ARG-expanded, stage and COPY --from.
  json multi = s.wait_settled("multi");
  std::string log = slurp(s.logs() + "/" + multi["id"].get<std::string>() + ".1.log");
  CHECK(log.find("basewatch: pinned " + fs::path(s.dir.path()).lexically_normal().string() + "/multi/Dockerfile:2: ${BASE} -> " + base + "@" + v2 + "\n") !=
        std::string::npos);
  CHECK(count_of(log, "basewatch: pinned ") == 3);
  CHECK(log.find("basewatch: push: buildah manifest push --all --tls-verify=false") != std::string::npos);
}

TEST_CASE_METHOD(Chain, "a chain of two real builds: the base project pushes internal/base, then the app builds on it",
                 "[integration][builds][chain]") {
  std::string fix = push_busybox(registry, "upstream/busybox", "1", "security-fix");
  s.check_now();
  json base = s.wait_settled("base");
  json app = s.wait_settled("app");
  INFO(s.serve_log());
  REQUIRE(base.is_object());
  REQUIRE(app.is_object());
  CHECK(base["state"] == "delivered");
  CHECK(app["state"] == "delivered");

  // The digests that prove the chain.
  std::string base_pushed = base["last_attempt"]["pushed_digest"];
  CHECK(registry.head_digest("internal/base", "latest") == base_pushed);
  auto base_manifest = platform_manifests(registry, "internal/base", "latest").at(0);
  CHECK(annotation(base_manifest, "org.opencontainers.image.base.digest") == fix);
  CHECK(annotation(base_manifest, "org.opencontainers.image.base.name") == upstream);
  auto app_manifest = platform_manifests(registry, "apps/app", "latest").at(0);
  CHECK(annotation(app_manifest, "org.opencontainers.image.base.digest") == base_pushed);
  CHECK(annotation(app_manifest, "org.opencontainers.image.base.name") == internal);
  CHECK(app["last_attempt"]["pushed_digest"] == registry.head_digest("apps/app", "latest"));

  // The app's build ran on the new internal/base: its RUN saw the marker.
  std::string app_log = slurp(s.logs() + "/" + app["id"].get<std::string>() + ".1.log");
  CHECK(app_log.find("hardened\nrelease security-fix\n") != std::string::npos);
  // The app's change came from basewatch's own push, checked at once.
  auto app_body = s.delivery(app["id"]);
  REQUIRE(app_body["payload"]["changes"].size() == 1);
  CHECK(app_body["payload"]["changes"][0]["ref"] == internal);
  CHECK(app_body["payload"]["changes"][0]["new_digest"] == base_pushed);
  CHECK(app_body["payload"]["changes"][0]["source"] == "build");
  CHECK(s.delivery(base["id"])["payload"]["plan"] == json::array({"base", "app"}));

  // The dashboard, as headless Chromium renders it: both builds with what
  // they pushed, and the graph with the chain's path highlighted.
  REQUIRE(access(k_chromium, X_OK) == 0);  // scripts/install-deps installs chromium
  std::string url = "http://127.0.0.1:" + std::to_string(s.port) + "/";
  auto dom = chromium(s.dir.path(), {"--dump-dom", url});
  INFO(dom.errors);
  REQUIRE(dom.status == 0);
  const std::string& html = dom.output;
  CHECK(html.find("<section id=\"builds\">") != std::string::npos);
  for (const json* d : {&base, &app}) {
    CHECK(html.find("<td><code>" + (*d)["id"].get<std::string>() + "</code></td>") != std::string::npos);
    std::string digest = (*d)["last_attempt"]["pushed_digest"];
    CHECK(html.find("<code title=\"" + digest + "\">" + digest.substr(7, 12) + "</code>") != std::string::npos);
  }
  // The latest change that fired is internal/base's (basewatch's own push);
  // the chain goes back to the upstream fix that built it: upstream (and
  // its mirror) -> base -> internal/base -> app -> apps/app, all lit.
  CHECK(html.find("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"graph\"") != std::string::npos);
  CHECK(html.find("<g class=\"node kind-upstream s-changed hl\" data-id=\"" + upstream + "\"") != std::string::npos);
  CHECK(html.find("data-id=\"" + registry.host() + "/hub/upstream/busybox:1\" data-kind=\"mirror\"") != std::string::npos);
  CHECK(count_of(html, " hl\" data-id=\"" + registry.host() + "/hub/upstream/busybox:1\"") == 1);
  CHECK(html.find("<g class=\"node kind-project s-built hl\" data-id=\"base\"") != std::string::npos);
  CHECK(html.find("<g class=\"node kind-image s-changed hl\" data-id=\"" + internal + "\"") != std::string::npos);
  CHECK(html.find("<g class=\"node kind-project s-built hl\" data-id=\"app\"") != std::string::npos);
  CHECK(html.find("<g class=\"node kind-image s-unknown hl\" data-id=\"" + registry.host() + "/apps/app:latest\"") !=
        std::string::npos);
  CHECK(count_of(html, "class=\"edge hl\"") == 4);  // upstream -> base -> internal/base -> app -> apps/app
  CHECK(count_of(html, "class=\"edge copy hl\"") == 1);
  CHECK(html.find("The latest change and what it rebuilt, highlighted: <code>" + upstream + " sha256:" + fix.substr(7, 0)) !=
        std::string::npos);
  CHECK(html.find(", then " + internal + " built</code>") != std::string::npos);

  std::string shot = s.dir.path() + "/dashboard.png";
  auto screenshot = chromium(s.dir.path(), {"--screenshot=" + shot, "--window-size=1400,1000", "--hide-scrollbars", url});
  INFO(screenshot.errors);
  CHECK(screenshot.status == 0);
  REQUIRE(fs::exists(shot));
  CHECK(fs::file_size(shot) > 20'000);
  if (const char* keep = std::getenv("BASEWATCH_DASHBOARD_SHOT")) fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);

  // The same picture on its own, for links and READMEs.
  auto svg = http_call(s.port, "GET", "/v1/graph?format=svg");
  CHECK(svg.status == 200);
  CHECK(svg.content_type == "image/svg+xml");
  CHECK(svg.body.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 0) == 0);
}

TEST_CASE_METHOD(Chain, "an image already built on the new base is not built again; what depends on it still is",
                 "[integration][builds][chain]") {
  // The upstream moves, and someone builds internal/base on it by hand
  // before basewatch looks (buildah writes base.digest by itself).
  std::string fix = push_busybox(registry, "upstream/busybox", "1", "security-fix");
  fs::path ctx = s.dir.path() + "/base";
  auto registries = s.dir.write("registries.conf", "[[registry]]\nlocation = \"" + registry.host() + "\"\ninsecure = true\n");
  BuildahStore by_hand;
  auto env = by_hand.env();
  auto built = run({"buildah", "build", "--pull=always", "-t", internal, ctx.string()},
                   [&] { env["CONTAINERS_REGISTRIES_CONF"] = registries; return env; }(), "", 120s);
  INFO(built.output + built.errors);
  REQUIRE(built.status == 0);
  auto pushed = run({"buildah", "push", "--tls-verify=false", internal, "docker://" + internal}, env, "", 120s);
  REQUIRE(pushed.status == 0);
  CHECK(annotation(platform_manifests(registry, "internal/base", "latest").at(0), "org.opencontainers.image.base.digest") == fix);

  s.check_now();
  json app = s.wait_settled("app");
  INFO(s.serve_log());
  REQUIRE(app.is_object());
  CHECK(app["state"] == "delivered");
  auto all = get_json(s.port, "/v1/deliveries");
  REQUIRE(all.is_array());
  CHECK(all.size() == 1);  // the app only: base was not rebuilt
  auto events = get_json(s.port, "/v1/events");
  std::map<std::string, std::string> outcome;
  for (auto& e : events) outcome[e["ref"]] = e["outcome"];
  CHECK(outcome[upstream] == "already-built");
  CHECK(outcome[internal] == "fired");
}

TEST_CASE("a project that builds FROM a mirror: the build waits for the copy, then pins the mirror's copy of the fix",
          "[integration][builds][mirror]") {
  LocalRegistry upstream;  // the public registry
  LocalRegistry team;      // the team's: the mirror, and the images it builds
  push_busybox(upstream, "library/busybox", "1", "v1");
  const std::string copy = team.host() + "/hub/library/busybox:1";
  Service s;
  s.dir.write("web/Dockerfile", "FROM " + copy + "\nRUN cat /etc/release\n");
  s.start(s.head({&upstream, &team}) +
          "mirrors:\n  - {from: \"" + upstream.host() + "/library/*\", to: \"" + team.host() + "/hub/library/*\"}\n"
          "projects:\n"
          "  - {name: web, dockerfile: web/Dockerfile, image: \"" + team.host() + "/apps/web:latest\", triggers: [rebuild]}\n"
          "triggers:\n"
          "  rebuild: {type: build, timeout: 2m}\n");
  auto in_sync = [&] {
    auto mirrors = get_json(s.port, "/v1/mirrors");
    return mirrors.is_array() && mirrors.size() == 1 && mirrors[0]["state"] == "in-sync";
  };
  REQUIRE(wait_until(in_sync, 30s));  // the first copy: a baseline, no delivery
  CHECK(get_json(s.port, "/v1/deliveries").empty());

  std::string fix = push_busybox(upstream, "library/busybox", "1", "v2");
  s.check_now();
  json d = s.wait_settled("web");
  INFO(s.serve_log());
  REQUIRE(d.is_object());
  CHECK(d["state"] == "delivered");
  CHECK(team.head_digest("hub/library/busybox", "1") == fix);  // copied byte for byte before the build
  auto body = s.delivery(d["id"]);
  REQUIRE(body["payload"]["changes"].size() == 1);
  const auto& change = body["payload"]["changes"][0];
  CHECK(change["ref"] == upstream.host() + "/library/busybox:1");
  CHECK(change["mirror"] == json{{"ref", copy}, {"digest", fix}});
  std::string log = slurp(s.logs() + "/" + d["id"].get<std::string>() + ".1.log");
  CHECK(log.find("basewatch: pinned " + fs::path(s.dir.path()).lexically_normal().string() + "/web/Dockerfile:1: " + copy + " -> " +
                 copy + "@" + fix + "\n") != std::string::npos);
  CHECK(log.find("release v2\n") != std::string::npos);
  auto built = platform_manifests(team, "apps/web", "latest").at(0);
  CHECK(annotation(built, "org.opencontainers.image.base.name") == copy);
  CHECK(annotation(built, "org.opencontainers.image.base.digest") == fix);
  CHECK(d["last_attempt"]["pushed_digest"] == team.head_digest("apps/web", "latest"));

  // The graph draws the chain through the copy: upstream -> mirror -> web.
  auto page = http_call(s.port, "GET", "/");
  CHECK(page.body.find("<g class=\"node kind-mirror s-ok hl\" data-id=\"" + copy + "\"") != std::string::npos);
  CHECK(page.body.find("data-from=\"" + copy + "\" data-to=\"web\"") != std::string::npos);
}

TEST_CASE("a failing build: the exit code and the log's tail are recorded, retried as retry: says, then dead",
          "[integration][builds]") {
  WebProject w("RUN echo about to fail && exit 3\n", "{max_attempts: 2, initial: 1s}", "2m");
  auto& s = w.s;
  auto& registry = w.registry;
  w.move_base();
  json d = s.wait_settled("web", 60s);
  INFO(s.serve_log());
  REQUIRE(d.is_object());
  CHECK(d["state"] == "dead");
  json full = s.delivery(d["id"]);
  REQUIRE(full["attempts"].size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    const auto& a = full["attempts"][i];
    std::string log = s.logs() + "/" + d["id"].get<std::string>() + "." + std::to_string(i + 1) + ".log";
    CHECK(a["status"] == 3);
    CHECK(a["error"] == "buildah build linux/amd64: exit status 3: Error: building at STEP \"RUN echo about to fail && exit 3\": "
                        "exit status 3 (log: " + fs::path(s.dir.path() + "/build-logs").lexically_normal().string() + "/" +
                        d["id"].get<std::string>() + "." + std::to_string(i + 1) + ".log)");
    CHECK(a["output_tail"].get<std::string>().find("about to fail\n") != std::string::npos);
    CHECK(a["pushed_digest"].is_null());
    CHECK(fs::exists(log));
  }
  CHECK(registry.head_digest("apps/web", "latest").empty());  // nothing pushed
}

TEST_CASE("a build that runs past its timeout: its process group is killed, the attempt says so", "[integration][builds]") {
  WebProject w("RUN echo sleeping && sleep 67\n", "{max_attempts: 1}", "3s");
  auto& s = w.s;
  auto started = std::chrono::steady_clock::now();
  w.move_base();
  json d = s.wait_settled("web", 30s);
  INFO(s.serve_log());
  REQUIRE(d.is_object());
  CHECK(std::chrono::steady_clock::now() - started < 20s);  // not the minute the RUN wanted
  CHECK(d["state"] == "dead");
  std::string error = d["last_attempt"]["error"];
  CHECK(error.rfind("buildah build linux/amd64: timed out after 3s; the process group was killed (log: ", 0) == 0);
  CHECK(d["last_attempt"]["output_tail"].get<std::string>().find("sleeping\n") != std::string::npos);
  // No sleep of the build is left behind.
  auto ps = run({"ps", "-eo", "args"});
  CHECK(ps.output.find("sleep 67") == std::string::npos);
}

TEST_CASE("a push the registry refuses (wrong credentials): a clear error, no secret in any log", "[integration][builds]") {
  LocalRegistry upstream;
  RegistryOptions locked;
  locked.htpasswd = {{"pusher", "right-password-7"}};
  LocalRegistry target(locked);
  push_busybox(upstream, "team/busybox", "1", "v1");
  Service s;
  std::string wrong = "wrong-password-9";
  s.dir.write("push-password", wrong + "\n");
  s.dir.write("web/Dockerfile", "FROM " + upstream.host() + "/team/busybox:1\nRUN true\n");
  s.start(s.head({&upstream}) +
          "  \"" + target.host() + "\": {insecure: true, username: pusher, password_file: push-password}\n"
          "retry: {max_attempts: 1}\n"
          "projects:\n"
          "  - {name: web, dockerfile: web/Dockerfile, image: \"" + target.host() + "/apps/web:latest\", triggers: [rebuild]}\n"
          "triggers:\n"
          "  rebuild: {type: build, timeout: 2m}\n");
  s.wait_baseline(1);
  push_busybox(upstream, "team/busybox", "1", "v2");
  s.check_now();
  json d = s.wait_settled("web");
  INFO(s.serve_log());
  REQUIRE(d.is_object());
  CHECK(d["state"] == "dead");
  std::string error = d["last_attempt"]["error"];
  INFO(error);
  CHECK(error.rfind("buildah push: exit status ", 0) == 0);
  CHECK((error.find("unauthorized") != std::string::npos || error.find("authentication required") != std::string::npos));
  CHECK(d["last_attempt"]["pushed_digest"].is_null());
  std::string everything = all_logs(s.logs()) + s.serve_log() + get_json(s.port, "/v1/deliveries").dump() +
                           s.delivery(d["id"]).dump();
  CHECK(everything.find("basewatch: credentials for " + target.host() + " from registries: (a private auth file)") !=
        std::string::npos);
  CHECK(everything.find(wrong) == std::string::npos);
  CHECK(everything.find("right-password-7") == std::string::npos);
  // The private folder with the auth file is gone.
  std::string folder = slurp(s.logs() + "/" + d["id"].get<std::string>() + ".1.log");
  auto at = folder.find("--authfile ");
  REQUIRE(at != std::string::npos);
  std::string authfile = folder.substr(at + 11, folder.find(' ', at + 11) - at - 11);
  CHECK(fs::path(authfile).filename() == "auth.json");
  CHECK_FALSE(fs::exists(fs::path(authfile).parent_path()));
}

TEST_CASE("a context folder that vanished: a clear error, nothing lost; back in place, a retry builds",
          "[integration][builds]") {
  WebProject w("COPY hello /hello\n", "{max_attempts: 1}", "2m", "context: src, ");
  auto& s = w.s;
  auto& registry = w.registry;
  s.dir.write("src/hello", "hello\n");
  fs::rename(s.dir.path() + "/src", s.dir.path() + "/src-away");
  w.move_base();
  json d = s.wait_settled("web");
  INFO(s.serve_log());
  REQUIRE(d.is_object());
  CHECK(d["state"] == "dead");
  std::string context = fs::path(s.dir.path() + "/src").lexically_normal().string();
  CHECK(d["last_attempt"]["error"].get<std::string>().rfind("the build context " + context + " does not exist (log: ", 0) == 0);
  CHECK(d["last_attempt"]["output_tail"].get<std::string>().find("basewatch: error: the build context " + context + " does not exist\n") !=
        std::string::npos);

  fs::rename(s.dir.path() + "/src-away", s.dir.path() + "/src");
  REQUIRE(http_call(s.port, "POST", "/v1/deliveries/" + d["id"].get<std::string>() + "/retry").status == 202);
  REQUIRE(wait_until([&] { return s.delivery(d["id"])["state"] == "delivered"; }, 60s));
  auto full = s.delivery(d["id"]);
  CHECK(full["attempts"].size() == 2);
  CHECK(full["attempts"][1]["pushed_digest"] == registry.head_digest("apps/web", "latest"));
}

TEST_CASE("config check and serve refuse a builder that is not installed and an image: that does not parse",
          "[integration][builds][config]") {
  TempDir dir("bw-builds-config");
  dir.write("web/Dockerfile", "FROM alpine:3.20\n");
  std::string config = dir.write("config.yaml",
                                 "projects:\n"
                                 "  - {name: web, dockerfile: web/Dockerfile, image: \"Registry.Test/Web\", triggers: [rebuild]}\n"
                                 "triggers:\n"
                                 "  rebuild: {type: build, builder: podman}\n");
  // An empty PATH but for this folder: no podman here, whatever the machine has.
  std::map<std::string, std::string> env = {{"PATH", dir.path()}};
  auto check = run({basewatch_binary(), "config", "check", "-c", config}, env);
  CHECK(check.status == 2);
  CHECK(check.errors == "basewatch: " + config + ":4:35: triggers.rebuild.builder: podman is not installed (not found on PATH); "
                        "install it, or set builder: to one that is\n"
                        "basewatch: " + config + ":2:52: projects[0].image: invalid reference \"Registry.Test/Web\": repository "
                        "name must be lowercase\n");
  auto serve = run({basewatch_binary(), "serve", "-c", config}, env, "", 20s);
  CHECK(serve.status == 2);
  CHECK(serve.errors.find(config + ":4:35: triggers.rebuild.builder: podman is not installed (not found on PATH)") != std::string::npos);
}
