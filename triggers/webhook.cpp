#include "triggers/webhook.h"

#include "util/crypto.h"

namespace bw::triggers {

std::string signature_header(const std::string& secret, const std::string& body) {
  return "sha256=" + hmac_sha256_hex(secret, body);
}

Outcome WebhookTrigger::deliver(const db::Delivery& d) {
  net::Request req;
  req.method = "POST";
  req.url = m_cfg.url;
  req.timeout = m_cfg.timeout;
  req.body = d.payload;
  req.headers = {{"Content-Type", "application/json"},
                 {"User-Agent", user_agent()},
                 {"X-Basewatch-Event", "base.updated"},
                 {"X-Basewatch-Delivery", d.id}};
  if (!m_cfg.secret.empty()) req.headers.emplace_back("X-Basewatch-Signature-256", signature_header(m_cfg.secret, d.payload));
  for (const auto& [k, v] : m_cfg.headers) req.headers.emplace_back(k, v);
  Outcome out = http_outcome(m_http.send(req));
  out.retryable = true;
  return out;
}

}  // namespace bw::triggers
