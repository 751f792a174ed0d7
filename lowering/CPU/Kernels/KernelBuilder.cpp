//===- KernelBuilder.cpp - helpers to emit loop-level kernels ---*- C++ -*-===//

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "dialects/Xfmr/XfmrOps.h"
#include "xfmr/runtime/Float8.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinTypes.h"

#include <cmath>

using namespace mlir;
using namespace xfmr::kernels;

CPUKernelOptions CPUKernelOptions::of(xfmr::TargetAttr target) {
  CPUKernelOptions options;
  options.chip = target.getChip().str();
  options.sveBits = target.getSveBits();
  SmallVector<StringRef> features;
  target.getFeatures().split(features, ',', -1, /*KeepEmpty=*/false);
  for (StringRef feature : features)
    if (feature.consume_front("+"))
      options.features.insert(feature);
  return options;
}

func::FuncOp KernelLibrary::get(StringRef key, TypeRange arguments,
                                const BodyBuilder &body) {
  auto it = kernels.find(key);
  if (it != kernels.end())
    return it->second;
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  Location loc = NameLoc::get(b.getStringAttr(key));
  // Symbol names stay plain identifiers ("%a" floats bring '.', '-', '+').
  std::string name = "xfmr_";
  for (char c : key)
    name += c == '.' ? 'd' : c == '-' ? 'm' : c == '+' ? 'p' : c;
  auto func = func::FuncOp::create(b, loc, name,
                                     b.getFunctionType(arguments, {}));
  func.setPrivate();
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  body(b, loc, entry->getArguments());
  func::ReturnOp::create(b, loc);
  kernels[key] = func;
  return func;
}

double xfmr::kernels::fp8CodeValue(WeightFormat format, unsigned code) {
  xfmr::fp8::Format fp8 = format == WeightFormat::F8E4M3FNUZ
                              ? xfmr::fp8::Format::E4M3FNUZ
                          : format == WeightFormat::F8E5M2
                              ? xfmr::fp8::Format::E5M2
                              : xfmr::fp8::Format::E4M3FN;
  return xfmr::fp8::decode(fp8, static_cast<uint8_t>(code));
}

Value KernelLibrary::lookupTable(OpBuilder &b, Location loc,
                                 WeightFormat format) {
  std::string name = ("xfmr_decode_" + formatName(format)).str();
  auto type = MemRefType::get({256}, b.getF32Type());
  if (!module.lookupSymbol(name)) {
    SmallVector<float> values;
    for (unsigned code = 0; code < 256; ++code)
      values.push_back(float(fp8CodeValue(format, code)));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(module.getBody());
    auto tensorType = RankedTensorType::get({256}, b.getF32Type());
    memref::GlobalOp::create(b, 
        loc, name, b.getStringAttr("private"), type,
        DenseElementsAttr::get(tensorType, ArrayRef<float>(values)),
        /*constant=*/true, b.getI64IntegerAttr(64));
  }
  return memref::GetGlobalOp::create(b, loc, type, name);
}

Value xfmr::kernels::index(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

Value xfmr::kernels::f32(OpBuilder &b, Location loc, double value) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(float(value)));
}

Value xfmr::kernels::splat(OpBuilder &b, Location loc, Type type,
                           int64_t value) {
  auto vector = dyn_cast<VectorType>(type);
  TypedAttr element =
      b.getIntegerAttr(vector ? vector.getElementType() : type, value);
  if (vector)
    return arith::ConstantOp::create(b, loc,
                                     DenseElementsAttr::get(vector, element));
  return arith::ConstantOp::create(b, loc, element);
}

void xfmr::kernels::parallelFor(OpBuilder &b, Location loc, Value lb, Value ub,
                                LoopBody body) {
  scf::ParallelOp::create(b, 
      loc, ValueRange{lb}, ValueRange{ub}, ValueRange{index(b, loc, 1)},
      [&](OpBuilder &nested, Location nestedLoc, ValueRange ivs) {
        body(nested, nestedLoc, ivs[0]);
      });
}

