// The human dashboard at GET /: one server-rendered page (inline CSS, a few
// lines of inline JS for the retry buttons, no build step, nothing loaded
// from elsewhere) built from the same JSON views the API serves. Every
// value from the state is HTML-escaped.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

#include "util/time.h"

namespace bw::api {

struct DashboardInput {
  TimePoint now;
  nlohmann::json status;      // /v1/status
  nlohmann::json images;      // /v1/images: the page shown (failing references first)
  // Where that page lies in the list of all watched references. With
  // images_limit 0 (or everything on one page and no failing ones) there is
  // no pager line.
  size_t images_total = 0;    // all watched references; 0: images.size()
  size_t images_offset = 0;   // the first one shown, counted from 0
  size_t images_limit = 0;    // the page size the links keep
  size_t images_failing = 0;  // watched references whose last check failed
  nlohmann::json events;      // /v1/events (recent first)
  nlohmann::json deliveries;  // /v1/deliveries entries that are pending, failed or dead
  nlohmann::json mirrors;     // /v1/mirrors (a section only when there are mirrors)
  // /v1/deliveries entries (with last_attempt) of the triggers that build
  // (type build and command), newest first, whatever their state.
  nlohmann::json builds;
  bool token_required = false;  // api.token_file is set: buttons send the pasted token
  // The dependency graph as an inline <svg> (graph_svg.h), the latest change
  // it highlights ("" for none) and what a large graph left out ("" for
  // nothing). No graph section when graph_svg is empty.
  std::string graph_svg;
  std::string graph_change;
  std::string graph_note;
};

// Builds listed on the dashboard.
inline constexpr size_t k_dashboard_builds = 20;

// References per dashboard page (`/?offset=` pages through them).
inline constexpr size_t k_dashboard_page_size = 200;

std::string render_dashboard(const DashboardInput& in);

// The page GET / answers (401) when a token is set and none came: it asks
// for the token, keeps it in the tab's sessionStorage and fetches the
// dashboard with "Authorization: Bearer".
std::string render_login_page();

// & < > " ' as entities.
std::string html_escape(std::string_view text);

// Served with both pages: nothing but inline style and script, fetches only
// to this origin.
inline constexpr const char* k_dashboard_csp =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

}  // namespace bw::api
