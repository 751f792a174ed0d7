//===- PanelLinear.cpp - y = x W^T over weights stored in panels ----------===//

#include "lowering/CPU/Kernels/PanelLinear.h"

#include "xfmr/runtime/Float16.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace xfmr::kernels;

namespace {

/// f32 sums per vector: one AVX-512 register.
constexpr int64_t kLanes = 16;

/// The bf16 rounding (nearest even) of the f32 bit patterns `bits` (i32 or
/// a vector of it), as f32 bit patterns: the low 16 bits cleared. No libcall
/// on CPUs without bf16 conversions, and no NaN inputs: activations are
/// finite here.
Value roundToBF16Bits(OpBuilder &b, Location loc, Value bits) {
  Type type = bits.getType();
  Value upper = arith::ShRUIOp::create(b, loc, bits, splat(b, loc, type, 16));
  Value lsb = arith::AndIOp::create(b, loc, upper, splat(b, loc, type, 1));
  Value bias = arith::AddIOp::create(b, loc, lsb, splat(b, loc, type, 0x7FFF));
  Value rounded = arith::AddIOp::create(b, loc, bits, bias);
  return arith::AndIOp::create(b, loc, rounded,
                               splat(b, loc, type, 0xFFFF0000));
}

/// What the tiles read the activations from.
struct Activations {
  /// i32 [tokens, ceil(in / 2)], bf16 pairs (dot products), or f32
  /// [tokens, 2 * ceil(in / 2)].
  Value memref;
  /// Scratch to free at the end; null when `memref` is the input itself.
  Value scratch;
};

/// Rewrites the input rows in the form the tiles read: bf16 pairs for the
/// dot products; otherwise f32, rounded to bf16 values when asked, padded
/// to an even length.
Activations prepareActivations(OpBuilder &b, Location loc,
                               const PanelLinear &op, Value tokens) {
  int64_t pairs = llvm::divideCeilSigned<int64_t>(op.in, 2);
  if (!op.dotProducts && !op.bf16Activations && op.in % 2 == 0)
    return {op.x, Value()};
  Type element = op.dotProducts ? Type(b.getI32Type()) : b.getF32Type();
  int64_t columns = op.dotProducts ? pairs : 2 * pairs;
  auto type = MemRefType::get({ShapedType::kDynamic, columns}, element);
  Value scratch = memref::AllocOp::create(b, loc, type, ValueRange{tokens});
  // 32 inputs per vector step; the rest, and the padding, one by one.
  int64_t vectorInputs = op.in / 32 * 32;
  auto inputBits = VectorType::get({32}, b.getI32Type());
  auto inputs = VectorType::get({32}, b.getF32Type());
  parallelFor(
      b, loc, index(b, loc, 0), tokens,
      [&](OpBuilder &b, Location loc, Value t) {
        Value first = index(b, loc, 0);
        Value vectorEnd = index(b, loc, vectorInputs);
        Value step = index(b, loc, 32);
        if (vectorInputs > 0)
          scf::ForOp::create(
              b, loc, first, vectorEnd, step, ValueRange{},
              [&](OpBuilder &b, Location loc, Value c, ValueRange) {
                Value v = vector::LoadOp::create(b, loc, inputs, op.x,
                                                 ValueRange{t, c});
                Value bits = vector::BitCastOp::create(b, loc, inputBits, v);
                if (op.bf16Activations)
                  bits = roundToBF16Bits(b, loc, bits);
                if (op.dotProducts) {
                  // The high halves, two per 32-bit lane (little-endian: the
                  // even input in the low half).
                  Value high = arith::ShRUIOp::create(
                      b, loc, bits, splat(b, loc, inputBits, 16));
                  auto halves = VectorType::get({32}, b.getI16Type());
                  Value narrow = arith::TruncIOp::create(b, loc, halves, high);
                  auto pairBits = VectorType::get({16}, b.getI32Type());
                  Value packed =
                      vector::BitCastOp::create(b, loc, pairBits, narrow);
                  Value pair =
                      arith::DivUIOp::create(b, loc, c, index(b, loc, 2));
                  vector::StoreOp::create(b, loc, packed, scratch,
                                          ValueRange{t, pair});
                } else {
                  Value rounded =
                      vector::BitCastOp::create(b, loc, inputs, bits);
                  vector::StoreOp::create(b, loc, rounded, scratch,
                                          ValueRange{t, c});
                }
                scf::YieldOp::create(b, loc);
              });
        // The last inputs (fewer than 32) and the padding: static, unrolled.
        Type i32 = b.getI32Type();
        auto c32 = [&](int64_t v) {
          return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
        };
        auto roundedBits = [&](int64_t c) -> Value {
          if (c >= op.in)
            return c32(0);
          Value v = memref::LoadOp::create(b, loc, op.x,
                                           ValueRange{t, index(b, loc, c)});
          Value bits = arith::BitcastOp::create(b, loc, i32, v);
          return op.bf16Activations ? roundToBF16Bits(b, loc, bits) : bits;
        };
        for (int64_t c = vectorInputs; c < 2 * pairs; c += 2) {
          Value even = roundedBits(c);
          Value odd = roundedBits(c + 1);
          if (op.dotProducts) {
            Value low = arith::ShRUIOp::create(b, loc, even, c32(16));
            Value both = arith::OrIOp::create(b, loc, low, odd);
            memref::StoreOp::create(b, loc, both, scratch,
                                    ValueRange{t, index(b, loc, c / 2)});
          } else {
            for (auto [column, bits] :
                 {std::pair(c, even), std::pair(c + 1, odd)}) {
              Value value =
                  arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
              memref::StoreOp::create(b, loc, value, scratch,
                                      ValueRange{t, index(b, loc, column)});
            }
          }
        }
      });
  return {scratch, scratch};
}

/// FP8: the block row of scales that panel `p`'s rows lie in.
Value scaleRowOf(OpBuilder &b, Location loc, const PanelLinear &op, Value p) {
  Value firstRow = arith::MulIOp::create(b, loc, p, index(b, loc, op.panel));
  return arith::DivUIOp::create(b, loc, firstRow,
                                index(b, loc, op.blockScale.first));
}

/// FP8, f32 weights: the scale of input pair `k` in block row `scaleRow`,
/// broadcast to the 32 codes of a pair vector.
Value pairScale(OpBuilder &b, Location loc, const PanelLinear &op,
                Value scaleRow, Value k) {
  Value column = arith::MulIOp::create(b, loc, k, index(b, loc, 2));
  Value block = arith::DivUIOp::create(b, loc, column,
                                       index(b, loc, op.blockScale.second));
  Value scale =
      memref::LoadOp::create(b, loc, op.scale, ValueRange{scaleRow, block});
  auto wide = VectorType::get({2 * kLanes}, b.getF32Type());
  return vector::BroadcastOp::create(b, loc, wide, scale);
}

/// 32 FP8 codes of a panel (16 rows x an input pair) times their scale, f32.
Value scaledFP8(OpBuilder &b, Location loc, const PanelLinear &op,
                ValueRange indices, Value scale) {
  Value values =
      loadVectorAsF32(b, loc, op.w, indices, op.format, op.table, 2 * kLanes);
  return arith::MulFOp::create(b, loc, values, scale);
}

/// The bf16 bit patterns of the FP8 magnitudes 0..127, split into low and
/// high bytes: the tables of two `vpermi2b` lookups (64 entries a register,
/// two registers a table).
struct ByteTables {
  Value low[2], high[2];
};

ByteTables fp8ByteTables(OpBuilder &b, Location loc, WeightFormat format) {
  SmallVector<int8_t> low, high;
  for (unsigned code = 0; code < 128; ++code) {
    uint16_t bits =
        xfmr::float16::encodeBF16(std::abs(fp8CodeValue(format, code)));
    low.push_back(int8_t(bits & 0xFF));
    high.push_back(int8_t(bits >> 8));
  }
  auto type = VectorType::get({64}, b.getI8Type());
  auto half = [&](ArrayRef<int8_t> values, int64_t first) -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, values.slice(first, 64)));
  };
  return {{half(low, 0), half(low, 64)}, {half(high, 0), half(high, 64)}};
}

/// 64 FP8 codes (32 rows x an input pair) as exact bf16 pairs, with
/// AVX512-VBMI: two `vpermi2b` lookups give each value's low and high byte,
/// the code's sign joins the high byte, and the bytes interleave within each
/// 128-bit lane. The first vector holds the pairs of rows {0-3, 8-11, 16-19,
/// 24-27}, the second those of rows {4-7, 12-15, 20-23, 28-31}: the order
/// `inTableOrder` undoes.
std::pair<Value, Value> fp8PairsByTable(OpBuilder &b, Location loc, Value codes,
                                        const ByteTables &t) {
  auto bytes = VectorType::get({64}, b.getI8Type());
  auto lookup = [&](const Value(&table)[2]) -> Value {
    return LLVM::CallIntrinsicOp::create(
               b, loc, bytes,
               b.getStringAttr("llvm.x86.avx512.vpermi2var.qi.512"),
               ValueRange{table[0], codes, table[1]})
        ->getResult(0);
  };
  Value low = lookup(t.low);
  Value magnitude = lookup(t.high);
  Value sign =
      arith::AndIOp::create(b, loc, codes, splat(b, loc, bytes, int8_t(0x80)));
  Value high = arith::OrIOp::create(b, loc, magnitude, sign);
  SmallVector<int64_t> first, second;
  for (int64_t lane = 0; lane < 4; ++lane)
    for (int64_t i = 0; i < 8; ++i) {
      first.append({16 * lane + i, 64 + 16 * lane + i});
      second.append({16 * lane + 8 + i, 64 + 16 * lane + 8 + i});
    }
  auto pairType = VectorType::get({2 * kLanes}, b.getBF16Type());
  auto interleave = [&](ArrayRef<int64_t> mask) -> Value {
    Value words = vector::ShuffleOp::create(b, loc, low, high, mask);
    return vector::BitCastOp::create(b, loc, pairType, words);
  };
  return {interleave(first), interleave(second)};
}