void xfmr::kernels::serialFor(OpBuilder &b, Location loc, Value lb, Value ub,
                              LoopBody body) {
  scf::ForOp::create(b, loc, lb, ub, index(b, loc, 1), ValueRange{},
                       [&](OpBuilder &nested, Location nestedLoc, Value iv,
                           ValueRange) {
                         body(nested, nestedLoc, iv);
                         scf::YieldOp::create(nested, nestedLoc);
                       });
}

Value xfmr::kernels::loadAsF32(OpBuilder &b, Location loc, Value memref,
                               ValueRange indices, WeightFormat format,
                               Value table) {
  Value value = memref::LoadOp::create(b, loc, memref, indices);
  switch (format) {
  case WeightFormat::F32:
    return value;
  case WeightFormat::I8:
  case WeightFormat::I4: // never unpacked element by element
    return arith::SIToFPOp::create(b, loc, b.getF32Type(), value);
  case WeightFormat::BF16:
  case WeightFormat::F16:
    return arith::ExtFOp::create(b, loc, b.getF32Type(), value);
  case WeightFormat::F8E4M3FN:
  case WeightFormat::F8E4M3FNUZ:
  case WeightFormat::F8E5M2: {
    Value code = arith::ExtUIOp::create(b, loc, b.getI32Type(), value);
    Value position = arith::IndexCastOp::create(b, loc, b.getIndexType(), code);
    return memref::LoadOp::create(b, loc, table, position);
  }
  }
  return value;
}

Value xfmr::kernels::loadVectorAsF32(OpBuilder &b, Location loc,
                                     Value memref, ValueRange indices,
                                     WeightFormat format, Value table,
                                     int64_t width) {
  auto f32Vector = VectorType::get({width}, b.getF32Type());
  Type storage = cast<MemRefType>(memref.getType()).getElementType();
  auto storageVector = VectorType::get({width}, storage);
  Value raw = vector::LoadOp::create(b, loc, storageVector, memref, indices);
  switch (format) {
  case WeightFormat::F32:
    return raw;
  case WeightFormat::I8:
  case WeightFormat::I4: // never unpacked element by element
    return arith::SIToFPOp::create(b, loc, f32Vector, raw);
  case WeightFormat::BF16:
  case WeightFormat::F16:
    return arith::ExtFOp::create(b, loc, f32Vector, raw);
  case WeightFormat::F8E4M3FN:
  case WeightFormat::F8E5M2: {
    // The FP8 bit pattern, shifted into an f16, is the same number times
    // 2^-8 (E4M3: exponent bias 7 vs 15, subnormals included) or exactly
    // (E5M2: same bias): a few integer ops and one f16->f32 conversion,
    // where a table lookup would need a gather. FP8 NaN codes never reach
    // here: the compiler rejects them when it packs the weights.
    auto halfBits = VectorType::get({width}, b.getI16Type());
    auto splat = [&](int64_t v) {
      return arith::ConstantOp::create(b, 
          loc, DenseElementsAttr::get(halfBits, b.getI16IntegerAttr(v)));
    };
    Value bits;
    if (format == WeightFormat::F8E5M2) {
      Value codes = arith::ExtUIOp::create(b, loc, halfBits, raw);
      bits = arith::ShLIOp::create(b, loc, codes, splat(8));
    } else {
      // Sign-extend, shift the code to bits 14..7 and clear bit 14: bit 15
      // keeps the sign, bits 13..7 the exponent and mantissa.
      Value codes = arith::ExtSIOp::create(b, loc, halfBits, raw);
      Value shifted = arith::ShLIOp::create(b, loc, codes, splat(7));
      Value mask = splat(int16_t(0xBFFF));
      bits = arith::AndIOp::create(b, loc, shifted, mask);
    }
    Value half = arith::BitcastOp::create(b, 
        loc, VectorType::get({width}, b.getF16Type()), bits);
    Value widened = arith::ExtFOp::create(b, loc, f32Vector, half);
    if (format == WeightFormat::F8E5M2)
      return widened;
    Value factor = arith::ConstantOp::create(b, 
        loc, DenseElementsAttr::get(f32Vector, b.getF32FloatAttr(256.0f)));
    return arith::MulFOp::create(b, loc, widened, factor);
  }
  case WeightFormat::F8E4M3FNUZ: {
    // Bias 8 and a NaN at -0: decode through the table.
    auto codesType = VectorType::get({width}, b.getI32Type());
    Value codes = arith::ExtUIOp::create(b, loc, codesType, raw);
    auto maskType = VectorType::get({width}, b.getI1Type());
    Value mask = arith::ConstantOp::create(b, 
        loc, DenseElementsAttr::get(maskType, true));
    Value zero = arith::ConstantOp::create(b, 
        loc, DenseElementsAttr::get(f32Vector, b.getF32FloatAttr(0)));
    return vector::GatherOp::create(b, loc, f32Vector, table,
                                      ValueRange{index(b, loc, 0)}, codes,
                                      mask, zero);
  }
  }
  return raw;
}

