#include "mirror/copy.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "net/http.h"
#include "oci/ratelimit.h"
#include "util/crypto.h"
#include "util/strings.h"

namespace bw::mirror {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

constexpr int k_max_depth = 4;                // nested indexes
constexpr size_t k_blob_workers = 4;          // blobs in flight per copy
constexpr size_t k_max_known_blobs = 100'000; // mount hints kept per process
constexpr std::chrono::seconds k_max_wait_for_pause{60};
// Every manifest type the engine copies, in one Accept header.
constexpr const char* k_manifest_accept =
    "application/vnd.oci.image.index.v1+json,"
    "application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.list.v2+json,"
    "application/vnd.docker.distribution.manifest.v2+json,"
    "application/vnd.oci.artifact.manifest.v1+json";

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) : d; }

std::string base_type(const std::string& t) {
  auto semi = t.find(';');
  return std::string(trim(t.substr(0, semi)));
}

bool retryable(const Error& e) {
  return e.kind == ErrorKind::network || e.kind == ErrorKind::timeout || e.kind == ErrorKind::server ||
         e.kind == ErrorKind::rate_limited;
}

registry::Client::Access pull(const std::string& repo) {
  registry::Client::Access a;
  a.repository = repo;
  return a;
}

registry::Client::Access push(const std::string& repo) {
  registry::Client::Access a = pull(repo);
  a.push = true;
  return a;
}

// The upload protocol against one destination repository: POST, PATCH, PUT,
// the mount and its fallbacks, manifest PUTs with their digest checked.
class Pusher {
 public:
  Pusher(registry::Client& client, const oci::Reference& dst) : m_client(client), m_dst(dst) {}

  const std::string& host() const { return m_dst.registry; }
  const std::string& repository() const { return m_dst.repository; }
  std::string name() const { return m_dst.name(); }

  // 200: there; 404: not there; anything else is an error.
  Result<bool> has_blob(const Descriptor& d) {
    net::Request req;
    req.method = "HEAD";
    req.url = "/v2/" + m_dst.repository + "/blobs/" + d.digest;
    BW_TRY(auto res, m_client.send(host(), push(repository()), req, name() + "@" + short_digest(d.digest)));
    if (res.status == 200) return true;
    if (res.status == 404) return false;
    return oci::status_error(res.status, res.body, "HEAD " + name() + " blob " + short_digest(d.digest));
  }

  struct Session {
    std::string location;  // absolute URL of the upload
    size_t min_chunk = 0;  // OCI-Chunk-Min-Length, 0 when not said
  };
  struct MountResult {
    bool mounted = false;
    std::optional<Session> session;  // a 202: the registry opened an upload instead
  };

  // POST ?mount=&from=: 201 mounted; 202 an upload session to use; any
  // other answer (or error) means "upload it": the caller falls back.
  MountResult mount(const Descriptor& d, const std::string& from) {
    registry::Client::Access a = push(repository());
    a.mount_from = {from};
    net::Request req;
    req.method = "POST";
    req.url = "/v2/" + m_dst.repository + "/blobs/uploads/?mount=" + net::url_encode(d.digest) + "&from=" + net::url_encode(from);
    auto res = m_client.send(host(), a, req, name() + " mount " + short_digest(d.digest));
    MountResult out;
    if (!res) return out;
    if (res->status == 201) {
      out.mounted = true;
    } else if (res->status == 202) {
      if (auto s = session_of(*res, req.url)) out.session = *s;
    }
    return out;
  }

  Result<Session> start() {
    net::Request req;
    req.method = "POST";
    req.url = "/v2/" + m_dst.repository + "/blobs/uploads/";
    BW_TRY(auto res, m_client.send(host(), push(repository()), req, "start an upload to " + name()));
    if (res.status != 202) return oci::status_error(res.status, res.body, "POST " + name() + " upload");
    auto s = session_of(res, req.url);
    if (!s) return make_error(ErrorKind::bad_answer, "POST " + name() + " upload: 202 without a Location");
    return *s;
  }