/// Two vectors of 16 lanes in fp8PairsByTable's row order, back in row
/// order: rows 0-15, then rows 16-31.
std::pair<Value, Value> inRowOrder(OpBuilder &b, Location loc, Value first,
                                   Value second) {
  SmallVector<int64_t> low, high;
  for (int64_t quad = 0; quad < 2; ++quad)
    for (int64_t from : {0, 16})
      for (int64_t i = 0; i < 4; ++i) {
        low.push_back(from + 4 * quad + i);
        high.push_back(from + 8 + 4 * quad + i);
      }
  return {vector::ShuffleOp::create(b, loc, first, second, low),
          vector::ShuffleOp::create(b, loc, first, second, high)};
}

/// Where a dot-product tile takes its weights from.
struct DotWeights {
  /// The bf16 pairs of input pair `k`: one vector per 16 rows of the panel.
  std::function<SmallVector<Value>(OpBuilder &, Location, Value k)> load;
  /// FP8: exact codes, whose sums are scaled block by block.
  bool blockScaled = false;
  /// The vectors come in fp8PairsByTable's row order.
  bool tableOrder = false;
};

/// Output vector `j` of panel `p`: its first column, and a mask where the
/// last panel passes the last output (null elsewhere).
std::pair<Value, Value> outputVector(OpBuilder &b, Location loc,
                                     const PanelLinear &op, Value p,
                                     int64_t j) {
  Value panelStart = arith::MulIOp::create(b, loc, p, index(b, loc, op.panel));
  Value column =
      arith::AddIOp::create(b, loc, panelStart, index(b, loc, j * kLanes));
  if (op.out % op.panel == 0)
    return {column, Value()};
  Value left = arith::SubIOp::create(b, loc, index(b, loc, op.out), column);
  Value clamped = arith::MaxSIOp::create(b, loc, left, index(b, loc, 0));
  auto maskType = VectorType::get({kLanes}, b.getI1Type());
  return {column,
          vector::CreateMaskOp::create(b, loc, maskType, ValueRange{clamped})};
}

/// Loads `memref[indices...]` (16 lanes), masked when `mask` is set.
Value loadLanes(OpBuilder &b, Location loc, Value memref, ValueRange indices,
                Value mask) {
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  auto type = VectorType::get({kLanes}, element);
  if (!mask)
    return vector::LoadOp::create(b, loc, type, memref, indices);
  Value none = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(type, b.getZeroAttr(element)));
  return vector::MaskedLoadOp::create(b, loc, type, memref, indices, mask,
                                      none);
}

/// Stores `value` (16 f32 lanes) at `y[row, column...]`, masked when `mask`
/// is set.
void storeOutput(OpBuilder &b, Location loc, const PanelLinear &op, Value row,
                 std::pair<Value, Value> vector, Value value) {
  auto [column, mask] = vector;
  if (mask)
    vector::MaskedStoreOp::create(b, loc, op.y, ValueRange{row, column}, mask,
                                  value);
  else
    vector::StoreOp::create(b, loc, value, op.y, ValueRange{row, column});
}

/// The bias of output vector `vector` as f32, or null without a bias.
Value biasOf(OpBuilder &b, Location loc, const PanelLinear &op,
             std::pair<Value, Value> vector) {
  if (!op.bias)
    return Value();
  Value raw =
      loadLanes(b, loc, op.bias, ValueRange{vector.first}, vector.second);
  if (raw.getType() == VectorType::get({kLanes}, b.getF32Type()))
    return raw;
  return arith::ExtFOp::create(b, loc,
                               VectorType::get({kLanes}, b.getF32Type()), raw);
}

/// Stores the sums of rows `rows` (row-major: `vectors` per row) of panel
/// `p`, plus the bias.
void storeSums(OpBuilder &b, Location loc, const PanelLinear &op, Value p,
               ArrayRef<Value> rows, ValueRange sums) {
  int64_t vectors = op.panel / kLanes;
  for (int64_t j = 0; j < vectors; ++j) {
    auto vector = outputVector(b, loc, op, p, j);
    Value bias = biasOf(b, loc, op, vector);
    for (size_t i = 0; i < rows.size(); ++i) {
      Value sum = sums[i * vectors + j];
      if (bias)
        sum = arith::AddFOp::create(b, loc, sum, bias);
      storeOutput(b, loc, op, rows[i], vector, sum);
    }
  }
}

/// AArch64's dot and matrix products. Each works on 128-bit segments: four
/// 32-bit sums from 16 bytes of each operand (bfdot, sdot, usdot: lane by
/// lane; usmmla, bfmmla: a 2 x 2 block of sums a segment). NEON's take one
/// segment, SVE's a whole register of them.
enum class ArmProduct { BFDot, Sdot, Usdot, Usmmla, BFMmla };

/// `sum` + `product`(`left`, `right`) on vectors of any number of segments:
/// one NEON instruction a segment, or with `sveBits` (the code's fixed SVE
/// length) one SVE instruction a register's worth. The fixed vectors go
/// into and come out of the scalable ones the SVE intrinsics take; with the
/// length fixed (vscale_range), LLVM keeps both in the same register.
Value armProduct(OpBuilder &b, Location loc, ArmProduct product,
                 int64_t sveBits, Value sum, Value left, Value right) {
  static const struct {
    const char *neon, *sve;
  } kIntrinsics[] = {
      {"llvm.aarch64.neon.bfdot.v4f32.v8bf16", "llvm.aarch64.sve.bfdot"},
      {"llvm.aarch64.neon.sdot.v4i32.v16i8", "llvm.aarch64.sve.sdot.nxv4i32"},
      {"llvm.aarch64.neon.usdot.v4i32.v16i8", "llvm.aarch64.sve.usdot.nxv4i32"},
      {"llvm.aarch64.neon.usmmla.v4i32.v16i8",
       "llvm.aarch64.sve.usmmla.nxv4i32"},
      {"llvm.aarch64.neon.bfmmla", "llvm.aarch64.sve.bfmmla"}};
  const auto &intrinsic = kIntrinsics[static_cast<int>(product)];
  int64_t segments = sveBits ? sveBits / 128 : 1;
  auto sumType = cast<VectorType>(sum.getType());
  auto partType = VectorType::get({4 * segments}, sumType.getElementType());
  int64_t parts = sumType.getNumElements() / partType.getNumElements();
  assert(parts * partType.getNumElements() == sumType.getNumElements() &&
         "whole registers of sums");
  // The fixed vector `v` as the scalable one of the same register.
  auto scalable = [&](Value v) -> Value {
    auto type = cast<VectorType>(v.getType());
    auto scalableType =
        VectorType::get({type.getNumElements() / segments},
                        type.getElementType(), /*scalableDims=*/{true});
    Value poison = LLVM::PoisonOp::create(b, loc, scalableType);
    return LLVM::vector_insert::create(b, loc, poison, v, 0);
  };
  for (int64_t c = 0; c < parts; ++c) {
    auto part = [&](Value v) -> Value {
      if (parts == 1)
        return v;
      int64_t width = cast<VectorType>(v.getType()).getNumElements() / parts;
      return vector::ExtractStridedSliceOp::create(
          b, loc, v, ArrayRef<int64_t>{width * c}, ArrayRef<int64_t>{width},
          ArrayRef<int64_t>{1});
    };
    Value sums = part(sum);
    Value first = part(left);
    Value second = part(right);
    if (!sveBits) {
      sums = LLVM::CallIntrinsicOp::create(b, loc, partType,
                                           b.getStringAttr(intrinsic.neon),
                                           ValueRange{sums, first, second})
                 ->getResult(0);
    } else {
      Value scalableSums = scalable(sums);
      Value result =
          LLVM::CallIntrinsicOp::create(
              b, loc, scalableSums.getType(), b.getStringAttr(intrinsic.sve),
              ValueRange{scalableSums, scalable(first), scalable(second)})
              ->getResult(0);
      sums = LLVM::vector_extract::create(b, loc, partType, result, 0);
    }
    if (parts == 1)
      return sums;
    sum = vector::InsertStridedSliceOp::create(
        b, loc, sums, sum, ArrayRef<int64_t>{4 * segments * c},
        ArrayRef<int64_t>{1});
  }
  return sum;
}

