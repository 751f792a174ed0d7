//===- SamplerTest.cpp - greedy, temperature, top-k, top-p ----------------===//

#include "xfmr/runtime/Sampler.h"
#include "xfmr/runtime/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

using namespace xfmr::runtime;

namespace {

std::string validateError(const SamplingOptions &o) {
  try {
    o.validate();
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

SamplingOptions sampling(float temperature, int topK = 0, float topP = 1,
                         uint64_t seed = 0) {
  SamplingOptions o;
  o.temperature = temperature;
  o.topK = topK;
  o.topP = topP;
  o.seed = seed;
  return o;
}

/// Frequencies of each token over `draws` samples of `logits`.
std::map<int32_t, double> frequencies(const SamplingOptions &o,
                                      const std::vector<float> &logits,
                                      int draws = 40000) {
  Sampler s(o);
  std::map<int32_t, double> counts;
  for (int i = 0; i < draws; ++i)
    counts[s.sample(logits.data(), logits.size())] += 1.0 / draws;
  return counts;
}

/// log(probability): softmax at T=1 gives back {0.1, 0.2, 0.3, 0.4}.
const std::vector<float> kLogits = {std::log(0.1f), std::log(0.2f),
                                    std::log(0.3f), std::log(0.4f)};

TEST(SamplerTest, ValidateNamesTheOption) {
  EXPECT_EQ(validateError(sampling(0)), "");
  EXPECT_EQ(validateError(sampling(-1)),
            "temperature must be a finite number >= 0 (0: greedy), got -1");
  EXPECT_NE(validateError(sampling(NAN)).find("got nan"), std::string::npos);
  EXPECT_NE(validateError(sampling(INFINITY)).find("temperature"),
            std::string::npos);
  EXPECT_EQ(validateError(sampling(1, -1)),
            "top-k must be >= 0 (0: no limit), got -1");
  EXPECT_EQ(validateError(sampling(1, 0, 0)), "top-p must be in (0, 1], got 0");
  EXPECT_NE(validateError(sampling(1, 0, 1.5f)).find("top-p"),
            std::string::npos);
  EXPECT_NE(validateError(sampling(1, 0, NAN)).find("top-p"),
            std::string::npos);
  EXPECT_THROW(Sampler(sampling(-1)), Error);
}

TEST(SamplerTest, GreedyIsArgmaxLowestIndexOnTies) {
  Sampler s(sampling(0));
  std::vector<float> logits = {1, 5, 2, 5, -1};
  EXPECT_EQ(s.sample(logits.data(), 5), 1);
  std::vector<float> inf = {0, INFINITY, 3};
  EXPECT_EQ(s.sample(inf.data(), 3), 1);
  std::vector<float> allNegInf(3, -INFINITY);
  EXPECT_EQ(s.sample(allNegInf.data(), 3), 0);
}

TEST(SamplerTest, BadRowsThrow) {
  Sampler s(sampling(1));
  std::vector<float> nan = {0, NAN};
  EXPECT_THROW(s.sample(nan.data(), 2), Error);
  EXPECT_THROW(s.sample(kLogits.data(), 0), Error);
}

TEST(SamplerTest, UniformIsTheStandardEngine) {
  // The standard fixes mt19937_64's 10000th output for the default seed, so
  // this holds with every standard library.
  Sampler s(sampling(1, 0, 1, std::mt19937_64::default_seed));
  for (int i = 0; i < 9999; ++i)
    s.uniform();
  EXPECT_EQ(s.uniform(), double(9981545732273789042ull >> 11) * 0x1.0p-53);
}

TEST(SamplerTest, DeterministicForASeed) {
  auto draws = [](uint64_t seed) {
    Sampler s(sampling(1, 0, 1, seed));
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i)
      out.push_back(s.sample(kLogits.data(), 4));
    return out;
  };
  EXPECT_EQ(draws(7), draws(7));
  EXPECT_NE(draws(7), draws(8));
}

TEST(SamplerTest, TemperatureOneFollowsSoftmax) {
  auto f = frequencies(sampling(1, 0, 1, 42), kLogits);
  for (int v = 0; v < 4; ++v)
    EXPECT_NEAR(f[v], 0.1 * (v + 1), 0.01) << v;
}

TEST(SamplerTest, TemperatureFlattens) {
  // T = 2: p ~ sqrt(0.1 (v + 1)).
  auto f = frequencies(sampling(2, 0, 1, 3), kLogits);
  double total = 0;
  for (int v = 0; v < 4; ++v)
    total += std::sqrt(0.1 * (v + 1));
  for (int v = 0; v < 4; ++v)
    EXPECT_NEAR(f[v], std::sqrt(0.1 * (v + 1)) / total, 0.01) << v;
}

TEST(SamplerTest, TopKRenormalizes) {
  auto f = frequencies(sampling(1, 2, 1, 5), kLogits);
  EXPECT_EQ(f.count(0) + f.count(1), 0u);
  EXPECT_NEAR(f[3], 4.0 / 7, 0.01);
  EXPECT_NEAR(f[2], 3.0 / 7, 0.01);
}

TEST(SamplerTest, TopPKeepsTheSmallestNucleus) {
  // 0.4 + 0.3 >= 0.65: tokens 3 and 2.
  auto f = frequencies(sampling(1, 0, 0.65f, 9), kLogits);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_NEAR(f[3], 4.0 / 7, 0.01);
  // Exactly 0.4 (as a float) keeps token 3 alone.
  EXPECT_EQ(frequencies(sampling(1, 0, 0.4f, 9), kLogits, 100).size(), 1u);
  // Top-k applies first: among {3, 2}, 0.6 of the mass needs both.
  auto both = frequencies(sampling(1, 2, 0.6f, 9), kLogits);
  EXPECT_EQ(both.size(), 2u);
}

TEST(SamplerTest, TiesAreOrderedByIndex) {
  // Four equal tokens, top-k = 2 keeps tokens 0 and 1.
  std::vector<float> flat(4, 0.5f);
  auto f = frequencies(sampling(1, 2, 1, 1), flat, 2000);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_GT(f.count(0) * f.count(1), 0u);
}

TEST(SamplerTest, TopKOneAndTinyTopPAreGreedy) {
  std::mt19937_64 rng(11);
  std::vector<float> logits(257);
  Sampler greedy(sampling(0));
  Sampler topK(sampling(1.5f, 1, 1, 3));
  Sampler topP(sampling(0.7f, 0, 1e-6f, 4));
  for (int trial = 0; trial < 50; ++trial) {
    for (float &l : logits)
      l = float(rng() % 10000) / 100.0f;
    int32_t want = greedy.sample(logits.data(), logits.size());
    EXPECT_EQ(topK.sample(logits.data(), logits.size()), want);
    EXPECT_EQ(topP.sample(logits.data(), logits.size()), want);
  }
}

TEST(SamplerTest, NeverPicksImpossibleTokens) {
  std::vector<float> logits = {-INFINITY, 0, -INFINITY, 1};
  auto f = frequencies(sampling(1, 0, 1, 2), logits, 5000);
  EXPECT_EQ(f.count(0) + f.count(2), 0u);
  std::vector<float> inf = {0, INFINITY, 3};
  EXPECT_EQ(frequencies(sampling(1, 0, 1, 2), inf, 100).size(), 1u);
}

} // namespace
