// Hashing, signatures and encodings, on OpenSSL.
#pragma once

#include <string>
#include <string_view>

namespace bw {

// "sha256:<64 hex>" of the bytes: an OCI digest.
std::string sha256_digest(std::string_view bytes);
std::string sha256_hex(std::string_view bytes);
std::string hmac_sha256_hex(std::string_view key, std::string_view message);
std::string base64_encode(std::string_view bytes);
std::string hex_encode(std::string_view bytes);
// Compares without an early exit, so timing does not reveal a secret.
bool constant_time_equals(std::string_view a, std::string_view b);
// Cryptographically random bytes.
std::string random_bytes(size_t n);

}  // namespace bw