/// AVX512-BF16 tile: rows `rows` against panel `p`, R x 4 `vdpbf16ps` per
/// input pair on activation pairs broadcast from `x`. Block-scaled weights
/// sum each block of inputs apart and add it, times its scale, to y (which
/// starts at the bias): 4 loads, FMAs and stores per row and block of 64
/// pairs, where converting exact codes to bf16(code x scale) would cost
/// more on every weight.
void emitDotTile(OpBuilder &b, Location loc, const PanelLinear &op,
                 const Activations &x, Value p, ArrayRef<Value> rows,
                 const DotWeights &weights) {
  int64_t vectors = op.panel / kLanes;
  int64_t pairs = llvm::divideCeilSigned<int64_t>(op.in, 2);
  auto sumType = VectorType::get({kLanes}, b.getF32Type());
  auto pairType = VectorType::get({2 * kLanes}, b.getBF16Type());
  auto bitsType = VectorType::get({kLanes}, b.getI32Type());
  // The sums over input pairs [first, end), row-major.
  auto sumsOver = [&](OpBuilder &b, Location loc, Value first, Value end) {
    Value zero = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(sumType, b.getF32FloatAttr(0)));
    SmallVector<Value> init(rows.size() * vectors, zero);
    auto loop = scf::ForOp::create(
        b, loc, first, end, index(b, loc, 1), init,
        [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
          SmallVector<Value> w = weights.load(b, loc, k);
          SmallVector<Value> next(acc.begin(), acc.end());
          for (size_t i = 0; i < rows.size(); ++i) {
            Value pair = memref::LoadOp::create(b, loc, x.memref,
                                                ValueRange{rows[i], k});
            Value lanes = vector::BroadcastOp::create(b, loc, bitsType, pair);
            Value a = vector::BitCastOp::create(b, loc, pairType, lanes);
            for (int64_t j = 0; j < vectors; ++j) {
              Value &sum = next[i * vectors + j];
              sum = op.armBFDot ? armProduct(b, loc, ArmProduct::BFDot,
                                             op.sveBits, sum, a, w[j])
                                : x86vector::DotBF16Op::create(b, loc, sumType,
                                                               sum, a, w[j]);
            }
          }
          scf::YieldOp::create(b, loc, next);
        });
    return SmallVector<Value>(loop.getResults());
  };
  if (!weights.blockScaled) {
    assert(!weights.tableOrder && "only FP8 codes come in table order");
    Value first = index(b, loc, 0);
    Value end = index(b, loc, pairs);
    SmallVector<Value> sums = sumsOver(b, loc, first, end);
    storeSums(b, loc, op, p, rows, sums);
    return;
  }
  // y starts at the bias (or zero); each block adds its sums times its scale.
  // (Totals kept in registers instead would leave room for tiles of 3 rows
  // only: slower.)
  for (int64_t j = 0; j < vectors; ++j) {
    auto vector = outputVector(b, loc, op, p, j);
    Value start = biasOf(b, loc, op, vector);
    if (!start)
      start = arith::ConstantOp::create(
          b, loc, DenseElementsAttr::get(sumType, b.getF32FloatAttr(0)));
    for (Value row : rows)
      storeOutput(b, loc, op, row, vector, start);
  }
  int64_t blockPairs = op.blockScale.second / 2;
  Value scaleRow = scaleRowOf(b, loc, op, p);
  Value firstBlock = index(b, loc, 0);
  Value blocks = index(b, loc, llvm::divideCeilSigned(pairs, blockPairs));
  serialFor(
      b, loc, firstBlock, blocks, [&](OpBuilder &b, Location loc, Value block) {
        Value first =
            arith::MulIOp::create(b, loc, block, index(b, loc, blockPairs));
        Value next =
            arith::AddIOp::create(b, loc, first, index(b, loc, blockPairs));
        Value end = arith::MinUIOp::create(b, loc, next, index(b, loc, pairs));
        SmallVector<Value> sums = sumsOver(b, loc, first, end);
        Value scalar = memref::LoadOp::create(b, loc, op.scale,
                                              ValueRange{scaleRow, block});
        Value scale = vector::BroadcastOp::create(b, loc, sumType, scalar);
        for (size_t i = 0; i < rows.size(); ++i) {
          MutableArrayRef<Value> row(&sums[i * vectors], vectors);
          if (weights.tableOrder)
            for (int64_t h = 0; h + 1 < vectors; h += 2)
              std::tie(row[h], row[h + 1]) =
                  inRowOrder(b, loc, row[h], row[h + 1]);
          for (int64_t j = 0; j < vectors; ++j) {
            auto vector = outputVector(b, loc, op, p, j);
            Value y = loadLanes(b, loc, op.y, ValueRange{rows[i], vector.first},
                                vector.second);
            Value sum = vector::FMAOp::create(b, loc, row[j], scale, y);
            storeOutput(b, loc, op, rows[i], vector, sum);
          }
        }
      });
}

/// FMA tile (no AVX512-BF16, or f32 activations for --precise): each weight
/// pair widens to two f32 vectors, bf16 by a shift and a mask, FP8 codes to
/// code x scale split into even and odd inputs by shuffles, and feeds two
/// FMAs per row.
void emitFmaTile(OpBuilder &b, Location loc, const PanelLinear &op,
                 const Activations &x, Value p, ArrayRef<Value> rows) {
  int64_t vectors = op.panel / kLanes;
  int64_t pairs = llvm::divideCeilSigned<int64_t>(op.in, 2);
  auto sumType = VectorType::get({kLanes}, b.getF32Type());
  auto pairType = VectorType::get({2 * kLanes}, b.getBF16Type());
  auto bitsType = VectorType::get({kLanes}, b.getI32Type());
  Value zero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(sumType, b.getF32FloatAttr(0)));
  SmallVector<Value> init(rows.size() * vectors, zero);
  Value scaleRow = isFP8(op.format) ? scaleRowOf(b, loc, op, p) : Value();
  Value firstPair = index(b, loc, 0);
  Value pairEnd = index(b, loc, pairs);
  Value one = index(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, firstPair, pairEnd, one, init,
      [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
        SmallVector<Value> even, odd;
        Value blockScale =
            isFP8(op.format) ? pairScale(b, loc, op, scaleRow, k) : Value();
        for (int64_t j = 0; j < vectors; ++j) {
          SmallVector<Value, 3> indices{p, k, index(b, loc, j * 2 * kLanes)};
          if (isFP8(op.format)) {
            Value scaled = scaledFP8(b, loc, op, indices, blockScale);
            SmallVector<int64_t> evenLanes, oddLanes;
            for (int64_t lane = 0; lane < kLanes; ++lane) {
              evenLanes.push_back(2 * lane);
              oddLanes.push_back(2 * lane + 1);
            }
            even.push_back(
                vector::ShuffleOp::create(b, loc, scaled, scaled, evenLanes));
            odd.push_back(
                vector::ShuffleOp::create(b, loc, scaled, scaled, oddLanes));
            continue;
          }
          // bf16 -> f32 is a shift: the even input of each pair is the low
          // half, the odd one the high half.
          Value w = vector::LoadOp::create(b, loc, pairType, op.w, indices);
          Value bits = vector::BitCastOp::create(b, loc, bitsType, w);
          Value low =
              arith::ShLIOp::create(b, loc, bits, splat(b, loc, bitsType, 16));
          Value high = arith::AndIOp::create(
              b, loc, bits, splat(b, loc, bitsType, 0xFFFF0000));
          even.push_back(vector::BitCastOp::create(b, loc, sumType, low));
          odd.push_back(vector::BitCastOp::create(b, loc, sumType, high));
        }
        Value column = arith::MulIOp::create(b, loc, k, index(b, loc, 2));
        Value nextColumn =
            arith::AddIOp::create(b, loc, column, index(b, loc, 1));
        SmallVector<Value> next(acc.begin(), acc.end());
        for (size_t i = 0; i < rows.size(); ++i) {
          Value x0 = memref::LoadOp::create(b, loc, x.memref,
                                            ValueRange{rows[i], column});
          Value x1 = memref::LoadOp::create(b, loc, x.memref,
                                            ValueRange{rows[i], nextColumn});
          Value a0 = vector::BroadcastOp::create(b, loc, sumType, x0);
          Value a1 = vector::BroadcastOp::create(b, loc, sumType, x1);
          for (int64_t j = 0; j < vectors; ++j) {
            Value &sum = next[i * vectors + j];
            sum = vector::FMAOp::create(b, loc, a0, even[j], sum);
            sum = vector::FMAOp::create(b, loc, a1, odd[j], sum);
          }
        }
        scf::YieldOp::create(b, loc, next);
      });
  storeSums(b, loc, op, p, rows, loop.getResults());
}

/// The bf16 pairs of input pair `k` of panel `p` of `panels` (the weights,
/// or a converted panel): one vector per 16 rows.
SmallVector<Value> bf16Pairs(OpBuilder &b, Location loc, const PanelLinear &op,
                             Value panels, Value p, Value k) {
  auto pairType = VectorType::get({2 * kLanes}, b.getBF16Type());
  SmallVector<Value> pairs;
  for (int64_t offset = 0; offset < 2 * op.panel; offset += 2 * kLanes)
    pairs.push_back(vector::LoadOp::create(
        b, loc, pairType, panels, ValueRange{p, k, index(b, loc, offset)}));
  return pairs;
}

/// FP8 codes of input pair `k` of panel `p` as exact bf16 pairs: by byte
/// tables (in their row order) or, without AVX512-VBMI, widened to f32 and
/// narrowed (exact: 4 significant bits) in row order.
SmallVector<Value> fp8Pairs(OpBuilder &b, Location loc, const PanelLinear &op,
                            Value p, Value k, const ByteTables *tables) {
  SmallVector<Value> pairs;
  if (tables) {
    auto bytes = VectorType::get({64}, b.getI8Type());
    for (int64_t offset = 0; offset < 2 * op.panel; offset += 64) {
      Value codes = vector::LoadOp::create(
          b, loc, bytes, op.w, ValueRange{p, k, index(b, loc, offset)});
      auto [first, second] = fp8PairsByTable(b, loc, codes, *tables);
      pairs.append({first, second});
    }
    return pairs;
  }
  auto pairType = VectorType::get({2 * kLanes}, b.getBF16Type());
  for (int64_t offset = 0; offset < 2 * op.panel; offset += 2 * kLanes) {
    Value values =
        loadVectorAsF32(b, loc, op.w, ValueRange{p, k, index(b, loc, offset)},
                        op.format, op.table, 2 * kLanes);
    pairs.push_back(arith::TruncFOp::create(b, loc, pairType, values));
  }
  return pairs;
}

/// What one register tile of activation rows does against the current panel.
using TileBody =
    llvm::function_ref<void(OpBuilder &, Location, ArrayRef<Value>)>;

