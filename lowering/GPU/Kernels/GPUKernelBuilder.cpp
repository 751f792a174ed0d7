//===- GPUKernelBuilder.cpp - helpers of the generic GPU kernels ------===//

#include "lowering/GPU/Kernels/GPUKernels.h"
#include "lowering/CPU/Kernels/KernelBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

Value simt::i32(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value));
}

std::pair<Value, Value> simt::offsetBelow(OpBuilder &b, Location loc,
                                          Value base, Value offset,
                                          Value limit) {
  Value at = arith::AddIOp::create(b, loc, base, offset);
  Value below =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, at, limit);
  return {at, below};
}

Value simt::fma(OpBuilder &b, Location loc, Value a, Value x, Value c) {
  return arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, a, x), c);
}

MemRefType simt::buffer(MLIRContext *context, ArrayRef<int64_t> shape,
                       WeightFormat format) {
  return MemRefType::get(shape, storageTypeOf(format, context));
}

/// f32 from the bits of an FP8 code (i32 holding 0..255): sign, exponent
/// bits with `bias`, `mantissaBits`; exponent 0 is subnormal. NaN codes
/// decode as large finite values: weights and caches never hold them.
/// (Operands are built in statements: argument evaluation order is the
/// compiler's, scripts/check-ir-build-order.py.)
static Value decodeFP8(OpBuilder &b, Location loc, Value code,
                       int mantissaBits, int bias) {
  using simt::i32;
  Value low7 = i32(b, loc, 0x7F);
  Value magnitudeBits = arith::AndIOp::create(b, loc, code, low7);
  Value mantissaShift = i32(b, loc, mantissaBits);
  Value exponent =
      arith::ShRUIOp::create(b, loc, magnitudeBits, mantissaShift);
  Value mantissaMask = i32(b, loc, (1 << mantissaBits) - 1);
  Value mantissa = arith::AndIOp::create(b, loc, magnitudeBits, mantissaMask);
  // Normal: 1.m * 2^(e - bias), built as f32 bits.
  Value rebias = i32(b, loc, 127 - bias);
  Value f32Exponent = arith::AddIOp::create(b, loc, exponent, rebias);
  Value exponentShift = i32(b, loc, 23);
  Value exponentField =
      arith::ShLIOp::create(b, loc, f32Exponent, exponentShift);
  Value fractionShift = i32(b, loc, 23 - mantissaBits);
  Value fractionField = arith::ShLIOp::create(b, loc, mantissa, fractionShift);
  Value normalBits =
      arith::OrIOp::create(b, loc, exponentField, fractionField);
  Value normal = arith::BitcastOp::create(b, loc, b.getF32Type(), normalBits);
  // Subnormal: m * 2^(1 - bias - mantissa bits).
  Value mantissaF32 =
      arith::UIToFPOp::create(b, loc, b.getF32Type(), mantissa);
  Value quantum = f32(b, loc, std::ldexp(1.0, 1 - bias - mantissaBits));
  Value subnormal = arith::MulFOp::create(b, loc, mantissaF32, quantum);
  Value zero = i32(b, loc, 0);
  Value isSubnormal = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            exponent, zero);
  Value magnitude =
      arith::SelectOp::create(b, loc, isSubnormal, subnormal, normal);
  Value signMask = i32(b, loc, 0x80);
  Value signBit = arith::AndIOp::create(b, loc, code, signMask);
  Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne,
                                         signBit, zero);
  Value negated = arith::NegFOp::create(b, loc, magnitude);
  return arith::SelectOp::create(b, loc, negative, negated, magnitude);
}

Value simt::decodeF32(OpBuilder &b, Location loc, Value bits,
                      WeightFormat format) {
  Type f32Type = b.getF32Type();
  switch (format) {
  case WeightFormat::F32:
    return arith::BitcastOp::create(b, loc, f32Type, bits);
  case WeightFormat::I8:
  case WeightFormat::I4: { // CPU-only: never in GPU kernels
    Value code = arith::TruncIOp::create(b, loc, b.getI8Type(), bits);
    return arith::SIToFPOp::create(b, loc, f32Type, code);
  }
  case WeightFormat::BF16: {
    // bf16 is the upper half of an f32 (the shift drops higher bits).
    Value sixteen = i32(b, loc, 16);
    Value upper = arith::ShLIOp::create(b, loc, bits, sixteen);
    return arith::BitcastOp::create(b, loc, f32Type, upper);
  }
  case WeightFormat::F16: {
    Value word = arith::TruncIOp::create(b, loc, b.getI16Type(), bits);
    Value half = arith::BitcastOp::create(b, loc, b.getF16Type(), word);
    return arith::ExtFOp::create(b, loc, f32Type, half);
  }
  case WeightFormat::F8E4M3FN:
  case WeightFormat::F8E4M3FNUZ:
  case WeightFormat::F8E5M2:
    // decodeFP8 reads only the low 8 bits.
    if (format == WeightFormat::F8E5M2)
      return decodeFP8(b, loc, bits, 2, 15);
    return decodeFP8(b, loc, bits, 3,
                     format == WeightFormat::F8E4M3FNUZ ? 8 : 7);
  }
  return bits;
}

