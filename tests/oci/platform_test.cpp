#include <catch2/catch.hpp>

#include "oci/platform.h"

using namespace bw::oci;

TEST_CASE("platform: basic parse") {
  auto p = parse_platform("linux/arm64/v8");
  REQUIRE(p.ok());
  CHECK(p->str() == "linux/arm64");
}
