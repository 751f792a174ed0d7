//===- Float16.h - bf16 and IEEE half conversions ---------------*- C++ -*-===//
//
// The 16-bit float conversions weight packing needs, exact and with no
// dependency: decoding is exact, and encoding rounds a double once to the
// nearest value (ties to even) with subnormals, overflowing to infinity, as
// llvm::APFloat::convert does (the compiler once used it; a unit test keeps
// the two equal).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_FLOAT16_H
#define XFMR_RUNTIME_FLOAT16_H

#include <cstdint>

namespace xfmr::float16 {

/// The value of bf16 bits `bits`.
double decodeBF16(uint16_t bits);
/// The value of IEEE binary16 bits `bits`.
double decodeF16(uint16_t bits);
/// `value` rounded to bf16 (8 exponent bits, 7 mantissa bits).
uint16_t encodeBF16(double value);
/// `value` rounded to IEEE binary16 (5 exponent bits, 10 mantissa bits).
uint16_t encodeF16(double value);

} // namespace xfmr::float16

#endif // XFMR_RUNTIME_FLOAT16_H