double simt::wordScale(WeightFormat format) {
  switch (format) {
  case WeightFormat::F8E4M3FN:
    return 256.0; // 2^(15 - 7): f16's exponent bias over E4M3FN's
  case WeightFormat::F8E4M3FNUZ:
    return 128.0; // 2^(15 - 8)
  default:
    return 1.0;
  }
}

SmallVector<Value> simt::decodeWord(OpBuilder &b, Location loc, Value word,
                                    WeightFormat format) {
  Type f32Type = b.getF32Type();
  auto halves = VectorType::get({2}, b.getF16Type());
  auto pairType = VectorType::get({2}, f32Type);
  // Two f16 bit patterns in one word, as two f32.
  auto widenHalves = [&](Value bits) -> std::pair<Value, Value> {
    auto oneWord = VectorType::get({1}, b.getI32Type());
    Value asVector = vector::BroadcastOp::create(b, loc, oneWord, bits);
    Value pair = vector::BitCastOp::create(b, loc, halves, asVector);
    Value wide = arith::ExtFOp::create(b, loc, pairType, pair);
    Value low = vector::ExtractOp::create(b, loc, wide, 0);
    Value high = vector::ExtractOp::create(b, loc, wide, 1);
    return {low, high};
  };
  SmallVector<Value> values;
  switch (format) {
  case WeightFormat::F32:
    values.push_back(arith::BitcastOp::create(b, loc, f32Type, word));
    break;
  case WeightFormat::BF16: {
    Value sixteen = i32(b, loc, 16);
    Value low = arith::ShLIOp::create(b, loc, word, sixteen);
    Value upperMask = i32(b, loc, int32_t(0xFFFF0000u));
    Value high = arith::AndIOp::create(b, loc, word, upperMask);
    values.push_back(arith::BitcastOp::create(b, loc, f32Type, low));
    values.push_back(arith::BitcastOp::create(b, loc, f32Type, high));
    break;
  }
  case WeightFormat::F16: {
    auto [low, high] = widenHalves(word);
    values = {low, high};
    break;
  }
  case WeightFormat::F8E4M3FN:
  case WeightFormat::F8E4M3FNUZ:
  case WeightFormat::F8E5M2: {
    // Bytes 0 and 2 (then 1 and 3) in the low bytes of two 16-bit halves,
    // each made an f16 whose value is the code's divided by wordScale: E5M2
    // is the top byte of an f16; E4M3's sign goes to bit 15 and its
    // exponent and mantissa to bits 7-14 (subnormals included: they are
    // f16 subnormals or small normals, exact).
    Value byteMask = i32(b, loc, 0x00FF00FF);
    Value eight = i32(b, loc, 8);
    Value shifted = arith::ShRUIOp::create(b, loc, word, eight);
    Value even = arith::AndIOp::create(b, loc, word, byteMask);
    Value odd = arith::AndIOp::create(b, loc, shifted, byteMask);
    auto toHalves = [&](Value bytes) -> Value {
      if (format == WeightFormat::F8E5M2)
        return arith::ShLIOp::create(b, loc, bytes, eight);
      Value magnitudeMask = i32(b, loc, 0x007F007F);
      Value magnitude = arith::AndIOp::create(b, loc, bytes, magnitudeMask);
      Value seven = i32(b, loc, 7);
      Value magnitudeField = arith::ShLIOp::create(b, loc, magnitude, seven);
      Value signMask = i32(b, loc, 0x00800080);
      Value sign = arith::AndIOp::create(b, loc, bytes, signMask);
      Value signField = arith::ShLIOp::create(b, loc, sign, eight);
      return arith::OrIOp::create(b, loc, magnitudeField, signField);
    };
    Value evenHalves = toHalves(even);
    Value oddHalves = toHalves(odd);
    auto [e0, e2] = widenHalves(evenHalves);
    auto [e1, e3] = widenHalves(oddHalves);
    values = {e0, e1, e2, e3};
    break;
  }
  case WeightFormat::I8:
  case WeightFormat::I4: // CPU-only
    for (int64_t shift = 0; shift < 32; shift += 8) {
      Value bits = word;
      if (shift)
        bits = arith::ShRUIOp::create(b, loc, word, i32(b, loc, shift));
      values.push_back(decodeF32(b, loc, bits, WeightFormat::I8));
    }
    break;
  }
  return values;
}