/// Every row of `tokens` through `emitTile`: whole tiles of `tile` rows share
/// each weight load; the rest of the rows go in at most one tile of each
/// power of two below `tile` (5 rows: 4 + 1), so a batched decode step of a
/// few sequences still streams each panel once per tile, not once per row.
/// One row (a single sequence's decode) is a single stream of the panel.
void forEachRowTile(OpBuilder &b, Location loc, Value tokens, int64_t tile,
                    TileBody emitTile) {
  Value fullTiles = arith::DivUIOp::create(b, loc, tokens, index(b, loc, tile));
  Value first = index(b, loc, 0);
  serialFor(
      b, loc, first, fullTiles, [&](OpBuilder &b, Location loc, Value tb) {
        Value start = arith::MulIOp::create(b, loc, tb, index(b, loc, tile));
        SmallVector<Value> rows;
        for (int64_t i = 0; i < tile; ++i)
          rows.push_back(
              arith::AddIOp::create(b, loc, start, index(b, loc, i)));
        emitTile(b, loc, rows);
      });
  Value next = arith::MulIOp::create(b, loc, fullTiles, index(b, loc, tile));
  for (int64_t size = int64_t(llvm::PowerOf2Ceil(uint64_t(tile))) / 2;
       size >= 1; size /= 2) {
    if (size >= tile)
      continue;
    Value left = arith::SubIOp::create(b, loc, tokens, next);
    Value fits = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, left,
                                       index(b, loc, size));
    scf::IfOp::create(b, loc, fits, [&](OpBuilder &b, Location loc) {
      SmallVector<Value> rows;
      for (int64_t i = 0; i < size; ++i)
        rows.push_back(arith::AddIOp::create(b, loc, next, index(b, loc, i)));
      emitTile(b, loc, rows);
      scf::YieldOp::create(b, loc);
    });
    Value advanced = arith::AddIOp::create(b, loc, next, index(b, loc, size));
    next = arith::SelectOp::create(b, loc, fits, advanced, next);
  }
}

/// W8A8 and W4A8: each token's input quantized as xfmr.quantize does it.
struct Int8Activations {
  /// i8 [tokens, columns]: the codes, zero-padded to whole quads (W8A8) or
  /// octets (W4A8).
  Value codes;
  /// f32 [tokens]: each token's scale; i32 [tokens]: the sum of its codes.
  Value scales, sums;
  /// W4A8: i32 [tokens, groups], the sum of each group's codes.
  Value groupSums;
};

/// Quantizes every row of `op.x`: scale = max(max |x|, 1e-12) / 127 and
/// code = clamp(round_even(x / scale), -127, 127), 16 inputs a step. With
/// int4 weights, also the code sum of each group of op.groupSize inputs.
Int8Activations quantizeInt8Activations(OpBuilder &b, Location loc,
                                        const PanelLinear &op, Value tokens) {
  bool int4 = op.format == WeightFormat::I4;
  int64_t columns = int4 ? llvm::alignTo(op.in, 8) : llvm::alignTo(op.in, 4);
  int64_t groups = int4 ? llvm::divideCeilSigned(op.in, op.groupSize) : 0;
  Int8Activations x;
  x.codes = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic, columns}, b.getI8Type()),
      ValueRange{tokens});
  if (int4)
    x.groupSums = memref::AllocOp::create(
        b, loc, MemRefType::get({ShapedType::kDynamic, groups}, b.getI32Type()),
        ValueRange{tokens});
  x.scales = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      ValueRange{tokens});
  x.sums = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getI32Type()),
      ValueRange{tokens});
  int64_t vectorInputs = op.in / kLanes * kLanes;
  auto lanes = VectorType::get({kLanes}, b.getF32Type());
  auto intLanes = VectorType::get({kLanes}, b.getI32Type());
  auto byteLanes = VectorType::get({kLanes}, b.getI8Type());
  auto quantizeRow = [&](OpBuilder &b, Location loc, Value t) {
    Value first = index(b, loc, 0);
    Value vectorEnd = index(b, loc, vectorInputs);
    Value step = index(b, loc, kLanes);
    // max |x|: 16 lanes, then the rest one by one.
    Value zeros = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(lanes, b.getF32FloatAttr(0)));
    auto maxLoop = scf::ForOp::create(
        b, loc, first, vectorEnd, step, ValueRange{zeros},
        [&](OpBuilder &b, Location loc, Value c, ValueRange acc) {
          Value v =
              vector::LoadOp::create(b, loc, lanes, op.x, ValueRange{t, c});
          Value magnitude = math::AbsFOp::create(b, loc, v);
          scf::YieldOp::create(
              b, loc,
              ValueRange{arith::MaximumFOp::create(b, loc, acc[0], magnitude)});
        });
    Value amax = vector::ReductionOp::create(
        b, loc, vector::CombiningKind::MAXIMUMF, maxLoop.getResult(0));
    amax =
        maxAbs(b, loc, vectorEnd, index(b, loc, op.in), amax,
               [&](OpBuilder &b, Location loc, Value c) -> Value {
                 return memref::LoadOp::create(b, loc, op.x, ValueRange{t, c});
               });
    Value scale = scaleForMaxAbs(b, loc, amax, WeightFormat::I8);
    memref::StoreOp::create(b, loc, scale, x.scales, ValueRange{t});
    // The codes and their sum.
    Value lanesOfScale = vector::BroadcastOp::create(b, loc, lanes, scale);
    Value noSum = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(intLanes, b.getI32IntegerAttr(0)));
    auto codeLoop = scf::ForOp::create(
        b, loc, first, vectorEnd, step, ValueRange{noSum},
        [&](OpBuilder &b, Location loc, Value c, ValueRange acc) {
          Value v =
              vector::LoadOp::create(b, loc, lanes, op.x, ValueRange{t, c});
          Value q = roundToCode(b, loc,
                                arith::DivFOp::create(b, loc, v, lanesOfScale),
                                WeightFormat::I8);
          Value code = arith::FPToSIOp::create(b, loc, intLanes, q);
          vector::StoreOp::create(
              b, loc, arith::TruncIOp::create(b, loc, byteLanes, code), x.codes,
              ValueRange{t, c});
          scf::YieldOp::create(
              b, loc, ValueRange{arith::AddIOp::create(b, loc, acc[0], code)});
        });
    Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                            codeLoop.getResult(0));
    // The last inputs (fewer than 16) and the padding: static, unrolled.
    for (int64_t c = vectorInputs; c < columns; ++c) {
      Value code = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
      if (c < op.in) {
        Value v = memref::LoadOp::create(b, loc, op.x,
                                         ValueRange{t, index(b, loc, c)});
        Value q = roundToCode(b, loc, arith::DivFOp::create(b, loc, v, scale),
                              WeightFormat::I8);
        code = arith::FPToSIOp::create(b, loc, b.getI32Type(), q);
        sum = arith::AddIOp::create(b, loc, sum, code);
      }
      Value byte = arith::TruncIOp::create(b, loc, b.getI8Type(), code);
      Value column = index(b, loc, c);
      memref::StoreOp::create(b, loc, byte, x.codes, ValueRange{t, column});
    }
    memref::StoreOp::create(b, loc, sum, x.sums, ValueRange{t});
    if (!int4)
      return;
    // Each group's code sum, an octet a step (the padding adds zeros).
    auto octet = VectorType::get({8}, b.getI8Type());
    auto octetSums = VectorType::get({8}, b.getI32Type());
    int64_t octets = columns / 8;
    Value noGroup = index(b, loc, 0);
    Value groupEnd = index(b, loc, groups);
    serialFor(
        b, loc, noGroup, groupEnd, [&](OpBuilder &b, Location loc, Value g) {
          Value first =
              arith::MulIOp::create(b, loc, g, index(b, loc, op.groupSize / 8));
          Value past = arith::AddIOp::create(b, loc, first,
                                             index(b, loc, op.groupSize / 8));
          Value lastOctet = index(b, loc, octets);
          Value end = arith::MinUIOp::create(b, loc, past, lastOctet);
          Value none = arith::ConstantOp::create(
              b, loc,
              DenseElementsAttr::get(octetSums, b.getI32IntegerAttr(0)));
          auto loop = scf::ForOp::create(
              b, loc, first, end, index(b, loc, 1), ValueRange{none},
              [&](OpBuilder &b, Location loc, Value o, ValueRange acc) {
                Value column =
                    arith::MulIOp::create(b, loc, o, index(b, loc, 8));
                Value codes = vector::LoadOp::create(b, loc, octet, x.codes,
                                                     ValueRange{t, column});
                Value wide = arith::ExtSIOp::create(b, loc, octetSums, codes);
                scf::YieldOp::create(
                    b, loc,
                    ValueRange{arith::AddIOp::create(b, loc, acc[0], wide)});
              });
          Value groupSum = vector::ReductionOp::create(
              b, loc, vector::CombiningKind::ADD, loop.getResult(0));
          memref::StoreOp::create(b, loc, groupSum, x.groupSums,
                                  ValueRange{t, g});
        });
  };
  // A few tokens (decode) are quantized on the calling thread: a parallel
  // region costs more than the work.
  Value few = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, tokens,
                                    index(b, loc, 8));
  Value first = index(b, loc, 0);
  scf::IfOp::create(
      b, loc, few,
      [&](OpBuilder &b, Location loc) {
        serialFor(b, loc, first, tokens, quantizeRow);
        scf::YieldOp::create(b, loc);
      },
      [&](OpBuilder &b, Location loc) {
        parallelFor(b, loc, first, tokens, quantizeRow);
        scf::YieldOp::create(b, loc);
      });
  return x;
}

