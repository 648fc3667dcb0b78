// A compact, read-only YAML document for the config reader, built from
// yaml-cpp's event parser (the same parser, errors and marks as YAML::Load).
//
// Why not YAML::Load: its node tree costs about 400 bytes per node (a node,
// a node_ref, a node_data and two shared_ptr control blocks, plus the
// document's memory set), so a `watch:` entry such as `- ref: alpine:3.20`
// took ~1.2 KB while the config was read, which was the largest part of the
// memory a watched reference cost at start. Here a node is one 72-byte
// entry in a vector and children are indices.
//
// The interface is the subset of YAML::Node the reader uses, with the same
// meaning: a missing key gives a node that is false; a null value is a node
// that IsNull(); keys match only scalar keys with the same text (the first
// of duplicates wins); iterating a sequence gives its items, iterating a
// mapping gives pairs (`.first`, `.second`); an alias is the anchored node.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bw::config::yaml {

struct Position {
  int line = 0;    // 0-based, as yaml-cpp's Mark
  int column = 0;  // 0-based
};

class Document;

class Node {
 public:
  Node() = default;
  Node(const Document* doc, uint32_t index) : m_doc(doc), m_index(index) {}

  explicit operator bool() const { return m_doc != nullptr; }  // defined: not a missing key
  bool IsNull() const;
  bool IsScalar() const;
  bool IsSequence() const;
  bool IsMap() const;
  const std::string& Scalar() const;  // "" for anything but a scalar
  Position Mark() const;
  size_t size() const;  // items of a sequence, pairs of a mapping, else 0

  Node operator[](size_t i) const;            // a sequence's item, or a missing node
  Node operator[](std::string_view key) const;  // a mapping's value for `key`, or a missing node

  // What iteration yields: the item itself for a sequence (use it as the
  // node), the pair for a mapping (first, second).
  struct Item;
  class Iterator;
  Iterator begin() const;
  Iterator end() const;

 private:
  const Document* m_doc = nullptr;
  uint32_t m_index = 0;
};

struct Node::Item : Node {
  Node first, second;
};

class Node::Iterator {
 public:
  Iterator(const Document* doc, uint32_t parent, size_t pos) : m_doc(doc), m_parent(parent), m_pos(pos) {}
  Item operator*() const;
  Iterator& operator++() {
    ++m_pos;
    return *this;
  }
  bool operator!=(const Iterator& o) const { return m_pos != o.m_pos; }

 private:
  const Document* m_doc;
  uint32_t m_parent;
  size_t m_pos;
};

class Document {
 public:
  // Parses the first document of `text`. Throws YAML::ParserException (with
  // its mark) on a syntax error, exactly as YAML::Load does.
  static std::unique_ptr<Document> parse(const std::string& text);

  // The first document's root; a null node at -1:-1 when there is none.
  Node root() const { return m_has_root ? Node(this, m_root) : Node(); }
  size_t node_count() const { return m_nodes.size(); }

 private:
  friend class Node;
  friend class Builder;
  enum class Type : uint8_t { null, scalar, sequence, map };
  struct Entry {
    Type type = Type::null;
    Position mark;
    std::string scalar;
    std::vector<uint32_t> children;  // a sequence's items; a mapping's key, value, key, value...
  };
  std::vector<Entry> m_nodes;
  uint32_t m_root = 0;
  bool m_has_root = false;
};

}  // namespace bw::config::yaml
