// The registry client against REAL docker-registry instances on loopback:
// htpasswd Basic auth, token auth with a real token issuer, a multi-arch index
// watched by the real basewatch binary, and a proxy in front of the registry
// that answers 429 or strips Docker-Content-Digest.
#include <csignal>
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <atomic>
#include <cstdlib>

#include "net/http.h"
#include "registry/client.h"
#include "tests/integration/helpers.h"
#include "util/crypto.h"
#include "util/metrics.h"

using namespace bw;
using namespace bw::testing;
using json = nlohmann::json;

namespace {

oci::Platform plat(const std::string& s) { return *oci::parse_platform(s); }
oci::Reference parse_ref(const std::string& s) { return *oci::parse_reference(s); }

registry::RegistrySettings insecure(const std::string& host) {
  registry::RegistrySettings s;
  s.host = host;
  s.insecure = true;
  s.timeout = Millis(5000);
  return s;
}

// A temporary PATH holding executable helper scripts.
struct HelperPath {
  TempDir dir{"bw-credhelper"};
  std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  HelperPath() { ::setenv("PATH", (dir.path() + ":" + old_path).c_str(), 1); }
  ~HelperPath() { ::setenv("PATH", old_path.c_str(), 1); }
  void add(const std::string& name, const std::string& script) {
    std::string path = dir.write("docker-credential-" + name, script);
    ::chmod(path.c_str(), 0755);
  }
};

// A cpp-httplib server forwarding /v2/ requests to a registry, which can
// answer 429 instead or strip Docker-Content-Digest from the answers.
class Proxy {
 public:
  explicit Proxy(const std::string& upstream) : m_upstream(upstream) {
    auto forward = [this](const httplib::Request& req, httplib::Response& res) {
      ++m_requests;
      {
        std::lock_guard lock(m_mutex);
        m_methods.push_back(req.method);
      }
      std::string retry_after;
      {
        std::lock_guard lock(m_mutex);
        retry_after = m_retry_after;
      }
      if (!retry_after.empty()) {
        res.status = 429;
        res.set_header("Retry-After", retry_after);
        res.set_content(R"({"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]})", "application/json");
        return;
      }
      httplib::Client c(m_upstream);
      httplib::Headers h;
      for (const auto& [k, v] : req.headers) {
        if (k == "Accept" || k == "Authorization") h.emplace(k, v);
      }
      auto up = req.method == "HEAD" ? c.Head(req.path.c_str(), h) : c.Get(req.path.c_str(), h);
      if (!up) {
        res.status = 502;
        return;
      }
      res.status = up->status;
      for (const auto& [k, v] : up->headers) {
        if (m_strip_digest && k == "Docker-Content-Digest") continue;
        if (k == "Content-Type" || k == "Docker-Content-Digest" || k == "Www-Authenticate") res.set_header(k, v);
      }
      if (req.method == "GET") res.body = up->body;
    };
    m_server.Get(R"(/v2/.*)", forward);
    m_server.Options(R"(/v2/.*)", forward);
    m_port = m_server.bind_to_any_port("127.0.0.1");
    m_thread = std::thread([this] { m_server.listen_after_bind(); });
    wait_until([this] { return m_server.is_running(); }, std::chrono::seconds(5));
  }
  ~Proxy() {
    m_server.stop();
    m_thread.join();
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(m_port); }
  void answer_429(const std::string& retry_after) {
    std::lock_guard lock(m_mutex);
    m_retry_after = retry_after;
  }
  void pass() { answer_429(""); }
  void strip_digest(bool on) { m_strip_digest = on; }
  int requests() const { return m_requests.load(); }
  std::vector<std::string> methods() const {
    std::lock_guard lock(m_mutex);
    return m_methods;
  }

 private:
  std::string m_upstream;
  httplib::Server m_server;
  std::thread m_thread;
  int m_port = 0;
  std::atomic<int> m_requests{0};
  std::string m_retry_after;
  std::atomic<bool> m_strip_digest{false};
  mutable std::mutex m_mutex;
  std::vector<std::string> m_methods;
};

}  // namespace

