#include "config/yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <map>
#include <sstream>

namespace bw::config::yaml {

namespace {
const std::string k_empty;
}

// Turns parser events into Document entries. Containers being filled are on
// a stack; every finished node is appended to its parent's children.
class Builder : public YAML::EventHandler {
 public:
  explicit Builder(Document& doc) : m_doc(doc) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { add(Document::Type::null, mark, anchor); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    // The parser refuses an alias to an undefined anchor before this is called.
    auto it = m_anchors.find(anchor);
    if (it == m_anchors.end()) {
      add(Document::Type::null, mark, YAML::NullAnchor);
      return;
    }
    attach(it->second);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string& value) override {
    uint32_t i = add(Document::Type::scalar, mark, anchor);
    m_doc.m_nodes[i].scalar = value;
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    m_open.push_back(add(Document::Type::sequence, mark, anchor));
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    m_open.push_back(add(Document::Type::map, mark, anchor));
  }
  void OnMapEnd() override { close(); }

 private:
  uint32_t add(Document::Type type, const YAML::Mark& mark, YAML::anchor_t anchor) {
    auto i = static_cast<uint32_t>(m_doc.m_nodes.size());
    Document::Entry e;
    e.type = type;
    e.mark = Position{mark.line, mark.column};
    m_doc.m_nodes.push_back(std::move(e));
    if (anchor != YAML::NullAnchor) m_anchors[anchor] = i;
    attach(i);
    return i;
  }
  void attach(uint32_t i) {
    if (!m_open.empty()) {
      m_doc.m_nodes[m_open.back()].children.push_back(i);
    } else if (!m_doc.m_has_root) {
      m_doc.m_root = i;
      m_doc.m_has_root = true;
    }
  }
  void close() {
    if (m_open.empty()) return;
    auto& children = m_doc.m_nodes[m_open.back()].children;
    children.shrink_to_fit();  // a mapping of two keys should not keep room for eight
    m_open.pop_back();
  }

  Document& m_doc;
  std::vector<uint32_t> m_open;
  std::map<YAML::anchor_t, uint32_t> m_anchors;
};

std::unique_ptr<Document> Document::parse(const std::string& text) {
  auto doc = std::make_unique<Document>();
  std::istringstream in(text);
  YAML::Parser parser(in);
  Builder builder(*doc);
  if (!parser.HandleNextDocument(builder) || !doc->m_has_root) {
    // No document (empty text, only comments): a null root without a
    // place, as YAML::Load gives.
    Entry e;
    e.mark = Position{-1, -1};
    doc->m_nodes.push_back(std::move(e));
    doc->m_root = static_cast<uint32_t>(doc->m_nodes.size() - 1);
    doc->m_has_root = true;
  }
  return doc;
}

bool Node::IsNull() const { return m_doc && m_doc->m_nodes[m_index].type == Document::Type::null; }
bool Node::IsScalar() const { return m_doc && m_doc->m_nodes[m_index].type == Document::Type::scalar; }
bool Node::IsSequence() const { return m_doc && m_doc->m_nodes[m_index].type == Document::Type::sequence; }
bool Node::IsMap() const { return m_doc && m_doc->m_nodes[m_index].type == Document::Type::map; }

const std::string& Node::Scalar() const { return IsScalar() ? m_doc->m_nodes[m_index].scalar : k_empty; }

Position Node::Mark() const { return m_doc ? m_doc->m_nodes[m_index].mark : Position{}; }

size_t Node::size() const {
  if (IsSequence()) return m_doc->m_nodes[m_index].children.size();
  if (IsMap()) return m_doc->m_nodes[m_index].children.size() / 2;
  return 0;
}

Node Node::operator[](size_t i) const {
  if (!IsSequence()) return Node();
  const auto& c = m_doc->m_nodes[m_index].children;
  return i < c.size() ? Node(m_doc, c[i]) : Node();
}

Node Node::operator[](std::string_view key) const {
  if (!IsMap()) return Node();
  const auto& c = m_doc->m_nodes[m_index].children;
  for (size_t k = 0; k + 1 < c.size(); k += 2) {
    const auto& e = m_doc->m_nodes[c[k]];
    if (e.type == Document::Type::scalar && e.scalar == key) return Node(m_doc, c[k + 1]);
  }
  return Node();
}

Node::Iterator Node::begin() const { return Iterator(m_doc, m_index, 0); }
Node::Iterator Node::end() const { return Iterator(m_doc, m_index, size()); }

Node::Item Node::Iterator::operator*() const {
  Item item;
  const auto& parent = m_doc->m_nodes[m_parent];
  if (parent.type == Document::Type::map) {
    item.first = Node(m_doc, parent.children[2 * m_pos]);
    item.second = Node(m_doc, parent.children[2 * m_pos + 1]);
  } else {
    static_cast<Node&>(item) = Node(m_doc, parent.children[m_pos]);
  }
  return item;
}

}  // namespace bw::config::yaml
