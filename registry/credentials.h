// Credentials for one registry: from the config (username + password_file)
// or from a docker config.json (`auths`, `credHelpers`, `credsStore`), with
// credential helpers run as `docker-credential-<name> get`.
// Rules: docs/registry-protocol.md ("Authentication"). Secrets read here
// never appear in errors.
#pragma once

#include <functional>
#include <string>

#include "util/result.h"
#include "util/time.h"

namespace bw::registry {

struct Credentials {
  std::string username;
  std::string password;        // Basic, or the credentials sent to a token endpoint
  std::string identity_token;  // an OAuth2 refresh token (POST grant_type=refresh_token)
  std::string registry_token;  // a bearer token sent to the registry as is
  bool empty() const { return username.empty() && identity_token.empty() && registry_token.empty(); }
};

// What a credential helper printed and how it ended.
struct HelperOutput {
  int status = 0;  // exit status; 128+signal when killed
  std::string out;
  std::string err;
};

// Runs `docker-credential-<helper> get` with `server_url` on stdin. The seam
// unit tests replace.
using HelperRunner = std::function<Result<HelperOutput>(const std::string& helper, const std::string& server_url)>;

// The real runner: finds docker-credential-<helper> on PATH, kills it after
// `timeout`. Errors: not found / cannot run (ErrorKind::unauthorized: the
// credentials cannot be had), timeout.
Result<HelperOutput> run_credential_helper(const std::string& helper, const std::string& server_url,
                                           Millis timeout = Millis(10'000));

// The server key docker uses for `registry` ("docker.io" ->
// "https://index.docker.io/v1/", others their host[:port]); what a helper
// gets on stdin.
std::string docker_server_url(const std::string& registry);

// The credentials for `registry` from the text of a docker config.json:
// credHelpers[server] (exact key, then keys reduced to host[:port]) wins over
// credsStore; a helper that knows nothing ("credentials not found") falls
// back to `auths` (exact key first, then keys reduced to host[:port]).
// Empty Credentials when nothing matches. `source` (the file's path) names
// the place in errors, e.g.
//   /root/.docker/config.json: auths["ghcr.io"].auth is not base64 of user:password
Result<Credentials> docker_config_credentials(const std::string& json_text, const std::string& source,
                                              const std::string& registry, const HelperRunner& run);
// Reads `path` and calls docker_config_credentials.
Result<Credentials> load_docker_config_credentials(const std::string& path, const std::string& registry,
                                                   const HelperRunner& run);

// Standard base64 (padding optional); nullopt-like error when malformed.
Result<std::string> base64_decode(std::string_view text);

}  // namespace bw::registry