TEST_CASE("htpasswd Basic auth: right password, wrong password, none, docker config", "[integration][registry]") {
  RegistryOptions options;
  options.htpasswd = {{"bot", "right-password"}};
  LocalRegistry reg(options);
  std::string d = reg.push_image("team/app", "1", "basic one");
  net::HttplibClient http;
  RealClock clock;
  std::string r = reg.host() + "/team/app:1";

  auto right = insecure(reg.host());
  right.username = "bot";
  right.password = "right-password";
  registry::Client good(http, clock, {right});
  auto ok = good.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE(ok.ok());
  CHECK(ok->digest == d);
  CHECK(ok->requests == 2);  // HEAD (401 Basic), HEAD with Basic
  auto again = good.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE(again.ok());
  CHECK(again->requests == 1);  // Basic goes up front now

  auto wrong = right;
  wrong.password = "wrong-password";
  registry::Client bad(http, clock, {wrong});
  auto refused = bad.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind == ErrorKind::unauthorized);
  CHECK(refused.error().message == r + ": credentials refused (Basic, user \"bot\")");
  auto st = bad.status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].last_error == refused.error().message);
  CHECK(st[0].last_error_kind == "unauthorized");
  CHECK(st[0].last_error.find("wrong-password") == std::string::npos);

  registry::Client anonymous(http, clock, {insecure(reg.host())});
  auto anon = anonymous.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE_FALSE(anon.ok());
  CHECK(anon.error().message == r + ": the registry requires credentials (set registries." + reg.host() +
                                    ".username and password_file, or docker_config)");

  // The same credentials from a docker config.json (auth = base64 user:password).
  TempDir dir("bw-dockercfg");
  auto from_file = insecure(reg.host());
  from_file.docker_config = dir.write("config.json", R"({"auths":{"http://)" + reg.host() + R"(/v2/":{"auth":")" +
                                                        base64_encode("bot:right-password") + R"("}}})");
  registry::Client via_config(http, clock, {from_file});
  auto cfg = via_config.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE(cfg.ok());
  CHECK(cfg->digest == d);
}

TEST_CASE("a real credential helper supplies the password", "[integration][registry]") {
  HelperPath path;
  path.add("testpass", "#!/bin/sh\n[ \"$1\" = get ] || exit 9\nread url\n"
                       "printf '{\"ServerURL\":\"%s\",\"Username\":\"bot\",\"Secret\":\"helper-pw\"}' \"$url\"\n");
  path.add("missing", "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n");
  path.add("slow", "#!/bin/sh\nexec sleep 5\n");
  RegistryOptions options;
  options.htpasswd = {{"bot", "helper-pw"}};
  LocalRegistry reg(options);
  std::string d = reg.push_image("team/app", "1", "helper one");
  TempDir dir("bw-dockercfg");
  auto s = insecure(reg.host());
  s.docker_config = dir.write("config.json", R"({"credsStore":"missing","credHelpers":{")" + reg.host() + R"(":"testpass"}})");
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, {s});
  auto res = client.resolve(parse_ref(reg.host() + "/team/app:1"), {plat("linux/amd64")});
  REQUIRE(res.ok());
  CHECK(res->digest == d);

  auto out = registry::run_credential_helper("testpass", "ghcr.io");
  REQUIRE(out.ok());
  CHECK(out->status == 0);
  CHECK(out->out == R"({"ServerURL":"ghcr.io","Username":"bot","Secret":"helper-pw"})");
  auto nf = registry::run_credential_helper("missing", "ghcr.io");
  REQUIRE(nf.ok());
  CHECK(nf->status == 1);
  auto none = registry::run_credential_helper("does-not-exist-anywhere", "ghcr.io");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "cannot run docker-credential-does-not-exist-anywhere: No such file or directory");
  auto slow = registry::run_credential_helper("slow", "ghcr.io", Millis(200));
  REQUIRE_FALSE(slow.ok());
  CHECK(slow.error().kind == ErrorKind::timeout);
  CHECK(slow.error().message == "docker-credential-slow get did not answer within 200ms");
}

