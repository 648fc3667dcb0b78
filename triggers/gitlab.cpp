#include "triggers/gitlab.h"

#include "util/strings.h"

namespace bw::triggers {

Result<net::Request> GitLabTrigger::request(const db::Delivery& d) const {
  BW_TRY(auto summary, summarize(d));
  std::string base = m_cfg.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  net::Request req;
  req.method = "POST";
  req.timeout = m_cfg.timeout;
  req.url = base + "/api/v4/projects/" + net::url_encode(m_cfg.project) + "/trigger/pipeline";
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"User-Agent", user_agent()}};
  std::vector<std::pair<std::string, std::string>> fields = {
      {"token", m_cfg.token},
      {"ref", m_cfg.ref},
      {"variables[BASEWATCH_DELIVERY_ID]", d.id},
      {"variables[BASEWATCH_PROJECT]", summary.project},
      {"variables[BASEWATCH_CHANGED_REFS]", join(summary.changed_refs, " ")},
      {"variables[BASEWATCH_TRIGGER]", m_cfg.name}};
  for (const auto& [k, v] : fields) req.body += (req.body.empty() ? "" : "&") + net::url_encode(k) + "=" + net::url_encode(v);
  return req;
}

Outcome GitLabTrigger::deliver(const db::Delivery& d) {
  auto req = request(d);
  if (!req) return refused(req.error());
  return http_outcome(m_http.send(*req));
}

}  // namespace bw::triggers
