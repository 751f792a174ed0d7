//===- Histogram.cpp - fixed-bucket histograms for /metrics ---------------===//

#include "Histogram.h"

#include <algorithm>
#include <cstdio>

using namespace xfmr::serve;

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t bucket =
      size_t(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
             bounds_.begin());
  ++counts_[bucket];
  ++count_;
  sum_ += value;
}

static std::string number(double value) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.9g", value);
  return text;
}

std::string Histogram::prometheus(const std::string &name,
                                  const std::string &help,
                                  const std::string &labels) const {
  std::string out =
      "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  std::string prefix = labels.empty() ? "" : labels + ",";
  std::string own = labels.empty() ? "" : "{" + labels + "}";
  int64_t cumulative = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += name + "_bucket{" + prefix + "le=\"" + le + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  out += name + "_sum" + own + " " + number(sum_) + "\n";
  out += name + "_count" + own + " " + std::to_string(count_) + "\n";
  return out;
}

std::vector<double> xfmr::serve::latencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,   1,      2.5,   5,    10,    30,   60};
}