TEST_CASE("token auth: tokens are cached across checks and asked for up front", "[integration][registry]") {
  TokenIssuerOptions issuer_options;
  issuer_options.user = "ci";
  issuer_options.password = "token-pw";
  TokenIssuer issuer(issuer_options);
  LocalRegistry reg(issuer.registry_options());
  std::string d1 = reg.push_image("team/one", "1", "token one");
  std::string d2 = reg.push_image("team/two", "1", "token two");
  size_t before = issuer.token_requests();
  net::HttplibClient http;
  RealClock clock;
  auto s = insecure(reg.host());  // the test issuer's realm is plain http
  s.username = "ci";
  s.password = "token-pw";
  registry::Client client(http, clock, {s});

  auto r1 = client.resolve(parse_ref(reg.host() + "/team/one:1"), {plat("linux/amd64")});
  REQUIRE(r1.ok());
  CHECK(r1->digest == d1);
  CHECK(r1->requests == 3);  // HEAD 401, token, HEAD
  for (int i = 0; i < 5; ++i) {
    auto again = client.resolve(parse_ref(reg.host() + "/team/one:1"), {plat("linux/amd64")});
    REQUIRE(again.ok());
    CHECK(again->requests == 1);
  }
  CHECK(issuer.token_requests() - before == 1);
  // Another repository on the same registry: its token goes up front, no 401.
  auto r2 = client.resolve(parse_ref(reg.host() + "/team/two:1"), {plat("linux/amd64")});
  REQUIRE(r2.ok());
  CHECK(r2->digest == d2);
  CHECK(r2->requests == 2);
  CHECK(issuer.token_requests() - before == 2);
  CHECK(client.token_requests() == 2);
  auto last = issuer.requests().back();
  CHECK(last.query.find("scope=repository%3Ateam%2Ftwo%3Apull") != std::string::npos);

  auto wrong = s;
  wrong.password = "nope";
  registry::Client refused(http, clock, {wrong});
  auto res = refused.resolve(parse_ref(reg.host() + "/team/one:1"), {plat("linux/amd64")});
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().kind == ErrorKind::unauthorized);
  CHECK(res.error().message == reg.host() + ": credentials refused by the token service (HTTP 401)");
}

TEST_CASE("token auth with a docker config identity token uses the OAuth2 refresh grant", "[integration][registry]") {
  TokenIssuer issuer;  // anonymous issuer: grants any request, so we can look at what was sent
  LocalRegistry reg(issuer.registry_options());
  std::string d = reg.push_image("team/app", "1", "identity one");
  TempDir dir("bw-dockercfg");
  auto s = insecure(reg.host());
  s.docker_config = dir.write("config.json", R"({"auths":{")" + reg.host() +
                                                 R"(":{"username":"00000000-0000-0000-0000-000000000000","identitytoken":"refresh-123"}}})");
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, {s});
  auto res = client.resolve(parse_ref(reg.host() + "/team/app:1"), {plat("linux/amd64")});
  REQUIRE(res.ok());
  CHECK(res->digest == d);
  auto reqs = issuer.requests();
  REQUIRE_FALSE(reqs.empty());
  CHECK(reqs.back().method == "POST");
  CHECK(reqs.back().body.find("grant_type=refresh_token") != std::string::npos);
  CHECK(reqs.back().body.find("refresh_token=refresh-123") != std::string::npos);
  CHECK(reqs.back().body.find("scope=repository%3Ateam%2Fapp%3Apull") != std::string::npos);
}

