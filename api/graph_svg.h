// The dependency graph as a picture for the dashboard: upstream bases, their
// mirrors, projects and the images they produce, each node with its state,
// and the path of the latest change highlighted; a server-rendered SVG with
// nothing loaded from elsewhere (no script, no web font).
//
// Three pure steps, each table-tested: graph_picture (what to draw, from the
// model and the stored state), layout_picture (where: a layered layout,
// left to right in build order), render_graph_svg (the markup). The layout
// is our own rather than Graphviz's: the graph is a DAG whose layers are
// known (upstream, mirror, project, image, project ...), a longest-path
// layering with a few barycenter sweeps is ~150 lines, and it runs inside
// the API's threads (libgvc keeps global state and is not thread-safe).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "db/store.h"
#include "watcher/model.h"

namespace bw::api {

struct PictureNode {
  std::string id;     // the reference, or the project's name
  std::string kind;   // upstream | mirror | project | image
  // References: ok | changed | error | waiting | unknown; mirrors: ok
  // (in sync) | copying | error (the copy failed) | drift | waiting (missing);
  // projects: built | queued | failed | dead | idle | error.
  std::string state;
  std::string detail;  // the tooltip: digest, error, last delivery
  bool highlighted = false;  // on the path of the latest change
};

struct PictureEdge {
  size_t from = 0, to = 0;  // indexes into nodes
  bool copy = false;        // upstream -> its mirror (drawn dashed)
  bool highlighted = false;
};

struct Picture {
  std::vector<PictureNode> nodes;
  std::vector<PictureEdge> edges;
  // The change drawn: "ref sha256:old -> sha256:new" of the chain's root,
  // plus ", then <image> built" for each build it led to; "" for none.
  std::string change;
  std::string note;    // what was left out of a large graph, or ""
};

// Nodes a picture holds at most; a larger graph is cut to the latest
// change's path and its neighbours (the note says so; /v1/graph has all).
inline constexpr size_t k_picture_max_nodes = 300;

// The stored rows of the given references (Store::get_refs): asked once,
// for the references a picture draws.
using RefRows = std::function<std::vector<db::RefState>(const std::vector<std::string>& refs)>;

// The latest change that fired and the changes that led to it, root first:
// when the latest is an image a project produces and its change came from
// basewatch's own build (source "build"), the older change that built that
// project is part of the same chain, and so on up to an upstream change.
// `events` newest first (Store::list_events); empty when none fired.
std::vector<db::Event> latest_chain(const std::vector<db::Event>& events, const dockerfile::Graph& graph);

// What to draw. `rows`: the stored state of references; `mirrors`: the
// stored mirrors (Store::list_mirrors), for their copies' states;
// `deliveries`: recent deliveries, newest first (each project's newest gives
// its state); `chain`: the changes whose path is highlighted (latest_chain).
// Mirrors come from the model: a reference a `mirrors:` rule copies gets its
// copy as a node (upstream -> copy, dashed), and a project that builds FROM
// the copy hangs from it.
Picture graph_picture(const watcher::Model& model, const RefRows& rows, const std::vector<db::MirrorState>& mirrors,
                      const std::vector<db::Delivery>& deliveries, const std::vector<db::Event>& chain);

struct PlacedNode {
  double x = 0, y = 0, width = 0, height = 0;  // the box
  int layer = 0;
  std::string label;  // the text shown (long names shortened in the middle)
};

struct PlacedEdge {
  std::vector<std::pair<double, double>> points;  // from the source's right side to the target's left side
};

struct Layout {
  std::vector<PlacedNode> nodes;  // as Picture::nodes
  std::vector<PlacedEdge> edges;  // as Picture::edges
  double width = 0, height = 0;
};

// Layers by longest path from the sources (so every edge points right),
// edges longer than one layer routed through the layers between, the order
// in each layer from barycenter sweeps (fewer crossings), boxes sized to
// their labels in a monospace font.
Layout layout_picture(const Picture& picture);

// An <svg> element (for inline use; with `standalone`, an XML document for
// image/svg+xml), every text escaped.
std::string render_graph_svg(const Picture& picture, const Layout& layout, bool standalone = false);

}  // namespace bw::api
