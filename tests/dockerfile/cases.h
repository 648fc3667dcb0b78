// The Dockerfiles of the scan table (scan_test.cpp), for tests that check a
// property on every case (rewrite_test.cpp).
#pragma once

#include <map>
#include <string>
#include <vector>

struct ScanCase {
  std::string name;
  std::string text;
  std::map<std::string, std::string> build_args;
  std::string target;
  std::string platform;
};

std::vector<ScanCase> scan_case_texts();