TEST_CASE("multi-arch: arm64 and attestations move (recorded), then amd64 moves (one delivery)",
          "[integration][registry][multiarch]") {
  LocalRegistry reg;
  std::string amd1 = reg.push_platform_manifest("library/base", "amd64 one", "linux/amd64");
  std::string arm1 = reg.push_platform_manifest("library/base", "arm64 one", "linux/arm64/v8");
  std::string idx1 = reg.push_index("library/base", "1", {{"linux/amd64", amd1}, {"linux/arm64/v8", arm1}}, "att-1");
  Receiver receiver;
  TempDir dir("bw-multiarch");
  dir.write("web/Dockerfile", "FROM " + reg.host() + "/library/base:1\nRUN true\n");
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(free_port()) + "\n"
      "poll: {settle: 0s}\n"
      "registries:\n  " + reg.host() + ": {insecure: true}\n"
      "projects:\n  - name: web\n    dockerfile: web/Dockerfile\n    platforms: [linux/amd64]\n    triggers: [ci]\n"
      "triggers:\n  ci: {type: webhook, url: \"" + receiver.url("/hook") + "\"}\n");
  auto check = [&] {
    auto r = run({basewatch_binary(), "check", "--json", "-c", config}, {}, "", std::chrono::seconds(30));
    INFO(r.output << r.errors);
    auto j = json::parse(r.output, nullptr, false);
    REQUIRE(j.is_object());
    REQUIRE(j["references"].size() == 1);
    return j["references"][0];
  };
  std::string name = reg.host() + "/library/base:1";

  auto first = check();
  CHECK(first["outcome"] == "baseline");
  CHECK(first["new_digest"] == idx1);

  // arm64 rebuilt and attestations regenerated: the index moves, amd64 does not.
  std::string arm2 = reg.push_platform_manifest("library/base", "arm64 two", "linux/arm64/v8");
  std::string idx2 = reg.push_index("library/base", "1", {{"linux/amd64", amd1}, {"linux/arm64/v8", arm2}}, "att-2");
  REQUIRE(idx2 != idx1);
  auto second = check();
  CHECK(second["outcome"] == "recorded");
  CHECK(second["old_digest"] == idx1);
  CHECK(second["new_digest"] == idx2);
  CHECK(second["deliveries"].empty());
  CHECK(receiver.count() == 0);

  // amd64 moves: one delivery with per-platform digests.
  std::string amd2 = reg.push_platform_manifest("library/base", "amd64 two", "linux/amd64");
  std::string idx3 = reg.push_index("library/base", "1", {{"linux/amd64", amd2}, {"linux/arm64/v8", arm2}}, "att-3");
  auto third = check();
  CHECK(third["outcome"] == "changed");
  CHECK(third["platforms"]["linux/amd64"]["old"] == amd1);
  CHECK(third["platforms"]["linux/amd64"]["new"] == amd2);
  REQUIRE(receiver.wait_for(1, std::chrono::seconds(10)));
  auto reqs = receiver.requests();
  REQUIRE(reqs.size() == 1);
  auto body = json::parse(reqs[0].body);
  REQUIRE(body["changes"].size() == 1);
  CHECK(body["changes"][0]["ref"] == name);
  CHECK(body["changes"][0]["old_digest"] == idx2);
  CHECK(body["changes"][0]["new_digest"] == idx3);
  CHECK(body["changes"][0]["platforms"]["linux/amd64"]["old"] == amd1);
  CHECK(body["changes"][0]["platforms"]["linux/amd64"]["new"] == amd2);
  CHECK_FALSE(body["changes"][0]["platforms"].contains("linux/arm64"));

  // Unchanged: HEAD only.
  auto fourth = check();
  CHECK(fourth["outcome"] == "unchanged");
  CHECK(receiver.count() == 1);

  // basewatch digest --platform prints the index digest and the platform's.
  auto dg = run({basewatch_binary(), "digest", "-c", config, "--platform", "linux/arm64", name});
  CHECK(dg.status == 0);
  CHECK(dg.output.find("digest: " + idx3) != std::string::npos);
  CHECK(dg.output.find("linux/arm64: " + arm2) != std::string::npos);
}