  // PATCH the next chunk; the session's Location moves on.
  Status patch(Session& s, int64_t offset, std::string& bytes) {
    net::Request req;
    req.method = "PATCH";
    req.url = s.location;
    req.headers = {{"Content-Type", "application/octet-stream"},
                   {"Content-Range", std::to_string(offset) + "-" + std::to_string(offset + int64_t(bytes.size()) - 1)}};
    const int64_t sent = int64_t(bytes.size());
    req.body = std::move(bytes);  // lent, not copied: a chunk is megabytes
    bytes.clear();
    auto res = m_client.send(host(), push(repository()), std::move(req), "PATCH " + name() + " upload");
    if (!res) return res.error();
    if (res->status != 202) {
      return oci::status_error(res->status, res->body,
                               "PATCH " + name() + " upload at " + std::to_string(offset) +
                                   (res->status == 416 ? " (the registry holds another range)" : ""));
    }
    // Range: 0-<end> (distribution writes bytes=0-<end>): the registry must hold what we sent.
    std::string range = res->header("range");
    if (range.rfind("bytes=", 0) == 0) range = range.substr(6);
    auto dash = range.find('-');
    int64_t end = offset + sent - 1;
    if (dash != std::string::npos && range.substr(dash + 1) != std::to_string(end)) {
      return make_error(ErrorKind::bad_answer, "PATCH " + name() + " upload: the registry holds " + range + ", expected 0-" +
                                                   std::to_string(end));
    }
    if (auto next = session_of(*res, s.location)) s.location = next->location;
    return ok_status();
  }

  // PUT ?digest= with the last bytes; the registry must answer the digest.
  Status finish(const Session& s, const std::string& digest, std::string& last) {
    net::Request req;
    req.method = "PUT";
    req.url = s.location + (s.location.find('?') == std::string::npos ? "?" : "&") + "digest=" + net::url_encode(digest);
    req.headers = {{"Content-Type", "application/octet-stream"}};
    req.body = std::move(last);
    last.clear();
    auto res = m_client.send(host(), push(repository()), std::move(req), "PUT " + name() + " blob " + short_digest(digest));
    if (!res) return res.error();
    if (res->status != 201) return oci::status_error(res->status, res->body, "PUT " + name() + " blob " + short_digest(digest));
    std::string got = res->header("docker-content-digest");
    if (!got.empty() && got != digest) {
      return make_error(ErrorKind::bad_answer, "PUT " + name() + " blob: the registry stored " + got + " for " + digest);
    }
    return ok_status();
  }

  void cancel(const Session& s) {
    net::Request req;
    req.method = "DELETE";
    req.url = s.location;
    (void)m_client.send(host(), push(repository()), req, "DELETE " + name() + " upload");
  }

  // PUT a manifest's exact bytes under `reference` (a digest or a tag); the
  // destination must answer the digest the bytes have. Returns the answer's
  // OCI-Subject header ("" when absent: no referrers API there).
  Result<std::string> put_manifest(const std::string& reference, const std::string& media_type, const std::string& body) {
    std::string digest = sha256_digest(body);
    net::Request req;
    req.method = "PUT";
    req.url = "/v2/" + m_dst.repository + "/manifests/" + reference;
    req.headers = {{"Content-Type", media_type}};
    req.body = body;
    std::string what = name() + (reference.rfind("sha256:", 0) == 0 ? "@" + short_digest(reference) : ":" + reference);
    BW_TRY(auto res, m_client.send(host(), push(repository()), req, "PUT " + what));
    if (res.status != 201 && res.status != 200) return oci::status_error(res.status, res.body, "PUT manifest " + what);
    std::string got = res.header("docker-content-digest");
    if (!got.empty() && got != digest) {
      return make_error(ErrorKind::bad_answer, "PUT manifest " + what + ": the registry answered " + got + " for bytes hashing to " +
                                                   digest + " (it changed the manifest)");
    }
    return res.header("oci-subject");
  }

  // The digest `tag` names at the destination, "" when absent.
  Result<std::string> tag_digest(const std::string& tag) {
    net::Request req;
    req.method = "HEAD";
    req.url = "/v2/" + m_dst.repository + "/manifests/" + tag;
    req.headers = {{"Accept", k_manifest_accept}};
    BW_TRY(auto res, m_client.send(host(), push(repository()), req, "HEAD " + name() + ":" + tag));
    if (res.status == 404) return std::string();
    if (res.status != 200) return oci::status_error(res.status, res.body, "HEAD " + name() + ":" + tag);
    std::string d = res.header("docker-content-digest");
    if (d.empty()) return make_error(ErrorKind::bad_answer, "HEAD " + name() + ":" + tag + ": no Docker-Content-Digest");
    return d;
  }

