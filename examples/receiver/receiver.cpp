// An example webhook receiver: prints each basewatch delivery and checks its
// signature. Run: basewatch-example-receiver PORT SECRET_FILE
// It answers 204 to a good signature and 401 to a bad one, and remembers
// delivery ids so a retry of a delivered id is acknowledged, not rebuilt.
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/hmac.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>

static std::string hmac_hex(const std::string& key, const std::string& body) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(body.data()),
       body.size(), md, &len);
  std::string out;
  char buf[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    out += buf;
  }
  return out;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: basewatch-example-receiver PORT SECRET_FILE\n";
    return 2;
  }
  std::ifstream in(argv[2]);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string secret = ss.str();
  if (!secret.empty() && secret.back() == '\n') secret.pop_back();
  std::mutex mutex;
  std::set<std::string> seen;
  httplib::Server server;
  server.Post(".*", [&](const httplib::Request& req, httplib::Response& res) {
    std::string want = "sha256=" + hmac_hex(secret, req.body);
    if (req.get_header_value("X-Basewatch-Signature-256") != want) {
      std::cout << "receiver: rejected a request with a bad signature\n" << std::flush;
      res.status = 401;
      return;
    }
    std::string id = req.get_header_value("X-Basewatch-Delivery");
    std::lock_guard lock(mutex);
    if (!seen.insert(id).second) {
      std::cout << "receiver: " << id << " again (already handled)\n" << std::flush;
      res.status = 204;
      return;
    }
    auto body = nlohmann::json::parse(req.body, nullptr, false);
    std::cout << "receiver: delivery " << id << " (signature ok): rebuild " << body["project"]["name"] << "\n";
    for (const auto& c : body["changes"]) {
      std::cout << "  " << c["ref"].get<std::string>() << "\n    " << c["old_digest"].get<std::string>() << "\n -> "
                << c["new_digest"].get<std::string>() << "\n";
    }
    std::cout << "  plan: " << body["plan"].dump() << "\n" << std::flush;
    res.status = 204;
  });
  std::cout << "receiver: listening on 127.0.0.1:" << argv[1] << "\n" << std::flush;
  server.listen("127.0.0.1", std::atoi(argv[1]));
  return 0;
}
