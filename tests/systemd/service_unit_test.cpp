// The in-process pieces of the service: the STATUS= line, JSON log escaping,
// and the Dockerfile rescans (stale_reason, a broken file keeping its bases).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "app/logging.h"
#include "app/service.h"
#include "config/config.h"
#include "tests/support/support.h"
#include "watcher/model.h"

using bw::testing::TempDir;

namespace {

bw::config::Config project_config(const TempDir& dir, const std::string& body) {
  auto cfg = bw::config::parse("database: ':memory:'\n" + body, dir.path() + "/config.yaml");
  REQUIRE(cfg);
  return *cfg;
}

std::vector<std::string> watched(const bw::watcher::Model& m) {
  std::vector<std::string> out;
  for (const auto& [ref, item] : m.items) out.push_back(ref);
  return out;
}

}  // namespace

TEST_CASE("STATUS= says references, last poll and pending deliveries in one line", "[systemd][unit]") {
  CHECK(bw::app::status_line(0, bw::from_unix_ms(0), 0, 0) ==
        "watching 0 references, not polled yet, 0 pending deliveries");
  CHECK(bw::app::status_line(1, bw::from_unix_ms(1'795'867'200'000), 1, 0) ==
        "watching 1 reference, last poll " + bw::format_rfc3339(bw::from_unix_ms(1'795'867'200'000)) +
            ", 1 pending delivery");
  CHECK(bw::app::status_line(12, bw::from_unix_ms(1'795'867'200'000), 3, 2).ends_with(
        ", 3 pending deliveries, 2 Dockerfile errors"));
  CHECK(bw::app::status_line(2, bw::from_unix_ms(0), 0, 1) ==
        "watching 2 references, not polled yet, 0 pending deliveries, 1 Dockerfile error");
}

TEST_CASE("JSON log messages escape quotes, control characters and bytes that are not UTF-8", "[systemd][unit]") {
  CHECK(bw::app::json_escape("plain") == "plain");
  CHECK(bw::app::json_escape("a \"quoted\" \\ path\n\ttab\r") == "a \\\"quoted\\\" \\\\ path\\n\\ttab\\r");
  CHECK(bw::app::json_escape(std::string("\x01\x1f\x7f", 3)) == "\\u0001\\u001f\\u007f");
  CHECK(bw::app::json_escape("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb3") == "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb3");
  CHECK(bw::app::json_escape("bad \xff byte") == "bad \\ufffd byte");
  CHECK(bw::app::json_escape("cut \xe2\x9c") == "cut \\ufffd\\ufffd");
  CHECK(bw::app::json_escape("overlong \xc0\xaf") == "overlong \\ufffd\\ufffd");
  CHECK(bw::app::json_escape("surrogate \xed\xa0\x80") == "surrogate \\ufffd\\ufffd\\ufffd");
  // Whatever the bytes, the line parses.
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  auto parsed = nlohmann::json::parse("\"" + bw::app::json_escape(all) + "\"", nullptr, false);
  REQUIRE(!parsed.is_discarded());
  CHECK(parsed.get<std::string>().size() > 128);
}

TEST_CASE("stale_reason notices an edited Dockerfile by content, not by its stat", "[systemd][unit]") {
  TempDir dir("bw-rescan");
  std::string file = dir.write("web/Dockerfile", "FROM alpine:3.20\n");
  auto cfg = project_config(dir, "projects:\n  - name: web\n    dockerfile: web/Dockerfile\n");
  auto model = bw::watcher::build_model(cfg);
  REQUIRE(model);
  CHECK(bw::watcher::stale_reason(*model) == "");
  REQUIRE(model->sources.size() == 1);
  CHECK(model->sources[0].path == file);
  CHECK(model->sources[0].size == 17);

  // Same content written again: the stat moves, the hash does not.
  dir.write("web/Dockerfile", "FROM alpine:3.20\n");
  CHECK(bw::watcher::stale_reason(*model) == "");
  // Same size, other content, at once: caught although the mtime may not move.
  dir.write("web/Dockerfile", "FROM alpine:3.21\n");
  CHECK(bw::watcher::stale_reason(*model) == file + " changed");

  auto rebuilt = bw::watcher::build_model(cfg, &*model);
  REQUIRE(rebuilt);
  CHECK(watched(*rebuilt) == std::vector<std::string>{"docker.io/library/alpine:3.21"});
  CHECK(bw::watcher::stale_reason(*rebuilt) == "");

  std::filesystem::remove(file);
  CHECK(bw::watcher::stale_reason(*rebuilt) == file + " went away");
  auto gone = bw::watcher::build_model(cfg, &*rebuilt);
  REQUIRE(gone);
  dir.write("web/Dockerfile", "FROM debian:12\n");
  CHECK(bw::watcher::stale_reason(*gone) == file + " appeared");
}

TEST_CASE("stale_reason notices a dockerfiles: glob that matches other files", "[systemd][unit]") {
  TempDir dir("bw-rescan");
  dir.write("services/web/Dockerfile", "FROM alpine:3.20\n");
  auto cfg = project_config(dir, "projects:\n  - dockerfiles: services/*/Dockerfile\n");
  auto model = bw::watcher::build_model(cfg);
  REQUIRE(model);
  CHECK(bw::watcher::stale_reason(*model) == "");
  dir.write("services/api/Dockerfile", "FROM debian:12\n");
  std::string pattern = dir.path() + "/services/*/Dockerfile";
  CHECK(bw::watcher::stale_reason(*model) == "dockerfiles: " + pattern + " matches other files");
  auto rebuilt = bw::watcher::build_model(cfg, &*model);
  REQUIRE(rebuilt);
  CHECK(watched(*rebuilt) == std::vector<std::string>{"docker.io/library/alpine:3.20", "docker.io/library/debian:12"});
  REQUIRE(rebuilt->items.count("docker.io/library/debian:12") == 1);
  CHECK(rebuilt->items.at("docker.io/library/debian:12").projects == std::set<std::string>{"api"});
  CHECK(bw::watcher::stale_reason(*rebuilt) == "");
}

TEST_CASE("a Dockerfile caught half-edited keeps the bases it had, and its error is reported", "[systemd][unit]") {
  TempDir dir("bw-rescan");
  dir.write("web/Dockerfile", "FROM alpine:3.20\n");
  auto cfg = project_config(dir, "projects:\n  - name: web\n    dockerfile: web/Dockerfile\n");
  auto model = bw::watcher::build_model(cfg);
  REQUIRE(model);
  dir.write("web/Dockerfile", "FROM alpine:3.20 AS\n");  // no stage name yet
  auto broken = bw::watcher::build_model(cfg, &*model);
  REQUIRE(broken);
  REQUIRE(broken->errors.size() == 1);
  CHECK(broken->errors[0].rfind(dir.path() + "/web/Dockerfile:1", 0) == 0);
  CHECK(watched(*broken) == std::vector<std::string>{"docker.io/library/alpine:3.20"});
  // Without a previous model (the first start) there is nothing to keep.
  auto fresh = bw::watcher::build_model(cfg);
  REQUIRE(fresh);
  CHECK(fresh->items.empty());
}