 private:
  // The upload URL of an answer: Location resolved against the request
  // (absolute, absolute path, or relative to the request's folder), its
  // query kept.
  std::optional<Session> session_of(const net::Response& res, const std::string& request_url) {
    std::string loc = res.header("location");
    if (loc.empty()) return std::nullopt;
    Session s;
    if (loc.rfind("http://", 0) != 0 && loc.rfind("https://", 0) != 0) {
      std::string base = request_url;
      if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0) base = m_client.api_base(host()) + base;
      auto u = net::parse_url(base);
      if (!u) return std::nullopt;
      if (loc[0] == '/') {
        loc = u->origin() + loc;
      } else {
        std::string path = u->target.substr(0, u->target.find('?'));
        loc = u->origin() + path.substr(0, path.rfind('/') + 1) + loc;
      }
    }
    s.location = loc;
    std::string min = res.header("oci-chunk-min-length");
    if (!min.empty() && std::all_of(min.begin(), min.end(), [](char c) { return c >= '0' && c <= '9'; }) && min.size() < 12) {
      s.min_chunk = std::stoull(min);
    }
    return s;
  }

  registry::Client& m_client;
  oci::Reference m_dst;
};

// Reads the source: manifests by digest or tag, blobs streamed.
class Puller {
 public:
  Puller(registry::Client& client, const oci::Reference& src) : m_client(client), m_src(src) {}
  std::string name() const { return m_src.name(); }
  const std::string& host() const { return m_src.registry; }

  // The manifest `reference` names; checked against `expect` (digest and
  // size) when given.
  Result<Node> manifest(const std::string& reference, const Descriptor* expect = nullptr) {
    net::Request req;
    req.method = "GET";
    req.url = "/v2/" + m_src.repository + "/manifests/" + reference;
    req.headers = {{"Accept", k_manifest_accept}};
    bool by_digest = reference.rfind("sha256:", 0) == 0 || reference.rfind("sha512:", 0) == 0;
    std::string what = name() + (by_digest ? "@" + short_digest(reference) : ":" + reference);
    BW_TRY(auto res, m_client.send(m_src.registry, pull(m_src.repository), req, "GET " + what));
    if (res.status != 200) return oci::status_error(res.status, res.body, "GET manifest " + what);
    if (res.body.size() > k_max_manifest_bytes) return make_error(ErrorKind::bad_answer, what + ": manifest too large");
    Node n;
    n.body = std::move(res.body);
    n.digest = sha256_digest(n.body);
    if (by_digest && n.digest != reference) {
      return make_error(ErrorKind::bad_answer, what + ": the registry sent a manifest whose bytes hash to " + n.digest);
    }
    std::string header = res.header("docker-content-digest");
    if (!by_digest && !header.empty() && header != n.digest) {
      return make_error(ErrorKind::bad_answer, what + ": Docker-Content-Digest says " + header + " but the bytes hash to " + n.digest);
    }
    if (expect && int64_t(n.body.size()) != expect->size) {
      return make_error(ErrorKind::bad_answer, what + ": " + std::to_string(n.body.size()) + " bytes, but its descriptor says " +
                                                   std::to_string(expect->size));
    }
    auto parsed = parse_manifest(n.body, base_type(res.header("content-type")));
    if (!parsed) return make_error(ErrorKind::bad_answer, what + ": " + parsed.error().message);
    n.manifest = std::move(*parsed);
    n.media_type = n.manifest.media_type;
    if (expect && !expect->media_type.empty() && base_type(expect->media_type) != n.media_type) {
      return make_error(ErrorKind::bad_answer, what + ": the index says " + expect->media_type + " but the manifest is " + n.media_type);
    }
    return n;
  }

  // Streams a blob's bytes to `sink` (false from the sink stops it).
  Result<net::Response> blob(const Descriptor& d, std::function<bool(std::string_view)> sink) {
    registry::Client::Access a = pull(m_src.repository);
    a.follow_redirects = true;
    net::Request req;
    req.method = "GET";
    req.url = "/v2/" + m_src.repository + "/blobs/" + d.digest;
    req.body_sink = std::move(sink);
    return m_client.send(m_src.registry, a, req, "GET " + name() + " blob " + short_digest(d.digest));
  }