Value simt::loadF32(OpBuilder &b, Location loc, Value memref,
                    ValueRange indices, WeightFormat format) {
  Value raw = memref::LoadOp::create(b, loc, memref, indices);
  if (format == WeightFormat::F32)
    return raw;
  Value bits = arith::ExtUIOp::create(b, loc, b.getI32Type(), raw);
  return decodeF32(b, loc, bits, format);
}

/// The FP8 code of `value` (finite, already rounded to the format's grid):
/// sign, biased exponent and mantissa bits, as i8.
static Value encodeFP8(OpBuilder &b, Location loc, Value value,
                       WeightFormat format) {
  using simt::i32;
  int mantissaBits = format == WeightFormat::F8E5M2 ? 2 : 3;
  int bias = format == WeightFormat::F8E5M2       ? 15
             : format == WeightFormat::F8E4M3FNUZ ? 8
                                                  : 7;
  Value bits = arith::BitcastOp::create(b, loc, b.getI32Type(), value);
  Value shift24 = i32(b, loc, 24);
  Value high = arith::ShRUIOp::create(b, loc, bits, shift24);
  Value signMask = i32(b, loc, 0x80);
  Value sign = arith::AndIOp::create(b, loc, high, signMask);
  Value magnitude = math::AbsFOp::create(b, loc, value);
  Value magnitudeBits =
      arith::BitcastOp::create(b, loc, b.getI32Type(), magnitude);
  Value shift23 = i32(b, loc, 23);
  Value f32Exponent = arith::ShRUIOp::create(b, loc, magnitudeBits, shift23);
  Value rebias = i32(b, loc, 127 - bias);
  Value exponent = arith::SubIOp::create(b, loc, f32Exponent, rebias);
  Value mantissaShift = i32(b, loc, mantissaBits);
  Value exponentField = arith::ShLIOp::create(b, loc, exponent, mantissaShift);
  Value fractionShift = i32(b, loc, 23 - mantissaBits);
  Value fraction = arith::ShRUIOp::create(b, loc, magnitudeBits, fractionShift);
  Value mantissaMask = i32(b, loc, (1 << mantissaBits) - 1);
  Value mantissa = arith::AndIOp::create(b, loc, fraction, mantissaMask);
  Value normal = arith::OrIOp::create(b, loc, exponentField, mantissa);
  // Below the smallest normal: the mantissa counts quanta of
  // 2^(1 - bias - mantissa bits).
  Value perQuantum = f32(b, loc, std::ldexp(1.0, bias - 1 + mantissaBits));
  Value scaled = arith::MulFOp::create(b, loc, magnitude, perQuantum);
  Value quanta = arith::FPToUIOp::create(b, loc, b.getI32Type(), scaled);
  Value smallestNormal = f32(b, loc, std::ldexp(1.0, 1 - bias));
  Value isSubnormal = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT,
                                            magnitude, smallestNormal);
  Value code = arith::SelectOp::create(b, loc, isSubnormal, quanta, normal);
  // FNUZ has no negative zero.
  if (format == WeightFormat::F8E4M3FNUZ) {
    Value zero = i32(b, loc, 0);
    Value isZero = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                         code, zero);
    sign = arith::SelectOp::create(b, loc, isZero, zero, sign);
  }
  code = arith::OrIOp::create(b, loc, code, sign);
  return arith::TruncIOp::create(b, loc, b.getI8Type(), code);
}

Value simt::fp8Bits(OpBuilder &b, Location loc, Value rounded,
                    WeightFormat format) {
  Value code = encodeFP8(b, loc, rounded, format);
  return arith::ExtUIOp::create(b, loc, b.getI32Type(), code);
}