Value xfmr::kernels::dot(OpBuilder &b, Location loc, Value a,
                         ValueRange aPrefix, Value aBegin, Value w,
                         ValueRange wPrefix, Value wBegin, int64_t length,
                         WeightFormat format, Value table, int64_t width) {
  auto indices = [&](ValueRange prefix, Value begin, Value offset) {
    SmallVector<Value> result(prefix.begin(), prefix.end());
    result.push_back(arith::AddIOp::create(b, loc, begin, offset));
    return result;
  };
  Value sum = f32(b, loc, 0.0);
  int64_t vectorLength = length / width * width;
  if (vectorLength > 0) {
    auto vectorType = VectorType::get({width}, b.getF32Type());
    Value zero = arith::ConstantOp::create(b, 
        loc, DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)));
    Value lb = index(b, loc, 0);
    Value ub = index(b, loc, vectorLength);
    Value step = index(b, loc, width);
    auto loop = scf::ForOp::create(b, loc, lb, ub, step, ValueRange{zero},
        [&](OpBuilder &nb, Location nl, Value k, ValueRange acc) {
          Value av = vector::LoadOp::create(nb, nl, vectorType, a,
                                               indices(aPrefix, aBegin, k));
          Value wv = loadVectorAsF32(nb, nl, w, indices(wPrefix, wBegin, k),
                                     format, table, width);
          Value fma = vector::FMAOp::create(nb, nl, av, wv, acc[0]);
          scf::YieldOp::create(nb, nl, fma);
        });
    sum = vector::ReductionOp::create(b, 
        loc, vector::CombiningKind::ADD, loop.getResult(0), Value(),
        arith::FastMathFlags::reassoc);
  }
  if (vectorLength < length) {
    Value lb = index(b, loc, vectorLength);
    Value ub = index(b, loc, length);
    Value step = index(b, loc, 1);
    auto tail = scf::ForOp::create(b, loc, lb, ub, step, ValueRange{sum},
        [&](OpBuilder &nb, Location nl, Value k, ValueRange acc) {
          Value av =
              memref::LoadOp::create(nb, nl, a, indices(aPrefix, aBegin, k));
          Value wv = loadAsF32(nb, nl, w, indices(wPrefix, wBegin, k), format,
                               table);
          Value product = arith::MulFOp::create(nb, nl, av, wv);
          scf::YieldOp::create(nb, 
              nl, ValueRange{arith::AddFOp::create(nb, nl, acc[0], product)});
        });
    sum = tail.getResult(0);
  }
  return sum;
}

