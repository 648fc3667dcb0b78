// docker config.json lookups and credential helpers: the rules of
// docs/registry-protocol.md ("Authentication"), with a fake runner for the
// lookup rules (the real runner is tested in registry_integration_test).
#include <catch2/catch.hpp>

#include <map>
#include <vector>

#include "registry/credentials.h"
#include "util/crypto.h"

using namespace bw;
using namespace bw::registry;

namespace {

struct FakeHelpers {
  std::vector<std::pair<std::string, std::string>> calls;  // helper, server url
  std::map<std::string, HelperOutput> answers;             // helper -> output
  HelperRunner runner() {
    return [this](const std::string& helper, const std::string& url) -> Result<HelperOutput> {
      calls.emplace_back(helper, url);
      auto it = answers.find(helper);
      if (it == answers.end()) return make_error(ErrorKind::unauthorized, "cannot run docker-credential-" + helper + ": No such file or directory");
      return it->second;
    };
  }
};

HelperOutput helper_json(const std::string& user, const std::string& secret) {
  return HelperOutput{0, R"({"ServerURL":"x","Username":")" + user + R"(","Secret":")" + secret + R"("})", ""};
}

}  // namespace

TEST_CASE("docker config auths: auth, username/password, identitytoken, registrytoken", "[unit][registry][credentials]") {
  FakeHelpers helpers;
  std::string cfg = R"({"auths":{
    "https://index.docker.io/v1/": {"auth": ")" + base64_encode("hubuser:hub:pass:with:colons") + R"("},
    "ghcr.io": {"username": "octo", "password": "ghp_secret"},
    "https://myregistry.azurecr.io": {"username": "00000000-0000-0000-0000-000000000000", "identitytoken": "refresh-xyz"},
    "quay.io": {"identitytoken": "refresh-only"},
    "127.0.0.1:5000": {"registrytoken": "raw-bearer"}
  }})";
  auto hub = docker_config_credentials(cfg, "config.json", "docker.io", helpers.runner());
  REQUIRE(hub.ok());
  CHECK(hub->username == "hubuser");
  CHECK(hub->password == "hub:pass:with:colons");  // split at the first ':'

  auto ghcr = docker_config_credentials(cfg, "config.json", "ghcr.io", helpers.runner());
  REQUIRE(ghcr.ok());
  CHECK(ghcr->username == "octo");
  CHECK(ghcr->password == "ghp_secret");

  // Keys reduced to host[:port]: "https://myregistry.azurecr.io" matches.
  auto acr = docker_config_credentials(cfg, "config.json", "myregistry.azurecr.io", helpers.runner());
  REQUIRE(acr.ok());
  CHECK(acr->identity_token == "refresh-xyz");
  CHECK(acr->username.empty());

  auto quay = docker_config_credentials(cfg, "config.json", "quay.io", helpers.runner());
  REQUIRE(quay.ok());
  CHECK(quay->identity_token == "refresh-only");

  auto local = docker_config_credentials(cfg, "config.json", "127.0.0.1:5000", helpers.runner());
  REQUIRE(local.ok());
  CHECK(local->registry_token == "raw-bearer");

  auto none = docker_config_credentials(cfg, "config.json", "gcr.io", helpers.runner());
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(helpers.calls.empty());
}

TEST_CASE("docker config: exact key first, then reduced keys; hub aliases", "[unit][registry][credentials]") {
  FakeHelpers helpers;
  std::string cfg = R"({"auths":{
    "https://ghcr.io/v2/": {"username": "reduced", "password": "a"},
    "ghcr.io": {"username": "exact", "password": "b"},
    "index.docker.io": {"username": "hub-alias", "password": "c"}
  }})";
  CHECK(docker_config_credentials(cfg, "c.json", "ghcr.io", helpers.runner())->username == "exact");
  CHECK(docker_config_credentials(cfg, "c.json", "docker.io", helpers.runner())->username == "hub-alias");
  CHECK(docker_server_url("docker.io") == "https://index.docker.io/v1/");
  CHECK(docker_server_url("ghcr.io") == "ghcr.io");
}