/// Int8 tile: rows `rows` against panel `p`, R x 4 int32 sums per row over
/// all input quads, then scaled: y = (sum - 128 sum(x)) * scale(x) *
/// scale(w) + bias.
void emitInt8Tile(OpBuilder &b, Location loc, const PanelLinear &op,
                  const Int8Activations &x, Value p, ArrayRef<Value> rows) {
  int64_t vectors = op.panel / kLanes;
  int64_t quads = llvm::divideCeilSigned<int64_t>(op.in, 4);
  auto sumType = VectorType::get({kLanes}, b.getI32Type());
  auto bytes = VectorType::get({4 * kLanes}, b.getI8Type());
  auto quadType = VectorType::get({4}, b.getI8Type());
  auto oneWord = VectorType::get({1}, b.getI32Type());
  Value zero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(sumType, b.getI32IntegerAttr(0)));
  SmallVector<Value> init(rows.size() * vectors, zero);
  using ArmDot = PanelLinear::ArmDot;
  // sdot multiplies the codes themselves (the stored bytes flipped back), so
  // its sums are exact; the others' include 128 x the row's code sum.
  bool exactSums = op.armDot == ArmDot::Sdot;
  Value firstQuad = index(b, loc, 0);
  Value quadEnd = index(b, loc, quads);
  Value one = index(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, firstQuad, quadEnd, one, init,
      [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
        SmallVector<Value> w;
        for (int64_t j = 0; j < vectors; ++j)
          w.push_back(vector::LoadOp::create(
              b, loc, bytes, op.w,
              ValueRange{p, k, index(b, loc, j * 4 * kLanes)}));
        Value column = arith::MulIOp::create(b, loc, k, index(b, loc, 4));
        SmallVector<Value> next(acc.begin(), acc.end());
        for (size_t i = 0; i < rows.size(); ++i) {
          if (op.dotProducts || op.armDot != ArmDot::None) {
            // The row's quad, one 32-bit word, in every lane.
            Value quad = vector::LoadOp::create(b, loc, quadType, x.codes,
                                                ValueRange{rows[i], column});
            Value word = vector::ExtractOp::create(
                b, loc, vector::BitCastOp::create(b, loc, oneWord, quad),
                ArrayRef<int64_t>{0});
            Value a = vector::BitCastOp::create(
                b, loc, bytes,
                vector::BroadcastOp::create(b, loc, sumType, word));
            for (int64_t j = 0; j < vectors; ++j) {
              Value &sum = next[i * vectors + j];
              if (op.dotProducts) {
                sum = LLVM::CallIntrinsicOp::create(
                          b, loc, sumType,
                          b.getStringAttr("llvm.x86.avx512.vpdpbusd.512"),
                          ValueRange{sum, w[j], a})
                          ->getResult(0);
              } else if (op.armDot == ArmDot::Usdot) {
                sum = armProduct(b, loc, ArmProduct::Usdot, op.sveBits, sum,
                                 w[j], a);
              } else {
                Value flip = arith::ConstantOp::create(
                    b, loc,
                    DenseElementsAttr::get(
                        bytes, b.getIntegerAttr(b.getI8Type(), -128)));
                Value codes = arith::XOrIOp::create(b, loc, w[j], flip);
                sum = armProduct(b, loc, ArmProduct::Sdot, op.sveBits, sum,
                                 codes, a);
              }
            }
            continue;
          }
          // Without dot products: byte `q` of every lane (unsigned) times
          // code q of the quad.
          for (int64_t q = 0; q < 4; ++q) {
            Value position =
                arith::AddIOp::create(b, loc, column, index(b, loc, q));
            Value code = memref::LoadOp::create(b, loc, x.codes,
                                                ValueRange{rows[i], position});
            Value wide = arith::ExtSIOp::create(b, loc, b.getI32Type(), code);
            Value a = vector::BroadcastOp::create(b, loc, sumType, wide);
            for (int64_t j = 0; j < vectors; ++j) {
              Value lanesOfW = vector::BitCastOp::create(b, loc, sumType, w[j]);
              Value shifted = arith::ShRUIOp::create(
                  b, loc, lanesOfW, splat(b, loc, sumType, 8 * q));
              Value byte = arith::AndIOp::create(b, loc, shifted,
                                                 splat(b, loc, sumType, 0xFF));
              Value &sum = next[i * vectors + j];
              sum = arith::AddIOp::create(
                  b, loc, sum, arith::MulIOp::create(b, loc, byte, a));
            }
          }
        }
        scf::YieldOp::create(b, loc, next);
      });
  auto lanes = VectorType::get({kLanes}, b.getF32Type());
  for (int64_t j = 0; j < vectors; ++j) {
    auto vector = outputVector(b, loc, op, p, j);
    Value bias = biasOf(b, loc, op, vector);
    Value wScale =
        loadLanes(b, loc, op.scale, ValueRange{vector.first}, vector.second);
    for (size_t i = 0; i < rows.size(); ++i) {
      Value exact = loop.getResult(i * vectors + j);
      if (!exactSums) {
        Value codeSum =
            memref::LoadOp::create(b, loc, x.sums, ValueRange{rows[i]});
        Value offset = arith::MulIOp::create(
            b, loc, codeSum,
            arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(128)));
        exact = arith::SubIOp::create(
            b, loc, exact,
            vector::BroadcastOp::create(b, loc, sumType, offset));
      }
      Value xScale =
          memref::LoadOp::create(b, loc, x.scales, ValueRange{rows[i]});
      Value scale = arith::MulFOp::create(
          b, loc, vector::BroadcastOp::create(b, loc, lanes, xScale), wScale);
      Value y = arith::MulFOp::create(
          b, loc, arith::SIToFPOp::create(b, loc, lanes, exact), scale);
      if (bias)
        y = arith::AddFOp::create(b, loc, y, bias);
      storeOutput(b, loc, op, rows[i], vector, y);
    }
  }
}

/// The int32 sums of 16 rows x one input quad of a panel (`w`: 64 bytes,
/// unsigned) with the broadcast quad `a` (signed codes), added to `sum`:
/// vpdpbusd, usdot or sdot (exact for codes below 128: int4 nibbles),
/// AVX2's vpmaddubsw + vpmaddwd (exact for int4 nibbles only), or without
/// them byte by byte (`codes`: the quad's four codes, i32).
Value addQuadProducts(OpBuilder &b, Location loc, const PanelLinear &op,
                      Value sum, Value w, Value a, ArrayRef<Value> codes) {
  using ArmDot = PanelLinear::ArmDot;
  auto sumType = cast<VectorType>(sum.getType());
  if (op.avx2Madd) {
    // Each 32-byte half: vpmaddubsw (unsigned x signed bytes, pairs summed
    // into i16, exact below 32768: 2 x 15 x 127 for nibbles), then vpmaddwd
    // with ones (pairs of i16 into i32): the four products of each lane
    // summed, as vpdpbusd.
    auto words = VectorType::get({16}, b.getI16Type());
    auto dwords = VectorType::get({8}, b.getI32Type());
    Value ones = splat(b, loc, words, 1);
    SmallVector<Value, 2> parts;
    for (int64_t h = 0; h < 2; ++h) {
      auto slice = [&](Value v) -> Value {
        return vector::ExtractStridedSliceOp::create(
            b, loc, v, ArrayRef<int64_t>{32 * h}, ArrayRef<int64_t>{32},
            ArrayRef<int64_t>{1});
      };
      Value pairs =
          LLVM::CallIntrinsicOp::create(
              b, loc, words, b.getStringAttr("llvm.x86.avx2.pmadd.ub.sw"),
              ValueRange{slice(w), slice(a)})
              ->getResult(0);
      parts.push_back(LLVM::CallIntrinsicOp::create(
                          b, loc, dwords,
                          b.getStringAttr("llvm.x86.avx2.pmadd.wd"),
                          ValueRange{pairs, ones})
                          ->getResult(0));
    }
    SmallVector<int64_t> order;
    for (int64_t i = 0; i < 16; ++i)
      order.push_back(i);
    Value both = vector::ShuffleOp::create(b, loc, parts[0], parts[1], order);
    return arith::AddIOp::create(b, loc, sum, both);
  }
  if (op.dotProducts)
    return LLVM::CallIntrinsicOp::create(
               b, loc, sumType, b.getStringAttr("llvm.x86.avx512.vpdpbusd.512"),
               ValueRange{sum, w, a})
        ->getResult(0);
  if (op.armDot == ArmDot::Usdot)
    return armProduct(b, loc, ArmProduct::Usdot, op.sveBits, sum, w, a);
  if (op.armDot == ArmDot::Sdot)
    return armProduct(b, loc, ArmProduct::Sdot, op.sveBits, sum, w, a);
  Value lanesOfW = vector::BitCastOp::create(b, loc, sumType, w);
  for (int64_t q = 0; q < 4; ++q) {
    Value shifted =
        arith::ShRUIOp::create(b, loc, lanesOfW, splat(b, loc, sumType, 8 * q));
    Value byte =
        arith::AndIOp::create(b, loc, shifted, splat(b, loc, sumType, 0xFF));
    Value broadcast = vector::BroadcastOp::create(b, loc, sumType, codes[q]);
    sum = arith::AddIOp::create(b, loc, sum,
                                arith::MulIOp::create(b, loc, byte, broadcast));
  }
  return sum;
}

