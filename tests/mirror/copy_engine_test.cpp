// The Copier against an in-memory registry behind the fake HTTP seam: the
// OCI referrers API (which the CNCF registry 2.8 of the integration tests
// lacks) read from the source and written to a destination without it as
// the sha256-<hex> tag scheme; the order of writes; the mount hints a
// Copier keeps between copies; and the syncer's step function releasing a
// waiting delivery.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <mutex>

#include "db/store.h"
#include "mirror/copy.h"
#include "mirror/syncer.h"
#include "net/http.h"
#include "registry/client.h"
#include "util/crypto.h"

using namespace bw;
using json = nlohmann::json;

namespace {

// A registry that keeps manifests and blobs per repository in memory, with
// or without the referrers API.
class MemoryRegistry {
 public:
  explicit MemoryRegistry(bool referrers_api) : m_referrers_api(referrers_api) {}

  std::string put_blob(const std::string& repo, const std::string& bytes) {
    std::string d = sha256_digest(bytes);
    m_blobs[repo][d] = bytes;
    return d;
  }
  std::string put_manifest(const std::string& repo, const std::string& ref, const std::string& type, const std::string& bytes) {
    std::string d = sha256_digest(bytes);
    m_manifests[repo][d] = {type, bytes};
    if (ref != d) m_tags[repo][ref] = d;
    return d;
  }
  bool has_manifest(const std::string& repo, const std::string& ref) const {
    auto r = m_manifests.find(repo);
    if (r == m_manifests.end()) return false;
    std::string d = ref;
    if (auto t = m_tags.find(repo); t != m_tags.end() && t->second.count(ref)) d = t->second.at(ref);
    return r->second.count(d) > 0;
  }
  std::string manifest(const std::string& repo, const std::string& ref) const {
    std::string d = ref;
    if (auto t = m_tags.find(repo); t != m_tags.end() && t->second.count(ref)) d = t->second.at(ref);
    return m_manifests.at(repo).at(d).second;
  }
  bool has_blob(const std::string& repo, const std::string& d) const {
    auto r = m_blobs.find(repo);
    return r != m_blobs.end() && r->second.count(d);
  }
  std::vector<std::string> log() const {
    std::lock_guard lock(m_mutex);
    return m_log;
  }

  Result<net::Response> handle(const net::Request& req) {
    std::lock_guard lock(m_mutex);
    auto u = net::parse_url(req.url);
    std::string path = u->target.substr(0, u->target.find('?'));
    std::string query = u->target.find('?') == std::string::npos ? "" : u->target.substr(u->target.find('?') + 1);
    m_log.push_back(req.method + " " + path);
    net::Response res;
    res.status = 404;
    auto parts = split_path(path);  // v2, repo..., kind, ref
    if (parts.size() < 4 || parts[0] != "v2") return res;
    std::string ref = parts.back();
    std::string kind = parts[parts.size() - 2];
    std::string repo;
    for (size_t i = 1; i + 2 < parts.size(); ++i) repo += (repo.empty() ? "" : "/") + parts[i];
    if (kind == "uploads" || (parts.size() >= 4 && parts[parts.size() - 2] == "blobs" && ref == "uploads")) {
      // POST /v2/<repo>/blobs/uploads/ (the trailing slash makes ref "uploads")
    }
    if (req.method == "POST" && path.find("/blobs/uploads") != std::string::npos) {
      std::string r2 = path.substr(4, path.find("/blobs/uploads") - 4);
      if (query.find("mount=") != std::string::npos) {
        std::string digest = net_unescape(query.substr(query.find("mount=") + 6, query.find('&') - query.find("mount=") - 6));
        std::string from = net_unescape(query.substr(query.find("from=") + 5));
        if (has_blob(from, digest)) {
          m_blobs[r2][digest] = m_blobs[from][digest];
          res.status = 201;
          return res;
        }
      }
      res.status = 202;
      res.headers.emplace("location", "/v2/" + r2 + "/blobs/uploads/session-" + std::to_string(++m_sessions) + "?state=x");
      return res;
    }
    if (req.method == "PUT" && path.find("/blobs/uploads/") != std::string::npos) {
      std::string r2 = path.substr(4, path.find("/blobs/uploads/") - 4);
      std::string digest = net_unescape(query.substr(query.find("digest=") + 7));
      if (sha256_digest(req.body) != digest) {
        res.status = 400;
        return res;
      }
      m_blobs[r2][digest] = req.body;
      res.status = 201;
      res.headers.emplace("docker-content-digest", digest);
      return res;
    }
    if (kind == "blobs") {
      if (!has_blob(repo, ref)) return res;
      res.status = 200;
      if (req.method == "GET") res.body = m_blobs[repo][ref];
      return res;
    }
    if (kind == "manifests") {
      if (req.method == "PUT") {
        std::string type;
        for (const auto& [k, v] : req.headers) if (k == "Content-Type") type = v;
        std::string d = put_manifest(repo, ref, type, req.body);
        res.status = 201;
        res.headers.emplace("docker-content-digest", d);
        auto j = json::parse(req.body, nullptr, false);
        if (m_referrers_api && j.is_object() && j.contains("subject")) res.headers.emplace("oci-subject", j["subject"]["digest"]);
        return res;
      }
      if (!has_manifest(repo, ref)) return res;
      std::string d = ref;
      if (m_tags[repo].count(ref)) d = m_tags[repo][ref];
      res.status = 200;
      res.headers.emplace("docker-content-digest", d);
      res.headers.emplace("content-type", m_manifests[repo][d].first);
      if (req.method == "GET") res.body = m_manifests[repo][d].second;
      return res;
    }
    if (kind == "referrers") {
      if (!m_referrers_api) return res;
      json index = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", json::array()}};
      for (const auto& [d, m] : m_manifests[repo]) {
        auto j = json::parse(m.second, nullptr, false);
        if (j.is_object() && j.contains("subject") && j["subject"]["digest"] == ref) {
          index["manifests"].push_back({{"mediaType", m.first}, {"digest", d}, {"size", m.second.size()},
                                        {"artifactType", j.value("artifactType", "")}});
        }
      }
      res.status = 200;
      res.body = index.dump();
      res.headers.emplace("content-type", "application/vnd.oci.image.index.v1+json");
      return res;
    }
    return res;
  }

