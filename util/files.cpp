#include "util/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace bw {

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return make_error(err == ENOENT ? ErrorKind::not_found : ErrorKind::io,
                      path + ": " + std::strerror(err ? err : EIO));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(ErrorKind::io, path + ": read error");
  return ss.str();
}

Result<std::string> read_secret_file(const std::string& path) {
  BW_TRY(std::string s, read_file(path));
  if (!s.empty() && s.back() == '\n') {
    s.pop_back();
    if (!s.empty() && s.back() == '\r') s.pop_back();
  }
  return s;
}

Status write_file_atomic(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return make_error(ErrorKind::io, tmp + ": " + std::strerror(errno));
    out << content;
    if (!out.flush()) return make_error(ErrorKind::io, tmp + ": write error");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return make_error(ErrorKind::io, path + ": " + std::strerror(errno));
  return ok_status();
}

}  // namespace bw