void simt::storeEncoded(OpBuilder &b, Location loc, Value value, Value memref,
                       ValueRange indices, WeightFormat format) {
  Value stored;
  switch (format) {
  case WeightFormat::F32:
    stored = value;
    break;
  case WeightFormat::BF16: {
    // Round to nearest even on the bit pattern.
    Value bits = arith::BitcastOp::create(b, loc, b.getI32Type(), value);
    Value sixteen = i32(b, loc, 16);
    Value upper = arith::ShRUIOp::create(b, loc, bits, sixteen);
    Value one = i32(b, loc, 1);
    Value lsb = arith::AndIOp::create(b, loc, upper, one);
    Value half = i32(b, loc, 0x7FFF);
    Value increment = arith::AddIOp::create(b, loc, lsb, half);
    Value rounded = arith::AddIOp::create(b, loc, bits, increment);
    Value top = arith::ShRUIOp::create(b, loc, rounded, sixteen);
    stored = arith::TruncIOp::create(b, loc, b.getI16Type(), top);
    break;
  }
  case WeightFormat::F16: {
    Value half = arith::TruncFOp::create(b, loc, b.getF16Type(), value);
    stored = arith::BitcastOp::create(b, loc, b.getI16Type(), half);
    break;
  }
  case WeightFormat::I8: {
    Value rounded = math::RoundEvenOp::create(b, loc, value);
    Value lowest = f32(b, loc, -127);
    Value low = arith::MaximumFOp::create(b, loc, rounded, lowest);
    Value highest = f32(b, loc, 127);
    Value clamped = arith::MinimumFOp::create(b, loc, low, highest);
    stored = arith::FPToSIOp::create(b, loc, b.getI8Type(), clamped);
    break;
  }
  default: {
    Value rounded = roundToCode(b, loc, value, format);
    stored = encodeFP8(b, loc, rounded, format);
    break;
  }
  }
  memref::StoreOp::create(b, loc, stored, memref, indices);
}

void simt::forLoop(OpBuilder &b, Location loc, Value lb, Value ub, Value step,
                  LoopBody body) {
  scf::ForOp::create(b, loc, lb, ub, step, ValueRange{},
                     [&](OpBuilder &nested, Location nestedLoc, Value iv,
                         ValueRange) {
                       body(nested, nestedLoc, iv);
                       scf::YieldOp::create(nested, nestedLoc);
                     });
}

void simt::strided(OpBuilder &b, Location loc, const GPUThread &thread,
                  Value count, LoopBody body) {
  forLoop(b, loc, thread.thread, count, index(b, loc, thread.block), body);
}

Value simt::accumulate(
    OpBuilder &b, Location loc, Value lb, Value ub, Value step, Value init,
    function_ref<Value(OpBuilder &, Location, Value, Value)> body) {
  auto loop = scf::ForOp::create(
      b, loc, lb, ub, step, ValueRange{init},
      [&](OpBuilder &nested, Location nestedLoc, Value iv, ValueRange acc) {
        scf::YieldOp::create(nested, nestedLoc,
                             body(nested, nestedLoc, iv, acc[0]));
      });
  return loop.getResult(0);
}

void simt::firstThread(OpBuilder &b, Location loc, const GPUThread &thread,
                      function_ref<void(OpBuilder &, Location)> body) {
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                      thread.thread, index(b, loc, 0));
  scf::IfOp::create(b, loc, first, [&](OpBuilder &nested, Location nestedLoc) {
    body(nested, nestedLoc);
    scf::YieldOp::create(nested, nestedLoc);
  });
}

Value simt::reduce(OpBuilder &b, Location loc, const GPUThread &thread,
                  Value scratch, Value value, Reduction kind) {
  auto combine = [&](OpBuilder &b, Location loc, Value x, Value y) -> Value {
    if (kind == Reduction::Sum)
      return arith::AddFOp::create(b, loc, x, y);
    return arith::MaximumFOp::create(b, loc, x, y);
  };
  memref::StoreOp::create(b, loc, value, scratch, thread.thread);
  mlir::gpu::BarrierOp::create(b, loc);
  // A tree over the (power-of-two) block.
  for (int64_t half = thread.block / 2; half >= 1; half /= 2) {
    Value active = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         thread.thread, index(b, loc, half));
    scf::IfOp::create(b, loc, active, [&](OpBuilder &b, Location loc) {
      Value other = arith::AddIOp::create(b, loc, thread.thread,
                                          index(b, loc, half));
      Value mine = memref::LoadOp::create(b, loc, scratch, thread.thread);
      Value theirs = memref::LoadOp::create(b, loc, scratch, other);
      memref::StoreOp::create(b, loc, combine(b, loc, mine, theirs), scratch,
                              thread.thread);
      scf::YieldOp::create(b, loc);
    });
    mlir::gpu::BarrierOp::create(b, loc);
  }
  Value result = memref::LoadOp::create(b, loc, scratch, index(b, loc, 0));
  // Nobody may overwrite the scratch before everyone has read it.
  mlir::gpu::BarrierOp::create(b, loc);
  return result;
}