Value xfmr::kernels::scaledDot(
    OpBuilder &b, Location loc, Value a, ValueRange aPrefix, Value w,
    ValueRange wPrefix, int64_t length, WeightFormat format, Value table,
    std::optional<std::pair<int64_t, int64_t>> blockScale, Value scale,
    ValueRange scalePrefix, Value row, int64_t width) {
  Value zero = index(b, loc, 0);
  if (!blockScale)
    return dot(b, loc, a, aPrefix, zero, w, wPrefix, zero, length, format,
               table, width);
  int64_t blockRows = blockScale->first, blockCols = blockScale->second;
  Value rowBlock =
      arith::DivUIOp::create(b, loc, row, index(b, loc, blockRows));
  auto scaleAt = [&](OpBuilder &nb, Location nl, Value colBlock) {
    SmallVector<Value> indices(scalePrefix.begin(), scalePrefix.end());
    indices.push_back(rowBlock);
    indices.push_back(colBlock);
    return memref::LoadOp::create(nb, nl, scale, indices).getResult();
  };
  int64_t fullBlocks = length / blockCols, rest = length % blockCols;
  Value sum = f32(b, loc, 0.0);
  if (fullBlocks > 0 && blockCols % width == 0) {
    // Scale each block's vector of partial sums and keep accumulating in
    // vectors: one horizontal reduction per row, not one per block.
    auto vectorType = VectorType::get({width}, b.getF32Type());
    Value vzero = arith::ConstantOp::create(b, 
        loc, DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)));
    Value ub = index(b, loc, fullBlocks);
    Value step = index(b, loc, 1);
    auto blocks = scf::ForOp::create(b, loc, zero, ub, step,
        ValueRange{vzero},
        [&](OpBuilder &b, Location loc, Value block, ValueRange total) {
          Value begin =
              arith::MulIOp::create(b, loc, block, index(b, loc, blockCols));
          Value lb = index(b, loc, 0);
          Value ub = index(b, loc, blockCols);
          Value step = index(b, loc, width);
          auto inner = scf::ForOp::create(b, loc, lb, ub, step,
              ValueRange{vzero},
              [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
                Value at = arith::AddIOp::create(b, loc, begin, k);
                SmallVector<Value> aIndex(aPrefix.begin(), aPrefix.end());
                aIndex.push_back(at);
                SmallVector<Value> wIndex(wPrefix.begin(), wPrefix.end());
                wIndex.push_back(at);
                Value av = vector::LoadOp::create(b, loc, vectorType, a, aIndex);
                Value wv =
                    loadVectorAsF32(b, loc, w, wIndex, format, table, width);
                scf::YieldOp::create(b, 
                    loc,
                    ValueRange{vector::FMAOp::create(b, loc, av, wv, acc[0])});
              });
          Value splat = vector::BroadcastOp::create(b, loc, vectorType,
                                                      scaleAt(b, loc, block));
          scf::YieldOp::create(b, 
              loc, ValueRange{vector::FMAOp::create(b, loc, inner.getResult(0),
                                                      splat, total[0])});
        });
    sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                        blocks.getResult(0), Value(),
                                        arith::FastMathFlags::reassoc);
  } else if (fullBlocks > 0) {
    Value ub = index(b, loc, fullBlocks);
    Value step = index(b, loc, 1);
    auto loop = scf::ForOp::create(b, loc, zero, ub, step,
        ValueRange{sum},
        [&](OpBuilder &nb, Location nl, Value block, ValueRange acc) {
          Value begin =
              arith::MulIOp::create(nb, nl, block, index(nb, nl, blockCols));
          Value partial = dot(nb, nl, a, aPrefix, begin, w, wPrefix, begin,
                              blockCols, format, table, width);
          Value scaled =
              arith::MulFOp::create(nb, nl, partial, scaleAt(nb, nl, block));
          scf::YieldOp::create(nb, 
              nl, ValueRange{arith::AddFOp::create(nb, nl, acc[0], scaled)});
        });
    sum = loop.getResult(0);
  }
  if (rest > 0) {
    Value begin = index(b, loc, fullBlocks * blockCols);
    Value partial = dot(b, loc, a, aPrefix, begin, w, wPrefix, begin, rest,
                        format, table, width);
    Value scaled = arith::MulFOp::create(b, 
        loc, partial, scaleAt(b, loc, index(b, loc, fullBlocks)));
    sum = arith::AddFOp::create(b, loc, sum, scaled);
  }
  return sum;
}

Value xfmr::kernels::silu(OpBuilder &b, Location loc, Value x) {
  Value negative = arith::NegFOp::create(b, loc, x);
  Value exp = math::ExpOp::create(b, loc, negative);
  Value denominator = arith::AddFOp::create(b, loc, f32(b, loc, 1.0), exp);
  return arith::DivFOp::create(b, loc, x, denominator);
}

