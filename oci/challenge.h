// WWW-Authenticate challenges and token scopes.
// Rules: docs/registry-protocol.md ("Authentication"), RFC 7235 section 4.1:
//   WWW-Authenticate = 1#challenge
//   challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//   auth-param = token BWS "=" BWS ( token / quoted-string )
// Several challenges may share one header line ("Bearer a=b, Basic realm=x")
// or come in several lines. Pure functions: no I/O, never throw.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bw::oci {

struct Challenge {
  std::string scheme;                         // lowercased: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lowercased; values unquoted and unescaped, case kept
  std::string token68;                        // "Negotiate abc==" form; empty for Bearer/Basic

  // The value of parameter `name` (case-insensitive), or "" when absent.
  std::string param(std::string_view name) const;
  std::string realm() const { return param("realm"); }
  std::string service() const { return param("service"); }
  // Space-separated scopes, as sent.
  std::string scope() const { return param("scope"); }
  bool operator==(const Challenge&) const = default;
};

// Parses one header value. Tolerant: unquoted values may hold any character
// but ',' and whitespace (some servers send realm=https://...); a repeated
// parameter keeps its first value; on a syntax error it returns the challenges
// read so far, including the one being read with the parameters completed
// before the error. Garbage gives an empty vector.
std::vector<Challenge> parse_challenges(std::string_view header_value);
// Several WWW-Authenticate lines, in order.
std::vector<Challenge> parse_challenges(const std::vector<std::string>& header_values);
// The first challenge of `scheme` (case-insensitive), or nullptr.
const Challenge* find_challenge(const std::vector<Challenge>& challenges, std::string_view scheme);

// A token scope: "repository:<name>:<action>[,<action>]". The name may hold
// "host:port" ("repository:localhost:5000/app:pull"), so a scope is split at
// its first and last ':' only.
struct Scope {
  std::string type;                  // "repository", "registry"
  std::string name;                  // "library/alpine", "catalog"
  std::vector<std::string> actions;  // {"pull"}, {"pull", "push"}, {"*"}
  // Back to "type:name:a,b".
  std::string str() const;
  bool operator==(const Scope&) const = default;
};

// "repository:<repository>:<actions>", the scope to ask for up front;
// `repository` is the path without the registry ("library/alpine").
std::string repository_scope(std::string_view repository, std::string_view actions = "pull");
// "a b  c" -> {"a", "b", "c"}: a challenge's scope parameter may list several.
std::vector<std::string> split_scopes(std::string_view scopes);
// nullopt unless there are a non-empty type, name and at least one action.
std::optional<Scope> parse_scope(std::string_view scope);

}  // namespace bw::oci
