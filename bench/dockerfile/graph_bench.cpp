// Graph building for a large organisation: N projects (default 10,000) in
// three layers, like a platform team's internal bases feeding middle images
// feeding services:
//   - 1% internal base projects FROM upstream images, each producing an image;
//   - 4% middle projects FROM an internal base (plus upstream build images),
//     each producing an image;
//   - the rest are services FROM one or two internal images and 1-3 upstream
//     build images, a quarter of them producing an image too.
// Times Graph::build, impact() of the most used upstream reference and of an
// internal base, and the three renderings; prints the best and the median of
// the runs.
//
//   graph_bench [PROJECTS] [RUNS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dockerfile/graph.h"

namespace {

using bw::dockerfile::Graph;
using bw::dockerfile::ProjectInput;
using Clock = std::chrono::steady_clock;

std::vector<ProjectInput> make_projects(size_t n, std::mt19937& rng) {
  const std::vector<std::string> upstream = {
      "docker.io/library/alpine:3.20",        "docker.io/library/alpine:3.19",
      "docker.io/library/debian:bookworm-slim", "docker.io/library/ubuntu:24.04",
      "docker.io/library/golang:1.23",        "docker.io/library/golang:1.22",
      "docker.io/library/node:20-bookworm-slim", "docker.io/library/python:3.12-slim",
      "docker.io/library/maven:3.9-eclipse-temurin-21", "docker.io/library/rust:1.82",
      "gcr.io/distroless/static-debian12:nonroot", "ghcr.io/acme/tools:2024.11",
      "quay.io/acme/ci-helper:v7",            "docker.io/tonistiigi/xx:1.5.0",
      "docker.io/docker/dockerfile:1.10",     "public.ecr.aws/docker/library/busybox:1.36"};
  auto pick = [&](size_t bound) { return std::uniform_int_distribution<size_t>(0, bound - 1)(rng); };
  size_t n_base = std::max<size_t>(1, n / 100);
  size_t n_mid = std::max<size_t>(1, n / 25);
  std::vector<ProjectInput> out;
  out.reserve(n);
  std::vector<std::string> base_images, mid_images;
  for (size_t i = 0; i < n && i < n_base; ++i) {
    std::string img = "registry.example.com/platform/base-" + std::to_string(i) + ":latest";
    out.push_back({"base-" + std::to_string(i), img, {upstream[pick(4)], upstream[14]}});
    base_images.push_back(img);
  }
  for (size_t i = 0; out.size() < n && i < n_mid; ++i) {
    std::string img = "registry.example.com/platform/runtime-" + std::to_string(i) + ":latest";
    out.push_back({"runtime-" + std::to_string(i), img, {base_images[pick(base_images.size())], upstream[4 + pick(6)]}});
    mid_images.push_back(img);
  }
  for (size_t i = 0; out.size() < n; ++i) {
    ProjectInput p;
    p.name = "svc-" + std::to_string(i);
    p.bases.push_back(mid_images[pick(mid_images.size())]);
    if (pick(3) == 0) p.bases.push_back(base_images[pick(base_images.size())]);
    for (size_t k = 1 + pick(3); k > 0; --k) p.bases.push_back(upstream[pick(upstream.size())]);
    std::sort(p.bases.begin(), p.bases.end());
    p.bases.erase(std::unique(p.bases.begin(), p.bases.end()), p.bases.end());
    if (pick(4) == 0) p.image = "registry.example.com/apps/svc-" + std::to_string(i) + ":latest";
    out.push_back(std::move(p));
  }
  return out;
}

struct Timing {
  std::vector<double> ms;
  void add(Clock::duration d) { ms.push_back(std::chrono::duration<double, std::milli>(d).count()); }
  double best() const { return *std::min_element(ms.begin(), ms.end()); }
  double median() const {
    auto v = ms;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

template <typename F>
auto timed(Timing& t, F&& f) {
  auto start = Clock::now();
  auto r = f();
  t.add(Clock::now() - start);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10'000;
  int runs = argc > 2 ? std::atoi(argv[2]) : 10;
  if (n < 3 || runs < 1) {
    std::fprintf(stderr, "usage: graph_bench [PROJECTS>=3] [RUNS>=1]\n");
    return 2;
  }
  std::mt19937 rng(42);
  auto projects = make_projects(n, rng);
  size_t refs = 0;
  for (const auto& p : projects) refs += p.bases.size();

  Timing build, impact_upstream, impact_base, text, json, dot;
  size_t plan_upstream = 0, plan_base = 0, out_bytes = 0, nodes = 0, edges = 0;
  for (int r = 0; r < runs; ++r) {
    auto g = timed(build, [&] { return Graph::build(projects); });
    if (!g) {
      std::fprintf(stderr, "graph_bench: %s\n", g.error().message.c_str());
      return 1;
    }
    nodes = g->nodes().size();
    edges = g->edges().size();
    plan_upstream = timed(impact_upstream, [&] { return g->impact("docker.io/library/alpine:3.20"); }).size();
    plan_base = timed(impact_base, [&] { return g->impact("docker.io/library/ubuntu:24.04"); }).size();
    out_bytes = timed(text, [&] { return g->to_text(); }).size();
    out_bytes += timed(json, [&] { return g->to_json(); }).size();
    out_bytes += timed(dot, [&] { return g->to_dot(); }).size();
  }
  std::printf("%zu projects, %zu base uses, %zu nodes, %zu edges; %d runs (best / median ms)\n", n, refs, nodes, edges,
              runs);
  std::printf("  Graph::build               %8.2f / %8.2f\n", build.best(), build.median());
  std::printf("  impact(alpine:3.20)        %8.2f / %8.2f  (%zu projects)\n", impact_upstream.best(),
              impact_upstream.median(), plan_upstream);
  std::printf("  impact(ubuntu:24.04)       %8.2f / %8.2f  (%zu projects)\n", impact_base.best(), impact_base.median(),
              plan_base);
  std::printf("  to_text                    %8.2f / %8.2f\n", text.best(), text.median());
  std::printf("  to_json                    %8.2f / %8.2f\n", json.best(), json.median());
  std::printf("  to_dot                     %8.2f / %8.2f  (%zu bytes rendered per run)\n", dot.best(), dot.median(),
              out_bytes);
  return 0;
}
