// Process-wide metrics in the Prometheus data model: counters, gauges and
// histograms with labels, rendered in the text exposition format at /metrics.
// Cheap to update from any thread (one mutex; updates are rare next to I/O).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace bw {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  // The one registry of this process.
  static Metrics& global();

  // `help` is recorded on first use of a name.
  void counter_add(const std::string& name, const std::string& help, const Labels& labels, double by = 1);
  void gauge_set(const std::string& name, const std::string& help, const Labels& labels, double value);
  // Buckets are upper bounds in the histogram's unit (seconds by convention).
  void histogram_observe(const std::string& name, const std::string& help, const Labels& labels, double value,
                         const std::vector<double>& buckets = k_default_buckets);
  double counter_value(const std::string& name, const Labels& labels) const;

  // Text exposition format 0.0.4, families sorted by name.
  std::string render() const;
  void reset();  // tests only

  static const std::vector<double> k_default_buckets;

 private:
  struct Histogram {
    std::vector<double> buckets;
    std::vector<uint64_t> counts;  // per bucket, not cumulative
    uint64_t count = 0;
    double sum = 0;
  };
  struct Family {
    std::string type;  // counter | gauge | histogram
    std::string help;
    std::map<std::string, double> values;          // rendered labels -> value
    std::map<std::string, Histogram> histograms;   // rendered labels -> histogram
  };
  static std::string render_labels(const Labels& labels, const std::string& extra = "");
  Family& family(const std::string& name, const std::string& type, const std::string& help);

  mutable std::mutex m_mutex;
  std::map<std::string, Family> m_families;
};

}  // namespace bw
