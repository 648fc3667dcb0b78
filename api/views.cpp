#include "api/views.h"

#include <algorithm>
#include <cctype>
#include <iterator>

#include "net/http.h"
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
  // Waiting for a copy: the mirror a change of it names (its last one).
  j["waiting_for"] = nullptr;
  if (d.wait_job) {
    std::string mirror;
    if (body.is_object() && body.contains("changes") && body["changes"].is_array()) {
      for (auto& c : body["changes"]) {
        if (c.is_object() && c.contains("mirror") && c["mirror"].is_object()) mirror = c["mirror"].value("ref", "");
      }
    }
    j["waiting_for"] = {{"copy_job", d.wait_job}, {"mirror", mirror.empty() ? json(nullptr) : json(mirror)}};
  }
  if (with_payload) j["payload"] = body.is_discarded() ? json(d.payload) : body;
  return j;
}

json mirrors_json(db::Store& store, const watcher::Model& model) {
  json out = json::array();
  if (model.mirrored.empty()) return out;  // no row is read when nothing is mirrored
  auto rows = store.list_mirrors();
  auto waiting = store.waiting_by_mirror();
  auto pending = store.pending_copy_jobs();
  std::map<std::string, db::MirrorState> by_mirror;
  if (rows) {
    for (auto& r : *rows) by_mirror.emplace(r.mirror, std::move(r));
  }
  std::map<std::string, const db::CopyJob*> next_job;  // the oldest pending job of each mirror
  if (pending) {
    for (const auto& j : *pending) next_job.emplace(j.mirror, &j);
  }
  for (const auto& [mirror, upstream] : model.mirrored) {
    json m = {{"mirror", mirror}, {"upstream", upstream}};
    auto it = by_mirror.find(mirror);
    const db::MirrorState* row = it == by_mirror.end() ? nullptr : &it->second;
    auto text_or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    m["upstream_digest"] = row ? text_or_null(row->upstream_digest) : json(nullptr);
    m["mirror_digest"] = row ? text_or_null(row->mirror_digest) : json(nullptr);
    m["state"] = row && !row->state.empty() ? row->state : "missing";
    json last_copy = row && !row->last_copy.empty() ? json::parse(row->last_copy, nullptr, false) : json(nullptr);
    m["last_copy"] = last_copy.is_discarded() ? json(nullptr) : last_copy;
    m["last_error"] = row ? text_or_null(row->last_error) : json(nullptr);
    m["checked_at"] = row ? stamp(row->checked_at) : json(nullptr);
    int64_t n = 0;
    if (waiting) {
      if (auto w = waiting->find(mirror); w != waiting->end()) n = w->second;
    }
    m["waiting_deliveries"] = n;
    json job = nullptr;
    if (auto j = next_job.find(mirror); j != next_job.end()) {
      job = {{"id", j->second->id}, {"reason", j->second->reason}, {"digest", j->second->digest},
             {"attempts", j->second->attempts}, {"next_attempt_at", stamp(j->second->next_attempt_at)},
             {"last_error", text_or_null(j->second->last_error)}};
    }
    m["copy_job"] = job;
    out.push_back(std::move(m));
  }
  return out;
}

json delivery_with_last_attempt(db::Store& store, const db::Delivery& d) {
  json j = delivery_json(d, false);
  if (auto attempts = store.list_attempts(d.id); attempts && !attempts->empty()) {
    const auto& a = attempts->back();
    j["last_attempt"] = {{"at", format_rfc3339(from_unix_ms(a.at))}, {"status", a.status}, {"duration_ms", a.duration_ms},
                         {"error", a.error.empty() ? json(nullptr) : json(a.error)},
                         {"output_tail", a.output_tail.empty() ? json(nullptr) : json(a.output_tail)},
                         {"pushed_digest", a.pushed_digest.empty() ? json(nullptr) : json(a.pushed_digest)}};
  }
  return j;
}

