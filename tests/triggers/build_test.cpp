// Unit tests of `type: build` against the fake process runner: the exact
// argv and environment of every step, the pinned copy, the private auth
// file, what the attempt records on success and on each failure, and the
// config problems `config check` refuses. No builder runs here
// (tests/builds/ runs the real buildah).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "config/config.h"
#include "triggers/build.h"
#include "triggers/dispatcher.h"
#include "util/crypto.h"

using namespace bw;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string k_alpine_new = "sha256:" + std::string(64, 'b');
const std::string k_golang_new = "sha256:" + std::string(64, 'd');
const std::string k_pushed = "sha256:" + std::string(64, 'e');
const std::string k_mirror_digest = "sha256:" + std::string(64, 'f');

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void append_to(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::app) << text; }

// A project folder with its Dockerfile, and a log folder; removed at the end.
struct Workspace {
  fs::path root = fs::temp_directory_path() / ("bw-build-test-" + std::to_string(::getpid()));
  Workspace() {
    fs::remove_all(root);
    fs::create_directories(root / "web");
  }
  ~Workspace() { fs::remove_all(root); }
  std::string dockerfile(const std::string& text) const {
    std::ofstream((root / "web" / "Dockerfile").string(), std::ios::binary) << text;
    return (root / "web" / "Dockerfile").string();
  }
  std::string logs() const { return (root / "logs").string(); }
  std::string context() const { return (root / "web").string(); }
};

triggers::BuildProject web_project(const Workspace& ws) {
  return triggers::BuildProject{"web", (ws.root / "web" / "Dockerfile").string(), ws.context(), {{"VERSION", "1.2"}}, "runtime",
                                {"linux/amd64"}, "registry.example.com/app/web:latest"};
}

json change(const std::string& ref, const std::string& digest) {
  return {{"ref", ref}, {"old_digest", "sha256:" + std::string(64, '0')}, {"new_digest", digest},
          {"platforms", {{"linux/amd64", {{"old", "sha256:" + std::string(64, '0')}, {"new", digest}}}}},
          {"detected_at", "2026-11-28T12:00:00Z"}, {"source", "poll"}};
}

db::Delivery delivery(const std::string& id, json changes, const std::string& project = "web") {
  db::Delivery d;
  d.id = id;
  d.trigger = "rebuild";
  d.project = project;
  d.payload = json{{"type", "base.updated"}, {"delivery_id", id}, {"project", {{"name", project}}}, {"changes", changes},
                   {"plan", json::array({project})}}
                  .dump();
  return d;
}

Result<triggers::ProcessResult> exited(int code) {
  triggers::ProcessResult r;
  r.exit_code = code;
  return r;
}

std::string arg_after(const std::vector<std::string>& argv, const std::string& flag) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag) return argv[i + 1];
  }
  return "";
}

// What the fake builder saw of one step: its spec, and the files the step
// was pointed at, read while the step ran (they are gone afterwards).
struct Seen {
  triggers::ProcessSpec spec;
  std::string dockerfile;
  std::string authfile;
  unsigned auth_mode = 0;
  unsigned folder_mode = 0;
  std::string registries_conf;
};

// A fake builder: records each step, writes the digest file on push, and
// fails the step whose label word (argv[1]) is `fail_on` with `code`.
struct FakeBuilder {
  std::vector<Seen> seen;
  std::string fail_on;
  int code = 1;
  std::string fail_output;
  bool write_digest = true;
  triggers::FakeProcessRunner runner{[this](const triggers::ProcessSpec& s) -> Result<triggers::ProcessResult> {
    Seen x;
    x.spec = s;
    if (auto f = arg_after(s.argv, "-f"); !f.empty()) {
      x.dockerfile = slurp(f);
      struct stat st{};
      if (::stat(fs::path(f).parent_path().c_str(), &st) == 0) x.folder_mode = st.st_mode & 0777;
    }
    if (auto a = arg_after(s.argv, "--authfile"); !a.empty()) {
      x.authfile = slurp(a);
      struct stat st{};
      if (::stat(a.c_str(), &st) == 0) x.auth_mode = st.st_mode & 0777;
    }
    for (const auto& [k, v] : s.env) {
      if (k == "CONTAINERS_REGISTRIES_CONF") x.registries_conf = slurp(v);
    }
    seen.push_back(x);
    std::string word = s.argv.size() > 1 ? (s.argv[1] == "manifest" ? "manifest " + s.argv[2] : s.argv[1]) : "";
    if (word == fail_on) {
      append_to(s.log_path, fail_output);
      return exited(code);
    }
    append_to(s.log_path, "output of " + word + "\n");
    if ((word == "push" || word == "manifest push") && write_digest) {
      std::ofstream(arg_after(s.argv, "--digestfile")) << k_pushed << "\n";
    }
    return exited(0);
  }};
  std::vector<std::vector<std::string>> argvs() const {
    std::vector<std::vector<std::string>> out;
    for (const auto& s : seen) out.push_back(s.spec.argv);
    return out;
  }
};

