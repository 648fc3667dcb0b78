// Identifiers: delivery ids sort by creation time (ULID-like, Crockford base32).
#pragma once

#include <string>

#include "util/time.h"

namespace bw {

// "d_" + 26 characters: 48 bits of milliseconds, 80 random bits.
std::string new_delivery_id(TimePoint now);

}  // namespace bw
