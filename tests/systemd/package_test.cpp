// `cmake --install` and the .deb: what goes where, the conffile, and
// dependencies on Debian's runtime libraries. Slow-ish (strips and
// compresses the binary): about 20 s.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/support/support.h"

using namespace bw::testing;
namespace fs = std::filesystem;

namespace {

const std::set<std::string> k_expected_files = {
    "./etc/basewatch/config.yaml",
    "./usr/bin/basewatch",
    "./usr/lib/systemd/system/basewatch.service",
    "./usr/lib/sysusers.d/basewatch.conf",
    "./usr/lib/tmpfiles.d/basewatch.conf",
    "./usr/share/man/man1/basewatch.1",
    "./usr/share/doc/basewatch/config.yaml.example",
    "./usr/share/doc/basewatch/basewatch-builds.conf.example",
    "./usr/share/doc/basewatch/configuration.md",
    "./usr/share/doc/basewatch/README.md",
};

}  // namespace

TEST_CASE("cmake --install and cpack make a .deb with the service's files and Debian library dependencies",
          "[integration][systemd][package]") {
  TempDir dir("bw-deb");
  std::string stage = dir.path() + "/stage";
  // The staged install CPack packages (its own install step would first
  // build every target of the build tree).
  auto installed = run({"cmake", "--install", BASEWATCH_BUILD_DIR, "--prefix", "/usr", "--strip"}, {{"DESTDIR", stage}},
                       "", std::chrono::seconds(120));
  INFO(installed.output << installed.errors);
  REQUIRE(installed.status == 0);
  CHECK(fs::exists(stage + "/etc/basewatch/config.yaml"));
  CHECK(fs::exists(stage + "/usr/lib/systemd/system/basewatch.service"));

  auto packed = run({"cpack", "--config", std::string(BASEWATCH_BUILD_DIR) + "/CPackConfig.cmake", "-B", dir.path() + "/out",
                     "-D", "CPACK_INSTALL_CMAKE_PROJECTS=", "-D", "CPACK_INSTALLED_DIRECTORIES=" + stage + ";."},
                    {}, "", std::chrono::seconds(180));
  INFO(packed.output << packed.errors);
  REQUIRE(packed.status == 0);
  std::string deb;
  for (const auto& e : fs::directory_iterator(dir.path() + "/out")) {
    if (e.path().extension() == ".deb") deb = e.path().string();
  }
  REQUIRE(!deb.empty());
  CHECK(fs::path(deb).filename().string().rfind("basewatch_", 0) == 0);

  auto listing = run({"dpkg", "-c", deb});
  REQUIRE(listing.status == 0);
  std::set<std::string> files;
  std::istringstream in(listing.output);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.back() == '/') continue;
    files.insert(line.substr(line.rfind(' ') + 1));
  }
  CHECK(files == k_expected_files);
  CHECK(listing.output.find("-rwxr-xr-x root/root") != std::string::npos);

  auto conffiles = run({"dpkg-deb", "--info", deb, "conffiles"});
  CHECK(conffiles.output == "/etc/basewatch/config.yaml\n");
  auto depends = run({"dpkg-deb", "--field", deb, "Depends"});
  REQUIRE(depends.status == 0);
  for (const char* lib : {"libc6", "libsqlite3-0", "libpq5", "libssl3", "libyaml-cpp0.7", "libsystemd0", "libstdc++6", "systemd (>= 250)"}) {
    CHECK(depends.output.find(lib) != std::string::npos);
  }
  auto postinst = run({"dpkg-deb", "--info", deb, "postinst"});
  CHECK(postinst.output.find("systemd-sysusers basewatch.conf") != std::string::npos);
  CHECK(postinst.output.find("systemd-tmpfiles --create basewatch.conf") != std::string::npos);
}

TEST_CASE("cmake --install to another prefix writes a unit that names that prefix, and it verifies",
          "[integration][systemd][package]") {
  TempDir dir("bw-prefix");
  std::string prefix = dir.path() + "/inst";
  auto installed = run({"cmake", "--install", BASEWATCH_BUILD_DIR, "--prefix", prefix, "--strip"}, {}, "",
                       std::chrono::seconds(120));
  INFO(installed.output << installed.errors);
  REQUIRE(installed.status == 0);
  std::string unit = prefix + "/lib/systemd/system/basewatch.service";
  std::ifstream in(unit);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str().find("\nExecStart=" + prefix + "/bin/basewatch serve -c " + prefix + "/etc/basewatch/config.yaml\n") !=
        std::string::npos);
  CHECK(fs::exists(prefix + "/bin/basewatch"));
  CHECK(fs::exists(prefix + "/etc/basewatch/config.yaml"));
  // The installed unit, as systemd would load it.
  auto verified = run({"systemd-analyze", "verify", "--man=no", unit});
  INFO(verified.output << verified.errors);
  CHECK(verified.status == 0);
  CHECK(verified.errors == "");

  // Installing again keeps an edited config.
  { std::ofstream(prefix + "/etc/basewatch/config.yaml") << "# mine\n"; }
  auto again = run({"cmake", "--install", BASEWATCH_BUILD_DIR, "--prefix", prefix}, {}, "", std::chrono::seconds(120));
  REQUIRE(again.status == 0);
  CHECK(again.output.find("Keeping: " + prefix + "/etc/basewatch/config.yaml") != std::string::npos);
  std::ifstream kept(prefix + "/etc/basewatch/config.yaml");
  std::string first;
  std::getline(kept, first);
  CHECK(first == "# mine");
}