struct Harness {
  Workspace ws;
  FakeBuilder builder;
  FakeClock clock{from_unix_ms(1'795'000'000'000)};  // 2026-11-18T...
  std::vector<std::string> pushed;
  std::optional<triggers::BuildProject> project;
  std::map<std::string, config::RegistryConfig> registries;
  config::TriggerConfig cfg;
  Harness() {
    project = web_project(ws);
    cfg.name = "rebuild";
    cfg.type = "build";
    cfg.timeout = Millis(30 * 60'000);
  }
  triggers::BuildTrigger trigger() {
    triggers::Seams s;
    s.runner = &builder.runner;
    s.build_logs = ws.logs();
    s.build_project = [this](const std::string& name) -> std::optional<triggers::BuildProject> {
      if (project && project->name == name) return project;
      return std::nullopt;
    };
    s.registries = registries;
    s.clock = &clock;
    s.on_pushed = [this](const std::string& image) { pushed.push_back(image); };
    return triggers::BuildTrigger(cfg, s);
  }
  std::string created() const { return format_rfc3339(clock.now()); }
};

const std::string k_two_stage =
    "ARG GO=1.23\n"
    "FROM --platform=$BUILDPLATFORM golang:${GO} AS build\n"
    "RUN go build -o /app .\n"
    "FROM alpine:3.20 AS runtime\n"
    "COPY --from=build /app /app\n";

}  // namespace

