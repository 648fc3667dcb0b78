// Reading files the way config and secrets need them.
#pragma once

#include <string>

#include "util/result.h"

namespace bw {

Result<std::string> read_file(const std::string& path);
// A secret file: the content with one trailing newline (\n or \r\n) removed.
Result<std::string> read_secret_file(const std::string& path);
Status write_file_atomic(const std::string& path, const std::string& content);

}  // namespace bw
