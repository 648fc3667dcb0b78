#include "mirror/decide.h"

namespace bw::mirror {

std::string expected_mirror_digest(const MirrorCheck& c) {
  if (c.all_platforms) return c.upstream_digest;
  if (c.row && c.row->upstream_digest == c.upstream_digest) return c.row->mirror_digest;
  return "";
}

MirrorDecision decide_mirror(const MirrorCheck& c) {
  MirrorDecision d;
  if (c.row) d.row = *c.row;
  const std::string before_state = d.row.state, before_mirror = d.row.mirror_digest, before_up = d.row.upstream_digest,
                    before_error = d.row.last_error;
  if (!c.head.ok()) {
    // The mirror registry is down or refuses: nothing is known of its tag.
    d.row.last_error = "mirror: " + c.head.error().message;
    if (d.row.state.empty()) d.row.state = "missing";
    if (c.upstream_moved) {
      // The copy is still owed; the copier retries until the mirror is back.
      d.job = true;
      d.reason = c.upstream_changed ? "change" : "recorded";
      d.row.state = "copying";
    }
  } else {
    const std::string& held = c.head.value();
    d.row.last_error.clear();
    if (c.upstream_moved) {
      d.job = true;
      d.reason = c.upstream_changed ? "change" : "recorded";
      d.row.state = "copying";
      d.row.mirror_digest = held;
    } else if (c.job_pending) {
      // A copy is under way (or waiting out a failure): its outcome decides.
      d.row.mirror_digest = held;
      if (d.row.state.empty() || d.row.state == "in-sync" || d.row.state == "drift" || d.row.state == "missing") d.row.state = "copying";
    } else if (held.empty()) {
      d.job = true;
      d.reason = c.row ? "missing" : "baseline";
      d.row.state = "missing";
      d.row.mirror_digest.clear();
    } else {
      std::string expected = expected_mirror_digest(c);
      d.row.mirror_digest = held;
      if (expected.empty()) {
        // A subset never copied here: the copier computes its digest (and
        // finds it there already when it is).
        d.job = true;
        d.reason = "sync";
        d.row.state = "copying";
      } else if (held == expected) {
        d.row.state = "in-sync";
      } else {
        d.job = true;
        d.reason = "drift";
        d.row.state = "drift";
      }
    }
  }
  d.row.upstream_digest = c.upstream_digest;
  d.write = !c.row || d.row.state != before_state || d.row.mirror_digest != before_mirror || d.row.upstream_digest != before_up ||
            d.row.last_error != before_error;
  return d;
}

}  // namespace bw::mirror
