#include "util/result.h"

namespace bw {

namespace {

constexpr ErrorKind k_kinds[] = {ErrorKind::invalid, ErrorKind::not_found, ErrorKind::unauthorized, ErrorKind::denied,
                                 ErrorKind::rate_limited, ErrorKind::timeout, ErrorKind::network, ErrorKind::bad_answer,
                                 ErrorKind::server, ErrorKind::io, ErrorKind::fenced, ErrorKind::internal};

}  // namespace

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid: return "invalid";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::unauthorized: return "unauthorized";
    case ErrorKind::denied: return "denied";
    case ErrorKind::rate_limited: return "rate_limited";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::network: return "network";
    case ErrorKind::bad_answer: return "bad_answer";
    case ErrorKind::server: return "server";
    case ErrorKind::io: return "io";
    case ErrorKind::fenced: return "fenced";
    case ErrorKind::internal: return "internal";
  }
  return "internal";
}

std::optional<ErrorKind> parse_error_kind(std::string_view text) {
  for (ErrorKind k : k_kinds) {
    if (text == to_string(k)) return k;
  }
  return std::nullopt;
}

}  // namespace bw
