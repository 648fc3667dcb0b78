// Shared pieces of the mirror tests: an upstream registry behind token auth
// and a mirror registry behind htpasswd, each behind a FaultProxy (so tests
// count and break requests), a config naming both, and skopeo to check.
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "tests/integration/helpers.h"
#include "tests/support/content.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/support.h"

namespace bw::testing {

inline const char* const k_upstream_user = "puller";
inline const char* const k_upstream_password = "upstream-secret-3b7f";
inline const char* const k_mirror_password = "mirror-secret-91c2";

struct Registries {
  TempDir dir{"bw-mirror"};
  TokenIssuer issuer{[] {
    TokenIssuerOptions o;
    o.user = k_upstream_user;
    o.password = k_upstream_password;
    return o;
  }()};
  std::unique_ptr<LocalRegistry> upstream, mirror;
  std::unique_ptr<FaultProxy> upstream_proxy_owner, mirror_proxy_owner;
  FaultProxy& upstream_proxy;
  FaultProxy& mirror_proxy;
  std::string config;

  Registries() : upstream_proxy(*make_upstream()), mirror_proxy(*make_mirror()) {
    write_mirror_password(k_mirror_password);
    dir.write("upstream.pw", std::string(k_upstream_password) + "\n");
    config = dir.write("config.yaml", registries_yaml() + "watch:\n  - ref: " + up("library/unused:1") + "\n");
  }

  // The `registries:` block for both (through their proxies).
  std::string registries_yaml() const {
    return "registries:\n"
           "  " + upstream_proxy.host() + ": {insecure: true, username: " + k_upstream_user + ", password_file: " + dir.path() + "/upstream.pw}\n"
           "  " + mirror_proxy.host() + ": {insecure: true, username: pusher, password_file: " + dir.path() + "/mirror.pw}\n";
  }
  void write_mirror_password(const std::string& password) { dir.write("mirror.pw", password + "\n"); }

  std::string up(const std::string& repo_tag) const { return upstream_proxy.host() + "/" + repo_tag; }
  std::string mirrored(const std::string& repo_tag) const { return mirror_proxy.host() + "/" + repo_tag; }

  RunResult import(std::vector<std::string> args) const {
    std::vector<std::string> argv{basewatch_binary(), "import", "-c", config};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {}, "", std::chrono::seconds(120));
  }

 private:
  FaultProxy* make_upstream() {
    upstream = std::make_unique<LocalRegistry>(issuer.registry_options());
    upstream_proxy_owner = std::make_unique<FaultProxy>(upstream->url());
    return upstream_proxy_owner.get();
  }
  FaultProxy* make_mirror() {
    RegistryOptions o;
    o.htpasswd = {{"pusher", k_mirror_password}};
    mirror = std::make_unique<LocalRegistry>(o);
    mirror_proxy_owner = std::make_unique<FaultProxy>(mirror->url());
    return mirror_proxy_owner.get();
  }
};

// A reference through the mirror's proxy, as skopeo reaches the mirror
// itself (its requests are not counted by the proxy).
inline std::string direct(const Registries& r, const std::string& ref) {
  std::string proxy = r.mirror_proxy.host();
  if (ref.rfind(proxy, 0) == 0) return r.mirror->host() + ref.substr(proxy.size());
  return ref;
}

// `skopeo inspect --raw`: the manifest's exact bytes, as the mirror serves them.
inline std::string skopeo_raw(const Registries& r, const std::string& ref) {
  auto out = run({"skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", std::string("pusher:") + k_mirror_password,
                  "docker://" + direct(r, ref)},
                 {}, "", std::chrono::seconds(60));
  INFO(out.errors);
  REQUIRE(out.status == 0);
  return out.output;
}

// `skopeo copy --all docker://mirror/... dir:...`: every blob is there.
inline bool skopeo_copy_all(const Registries& r, const std::string& ref) {
  TempDir out_dir("bw-skopeo");
  auto out = run({"skopeo", "copy", "--all", "--src-tls-verify=false", "--src-creds", std::string("pusher:") + k_mirror_password,
                  "docker://" + direct(r, ref), "dir:" + out_dir.path() + "/copy"},
                 {}, "", std::chrono::seconds(120));
  INFO(out.output + out.errors);
  CHECK(out.status == 0);
  return out.status == 0;
}

}  // namespace bw::testing
