// Expected failures are values, not exceptions (see CONTRIBUTING.md).
// Result<T> holds a T or an Error; Error carries a machine-usable kind and a
// message for people. Exceptions are only caught at the edges (yaml-cpp,
// nlohmann::json) and turned into Errors there.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bw {

// Error kinds drive decisions (retry or not, what status shows); the message
// is what a user reads.
enum class ErrorKind {
  invalid,       // bad input: config, reference, Dockerfile, payload
  not_found,     // 404, missing file
  unauthorized,  // 401: credentials missing or refused
  denied,        // 403
  rate_limited,  // 429
  timeout,
  network,       // connect/TLS/reset
  bad_answer,    // a peer answered something we cannot use
  server,        // 5xx
  io,            // local file or database trouble
  fenced,        // a write of an instance that no longer holds the cluster's lease
  internal,
};

const char* to_string(ErrorKind kind);
// The kind to_string names; nullopt for any other text.
std::optional<ErrorKind> parse_error_kind(std::string_view text);

struct Error {
  ErrorKind kind = ErrorKind::internal;
  std::string message;
};

inline Error make_error(ErrorKind kind, std::string message) { return Error{kind, std::move(message)}; }

template <typename T>
class Result {
 public:
  Result(T value) : m_v(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : m_v(std::move(error)) {}  // NOLINT

  bool ok() const { return m_v.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(m_v); }
  const T& value() const& { return std::get<0>(m_v); }
  T&& value() && { return std::get<0>(std::move(m_v)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(m_v); }

 private:
  std::variant<T, Error> m_v;
};

// For operations that produce nothing but can fail.
struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() { return Unit{}; }

}  // namespace bw

// Propagates an error: `BW_TRY(auto x, f());`
#define BW_CONCAT_INNER(a, b) a##b
#define BW_CONCAT(a, b) BW_CONCAT_INNER(a, b)
#define BW_TRY(decl, expr) BW_TRY_IMPL(BW_CONCAT(bw_try_, __LINE__), decl, expr)
#define BW_TRY_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                 \
  if (!tmp.ok()) return tmp.error(); \
  decl = std::move(tmp).value()
