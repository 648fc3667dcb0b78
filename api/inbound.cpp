#include "api/inbound.h"

#include <nlohmann/json.hpp>

#include <array>

#include "oci/reference.h"
#include "util/crypto.h"
#include "util/strings.h"

namespace bw::api::inbound {

using json = nlohmann::json;

namespace {

constexpr std::array<std::string_view, 7> k_formats{"distribution", "dockerhub", "acr", "harbor", "ghcr", "quay", "generic"};

constexpr Millis k_check_slack{1'000};

Error invalid(std::string message) { return make_error(ErrorKind::invalid, std::move(message)); }

// The member `key` of `obj` when it is a string; nullptr when absent or null.
// Any other type is an error naming `where.key`.
Result<const std::string*> opt_string(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return static_cast<const std::string*>(nullptr);
  if (!it->is_string()) return invalid(where + key + ": expected a string");
  return it->get_ptr<const std::string*>();
}

Result<std::string> req_string(const json& obj, const char* key, const std::string& where) {
  BW_TRY(const std::string* s, opt_string(obj, key, where));
  if (!s || s->empty()) return invalid(where + key + ": expected a string");
  return *s;
}

Result<const json*> opt_object(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return static_cast<const json*>(nullptr);
  if (!it->is_object()) return invalid(where + key + ": expected an object");
  return &*it;
}

Result<const json*> req_object(const json& obj, const char* key, const std::string& where) {
  BW_TRY(const json* o, opt_object(obj, key, where));
  if (!o) return invalid(where + key + ": expected an object");
  return o;
}

// Tag grammar of the distribution spec: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  for (size_t i = 0; i < tag.size(); ++i) {
    char c = tag[i];
    bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!word && (i == 0 || (c != '.' && c != '-'))) return false;
  }
  return true;
}

