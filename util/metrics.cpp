#include "util/metrics.h"

#include <charconv>
#include <cmath>
#include <string_view>

namespace bw {

const std::vector<double> Metrics::k_default_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

Metrics& Metrics::global() {
  static Metrics m;
  return m;
}

namespace {

void append_escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back as v
  return std::string(buf, res.ptr);
}

}  // namespace

std::string Metrics::render_labels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out;
  out.reserve(64);
  out += '{';
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += labels[i].first;
    out += "=\"";
    append_escaped(out, labels[i].second);
    out += '"';
  }
  out += '}';
  return out;
}

Metrics::Family& Metrics::family(std::string_view name, std::string_view type, std::string_view help) {
  auto f = m_families.find(name);
  if (f == m_families.end()) {
    f = m_families.emplace(std::string(name), Family{}).first;
    f->second.type = type;
    f->second.help = help;
  }
  return f->second;
}

// The labels are rendered before the lock is taken: fifty workers count
// every request under it, and /metrics takes it to copy every series.
void Metrics::counter_add(std::string_view name, std::string_view help, const Labels& labels, double by) {
  std::string key = render_labels(labels);
  std::lock_guard lock(m_mutex);
  family(name, "counter", help).values[std::move(key)] += by;
}

void Metrics::gauge_set(std::string_view name, std::string_view help, const Labels& labels, double value) {
  std::string key = render_labels(labels);
  std::lock_guard lock(m_mutex);
  family(name, "gauge", help).values[std::move(key)] = value;
}

void Metrics::histogram_observe(std::string_view name, std::string_view help, const Labels& labels, double value,
                                const std::vector<double>& buckets) {
  std::string key = render_labels(labels);
  std::lock_guard lock(m_mutex);
  auto& h = family(name, "histogram", help).histograms[std::move(key)];
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

double Metrics::counter_value(std::string_view name, const Labels& labels) const {
  std::string key = render_labels(labels);
  std::lock_guard lock(m_mutex);
  auto f = m_families.find(name);
  if (f == m_families.end()) return 0;
  auto v = f->second.values.find(key);
  return v == f->second.values.end() ? 0 : v->second;
}

std::string Metrics::render() const {
  // A copy taken under the lock, written out after it: the workers count
  // every request under this lock, and a scrape every 50 ms held them while
  // a thousand lines were formatted.
  std::map<std::string, Family, std::less<>> families;
  {
    std::lock_guard lock(m_mutex);
    families = m_families;
  }
  std::string out;
  out.reserve(128 * families.size() + 4096);
  auto line = [&out](const std::string& name, std::string_view suffix, std::string_view labels, const std::string& value) {
    out += name;
    out += suffix;
    out += labels;
    out += ' ';
    out += value;
    out += '\n';
  };
  for (const auto& [name, f] : families) {
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, v] : f.values) line(name, "", labels, number(v));
    for (const auto& [labels, h] : f.histograms) {
      // Re-open the rendered label set to add `le`.
      std::string inner = labels.empty() ? "" : labels.substr(1, labels.size() - 2);
      auto with_le = [&](const std::string& le) {
        return "{" + inner + (inner.empty() ? "" : ",") + "le=\"" + le + "\"}";
      };
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.buckets.size(); ++i) {
        cumulative += h.counts[i];
        line(name, "_bucket", with_le(number(h.buckets[i])), std::to_string(cumulative));
      }
      line(name, "_bucket", with_le("+Inf"), std::to_string(h.count));
      line(name, "_sum", labels, number(h.sum));
      line(name, "_count", labels, std::to_string(h.count));
    }
  }
  return out;
}

void Metrics::reset() {
  std::lock_guard lock(m_mutex);
  m_families.clear();
}

}  // namespace bw
