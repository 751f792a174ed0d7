//===- MLAFoldTest.cpp - compile-time MLA weight products -------*- C++ -*-===//
//
// foldMLAWeight against the definition: applying a folded weight equals
// applying the unfolded ones in sequence.
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/MLAFold.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using namespace xfmr;

namespace {

constexpr MLAFoldShape kShape{/*heads=*/2, /*nope=*/3, /*rope=*/2,
                              /*valueDim=*/4, /*rank=*/5};

std::vector<double> ramp(size_t n, double scale) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = std::sin(scale * double(i + 1));
  return v;
}

/// y = W x for W [rows, cols] row-major.
std::vector<double> apply(const std::vector<double> &w, int64_t rows,
                          int64_t cols, const std::vector<double> &x) {
  std::vector<double> y(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[r] += w[r * cols + c] * x[c];
  return y;
}

TEST(MLAFold, QueryLatentIsUKTransposeTimesNoRopeQuery) {
  const int64_t in = 6, h = kShape.heads, nope = kShape.nope,
                rope = kShape.rope, v = kShape.valueDim, rank = kShape.rank;
  std::vector<double> wq = ramp(h * (nope + rope) * in, 0.37);
  std::vector<double> kvB = ramp(h * (nope + v) * rank, 0.71);
  std::vector<double> x = ramp(in, 1.3);
  std::vector<double> folded =
      foldMLAWeight("query_latent", wq, h * (nope + rope), in, kvB, kShape);
  ASSERT_EQ(folded.size(), size_t(h * rank * in));
  std::vector<double> q = apply(wq, h * (nope + rope), in, x);
  std::vector<double> qLatent = apply(folded, h * rank, in, x);
  for (int64_t head = 0; head < h; ++head)
    for (int64_t c = 0; c < rank; ++c) {
      double expected = 0;
      for (int64_t d = 0; d < nope; ++d)
        expected += kvB[(head * (nope + v) + d) * rank + c] *
                    q[head * (nope + rope) + d];
      EXPECT_NEAR(qLatent[head * rank + c], expected, 1e-12);
    }
}

TEST(MLAFold, QueryRopeKeepsTheRopeRows) {
  const int64_t in = 6, h = kShape.heads, nope = kShape.nope,
                rope = kShape.rope;
  std::vector<double> wq = ramp(h * (nope + rope) * in, 0.37);
  std::vector<double> folded =
      foldMLAWeight("query_rope", wq, h * (nope + rope), in, {}, kShape);
  ASSERT_EQ(folded.size(), size_t(h * rope * in));
  for (int64_t head = 0; head < h; ++head)
    for (int64_t r = 0; r < rope; ++r)
      for (int64_t j = 0; j < in; ++j)
        EXPECT_EQ(folded[(head * rope + r) * in + j],
                  wq[(head * (nope + rope) + nope + r) * in + j]);
}

TEST(MLAFold, OutputIsOProjTimesUV) {
  const int64_t hidden = 7, h = kShape.heads, nope = kShape.nope,
                v = kShape.valueDim, rank = kShape.rank;
  std::vector<double> wo = ramp(hidden * h * v, 0.53);
  std::vector<double> kvB = ramp(h * (nope + v) * rank, 0.71);
  std::vector<double> latent = ramp(h * rank, 0.9); // per-head latent output
  std::vector<double> folded =
      foldMLAWeight("output", wo, hidden, h * v, kvB, kShape);
  ASSERT_EQ(folded.size(), size_t(hidden * h * rank));
  // Unfolded: per head v = W_UV latent, then o_proj.
  std::vector<double> values(h * v, 0.0);
  for (int64_t head = 0; head < h; ++head)
    for (int64_t i = 0; i < v; ++i)
      for (int64_t c = 0; c < rank; ++c)
        values[head * v + i] += kvB[(head * (nope + v) + nope + i) * rank + c] *
                                latent[head * rank + c];
  std::vector<double> expected = apply(wo, hidden, h * v, values);
  std::vector<double> got = apply(folded, hidden, h * rank, latent);
  for (int64_t n = 0; n < hidden; ++n)
    EXPECT_NEAR(got[n], expected[n], 1e-12);
}

} // namespace
