// type: gitlab — the pipeline trigger API:
//   POST {url}/api/v4/projects/{url-encoded project}/trigger/pipeline
//   form fields: token, ref, variables[BASEWATCH_DELIVERY_ID],
//   variables[BASEWATCH_PROJECT], variables[BASEWATCH_CHANGED_REFS]
//   (space-separated refs of the changed bases), variables[BASEWATCH_TRIGGER].
// The token travels in the body, never in the URL. GitLab answers 201. A 4xx
// other than 408/429 is not retried (bad token, unknown project or ref).
#pragma once

#include "triggers/trigger.h"

namespace bw::triggers {

class GitLabTrigger final : public Trigger {
 public:
  GitLabTrigger(config::TriggerConfig cfg, net::HttpClient& http) : m_cfg(std::move(cfg)), m_http(http) {}
  Outcome deliver(const db::Delivery& delivery) override;
  const char* type() const override { return "gitlab"; }
  Result<net::Request> request(const db::Delivery& delivery) const;

 private:
  config::TriggerConfig m_cfg;
  net::HttpClient& m_http;
};

}  // namespace bw::triggers
