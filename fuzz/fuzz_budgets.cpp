// libFuzzer target for registry::decode_budgets: the registry budgets a
// leader stored in the database (any version, any bytes) read by the next
// one. Besides crashes and sanitizer reports it checks that what was read
// is stable: encoding it and reading it again gives the same encoding, and
// every budget read names a host and holds no negative count.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "registry/client.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto read = bw::registry::decode_budgets(text);
  for (const auto& b : read) {
    check(!b.status.host.empty());
    check(b.status.requests >= 0);
    check(b.status.consecutive_failures >= 0);
  }
  std::string once = bw::registry::encode_budgets(read);
  auto again = bw::registry::decode_budgets(once);
  check(again.size() == read.size());
  check(bw::registry::encode_budgets(again) == once);
  return 0;
}
