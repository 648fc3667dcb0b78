// Copying a whole state from one store to another (`basewatch db copy`):
// SQLite to PostgreSQL and back, or between two of a kind. Engine-neutral:
// it moves the rows of every table of k_tables through Store::read_rows and
// write_rows, so ids, timestamps, states, payloads and attempts arrive as
// they were.
#pragma once

#include <map>
#include <string>

#include "db/store.h"

namespace bw::db {

// Copies every table of `from` into `to`, which must hold no row: else
// ErrorKind::invalid, "the destination is not empty (refs: 2, events: 1)".
// `to` is written in one transaction (a failure leaves it empty) and its id
// generators continue past the copied ids; `from` is read inside one of its
// own transactions. Returns the rows copied per table.
Result<std::map<std::string, int64_t>> copy_store(Store& from, Store& to);

}  // namespace bw::db
