// `database:` values: a file path (SQLite) or a PostgreSQL connection URI,
// postgresql://[user[:password]@][host[:port][,...]][/dbname][?key=value&...]
// (libpq's grammar). Pure text work, shared by config (which resolves the
// file parameters of a URI against the config's folder) and db (which
// connects); libpq itself parses the URI when connecting. Fuzzed
// (fuzz/fuzz_database_uri.cpp).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bw {

// postgresql:// or postgres:// (libpq's two URI schemes).
bool is_postgres_uri(std::string_view database);

// The value to show in logs and errors: a URI with any password written in
// it (user:password@, ?password=) replaced by "***". Paths are unchanged.
std::string redact_database(const std::string& database);

// Where a URI holds passwords, as [begin, end) offsets: the userinfo's, and
// every password= value (the query read both from the first '?', as libpq
// reads it when an '@' follows, and from the '?' after the userinfo). What
// redact_database hides; overlapping spans are possible.
std::vector<std::pair<size_t, size_t>> database_password_spans(const std::string& database);

// The passwords written in a URI, as written and percent-decoded (empty for
// a path or a URI without one): what redact_secrets removes from messages.
std::vector<std::string> database_passwords(const std::string& database);

// `text` with every occurrence of each secret replaced by "***".
std::string redact_secrets(std::string text, const std::vector<std::string>& secrets);

// The URI with the value of every query parameter named `key` replaced by
// fn(value): fn sees the value percent-decoded, its answer is
// percent-encoded again. Anything else of the URI is kept byte for byte.
std::string map_uri_parameter(const std::string& uri, std::string_view key,
                              const std::function<std::string(const std::string&)>& fn);

std::string percent_decode(std::string_view s);
// Encodes everything but unreserved characters and '/'.
std::string percent_encode(std::string_view s);

}  // namespace bw
