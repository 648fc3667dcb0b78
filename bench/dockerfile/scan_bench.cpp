// The parser alone, in process: reads every Dockerfile under the folders
// given (Dockerfile, *.Dockerfile, Dockerfile.*) into memory, then times
// dockerfile::scan over all of them, best and median of RUNS passes. Tells
// how much of `basewatch scan --json` is parsing and how much is the walk,
// the reads and the JSON.
//
//   scan_bench FOLDER [RUNS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "dockerfile/dockerfile.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: scan_bench FOLDER [RUNS]\n");
    return 2;
  }
  int runs = argc > 2 ? std::atoi(argv[2]) : 10;
  std::vector<std::pair<std::string, std::string>> files;
  size_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(argv[1])) {
    if (!e.is_regular_file()) continue;
    std::string name = e.path().filename().string();
    if (name != "Dockerfile" && !name.ends_with(".Dockerfile") && !name.starts_with("Dockerfile.")) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    files.emplace_back(e.path().string(), ss.str());
    bytes += files.back().second.size();
  }
  bw::dockerfile::ScanOptions opts;
  std::vector<double> ms;
  size_t images = 0, errors = 0;
  for (int r = 0; r < std::max(runs, 1); ++r) {
    images = errors = 0;
    auto start = std::chrono::steady_clock::now();
    for (const auto& [path, text] : files) {
      auto res = bw::dockerfile::scan(text, path, opts);
      images += res.images.size();
      errors += res.error ? 1 : 0;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("%zu files (%zu bytes), %zu images, %zu errors; scan() best %.1f ms, median %.1f ms (%.1f us/file, %.0f MB/s)\n",
              files.size(), bytes, images, errors, ms.front(), ms[ms.size() / 2], ms.front() * 1000 / files.size(),
              bytes / ms.front() / 1000);
  return errors == 0 ? 0 : 1;
}