/// Int4 tile: rows `rows` against panel `p`. For each group of inputs, R x
/// 4 int32 sums of (code + 8) x activation code over its octets (two quad
/// products an octet: the low nibbles, then the high ones), less 8 x the
/// group's activation code sum, times the group's f16 weight scales, added
/// to f32 sums; y = sums * scale(x) + bias.
void emitInt4Tile(OpBuilder &b, Location loc, const PanelLinear &op,
                  const Int8Activations &x, Value p, ArrayRef<Value> rows) {
  int64_t vectors = op.panel / kLanes;
  int64_t octets = llvm::divideCeilSigned<int64_t>(op.in, 8);
  int64_t groupOctets = op.groupSize / 8;
  int64_t groups = llvm::divideCeilSigned(op.in, op.groupSize);
  bool wholeGroups = op.in % op.groupSize == 0;
  auto sumType = VectorType::get({kLanes}, b.getI32Type());
  auto lanes = VectorType::get({kLanes}, b.getF32Type());
  auto bytes = VectorType::get({4 * kLanes}, b.getI8Type());
  auto quadType = VectorType::get({4}, b.getI8Type());
  auto oneWord = VectorType::get({1}, b.getI32Type());
  auto halves = VectorType::get({kLanes}, b.getF16Type());
  bool dots =
      op.dotProducts || op.armDot != PanelLinear::ArmDot::None || op.avx2Madd;
  Value intZero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(sumType, b.getI32IntegerAttr(0)));
  Value floatZero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(lanes, b.getF32FloatAttr(0)));
  Value lowNibbles = splat(b, loc, bytes, 0x0F);
  Value four = splat(b, loc, bytes, 4);
  // One octet: the integer sums of every row and vector.
  auto addOctet = [&](OpBuilder &b, Location loc, Value o,
                      SmallVector<Value> &sums) {
    SmallVector<Value> low, high;
    for (int64_t j = 0; j < vectors; ++j) {
      Value raw = vector::LoadOp::create(
          b, loc, bytes, op.w, ValueRange{p, o, index(b, loc, j * 4 * kLanes)});
      low.push_back(arith::AndIOp::create(b, loc, raw, lowNibbles));
      high.push_back(arith::ShRUIOp::create(b, loc, raw, four));
    }
    Value column = arith::MulIOp::create(b, loc, o, index(b, loc, 8));
    for (size_t i = 0; i < rows.size(); ++i)
      for (int64_t half = 0; half < 2; ++half) {
        Value start =
            arith::AddIOp::create(b, loc, column, index(b, loc, 4 * half));
        Value a;
        SmallVector<Value> codes;
        if (dots) {
          // The row's quad, one 32-bit word, in every lane.
          Value quad = vector::LoadOp::create(b, loc, quadType, x.codes,
                                              ValueRange{rows[i], start});
          Value word = vector::ExtractOp::create(
              b, loc, vector::BitCastOp::create(b, loc, oneWord, quad),
              ArrayRef<int64_t>{0});
          a = vector::BitCastOp::create(
              b, loc, bytes,
              vector::BroadcastOp::create(b, loc, sumType, word));
        } else {
          for (int64_t q = 0; q < 4; ++q) {
            Value position =
                arith::AddIOp::create(b, loc, start, index(b, loc, q));
            Value code = memref::LoadOp::create(b, loc, x.codes,
                                                ValueRange{rows[i], position});
            codes.push_back(
                arith::ExtSIOp::create(b, loc, b.getI32Type(), code));
          }
        }
        for (int64_t j = 0; j < vectors; ++j) {
          Value &sum = sums[i * vectors + j];
          sum = addQuadProducts(b, loc, op, sum, half ? high[j] : low[j], a,
                                codes);
        }
      }
  };
  SmallVector<Value> init(rows.size() * vectors, floatZero);
  Value firstGroup = index(b, loc, 0);
  Value groupEnd = index(b, loc, groups);
  Value oneGroup = index(b, loc, 1);
  auto groupLoop = scf::ForOp::create(
      b, loc, firstGroup, groupEnd, oneGroup, init,
      [&](OpBuilder &b, Location loc, Value g, ValueRange acc) {
        SmallVector<Value> sums(rows.size() * vectors, intZero);
        Value first =
            arith::MulIOp::create(b, loc, g, index(b, loc, groupOctets));
        if (wholeGroups && groupOctets <= 8) {
          // Unrolled: the group's octets at static offsets.
          for (int64_t k = 0; k < groupOctets; ++k)
            addOctet(b, loc,
                     arith::AddIOp::create(b, loc, first, index(b, loc, k)),
                     sums);
        } else {
          Value past =
              arith::AddIOp::create(b, loc, first, index(b, loc, groupOctets));
          Value lastOctet = index(b, loc, octets);
          Value end = arith::MinUIOp::create(b, loc, past, lastOctet);
          auto loop = scf::ForOp::create(
              b, loc, first, end, index(b, loc, 1), sums,
              [&](OpBuilder &b, Location loc, Value o, ValueRange current) {
                SmallVector<Value> next(current.begin(), current.end());
                addOctet(b, loc, o, next);
                scf::YieldOp::create(b, loc, next);
              });
          sums.assign(loop.getResults().begin(), loop.getResults().end());
        }
        SmallVector<Value> next(acc.begin(), acc.end());
        for (int64_t j = 0; j < vectors; ++j) {
          Value halfScales = vector::LoadOp::create(
              b, loc, halves, op.scale,
              ValueRange{p, g, index(b, loc, j * kLanes)});
          Value scale = arith::ExtFOp::create(b, loc, lanes, halfScales);
          for (size_t i = 0; i < rows.size(); ++i) {
            Value groupSum = memref::LoadOp::create(b, loc, x.groupSums,
                                                    ValueRange{rows[i], g});
            Value offset = arith::MulIOp::create(
                b, loc, groupSum,
                arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(8)));
            Value exact = arith::SubIOp::create(
                b, loc, sums[i * vectors + j],
                vector::BroadcastOp::create(b, loc, sumType, offset));
            Value value = arith::SIToFPOp::create(b, loc, lanes, exact);
            Value &sum = next[i * vectors + j];
            sum = math::FmaOp::create(b, loc, value, scale, sum);
          }
        }
        scf::YieldOp::create(b, loc, next);
      });
  for (int64_t j = 0; j < vectors; ++j) {
    auto vector = outputVector(b, loc, op, p, j);
    Value bias = biasOf(b, loc, op, vector);
    for (size_t i = 0; i < rows.size(); ++i) {
      Value xScale =
          memref::LoadOp::create(b, loc, x.scales, ValueRange{rows[i]});
      Value y = arith::MulFOp::create(
          b, loc, groupLoop.getResult(i * vectors + j),
          vector::BroadcastOp::create(b, loc, lanes, xScale));
      if (bias)
        y = arith::AddFOp::create(b, loc, y, bias);
      storeOutput(b, loc, op, rows[i], vector, y);
    }
  }
}

/// The lanes `order` picks from `first` and `second` (numbered on).
Value shuffle(OpBuilder &b, Location loc, Value first, Value second,
              ArrayRef<int64_t> order) {
  return vector::ShuffleOp::create(b, loc, first, second, order);
}

// The matrix products (usmmla, bfmmla) on a slab of 16 rows: row pair m's
// 2 x 2 block of sums is one 128-bit segment; an SVE register holds
// `segments` row pairs in a row, a NEON one 1.

/// The operand of row pairs [first, first + count): for each, the words of
/// rows 2m and 2m + 1 from `low` and `high` (16 words, one a row) zipped,
/// [low 2m, high 2m, low 2m + 1, high 2m + 1].
Value zipRowPairs(OpBuilder &b, Location loc, Value low, Value high,
                  int64_t first, int64_t count) {
  SmallVector<int64_t> order;
  for (int64_t m = first; m < first + count; ++m)
    order.append({2 * m, kLanes + 2 * m, 2 * m + 1, kLanes + 2 * m + 1});
  return shuffle(b, loc, low, high, order);
}

/// `segment` (one 128-bit operand) in each of `count` segments.
Value repeatSegment(OpBuilder &b, Location loc, Value segment, int64_t count) {
  if (count == 1)
    return segment;
  int64_t width = cast<VectorType>(segment.getType()).getNumElements();
  SmallVector<int64_t> order;
  for (int64_t c = 0; c < count; ++c)
    for (int64_t i = 0; i < width; ++i)
      order.push_back(i);
  return shuffle(b, loc, segment, segment, order);
}

/// Token `t` (0 or 1) of a pair: its 16 sums, one a row of the slab, out of
/// the pair's `registers` of 2 x 2 blocks [r0 t0, r0 t1, r1 t0, r1 t1]
/// (lanes t and 2 + t of every row pair, in row order).
Value tokenSums(OpBuilder &b, Location loc, ValueRange registers, int64_t t,
                int64_t segments) {
  // Row pair m's block of 4 sums.
  auto rowPair = [&](int64_t m) -> Value {
    Value sums = registers[m / segments];
    if (segments == 1)
      return sums;
    return vector::ExtractStridedSliceOp::create(
        b, loc, sums, ArrayRef<int64_t>{4 * (m % segments)},
        ArrayRef<int64_t>{4}, ArrayRef<int64_t>{1});
  };
  SmallVector<Value> quads;
  for (int64_t m = 0; m < kLanes / 2; m += 2) {
    Value even = rowPair(m);
    Value odd = rowPair(m + 1);
    quads.push_back(shuffle(b, loc, even, odd, {t, 2 + t, 4 + t, 6 + t}));
  }
  SmallVector<int64_t> eightLanes, allLanes;
  for (int64_t i = 0; i < 8; ++i)
    eightLanes.push_back(i);
  for (int64_t i = 0; i < 16; ++i)
    allLanes.push_back(i);
  Value low = shuffle(b, loc, quads[0], quads[1], eightLanes);
  Value high = shuffle(b, loc, quads[2], quads[3], eightLanes);
  return shuffle(b, loc, low, high, allLanes);
}

