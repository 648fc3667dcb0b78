// JSON views of the state, shared by the HTTP API and the CLI commands that
// read the database directly (deliveries, status --json).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "cluster/leadership.h"
#include "db/store.h"
#include "registry/client.h"
#include "watcher/model.h"

namespace bw::api {

nlohmann::json delivery_json(const db::Delivery& d, bool with_payload);
// delivery_json plus "last_attempt" (at, status, duration_ms, error, output_tail, pushed_digest) when there was one.
nlohmann::json delivery_with_last_attempt(db::Store& store, const db::Delivery& d);
nlohmann::json event_json(const db::Event& e);
// GET /v1/mirrors: each mirrored reference of the model (by mirror), its
// stored state, the deliveries waiting for it and its pending copy job.
nlohmann::json mirrors_json(db::Store& store, const watcher::Model& model);
// /v1/status `cluster`: {"instance", "leader" (null when none leads),
// "leader_since", "lease_seconds" (null when alone: SQLite), "instances":
// [{"id", "host", "pid", "version", "last_seen"}]}.
nlohmann::json cluster_json(const cluster::View& v);
nlohmann::json images_json(const std::vector<db::RefState>& refs, const watcher::Model& model);
// images_json(...).dump(), written directly: /v1/images with 10,000
// references is megabytes, and building the tree first tripled its cost.
std::string images_json_text(const std::vector<db::RefState>& refs, const watcher::Model& model);

// One watched item of the model (key: the tag ref).
using ImageItem = std::map<std::string, watcher::WatchItem>::value_type;

// The same two views for chosen items only, in the order given: a page of
// the list reads and writes just its rows. `refs` needs only their rows.
nlohmann::json images_json(const std::vector<db::RefState>& refs, const std::vector<const ImageItem*>& items);
std::string images_json_text(const std::vector<db::RefState>& refs, const std::vector<const ImageItem*>& items);

// An answer other than 200 that a request's parameters call for.
struct ApiError {
  int status = 400;
  std::string error;
  std::string detail;
};

constexpr size_t k_images_max_limit = 1000;

// GET /v1/images?limit=&offset=&ref=&errors=1. Without parameters the
// answer is the whole list, as it always was.
struct ImagesQuery {
  std::optional<size_t> limit;     // 1..k_images_max_limit; none: to the end
  size_t offset = 0;
  std::optional<std::string> ref;  // normalised like POST /v1/check
  bool errors_only = false;        // only references whose last check failed
  // Not a parameter: the dashboard lists failing references first.
  bool errors_first = false;
};

// The query string's values (cpp-httplib's Params is this multimap; the
// first of repeated names counts, unknown names are ignored), or the 400.
std::variant<ImagesQuery, ApiError> parse_images_query(const std::multimap<std::string, std::string>& params);

struct ImagesPage {
  std::vector<const ImageItem*> items;  // the slice, in the list's order
  size_t total = 0;                     // all that match, before slicing
};

// The slice of the model's items that `q` asks for, in the model's order
// (failing ones first with errors_first). `failing`: the references whose
// last check failed (Store::failing_refs), read for errors_only/errors_first.
ImagesPage select_images(const watcher::Model& model, const ImagesQuery& q, const std::set<std::string>& failing);

// The RFC 8288 Link header of a paged answer: rel="next" while there is
// more, rel="prev" after the first page; "" without a limit or neither.
std::string images_link_header(const ImagesQuery& q, size_t total);

nlohmann::json registry_status_json(const std::vector<registry::RegistryStatus>& status);
std::string iso_or_null_text(int64_t unix_ms);

}  // namespace bw::api
