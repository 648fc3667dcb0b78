#include "util/metrics.h"

#include <charconv>
#include <cmath>

namespace bw {

const std::vector<double> Metrics::k_default_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

Metrics& Metrics::global() {
  static Metrics m;
  return m;
}

namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back as v
  return std::string(buf, res.ptr);
}

}  // namespace

std::string Metrics::render_labels(const Labels& labels, const std::string& extra) {
  if (labels.empty() && extra.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ",";
    out += labels[i].first + "=\"" + escape_label(labels[i].second) + "\"";
  }
  if (!extra.empty()) out += (labels.empty() ? "" : ",") + extra;
  return out + "}";
}

Metrics::Family& Metrics::family(const std::string& name, const std::string& type, const std::string& help) {
  auto& f = m_families[name];
  if (f.type.empty()) {
    f.type = type;
    f.help = help;
  }
  return f;
}

void Metrics::counter_add(const std::string& name, const std::string& help, const Labels& labels, double by) {
  std::lock_guard lock(m_mutex);
  family(name, "counter", help).values[render_labels(labels)] += by;
}

void Metrics::gauge_set(const std::string& name, const std::string& help, const Labels& labels, double value) {
  std::lock_guard lock(m_mutex);
  family(name, "gauge", help).values[render_labels(labels)] = value;
}

void Metrics::histogram_observe(const std::string& name, const std::string& help, const Labels& labels, double value,
                                const std::vector<double>& buckets) {
  std::lock_guard lock(m_mutex);
  auto& h = family(name, "histogram", help).histograms[render_labels(labels)];
  if (h.buckets.empty()) {
    h.buckets = buckets;
    h.counts.assign(buckets.size(), 0);
  }
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    if (value <= h.buckets[i]) {
      ++h.counts[i];
      break;
    }
  }
  ++h.count;
  h.sum += value;
}

double Metrics::counter_value(const std::string& name, const Labels& labels) const {
  std::lock_guard lock(m_mutex);
  auto f = m_families.find(name);
  if (f == m_families.end()) return 0;
  auto v = f->second.values.find(render_labels(labels));
  return v == f->second.values.end() ? 0 : v->second;
}

std::string Metrics::render() const {
  std::lock_guard lock(m_mutex);
  std::string out;
  for (const auto& [name, f] : m_families) {
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, v] : f.values) out += name + labels + " " + number(v) + "\n";
    for (const auto& [labels, h] : f.histograms) {
      // Re-open the rendered label set to add `le`.
      std::string inner = labels.empty() ? "" : labels.substr(1, labels.size() - 2);
      auto with_le = [&](const std::string& le) {
        return "{" + inner + (inner.empty() ? "" : ",") + "le=\"" + le + "\"}";
      };
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.buckets.size(); ++i) {
        cumulative += h.counts[i];
        out += name + "_bucket" + with_le(number(h.buckets[i])) + " " + std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + with_le("+Inf") + " " + std::to_string(h.count) + "\n";
      out += name + "_sum" + labels + " " + number(h.sum) + "\n";
      out += name + "_count" + labels + " " + std::to_string(h.count) + "\n";
    }
  }
  return out;
}

void Metrics::reset() {
  std::lock_guard lock(m_mutex);
  m_families.clear();
}

}  // namespace bw