/// Int4 (and int8) with AArch64's i8mm, pairs of tokens (`rows`: 2 or 4)
/// against 16 rows (slab `j`) of panel `p`: `usmmla` multiplies a 2 x 8 block
/// of weight codes (two rows, one octet: the low nibbles' quad and the high
/// nibbles' quad of each row, interleaved by a zip that every pair shares) by a
/// pair's 8 codes each, into the 2 x 2 int32 sums [r0 t0, r0 t1, r1 t0,
/// r1 t1]; 8 such sums a pair cover the slab (one SVE register holds
/// several). After each group they lose 8 x each token's group code sum and
/// are scaled into f32 sums; at the end the sums are unzipped into each
/// token's 16 outputs.
void emitIntegerMatmulSlab(OpBuilder &b, Location loc, const PanelLinear &op,
                           const Int8Activations &x, Value p, int64_t j,
                           ArrayRef<Value> rows) {
  assert((rows.size() == 2 || rows.size() == 4) &&
         "usmmla multiplies pairs of tokens");
  int64_t tokenPairs = int64_t(rows.size()) / 2;
  // Int8: the quads 2o and 2o + 1 of a row form its octet o (whole octets:
  // in % 8 == 0), and the whole row is one group with one f32 scale.
  bool int8 = op.format == WeightFormat::I8;
  int64_t octets = llvm::divideCeilSigned<int64_t>(op.in, 8);
  int64_t groupOctets = int8 ? octets : op.groupSize / 8;
  int64_t groups = int8 ? 1 : llvm::divideCeilSigned(op.in, op.groupSize);
  constexpr int64_t kPairs = kLanes / 2; // row pairs of the slab
  int64_t segments = op.sveBits ? op.sveBits / 128 : 1;
  int64_t registers = kPairs / segments; // of sums, a token pair
  auto bytes = VectorType::get({4 * kLanes}, b.getI8Type());
  auto operand = VectorType::get({16 * segments}, b.getI8Type());
  auto eight = VectorType::get({8}, b.getI8Type());
  auto pairSums = VectorType::get({4}, b.getI32Type());
  auto registerSums = VectorType::get({4 * segments}, b.getI32Type());
  auto registerValues = VectorType::get({4 * segments}, b.getF32Type());
  auto lanes = VectorType::get({kLanes}, b.getF32Type());
  auto halves = VectorType::get({kLanes}, b.getF16Type());
  auto words = VectorType::get({kLanes}, b.getI32Type());
  Value intZero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(registerSums, b.getI32IntegerAttr(0)));
  Value floatZero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(registerValues, b.getF32FloatAttr(0)));
  Value lowNibbles, four;
  if (!int8) {
    lowNibbles = splat(b, loc, bytes, 0x0F);
    four = splat(b, loc, bytes, 4);
  }
  auto addOctet = [&](OpBuilder &b, Location loc, Value o,
                      SmallVector<Value> &sums) {
    Value slab = index(b, loc, j * 4 * kLanes);
    Value low, high;
    if (int8) {
      Value evenQuad = arith::MulIOp::create(b, loc, o, index(b, loc, 2));
      Value oddQuad = arith::AddIOp::create(b, loc, evenQuad, index(b, loc, 1));
      low = vector::LoadOp::create(b, loc, bytes, op.w,
                                   ValueRange{p, evenQuad, slab});
      high = vector::LoadOp::create(b, loc, bytes, op.w,
                                    ValueRange{p, oddQuad, slab});
    } else {
      Value raw =
          vector::LoadOp::create(b, loc, bytes, op.w, ValueRange{p, o, slab});
      low = arith::AndIOp::create(b, loc, raw, lowNibbles);
      high = arith::ShRUIOp::create(b, loc, raw, four);
    }
    // Each pair's 8 codes of the octet, one token after the other.
    Value column = arith::MulIOp::create(b, loc, o, index(b, loc, 8));
    SmallVector<int64_t> concat;
    for (int64_t i = 0; i < 16; ++i)
      concat.push_back(i);
    SmallVector<Value> tokens;
    for (int64_t pair = 0; pair < tokenPairs; ++pair) {
      Value first = vector::LoadOp::create(b, loc, eight, x.codes,
                                           ValueRange{rows[2 * pair], column});
      Value second = vector::LoadOp::create(
          b, loc, eight, x.codes, ValueRange{rows[2 * pair + 1], column});
      tokens.push_back(repeatSegment(
          b, loc, shuffle(b, loc, first, second, concat), segments));
    }
    // Each row's low quad and high quad, one word each.
    Value lowWords = vector::BitCastOp::create(b, loc, words, low);
    Value highWords = vector::BitCastOp::create(b, loc, words, high);
    for (int64_t r = 0; r < registers; ++r) {
      Value weights = vector::BitCastOp::create(
          b, loc, operand,
          zipRowPairs(b, loc, lowWords, highWords, r * segments, segments));
      for (int64_t pair = 0; pair < tokenPairs; ++pair) {
        Value &sum = sums[pair * registers + r];
        sum = armProduct(b, loc, ArmProduct::Usmmla, op.sveBits, sum, weights,
                         tokens[pair]);
      }
    }
  };
  auto vector = outputVector(b, loc, op, p, j);
  SmallVector<Value> init(tokenPairs * registers, floatZero);
  Value firstGroup = index(b, loc, 0);
  Value groupEnd = index(b, loc, groups);
  Value oneGroup = index(b, loc, 1);
  auto groupLoop = scf::ForOp::create(
      b, loc, firstGroup, groupEnd, oneGroup, init,
      [&](OpBuilder &b, Location loc, Value g, ValueRange acc) {
        SmallVector<Value> sums(tokenPairs * registers, intZero);
        Value first =
            arith::MulIOp::create(b, loc, g, index(b, loc, groupOctets));
        Value past =
            arith::AddIOp::create(b, loc, first, index(b, loc, groupOctets));
        Value lastOctet = index(b, loc, octets);
        Value end = arith::MinUIOp::create(b, loc, past, lastOctet);
        Value step = index(b, loc, 1);
        auto loop = scf::ForOp::create(
            b, loc, first, end, step, sums,
            [&](OpBuilder &b, Location loc, Value o, ValueRange current) {
              SmallVector<Value> next(current.begin(), current.end());
              addOctet(b, loc, o, next);
              scf::YieldOp::create(b, loc, next);
            });
        // What the stored offsets added (int4: 8 x each token's group
        // code sum; int8: 128 x its code sum), as [t0, t1, t0, t1] a pair.
        SmallVector<Value> offsets;
        for (int64_t pair = 0; pair < tokenPairs; ++pair) {
          Value eightSums[2];
          for (int t = 0; t < 2; ++t) {
            Value row = rows[2 * pair + t];
            Value groupSum =
                int8 ? Value(memref::LoadOp::create(b, loc, x.sums,
                                                    ValueRange{row}))
                     : Value(memref::LoadOp::create(b, loc, x.groupSums,
                                                    ValueRange{row, g}));
            Value eightI32 = arith::ConstantOp::create(
                b, loc, b.getI32IntegerAttr(int8 ? 128 : 8));
            eightSums[t] = arith::MulIOp::create(b, loc, groupSum, eightI32);
          }
          offsets.push_back(
              repeatSegment(b, loc,
                            vector::FromElementsOp::create(
                                b, loc, pairSums,
                                ValueRange{eightSums[0], eightSums[1],
                                           eightSums[0], eightSums[1]}),
                            segments));
        }
        Value scales;
        if (int8) {
          scales = loadLanes(b, loc, op.scale, ValueRange{vector.first},
                             vector.second);
        } else {
          Value slab = index(b, loc, j * kLanes);
          Value halfScales = vector::LoadOp::create(b, loc, halves, op.scale,
                                                    ValueRange{p, g, slab});
          scales = arith::ExtFOp::create(b, loc, lanes, halfScales);
        }
        SmallVector<Value> next(acc.begin(), acc.end());
        for (int64_t r = 0; r < registers; ++r) {
          // Rows 2m and 2m + 1: [s(2m), s(2m), s(2m + 1), s(2m + 1)].
          SmallVector<int64_t> order;
          for (int64_t m = r * segments; m < (r + 1) * segments; ++m)
            order.append({2 * m, 2 * m, 2 * m + 1, 2 * m + 1});
          Value rowScales = shuffle(b, loc, scales, scales, order);
          for (int64_t pair = 0; pair < tokenPairs; ++pair) {
            int64_t k = pair * registers + r;
            Value exact =
                arith::SubIOp::create(b, loc, loop.getResult(k), offsets[pair]);
            Value value =
                arith::SIToFPOp::create(b, loc, registerValues, exact);
            next[k] = math::FmaOp::create(b, loc, value, rowScales, next[k]);
          }
        }
        scf::YieldOp::create(b, loc, next);
      });
  Value bias = biasOf(b, loc, op, vector);
  for (int64_t i = 0; i < int64_t(rows.size()); ++i) {
    int64_t pair = i / 2;
    Value sums = tokenSums(
        b, loc, groupLoop.getResults().slice(pair * registers, registers),
        i % 2, segments);
    Value xScale =
        memref::LoadOp::create(b, loc, x.scales, ValueRange{rows[i]});
    Value y = arith::MulFOp::create(
        b, loc, sums, vector::BroadcastOp::create(b, loc, lanes, xScale));
    if (bias)
      y = arith::AddFOp::create(b, loc, y, bias);
    storeOutput(b, loc, op, rows[i], vector, y);
  }
}

/// The whole W8A8 or W4A8 product: quantize the inputs, then tiles of rows
/// against each panel (with AArch64's i8mm, tiles of 4 tokens, 2 pairs
/// sharing the zips, then 2, then 1 through the quad products).
void emitIntegerPanelLinear(OpBuilder &b, Location loc, const PanelLinear &op,
                            Value tokens) {
  Int8Activations x = quantizeInt8Activations(b, loc, op, tokens);
  bool int4 = op.format == WeightFormat::I4;
  int64_t panels = llvm::divideCeilSigned(op.out, op.panel);
  Value firstPanel = index(b, loc, 0);
  Value panelEnd = index(b, loc, panels);
  parallelFor(
      b, loc, firstPanel, panelEnd, [&](OpBuilder &b, Location loc, Value p) {
        forEachRowTile(b, loc, tokens, op.armMatmul ? 4 : op.tileRows,
                       [&](OpBuilder &b, Location loc, ArrayRef<Value> rows) {
                         if (!op.armMatmul || rows.size() == 1) {
                           if (int4)
                             emitInt4Tile(b, loc, op, x, p, rows);
                           else
                             emitInt8Tile(b, loc, op, x, p, rows);
                           return;
                         }
                         for (int64_t j = 0; j < op.panel / kLanes; ++j)
                           emitIntegerMatmulSlab(b, loc, op, x, p, j, rows);
                       });
      });
  for (Value buffer : {x.codes, x.scales, x.sums, x.groupSums})
    if (buffer)
      memref::DeallocOp::create(b, loc, buffer);
}