Value xfmr::kernels::gelu(OpBuilder &b, Location loc, Value x, bool tanhForm,
                          ErfBuilder erf) {
  Value half = f32(b, loc, 0.5), one = f32(b, loc, 1.0);
  Value inner;
  if (tanhForm) {
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    Value cube = arith::MulFOp::create(b, 
        loc, x, arith::MulFOp::create(b, loc, x, x));
    Value poly = arith::AddFOp::create(b, 
        loc, x, arith::MulFOp::create(b, loc, f32(b, loc, 0.044715), cube));
    inner = math::TanhOp::create(b, 
        loc, arith::MulFOp::create(b, loc, f32(b, loc, 0.7978845608028654),
                                     poly));
  } else {
    // 0.5 x (1 + erf(x / sqrt(2)))
    inner = erf(b, loc,
                arith::MulFOp::create(b, loc, x, f32(b, loc, 0.7071067811865476)));
  }
  Value halfX = arith::MulFOp::create(b, loc, half, x);
  Value onePlus = arith::AddFOp::create(b, loc, one, inner);
  return arith::MulFOp::create(b, loc, halfX, onePlus);
}

Value xfmr::kernels::roundToCode(OpBuilder &b, Location loc, Value value,
                                 WeightFormat format) {
  if (format == WeightFormat::I8) {
    // (Scalars or vectors.)
    auto limit = [&](double bound) -> Value {
      TypedAttr element = b.getF32FloatAttr(bound);
      if (auto vector = dyn_cast<VectorType>(value.getType()))
        return arith::ConstantOp::create(
            b, loc, DenseElementsAttr::get(vector, element));
      return arith::ConstantOp::create(b, loc, element);
    };
    Value rounded = math::RoundEvenOp::create(b, loc, value);
    Value low = arith::MaximumFOp::create(b, loc, rounded, limit(-127));
    return arith::MinimumFOp::create(b, loc, low, limit(127));
  }
  int mantissaBits = format == WeightFormat::F8E5M2 ? 2 : 3;
  int bias = format == WeightFormat::F8E5M2     ? 15
             : format == WeightFormat::F8E4M3FNUZ ? 8
                                                 : 7;
  double top = largestCode(format);
  Type i32 = b.getI32Type();
  auto c32 = [&](int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  };
  Value limit = f32(b, loc, top);
  Value magnitude = arith::MinimumFOp::create(b, 
      loc, math::AbsFOp::create(b, loc, value), limit);
  // Exponent of the binade (subnormals share the smallest), then the
  // quantum 2^(exponent - mantissa bits) built from its bit pattern.
  Value bits = arith::BitcastOp::create(b, loc, i32, magnitude);
  Value biased = arith::ShRUIOp::create(b, loc, bits, c32(23));
  Value exponent = arith::SubIOp::create(b, loc, biased, c32(127));
  exponent = arith::MaxSIOp::create(b, loc, exponent, c32(1 - bias));
  Value quantumExponent =
      arith::AddIOp::create(b, loc, exponent, c32(127 - mantissaBits));
  Value quantumBits =
      arith::ShLIOp::create(b, loc, quantumExponent, c32(23));
  Value quantum = arith::BitcastOp::create(b, loc, b.getF32Type(), quantumBits);
  Value steps = math::RoundEvenOp::create(b, 
      loc, arith::DivFOp::create(b, loc, magnitude, quantum));
  Value rounded = arith::MinimumFOp::create(b, 
      loc, arith::MulFOp::create(b, loc, steps, quantum), limit);
  return math::CopySignOp::create(b, loc, rounded, value);
}
/// The stored code of f32 `value` (already divided by its scale for 8-bit
/// formats): RNE to the format, saturating; bf16/f16 round to nearest even.
Value xfmr::kernels::encodeCacheValue(OpBuilder &b, Location loc, Value value,
                                      WeightFormat format) {
  switch (format) {
  case WeightFormat::F32:
    return value;
  case WeightFormat::BF16: {
    // Round to nearest even on the bit pattern (no libcall on CPUs without
    // native bf16 conversion).
    Type i32 = b.getI32Type();
    auto c32 = [&](int64_t v) {
      return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
    };
    Value bits = arith::BitcastOp::create(b, loc, i32, value);
    Value upper = arith::ShRUIOp::create(b, loc, bits, c32(16));
    Value lsb = arith::AndIOp::create(b, loc, upper, c32(1));
    Value rounded = arith::AddIOp::create(
        b, loc, bits, arith::AddIOp::create(b, loc, lsb, c32(0x7FFF)));
    Value high = arith::TruncIOp::create(
        b, loc, b.getI16Type(), arith::ShRUIOp::create(b, loc, rounded, c32(16)));
    return arith::BitcastOp::create(b, loc, b.getBF16Type(), high);
  }
  case WeightFormat::F16:
    return arith::TruncFOp::create(b, loc, b.getF16Type(), value);
  case WeightFormat::I8: {
    Value rounded = math::RoundEvenOp::create(b, loc, value);
    Value low = arith::MaximumFOp::create(b, loc, rounded, f32(b, loc, -127));
    Value clamped = arith::MinimumFOp::create(b, loc, low, f32(b, loc, 127));
    return arith::FPToSIOp::create(b, loc, b.getI8Type(), clamped);
  }
  default: {
    // E4M3FN: the rounded value times 2^-8 is an exact f16 whose bits hold
    // the code's exponent and mantissa at 13..7 and the sign at 15.
    Value rounded = roundToCode(b, loc, value, WeightFormat::F8E4M3FN);
    Value half = arith::TruncFOp::create(
        b, loc, b.getF16Type(),
        arith::MulFOp::create(b, loc, rounded, f32(b, loc, 1.0 / 256)));
    Value bits = arith::BitcastOp::create(b, loc, b.getI16Type(), half);
    auto c16 = [&](int64_t v) {
      return arith::ConstantOp::create(b, loc, b.getI16IntegerAttr(v));
    };
    Value magnitudeBits = arith::ShRUIOp::create(b, loc, bits, c16(7));
    Value magnitude = arith::AndIOp::create(b, loc, magnitudeBits, c16(0x7F));
    Value signBits = arith::ShRUIOp::create(b, loc, bits, c16(8));
    Value sign = arith::AndIOp::create(b, loc, signBits, c16(0x80));
    return arith::TruncIOp::create(b, loc, b.getI8Type(),
                                   arith::OrIOp::create(b, loc, magnitude, sign));
  }
  }
}

