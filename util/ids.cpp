#include "util/ids.h"

#include "util/crypto.h"

namespace bw {

std::string new_delivery_id(TimePoint now) {
  static const char* alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";  // Crockford base32
  uint64_t ms = static_cast<uint64_t>(to_unix_ms(now)) & ((uint64_t{1} << 48) - 1);
  std::string out = "d_";
  // 10 characters of time (50 bits, top 2 zero), then 16 of randomness (80 bits).
  for (int i = 9; i >= 0; --i) out += alphabet[(ms >> (i * 5)) & 31];
  // 80 random bits as 16 groups of 5, taken from two words (40 bits each).
  std::string r = random_bytes(10);
  for (int half = 0; half < 2; ++half) {
    uint64_t bits = 0;
    for (int k = 0; k < 5; ++k) bits = (bits << 8) | static_cast<unsigned char>(r[static_cast<size_t>(half * 5 + k)]);
    for (int i = 7; i >= 0; --i) out += alphabet[(bits >> (i * 5)) & 31];
  }
  return out;
}

}  // namespace bw