/// bf16 weights with AArch64's bf16 extension, pairs of tokens (`rows`: 2
/// or 4) against 16 rows (slab `j`) of panel `p`: `bfmmla` multiplies a
/// 2 x 4 block of weights (two rows, input pairs 2m and 2m + 1 zipped, as
/// emitIntegerMatmulSlab zips quads) by a token pair's 4 bf16 inputs each into
/// 2 x 2 f32 sums [r0 t0, r0 t1, r1 t0, r1 t1]; at the end the sums are
/// unzipped into each token's 16 outputs. Needs in % 4 == 0.
void emitBF16MatmulSlab(OpBuilder &b, Location loc, const PanelLinear &op,
                        const Activations &x, Value p, int64_t j,
                        ArrayRef<Value> rows) {
  assert((rows.size() == 2 || rows.size() == 4) && op.in % 4 == 0 &&
         "bfmmla multiplies pairs of tokens by whole quads of inputs");
  int64_t tokenPairs = int64_t(rows.size()) / 2;
  int64_t quads = op.in / 4;
  constexpr int64_t kPairs = kLanes / 2; // row pairs of the slab
  int64_t segments = op.sveBits ? op.sveBits / 128 : 1;
  int64_t registers = kPairs / segments; // of sums, a token pair
  auto pairWords = VectorType::get({kLanes}, b.getI32Type());
  auto twoWords = VectorType::get({2}, b.getI32Type());
  auto operand = VectorType::get({8 * segments}, b.getBF16Type());
  auto registerSums = VectorType::get({4 * segments}, b.getF32Type());
  Value zero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(registerSums, b.getF32FloatAttr(0)));
  SmallVector<Value> init(tokenPairs * registers, zero);
  Value firstQuad = index(b, loc, 0);
  Value quadEnd = index(b, loc, quads);
  Value one = index(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, firstQuad, quadEnd, one, init,
      [&](OpBuilder &b, Location loc, Value m, ValueRange acc) {
        SmallVector<Value> next(acc.begin(), acc.end());
        // The slab's words (one bf16 pair a row) of input pairs 2m, 2m + 1.
        Value evenPair = arith::MulIOp::create(b, loc, m, index(b, loc, 2));
        Value oddPair =
            arith::AddIOp::create(b, loc, evenPair, index(b, loc, 1));
        Value slab = index(b, loc, j * 2 * kLanes);
        auto wordsOf = [&](Value pair) -> Value {
          Value bf16s = vector::LoadOp::create(
              b, loc, VectorType::get({2 * kLanes}, b.getBF16Type()), op.w,
              ValueRange{p, pair, slab});
          return vector::BitCastOp::create(b, loc, pairWords, bf16s);
        };
        Value low = wordsOf(evenPair);
        Value high = wordsOf(oddPair);
        // Each pair's 4 inputs: two words a token.
        SmallVector<Value> tokens;
        for (int64_t pair = 0; pair < tokenPairs; ++pair) {
          Value first = vector::LoadOp::create(
              b, loc, twoWords, x.memref, ValueRange{rows[2 * pair], evenPair});
          Value second =
              vector::LoadOp::create(b, loc, twoWords, x.memref,
                                     ValueRange{rows[2 * pair + 1], evenPair});
          Value both = repeatSegment(
              b, loc, shuffle(b, loc, first, second, {0, 1, 2, 3}), segments);
          tokens.push_back(vector::BitCastOp::create(b, loc, operand, both));
        }
        for (int64_t r = 0; r < registers; ++r) {
          Value weights = vector::BitCastOp::create(
              b, loc, operand,
              zipRowPairs(b, loc, low, high, r * segments, segments));
          for (int64_t pair = 0; pair < tokenPairs; ++pair) {
            Value &sum = next[pair * registers + r];
            sum = armProduct(b, loc, ArmProduct::BFMmla, op.sveBits, sum,
                             weights, tokens[pair]);
          }
        }
        scf::YieldOp::create(b, loc, next);
      });
  auto vector = outputVector(b, loc, op, p, j);
  Value bias = biasOf(b, loc, op, vector);
  for (int64_t i = 0; i < int64_t(rows.size()); ++i) {
    int64_t pair = i / 2;
    Value y =
        tokenSums(b, loc, loop.getResults().slice(pair * registers, registers),
                  i % 2, segments);
    if (bias)
      y = arith::AddFOp::create(b, loc, y, bias);
    storeOutput(b, loc, op, rows[i], vector, y);
  }
}

} // namespace

void xfmr::kernels::emitPanelLinear(OpBuilder &b, Location loc,
                                    const PanelLinear &op) {
  if (op.format == WeightFormat::I4) {
    assert(op.panel % kLanes == 0 && !op.bf16Activations &&
           op.groupSize % 8 == 0 &&
           "int4 panels hold whole vectors of sums and groups of octets");
    emitIntegerPanelLinear(b, loc, op, memref::DimOp::create(b, loc, op.x, 0));
    return;
  }
  if (op.format == WeightFormat::I8) {
    assert(op.panel % kLanes == 0 && !op.bf16Activations &&
           "int8 panels hold whole vectors of int32 sums");
    emitIntegerPanelLinear(b, loc, op, memref::DimOp::create(b, loc, op.x, 0));
    return;
  }
  assert(op.panel % (2 * kLanes) == 0 && "panels hold pairs of sum vectors");
  assert((!op.dotProducts || op.bf16Activations) &&
         "the dot products multiply bf16 activations");
  assert((!op.byteTables || (op.dotProducts && isFP8(op.format))) &&
         "byte tables widen FP8 codes for the dot products");
  Value tokens = memref::DimOp::create(b, loc, op.x, 0);
  Activations x = prepareActivations(b, loc, op, tokens);
  int64_t panels = llvm::divideCeilSigned(op.out, op.panel);
  int64_t pairs = llvm::divideCeilSigned<int64_t>(op.in, 2);
  auto allRows = [&](OpBuilder &b, Location loc, TileBody emitTile) {
    forEachRowTile(b, loc, tokens, op.tileRows, emitTile);
  };
  Value firstPanel = index(b, loc, 0);
  Value panelEnd = index(b, loc, panels);
  parallelFor(
      b, loc, firstPanel, panelEnd, [&](OpBuilder &b, Location loc, Value p) {
        if (!op.dotProducts) {
          allRows(b, loc,
                  [&](OpBuilder &b, Location loc, ArrayRef<Value> rows) {
                    emitFmaTile(b, loc, op, x, p, rows);
                  });
          return;
        }
        if (!isFP8(op.format)) {
          DotWeights panel;
          panel.load = [&](OpBuilder &b, Location loc, Value k) {
            return bf16Pairs(b, loc, op, op.w, p, k);
          };
          if (op.armMatmul) {
            // bfmmla: tiles of 4 tokens (2 pairs), then 2, then 1 (bfdot).
            forEachRowTile(
                b, loc, tokens, 4,
                [&](OpBuilder &b, Location loc, ArrayRef<Value> rows) {
                  if (rows.size() == 1) {
                    emitDotTile(b, loc, op, x, p, rows, panel);
                    return;
                  }
                  for (int64_t j = 0; j < op.panel / kLanes; ++j)
                    emitBF16MatmulSlab(b, loc, op, x, p, j, rows);
                });
            return;
          }
          allRows(b, loc,
                  [&](OpBuilder &b, Location loc, ArrayRef<Value> rows) {
                    emitDotTile(b, loc, op, x, p, rows, panel);
                  });
          return;
        }
        std::optional<ByteTables> tables;
        if (op.byteTables)
          tables = fp8ByteTables(b, loc, op.format);
        const ByteTables *byTable = tables ? &*tables : nullptr;
        // FP8: one token (decode) widens the codes as it goes; more convert
        // the panel once, into exact bf16 codes in row order, and run their
        // tiles on that.
        Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                           tokens, index(b, loc, 2));
        scf::IfOp::create(
            b, loc, many,
            [&](OpBuilder &b, Location loc) {
              auto panelType =
                  MemRefType::get({1, pairs, 2 * op.panel}, b.getBF16Type());
              Value converted = memref::AllocOp::create(b, loc, panelType);
              Value zero = index(b, loc, 0);
              serialFor(
                  b, loc, zero, index(b, loc, pairs),
                  [&](OpBuilder &b, Location loc, Value k) {
                    SmallVector<Value> w = fp8Pairs(b, loc, op, p, k, byTable);
                    if (byTable)
                      for (size_t h = 0; h + 1 < w.size(); h += 2) {
                        auto asLanes = [&](Value v, Type type) -> Value {
                          return vector::BitCastOp::create(b, loc, type, v);
                        };
                        auto lanes = VectorType::get({kLanes}, b.getI32Type());
                        Value first = asLanes(w[h], lanes);
                        Value second = asLanes(w[h + 1], lanes);
                        auto [low, high] = inRowOrder(b, loc, first, second);
                        w[h] = asLanes(low, w[h].getType());
                        w[h + 1] = asLanes(high, w[h].getType());
                      }
                    for (size_t j = 0; j < w.size(); ++j)
                      vector::StoreOp::create(
                          b, loc, w[j], converted,
                          ValueRange{zero, k, index(b, loc, j * 2 * kLanes)});
                  });
              DotWeights panel;
              panel.blockScaled = true;
              panel.load = [&](OpBuilder &b, Location loc, Value k) {
                return bf16Pairs(b, loc, op, converted, zero, k);
              };
              allRows(b, loc,
                      [&](OpBuilder &b, Location loc, ArrayRef<Value> rows) {
                        emitDotTile(b, loc, op, x, p, rows, panel);
                      });
              memref::DeallocOp::create(b, loc, converted);
              scf::YieldOp::create(b, loc);
            },
            [&](OpBuilder &b, Location loc) {
              DotWeights codes;
              codes.blockScaled = true;
              codes.tableOrder = byTable != nullptr;
              codes.load = [&](OpBuilder &b, Location loc, Value k) {
                return fp8Pairs(b, loc, op, p, k, byTable);
              };
              allRows(b, loc,
                      [&](OpBuilder &b, Location loc, ArrayRef<Value> rows) {
                        emitDotTile(b, loc, op, x, p, rows, codes);
                      });
              scf::YieldOp::create(b, loc);
            });
      });
  if (x.scratch)
    memref::DeallocOp::create(b, loc, x.scratch);
}
