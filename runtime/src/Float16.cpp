//===- Float16.cpp - bf16 and IEEE half conversions -----------------------===//

#include "xfmr/runtime/Float16.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace xfmr;

namespace {

/// Decodes a binary float of 1 + `exponentBits` + `mantissaBits` bits.
double decode(uint16_t bits, int exponentBits, int mantissaBits) {
  int bias = (1 << (exponentBits - 1)) - 1;
  int maxExponent = (1 << exponentBits) - 1;
  int exponent = (bits >> mantissaBits) & maxExponent;
  int mantissa = bits & ((1 << mantissaBits) - 1);
  double sign = bits >> (exponentBits + mantissaBits) ? -1.0 : 1.0;
  if (exponent == maxExponent)
    return mantissa ? std::nan("") : sign * HUGE_VAL;
  if (exponent == 0)
    return sign * std::ldexp(mantissa, 1 - bias - mantissaBits);
  return sign * std::ldexp(mantissa + (1 << mantissaBits),
                           exponent - bias - mantissaBits);
}

/// Rounds `value` to nearest (ties to even) in the same format.
uint16_t encode(double value, int exponentBits, int mantissaBits) {
  uint16_t sign = std::signbit(value) ? 1u << (exponentBits + mantissaBits) : 0;
  int maxExponent = (1 << exponentBits) - 1;
  uint16_t infinity = sign | (maxExponent << mantissaBits);
  if (std::isnan(value)) // a quiet NaN
    return infinity | (1u << (mantissaBits - 1));
  double magnitude = std::fabs(value);
  if (std::isinf(magnitude))
    return infinity;
  if (magnitude == 0)
    return sign;
  int bias = (1 << (exponentBits - 1)) - 1;
  int exponent;
  std::frexp(magnitude, &exponent);
  // magnitude = m * 2^(exponent - 1) with m in [1, 2); below the smallest
  // normal exponent the quantum stays that of the subnormals.
  exponent = std::max(exponent - 1, 1 - bias);
  // Scaling by a power of two is exact; nearbyint rounds ties to even.
  double units = std::nearbyint(std::ldexp(magnitude, mantissaBits - exponent));
  uint32_t mantissa = static_cast<uint32_t>(units);
  if (mantissa >> (mantissaBits + 1)) { // rounded up to the next binade
    mantissa >>= 1;
    ++exponent;
  }
  if (exponent + bias >= maxExponent)
    return infinity;
  // Below 1 << mantissaBits the value is subnormal (biased exponent 0).
  uint32_t biased = mantissa >> mantissaBits ? exponent + bias : 0;
  return sign | (biased << mantissaBits) |
         (mantissa & ((1u << mantissaBits) - 1));
}

} // namespace

double float16::decodeBF16(uint16_t bits) { return decode(bits, 8, 7); }
double float16::decodeF16(uint16_t bits) { return decode(bits, 5, 10); }
uint16_t float16::encodeBF16(double value) { return encode(value, 8, 7); }
uint16_t float16::encodeF16(double value) { return encode(value, 5, 10); }
