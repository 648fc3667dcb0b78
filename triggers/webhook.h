// type: webhook — the HTTP webhook of docs/product.md: the payload as body,
// the X-Basewatch-* headers, custom headers, and the HMAC-SHA256 signature
// when a secret is set. Every answer but a 2xx is retried (the receiver is
// ours to fix; product.md promises retries for "anything else").
#pragma once

#include "triggers/trigger.h"

namespace bw::triggers {

class WebhookTrigger final : public Trigger {
 public:
  WebhookTrigger(config::TriggerConfig cfg, net::HttpClient& http) : m_cfg(std::move(cfg)), m_http(http) {}
  Outcome deliver(const db::Delivery& delivery) override;
  const char* type() const override { return "webhook"; }

 private:
  config::TriggerConfig m_cfg;
  net::HttpClient& m_http;
};

// "sha256=<hex HMAC-SHA256(secret, body)>"
std::string signature_header(const std::string& secret, const std::string& body);

}  // namespace bw::triggers
