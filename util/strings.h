// Small string helpers the standard library lacks.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bw {

std::string to_lower(std::string_view s);
std::string_view trim(std::string_view s);
bool starts_with_icase(std::string_view s, std::string_view prefix);
bool equals_icase(std::string_view a, std::string_view b);
std::vector<std::string> split(std::string_view s, char sep);
std::string join(const std::vector<std::string>& parts, std::string_view sep);

// The candidate a mistyped `name` most likely meant, for "did you mean"
// hints: the closest by edit distance (insert, delete, substitute, swap two
// neighbours), when it is at most 1 away for names of up to 3 characters and
// 2 for longer ones; the first of equally close ones. Empty when none is close.
std::string closest(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace bw
