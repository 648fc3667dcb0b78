#include "api/views.h"

#include "util/time.h"

namespace bw::api {

using json = nlohmann::json;

namespace {
json stamp(int64_t ms) { return ms > 0 ? json(format_rfc3339(from_unix_ms(ms))) : json(nullptr); }
}  // namespace

std::string iso_or_null_text(int64_t ms) { return ms > 0 ? format_rfc3339(from_unix_ms(ms)) : "-"; }

json delivery_json(const db::Delivery& d, bool with_payload) {
  json j = {{"id", d.id},
            {"trigger", d.trigger},
            {"project", d.project.empty() ? json(nullptr) : json(d.project)},
            {"state", db::to_string(d.state)},
            {"attempts", d.attempts},
            {"created_at", stamp(d.created_at)},
            {"next_attempt_at", d.state == db::DeliveryState::pending || d.state == db::DeliveryState::failed
                                    ? stamp(d.next_attempt_at) : json(nullptr)},
            {"delivered_at", stamp(d.delivered_at)},
            {"last_status", d.last_status},
            {"last_error", d.last_error.empty() ? json(nullptr) : json(d.last_error)}};
  auto body = json::parse(d.payload, nullptr, false);
  if (body.is_object() && body.contains("changes")) {
    json refs = json::array();
    for (auto& c : body["changes"]) refs.push_back(c.value("ref", ""));
    j["refs"] = refs;
  }
  if (with_payload) j["payload"] = body.is_discarded() ? json(d.payload) : body;
  return j;
}

json delivery_with_last_attempt(db::Store& store, const db::Delivery& d) {
  json j = delivery_json(d, false);
  if (auto attempts = store.list_attempts(d.id); attempts && !attempts->empty()) {
    const auto& a = attempts->back();
    j["last_attempt"] = {{"at", format_rfc3339(from_unix_ms(a.at))}, {"status", a.status}, {"duration_ms", a.duration_ms},
                         {"error", a.error.empty() ? json(nullptr) : json(a.error)},
                         {"output_tail", a.output_tail.empty() ? json(nullptr) : json(a.output_tail)}};
  }
  return j;
}

json event_json(const db::Event& e) {
  json platforms = json::object();
  for (const auto& [p, od] : e.platforms) platforms[p] = {{"old", od.first}, {"new", od.second}};
  return {{"id", e.id},
          {"ref", e.ref},
          {"old_digest", e.old_digest},
          {"new_digest", e.new_digest},
          {"platforms", platforms},
          {"outcome", e.outcome},
          {"source", e.source},
          {"detected_at", stamp(e.detected_at)},
          {"deliveries", e.deliveries}};
}

json images_json(const std::vector<db::RefState>& refs, const watcher::Model& model) {
  json out = json::array();
  std::map<std::string, const db::RefState*> by_ref;
  for (const auto& r : refs) by_ref[r.ref] = &r;
  for (const auto& [key, item] : model.items) {
    json j;
    j["ref"] = key;
    json wanted = json::array();
    for (const auto& p : item.platforms) wanted.push_back(p.str());
    j["watched_platforms"] = wanted;
    j["dependents"] = json(std::vector<std::string>(item.projects.begin(), item.projects.end()));
    j["produced"] = item.produced;
    auto it = by_ref.find(key);
    const db::RefState* r = it == by_ref.end() ? nullptr : it->second;
    j["digest"] = r && !r->digest.empty() ? json(r->digest) : json(nullptr);
    j["media_type"] = r && !r->media_type.empty() ? json(r->media_type) : json(nullptr);
    j["platforms"] = r ? json(r->platforms) : json::object();
    j["last_checked"] = stamp(r ? r->last_checked : 0);
    j["last_changed"] = stamp(r ? r->last_changed : 0);
    j["next_check"] = stamp(r ? r->next_check : 0);
    j["last_error"] = r && !r->last_error.empty() ? json(r->last_error) : json(nullptr);
    j["error_kind"] = r && !r->error_kind.empty() ? json(r->error_kind) : json(nullptr);
    out.push_back(j);
  }
  return out;
}

namespace {

// A JSON string literal; invalid UTF-8 is replaced (U+FFFD), like dump(-1, ' ', false, replace).
void append_string(std::string& out, const std::string& s) {
  out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

void append_stamp(std::string& out, int64_t ms) {
  if (ms > 0) append_string(out, format_rfc3339(from_unix_ms(ms)));
  else out += "null";
}

void append_opt(std::string& out, const std::string& s) {
  if (s.empty()) out += "null";
  else append_string(out, s);
}

}  // namespace

std::string images_json_text(const std::vector<db::RefState>& refs, const watcher::Model& model) {
  std::map<std::string, const db::RefState*> by_ref;
  for (const auto& r : refs) by_ref[r.ref] = &r;
  std::string out = "[";
  out.reserve(model.items.size() * 512);
  bool first = true;
  for (const auto& [key, item] : model.items) {
    auto it = by_ref.find(key);
    const db::RefState* r = it == by_ref.end() ? nullptr : it->second;
    out += first ? "{" : ",{";
    first = false;
    // Keys in the order nlohmann's std::map-backed objects print them.
    out += "\"dependents\":[";
    bool f = true;
    for (const auto& p : item.projects) {
      if (!f) out += ",";
      f = false;
      append_string(out, p);
    }
    out += "],\"digest\":";
    append_opt(out, r ? r->digest : "");
    out += ",\"error_kind\":";
    append_opt(out, r ? r->error_kind : "");
    out += ",\"last_changed\":";
    append_stamp(out, r ? r->last_changed : 0);
    out += ",\"last_checked\":";
    append_stamp(out, r ? r->last_checked : 0);
    out += ",\"last_error\":";
    append_opt(out, r ? r->last_error : "");
    out += ",\"media_type\":";
    append_opt(out, r ? r->media_type : "");
    out += ",\"next_check\":";
    append_stamp(out, r ? r->next_check : 0);
    out += ",\"platforms\":{";
    if (r) {
      f = true;
      for (const auto& [p, d] : r->platforms) {
        if (!f) out += ",";
        f = false;
        append_string(out, p);
        out += ":";
        append_string(out, d);
      }
    }
    out += "},\"produced\":";
    out += item.produced ? "true" : "false";
    out += ",\"ref\":";
    append_string(out, key);
    out += ",\"watched_platforms\":[";
    f = true;
    for (const auto& p : item.platforms) {
      if (!f) out += ",";
      f = false;
      append_string(out, p.str());
    }
    out += "]}";
  }
  out += "]";
  return out;
}

json registry_status_json(const std::vector<registry::RegistryStatus>& status) {
  json out = json::object();
  for (const auto& s : status) {
    out[s.host] = {{"requests", s.requests},
                   {"ratelimit_limit", s.ratelimit_limit ? json(*s.ratelimit_limit) : json(nullptr)},
                   {"ratelimit_remaining", s.ratelimit_remaining ? json(*s.ratelimit_remaining) : json(nullptr)},
                   {"ratelimit_window_seconds", s.ratelimit_window_seconds ? json(*s.ratelimit_window_seconds) : json(nullptr)},
                   {"paused_until", stamp(s.paused_until)},
                   {"last_error", s.last_error.empty() ? json(nullptr) : json(s.last_error)},
                   {"last_error_at", stamp(s.last_error_at)}};
  }
  return out;
}

}  // namespace bw::api