// "https://host:5000/v2/x/manifests/y" -> "host:5000"; "host/x:y" -> "host".
std::string host_of(std::string_view url) {
  if (auto scheme = url.find("://"); scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
  auto end = url.find_first_of("/?#");
  if (end != std::string_view::npos) url = url.substr(0, end);
  if (auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);  // user:pass@
  return std::string(url);
}

// The normalised tag ref of host/repository:tag, checked so that no part
// of the sender's text can smuggle in another registry, tag or digest.
Result<Notice> make_notice(std::string_view host, std::string_view repository, std::string_view tag,
                           std::string_view digest, const std::string& place) {
  // "events[0]." (a field prefix) reads "events[0]: " in front of a message.
  std::string where = !place.empty() && place.back() == '.' ? place.substr(0, place.size() - 1) + ": " : place;
  std::string h = to_lower(host);
  if (h.empty()) return invalid(where + "no registry host");
  // Docker Hub's API hosts name the docker.io that references use.
  if (h == "registry-1.docker.io" || h == "index.docker.io" || h == "registry.hub.docker.com") h = "docker.io";
  // The distribution grammar reads a first component as a host only when it
  // has a '.' or ':' or is localhost; anything else would land on docker.io.
  if (h.find_first_of(".:") == std::string::npos && h != "localhost") {
    return invalid(where + "\"" + std::string(host) + "\" is not a registry host");
  }
  if (!valid_tag(tag)) return invalid(where + "\"" + std::string(tag) + "\" is not a valid tag");
  if (!digest.empty() && !oci::is_valid_digest(digest)) {
    return invalid(where + "\"" + std::string(digest) + "\" is not a valid digest");
  }
  std::string text = h + "/" + std::string(repository) + ":" + std::string(tag);
  auto ref = oci::parse_reference(text);
  if (!ref) return invalid(where + ref.error().message);
  if (ref->tag != tag || ref->pinned()) return invalid(where + "\"" + text + "\" is not a tag reference");
  return Notice{ref->tag_ref(), std::string(digest)};
}

std::string at(const std::string& list, size_t i) { return list + "[" + std::to_string(i) + "]."; }

Status parse_distribution_event(const json& ev, const std::string& where, Parsed& out) {
  if (!ev.is_object()) return invalid(where.substr(0, where.size() - 1) + ": expected an object");
  BW_TRY(std::string action, req_string(ev, "action", where));
  BW_TRY(const json* target, opt_object(ev, "target", where));
  const std::string* tag = nullptr;
  if (target) {
    BW_TRY(tag, opt_string(*target, "tag", where + "target."));
  }
  // Only a push of a tag can move one; pulls (basewatch's own HEADs among
  // them), mounts, deletes and blob uploads are not news.
  if (action != "push" || !tag || tag->empty()) {
    ++out.ignored;
    return ok_status();
  }
  BW_TRY(std::string repository, req_string(*target, "repository", where + "target."));
  BW_TRY(const std::string* digest, opt_string(*target, "digest", where + "target."));
  std::string host;
  BW_TRY(const json* request, opt_object(ev, "request", where));
  if (request) {
    BW_TRY(const std::string* h, opt_string(*request, "host", where + "request."));
    if (h) host = *h;
  }
  if (host.empty()) {
    BW_TRY(const std::string* url, opt_string(*target, "url", where + "target."));
    if (url) host = host_of(*url);
  }
  if (host.empty()) return invalid(where + "request.host: expected a string");
  BW_TRY(Notice n, make_notice(host, repository, *tag, digest ? *digest : "", where));
  out.notices.push_back(std::move(n));
  return ok_status();
}

Result<Parsed> parse_distribution(const json& body) {
  Parsed out;
  auto events = body.find("events");
  if (events == body.end() || !events->is_array()) return invalid("\"events\" must be a list");
  for (size_t i = 0; i < events->size(); ++i) {
    BW_TRY(auto st, parse_distribution_event((*events)[i], at("events", i), out));
    (void)st;
  }
  return out;
}

Result<Parsed> parse_dockerhub(const json& body) {
  Parsed out;
  BW_TRY(const json* push, req_object(body, "push_data", ""));
  BW_TRY(const json* repo, req_object(body, "repository", ""));
  BW_TRY(const std::string* tag, opt_string(*push, "tag", "push_data."));
  if (!tag || tag->empty()) {
    ++out.ignored;
    return out;
  }
  BW_TRY(const std::string* repo_name, opt_string(*repo, "repo_name", "repository."));
  std::string name;
  if (repo_name && !repo_name->empty()) {
    name = *repo_name;
  } else {
    BW_TRY(std::string ns, req_string(*repo, "namespace", "repository."));
    BW_TRY(std::string n, req_string(*repo, "name", "repository."));
    name = ns + "/" + n;
  }
  BW_TRY(Notice n, make_notice("docker.io", name, *tag, "", ""));
  out.notices.push_back(std::move(n));
  return out;
}

Result<Parsed> parse_acr(const json& body) {
  Parsed out;
  BW_TRY(std::string action, req_string(body, "action", ""));
  BW_TRY(const json* target, opt_object(body, "target", ""));
  const std::string* tag = nullptr;
  if (target) {
    BW_TRY(tag, opt_string(*target, "tag", "target."));
  }
  // chart_push, delete, chart_delete, quarantine and ping are not image pushes.
  if (action != "push" || !tag || tag->empty()) {
    ++out.ignored;
    return out;
  }
  BW_TRY(std::string repository, req_string(*target, "repository", "target."));
  BW_TRY(const std::string* digest, opt_string(*target, "digest", "target."));
  BW_TRY(const json* request, req_object(body, "request", ""));
  BW_TRY(std::string host, req_string(*request, "host", "request."));
  BW_TRY(Notice n, make_notice(host, repository, *tag, digest ? *digest : "", ""));
  out.notices.push_back(std::move(n));
  return out;
}

Result<Parsed> parse_harbor(const json& body) {
  Parsed out;
  BW_TRY(std::string type, req_string(body, "type", ""));
  if (type != "PUSH_ARTIFACT") {
    ++out.ignored;
    return out;
  }
  BW_TRY(const json* data, req_object(body, "event_data", ""));
  BW_TRY(const json* repo, req_object(*data, "repository", "event_data."));
  BW_TRY(const std::string* full, opt_string(*repo, "repo_full_name", "event_data.repository."));
  std::string repository;
  if (full && !full->empty()) {
    repository = *full;
  } else {
    BW_TRY(std::string ns, req_string(*repo, "namespace", "event_data.repository."));
    BW_TRY(std::string n, req_string(*repo, "name", "event_data.repository."));
    repository = ns + "/" + n;
  }
  auto resources = data->find("resources");
  if (resources == data->end() || !resources->is_array()) return invalid("event_data.resources: expected a list");
  for (size_t i = 0; i < resources->size(); ++i) {
    std::string where = at("event_data.resources", i);
    const json& r = (*resources)[i];
    if (!r.is_object()) return invalid(where.substr(0, where.size() - 1) + ": expected an object");
    BW_TRY(const std::string* tag, opt_string(r, "tag", where));
    // Pushed by digest: no tag moved. Harbor's own documented example of
    // such a push carries the digest in `tag` ("sha256:..."): the same.
    if (!tag || tag->empty() || oci::is_valid_digest(*tag)) {
      ++out.ignored;
      continue;
    }
    BW_TRY(const std::string* digest, opt_string(r, "digest", where));
    BW_TRY(std::string url, req_string(r, "resource_url", where));
    BW_TRY(Notice n, make_notice(host_of(url), repository, *tag, digest ? *digest : "", where));
    out.notices.push_back(std::move(n));
  }
  return out;
}

Result<Parsed> parse_ghcr(const json& body) {
  Parsed out;
  BW_TRY(const json* pkg, opt_object(body, "registry_package", ""));
  const char* pkg_key = "registry_package.";
  if (!pkg) {
    BW_TRY(pkg, opt_object(body, "package", ""));
    pkg_key = "package.";
  }
  if (!pkg) {
    if (body.contains("zen")) {  // GitHub's ping when a hook is created
      ++out.ignored;
      return out;
    }
    return invalid("registry_package: expected an object");
  }
  std::string where = pkg_key;
  BW_TRY(std::string action, req_string(body, "action", ""));
  BW_TRY(const std::string* type, opt_string(*pkg, "package_type", where));
  bool container = !type || equals_icase(*type, "container") || equals_icase(*type, "docker");
  if ((action != "published" && action != "updated") || !container) {
    ++out.ignored;
    return out;
  }
  BW_TRY(std::string name, req_string(*pkg, "name", where));
  BW_TRY(const std::string* ns, opt_string(*pkg, "namespace", where));
  std::string owner = ns ? *ns : "";
  if (owner.empty()) {
    BW_TRY(const json* o, opt_object(*pkg, "owner", where));
    if (o) {
      BW_TRY(const std::string* login, opt_string(*o, "login", where + "owner."));
      if (login) owner = *login;
    }
  }
  if (owner.empty()) return invalid(where + "namespace: expected a string");
  BW_TRY(const json* version, req_object(*pkg, "package_version", where));
  where += "package_version.";
  BW_TRY(const json* meta, opt_object(*version, "container_metadata", where));
  const json* tag_obj = nullptr;
  if (meta) {
    BW_TRY(tag_obj, opt_object(*meta, "tag", where + "container_metadata."));
  }
  const std::string* tag = nullptr;
  const std::string* digest = nullptr;
  std::string tag_where = where + "container_metadata.tag.";
  if (tag_obj) {
    BW_TRY(tag, opt_string(*tag_obj, "name", tag_where));
    BW_TRY(digest, opt_string(*tag_obj, "digest", tag_where));
  }
  // One notification per manifest: the platform manifests of an index come
  // untagged and say nothing about a tag.
  if (!tag || tag->empty()) {
    ++out.ignored;
    return out;
  }
  // GitHub keeps the owner's and the package's case; ghcr.io names are lowercase.
  BW_TRY(Notice n, make_notice("ghcr.io", to_lower(owner) + "/" + to_lower(name), *tag, digest ? *digest : "", ""));
  out.notices.push_back(std::move(n));
  return out;
}

Result<Parsed> parse_quay(const json& body) {
  Parsed out;
  BW_TRY(std::string repository, req_string(body, "repository", ""));
  BW_TRY(const std::string* docker_url, opt_string(body, "docker_url", ""));
  std::string host = docker_url && !docker_url->empty() ? host_of(*docker_url) : "quay.io";
  auto tags = body.find("updated_tags");
  if (tags == body.end() || !(tags->is_array() || tags->is_object())) return invalid("updated_tags: expected a list");
  std::vector<std::string> names;
  if (tags->is_array()) {
    for (size_t i = 0; i < tags->size(); ++i) {
      if (!(*tags)[i].is_string()) return invalid("updated_tags[" + std::to_string(i) + "]: expected a string");
      names.push_back((*tags)[i].get<std::string>());
    }
  } else {
    // The older form maps each tag to an image id (not a manifest digest).
    for (const auto& [name, value] : tags->items()) names.push_back(name);
  }
  if (names.empty()) ++out.ignored;
  for (size_t i = 0; i < names.size(); ++i) {
    BW_TRY(Notice n, make_notice(host, repository, names[i], "", "updated_tags[" + std::to_string(i) + "]: "));
    out.notices.push_back(std::move(n));
  }
  return out;
}

Result<Notice> generic_ref(const std::string& text, const std::string& digest_field, const std::string& where) {
  auto ref = oci::parse_reference(text);
  if (!ref) return invalid(where + ref.error().message);
  if (ref->tag.empty()) return invalid(where + "\"" + text + "\" names no tag");
  std::string digest = ref->digest.empty() ? digest_field : ref->digest;
  if (!digest.empty() && !oci::is_valid_digest(digest)) return invalid(where + "\"" + digest + "\" is not a valid digest");
  return Notice{ref->tag_ref(), digest};
}

Result<Parsed> parse_generic(const json& body) {
  Parsed out;
  BW_TRY(const std::string* ref, opt_string(body, "ref", ""));
  BW_TRY(const std::string* digest, opt_string(body, "digest", ""));
  if (ref) {
    BW_TRY(Notice n, generic_ref(*ref, digest ? *digest : "", "ref: "));
    out.notices.push_back(std::move(n));
  }
  if (auto refs = body.find("refs"); refs != body.end()) {
    if (!refs->is_array()) return invalid("refs: expected a list");
    for (size_t i = 0; i < refs->size(); ++i) {
      std::string where = "refs[" + std::to_string(i) + "]: ";
      if (!(*refs)[i].is_string()) return invalid(where + "expected a string");
      BW_TRY(Notice n, generic_ref((*refs)[i].get<std::string>(), "", where));
      out.notices.push_back(std::move(n));
    }
  }
  if (out.notices.empty() && !ref) return invalid("expected {\"ref\": \"registry/name:tag\"} or {\"refs\": [...]}");
  return out;
}

// "sha256=<hex>" against the HMAC of body; false for any other form.
bool signature_matches(std::string_view header, const std::string& secret, std::string_view body) {
  std::string_view value = trim(header);
  constexpr std::string_view prefix = "sha256=";
  if (value.size() <= prefix.size() || !starts_with_icase(value, prefix)) return false;
  std::string given = to_lower(value.substr(prefix.size()));
  return constant_time_equals(given, hmac_sha256_hex(secret, body));
}

// "Bearer <secret>" or the bare secret.
bool bearer_matches(std::string_view header, const std::string& secret) {
  std::string_view value = trim(header);
  if (starts_with_icase(value, "Bearer ")) value = trim(value.substr(7));
  return constant_time_equals(value, secret);
}

}  // namespace

