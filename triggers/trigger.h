// Trigger types: one interface, one implementation per type. Adding a type
// means one file here, a line in make_trigger, and its keys in config/.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "config/config.h"
#include "db/store.h"
#include "net/http.h"

namespace bw::triggers {

struct Outcome {
  bool delivered = false;
  int status = 0;           // HTTP status or exit code; 0 when there was no answer
  std::string error;        // why it failed, for status and logs
  std::string output_tail;  // command triggers: the end of the output
  bool retryable = true;    // false: retrying cannot help (e.g. 400 with a bad payload)
};

class Trigger {
 public:
  virtual ~Trigger() = default;
  // Sends one delivery. Must not throw; everything becomes an Outcome.
  virtual Outcome deliver(const db::Delivery& delivery) = 0;
};

// The HTTP webhook of docs/product.md: the payload as body, the
// X-Basewatch-* headers, and the HMAC-SHA256 signature when a secret is set.
class WebhookTrigger final : public Trigger {
 public:
  WebhookTrigger(config::TriggerConfig cfg, net::HttpClient& http) : m_cfg(std::move(cfg)), m_http(http) {}
  Outcome deliver(const db::Delivery& delivery) override;

 private:
  config::TriggerConfig m_cfg;
  net::HttpClient& m_http;
};

// "sha256=<hex HMAC-SHA256(secret, body)>"
std::string signature_header(const std::string& secret, const std::string& body);
std::string user_agent();

struct Seams {
  net::HttpClient* http = nullptr;
};

// The trigger for a config entry; nullptr for a type not built here.
std::unique_ptr<Trigger> make_trigger(const config::TriggerConfig& cfg, const Seams& seams);

}  // namespace bw::triggers
