//===- Float8Test.cpp - FP8 encodings and block quantization ----*- C++ -*-===//

#include "xfmr/runtime/Float8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using namespace xfmr::fp8;

namespace {

/// An independent decoder: sign, exponent and mantissa fields by arithmetic.
double reference(int exponentBits, int mantissaBits, int bias, unsigned code) {
  double sign = code & 0x80 ? -1.0 : 1.0;
  unsigned e = (code & 0x7F) >> mantissaBits;
  unsigned m = code & ((1u << mantissaBits) - 1);
  (void)exponentBits;
  if (e == 0)
    return sign * m * std::pow(2.0, 1 - bias - mantissaBits);
  return sign * (1.0 + m / std::pow(2.0, mantissaBits)) * std::pow(2.0, int(e) - bias);
}

TEST(Float8Test, AllE4M3FNCodes) {
  int nans = 0;
  for (unsigned code = 0; code < 256; ++code) {
    double value = decode(Format::E4M3FN, code);
    if ((code & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(value)) << code;
      ++nans;
      EXPECT_EQ(encode(Format::E4M3FN, value), 0x7F);
      continue;
    }
    EXPECT_EQ(value, reference(4, 3, 7, code)) << code;
    // Every finite code encodes back to itself (-0 stays -0).
    EXPECT_EQ(encode(Format::E4M3FN, value), code) << code;
  }
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(decode(Format::E4M3FN, 0x7E), 448.0);
  EXPECT_EQ(decode(Format::E4M3FN, 0x38), 1.0);
  EXPECT_EQ(decode(Format::E4M3FN, 0x08), std::ldexp(1.0, -6));
  EXPECT_EQ(decode(Format::E4M3FN, 0x01), std::ldexp(1.0, -9));
}

TEST(Float8Test, AllE4M3FNUZCodes) {
  for (unsigned code = 0; code < 256; ++code) {
    double value = decode(Format::E4M3FNUZ, code);
    if (code == 0x80) {
      EXPECT_TRUE(std::isnan(value));
      continue;
    }
    EXPECT_EQ(value, reference(4, 3, 8, code)) << code;
    EXPECT_EQ(encode(Format::E4M3FNUZ, value), code) << code;
  }
  EXPECT_EQ(decode(Format::E4M3FNUZ, 0x7F), 240.0);
  EXPECT_EQ(encode(Format::E4M3FNUZ, -0.0), 0x00); // no negative zero
}

TEST(Float8Test, AllE5M2Codes) {
  for (unsigned code = 0; code < 256; ++code) {
    double value = decode(Format::E5M2, code);
    unsigned exponent = (code >> 2) & 0x1F;
    if (exponent == 0x1F) {
      EXPECT_TRUE((code & 3) ? std::isnan(value) : std::isinf(value)) << code;
      continue;
    }
    EXPECT_EQ(value, reference(5, 2, 15, code)) << code;
    EXPECT_EQ(encode(Format::E5M2, value), code) << code;
  }
}

TEST(Float8Test, RoundsToNearestEven) {
  // Halfway between 1.0 (0x38, even) and 1.125 (0x39).
  EXPECT_EQ(encode(Format::E4M3FN, 1.0625), 0x38);
  // Halfway between 1.125 (0x39) and 1.25 (0x3A, even).
  EXPECT_EQ(encode(Format::E4M3FN, 1.1875), 0x3A);
  EXPECT_EQ(encode(Format::E4M3FN, 1.07), 0x39);
  // Subnormals: half the smallest one ties to zero; 1.5 quanta to 2.
  EXPECT_EQ(encode(Format::E4M3FN, std::ldexp(1.0, -10)), 0x00);
  EXPECT_EQ(encode(Format::E4M3FN, 3 * std::ldexp(1.0, -10)), 0x02);
  EXPECT_EQ(encode(Format::E4M3FN, -3 * std::ldexp(1.0, -10)), 0x82);
}

TEST(Float8Test, Saturates) {
  EXPECT_EQ(encode(Format::E4M3FN, 449.0), 0x7E);
  EXPECT_EQ(encode(Format::E4M3FN, 1e9), 0x7E);
  EXPECT_EQ(encode(Format::E4M3FN, -1e9), 0xFE);
  EXPECT_EQ(encode(Format::E4M3FN, HUGE_VAL), 0x7E);
  EXPECT_EQ(encode(Format::E4M3FNUZ, 1000.0), 0x7F);
  EXPECT_EQ(encode(Format::E5M2, 1e9), 0x7B);
  EXPECT_EQ(encode(Format::E5M2, HUGE_VAL), 0x7C);
}

TEST(Float8Test, BlockQuantizationWithPartialEdgeBlocks) {
  // 130 x 200 with 128 x 128 blocks: 2 x 2 scales, the edge ones partial.
  const int64_t rows = 130, cols = 200;
  std::vector<double> values(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i)
    values[i] = std::sin(0.37 * i) * (1 + (i % 7));
  std::vector<uint8_t> codes(rows * cols);
  std::vector<float> scales(4);
  std::string error;
  ASSERT_TRUE(quantize(Format::E4M3FN, values.data(), rows, cols, {128, 128},
                       codes.data(), scales.data(), error));
  for (int rb = 0; rb < 2; ++rb)
    for (int cb = 0; cb < 2; ++cb) {
      double amax = 0;
      for (int64_t r = rb * 128; r < std::min<int64_t>(rows, rb * 128 + 128); ++r)
        for (int64_t c = cb * 128; c < std::min<int64_t>(cols, cb * 128 + 128); ++c)
          amax = std::max(amax, std::fabs(values[r * cols + c]));
      EXPECT_EQ(scales[rb * 2 + cb], float(amax / 448.0));
    }
  // Every value is within half a quantum (1/16 relative) of its original.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      double scale = scales[(r / 128) * 2 + c / 128];
      double restored = decode(Format::E4M3FN, codes[r * cols + c]) * scale;
      double original = values[r * cols + c];
      EXPECT_LE(std::fabs(restored - original),
                std::max(std::fabs(original) / 16, std::ldexp(scale, -10)))
          << r << ", " << c;
    }
}