  // Referrers of `digest` from the OCI referrers API: nullopt when the
  // registry has no such API (404 and friends), else the descriptors.
  Result<std::optional<std::vector<Descriptor>>> referrers(const std::string& digest) {
    net::Request req;
    req.method = "GET";
    req.url = "/v2/" + m_src.repository + "/referrers/" + digest;
    req.headers = {{"Accept", "application/vnd.oci.image.index.v1+json"}};
    BW_TRY(auto res, m_client.send(m_src.registry, pull(m_src.repository), req, "GET " + name() + " referrers"));
    if (res.status != 200) return std::optional<std::vector<Descriptor>>();
    auto parsed = parse_manifest(res.body, "application/vnd.oci.image.index.v1+json");
    if (!parsed || !parsed->index) return std::optional<std::vector<Descriptor>>();
    return std::optional<std::vector<Descriptor>>(parsed->manifests);
  }

  // Whether `tag` exists at the source (HEAD; never counted as a pull).
  Result<bool> has_tag(const std::string& tag) {
    net::Request req;
    req.method = "HEAD";
    req.url = "/v2/" + m_src.repository + "/manifests/" + tag;
    req.headers = {{"Accept", k_manifest_accept}};
    BW_TRY(auto res, m_client.send(m_src.registry, pull(m_src.repository), req, "HEAD " + name() + ":" + tag));
    if (res.status == 200) return true;
    if (res.status == 404) return false;
    return oci::status_error(res.status, res.body, "HEAD " + name() + ":" + tag);
  }

 private:
  registry::Client& m_client;
  oci::Reference m_src;
};

// Reads every manifest below `root` into `nodes` (children by digest,
// checked against their descriptors). `only` limits the root's children.
Status fetch_graph(Puller& src, const Node& root, const std::set<std::string>* only, std::map<std::string, Node>& nodes,
                   int depth = 0) {
  if (depth > k_max_depth) return make_error(ErrorKind::bad_answer, src.name() + ": indexes nested deeper than " + std::to_string(k_max_depth));
  for (const auto& child : root.manifest.manifests) {
    if (only && !only->count(child.digest)) continue;
    if (nodes.count(child.digest)) continue;
    if (!is_copyable_manifest(child.media_type) && !child.media_type.empty()) {
      return make_error(ErrorKind::bad_answer, src.name() + "@" + short_digest(root.digest) + ": entry " + short_digest(child.digest) +
                                                   " has media type " + child.media_type + ", not a manifest");
    }
    BW_TRY(auto n, src.manifest(child.digest, &child));
    auto it = nodes.emplace(child.digest, std::move(n)).first;
    if (it->second.manifest.index) {
      BW_TRY(auto x, fetch_graph(src, it->second, nullptr, nodes, depth + 1));
      (void)x;
    }
  }
  return ok_status();
}

void post_order(const Node& n, const std::map<std::string, Node>& nodes, std::set<std::string>& seen,
                std::vector<const Node*>& out) {
  for (const auto& child : n.manifest.manifests) {
    auto it = nodes.find(child.digest);
    if (it == nodes.end() || seen.count(child.digest)) continue;
    seen.insert(child.digest);
    post_order(it->second, nodes, seen, out);
    out.push_back(&it->second);
  }
}

}  // namespace

Plan plan_copy(const Node& root, const std::map<std::string, Node>& nodes) {
  Plan p;
  std::set<std::string> seen;
  post_order(root, nodes, seen, p.manifests);
  p.manifests.push_back(&root);
  std::set<std::string> blobs;
  for (const Node* n : p.manifests) {
    for (const auto& b : n->manifest.blobs) {
      if (!blobs.insert(b.digest).second) continue;
      p.blobs.push_back(b);
      p.blob_bytes += b.size;
    }
  }
  return p;
}

std::optional<std::string> Copier::known_repository(const std::string& host, const std::string& digest) const {
  std::lock_guard lock(m_mutex);
  auto h = m_known.find(host);
  if (h == m_known.end()) return std::nullopt;
  auto d = h->second.find(digest);
  if (d == h->second.end()) return std::nullopt;
  return d->second;
}

