// The unit and its snippets, checked by systemd's own tools (offline: no
// running systemd needed): systemd-analyze verify, the security exposure
// score, systemd-sysusers and systemd-tmpfiles on a scratch root.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/support.h"

using namespace bw::testing;
namespace fs = std::filesystem;

namespace {

std::string source(const std::string& rel) { return std::string(BASEWATCH_SOURCE_DIR) + "/" + rel; }

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A copy of the unit whose ExecStart names the binary under test (verify
// checks that the program exists), under `dir` with the name `name`.
std::string unit_copy(const TempDir& dir, const std::string& name) {
  std::string text = slurp(source("systemd/basewatch.service"));
  REQUIRE(text.find("ExecStart=/usr/bin/basewatch serve -c /etc/basewatch/config.yaml\n") != std::string::npos);
  text = std::regex_replace(text, std::regex("/usr/bin/basewatch"), BASEWATCH_BINARY);
  return dir.write(name, text);
}

double exposure(const std::string& unit_path) {
  auto r = run({"systemd-analyze", "security", "--offline=true", "--no-pager", unit_path});
  INFO(r.output << r.errors);
  std::smatch m;
  std::string all = r.output + r.errors;
  REQUIRE(std::regex_search(all, m, std::regex(R"(Overall exposure level for \S+: (\d+\.\d))")));
  return std::stod(m[1]);
}

}  // namespace

TEST_CASE("the unit passes systemd-analyze verify, alone and with the builds drop-in", "[integration][systemd]") {
  TempDir dir("bw-unit");
  std::string unit = unit_copy(dir, "basewatch.service");
  auto r = run({"systemd-analyze", "verify", "--man=no", unit});
  INFO(r.output << r.errors);
  CHECK(r.status == 0);
  CHECK(r.errors == "");  // verify exits 0 on settings it ignores; it says so on stderr
  CHECK(r.output == "");

  fs::create_directories(dir.path() + "/basewatch.service.d");
  fs::copy_file(source("systemd/basewatch-builds.conf.example"), dir.path() + "/basewatch.service.d/builds.conf");
  auto with_dropin = run({"systemd-analyze", "verify", "--man=no", unit});
  INFO(with_dropin.output << with_dropin.errors);
  CHECK(with_dropin.status == 0);
  CHECK(with_dropin.errors == "");

  // The check can fail: a misspelt setting is reported.
  std::string bad = dir.write("bad.service", std::regex_replace(slurp(unit), std::regex("Type=notify"), "Type=notifyy"));
  auto bad_r = run({"systemd-analyze", "verify", "--man=no", bad});
  CHECK(bad_r.errors.find("Failed to parse service type, ignoring: notifyy") != std::string::npos);
}

TEST_CASE("the unit's security exposure is 1.5 or lower; the builds drop-in costs more", "[integration][systemd]") {
  TempDir dir("bw-unit");
  std::string unit = unit_copy(dir, "basewatch.service");
  double score = exposure(unit);
  WARN("systemd-analyze security --offline=true systemd/basewatch.service: exposure " << score);
  CHECK(score <= 1.5);
  CHECK(score > 0.0);

  fs::create_directories(dir.path() + "/basewatch.service.d");
  fs::copy_file(source("systemd/basewatch-builds.conf.example"), dir.path() + "/basewatch.service.d/builds.conf");
  double with_builds = exposure(unit);
  WARN("with basewatch-builds.conf.example: exposure " << with_builds);
  CHECK(with_builds > score);
  CHECK(with_builds < 5.0);  // still not "EXPOSED"
}

TEST_CASE("the unit has the settings the service relies on", "[integration][systemd]") {
  std::string text = slurp(source("systemd/basewatch.service"));
  for (const char* line : {"Type=notify\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "Restart=on-failure\n",
                           "StateDirectory=basewatch\n", "ConfigurationDirectory=basewatch\n", "User=basewatch\n",
                           "ProtectSystem=strict\n", "NoNewPrivileges=yes\n", "CapabilityBoundingSet=\n",
                           "SystemCallFilter=@system-service\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n",
                           "MemoryDenyWriteExecute=yes\n", "SystemCallArchitectures=native\n"}) {
    CHECK(text.find(line) != std::string::npos);
  }
  std::smatch wd, stop, timeout;
  REQUIRE(std::regex_search(text, wd, std::regex(R"(\nWatchdogSec=(\d+)s\n)")));
  REQUIRE(std::regex_search(text, stop, std::regex(R"(\nEnvironment=BASEWATCH_STOP_TIMEOUT=(\d+)\n)")));
  REQUIRE(std::regex_search(text, timeout, std::regex(R"(\nTimeoutStopSec=(\d+)s\n)")));
  // The service parks its work before systemd would SIGKILL it.
  CHECK(std::stoi(stop[1]) < std::stoi(timeout[1]));
  CHECK(std::stoi(wd[1]) >= 10);
}

TEST_CASE("the sysusers.d and tmpfiles.d snippets make the user and the folders", "[integration][systemd]") {
  TempDir root("bw-root");
  fs::create_directories(root.path() + "/etc");
  fs::create_directories(root.path() + "/usr/lib/sysusers.d");
  fs::create_directories(root.path() + "/usr/lib/tmpfiles.d");
  fs::copy_file(source("systemd/basewatch.sysusers"), root.path() + "/usr/lib/sysusers.d/basewatch.conf");
  fs::copy_file(source("systemd/basewatch.tmpfiles"), root.path() + "/usr/lib/tmpfiles.d/basewatch.conf");
  auto users = run({"systemd-sysusers", "--root=" + root.path(), "basewatch.conf"});
  INFO(users.output << users.errors);
  REQUIRE(users.status == 0);
  std::string passwd = slurp(root.path() + "/etc/passwd");
  CHECK(std::regex_search(passwd, std::regex(R"(^basewatch:x:\d+:\d+:basewatch base image watcher:/var/lib/basewatch:/usr/sbin/nologin$)",
                                             std::regex::multiline)));
  auto files = run({"systemd-tmpfiles", "--root=" + root.path(), "--create", "basewatch.conf"});
  INFO(files.output << files.errors);
  CHECK(files.status == 0);
  auto mode = [&](const std::string& rel) {
    return fs::status(root.path() + rel).permissions() & fs::perms::all;
  };
  CHECK(fs::is_directory(root.path() + "/var/lib/basewatch/builds"));
  CHECK(mode("/var/lib/basewatch") == (fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec));
  CHECK(mode("/etc/basewatch/credentials") == fs::perms::owner_all);
}