TEST(Float8Test, ZeroBlocksInfinityAndNaN) {
  std::vector<double> values(4, 0.0);
  std::vector<uint8_t> codes(4, 0xAA);
  std::vector<float> scales(1);
  std::string error;
  ASSERT_TRUE(quantize(Format::E4M3FN, values.data(), 2, 2, {2, 2},
                       codes.data(), scales.data(), error));
  EXPECT_EQ(scales[0], float(kScaleEpsilon / 448.0));
  for (uint8_t code : codes)
    EXPECT_EQ(code, 0x00);
  // An infinity saturates; the scale comes from the finite values.
  values = {1.0, -2.0, HUGE_VAL, 0.5};
  ASSERT_TRUE(quantize(Format::E4M3FN, values.data(), 2, 2, {2, 2},
                       codes.data(), scales.data(), error));
  EXPECT_EQ(scales[0], float(2.0 / 448.0));
  EXPECT_EQ(codes[2], 0x7E);
  values[1] = std::nan("");
  EXPECT_FALSE(quantize(Format::E4M3FN, values.data(), 2, 2, {2, 2},
                        codes.data(), scales.data(), error));
  EXPECT_EQ(error, "NaN at [0, 1]");
}

TEST(Float8Test, E4M3FNToFNUZIsExact) {
  std::vector<uint8_t> codes;
  for (unsigned code = 0; code < 256; ++code)
    if ((code & 0x7F) != 0x7F)
      codes.push_back(code);
  std::vector<uint8_t> converted = codes;
  std::string error;
  ASSERT_TRUE(convertE4M3FNToFNUZ(converted.data(), converted.size(), error));
  for (size_t i = 0; i < codes.size(); ++i)
    EXPECT_EQ(decode(Format::E4M3FNUZ, converted[i]) * 2,
              decode(Format::E4M3FN, codes[i]))
        << unsigned(codes[i]);
  uint8_t nan = 0xFF;
  EXPECT_FALSE(convertE4M3FNToFNUZ(&nan, 1, error));
  EXPECT_EQ(error, "E4M3FN NaN code 0xff at element 0 has no E4M3FNUZ equivalent");
}

} // namespace