Value simt::leadingSize(OpBuilder &b, Location loc, Value view) {
  if (auto expand = view.getDefiningOp<memref::ExpandShapeOp>()) {
    OpFoldResult size = expand.getMixedOutputShape().front();
    if (auto value = dyn_cast<Value>(size))
      return value;
  }
  return memref::DimOp::create(b, loc, view, 0);
}

Value simt::loadWeightF32(OpBuilder &b, Location loc, Value memref,
                          Value scales, Value row, Value column,
                          const WeightOperand &weight) {
  Value value = loadF32(b, loc, memref, {row, column}, weight.format);
  if (!weight.blockScale)
    return value;
  Value scaleRow = arith::DivUIOp::create(
      b, loc, row, index(b, loc, weight.blockScale->first));
  Value scaleColumn = arith::DivUIOp::create(
      b, loc, column, index(b, loc, weight.blockScale->second));
  Value scale =
      memref::LoadOp::create(b, loc, scales, ValueRange{scaleRow, scaleColumn});
  return arith::MulFOp::create(b, loc, value, scale);
}

void simt::storeScores(OpBuilder &b, Location loc, const GPUThread &thread,
                       Value scores, ValueRange values) {
  for (auto [i, value] : llvm::enumerate(values)) {
    Value at = arith::AddIOp::create(b, loc, thread.thread,
                                     index(b, loc, int64_t(i) * thread.block));
    memref::StoreOp::create(b, loc, value, scores, at);
  }
}

Value simt::outputTiles(OpBuilder &b, Location loc, Value tokens, int64_t out,
                        int64_t tile) {
  Value tokenTiles =
      arith::CeilDivUIOp::create(b, loc, tokens, index(b, loc, tile));
  Value rowTiles = index(b, loc, llvm::divideCeilSigned(out, tile));
  return arith::MulIOp::create(b, loc, tokenTiles, rowTiles);
}

std::pair<Value, Value> simt::tileCorner(OpBuilder &b, Location loc,
                                         Value workgroup, int64_t out,
                                         int64_t tile) {
  Value rowTiles = index(b, loc, llvm::divideCeilSigned(out, tile));
  Value size = index(b, loc, tile);
  Value tokenTile = arith::DivUIOp::create(b, loc, workgroup, rowTiles);
  Value firstToken = arith::MulIOp::create(b, loc, tokenTile, size);
  Value rowTile = arith::RemUIOp::create(b, loc, workgroup, rowTiles);
  Value firstRow = arith::MulIOp::create(b, loc, rowTile, size);
  return {firstToken, firstRow};
}

Value simt::erf(OpBuilder &b, Location loc, Value x) {
  Value z = math::AbsFOp::create(b, loc, x);
  Value one = f32(b, loc, 1.0);
  Value half = f32(b, loc, 0.5);
  Value halfZ = arith::MulFOp::create(b, loc, half, z);
  Value denominator = arith::AddFOp::create(b, loc, one, halfZ);
  Value t = arith::DivFOp::create(b, loc, one, denominator);
  static const double coefficients[] = {
      -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
      0.27886807,  -1.13520398, 1.48851587, -0.82215223, 0.17087277};
  // Horner from the last coefficient.
  Value poly = f32(b, loc, coefficients[9]);
  for (int i = 8; i >= 0; --i) {
    Value coefficient = f32(b, loc, coefficients[i]);
    Value product = arith::MulFOp::create(b, loc, t, poly);
    poly = arith::AddFOp::create(b, loc, coefficient, product);
  }
  Value zz = arith::MulFOp::create(b, loc, z, z);
  Value exponent = arith::SubFOp::create(b, loc, poly, zz);
  Value e = math::ExpOp::create(b, loc, exponent);
  Value erfc = arith::MulFOp::create(b, loc, t, e);
  Value magnitude = arith::SubFOp::create(b, loc, one, erfc);
  Value zero = f32(b, loc, 0.0);
  Value negative =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, zero);
  Value negated = arith::NegFOp::create(b, loc, magnitude);
  return arith::SelectOp::create(b, loc, negative, negated, magnitude);
}