json cluster_json(const cluster::View& v) {
  json instances = json::array();
  for (const auto& i : v.instances) {
    instances.push_back({{"id", i.id}, {"host", i.host}, {"pid", i.pid}, {"version", i.version}, {"last_seen", stamp(i.last_seen)}});
  }
  return {{"instance", v.instance},
          {"leader", v.leader.empty() ? json(nullptr) : json(v.leader)},
          {"leader_since", v.leader.empty() ? json(nullptr) : stamp(v.leader_since)},
          {"lease_seconds", v.lease.count() <= 0           ? json(nullptr)
                            : v.lease.count() % 1000 == 0 ? json(v.lease.count() / 1000)
                                                          : json(static_cast<double>(v.lease.count()) / 1000.0)},
          {"instances", instances}};
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

namespace {

std::vector<const ImageItem*> all_items(const watcher::Model& model) {
  std::vector<const ImageItem*> items;
  items.reserve(model.items.size());
  for (const auto& entry : model.items) items.push_back(&entry);
  return items;
}

std::map<std::string, const db::RefState*> rows_by_ref(const std::vector<db::RefState>& refs) {
  std::map<std::string, const db::RefState*> by_ref;
  for (const auto& r : refs) by_ref[r.ref] = &r;
  return by_ref;
}

}  // namespace

json images_json(const std::vector<db::RefState>& refs, const watcher::Model& model) {
  return images_json(refs, all_items(model));
}

json images_json(const std::vector<db::RefState>& refs, const std::vector<const ImageItem*>& items) {
  json out = json::array();
  auto by_ref = rows_by_ref(refs);
  for (const ImageItem* entry : items) {
    const auto& [key, item] = *entry;
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
  return images_json_text(refs, all_items(model));
}

std::string images_json_text(const std::vector<db::RefState>& refs, const std::vector<const ImageItem*>& items) {
  auto by_ref = rows_by_ref(refs);
  std::string out = "[";
  out.reserve(items.size() * 512);
  bool first = true;
  for (const ImageItem* entry : items) {
    const auto& [key, item] = *entry;
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

namespace {

// Digits only (no sign, no spaces), at most 18 of them.
std::optional<size_t> parse_count(const std::string& text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  size_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  return n;
}

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

}  // namespace

std::variant<ImagesQuery, ApiError> parse_images_query(const std::multimap<std::string, std::string>& params) {
  ImagesQuery q;
  if (auto it = params.find("limit"); it != params.end()) {
    auto n = parse_count(it->second);
    if (!n || *n < 1 || *n > k_images_max_limit) {
      return ApiError{400, "invalid limit",
                      "expected an integer from 1 to " + std::to_string(k_images_max_limit) + ", got " + quoted(it->second)};
    }
    q.limit = *n;
  }
  if (auto it = params.find("offset"); it != params.end()) {
    auto n = parse_count(it->second);
    if (!n) return ApiError{400, "invalid offset", "expected an integer of 0 or more, got " + quoted(it->second)};
    q.offset = *n;
  }
  if (auto it = params.find("errors"); it != params.end()) {
    if (it->second != "1" && it->second != "0") return ApiError{400, "invalid errors", "expected 1 or 0, got " + quoted(it->second)};
    q.errors_only = it->second == "1";
  }
  if (auto it = params.find("ref"); it != params.end()) {
    auto parsed = oci::parse_reference(it->second);
    if (!parsed) return ApiError{400, "invalid ref", parsed.error().message};
    q.ref = parsed->tag_ref();
  }
  return q;
}

ImagesPage select_images(const watcher::Model& model, const ImagesQuery& q, const std::set<std::string>& failing) {
  ImagesPage page;
  auto take = [&](auto begin, auto end) {
    for (auto it = begin; it != end && (!q.limit || page.items.size() < *q.limit); ++it) page.items.push_back(&*it);
  };
  if (!q.ref && !q.errors_only && (!q.errors_first || failing.empty())) {
    // The common page: walk to the offset, read nothing else.
    page.total = model.items.size();
    auto it = model.items.begin();
    std::advance(it, std::min(q.offset, page.total));
    take(it, model.items.end());
    return page;
  }
  std::vector<const ImageItem*> matching;
  if (q.ref) {
    auto it = model.items.find(*q.ref);
    if (it != model.items.end() && (!q.errors_only || failing.count(it->first))) matching.push_back(&*it);
  } else {
    matching.reserve(q.errors_only ? failing.size() : model.items.size());
    for (const auto& entry : model.items) {
      if (!q.errors_only || failing.count(entry.first)) matching.push_back(&entry);
    }
  }
  if (q.errors_first && !q.errors_only) {
    std::stable_partition(matching.begin(), matching.end(), [&](const ImageItem* e) { return failing.count(e->first) > 0; });
  }
  page.total = matching.size();
  auto from = matching.begin() + static_cast<std::ptrdiff_t>(std::min(q.offset, matching.size()));
  for (auto it = from; it != matching.end() && (!q.limit || page.items.size() < *q.limit); ++it) page.items.push_back(*it);
  return page;
}

std::string images_link_header(const ImagesQuery& q, size_t total) {
  if (!q.limit) return "";
  size_t limit = *q.limit;
  std::string rest;
  if (q.errors_only) rest += "&errors=1";
  if (q.ref) rest += "&ref=" + net::url_encode(*q.ref);
  auto link = [&](size_t offset, const char* rel) {
    return "</v1/images?limit=" + std::to_string(limit) + "&offset=" + std::to_string(offset) + rest + ">; rel=\"" + rel + "\"";
  };
  std::string out;
  if (q.offset + limit < total) out = link(q.offset + limit, "next");
  if (q.offset > 0) out += (out.empty() ? "" : ", ") + link(q.offset > limit ? q.offset - limit : 0, "prev");
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
