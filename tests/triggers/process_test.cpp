// RealProcessRunner against real processes: no shell between basewatch and
// the argv, stdin and environment delivered, output captured, the process
// group killed on timeout, a program that cannot start reported as such.
#include <catch2/catch.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>

#include "tests/support/support.h"
#include "triggers/process.h"

using namespace bw;
using bw::testing::TempDir;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("the real runner passes argv verbatim, stdin and env, and captures output", "[integration][process]") {
  TempDir dir("bw-proc");
  triggers::RealProcessRunner runner;
  triggers::ProcessSpec spec;
  // $HOME and ';' reach the program as text: there is no shell in between.
  spec.argv = {"sh", "-c", "cat; echo; echo \"id=$BASEWATCH_DELIVERY_ID arg=$0\"; pwd; echo oops >&2; exit 7", "$HOME;x"};
  spec.env = {{"BASEWATCH_DELIVERY_ID", "d_42"}};
  spec.stdin_data = std::string(200'000, 'p');  // more than a pipe holds
  spec.workdir = dir.path();
  spec.log_path = dir.path() + "/run.log";
  spec.timeout = Millis(20'000);
  auto r = runner.run(spec);
  REQUIRE(r.ok());
  CHECK(r->exit_code == 7);
  CHECK(r->signal == 0);
  CHECK_FALSE(r->timed_out);
  std::string log = slurp(spec.log_path);
  CHECK(log == std::string(200'000, 'p') + "\nid=d_42 arg=$HOME;x\n" + std::filesystem::canonical(dir.path()).string() + "\noops\n");
  CHECK(triggers::read_tail(spec.log_path, 20) == "oops\n");
}

TEST_CASE("a timeout kills the whole process group", "[integration][process]") {
  TempDir dir("bw-proc");
  triggers::RealProcessRunner runner;
  triggers::ProcessSpec spec;
  // The grandchild writes its pid, then everything sleeps far past the timeout.
  spec.argv = {"sh", "-c", "sleep 60 & echo $! > " + dir.path() + "/child.pid; wait"};
  spec.log_path = dir.path() + "/run.log";
  spec.timeout = Millis(300);
  auto r = runner.run(spec);
  REQUIRE(r.ok());
  CHECK(r->timed_out);
  CHECK(r->signal == SIGTERM);
  CHECK(r->exit_code == 128 + SIGTERM);
  CHECK(r->duration < Millis(10'000));
  pid_t grandchild = std::stoi(slurp(dir.path() + "/child.pid"));
  // Gone (or a zombie about to be reaped by init), not sleeping on.
  CHECK(bw::testing::wait_until(
      [&] {
        std::ifstream st("/proc/" + std::to_string(grandchild) + "/stat");
        std::string pid, comm, state;
        return !(st >> pid >> comm >> state) || state == "Z";
      },
      std::chrono::seconds(5)));
}

TEST_CASE("a program that cannot start is an error, not an exit code", "[integration][process]") {
  TempDir dir("bw-proc");
  triggers::RealProcessRunner runner;
  triggers::ProcessSpec spec;
  spec.argv = {"no-such-builder-xyz", "bud"};
  spec.log_path = dir.path() + "/run.log";
  auto r = runner.run(spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "cannot run \"no-such-builder-xyz\": No such file or directory");
  spec.argv = {"true"};
  spec.workdir = dir.path() + "/missing";
  r = runner.run(spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "working directory " + dir.path() + "/missing: No such file or directory");
  spec.workdir.clear();
  spec.log_path = dir.path() + "/no/such/folder/run.log";
  r = runner.run(spec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "cannot create build log " + spec.log_path + ": No such file or directory");
}
