// type: github — starts a GitHub Actions run through the REST API
// (X-GitHub-Api-Version 2022-11-28):
//   repository_dispatch: POST {api_url}/repos/{repository}/dispatches
//     {"event_type": event_type, "client_payload": <the delivery body>}
//   workflow_dispatch (when `workflow` is set):
//     POST {api_url}/repos/{repository}/actions/workflows/{workflow}/dispatches
//     {"ref": ref, "inputs": {"basewatch_delivery_id", "basewatch_project",
//      "basewatch_changed_refs"}} — the workflow must declare these inputs
//     (GitHub refuses undeclared ones with 422).
// GitHub answers 204. A 4xx other than 408/429 (and 403 without rate-limit
// signs) is not retried: a bad token, a missing repository or workflow, or
// inputs the workflow does not declare stay wrong until the config changes
// (then `basewatch redeliver ID`).
#pragma once

#include "triggers/trigger.h"

namespace bw::triggers {

// client_payload may have at most 10 top-level properties and must be under
// 64 KB; a larger delivery body is sent with its changes shortened to ref
// and digests.
constexpr size_t k_github_payload_limit = 65'000;

class GitHubTrigger final : public Trigger {
 public:
  GitHubTrigger(config::TriggerConfig cfg, net::HttpClient& http) : m_cfg(std::move(cfg)), m_http(http) {}
  Outcome deliver(const db::Delivery& delivery) override;
  const char* type() const override { return "github"; }
  // The request it sends, for tests and `deliver`.
  Result<net::Request> request(const db::Delivery& delivery) const;

 private:
  config::TriggerConfig m_cfg;
  net::HttpClient& m_http;
};

}  // namespace bw::triggers