 private:
  static std::vector<std::string> split_path(const std::string& p) {
    std::vector<std::string> out;
    size_t at = 1;
    while (at <= p.size()) {
      size_t slash = p.find('/', at);
      if (slash == std::string::npos) slash = p.size();
      out.push_back(p.substr(at, slash - at));
      at = slash + 1;
    }
    return out;
  }
  static std::string net_unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size()) {
        out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  bool m_referrers_api;
  mutable std::mutex m_mutex;
  std::map<std::string, std::map<std::string, std::string>> m_blobs;
  std::map<std::string, std::map<std::string, std::pair<std::string, std::string>>> m_manifests;
  std::map<std::string, std::map<std::string, std::string>> m_tags;
  std::vector<std::string> m_log;
  int m_sessions = 0;
};

// Two registries on two hosts behind one fake client.
struct Fixture {
  MemoryRegistry src{true}, dst{false};
  net::FakeHttpClient http{[this](const net::Request& req) -> Result<net::Response> {
    if (req.url.find("://src.test") != std::string::npos) return src.handle(req);
    if (req.url.find("://dst.test") != std::string::npos) return dst.handle(req);
    return make_error(ErrorKind::network, "no such host");
  }};
  FakeClock clock;
  registry::Client client{http, clock, [] {
                            registry::RegistrySettings a, b;
                            a.host = "src.test";
                            a.insecure = true;
                            b.host = "dst.test";
                            b.insecure = true;
                            return std::vector<registry::RegistrySettings>{a, b};
                          }()};