Value xfmr::kernels::cacheSlot(OpBuilder &b, Location loc, Value position,
                               int64_t capacity, std::optional<int64_t> sinks) {
  if (!sinks)
    return position;
  Value first = index(b, loc, *sinks);
  Value isSink = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       position, first);
  Value sinceFirst = arith::SubIOp::create(b, loc, position, first);
  Value ringSize = index(b, loc, capacity - *sinks);
  Value offset = arith::RemUIOp::create(b, loc, sinceFirst, ringSize);
  Value ring = arith::AddIOp::create(b, loc, first, offset);
  return arith::SelectOp::create(b, loc, isSink, position, ring);
}

VisibleKeys xfmr::kernels::visibleKeys(OpBuilder &b, Location loc,
                                       Value position, int64_t capacity,
                                       std::optional<int64_t> window,
                                       std::optional<int64_t> sinks) {
  Value zero = index(b, loc, 0);
  Value end = arith::AddIOp::create(b, loc, position, index(b, loc, 1));
  Value begin = zero;
  if (window) {
    // Keys at positions > p - window.
    Value windowSize = index(b, loc, *window);
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                         end, windowSize);
    begin = arith::SelectOp::create(
        b, loc, inside, arith::SubIOp::create(b, loc, end, windowSize), zero);
  }
  if (!sinks)
    return {begin, end,
            [](OpBuilder &, Location, Value i) -> Value { return i; }};
  // In an evicting ring, key indices number the sinks [0, sinkEnd) first,
  // then the window [windowBegin, end) from i = sinkEnd on.
  Value sinkCount = index(b, loc, *sinks);
  Value sinkEnd = arith::MinUIOp::create(b, loc, sinkCount, end);
  Value windowBegin = arith::MaxUIOp::create(b, loc, begin, sinkCount);
  Value windowShift = arith::SubIOp::create(b, loc, windowBegin, sinkEnd);
  Value count = arith::AddIOp::create(
      b, loc, sinkEnd,
      arith::SubIOp::create(b, loc, end,
                            arith::MinUIOp::create(b, loc, windowBegin, end)));
  int64_t sinkSlots = *sinks;
  return {zero, count,
          [=](OpBuilder &b, Location loc, Value i) -> Value {
            Value isSink = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::ult, i, sinkEnd);
            Value keyPosition = arith::SelectOp::create(
                b, loc, isSink, i,
                arith::AddIOp::create(b, loc, i, windowShift));
            return cacheSlot(b, loc, keyPosition, capacity, sinkSlots);
          }};
}

