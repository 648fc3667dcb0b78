#include "triggers/trigger.h"

#include "util/crypto.h"

namespace bw::triggers {

std::string signature_header(const std::string& secret, const std::string& body) {
  return "sha256=" + hmac_sha256_hex(secret, body);
}

std::string user_agent() { return std::string("basewatch/") + BASEWATCH_VERSION; }

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
  auto res = m_http.send(req);
  Outcome out;
  if (!res) {
    out.error = res.error().message;
    return out;
  }
  out.status = res->status;
  out.delivered = res->status >= 200 && res->status < 300;
  if (!out.delivered) {
    std::string body = res->body.substr(0, 200);
    out.error = "HTTP " + std::to_string(res->status) + (body.empty() ? "" : ": " + body);
  }
  return out;
}

std::unique_ptr<Trigger> make_trigger(const config::TriggerConfig& cfg, const Seams& seams) {
  if (cfg.type == "webhook" && seams.http) return std::make_unique<WebhookTrigger>(cfg, *seams.http);
  return nullptr;
}

}  // namespace bw::triggers
