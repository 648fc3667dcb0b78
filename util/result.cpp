#include "util/result.h"

namespace bw {

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
    case ErrorKind::internal: return "internal";
  }
  return "internal";
}

}  // namespace bw