  // An image (config + one layer) in `repo` of the source.
  std::string image(const std::string& repo, const std::string& tag, const std::string& seed) {
    std::string config = R"({"architecture":"amd64","os":"linux","seed":")" + seed + "\"}";
    std::string layer = "layer of " + seed;
    json m = {{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", src.put_blob(repo, config)}, {"size", config.size()}}},
              {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"}, {"digest", src.put_blob(repo, layer)}, {"size", layer.size()}}}}};
    return src.put_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", m.dump());
  }
  // An SBOM artifact referring to `subject` through the referrers API.
  std::string sbom(const std::string& repo, const std::string& subject, size_t subject_size) {
    std::string empty = "{}";
    std::string doc = R"({"spdxVersion":"SPDX-2.3"})";
    json m = {{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"artifactType", "application/spdx+json"},
              {"config", {{"mediaType", "application/vnd.oci.empty.v1+json"}, {"digest", src.put_blob(repo, empty)}, {"size", 2}}},
              {"layers", {{{"mediaType", "application/spdx+json"}, {"digest", src.put_blob(repo, doc)}, {"size", doc.size()}}}},
              {"subject", {{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", subject}, {"size", subject_size}}}};
    return src.put_manifest(repo, sha256_digest(m.dump()), "application/vnd.oci.image.manifest.v1+json", m.dump());
  }
};

}  // namespace

TEST_CASE("referrers from the OCI API are copied; a destination without it gets the sha256-<hex> index", "[unit][mirror]") {
  Fixture f;
  std::string image = f.image("team/app", "1", "a");
  std::string sbom = f.sbom("team/app", image, f.src.manifest("team/app", image).size());
  mirror::Copier copier(f.client);
  mirror::CopyOptions o;
  auto r = copier.copy(*oci::parse_reference("src.test/team/app:1"), *oci::parse_reference("dst.test/mirror/app:1"), o);
  REQUIRE(r.ok());
  CHECK(r->digest == image);
  CHECK(r->referrers == 1);
  CHECK(f.dst.has_manifest("mirror/app", sbom));
  // The destination has no referrers API: it lists the SBOM under the tag scheme.
  std::string tag = "sha256-" + image.substr(7);
  REQUIRE(f.dst.has_manifest("mirror/app", tag));
  json index = json::parse(f.dst.manifest("mirror/app", tag));
  REQUIRE(index["manifests"].size() == 1);
  CHECK(index["manifests"][0]["digest"] == sbom);
  CHECK(index["manifests"][0]["artifactType"] == "application/spdx+json");
  // The tag was written last, after the referrer and its index.
  auto log = f.dst.log();
  std::vector<std::string> puts;
  for (const auto& l : log) {
    if (l.rfind("PUT /v2/mirror/app/manifests/", 0) == 0) puts.push_back(l.substr(29));
  }
  REQUIRE(puts.size() == 4);
  CHECK(puts[0] == image);
  CHECK(puts[1] == sbom);
  CHECK(puts[2] == tag);
  CHECK(puts[3] == "1");

  // A second referrer later: merged into the same index.
  std::string second = f.sbom("team/app", image, f.src.manifest("team/app", image).size() + 0);
  (void)second;
  o.force = true;
  r = copier.copy(*oci::parse_reference("src.test/team/app@" + image), *oci::parse_reference("dst.test/mirror/app"), o);
  REQUIRE(r.ok());
  CHECK(json::parse(f.dst.manifest("mirror/app", tag))["manifests"].size() == 1);  // the same SBOM: listed once
}

TEST_CASE("a Copier mounts blobs it put in another repository of the same registry", "[unit][mirror]") {
  Fixture f;
  f.image("team/a", "1", "shared");
  f.image("team/b", "1", "shared");
  mirror::Copier copier(f.client);
  mirror::CopyOptions o;
  o.referrers = false;
  auto a = copier.copy(*oci::parse_reference("src.test/team/a:1"), *oci::parse_reference("dst.test/m/a:1"), o);
  REQUIRE(a.ok());
  CHECK(a->blobs_uploaded == 2);
  auto b = copier.copy(*oci::parse_reference("src.test/team/b:1"), *oci::parse_reference("dst.test/m/b:1"), o);
  REQUIRE(b.ok());
  CHECK(b->blobs_mounted == 2);
  CHECK(b->blobs_uploaded == 0);
  CHECK(copier.known_repository("dst.test", a->digest).has_value() == false);  // manifests are not mount hints
}

TEST_CASE("the syncer copies a due job, releases its delivery with the mirror's digest, and backs off a failure",
          "[unit][mirror]") {
  Fixture f;
  std::string image = f.image("library/alpine", "3.20", "v1");
  auto store = std::move(db::Store::open(":memory:").value());
  auto cfg = std::make_shared<config::Config>(*config::parse(
      "mirrors:\n  - {from: src.test/library/*, to: dst.test/hub/library/*}\nwatch:\n  - ref: src.test/library/alpine:3.20\n"
      "retry: {initial: 10s, max: 1m}\n",
      "c.yaml"));
  mirror::Syncer syncer(cfg, *store, f.client, f.clock);
  db::CopyJob job;
  job.mirror = "dst.test/hub/library/alpine:3.20";
  job.upstream = "src.test/library/alpine:3.20";
  job.digest = image;
  job.reason = "change";
  job.created_at = job.next_attempt_at = to_unix_ms(f.clock.now());
  auto id = store->add_copy_job(job);
  REQUIRE(id.ok());
  db::Delivery d;
  d.id = "d_1";
  d.trigger = "ci";
  d.project = "web";
  d.created_at = d.next_attempt_at = to_unix_ms(f.clock.now());
  d.wait_job = *id;
  d.payload = json{{"changes", {{{"ref", job.upstream}, {"new_digest", image}, {"mirror", {{"ref", job.mirror}, {"digest", ""}}}}}}}.dump();
  REQUIRE(store->add_delivery(d).ok());
  int woken = 0;
  syncer.on_release([&] { ++woken; });

  auto stats = syncer.sync_once(f.clock.now());
  CHECK(stats.copied == 1);
  CHECK(stats.released == 1);
  CHECK(woken == 1);
  CHECK(f.dst.has_manifest("hub/library/alpine", "3.20"));
  auto released = store->get_delivery("d_1");
  CHECK((*released)->wait_job == 0);
  CHECK(json::parse((*released)->payload)["changes"][0]["mirror"]["digest"] == image);
  auto row = store->get_mirror(job.mirror);
  REQUIRE(row->has_value());
  CHECK((*row)->state == "in-sync");
  CHECK((*row)->mirror_digest == image);
  CHECK((*store->get_copy_job(*id))->state == "done");

  // A job whose upstream digest is gone: failed, retried after the backoff.
  job.digest = "sha256:" + std::string(64, 'f');
  auto missing = store->add_copy_job(job);
  stats = syncer.sync_once(f.clock.now());
  CHECK(stats.failed == 1);
  auto failed = store->get_copy_job(*missing);
  CHECK((*failed)->state == "pending");
  CHECK((*failed)->attempts == 1);
  CHECK((*failed)->last_error.find("MANIFEST") == std::string::npos);  // the fake answers a bare 404
  int64_t wait = (*failed)->next_attempt_at - to_unix_ms(f.clock.now());
  CHECK(wait >= 8'000);
  CHECK(wait <= 12'000);
  CHECK((*store->get_mirror(job.mirror))->state == "failed");
  CHECK(syncer.sync_once(f.clock.now()).failed == 0);  // not due yet
}
