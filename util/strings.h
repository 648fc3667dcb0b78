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

}  // namespace bw
