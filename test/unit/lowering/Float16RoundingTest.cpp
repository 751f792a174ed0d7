//===- Float16RoundingTest.cpp - runtime rounding == llvm::APFloat --------===//
//
// Folded MLA weights are rounded from double to bf16/f16 by the runtime's
// packer (xfmr/runtime/Float16.h), the same code for xfmr-compile and
// xfmr-pack. It must round as llvm::APFloat does (ties to even, subnormals,
// overflow to infinity): checked here on edge cases and random doubles of
// every magnitude.
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Float16.h"

#include "llvm/ADT/APFloat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace xfmr;

namespace {

uint16_t viaAPFloat(double value, const llvm::fltSemantics &semantics) {
  llvm::APFloat f(value);
  bool lost;
  f.convert(semantics, llvm::APFloat::rmNearestTiesToEven, &lost);
  return static_cast<uint16_t>(f.bitcastToAPInt().getZExtValue());
}

std::vector<double> samples() {
  std::vector<double> values = {0.0,
                                -0.0,
                                1.0,
                                -1.0,
                                65504.0,
                                65519.99,
                                65520.0,
                                65536.0,
                                1e-8,
                                5.960464477539063e-08,
                                2.9802322387695312e-08,
                                2.98023223876953125e-08 * 1.0000001,
                                6.097555160522461e-05,
                                3.3895313892515355e+38,
                                3.4e38,
                                1e300,
                                -1e300,
                                1e-300,
                                std::numeric_limits<double>::denorm_min(),
                                std::numeric_limits<double>::infinity(),
                                -std::numeric_limits<double>::infinity(),
                                1.00390625,  // bf16 tie, rounds to even (1.0)
                                1.01171875,  // bf16 tie, rounds up
                                1.00048828125, // f16 tie
                                1.00146484375};
  std::mt19937_64 random(7);
  std::uniform_int_distribution<int> exponent(-160, 140);
  std::uniform_real_distribution<double> mantissa(1.0, 2.0);
  for (int i = 0; i < 200000; ++i) {
    double v = std::ldexp(mantissa(random), exponent(random));
    values.push_back(i % 2 ? -v : v);
  }
  // Exact ties and near ties around every bf16 and f16 value of one binade.
  for (int m = 0; m < 1024; ++m)
    for (double delta : {-1e-12, 0.0, 1e-12}) {
      values.push_back(1.0 + (m + 0.5) / 128.0 + delta);
      values.push_back(1.0 + (m + 0.5) / 1024.0 + delta);
      values.push_back(std::ldexp(m + 0.5, -24) + delta * 1e-8);
    }
  return values;
}

TEST(Float16Rounding, EncodeMatchesAPFloat) {
  for (double value : samples()) {
    ASSERT_EQ(float16::encodeBF16(value),
              viaAPFloat(value, llvm::APFloat::BFloat()))
        << "bf16 of " << value;
    ASSERT_EQ(float16::encodeF16(value),
              viaAPFloat(value, llvm::APFloat::IEEEhalf()))
        << "f16 of " << value;
  }
}

TEST(Float16Rounding, NaNStaysNaN) {
  uint16_t bf16 = float16::encodeBF16(std::nan(""));
  uint16_t f16 = float16::encodeF16(std::nan(""));
  EXPECT_TRUE(std::isnan(float16::decodeBF16(bf16)));
  EXPECT_TRUE(std::isnan(float16::decodeF16(f16)));
}

TEST(Float16Rounding, DecodeIsExact) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    uint32_t widened = bits << 16;
    float f;
    std::memcpy(&f, &widened, 4);
    double bf16 = float16::decodeBF16(static_cast<uint16_t>(bits));
    llvm::APFloat half(llvm::APFloat::IEEEhalf(),
                       llvm::APInt(16, bits));
    double f16 = float16::decodeF16(static_cast<uint16_t>(bits));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16));
    } else {
      ASSERT_EQ(bf16, double(f)) << bits;
    }
    if (half.isNaN()) {
      EXPECT_TRUE(std::isnan(f16));
    } else {
      ASSERT_EQ(f16, half.convertToDouble()) << bits;
      // Round trip.
      ASSERT_EQ(float16::encodeF16(f16), bits);
    }
  }
}

} // namespace
