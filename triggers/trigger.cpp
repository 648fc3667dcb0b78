#include "triggers/trigger.h"

#include <nlohmann/json.hpp>

namespace bw::triggers {

std::string user_agent() { return std::string("basewatch/") + BASEWATCH_VERSION; }

Result<PayloadSummary> summarize(const db::Delivery& d) {
  auto j = nlohmann::json::parse(d.payload, nullptr, false);
  if (!j.is_object()) return make_error(ErrorKind::invalid, "delivery " + d.id + ": the stored payload is not a JSON object");
  PayloadSummary s;
  s.project = d.project;
  if (auto p = j.find("project"); p != j.end() && p->is_object()) {
    if (s.project.empty()) s.project = p->value("name", "");
    if (auto df = p->find("dockerfile"); df != p->end() && df->is_string()) s.dockerfile = df->get<std::string>();
  }
  if (auto c = j.find("changes"); c != j.end() && c->is_array()) {
    for (const auto& change : *c) {
      if (change.is_object() && change.contains("ref") && change["ref"].is_string()) s.changed_refs.push_back(change["ref"].get<std::string>());
    }
  }
  return s;
}

Outcome refused(const Error& error) {
  Outcome out;
  out.error = error.message;
  out.retryable = false;
  return out;
}

Outcome failed(const Error& error) {
  Outcome out;
  out.error = error.message;
  return out;
}

bool retryable_status(int status) { return status == 408 || status == 429 || status >= 500 || status < 400; }

Outcome http_outcome(const Result<net::Response>& res) {
  Outcome out;
  if (!res) {
    out.error = res.error().message;
    return out;
  }
  out.status = res->status;
  out.delivered = res->status >= 200 && res->status < 300;
  if (!out.delivered) {
    // GitHub and GitLab explain refusals in {"message": ...}; keep it short.
    std::string detail = res->body.substr(0, 200);
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    if (j.is_object() && j.contains("message")) detail = j["message"].is_string() ? j["message"].get<std::string>() : j["message"].dump();
    out.error = "HTTP " + std::to_string(res->status) + (detail.empty() ? "" : ": " + detail.substr(0, 200));
    out.retryable = retryable_status(res->status);
  }
  return out;
}

std::unique_ptr<Trigger> make_trigger(const config::TriggerConfig& cfg, const Seams& seams) {
  // One line per type.
  if (cfg.type == "webhook" && seams.http) return std::make_unique<WebhookTrigger>(cfg, *seams.http);
  if (cfg.type == "github" && seams.http) return std::make_unique<GitHubTrigger>(cfg, *seams.http);
  if (cfg.type == "gitlab" && seams.http) return std::make_unique<GitLabTrigger>(cfg, *seams.http);
  if (cfg.type == "command" && seams.runner) return std::make_unique<CommandTrigger>(cfg, *seams.runner, seams.build_logs, seams.project_contexts);
  if (cfg.type == "build" && seams.runner) return std::make_unique<BuildTrigger>(cfg, seams);
  return nullptr;
}

}  // namespace bw::triggers
