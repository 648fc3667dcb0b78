// Inbound registry notifications (docs/webhook-formats.md): the pure part.
// Parsing a body into the tags it names, authenticating a request the way
// its sender can, and collapsing duplicates. No I/O here, so the fuzzer
// (fuzz/fuzz_inbound.cpp) and unit tests drive it directly; api/server.cpp
// wires it to HTTP and the watcher.
//
// A notification is never trusted: an accepted one only makes the watcher
// look at the named tag now, and its HEAD decides whether anything moved.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "util/time.h"

namespace bw::api::inbound {

// One tag the sender says was pushed.
struct Notice {
  std::string ref;     // normalised tag ref, e.g. "docker.io/library/alpine:3.20"
  std::string digest;  // "sha256:..." when the sender names one, else ""
  bool operator==(const Notice&) const = default;
};

struct Parsed {
  std::vector<Notice> notices;  // pushes of tags, in body order
  int ignored = 0;  // events that are not a push of a tag (pull, delete, mount, blobs, pings)
};

// The formats of config `inbound[].format`.
bool known_format(std::string_view format);

// Parses a body of `format`. Errors are ErrorKind::invalid with a message
// naming the problem, e.g.
//   body is not valid JSON
//   "events" must be a list
//   events[0].target.repository: expected a string
//   "harbor/x:Bad" is not a valid reference: repository name must be lowercase
Result<Parsed> parse(std::string_view format, std::string_view body);

// What the request carries that authentication looks at.
struct Credentials {
  std::string authorization;  // Authorization header
  std::string token;          // ?token= query parameter
  std::string hub_signature;  // X-Hub-Signature-256
  std::string bw_signature;   // X-Basewatch-Signature-256
};

// Checks the request against `secret` the way `format`'s sender can:
//   distribution, acr, harbor: Authorization "Bearer <secret>" (or the bare secret,
//     as Harbor's "auth header" and ACR custom headers may send it)
//   dockerhub, quay: ?token=<secret> in the URL
//   ghcr: X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>
//   generic: any of Bearer, X-Basewatch-Signature-256 or X-Hub-Signature-256
// Compared in constant time. Empty secret: every request passes (the HEAD
// check still guards against forgeries). Error (ErrorKind::unauthorized)
// messages: "missing secret: <what to send>" or "wrong secret".
Status authenticate(std::string_view format, const std::string& secret, const Credentials& creds,
                    std::string_view body);

// Collapses repeats: one push fans out into several notifications (one per
// manifest, per architecture, or six from Docker Hub). Thread-safe.
//  - A notice with a digest is a repeat when the same (ref, digest) was
//    first seen less than `window` ago.
//  - A notice without one (Docker Hub, Quay) only says "something moved": it
//    is a repeat only while the check the first one asked for has not run
//    yet (`last_checked` of the ref is before that first sight), so a real
//    push right after a stale notice is still looked at.
class Deduper {
 public:
  explicit Deduper(Millis window = Millis(10'000)) : m_window(window) {}
  // True when the notice is news (and remembers it at `now`).
  bool first_sight(const Notice& notice, TimePoint now, TimePoint last_checked = TimePoint{});
  // Forgets the notice: its check could not be asked for, so a repeat of it
  // is news again.
  void forget(const Notice& notice);

 private:
  Millis m_window;
  std::mutex m_mutex;
  std::map<std::pair<std::string, std::string>, TimePoint> m_seen;
  TimePoint m_last_sweep{};
};

}  // namespace bw::api::inbound