TEST_CASE("docker config: credHelpers wins over credsStore; not found falls back to auths", "[unit][registry][credentials]") {
  FakeHelpers helpers;
  helpers.answers["ecr-login"] = helper_json("AWS", "ecr-token");
  helpers.answers["desktop"] = HelperOutput{1, "credentials not found in native keychain\n", ""};
  helpers.answers["pass"] = helper_json("<token>", "identity-from-helper");
  std::string cfg = R"({
    "credsStore": "desktop",
    "credHelpers": {"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login", "https://quay.io": "pass"},
    "auths": {"ghcr.io": {"auth": ")" + base64_encode("inline:pw") + R"("}}
  })";
  auto ecr = docker_config_credentials(cfg, "c.json", "123.dkr.ecr.us-east-1.amazonaws.com", helpers.runner());
  REQUIRE(ecr.ok());
  CHECK(ecr->username == "AWS");
  CHECK(ecr->password == "ecr-token");
  REQUIRE(helpers.calls.size() == 1);
  CHECK(helpers.calls[0] == std::make_pair(std::string("ecr-login"), std::string("123.dkr.ecr.us-east-1.amazonaws.com")));

  // Username "<token>": the secret is an identity token.
  auto quay = docker_config_credentials(cfg, "c.json", "quay.io", helpers.runner());
  REQUIRE(quay.ok());
  CHECK(quay->identity_token == "identity-from-helper");
  CHECK(quay->username.empty());

  // credsStore for the rest; "credentials not found" is not an error.
  auto ghcr = docker_config_credentials(cfg, "c.json", "ghcr.io", helpers.runner());
  REQUIRE(ghcr.ok());
  CHECK(ghcr->username == "inline");
  auto hub = docker_config_credentials(cfg, "c.json", "docker.io", helpers.runner());
  REQUIRE(hub.ok());
  CHECK(hub->empty());
  CHECK(helpers.calls.back() == std::make_pair(std::string("desktop"), std::string("https://index.docker.io/v1/")));
}

TEST_CASE("docker config errors name the file and never the secret", "[unit][registry][credentials]") {
  FakeHelpers helpers;
  auto bad_json = docker_config_credentials("{not json", "/home/ci/.docker/config.json", "ghcr.io", helpers.runner());
  REQUIRE_FALSE(bad_json.ok());
  CHECK(bad_json.error().message == "/home/ci/.docker/config.json: not a JSON object");

  std::string no_colon = R"({"auths":{"ghcr.io":{"auth":")" + base64_encode("justasecretvalue") + R"("}}})";
  auto bad_auth = docker_config_credentials(no_colon, "/home/ci/.docker/config.json", "ghcr.io", helpers.runner());
  REQUIRE_FALSE(bad_auth.ok());
  CHECK(bad_auth.error().kind == ErrorKind::invalid);
  CHECK(bad_auth.error().message == "/home/ci/.docker/config.json: auths[\"ghcr.io\"].auth is not base64 of user:password");

  auto not_b64 = docker_config_credentials(R"({"auths":{"ghcr.io":{"auth":"@@@"}}})", "c.json", "ghcr.io", helpers.runner());
  REQUIRE_FALSE(not_b64.ok());

  helpers.answers["broken"] = HelperOutput{3, "", "keychain locked\nmore detail"};
  auto failed = docker_config_credentials(R"({"credsStore":"broken"})", "c.json", "ghcr.io", helpers.runner());
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().kind == ErrorKind::unauthorized);
  CHECK(failed.error().message == "c.json: docker-credential-broken get failed (exit 3): keychain locked");

  auto missing = docker_config_credentials(R"({"credsStore":"nosuch"})", "c.json", "ghcr.io", helpers.runner());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message ==
        "c.json: docker-credential-nosuch: cannot run docker-credential-nosuch: No such file or directory");

  auto no_file = load_docker_config_credentials("/nonexistent/config.json", "ghcr.io", helpers.runner());
  REQUIRE_FALSE(no_file.ok());
  CHECK(no_file.error().message.rfind("docker_config /nonexistent/config.json: ", 0) == 0);
}

TEST_CASE("base64_decode accepts padding and refuses garbage", "[unit][registry][credentials]") {
  CHECK(*base64_decode(base64_encode("user:pw")) == "user:pw");
  CHECK(*base64_decode("dXNlcjpwdw") == "user:pw");
  CHECK(*base64_decode("") == "");
  CHECK_FALSE(base64_decode("dXNl cjpw").ok());
  CHECK_FALSE(base64_decode("a").ok());
  CHECK_FALSE(base64_decode("dX=Nl").ok());
}

