// config::yaml::Document must read YAML exactly as YAML::Load does (the
// config reader's errors and marks depend on it): the same tree, the same
// marks, the same parse errors. Each document below is read both ways and
// compared node by node.
#include <catch2/catch.hpp>

#include <yaml-cpp/yaml.h>

#include <sstream>

#include "config/yaml_tree.h"

using namespace bw::config;

namespace {

// A description of a tree, the same for both readers: type, mark, scalar,
// children in order. Depth-limited so a recursive alias ends. N is
// YAML::Node or yaml::Node: both iterate a sequence as nodes and a mapping
// as pairs.
template <typename N>
void describe(const N& n, std::ostringstream& out, int depth) {
  out << n.Mark().line << ':' << n.Mark().column << ' ';
  if (depth > 6) {
    out << "...";
    return;
  }
  if (n.IsNull()) {
    out << "null";
  } else if (n.IsScalar()) {
    out << "scalar[" << n.Scalar() << "]";
  } else if (n.IsSequence()) {
    out << "seq(";
    for (const auto& item : n) {
      describe<N>(item, out, depth + 1);
      out << ", ";
    }
    out << ")";
  } else if (n.IsMap()) {
    out << "map(";
    for (const auto& kv : n) {
      describe<N>(kv.first, out, depth + 1);
      out << " => ";
      describe<N>(kv.second, out, depth + 1);
      out << ", ";
    }
    out << ")";
  } else {
    out << "undefined";
  }
}

// Describes the root `root_of()` gives, or the parse error it throws.
template <typename F>
std::string described(F root_of) {
  try {
    auto root = root_of();
    if (!root) return "no document";
    std::ostringstream out;
    describe(root, out, 0);
    return out.str();
  } catch (const YAML::Exception& e) {
    return "error " + std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column) + " " + e.msg;
  }
}

std::string with_yaml_cpp(const std::string& text) {
  return described([&] { return YAML::Load(text); });
}

std::string with_tree(const std::string& text) {
  std::unique_ptr<yaml::Document> doc;
  return described([&] {
    doc = yaml::Document::parse(text);
    return doc->root();
  });
}

}  // namespace

TEST_CASE("the compact YAML tree reads every document as YAML::Load does", "[unit][config][yaml]") {
  const char* docs[] = {
      "",
      "# only a comment\n",
      "---\n",
      "~\n",
      "just a scalar\n",
      "watch:\n  - ref: alpine:3.20\n  - ref: node:20\n    platforms: [linux/amd64, linux/arm64]\n",
      "a: 1\nb:\nc: ~\nd: null\ne: ''\nf: \"x\\ty\"\n",
      "a: 1\na: 2\n",  // duplicate keys: both kept, the first wins on lookup
      "base: &b {interval: 5m, platforms: [linux/amd64]}\nwatch:\n  - *b\n  - ref: x\n",
      "a: &x [1, 2]\nb: *x\nc: &y 'three'\nd: *y\n",
      "? [complex, key]\n: value\n{a: 1}: mapped\n",
      "text: |\n  line one\n  line two\nfolded: >\n  one\n  two\n",
      "tagged: !custom value\nbinary: !!binary aGVsbG8=\n",
      "first: doc\n---\nsecond: doc\n",
      "nested:\n  - - - deep\n  - {a: [b, {c: d}]}\n",
      "\xEF\xBB\xBF" "bom: yes\n",
      "crlf: yes\r\nnext: no\r\n",
      "projects: [unclosed\n",
      "a: b: c\n",
      "key: \"unterminated\n",
      "- a\nb: c\n",
      "a: *undefined\n",
      "\t- tab\n",
  };
  for (const char* d : docs) {
    INFO("document: " << d);
    CHECK(with_tree(d) == with_yaml_cpp(d));
  }
}

TEST_CASE("the compact YAML tree answers lookups as YAML::Node does", "[unit][config][yaml]") {
  auto doc = yaml::Document::parse("a: 1\nb: [x, y]\nc: ~\n[k]: v\na: 2\n");
  yaml::Node root = doc->root();
  REQUIRE(root.IsMap());
  CHECK(root.size() == 5);
  CHECK(root["a"].Scalar() == "1");        // the first of duplicate keys
  CHECK(root["c"]);                        // a null value is defined...
  CHECK(root["c"].IsNull());               // ...and null
  CHECK_FALSE(root["missing"]);            // a missing key is not
  CHECK_FALSE(root["missing"]["deeper"]);  // and looking further stays missing
  CHECK(root["b"].size() == 2);
  CHECK(root["b"][1].Scalar() == "y");
  CHECK_FALSE(root["b"][2]);
  CHECK_FALSE(root["b"]["x"]);  // a sequence has no keys
  CHECK_FALSE(root["a"][0]);    // a scalar has no items
  CHECK(root["b"].Scalar().empty());
  CHECK(root["b"].Mark().line == 1);
  CHECK(root["b"].Mark().column == 3);
  CHECK_FALSE(root["k"]);  // a sequence key matches no text
}
