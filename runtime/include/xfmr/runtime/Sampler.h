//===- Sampler.h - choosing the next token from logits ----------*- C++ -*-===//
//
// Temperature, top-k and top-p (nucleus) sampling. Draws come from
// std::mt19937_64 (fully specified by the standard) through our own
// uniform-double conversion, so a seed gives the same tokens with every
// standard library.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_SAMPLER_H
#define XFMR_RUNTIME_SAMPLER_H

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace xfmr::runtime {

struct SamplingOptions {
  /// 0: greedy (argmax, lowest index on ties).
  float temperature = 0;
  /// Keep only the k most likely tokens; 0: all.
  int topK = 0;
  /// Keep the smallest set of most likely tokens whose probability is >= p.
  float topP = 1;
  uint64_t seed = 0;

  /// Throws `Error` naming the bad option and value.
  void validate() const;
  bool isGreedy() const { return temperature == 0; }
};

class Sampler {
public:
  /// Validates `options` (throws `Error`).
  explicit Sampler(const SamplingOptions &options);

  /// Picks a token id from one row of `vocab` logits. Throws `Error` when
  /// `vocab` <= 0 or a logit is NaN.
  int32_t sample(const float *logits, int64_t vocab);

  /// A uniform double in [0, 1) from the 53 high bits of one engine draw.
  double uniform();

private:
  SamplingOptions options_;
  std::mt19937_64 engine_;
  /// (probability, token) scratch, reused between calls.
  std::vector<std::pair<double, int32_t>> candidates_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_SAMPLER_H
