// What a mirror needs after one check of its upstream: pure decisions from
// what is stored and what the two HEADs found, so a table test can drive
// them. The watcher records what they say in the same transaction as the
// upstream's own row and event; the copier (syncer.h) carries out the jobs.
#pragma once

#include <optional>
#include <string>

#include "db/store.h"
#include "util/result.h"

namespace bw::mirror {

struct MirrorCheck {
  std::string upstream_digest;        // the upstream tag's digest, just resolved
  bool upstream_moved = false;        // it differs from the stored one (a change or a recorded move)
  bool upstream_changed = false;      // a watched platform moved (the move fires deliveries)
  const db::MirrorState* row = nullptr;  // the stored row, if any
  bool job_pending = false;           // a copy job for this mirror has not finished
  // The mirror tag's digest ("" when the tag is absent), or why the HEAD failed.
  Result<std::string> head = std::string();
  bool all_platforms = true;          // the rule copies every platform: the copy keeps the digest
};

struct MirrorDecision {
  db::MirrorState row;   // what to store (mirror, upstream and timestamps are the caller's)
  bool write = false;    // the row differs from the stored one
  bool job = false;      // write a copy job of upstream_digest
  std::string reason;    // its reason: change | recorded | baseline | missing | drift | sync
};

// The digest the mirror's tag should name for `upstream_digest`: the same
// one for a full copy; for a platform subset the digest of the last copy of
// that upstream digest, "" when none is known yet.
std::string expected_mirror_digest(const MirrorCheck& c);

// - The upstream moved: copy it (a job), state copying.
// - A copy is under way: keep the state, note what the mirror holds.
// - The mirror's tag is absent: copy (missing; baseline on first sight).
// - It names what it should: in-sync. Something else: drift, copy again.
// - The mirror could not be asked: the state stays, the error is noted, no job.
MirrorDecision decide_mirror(const MirrorCheck& c);

}  // namespace bw::mirror