TEST_CASE("a proxy answering 429 with Retry-After pauses the registry; no GET replaces the HEAD", "[integration][registry]") {
  LocalRegistry reg;
  std::string d = reg.push_image("team/app", "1", "proxied one");
  Proxy proxy(reg.url());
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, {insecure(proxy.host())});
  std::string r = proxy.host() + "/team/app:1";

  proxy.answer_429("1");
  auto limited = client.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE_FALSE(limited.ok());
  CHECK(limited.error().kind == ErrorKind::rate_limited);
  TimePoint until = client.available_at(proxy.host());
  CHECK(until > clock.now());
  CHECK(until <= clock.now() + std::chrono::seconds(2));
  CHECK(proxy.requests() == 1);
  // While paused nothing is sent, even after the proxy would answer again.
  proxy.pass();
  auto paused = client.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE_FALSE(paused.ok());
  CHECK(paused.error().kind == ErrorKind::rate_limited);
  CHECK(paused.error().message.rfind(proxy.host() + ": paused until ", 0) == 0);
  CHECK(proxy.requests() == 1);
  for (const auto& m : proxy.methods()) CHECK(m == "HEAD");
  auto st = client.status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].paused_until == to_unix_ms(until));
  CHECK(st[0].next_request_at == to_unix_ms(until));

  REQUIRE(wait_until([&] { return clock.now() >= until; }, std::chrono::seconds(3)));
  auto after = client.resolve(parse_ref(r), {plat("linux/amd64")});
  REQUIRE(after.ok());
  CHECK(after->digest == d);
  CHECK(proxy.requests() == 2);

  // An HTTP date works the same way.
  proxy.answer_429("Sun, 06 Nov 2050 08:49:37 GMT");
  REQUIRE_FALSE(client.resolve(parse_ref(r), {plat("linux/amd64")}).ok());
  CHECK(client.available_at(proxy.host()) == *parse_http_date("Sun, 06 Nov 2050 08:49:37 GMT"));
  CHECK(Metrics::global().counter_value("basewatch_registry_requests_total",
                                        {{"registry", proxy.host()}, {"method", "HEAD"}, {"outcome", "rate_limited"}}) == 2);
  CHECK(Metrics::global().counter_value("basewatch_registry_requests_total",
                                        {{"registry", proxy.host()}, {"method", "HEAD"}, {"outcome", "ok"}}) == 1);
}

TEST_CASE("a proxy stripping Docker-Content-Digest: GET and hash the exact body", "[integration][registry]") {
  LocalRegistry reg;
  std::string single = reg.push_image("team/app", "1", "stripped one", "linux/amd64", true);
  std::string amd = reg.push_platform_manifest("team/multi", "amd64 x", "linux/amd64");
  std::string arm = reg.push_platform_manifest("team/multi", "arm64 x", "linux/arm64");
  std::string idx = reg.push_index("team/multi", "1", {{"linux/amd64", amd}, {"linux/arm64", arm}}, "att");
  Proxy proxy(reg.url());
  proxy.strip_digest(true);
  net::HttplibClient http;
  RealClock clock;
  registry::Client client(http, clock, {insecure(proxy.host())});

  auto one = client.resolve(parse_ref(proxy.host() + "/team/app:1"), {plat("linux/amd64")});
  REQUIRE(one.ok());
  CHECK(one->digest == single);
  CHECK(one->requests == 2);
  CHECK(proxy.methods() == std::vector<std::string>{"HEAD", "GET"});

  auto multi = client.resolve(parse_ref(proxy.host() + "/team/multi:1"), {plat("linux/arm64")});
  REQUIRE(multi.ok());
  CHECK(multi->digest == idx);
  CHECK(multi->index);
  CHECK(multi->platforms.at("linux/arm64") == arm);
  CHECK(multi->requests == 2);  // the GET's body is the index: no second GET
}

