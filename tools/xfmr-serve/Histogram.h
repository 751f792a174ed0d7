//===- Histogram.h - fixed-bucket histograms for /metrics -------*- C++ -*-===//
//
// Prometheus-style cumulative histograms with fixed bucket bounds: memory
// stays constant however many observations a long-running server makes.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TOOLS_XFMR_SERVE_HISTOGRAM_H
#define XFMR_TOOLS_XFMR_SERVE_HISTOGRAM_H

#include <cstdint>
#include <string>
#include <vector>

namespace xfmr::serve {

class Histogram {
public:
  /// Buckets `value <= bound` for each bound (ascending), and +Inf.
  explicit Histogram(std::vector<double> bounds = {});

  void observe(double value);
  int64_t count() const { return count_; }
  double sum() const { return sum_; }

  /// Prometheus text: `name_bucket{le="..."}`, `name_sum`, `name_count`,
  /// after `# HELP` and `# TYPE` lines; `labels` (`model="m"`) go on each.
  std::string prometheus(const std::string &name, const std::string &help,
                         const std::string &labels = {}) const;

private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_; // per bucket (not cumulative), +Inf last
  int64_t count_ = 0;
  double sum_ = 0;
};

/// Bucket bounds for latencies in seconds, 1 ms to 60 s.
std::vector<double> latencyBuckets();

} // namespace xfmr::serve

#endif // XFMR_TOOLS_XFMR_SERVE_HISTOGRAM_H
