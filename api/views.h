// JSON views of the state, shared by the HTTP API and the CLI commands that
// read the database directly (deliveries, status --json).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "db/store.h"
#include "registry/client.h"
#include "watcher/model.h"

namespace bw::api {

nlohmann::json delivery_json(const db::Delivery& d, bool with_payload);
// delivery_json plus "last_attempt" (at, status, duration_ms, error, output_tail) when there was one.
nlohmann::json delivery_with_last_attempt(db::Store& store, const db::Delivery& d);
nlohmann::json event_json(const db::Event& e);
nlohmann::json images_json(const std::vector<db::RefState>& refs, const watcher::Model& model);
// images_json(...).dump(), written directly: /v1/images with 10,000
// references is megabytes, and building the tree first tripled its cost.
std::string images_json_text(const std::vector<db::RefState>& refs, const watcher::Model& model);
nlohmann::json registry_status_json(const std::vector<registry::RegistryStatus>& status);
std::string iso_or_null_text(int64_t unix_ms);

}  // namespace bw::api
