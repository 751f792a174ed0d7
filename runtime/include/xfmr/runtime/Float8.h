//===- Float8.h - FP8 encodings and block quantization ----------*- C++ -*-===//
//
// The FP8 formats xfmr stores weights in, with the exact conversions the
// compiler applies at compile time:
// - E4M3FN (NVIDIA, DeepSeek-V3 checkpoints): bias 7, max 448, no
//   infinities, S.1111.111 is NaN;
// - E4M3FNUZ (AMD MI300): bias 8, max 240, one NaN (0x80), no -0;
// - E5M2: bias 15, IEEE-like with infinities.
// Encoding rounds to nearest, ties to even, and saturates to the largest
// finite value. No MLIR or LLVM dependency.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_FLOAT8_H
#define XFMR_RUNTIME_FLOAT8_H

#include <cstdint>
#include <string>
#include <vector>

namespace xfmr::fp8 {

enum class Format { E4M3FN, E4M3FNUZ, E5M2 };

/// The largest finite value of `format` (448, 240, 57344).
double maxFinite(Format format);

/// The value of code `code` (NaN codes decode to NaN).
double decode(Format format, uint8_t code);

/// The code nearest to `value` (ties to even), saturating beyond the largest
/// finite value; NaN encodes as the format's NaN (E4M3FN 0x7F, E4M3FNUZ
/// 0x80, E5M2 0x7F). Infinities saturate like large finite values (E4M3
/// formats have none; E5M2 keeps them).
uint8_t encode(Format format, double value);

/// How scales tile a [rows, cols] weight.
struct BlockLayout {
  int64_t blockRows, blockCols; ///< per-channel: 1 x cols; per-tensor: rows x cols
};

/// Block quantization of a row-major [rows, cols] matrix: for each block,
/// scale = max(max |finite x|, epsilon) / maxFinite and code = encode(x /
/// scale). `codes` gets rows * cols bytes, `scales` ceil(rows / bm) *
/// ceil(cols / bn) floats (row-major); the real value is decode(code) *
/// scale. All-zero blocks get scale epsilon / maxFinite and zero codes (never
/// NaN). Returns false with `error` set on NaN input.
bool quantize(Format format, const double *values, int64_t rows, int64_t cols,
              BlockLayout layout, uint8_t *codes, float *scales,
              std::string &error);

/// The smallest scale block quantization uses (keeps zero blocks finite).
inline constexpr double kScaleEpsilon = 1e-12;

/// Converts E4M3FN codes to E4M3FNUZ exactly. FNUZ's bias is one larger, so
/// the same bit pattern is worth half: codes keep their bits (negative zero
/// becomes zero) and the caller doubles every scale. Fails on an FN NaN code
/// (FNUZ has no room for it), naming its position.
bool convertE4M3FNToFNUZ(uint8_t *codes, int64_t count, std::string &error);

} // namespace xfmr::fp8

#endif // XFMR_RUNTIME_FLOAT8_H
