// Process-wide metrics in the Prometheus data model: counters, gauges and
// histograms with labels, rendered in the text exposition format at /metrics.
// Cheap to update from any thread (one mutex; updates are rare next to I/O).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bw {

// Names and values are views: a label set is built at the call and read
// there (an update allocates only the rendered key it looks up).
using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

class Metrics {
 public:
  // The one registry of this process.
  static Metrics& global();

  // `help` is recorded on first use of a name.
  void counter_add(std::string_view name, std::string_view help, const Labels& labels, double by = 1);
  void gauge_set(std::string_view name, std::string_view help, const Labels& labels, double value);
  // Buckets are upper bounds in the histogram's unit (seconds by convention).
  void histogram_observe(std::string_view name, std::string_view help, const Labels& labels, double value,
                         const std::vector<double>& buckets = k_default_buckets);
  double counter_value(std::string_view name, const Labels& labels) const;

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
    std::map<std::string, double, std::less<>> values;         // rendered labels -> value
    std::map<std::string, Histogram, std::less<>> histograms;  // rendered labels -> histogram
  };
  static std::string render_labels(const Labels& labels);
  Family& family(std::string_view name, std::string_view type, std::string_view help);

  mutable std::mutex m_mutex;
  std::map<std::string, Family, std::less<>> m_families;
};

}  // namespace bw