TEST_CASE("build: one platform, pinned, annotated, pushed with the digest read back", "[unit][triggers][build]") {
  Harness h;
  h.ws.dockerfile(k_two_stage);
  auto t = h.trigger();
  CHECK(std::string(t.type()) == "build");
  CHECK(t.is_build());
  auto d = delivery("d_01", json::array({change("docker.io/library/alpine:3.20", k_alpine_new),
                                         change("docker.io/library/golang:1.23", k_golang_new)}));
  d.attempts = 1;
  auto out = t.deliver(d);
  INFO(out.error);
  REQUIRE(out.delivered);
  CHECK(out.status == 0);
  CHECK(out.pushed_digest == k_pushed);
  CHECK(h.pushed == std::vector<std::string>{"registry.example.com/app/web:latest"});

  auto argvs = h.builder.argvs();
  REQUIRE(argvs.size() == 3);
  std::string copy = arg_after(argvs[0], "-f");
  std::string digest_file = arg_after(argvs[1], "--digestfile");
  std::string tmp = fs::path(copy).parent_path().string();
  CHECK(copy == tmp + "/Dockerfile");
  CHECK(digest_file == tmp + "/digest");
  CHECK(argvs[0] == std::vector<std::string>{
                        "buildah", "build", "--pull=always", "-f", copy, "--platform", "linux/amd64", "--target", "runtime",
                        "--build-arg", "VERSION=1.2",
                        "--annotation", "io.basewatch.delivery=d_01",
                        "--annotation", "org.opencontainers.image.created=" + h.created(),
                        "--annotation", "org.opencontainers.image.base.name=docker.io/library/alpine:3.20",
                        "--annotation", "org.opencontainers.image.base.digest=" + k_alpine_new,
                        "-t", "localhost/basewatch-build:d_01-2", h.ws.context()});
  CHECK(argvs[1] == std::vector<std::string>{"buildah", "push", "--digestfile", digest_file, "localhost/basewatch-build:d_01-2",
                                             "docker://registry.example.com/app/web:latest"});
  CHECK(argvs[2] == std::vector<std::string>{"buildah", "rmi", "localhost/basewatch-build:d_01-2"});

  // The copy it built from: both bases pinned, every other byte as it was.
  CHECK(h.builder.seen[0].dockerfile ==
        "ARG GO=1.23\n"
        "FROM --platform=$BUILDPLATFORM docker.io/library/golang:1.23@" + k_golang_new + " AS build\n"
        "RUN go build -o /app .\n"
        "FROM docker.io/library/alpine:3.20@" + k_alpine_new + " AS runtime\n"
        "COPY --from=build /app /app\n");
  CHECK(h.builder.seen[0].folder_mode == 0700);
  CHECK_FALSE(fs::exists(tmp));  // removed afterwards

  for (const auto& s : h.builder.seen) {
    std::map<std::string, std::string> env(s.spec.env.begin(), s.spec.env.end());
    CHECK(env == std::map<std::string, std::string>{{"BASEWATCH_DELIVERY_ID", "d_01"}, {"BASEWATCH_PROJECT", "web"}});
    CHECK(s.spec.workdir == h.ws.context());
    CHECK(s.spec.append_log);
    CHECK(s.spec.log_path == h.ws.logs() + "/d_01.2.log");
  }
  CHECK(h.builder.seen[0].spec.timeout.count() > 0);
  CHECK(h.builder.seen[0].spec.timeout <= Millis(30 * 60'000));
  CHECK(h.builder.seen[2].spec.timeout == Millis(60'000));  // cleanup: its own short limit

  // The log: basewatch's lines between the builder's output; its tail is the attempt's.
  std::string log = slurp(h.ws.logs() + "/d_01.2.log");
  CHECK(log.find("basewatch: pinned " + h.ws.context() + "/Dockerfile:2: golang:${GO} -> docker.io/library/golang:1.23@" +
                 k_golang_new + "\n") != std::string::npos);
  CHECK(log.find("basewatch: build linux/amd64: buildah build --pull=always -f " + copy) != std::string::npos);
  CHECK(log.find("output of build\nbasewatch: build linux/amd64: done in ") != std::string::npos);
  CHECK(log.find("output of push\nbasewatch: push: done in ") != std::string::npos);
  CHECK(log.find("basewatch: pushed registry.example.com/app/web:latest@" + k_pushed + "\n") != std::string::npos);
  CHECK(out.output_tail == log);
}

TEST_CASE("build: several platforms become one manifest list, pushed with --all", "[unit][triggers][build]") {
  Harness h;
  h.project->platforms = {"linux/amd64", "linux/arm64/v8"};
  h.project->target.clear();
  h.project->build_args.clear();
  h.ws.dockerfile("FROM alpine:3.20\nCOPY . /src\n");
  h.cfg.builder = "podman";
  h.cfg.args = {"--layers", "--jobs=2"};
  auto out = h.trigger().deliver(delivery("d_02", json::array({change("docker.io/library/alpine:3.20", k_alpine_new)})));
  INFO(out.error);
  REQUIRE(out.delivered);
  CHECK(out.pushed_digest == k_pushed);
  auto argvs = h.builder.argvs();
  REQUIRE(argvs.size() == 8);
  std::string copy = arg_after(argvs[0], "-f");
  CHECK(arg_after(argvs[1], "-f") == copy);  // the same copy for both: nothing in it depends on the platform
  auto build_for = [&](const std::string& platform, const std::string& suffix) {
    return std::vector<std::string>{"podman", "build", "--pull=always", "-f", copy, "--platform", platform,
                                    "--annotation", "io.basewatch.delivery=d_02",
                                    "--annotation", "org.opencontainers.image.created=" + h.created(),
                                    "--annotation", "org.opencontainers.image.base.name=docker.io/library/alpine:3.20",
                                    "--annotation", "org.opencontainers.image.base.digest=" + k_alpine_new,
                                    "--layers", "--jobs=2", "-t", "localhost/basewatch-build:d_02-1-" + suffix, h.ws.context()};
  };
  CHECK(argvs[0] == build_for("linux/amd64", "linux-amd64"));
  CHECK(argvs[1] == build_for("linux/arm64/v8", "linux-arm64-v8"));
  const std::string list = "localhost/basewatch-build:d_02-1-list";
  CHECK(argvs[2] == std::vector<std::string>{"podman", "manifest", "create", list});
  CHECK(argvs[3] == std::vector<std::string>{"podman", "manifest", "add", list, "containers-storage:localhost/basewatch-build:d_02-1-linux-amd64"});
  CHECK(argvs[4] == std::vector<std::string>{"podman", "manifest", "add", list, "containers-storage:localhost/basewatch-build:d_02-1-linux-arm64-v8"});
  CHECK(argvs[5] == std::vector<std::string>{"podman", "manifest", "push", "--all", "--digestfile", arg_after(argvs[5], "--digestfile"),
                                             list, "docker://registry.example.com/app/web:latest"});
  CHECK(argvs[6] == std::vector<std::string>{"podman", "manifest", "rm", list});
  CHECK(argvs[7] == std::vector<std::string>{"podman", "rmi", "localhost/basewatch-build:d_02-1-linux-amd64",
                                             "localhost/basewatch-build:d_02-1-linux-arm64-v8"});
}

TEST_CASE("build: a FROM that depends on TARGETARCH gets a copy per platform", "[unit][triggers][build]") {
  Harness h;
  h.project->platforms = {"linux/amd64", "linux/arm64"};
  h.project->target.clear();
  h.ws.dockerfile("FROM alpine:3.20 AS base-amd64\nFROM golang:1.23 AS base-arm64\nFROM base-$TARGETARCH\n");
  auto out = h.trigger().deliver(delivery("d_03", json::array({change("docker.io/library/alpine:3.20", k_alpine_new)})));
  REQUIRE(out.delivered);
  auto argvs = h.builder.argvs();
  // The copies are the same text (both stages are pinned wherever they
  // stand), but only amd64's runtime base is the pinned one.
  CHECK(std::count(argvs[0].begin(), argvs[0].end(), "org.opencontainers.image.base.digest=" + k_alpine_new) == 1);
  CHECK(std::count(argvs[1].begin(), argvs[1].end(), "org.opencontainers.image.base.digest=" + k_alpine_new) == 0);
}

TEST_CASE("build: through a mirror, the copy pins the mirror's digest", "[unit][triggers][build]") {
  Harness h;
  h.ws.dockerfile("FROM registry.example.com/hub/library/alpine:3.20 AS runtime\n");
  json c = change("docker.io/library/alpine:3.20", k_alpine_new);
  c["mirror"] = {{"ref", "registry.example.com/hub/library/alpine:3.20"}, {"digest", k_mirror_digest}};
  c["upstream"] = {{"ref", "docker.io/library/alpine:3.20"}};
  auto out = h.trigger().deliver(delivery("d_04", json::array({c})));
  REQUIRE(out.delivered);
  CHECK(h.builder.seen[0].dockerfile == "FROM registry.example.com/hub/library/alpine:3.20@" + k_mirror_digest + " AS runtime\n");
  auto argv = h.builder.argvs()[0];
  CHECK(std::count(argv.begin(), argv.end(), "org.opencontainers.image.base.name=registry.example.com/hub/library/alpine:3.20") == 1);
  CHECK(std::count(argv.begin(), argv.end(), "org.opencontainers.image.base.digest=" + k_mirror_digest) == 1);
}

TEST_CASE("build: a mirror whose digest the delivery does not give is built from as it stands, and says so",
          "[unit][triggers][build]") {
  Harness h;
  h.ws.dockerfile("FROM registry.example.com/hub/library/alpine:3.20 AS runtime\n");
  json c = change("docker.io/library/alpine:3.20", k_alpine_new);
  c["mirror"] = {{"ref", "registry.example.com/hub/library/alpine:3.20"}, {"digest", ""}};
  auto out = h.trigger().deliver(delivery("d_04b", json::array({c})));
  REQUIRE(out.delivered);
  CHECK(h.builder.seen[0].dockerfile == "FROM registry.example.com/hub/library/alpine:3.20 AS runtime\n");
  CHECK(slurp(h.ws.logs() + "/d_04b.1.log").find("basewatch: note: the delivery does not say what "
                                                  "registry.example.com/hub/library/alpine:3.20 holds; built from it as it stands\n") !=
        std::string::npos);
  c["mirror"]["digest"] = "sha256:nope";
  auto bad = h.trigger().deliver(delivery("d_04c", json::array({c})));
  CHECK_FALSE(bad.retryable);
  CHECK(bad.error == "delivery d_04c: a change's mirror lacks ref, or its digest is not one");
}

TEST_CASE("build: registries: credentials in a private auth file, plain HTTP and CAs for this build's registries only",
          "[unit][triggers][build]") {
  Harness h;
  h.ws.dockerfile("FROM mirror.test:5000/hub/alpine:3.20\nCOPY --from=ghcr.io/org/tools:1 /bin/t /bin/t\n");
  h.project->target.clear();
  config::RegistryConfig mirror;
  mirror.host = "mirror.test:5000";
  mirror.username = "puller";
  mirror.password = "pull-secret-1";
  mirror.insecure = true;
  config::RegistryConfig push;
  push.host = "registry.example.com";
  push.username = "ci-bot";
  push.password = "push-secret-2";
  push.ca_file = (h.ws.root / "ca.pem").string();
  std::ofstream(push.ca_file) << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  config::RegistryConfig unrelated;
  unrelated.host = "quay.io";
  unrelated.username = "other";
  unrelated.password = "other-secret-3";
  std::string docker_config = (h.ws.root / "docker-config.json").string();
  std::ofstream(docker_config) << json{{"auths", {{"ghcr.io", {{"auth", base64_encode("octo:ghp_token4")}}}}}}.dump();
  config::RegistryConfig ghcr;
  ghcr.host = "ghcr.io";
  ghcr.docker_config = docker_config;
  h.registries = {{mirror.host, mirror}, {push.host, push}, {unrelated.host, unrelated}, {ghcr.host, ghcr}};

  auto out = h.trigger().deliver(delivery("d_05", json::array({change("mirror.test:5000/hub/alpine:3.20", k_alpine_new)})));
  INFO(out.error);
  REQUIRE(out.delivered);
  auto& build = h.builder.seen[0];
  auto& pushing = h.builder.seen[1];
  std::string authfile = arg_after(build.spec.argv, "--authfile");
  CHECK(fs::path(authfile).filename() == "auth.json");
  CHECK(arg_after(pushing.spec.argv, "--authfile") == authfile);
  CHECK(build.auth_mode == 0600);
  CHECK(json::parse(build.authfile) == json{{"auths",
                                             {{"ghcr.io", {{"auth", base64_encode("octo:ghp_token4")}}},
                                              {"mirror.test:5000", {{"auth", base64_encode("puller:pull-secret-1")}}},
                                              {"registry.example.com", {{"auth", base64_encode("ci-bot:push-secret-2")}}}}}});
  std::string certs = arg_after(build.spec.argv, "--cert-dir");
  CHECK(arg_after(pushing.spec.argv, "--cert-dir") == certs);
  // The mirror is on plain HTTP: a registries.conf says so for the build;
  // the push goes to a TLS registry, so no --tls-verify=false.
  std::map<std::string, std::string> env(build.spec.env.begin(), build.spec.env.end());
  CHECK(fs::path(env["CONTAINERS_REGISTRIES_CONF"]).filename() == "registries.conf");
  CHECK(build.registries_conf.find("[[registry]]\nlocation = \"mirror.test:5000\"\ninsecure = true\n") != std::string::npos);
  CHECK(build.registries_conf.find("registry.example.com") == std::string::npos);
  CHECK(std::count(pushing.spec.argv.begin(), pushing.spec.argv.end(), "--tls-verify=false") == 0);
  CHECK_FALSE(fs::exists(authfile));  // removed with its folder

  // No secret in the log or the attempt.
  std::string log = slurp(h.ws.logs() + "/d_05.1.log");
  for (const char* secret : {"pull-secret-1", "push-secret-2", "other-secret-3", "ghp_token4"}) {
    CHECK(log.find(secret) == std::string::npos);
    CHECK(out.output_tail.find(secret) == std::string::npos);
  }
  CHECK(log.find("basewatch: credentials for ghcr.io, mirror.test:5000, registry.example.com from registries: (a private auth file)\n") !=
        std::string::npos);
}

TEST_CASE("build: a push to a plain-HTTP registry gets --tls-verify=false; no credentials, no --authfile", "[unit][triggers][build]") {
  Harness h;
  h.ws.dockerfile("FROM alpine:3.20 AS runtime\n");
  h.project->image = "127.0.0.1:5000/app/web:latest";
  config::RegistryConfig local;
  local.host = "127.0.0.1:5000";
  local.insecure = true;
  h.registries = {{local.host, local}};
  auto out = h.trigger().deliver(delivery("d_06", json::array({change("docker.io/library/alpine:3.20", k_alpine_new)})));
  REQUIRE(out.delivered);
  auto argvs = h.builder.argvs();
  CHECK(arg_after(argvs[0], "--authfile").empty());
  CHECK(argvs[1] == std::vector<std::string>{"buildah", "push", "--tls-verify=false", "--digestfile", arg_after(argvs[1], "--digestfile"),
                                             "localhost/basewatch-build:d_06-1", "docker://127.0.0.1:5000/app/web:latest"});
}

TEST_CASE("build: push: false builds and keeps the image under its name, pushing nothing", "[unit][triggers][build]") {
  Harness h;
  h.ws.dockerfile("FROM alpine:3.20 AS runtime\n");
  h.cfg.push = false;
  auto out = h.trigger().deliver(delivery("d_07", json::array({change("docker.io/library/alpine:3.20", k_alpine_new)})));
  REQUIRE(out.delivered);
  CHECK(out.pushed_digest.empty());
  CHECK(h.pushed.empty());
  auto argvs = h.builder.argvs();
  REQUIRE(argvs.size() == 3);
  CHECK(argvs[1] == std::vector<std::string>{"buildah", "tag", "localhost/basewatch-build:d_07-1", "registry.example.com/app/web:latest"});
  CHECK(argvs[2] == std::vector<std::string>{"buildah", "rmi", "localhost/basewatch-build:d_07-1"});
}

TEST_CASE("build: failures become outcomes with the builder's words and the log", "[unit][triggers][build]") {
  Harness h;
  h.ws.dockerfile("FROM alpine:3.20 AS runtime\nRUN false\n");
  auto changes = json::array({change("docker.io/library/alpine:3.20", k_alpine_new)});
  std::string log = h.ws.logs() + "/d_08.1.log";

  SECTION("the Dockerfile does not build: exit status, the builder's error, nothing to clean up") {
    h.builder.fail_on = "build";
    h.builder.fail_output = "STEP 2/2: RUN false\nError: building at STEP \"RUN false\": exit status 1\n";
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK_FALSE(out.delivered);
    CHECK(out.retryable);
    CHECK(out.status == 1);
    CHECK(out.error == "buildah build linux/amd64: exit status 1: Error: building at STEP \"RUN false\": exit status 1 (log: " + log + ")");
    CHECK(h.builder.argvs().size() == 1);  // no push, and no rmi of an image never made
    CHECK(out.output_tail.find("STEP 2/2: RUN false\n") != std::string::npos);
    CHECK(h.pushed.empty());
  }
  SECTION("the registry refuses the push: its words, and the local image cleaned up") {
    h.builder.fail_on = "push";
    h.builder.code = 125;
    h.builder.fail_output = "Error: pushing image \"localhost/basewatch-build:d_08-1\" to \"docker://registry.example.com/app/web:latest\": "
                            "unauthorized: authentication required\n";
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK(out.status == 125);
    CHECK(out.error == "buildah push: exit status 125: " + h.builder.fail_output.substr(0, h.builder.fail_output.size() - 1) +
                           " (log: " + log + ")");
    REQUIRE(h.builder.argvs().size() == 3);
    CHECK(h.builder.argvs()[2][1] == "rmi");
  }
  SECTION("a push that exits 0 without a digest is not taken for a push") {
    h.builder.write_digest = false;
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK_FALSE(out.delivered);
    CHECK(out.error == "buildah push exited 0 but wrote no digest to --digestfile: the image may not have been pushed (log: " + log + ")");
    CHECK(h.pushed.empty());
  }
  SECTION("the builder cannot be started") {
    triggers::FakeProcessRunner missing([](const triggers::ProcessSpec&) -> Result<triggers::ProcessResult> {
      return make_error(ErrorKind::io, "cannot run \"buildah\": No such file or directory");
    });
    triggers::Seams s;
    s.runner = &missing;
    s.build_logs = h.ws.logs();
    s.build_project = [&](const std::string&) { return h.project; };
    auto out = triggers::BuildTrigger(h.cfg, s).deliver(delivery("d_08", changes));
    CHECK_FALSE(out.delivered);
    CHECK(out.error == "buildah build linux/amd64: cannot run \"buildah\": No such file or directory");
  }
  SECTION("the build context vanished") {
    fs::remove_all(h.ws.root / "web" / "ctx");
    h.project->context = (h.ws.root / "web" / "ctx").string();
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK(out.error == "the build context " + h.project->context + " does not exist (log: " + log + ")");
    CHECK(out.retryable);
    CHECK(h.builder.seen.empty());
    CHECK(slurp(log).find("basewatch: error: the build context " + h.project->context + " does not exist\n") != std::string::npos);
  }
  SECTION("the Dockerfile vanished") {
    fs::remove(h.ws.root / "web" / "Dockerfile");
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK(out.error.rfind("cannot read the Dockerfile: " + h.project->dockerfile + ": ", 0) == 0);
    CHECK(h.builder.seen.empty());
  }
  SECTION("a Dockerfile that no longer parses") {
    h.ws.dockerfile("FROM alpine:3.20 AS runtime\nFROM\n");
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK(out.error == "cannot pin the bases: " + h.project->dockerfile + ":2: FROM requires either one or three arguments (log: " + log + ")");
  }
  SECTION("a project that is not configured (any more)") {
    h.project.reset();
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK(out.error == "project \"web\" is not configured: a build trigger builds a project's Dockerfile (log: " + log + ")");
    CHECK(out.retryable);  // a reload may bring it back
  }
  SECTION("a stored body that is not a delivery is not retried") {
    auto d = delivery("d_08", changes);
    d.payload = "not json";
    auto out = h.trigger().deliver(d);
    CHECK_FALSE(out.retryable);
    CHECK(out.error == "delivery d_08: the stored payload is not a JSON object");
  }
  SECTION("the time runs out between steps") {
    h.cfg.timeout = Millis(0);
    auto out = h.trigger().deliver(delivery("d_08", changes));
    CHECK(out.error == "buildah build linux/amd64: timed out after 0s; the process group was killed (log: " + log + ")");
    CHECK(h.builder.seen.empty());
  }
}

TEST_CASE("build: the auth file, registries.conf and the builder's error line", "[unit][triggers][build]") {
  CHECK(json::parse(triggers::auth_file_json({{"a.test", "u", "p", ""}, {"b.test", "", "", "refresh-token"}})) ==
        json{{"auths", {{"a.test", {{"auth", base64_encode("u:p")}}}, {"b.test", {{"identitytoken", "refresh-token"}}}}}});
  CHECK(triggers::registries_conf_text("", {"127.0.0.1:5000"}) ==
        "# Written by basewatch for one build: registries on plain HTTP (registries.<host>.insecure).\n"
        "[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n");
  // The system's settings are kept; a registry it already names is left to it.
  std::string system = "unqualified-search-registries = [\"docker.io\"]\n[[registry]]\nlocation = \"a.test\"\ninsecure = true\n";
  CHECK(triggers::registries_conf_text(system, {"a.test", "b.test"}) ==
        system + "# Written by basewatch for one build: registries on plain HTTP (registries.<host>.insecure).\n"
                 "[[registry]]\nlocation = \"b.test\"\ninsecure = true\n");
  // v1 tables cannot be mixed with [[registry]]: left out.
  CHECK(triggers::registries_conf_text("[registries.search]\nregistries = ['docker.io']\n", {"b.test"}) ==
        "# Written by basewatch for one build: registries on plain HTTP (registries.<host>.insecure).\n"
        "[[registry]]\nlocation = \"b.test\"\ninsecure = true\n");
  CHECK(triggers::builder_error("STEP 1\nError: first\nmore\nError: the last one\n\n") == "Error: the last one");
  CHECK(triggers::builder_error("all fine\n").empty());
  std::string long_line = "Error: " + std::string(400, 'x') + ": authentication required";
  std::string shortened = triggers::builder_error(long_line);
  CHECK(shortened.size() == 300);
  CHECK(shortened.rfind("Error: xxx", 0) == 0);
  CHECK(shortened.find(" ... ") == 100);
  CHECK(shortened.substr(shortened.size() - 25) == ": authentication required");
  CHECK(triggers::builder_error("Error: reusing blob sha256:" + std::string(64, 'a') + " at destination: unauthorized\n") ==
        "Error: reusing blob sha256:aaaaaaaaaaaa... at destination: unauthorized");
}

TEST_CASE("config: type build keys, defaults and errors to the letter", "[unit][triggers][build][config]") {
  auto cfg = config::parse(
      "projects: [{name: web, dockerfile: /srv/web/Dockerfile, image: registry.example.com/web:1, triggers: [rebuild]}]\n"
      "triggers:\n"
      "  rebuild: {type: build}\n"
      "  podman: {type: build, builder: podman, push: false, args: [--layers, --jobs=2], timeout: 1h}\n",
      "/etc/bw/config.yaml");
  REQUIRE(cfg.ok());
  const auto& a = cfg->triggers.at("rebuild");
  CHECK(a.builder == "buildah");
  CHECK(a.push);
  CHECK(a.args.empty());
  CHECK(a.timeout == Millis(30 * 60'000));
  const auto& b = cfg->triggers.at("podman");
  CHECK(b.builder == "podman");
  CHECK_FALSE(b.push);
  CHECK(b.args == std::vector<std::string>{"--layers", "--jobs=2"});
  CHECK(b.timeout == Millis(3'600'000));
  CHECK(b.builder_mark.str() == "/etc/bw/config.yaml:4:34");

  auto bad = config::parse("projects: [{dockerfile: /x/Dockerfile}]\ntriggers:\n  b: {type: build, builder: docker}\n", "c.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "c.yaml:3:29: triggers.b.builder: expected buildah or podman, got \"docker\"");
  auto unknown = config::parse("projects: [{dockerfile: /x/Dockerfile}]\ntriggers:\n  b: {type: build, command: [x]}\n", "c.yaml");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message == "c.yaml:3:20: triggers.b: unknown key \"command\" (expected one of: type, builder, push, args, timeout)");
}

TEST_CASE("config check refuses what a build cannot do, naming the place", "[unit][triggers][build][config]") {
  auto cfg = config::parse(
      "projects:\n"
      "  - {name: web, dockerfile: /srv/web/Dockerfile, triggers: [rebuild]}\n"
      "  - {name: api, dockerfile: /srv/api/Dockerfile, image: \"Registry.Example.com/API:1\", triggers: [rebuild]}\n"
      "  - {name: pinned, dockerfile: /srv/p/Dockerfile, image: \"r.test/p@sha256:" + std::string(64, 'a') + "\", triggers: [rebuild]}\n"
      "  - {name: many, dockerfiles: \"/srv/svc/*/Dockerfile\", image: r.test/svc:1, triggers: [rebuild]}\n"
      "  - {name: fine, dockerfile: /srv/f/Dockerfile, image: r.test/f:1, triggers: [rebuild, local]}\n"
      "  - {name: local-only, dockerfile: /srv/l/Dockerfile, triggers: [local]}\n"
      "watch:\n"
      "  - {ref: alpine:3.20, triggers: [rebuild]}\n"
      "triggers:\n"
      "  rebuild: {type: build}\n"
      "  local: {type: build, builder: podman, push: false}\n",
      "/etc/bw/config.yaml");
  REQUIRE(cfg.ok());
  auto problems = triggers::check_builds(*cfg, [](const std::string& program) { return program == "buildah"; });
  CHECK(problems == std::vector<std::string>{
                        "/etc/bw/config.yaml:12:33: triggers.local.builder: podman is not installed (not found on PATH); install it, "
                        "or set builder: to one that is",
                        "/etc/bw/config.yaml:2:5: projects[0]: trigger \"rebuild\" builds and pushes (push: true), but the project "
                        "has no image: to push to",
                        "/etc/bw/config.yaml:3:57: projects[1].image: invalid reference \"Registry.Example.com/API:1\": repository "
                        "name must be lowercase",
                        "/etc/bw/config.yaml:4:58: projects[2].image: \"r.test/p@sha256:" + std::string(64, 'a') +
                            "\" names a digest; trigger \"rebuild\" pushes to a tag",
                        "/etc/bw/config.yaml:5:63: projects[3].image: every Dockerfile of the dockerfiles: glob would be built and "
                        "pushed to this one image; give each its own project, or push: false",
                        "/etc/bw/config.yaml:9:5: watch[0].triggers: trigger \"rebuild\" is a build: it builds a project's "
                        "Dockerfile, and a watch: entry has none"});
  CHECK(triggers::check_builds(*cfg, [](const std::string&) { return true; }).size() == 5);
}

TEST_CASE("program_on_path finds executables on a PATH value", "[unit][triggers][build]") {
  Workspace ws;
  std::string bin = (ws.root / "bin").string();
  fs::create_directories(bin);
  std::ofstream(bin + "/buildah") << "#!/bin/sh\n";
  fs::permissions(bin + "/buildah", fs::perms::owner_all);
  std::ofstream(bin + "/podman") << "not executable\n";
  CHECK(triggers::program_on_path("buildah", "/nonexistent:" + bin));
  CHECK_FALSE(triggers::program_on_path("podman", bin));
  CHECK_FALSE(triggers::program_on_path("buildah", "/nonexistent"));
  CHECK(triggers::program_on_path(bin + "/buildah", ""));
}

TEST_CASE("the dispatcher runs build triggers as builds: the attempt keeps the exit code, the pushed digest and the tail; "
          "failures are retried, then dead",
          "[unit][triggers][build][dispatcher]") {
  Harness h;
  h.ws.dockerfile("FROM alpine:3.20 AS runtime\n");
  auto store = std::move(db::Store::open(":memory:").value());
  triggers::Dispatcher dispatcher(*store, h.clock, 4, 1);
  std::map<std::string, std::unique_ptr<triggers::Trigger>> ts;
  ts["rebuild"] = std::make_unique<triggers::BuildTrigger>(h.trigger());
  dispatcher.set_triggers(std::move(ts), triggers::RetryPolicy{2, Millis(5000), Millis(60'000), 0.0});
  auto changes = json::array({change("docker.io/library/alpine:3.20", k_alpine_new)});
  for (const char* id : {"d_a", "d_b"}) {
    auto d = delivery(id, changes);
    d.created_at = d.next_attempt_at = to_unix_ms(h.clock.now());
    REQUIRE(store->add_delivery(d).ok());
  }
  auto run_all = [&] {
    triggers::DispatchStats total;
    for (int i = 0; i < 3; ++i) {
      total += dispatcher.dispatch_once(h.clock.now());
      total += dispatcher.wait_builds();
    }
    return total;
  };

  // First attempts: the Dockerfile does not build. Retried.
  h.builder.fail_on = "build";
  h.builder.code = 2;
  h.builder.fail_output = "Error: building at STEP \"RUN make\": exit status 2\n";
  auto first = run_all();
  CHECK(first.builds_started == 2);
  CHECK(first.failed == 2);
  auto a1 = store->list_attempts("d_a").value();
  REQUIRE(a1.size() == 1);
  CHECK(a1[0].status == 2);
  CHECK(a1[0].pushed_digest.empty());
  CHECK(a1[0].error == "buildah build linux/amd64: exit status 2: Error: building at STEP \"RUN make\": exit status 2 (log: " +
                           h.ws.logs() + "/d_a.1.log)");
  CHECK(a1[0].output_tail.find("Error: building at STEP \"RUN make\": exit status 2\n") != std::string::npos);
  CHECK(store->get_delivery("d_a").value()->state == db::DeliveryState::failed);

  // Second attempts: the context is gone. max_attempts is 2: dead.
  h.builder.fail_on.clear();
  h.clock.advance(Millis(10'000));
  fs::rename(h.ws.root / "web", h.ws.root / "web-moved");
  auto second = run_all();
  fs::rename(h.ws.root / "web-moved", h.ws.root / "web");
  CHECK(second.dead == 2);
  for (const char* id : {"d_a", "d_b"}) {
    auto d = store->get_delivery(id).value();
    REQUIRE(d);
    CHECK(d->state == db::DeliveryState::dead);
    CHECK(d->attempts == 2);
    CHECK(d->last_error.rfind("cannot read the Dockerfile: ", 0) == 0);  // the project's folder went with it
  }

  // Fixed, and redelivered: it pushes, and the attempt has the digest.
  REQUIRE(store->requeue("d_a", to_unix_ms(h.clock.now())).ok());
  auto third = run_all();
  CHECK(third.delivered == 1);
  auto a3 = store->list_attempts("d_a").value();
  REQUIRE(a3.size() == 3);
  CHECK(a3[2].status == 0);
  CHECK(a3[2].error.empty());
  CHECK(a3[2].pushed_digest == k_pushed);
  CHECK(store->get_delivery("d_a").value()->state == db::DeliveryState::delivered);
}