TEST_CASE("basewatch check: one HEAD per repo:tag per cycle however many projects use it; GET only when the index moved",
          "[integration][registry][economy]") {
  LocalRegistry reg;
  std::string amd = reg.push_platform_manifest("team/base", "amd64 e1", "linux/amd64");
  std::string arm = reg.push_platform_manifest("team/base", "arm64 e1", "linux/arm64");
  reg.push_index("team/base", "1", {{"linux/amd64", amd}, {"linux/arm64", arm}}, "att-e1");
  Proxy proxy(reg.url());
  TempDir dir("bw-economy");
  std::string base = proxy.host() + "/team/base:1";
  dir.write("a/Dockerfile", "FROM " + base + "\n");
  dir.write("b/Dockerfile", "FROM " + base + " AS build\nFROM " + base + "\nCOPY --from=" + base + " /x /x\n");
  std::string config = dir.write("config.yaml",
      "database: " + dir.path() + "/basewatch.db\n"
      "listen: 127.0.0.1:" + std::to_string(free_port()) + "\n"
      "registries:\n  " + proxy.host() + ": {insecure: true}\n"
      "watch:\n  - ref: " + base + "\n    platforms: [linux/arm64]\n"
      "projects:\n  - name: a\n    dockerfile: a/Dockerfile\n  - name: b\n    dockerfile: b/Dockerfile\n");
  auto check = [&] {
    auto r = run({basewatch_binary(), "check", "-c", config}, {}, "", std::chrono::seconds(30));
    INFO(r.output << r.errors);
    CHECK(r.status == 0);
  };
  check();  // baseline: HEAD, then one GET of the new index
  CHECK(proxy.methods() == std::vector<std::string>{"HEAD", "GET"});
  check();  // unchanged: HEAD only
  check();
  CHECK(proxy.methods() == std::vector<std::string>{"HEAD", "GET", "HEAD", "HEAD"});
  std::string arm2 = reg.push_platform_manifest("team/base", "arm64 e2", "linux/arm64");
  reg.push_index("team/base", "1", {{"linux/amd64", amd}, {"linux/arm64", arm2}}, "att-e2");
  check();  // moved: HEAD and one GET
  CHECK(proxy.methods() == std::vector<std::string>{"HEAD", "GET", "HEAD", "HEAD", "HEAD", "GET"});
}

TEST_CASE("a credential helper starts with default signals, whatever basewatch ignores or blocks", "[integration][registry]") {
  HelperPath helpers;
  // Reports its own ignored and blocked signal masks from /proc.
  helpers.add("sigcheck",
              "#!/bin/sh\nread url\n"
              "ign=$(awk '/^SigIgn/{print $2}' /proc/$$/status)\n"
              "blk=$(awk '/^SigBlk/{print $2}' /proc/$$/status)\n"
              "printf '{\"ServerURL\":\"%s\",\"Username\":\"u\",\"Secret\":\"%s/%s\"}' \"$url\" \"$ign\" \"$blk\"\n");
  // As `basewatch serve` runs: SIGPIPE ignored, SIGTERM/SIGINT/SIGHUP blocked.
  auto old_pipe = std::signal(SIGPIPE, SIG_IGN);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  auto out = registry::run_credential_helper("sigcheck", "ghcr.io");
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  std::signal(SIGPIPE, old_pipe);
  REQUIRE(out.ok());
  CHECK(out->status == 0);
  auto secret = nlohmann::json::parse(out->out)["Secret"].get<std::string>();
  auto slash = secret.find('/');
  REQUIRE(slash != std::string::npos);
  uint64_t ignored = std::stoull(secret.substr(0, slash), nullptr, 16);
  uint64_t blocked = std::stoull(secret.substr(slash + 1), nullptr, 16);
  auto bit = [](int sig) { return uint64_t{1} << (sig - 1); };
  CHECK((ignored & bit(SIGPIPE)) == 0);
  CHECK((blocked & (bit(SIGTERM) | bit(SIGINT) | bit(SIGHUP))) == 0);
}