double xfmr::kernels::largestCode(WeightFormat format) {
  switch (format) {
  case WeightFormat::I8:
    return 127.0;
  case WeightFormat::F8E5M2:
    return 57344.0;
  case WeightFormat::F8E4M3FNUZ:
    return 240.0;
  default:
    return 448.0;
  }
}

Value xfmr::kernels::maxAbs(
    OpBuilder &b, Location loc, Value lb, Value ub, Value init,
    function_ref<Value(OpBuilder &, Location, Value)> load) {
  auto loop = scf::ForOp::create(
      b, loc, lb, ub, index(b, loc, 1), ValueRange{init},
      [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
        Value v = math::AbsFOp::create(b, loc, load(b, loc, i));
        scf::YieldOp::create(
            b, loc, ValueRange{arith::MaximumFOp::create(b, loc, acc[0], v)});
      });
  return loop.getResult(0);
}

Value xfmr::kernels::scaleForMaxAbs(OpBuilder &b, Location loc, Value amax,
                                    WeightFormat format) {
  Value floored = arith::MaximumFOp::create(b, loc, amax, f32(b, loc, 1e-12));
  Value largest = f32(b, loc, largestCode(format));
  return arith::DivFOp::create(b, loc, floored, largest);
}

Value xfmr::kernels::vectorExp(OpBuilder &b, Location loc, Value x) {
  auto type = cast<VectorType>(x.getType());
  auto intType = VectorType::get(type.getShape(), b.getI32Type());
  auto splat = [&](double value) -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, b.getF32FloatAttr(value)));
  };
  auto splatInt = [&](int32_t value) -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(intType, b.getI32IntegerAttr(value)));
  };
  auto fma = [&](Value a, Value m, Value c) -> Value {
    return math::FmaOp::create(b, loc, a, m, c);
  };
  const double lowest = -87.33654475; // ln(FLT_MIN)
  Value underflow = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ULT, x,
                                          splat(lowest));
  Value high = splat(88.0);
  Value below = arith::MinimumFOp::create(b, loc, x, high);
  Value low = splat(lowest);
  Value clamped = arith::MaximumFOp::create(b, loc, below, low);
  // n = round(x / ln 2); r = x - n ln 2 in two steps (Cody-Waite).
  Value n = math::RoundEvenOp::create(
      b, loc,
      arith::MulFOp::create(b, loc, clamped, splat(1.44269504088896341)));
  Value r = fma(n, splat(-0.693359375), clamped);
  r = fma(n, splat(2.12194440e-4), r);
  Value poly = splat(1.9875691500e-4);
  for (double c : {1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                   1.6666665459e-1, 5.0000001201e-1})
    poly = fma(poly, r, splat(c));
  Value r2 = arith::MulFOp::create(b, loc, r, r);
  Value polynomial = fma(poly, r2, r);
  Value p = arith::AddFOp::create(b, loc, polynomial, splat(1.0));
  // 2^n from the exponent bits.
  Value exponent = arith::FPToSIOp::create(b, loc, intType, n);
  Value biased = arith::AddIOp::create(b, loc, exponent, splatInt(127));
  Value bits = arith::ShLIOp::create(b, loc, biased, splatInt(23));
  Value power = arith::BitcastOp::create(b, loc, type, bits);
  Value result = arith::MulFOp::create(b, loc, p, power);
  return arith::SelectOp::create(b, loc, underflow, splat(0.0), result);
}

SoftmaxStep xfmr::kernels::onlineSoftmaxStep(OpBuilder &b, Location loc,
                                             Value max, Value sum,
                                             Value score) {
  Value maxNew = arith::MaximumFOp::create(b, loc, max, score);
  Value drop = arith::SubFOp::create(b, loc, max, maxNew);
  Value correction = math::ExpOp::create(b, loc, drop);
  Value shifted = arith::SubFOp::create(b, loc, score, maxNew);
  Value weight = math::ExpOp::create(b, loc, shifted);
  Value kept = arith::MulFOp::create(b, loc, sum, correction);
  Value sumNew = arith::AddFOp::create(b, loc, kept, weight);
  return {maxNew, sumNew, correction, weight};
}
