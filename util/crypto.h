// Hashing, signatures and encodings, on OpenSSL.
#pragma once

#include <memory>
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

// SHA-256 of bytes that arrive in pieces (a blob streamed from one registry
// to another is checked on the way, never held whole).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  // "sha256:<64 hex>" of everything so far; the hasher can go on after it.
  std::string digest() const;

 private:
  struct State;
  std::unique_ptr<State> m_state;
};

}  // namespace bw
