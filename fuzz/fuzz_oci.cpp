// libFuzzer target for oci/: every parser gets the whole input. Besides
// crashes and sanitizer reports it checks round trips: a reference or platform
// that parses prints as text that parses back to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "oci/challenge.h"
#include "oci/platform.h"
#include "oci/ratelimit.h"
#include "oci/reference.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

void fuzz_reference(std::string_view text) {
  auto ref = bw::oci::parse_reference(text);
  if (!ref.ok()) {
    check(ref.error().message.rfind("invalid reference \"", 0) == 0);
    return;
  }
  check(ref->name().size() <= 255);
  check(ref->tag.size() <= 128);
  check(!ref->tag.empty() || ref->pinned());
  check(!ref->pinned() || bw::oci::is_valid_digest(ref->digest));
  auto again = bw::oci::parse_reference(ref->str());
  check(again.ok() && *again == *ref);
  auto by_tag = bw::oci::parse_reference(ref->tag_ref());
  check(by_tag.ok());
  (void)bw::oci::api_host(ref->registry);
}

void fuzz_platform(std::string_view text) {
  auto p = bw::oci::parse_platform(text);
  if (!p.ok()) return;
  check(bw::oci::normalize(*p) == *p);
  auto again = bw::oci::parse_platform(p->str());
  check(again.ok() && *again == *p);
  check(bw::oci::matches(*p, *again));
}

void fuzz_index(std::string_view text) {
  auto entries = bw::oci::parse_index(text);
  if (!entries.ok()) return;
  for (const char* wanted : {"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "windows/amd64"}) {
    auto got = bw::oci::select_platform(*entries, *bw::oci::parse_platform(wanted));
    if (got) check(!got->attestation);
  }
}

void fuzz_challenges(std::string_view text) {
  auto challenges = bw::oci::parse_challenges(text);
  for (const auto& ch : challenges) {
    check(!ch.scheme.empty());
    for (char c : ch.scheme) check(!(c >= 'A' && c <= 'Z'));
    for (const auto& [name, value] : ch.params) {
      check(!name.empty());
      (void)value;
    }
    (void)ch.realm();
  }
  (void)bw::oci::find_challenge(challenges, "bearer");
  for (const auto& s : bw::oci::split_scopes(text)) {
    check(!s.empty());
    auto scope = bw::oci::parse_scope(s);
    if (scope) {
      auto again = bw::oci::parse_scope(scope->str());
      check(again && *again == *scope);
    }
  }
}

void fuzz_ratelimit(std::string_view text) {
  auto limit = bw::oci::parse_ratelimit(text);
  if (limit) check(limit->count >= 0 && (!limit->window_seconds || *limit->window_seconds >= 0));
  const auto now = bw::from_unix_ms(1'795'000'000'000);
  auto retry = bw::oci::parse_retry_after(text, now);
  if (retry) check(*retry >= now);
  auto errors = bw::oci::parse_error_body(text);
  (void)bw::oci::describe_errors(errors);
  for (const auto& e : errors) (void)bw::oci::classify_error_code(e.code);
  auto err = bw::oci::status_error(503, text, "GET fuzz");
  check(err.kind == bw::ErrorKind::server);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz_reference(text);
  fuzz_platform(text);
  fuzz_index(text);
  fuzz_challenges(text);
  fuzz_ratelimit(text);
  return 0;
}