void Copier::remember(const std::string& host, const std::string& digest, const std::string& repository) {
  std::lock_guard lock(m_mutex);
  if (m_known_count >= k_max_known_blobs) {
    m_known.clear();  // hints, not state: start over rather than grow
    m_known_count = 0;
  }
  if (m_known[host].insert_or_assign(digest, repository).second) ++m_known_count;
}

namespace {

// One blob into the destination: there already, mounted, or streamed from
// the source through a buffer of at most chunk_size, its digest and size
// checked on the way.
struct BlobCopy {
  registry::Client& client;
  Puller& src;
  Pusher& dst;
  const CopyOptions& options;
  std::function<void(int64_t)> on_bytes;  // bytes moved, as they go

  enum class How { skipped, mounted, uploaded };

  Result<How> run(const Descriptor& d, const std::optional<std::string>& mount_from) {
    BW_TRY(bool there, dst.has_blob(d));
    if (there) return How::skipped;
    std::optional<Pusher::Session> session;
    if (mount_from && *mount_from != dst.repository()) {
      auto m = dst.mount(d, *mount_from);
      if (m.mounted) return How::mounted;
      session = m.session;  // 202: the registry opened an upload; use it
    }
    BW_TRY(auto x, upload(d, session));
    (void)x;
    return How::uploaded;
  }

  Status upload(const Descriptor& d, std::optional<Pusher::Session> session) {
    if (!session) {
      BW_TRY(auto s, dst.start());
      session = s;
    }
    size_t chunk = std::max(options.chunk_size, session->min_chunk);
    bool chunked = d.size > int64_t(chunk);
    Sha256 hash;
    int64_t received = 0, offset = 0;
    std::string buffer;
    buffer.reserve(std::min<int64_t>(d.size, int64_t(chunk)) + (64 << 10));
    std::optional<Error> failed;
    auto sink = [&](std::string_view piece) {
      received += int64_t(piece.size());
      if (received > d.size) {
        failed = make_error(ErrorKind::bad_answer, src.name() + " blob " + d.digest + ": more bytes than the " +
                                                       std::to_string(d.size) + " its descriptor says");
        return false;
      }
      hash.update(piece);
      buffer.append(piece);
      if (chunked && buffer.size() >= chunk) {
        int64_t n = int64_t(buffer.size());
        auto st = dst.patch(*session, offset, buffer);
        if (!st) {
          failed = st.error();
          return false;
        }
        offset += n;
        buffer.clear();
        buffer.reserve(std::min<int64_t>(d.size - offset, int64_t(chunk)) + (64 << 10));
      }
      if (on_bytes) on_bytes(int64_t(piece.size()));
      return true;
    };
    auto res = src.blob(d, sink);
    auto give_up = [&](Error e) -> Status {
      dst.cancel(*session);
      return e;
    };
    if (failed) return give_up(*failed);
    if (!res) return give_up(res.error());
    if (res->status != 200) return give_up(oci::status_error(res->status, res->body, "GET " + src.name() + " blob " + short_digest(d.digest)));
    if (received != d.size) {
      return give_up(make_error(ErrorKind::bad_answer, src.name() + " blob " + d.digest + ": " + std::to_string(received) +
                                                           " bytes, but its descriptor says " + std::to_string(d.size)));
    }
    if (hash.digest() != d.digest) {
      return give_up(make_error(ErrorKind::bad_answer,
                                src.name() + " blob " + d.digest + ": the bytes hash to " + hash.digest() + " (the registry sent other content)"));
    }
    auto st = dst.finish(*session, d.digest, buffer);
    if (!st) return give_up(st.error());
    return ok_status();
  }
};

}  // namespace

