//===- Float8.cpp - FP8 encodings and block quantization --------*- C++ -*-===//

#include "xfmr/runtime/Float8.h"

#include <algorithm>
#include <cmath>

using namespace xfmr::fp8;

namespace {

struct Spec {
  int exponentBits, mantissaBits, bias;
  bool hasInfinity;
};

Spec specOf(Format format) {
  switch (format) {
  case Format::E4M3FN:
    return {4, 3, 7, false};
  case Format::E4M3FNUZ:
    return {4, 3, 8, false};
  case Format::E5M2:
    return {5, 2, 15, true};
  }
  return {4, 3, 7, false};
}

uint8_t nanCode(Format format) {
  return format == Format::E4M3FNUZ ? 0x80 : 0x7F;
}

} // namespace

double xfmr::fp8::maxFinite(Format format) {
  switch (format) {
  case Format::E4M3FN:
    return 448.0;
  case Format::E4M3FNUZ:
    return 240.0;
  case Format::E5M2:
    return 57344.0;
  }
  return 0;
}

double xfmr::fp8::decode(Format format, uint8_t code) {
  Spec spec = specOf(format);
  bool negative = code & 0x80;
  unsigned exponent = (code >> spec.mantissaBits) & ((1u << spec.exponentBits) - 1);
  unsigned mantissa = code & ((1u << spec.mantissaBits) - 1);
  unsigned maxExponent = (1u << spec.exponentBits) - 1;
  switch (format) {
  case Format::E4M3FN:
    if (exponent == maxExponent && mantissa == 0x7)
      return std::nan("");
    break;
  case Format::E4M3FNUZ:
    if (code == 0x80)
      return std::nan("");
    break;
  case Format::E5M2:
    if (exponent == maxExponent)
      return mantissa ? std::nan("")
                      : (negative ? -HUGE_VAL : HUGE_VAL);
    break;
  }
  double scale = double(1u << spec.mantissaBits);
  double value =
      exponent == 0
          ? std::ldexp(mantissa / scale, 1 - spec.bias)
          : std::ldexp(1.0 + mantissa / scale, int(exponent) - spec.bias);
  return negative ? -value : value;
}

uint8_t xfmr::fp8::encode(Format format, double value) {
  if (std::isnan(value))
    return nanCode(format);
  Spec spec = specOf(format);
  bool negative = std::signbit(value);
  double magnitude = std::fabs(value);
  uint8_t sign = negative ? 0x80 : 0x00;
  if (format == Format::E5M2 && std::isinf(value))
    return sign | 0x7C;
  double top = maxFinite(format);
  if (magnitude >= top) // saturate (also +-inf for the E4M3 formats)
    magnitude = top;
  // Quantum of the binade that holds `magnitude` (subnormals share the
  // smallest one); rounding to a multiple of it is round-to-nearest.
  int exponent = magnitude > 0 ? std::ilogb(magnitude) : 1 - spec.bias;
  exponent = std::max(exponent, 1 - spec.bias);
  double quantum = std::ldexp(1.0, exponent - spec.mantissaBits);
  double rounded = std::nearbyint(magnitude / quantum) * quantum; // ties even
  rounded = std::min(rounded, top);
  if (rounded == 0) // FNUZ has no negative zero; keep +0 for all
    return format == Format::E4M3FNUZ ? 0x00 : sign;
  int e = std::ilogb(rounded);
  unsigned exponentField, mantissaField;
  if (e < 1 - spec.bias) {
    exponentField = 0;
    mantissaField = unsigned(std::ldexp(rounded, spec.bias - 1 + spec.mantissaBits));
  } else {
    exponentField = unsigned(e + spec.bias);
    mantissaField = unsigned(std::ldexp(rounded, -e) * (1u << spec.mantissaBits)) &
                    ((1u << spec.mantissaBits) - 1);
  }
  return sign | uint8_t(exponentField << spec.mantissaBits) | uint8_t(mantissaField);
}

bool xfmr::fp8::quantize(Format format, const double *values, int64_t rows,
                         int64_t cols, BlockLayout layout, uint8_t *codes,
                         float *scales, std::string &error) {
  int64_t blockRows = layout.blockRows, blockCols = layout.blockCols;
  int64_t rowBlocks = (rows + blockRows - 1) / blockRows;
  int64_t colBlocks = (cols + blockCols - 1) / blockCols;
  double top = maxFinite(format);
  for (int64_t rb = 0; rb < rowBlocks; ++rb) {
    for (int64_t cb = 0; cb < colBlocks; ++cb) {
      int64_t rowEnd = std::min(rows, (rb + 1) * blockRows);
      int64_t colEnd = std::min(cols, (cb + 1) * blockCols);
      double amax = 0;
      for (int64_t r = rb * blockRows; r < rowEnd; ++r)
        for (int64_t c = cb * blockCols; c < colEnd; ++c) {
          double v = values[r * cols + c];
          if (std::isnan(v)) {
            error = "NaN at [" + std::to_string(r) + ", " + std::to_string(c) +
                    "]";
            return false;
          }
          if (std::isfinite(v))
            amax = std::max(amax, std::fabs(v));
        }
      // The scale is stored as f32; quantize against that exact value.
      float scale = float(std::max(amax, kScaleEpsilon) / top);
      scales[rb * colBlocks + cb] = scale;
      for (int64_t r = rb * blockRows; r < rowEnd; ++r)
        for (int64_t c = cb * blockCols; c < colEnd; ++c)
          codes[r * cols + c] = encode(format, values[r * cols + c] / scale);
    }
  }
  return true;
}

bool xfmr::fp8::convertE4M3FNToFNUZ(uint8_t *codes, int64_t count,
                                    std::string &error) {
  for (int64_t i = 0; i < count; ++i) {
    if ((codes[i] & 0x7F) == 0x7F) {
      error = "E4M3FN NaN code 0x" + std::string(codes[i] == 0xFF ? "ff" : "7f") +
              " at element " + std::to_string(i) +
              " has no E4M3FNUZ equivalent";
      return false;
    }
    if (codes[i] == 0x80) // -0 is FNUZ's NaN
      codes[i] = 0x00;
  }
  return true;
}
