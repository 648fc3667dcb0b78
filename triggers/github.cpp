#include "triggers/github.h"

#include <nlohmann/json.hpp>

#include "util/strings.h"

namespace bw::triggers {

using json = nlohmann::json;

namespace {

// The body with each change cut down to what identifies it.
json shortened(json body) {
  json changes = json::array();
  for (const auto& c : body["changes"]) {
    changes.push_back({{"ref", c.value("ref", "")}, {"old_digest", c.value("old_digest", "")}, {"new_digest", c.value("new_digest", "")}});
  }
  body["changes"] = changes;
  body["truncated"] = true;
  return body;
}

}  // namespace

Result<net::Request> GitHubTrigger::request(const db::Delivery& d) const {
  BW_TRY(auto summary, summarize(d));
  std::string base = m_cfg.api_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  net::Request req;
  req.method = "POST";
  req.timeout = m_cfg.timeout;
  req.headers = {{"Accept", "application/vnd.github+json"},
                 {"Authorization", "Bearer " + m_cfg.token},
                 {"X-GitHub-Api-Version", "2022-11-28"},
                 {"Content-Type", "application/json"},
                 {"User-Agent", user_agent()}};
  json body;
  if (m_cfg.workflow.empty()) {
    req.url = base + "/repos/" + m_cfg.repository + "/dispatches";
    json payload = json::parse(d.payload, nullptr, false);
    if (payload.dump().size() > k_github_payload_limit) payload = shortened(std::move(payload));
    body = {{"event_type", m_cfg.event_type}, {"client_payload", payload}};
  } else {
    req.url = base + "/repos/" + m_cfg.repository + "/actions/workflows/" + net::url_encode(m_cfg.workflow) + "/dispatches";
    body = {{"ref", m_cfg.ref},
            {"inputs",
             {{"basewatch_delivery_id", d.id},
              {"basewatch_project", summary.project},
              {"basewatch_changed_refs", join(summary.changed_refs, " ")}}}};
  }
  req.body = body.dump();
  return req;
}

Outcome GitHubTrigger::deliver(const db::Delivery& d) {
  auto req = request(d);
  if (!req) return refused(req.error());
  auto res = m_http.send(*req);
  Outcome out = http_outcome(res);
  // GitHub signals its rate limits with 403 as well as 429.
  if (res && res->status == 403 &&
      (res->header("x-ratelimit-remaining") == "0" || !res->header("retry-after").empty())) {
    out.retryable = true;
  }
  return out;
}

}  // namespace bw::triggers
