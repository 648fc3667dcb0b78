// libFuzzer target for util/database_uri: the `database:` value (a path or a
// PostgreSQL URI) through redaction, the password list, parameter rewriting
// and percent coding. Besides crashes and sanitizer reports it checks that
// no password survives redaction: the text of every password span that
// occurs once in the input is gone from redact_database's answer, and
// redact_secrets leaves none of database_passwords in the URI itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "util/database_uri.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

size_t occurrences(const std::string& text, const std::string& s) {
  size_t n = 0;
  for (size_t at = text.find(s); at != std::string::npos; at = text.find(s, at + 1)) ++n;
  return n;
}

void fuzz_one(const std::string& in) {
  std::string shown = bw::redact_database(in);
  check(bw::is_postgres_uri(in) || shown == in);
  for (const auto& [begin, end] : bw::database_password_spans(in)) {
    check(begin <= end && end <= in.size());
    std::string secret = in.substr(begin, end - begin);
    if (secret.size() >= 4 && secret.find('*') == std::string::npos && occurrences(in, secret) == 1) {
      check(shown.find(secret) == std::string::npos);
    }
  }
  auto secrets = bw::database_passwords(in);
  std::string scrubbed = bw::redact_secrets(in, secrets);
  for (const auto& s : secrets) {
    if (s.find('*') == std::string::npos) check(scrubbed.find(s) == std::string::npos);
  }
  std::string mapped = bw::map_uri_parameter(in, "passfile", [](const std::string& v) { return "/etc/basewatch/" + v; });
  check(bw::is_postgres_uri(mapped) == bw::is_postgres_uri(in));
  check(bw::percent_decode(bw::percent_encode(in)) == in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  fuzz_one(text);
  // Most inputs should be URIs: the scheme is cheap to give.
  fuzz_one("postgresql://" + text);
  return 0;
}