Result<CopyReport> Copier::copy(const oci::Reference& source, const oci::Reference& destination, const CopyOptions& o) {
  auto started = std::chrono::steady_clock::now();
  CopyReport report;
  report.source = source.str();
  report.destination = destination.str();
  Puller src(m_client, source);
  Pusher dst(m_client, destination);

  BW_TRY(Node root, src.manifest(source.pinned() ? source.digest : source.tag));
  report.source_digest = root.digest;
  std::map<std::string, Node> nodes;
  std::set<std::string> only;
  if (!o.platforms.empty()) {
    if (!root.manifest.index) {
      return make_error(ErrorKind::invalid, report.source + " is a single-platform image (" + root.media_type +
                                                "): --platform chooses among the platforms of an index");
    }
    auto filtered = filter_index(root.body, o.platforms);
    if (!filtered) return make_error(filtered.error().kind, report.source + ": " + filtered.error().message);
    only.insert(filtered->kept.begin(), filtered->kept.end());
    report.dropped_platforms = filtered->dropped;
    root.body = std::move(filtered->body);
    root.digest = sha256_digest(root.body);
    auto reparsed = parse_manifest(root.body, root.media_type);
    if (!reparsed) return reparsed.error();
    root.manifest = std::move(*reparsed);
  }
  report.digest = root.digest;

  // What the destination's tag names now: the same digest is a copy already
  // made; another one is only moved with force.
  const std::string dst_tag = destination.tag;
  if (!dst_tag.empty()) {
    BW_TRY(report.previous_digest, dst.tag_digest(dst_tag));
    if (report.previous_digest == root.digest) {
      report.already = true;
      report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      return report;
    }
    if (!report.previous_digest.empty() && !o.force) {
      return make_error(ErrorKind::invalid, destination.str() + " names other content (" + report.previous_digest +
                                                "); --force moves it to " + root.digest);
    }
  }

  BW_TRY(auto fetched, fetch_graph(src, root, o.platforms.empty() ? nullptr : &only, nodes));
  (void)fetched;
  Plan plan = plan_copy(root, nodes);

  // Blobs, a few at a time.
  Progress progress;
  progress.blobs_total = int(plan.blobs.size());
  progress.bytes_total = plan.blob_bytes;
  std::mutex mutex;
  auto report_progress = [&] {
    if (o.progress) o.progress(progress);
  };
  std::optional<Error> first_error;
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (;;) {
      size_t i = next++;
      if (i >= plan.blobs.size()) return;
      {
        std::lock_guard lock(mutex);
        if (first_error) return;
      }
      const Descriptor& d = plan.blobs[i];
      int64_t moved = 0;
      BlobCopy bc{m_client, src, dst, o, [&](int64_t n) {
                    std::lock_guard lock(mutex);
                    moved += n;
                    progress.bytes_done += n;
                    report_progress();
                  }};
      Result<BlobCopy::How> how = make_error(ErrorKind::internal, "not tried");
      auto pause = o.retry_pause;
      for (int attempt = 1; attempt <= std::max(1, o.blob_attempts); ++attempt) {
        how = bc.run(d, known_repository(dst.host(), d.digest));
        if (how || !retryable(how.error()) || attempt == o.blob_attempts) break;
        {
          std::lock_guard lock(mutex);
          progress.bytes_done -= moved;  // it starts again from the first byte
          moved = 0;
        }
        // A registry paused by Retry-After or the breaker: wait it out when short.
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(m_client.available_at(dst.host()) - Clock::now());
        wait = std::max(wait, std::chrono::duration_cast<std::chrono::milliseconds>(m_client.available_at(src.host()) - Clock::now()));
        if (wait > k_max_wait_for_pause) break;
        spdlog::warn("copy {}: blob {} attempt {} failed ({}); trying again", report.destination, short_digest(d.digest), attempt,
                     how.error().message);
        std::this_thread::sleep_for(std::max(pause, wait));
        pause *= 2;
      }
      std::lock_guard lock(mutex);
      if (!how) {
        if (!first_error) first_error = how.error();
        return;
      }
      remember(dst.host(), d.digest, dst.repository());
      switch (*how) {
        case BlobCopy::How::skipped:
          ++report.blobs_skipped;
          report.bytes_skipped += d.size;
          break;
        case BlobCopy::How::mounted:
          ++report.blobs_mounted;
          report.bytes_mounted += d.size;
          break;
        case BlobCopy::How::uploaded:
          ++report.blobs_uploaded;
          report.bytes_uploaded += d.size;
          break;
      }
      progress.bytes_done += d.size - moved;
      ++progress.blobs_done;
      report_progress();
    }
  };
  {
    std::vector<std::thread> threads;
    size_t n = std::min(k_blob_workers, plan.blobs.size());
    for (size_t t = 0; t + 1 < n; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
  }
  if (first_error) return *first_error;

  // Manifests by digest, children first; the root last.
  for (const Node* n : plan.manifests) {
    BW_TRY(auto subject, dst.put_manifest(n->digest, n->media_type, n->body));
    (void)subject;
    ++report.manifests;
  }

  // What refers to the copied manifests, before the tag moves: a verifier
  // that sees the new tag finds its signature already there.
  if (o.referrers) {
    std::vector<std::string> subjects{report.source_digest};
    for (const Node* n : plan.manifests) {
      if (n->digest != root.digest) subjects.push_back(n->digest);
    }
    BW_TRY(auto api, src.referrers(report.source_digest));
    if (api) {
      std::vector<Descriptor> found = *api;
      for (size_t i = 1; i < subjects.size(); ++i) {
        BW_TRY(auto more, src.referrers(subjects[i]));
        if (more) found.insert(found.end(), more->begin(), more->end());
      }
      std::map<std::string, std::vector<Descriptor>> fallback;  // subject -> referrers the destination must list itself
      std::set<std::string> done;
      for (const auto& r : found) {
        if (!done.insert(r.digest).second) continue;
        BW_TRY(Node rn, src.manifest(r.digest, &r));
        std::map<std::string, Node> rnodes;
        BW_TRY(auto g, fetch_graph(src, rn, nullptr, rnodes));
        (void)g;
        Plan rp = plan_copy(rn, rnodes);
        for (const auto& b : rp.blobs) {
          BlobCopy bc{m_client, src, dst, o, nullptr};
          BW_TRY(auto how, bc.run(b, known_repository(dst.host(), b.digest)));
          (void)how;
          remember(dst.host(), b.digest, dst.repository());
        }
        std::string subject_header;
        for (const Node* m : rp.manifests) {
          BW_TRY(subject_header, dst.put_manifest(m->digest, m->media_type, m->body));
        }
        if (subject_header.empty() && rn.manifest.subject) fallback[rn.manifest.subject->digest].push_back(r);
        ++report.referrers;
      }
      // A destination without the referrers API: the tag scheme's index
      // (sha256-<hex> listing the referrers), merged with what it lists.
      for (const auto& [subject, list] : fallback) {
        std::string tag = "sha256-" + subject.substr(7);
        ordered_json index = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"},
                              {"manifests", ordered_json::array()}};
        oci::Reference at = destination;
        at.tag = tag;
        at.digest.clear();
        Puller existing(m_client, at);
        if (auto e = existing.manifest(tag); e && e->manifest.index) {
          auto j = ordered_json::parse(e->body, nullptr, false);
          if (j.is_object() && j.contains("manifests") && j["manifests"].is_array()) index = j;
        }
        std::set<std::string> listed;
        for (const auto& m : index["manifests"]) {
          if (m.is_object() && m.contains("digest") && m["digest"].is_string()) listed.insert(m["digest"].get<std::string>());
        }
        for (const auto& r : list) {
          if (listed.count(r.digest)) continue;
          ordered_json d = {{"mediaType", r.media_type}, {"digest", r.digest}, {"size", r.size}};
          if (!r.artifact_type.empty()) d["artifactType"] = r.artifact_type;
          index["manifests"].push_back(d);
        }
        BW_TRY(auto s, dst.put_manifest(tag, "application/vnd.oci.image.index.v1+json", index.dump()));
        (void)s;
      }
    } else {
      // No referrers API at the source: cosign's tag scheme for the root.
      std::string hex = report.source_digest.substr(report.source_digest.find(':') + 1);
      for (const char* suffix : {"", ".sig", ".att", ".sbom"}) {
        std::string tag = "sha256-" + hex + suffix;
        BW_TRY(bool there, src.has_tag(tag));
        if (!there) continue;
        oci::Reference from = source, to = destination;
        from.tag = to.tag = tag;
        from.digest.clear();
        to.digest.clear();
        CopyOptions sub = o;
        sub.platforms.clear();
        sub.referrers = false;
        sub.force = true;  // a signature tag follows its source
        sub.progress = nullptr;
        BW_TRY(auto r, copy(from, to, sub));
        report.referrers += 1;
        report.blobs_uploaded += r.blobs_uploaded;
        report.blobs_mounted += r.blobs_mounted;
        report.blobs_skipped += r.blobs_skipped;
        report.bytes_uploaded += r.bytes_uploaded;
      }
    }
  }

  // The tag last: from here on it names content the destination holds.
  if (!dst_tag.empty()) {
    BW_TRY(auto s, dst.put_manifest(dst_tag, root.media_type, root.body));
    (void)s;
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace bw::mirror