bool known_format(std::string_view format) {
  for (auto f : k_formats) {
    if (f == format) return true;
  }
  return false;
}

Result<Parsed> parse(std::string_view format, std::string_view body) {
  if (!known_format(format)) return invalid("unknown format \"" + std::string(format) + "\"");
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return invalid("body is not valid JSON");
  if (!j.is_object()) return invalid("body must be a JSON object");
  try {
    if (format == "distribution") return parse_distribution(j);
    if (format == "dockerhub") return parse_dockerhub(j);
    if (format == "acr") return parse_acr(j);
    if (format == "harbor") return parse_harbor(j);
    if (format == "ghcr") return parse_ghcr(j);
    if (format == "quay") return parse_quay(j);
    return parse_generic(j);
  } catch (const std::exception& e) {  // the edge: nothing above should throw, but a body never crashes us
    return invalid(std::string("body could not be read: ") + e.what());
  }
}

Status authenticate(std::string_view format, const std::string& secret, const Credentials& creds,
                    std::string_view body) {
  if (secret.empty()) return ok_status();
  auto missing = [](const char* what) { return make_error(ErrorKind::unauthorized, std::string("missing secret: ") + what); };
  auto wrong = [] { return make_error(ErrorKind::unauthorized, "wrong secret"); };
  if (format == "dockerhub" || format == "quay") {
    if (creds.token.empty()) return missing("add ?token=<secret> to the hook URL");
    return constant_time_equals(creds.token, secret) ? ok_status() : Status(wrong());
  }
  if (format == "ghcr") {
    if (creds.hub_signature.empty()) return missing("send X-Hub-Signature-256 (the hook's secret)");
    return signature_matches(creds.hub_signature, secret, body) ? ok_status() : Status(wrong());
  }
  if (format == "generic") {
    if (!creds.bw_signature.empty()) return signature_matches(creds.bw_signature, secret, body) ? ok_status() : Status(wrong());
    if (!creds.hub_signature.empty()) return signature_matches(creds.hub_signature, secret, body) ? ok_status() : Status(wrong());
    if (!creds.authorization.empty()) return bearer_matches(creds.authorization, secret) ? ok_status() : Status(wrong());
    return missing("send Authorization: Bearer <secret> or X-Basewatch-Signature-256");
  }
  // distribution, acr, harbor: a header configured on the sender.
  if (creds.authorization.empty()) return missing("send Authorization: Bearer <secret>");
  return bearer_matches(creds.authorization, secret) ? ok_status() : Status(wrong());
}

bool Deduper::first_sight(const Notice& notice, TimePoint now, TimePoint last_checked) {
  std::lock_guard lock(m_mutex);
  if (now - m_last_sweep > m_window) {
    for (auto it = m_seen.begin(); it != m_seen.end();) {
      it = now - it->second >= m_window ? m_seen.erase(it) : std::next(it);
    }
    m_last_sweep = now;
  }
  auto key = std::make_pair(notice.ref, notice.digest);
  auto it = m_seen.find(key);
  bool repeat = it != m_seen.end() && now - it->second < m_window && now >= it->second;
  // Its check already ran. A poll takes "now" just before it picks the due
  // references, so a check that served this notice may be stamped slightly
  // before it: the slack errs towards one more HEAD, never a missed push.
  if (repeat && notice.digest.empty() && last_checked + k_check_slack >= it->second) repeat = false;
  if (repeat) return false;
  m_seen[key] = now;
  return true;
}

void Deduper::forget(const Notice& notice) {
  std::lock_guard lock(m_mutex);
  m_seen.erase(std::make_pair(notice.ref, notice.digest));
}

}  // namespace bw::api::inbound
