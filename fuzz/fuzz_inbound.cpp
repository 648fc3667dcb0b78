// libFuzzer target for the inbound hook parsers (api/inbound.h): the first
// byte picks the format ('0'..'6', else modulo 7), the rest is the body.
// Besides crashes and sanitizer reports it checks what the server relies on:
// every notice is a normalised tag ref that parses back to itself, digests
// are valid or empty, errors are `invalid` with a message, and
// authentication never passes a wrong secret.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "api/inbound.h"
#include "oci/reference.h"
#include "util/crypto.h"

namespace {

constexpr const char* k_formats[] = {"distribution", "dockerhub", "acr", "harbor", "ghcr", "quay", "generic"};

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  unsigned selector = data[0] >= '0' && data[0] <= '6' ? data[0] - '0' : data[0] % 7;
  std::string_view format = k_formats[selector];
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  auto parsed = bw::api::inbound::parse(format, body);
  if (!parsed.ok()) {
    check(parsed.error().kind == bw::ErrorKind::invalid);
    check(!parsed.error().message.empty());
  } else {
    check(parsed->ignored >= 0);
    for (const auto& n : parsed->notices) {
      auto ref = bw::oci::parse_reference(n.ref);
      check(ref.ok());
      check(!ref->pinned() && !ref->tag.empty());
      check(ref->tag_ref() == n.ref);
      check(n.digest.empty() || bw::oci::is_valid_digest(n.digest));
    }
  }

  // The body doubles as every credential: none may pass for the secret
  // unless it is the secret (or its signature).
  const std::string secret = "fuzz-secret";
  bw::api::inbound::Credentials creds;
  std::string text(body);
  creds.authorization = text;
  creds.token = text;
  creds.hub_signature = text;
  creds.bw_signature = text;
  auto st = bw::api::inbound::authenticate(format, secret, creds, body);
  if (st.ok()) {
    bool legit = text.find(secret) != std::string::npos || text.find(bw::hmac_sha256_hex(secret, body)) != std::string::npos;
    check(legit);
  } else {
    check(st.error().kind == bw::ErrorKind::unauthorized);
  }
  return 0;
}
