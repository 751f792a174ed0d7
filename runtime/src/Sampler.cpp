//===- Sampler.cpp - choosing the next token from logits ------------------===//

#include "xfmr/runtime/Sampler.h"

#include "xfmr/runtime/Error.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

using namespace xfmr::runtime;

static std::string formatFloat(float value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", static_cast<double>(value));
  return buffer;
}

void SamplingOptions::validate() const {
  if (!std::isfinite(temperature) || temperature < 0)
    throw Error("temperature must be a finite number >= 0 (0: greedy), got " +
                formatFloat(temperature));
  if (topK < 0)
    throw Error("top-k must be >= 0 (0: no limit), got " +
                std::to_string(topK));
  // Written so that NaN fails too.
  if (!(topP > 0 && topP <= 1))
    throw Error("top-p must be in (0, 1], got " + formatFloat(topP));
}

Sampler::Sampler(const SamplingOptions &options)
    : options_(options), engine_(options.seed) {
  options_.validate();
}

double Sampler::uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

int32_t Sampler::sample(const float *logits, int64_t vocab) {
  if (vocab <= 0 || vocab > INT32_MAX)
    throw Error("cannot sample from " + std::to_string(vocab) + " logits");
  int64_t best = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i]))
      throw Error("logit " + std::to_string(i) + " is NaN");
    if (logits[i] > logits[best])
      best = i;
  }
  if (options_.isGreedy())
    return static_cast<int32_t>(best);

  // Unnormalized softmax(logits / T). Comparing with the max first keeps an
  // infinite max finite (inf - inf would be NaN).
  double maxLogit = logits[best];
  double temperature = options_.temperature;
  candidates_.clear();
  for (int64_t i = 0; i < vocab; ++i) {
    double p = logits[i] == maxLogit
                   ? 1.0
                   : std::exp((logits[i] - maxLogit) / temperature);
    if (p > 0)
      candidates_.emplace_back(p, static_cast<int32_t>(i));
  }

  size_t keep = candidates_.size();
  bool limitK = options_.topK > 0 && static_cast<size_t>(options_.topK) < keep;
  if (limitK || options_.topP < 1) {
    // Most likely first, ties in order of token id: a total order, so the
    // kept set does not depend on the sort algorithm.
    auto moreLikely = [](const auto &a, const auto &b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (limitK) {
      keep = static_cast<size_t>(options_.topK);
      std::partial_sort(candidates_.begin(), candidates_.begin() + keep,
                        candidates_.end(), moreLikely);
    } else {
      std::sort(candidates_.begin(), candidates_.end(), moreLikely);
    }
    if (options_.topP < 1) {
      double total = 0;
      for (size_t i = 0; i < keep; ++i)
        total += candidates_[i].first;
      // A little slack so that a float top-p (0.4f is 0.40000001) or
      // rounding in the sums does not pull in one more token.
      double target = (options_.topP - 1e-6) * total;
      double cumulative = 0;
      size_t nucleus = 0;
      while (nucleus < keep) {
        cumulative += candidates_[nucleus++].first;
        if (cumulative >= target)
          break;
      }
      keep = nucleus;
    }
    candidates_.resize(keep);
  }

  double total = 0;
  for (const auto &c : candidates_)
    total += c.first;
  double u = uniform() * total;
  double cumulative = 0;
  for (const auto &c : candidates_) {
    cumulative += c.first;
    if (u < cumulative)
      return c.second;
  }
  return candidates_.back().second;
}
