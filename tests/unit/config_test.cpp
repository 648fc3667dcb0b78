#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "util/strings.h"

using namespace bw;

namespace {

std::string parse_error(const std::string& yaml) {
  auto c = config::parse(yaml, "/etc/bw/config.yaml");
  REQUIRE_FALSE(c.ok());
  return c.error().message;
}

const char* k_minimal =
    "projects:\n"
    "  - name: web\n"
    "    dockerfile: /srv/web/Dockerfile\n"
    "    triggers: [ci]\n"
    "triggers:\n"
    "  ci: {type: webhook, url: 'https://ci.example.com/hook'}\n";

}  // namespace

TEST_CASE("a minimal config gets the documented defaults", "[unit][config]") {
  ::unsetenv("STATE_DIRECTORY");
  auto c = config::parse(k_minimal, "/etc/bw/config.yaml");
  REQUIRE(c.ok());
  CHECK(c->database == "./basewatch.db");
  CHECK(c->listen == "127.0.0.1:8780");
  CHECK(c->poll_interval == Millis(15 * 60'000));
  CHECK(c->poll_jitter == Approx(0.10));
  CHECK(c->poll_concurrency == 8);
  CHECK(c->poll_settle == Millis(120'000));
  CHECK(c->default_platforms == std::vector<std::string>{"linux/amd64"});
  CHECK(c->ha_lease == Millis(15'000));
  CHECK(c->retry_max_attempts == 10);
  REQUIRE(c->projects.size() == 1);
  CHECK(c->projects[0].dockerfile == "/srv/web/Dockerfile");
  CHECK(c->triggers.at("ci").timeout == Millis(10'000));
}

TEST_CASE("database defaults to $STATE_DIRECTORY", "[unit][config]") {
  ::setenv("STATE_DIRECTORY", "/var/lib/basewatch:/var/lib/other", 1);
  auto c = config::parse(k_minimal, "/etc/bw/config.yaml");
  ::unsetenv("STATE_DIRECTORY");
  REQUIRE(c.ok());
  CHECK(c->database == "/var/lib/basewatch/basewatch.db");
}

TEST_CASE("relative paths are relative to the config file", "[unit][config]") {
  auto c = config::parse("database: state/bw.db\nprojects: [{name: a, dockerfile: ../web/Dockerfile}]\n", "/etc/bw/config.yaml");
  REQUIRE(c.ok());
  CHECK(c->database == "/etc/bw/state/bw.db");
  CHECK(c->projects[0].dockerfile == "/etc/web/Dockerfile");
}

TEST_CASE("config errors name file:line:column and the key, to the letter", "[unit][config]") {
  CHECK(parse_error("poll:\n  intervall: 5m\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:2:3: poll: unknown key \"intervall\" (did you mean \"interval\"?)");
  CHECK(parse_error("poll:\n  often: 5m\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:2:3: poll: unknown key \"often\" (expected one of: interval, jitter, concurrency, settle)");
  CHECK(parse_error("databse: x.db\n") ==
        "/etc/bw/config.yaml:1:1: unknown key \"databse\" (did you mean \"database\"?)");
  CHECK(parse_error("nonsense: x.db\n") ==
        "/etc/bw/config.yaml:1:1: unknown key \"nonsense\" (expected one of: database, ha, listen, api, log, poll, defaults, "
        "registries, watch, projects, triggers, retry, inbound, builds, mirrors, policy)");
  CHECK(parse_error("triggers: {ci: {type: webhok, url: 'http://x'}}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:1:23: triggers.ci.type: expected one of webhook, command, github, gitlab, build, got \"webhok\" (did you "
        "mean \"webhook\"?)");
  CHECK(parse_error("policy: {allowed_registries: [registry.example.com, \"*corp.example.com\"]}\n") ==
        "/etc/bw/config.yaml:1:53: policy.allowed_registries[1]: invalid host pattern \"*corp.example.com\": '*' stands "
        "only for whole labels at the start (*.example.com)");
  CHECK(parse_error("policy: {allowed_registries: [\"https://r.example.com\"]}\n") ==
        "/etc/bw/config.yaml:1:31: policy.allowed_registries[0]: invalid host pattern \"https://r.example.com\": a pattern "
        "is a host, not a URL (no scheme)");
  CHECK(parse_error("policy: {allowed_registries: [r.example.com/team]}\n") ==
        "/etc/bw/config.yaml:1:31: policy.allowed_registries[0]: invalid host pattern \"r.example.com/team\": a pattern "
        "names registries, not repositories (no /)");
  CHECK(parse_error("policy: {allowed_registries: []}\n") ==
        "/etc/bw/config.yaml:1:30: policy.allowed_registries: the list is empty (leave it out to allow any registry)");
  CHECK(parse_error("policy: {require_mirrors: true}\n") ==
        "/etc/bw/config.yaml:1:10: policy: unknown key \"require_mirrors\" (did you mean \"require_mirror\"?)");
  CHECK(parse_error("poll: {interval: 5 minutes}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:1:18: poll.interval: invalid duration \"5 minutes\": unknown unit \"minutes\" (use ms, s, m, h or d)");
  CHECK(parse_error("poll: {concurrency: many}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:1:21: poll.concurrency: expected a whole number, got \"many\"");
  CHECK(parse_error("poll: {concurrency: 0}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:1:21: poll.concurrency: must be between 1 and 256");
  CHECK(parse_error("poll: {jitter: 150%}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:1:16: poll.jitter: expected a percentage such as 10% (0% to 100%), got \"150%\"");
  CHECK(parse_error("projects:\n  - name: a\n") ==
        "/etc/bw/config.yaml:2:5: projects[0]: exactly one of dockerfile or dockerfiles is required");
  CHECK(parse_error("projects:\n  - name: a\n    dockerfile: /D\n    triggers: [nope]\n") ==
        "/etc/bw/config.yaml:4:15: projects[0].triggers: unknown trigger \"nope\"");
  CHECK(parse_error("projects: [{name: a, dockerfile: /D}]\ntriggers:\n  ci: {type: telegram}\n") ==
        "/etc/bw/config.yaml:3:14: triggers.ci.type: expected one of webhook, command, github, gitlab, build, got \"telegram\"");
  CHECK(parse_error("projects: [{name: a, dockerfile: /D}]\ntriggers:\n  ci: {type: webhook, url: ftp://x}\n") ==
        "/etc/bw/config.yaml:3:28: triggers.ci.url: expected an http:// or https:// URL");
  CHECK(parse_error("projects: [{name: a, dockerfile: /D}]\ntriggers:\n  ci: {type: webhook, url: 'http://x', secret_file: /nonexistent/s}\n") ==
        "/etc/bw/config.yaml:3:53: triggers.ci.secret_file: cannot read secret: /nonexistent/s: No such file or directory");
  CHECK(parse_error("registries:\n  docker.io: {insecure: maybe}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:2:25: registries.docker.io.insecure: expected true or false, got \"maybe\"");
  CHECK(parse_error("defaults: {platforms: [linux]}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:1:24: defaults.platforms: invalid platform \"linux\" (expected os/arch[/variant])");
  CHECK(parse_error("projects: [{name: a, dockerfile: /D}, {name: a, dockerfile: /E}]\n") ==
        "/etc/bw/config.yaml:1:46: projects[1].name: duplicate project name \"a\"");
  CHECK(parse_error("log: {level: loud}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:1:14: log.level: expected one of trace, debug, info, warn, error, got \"loud\"");
  CHECK(parse_error("projects: [unclosed\n") == "/etc/bw/config.yaml:2:1: end of sequence flow not found");
  CHECK(parse_error("") == "/etc/bw/config.yaml:1:1: the config is empty (at least projects: or watch: is needed)");
  {
    // A config with only registries: parses (digest and refs use it); serve and check refuse it.
    auto c = bw::config::parse("listen: 127.0.0.1:1\n", "/etc/bw/config.yaml");
    REQUIRE(c.ok());
    auto st = bw::config::require_something_to_watch(*c);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message == "/etc/bw/config.yaml:1:1: nothing to watch: add projects: (Dockerfiles) or watch: (references)");
  }
  CHECK(parse_error("inbound:\n  - {path: /v1/x, format: distribution}\nprojects: [{name: a, dockerfile: /D}]\n") ==
        "/etc/bw/config.yaml:2:12: inbound[0].path: \"/v1/x\" is taken by the API");
}

TEST_CASE("a PostgreSQL URI is kept as written but its file parameters resolve like paths", "[unit][config]") {
  ::unsetenv("STATE_DIRECTORY");
  auto c = config::parse(std::string("database: \"postgresql://bw@db.example.com:5433/basewatch?sslmode=verify-full"
                                     "&passfile=pg/pass%20file&sslrootcert=/etc/ssl/ca.pem&application_name=x\"\n") +
                             k_minimal,
                         "/etc/bw/config.yaml");
  REQUIRE(c.ok());
  CHECK(c->database == "postgresql://bw@db.example.com:5433/basewatch?sslmode=verify-full&passfile=/etc/bw/pg/pass%20file"
                       "&sslrootcert=/etc/ssl/ca.pem&application_name=x");
  // Build logs have no database folder to sit next to: ./builds, or the state folder.
  CHECK(c->builds_logs == "./builds");
  ::setenv("STATE_DIRECTORY", "/var/lib/basewatch", 1);
  auto state = config::parse(std::string("database: postgres://db/basewatch\n") + k_minimal, "/etc/bw/config.yaml");
  ::unsetenv("STATE_DIRECTORY");
  REQUIRE(state.ok());
  CHECK(state->database == "postgres://db/basewatch");
  CHECK(state->builds_logs == "/var/lib/basewatch/builds");
}

TEST_CASE("a passfile under $CREDENTIALS_DIRECTORY is found there", "[unit][config]") {
  ::setenv("CREDENTIALS_DIRECTORY", "/run/credentials/basewatch.service", 1);
  auto c = config::parse(std::string("database: postgresql://bw@db/basewatch?passfile=$CREDENTIALS_DIRECTORY/pgpass\n") + k_minimal,
                         "/etc/bw/config.yaml");
  ::unsetenv("CREDENTIALS_DIRECTORY");
  REQUIRE(c.ok());
  CHECK(c->database == "postgresql://bw@db/basewatch?passfile=/run/credentials/basewatch.service/pgpass");
}

TEST_CASE("a password written in the database URI is never described", "[unit][config]") {
  auto c = config::parse(std::string("database: postgresql://bw:hunter2@db/basewatch?password=hunter3\n") + k_minimal,
                         "/etc/bw/config.yaml");
  REQUIRE(c.ok());
  CHECK(c->database == "postgresql://bw:hunter2@db/basewatch?password=hunter3");
  std::string d = config::describe(*c);
  CHECK(d.find("database=postgresql://bw:***@db/basewatch?password=*** ") != std::string::npos);
  CHECK(d.find("hunter") == std::string::npos);
}

TEST_CASE("secrets come from *_file with one trailing newline stripped, and are never described", "[unit][config]") {
  auto dir = std::filesystem::temp_directory_path() / ("bwcfg-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "secret") << "hunter2\n";
  std::ofstream(dir / "pw") << "registry-pw\r\n";
  std::string yaml = std::string(k_minimal) +
                     "  gh: {type: github, repository: org/web, token_file: secret}\n"
                     "registries:\n  ghcr.io: {username: bot, password_file: pw}\n";
  auto c = config::parse(yaml, (dir / "config.yaml").string());
  std::filesystem::remove_all(dir);
  REQUIRE(c.ok());
  CHECK(c->triggers.at("gh").token == "hunter2");
  CHECK(c->triggers.at("gh").event_type == "base-image-updated");
  CHECK(c->registries.at("ghcr.io").password == "registry-pw");
  std::string d = config::describe(*c);
  CHECK(d.find("hunter2") == std::string::npos);
  CHECK(d.find("registry-pw") == std::string::npos);
  CHECK(d.find("password=(set)") != std::string::npos);
}

TEST_CASE("a missing config file is an error naming it", "[unit][config]") {
  auto c = config::load("/nonexistent/basewatch.yaml");
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message == "/nonexistent/basewatch.yaml: cannot read config: No such file or directory");
}

TEST_CASE("policy: host patterns are anchored on whole labels", "[unit][config]") {
  auto c = bw::config::parse("policy:\n  require_mirror: true\n  allowed_registries: [Registry.Example.com, \"*.corp.example.com\", "
                             "\"127.0.0.1:5000\", index.docker.io]\n",
                             "c.yaml");
  REQUIRE(c.ok());
  const auto& p = c->policy;
  CHECK(p.require_mirror);
  for (const char* ok : {"registry.example.com", "a.corp.example.com", "x.y.corp.example.com", "127.0.0.1:5000", "docker.io",
                         "A.Corp.Example.com"}) {
    CAPTURE(ok);
    CHECK(p.allows(ok));
  }
  for (const char* bad : {"evilcorp.example.com", "corp.example.com", "a.corp.example.com.attacker.io", "registry.example.com:5000",
                          "127.0.0.1", "127.0.0.1:5001", "ghcr.io", "xregistry.example.com", "a.corp.example.com:443"}) {
    CAPTURE(bad);
    CHECK_FALSE(p.allows(bad));
  }
  CHECK(bw::config::PolicyConfig{}.allows("anything.example"));
}

TEST_CASE("did you mean: the closest name, only when it is close", "[unit][config]") {
  CHECK(bw::closest("cj", {"ci", "gl"}) == "ci");
  CHECK(bw::closest("tagret", {"name", "target"}) == "target");
  CHECK(bw::closest("nope", {"ci", "build-web"}) == "");
  CHECK(bw::closest("ab", {"xy"}) == "");
}

TEST_CASE("ha: the lease of the leader on a PostgreSQL database; with SQLite it is an error", "[unit][config][ha]") {
  const std::string pg = "database: \"postgresql://basewatch@db.example.com/basewatch\"\n";
  auto c = config::parse(pg + "ha: {lease: 2s}\n" + k_minimal, "/etc/bw/config.yaml");
  REQUIRE(c.ok());
  CHECK(c->ha_lease == Millis(2'000));
  CHECK(config::describe(*c).find(" ha.lease=2s") != std::string::npos);
  auto plain = config::parse(pg + k_minimal, "/etc/bw/config.yaml");
  REQUIRE(plain.ok());
  CHECK(plain->ha_lease == Millis(15'000));
  CHECK(config::describe(*plain).find(" ha.lease=15s") != std::string::npos);
  // SQLite: nothing new in the description either.
  auto file = config::parse(k_minimal, "/etc/bw/config.yaml");
  REQUIRE(file.ok());
  CHECK(config::describe(*file).find("ha.") == std::string::npos);

  CHECK(parse_error(std::string("ha: {lease: 2s}\n") + k_minimal) ==
        "/etc/bw/config.yaml:1:1: ha: needs a PostgreSQL database: (a SQLite file serves one instance)");
  CHECK(parse_error(std::string("database: state/bw.db\n\nha:\n  lease: 30s\n") + k_minimal) ==
        "/etc/bw/config.yaml:3:1: ha: needs a PostgreSQL database: (a SQLite file serves one instance)");
  CHECK(parse_error(pg + "ha: {lease: 500ms}\n" + k_minimal) == "/etc/bw/config.yaml:2:13: ha.lease: must be at least 1s");
  CHECK(parse_error(pg + "ha: {lease: soon}\n" + k_minimal).rfind("/etc/bw/config.yaml:2:13: ha.lease: ", 0) == 0);
  CHECK(parse_error(pg + "ha: {leas: 2s}\n" + k_minimal) == "/etc/bw/config.yaml:2:6: ha: unknown key \"leas\" (did you mean \"lease\"?)");
  CHECK(parse_error(pg + "ha: 15s\n" + k_minimal) == "/etc/bw/config.yaml:2:5: ha: expected a mapping");
}
