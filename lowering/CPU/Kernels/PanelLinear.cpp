//===- PanelLinear.cpp - y = x W^T over weights stored in panels ----------===//

#include "lowering/CPU/Kernels/PanelLinear.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
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

/// An integer constant of `type`: a scalar, or a vector of it.
Value splat(OpBuilder &b, Location loc, Type type, int64_t value) {
  auto vector = dyn_cast<VectorType>(type);
  TypedAttr element =
      b.getIntegerAttr(vector ? vector.getElementType() : type, value);
  if (vector)
    return arith::ConstantOp::create(b, loc,
                                     DenseElementsAttr::get(vector, element));
  return arith::ConstantOp::create(b, loc, element);
}

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

/// FP8: the scale of input pair `k` in block row `scaleRow`, broadcast to
/// the 32 codes of a pair vector.
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

/// 32 FP8 codes of a panel as the bf16 pairs the tiles multiply:
/// bf16(code x scale), rounded to nearest even.
Value fp8PairsAsBF16(OpBuilder &b, Location loc, const PanelLinear &op,
                     ValueRange indices, Value scale) {
  Value scaled = scaledFP8(b, loc, op, indices, scale);
  auto pairType = VectorType::get({2 * kLanes}, b.getBF16Type());
  if (op.dotProducts) // vcvtne2ps2bf16
    return arith::TruncFOp::create(b, loc, pairType, scaled);
  // No bf16 conversion instruction: round on the bit patterns.
  auto bitsType = VectorType::get({2 * kLanes}, b.getI32Type());
  Value bits = vector::BitCastOp::create(b, loc, bitsType, scaled);
  Value rounded = roundToBF16Bits(b, loc, bits);
  Value high =
      arith::ShRUIOp::create(b, loc, rounded, splat(b, loc, bitsType, 16));
  auto halves = VectorType::get({2 * kLanes}, b.getI16Type());
  Value narrow = arith::TruncIOp::create(b, loc, halves, high);
  return vector::BitCastOp::create(b, loc, pairType, narrow);
}

/// Sums of the activation rows `rows` against panel `p`, added to the bias
/// and stored.
void emitTile(OpBuilder &b, Location loc, const PanelLinear &op,
              const Activations &x, Value p, Value weightPanel,
              ArrayRef<Value> rows) {
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
        SmallVector<Value> weights;
        Value blockScale =
            isFP8(op.format) ? pairScale(b, loc, op, scaleRow, k) : Value();
        // Per vector of 16 outputs: bf16 pairs, or (FP8 with f32 inputs,
        // --precise) the exact f32 weights of the even and odd input.
        SmallVector<Value> even, odd;
        for (int64_t j = 0; j < vectors; ++j) {
          Value offset = index(b, loc, j * 2 * kLanes);
          if (!isFP8(op.format)) {
            weights.push_back(vector::LoadOp::create(
                b, loc, pairType, op.w, ValueRange{weightPanel, k, offset}));
          } else if (op.bf16Activations) {
            weights.push_back(fp8PairsAsBF16(
                b, loc, op, ValueRange{weightPanel, k, offset}, blockScale));
          } else {
            Value scaled = scaledFP8(
                b, loc, op, ValueRange{weightPanel, k, offset}, blockScale);
            SmallVector<int64_t> evenLanes, oddLanes;
            for (int64_t lane = 0; lane < kLanes; ++lane) {
              evenLanes.push_back(2 * lane);
              oddLanes.push_back(2 * lane + 1);
            }
            even.push_back(
                vector::ShuffleOp::create(b, loc, scaled, scaled, evenLanes));
            odd.push_back(
                vector::ShuffleOp::create(b, loc, scaled, scaled, oddLanes));
          }
        }
        SmallVector<Value> next(acc.begin(), acc.end());
        if (op.dotProducts) {
          for (size_t i = 0; i < rows.size(); ++i) {
            Value pair = memref::LoadOp::create(b, loc, x.memref,
                                                ValueRange{rows[i], k});
            Value lanes = vector::BroadcastOp::create(b, loc, bitsType, pair);
            Value a = vector::BitCastOp::create(b, loc, pairType, lanes);
            for (int64_t j = 0; j < vectors; ++j) {
              Value &sum = next[i * vectors + j];
              sum = x86vector::DotBF16Op::create(b, loc, sumType, sum, a,
                                                 weights[j]);
            }
          }
        } else {
          // bf16 -> f32 is a shift: the even input of each pair is the low
          // half, the odd one the high half.
          for (Value w : weights) {
            Value bits = vector::BitCastOp::create(b, loc, bitsType, w);
            Value low = arith::ShLIOp::create(b, loc, bits,
                                              splat(b, loc, bitsType, 16));
            Value high = arith::AndIOp::create(
                b, loc, bits, splat(b, loc, bitsType, 0xFFFF0000));
            even.push_back(vector::BitCastOp::create(b, loc, sumType, low));
            odd.push_back(vector::BitCastOp::create(b, loc, sumType, high));
          }
          Value column = arith::MulIOp::create(b, loc, k, index(b, loc, 2));
          Value nextColumn =
              arith::AddIOp::create(b, loc, column, index(b, loc, 1));
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
        }
        scf::YieldOp::create(b, loc, next);
      });

  // Stores: masked where the last panel passes the last output.
  bool partial = op.out % op.panel != 0;
  Value panelStart = arith::MulIOp::create(b, loc, p, index(b, loc, op.panel));
  for (int64_t j = 0; j < vectors; ++j) {
    Value column =
        arith::AddIOp::create(b, loc, panelStart, index(b, loc, j * kLanes));
    Value mask;
    if (partial) {
      Value left = arith::SubIOp::create(b, loc, index(b, loc, op.out), column);
      Value clamped = arith::MaxSIOp::create(b, loc, left, index(b, loc, 0));
      auto maskType = VectorType::get({kLanes}, b.getI1Type());
      mask =
          vector::CreateMaskOp::create(b, loc, maskType, ValueRange{clamped});
    }
    Value bias;
    if (op.bias) {
      Type storage = cast<MemRefType>(op.bias.getType()).getElementType();
      auto storageType = VectorType::get({kLanes}, storage);
      Value raw;
      if (mask) {
        Value none = arith::ConstantOp::create(
            b, loc,
            DenseElementsAttr::get(storageType, b.getZeroAttr(storage)));
        raw = vector::MaskedLoadOp::create(b, loc, storageType, op.bias,
                                           ValueRange{column}, mask, none);
      } else {
        raw = vector::LoadOp::create(b, loc, storageType, op.bias,
                                     ValueRange{column});
      }
      bias = storage.isF32()
                 ? raw
                 : Value(arith::ExtFOp::create(b, loc, sumType, raw));
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      Value sum = loop.getResult(i * vectors + j);
      if (bias)
        sum = arith::AddFOp::create(b, loc, sum, bias);
      if (mask)
        vector::MaskedStoreOp::create(b, loc, op.y, ValueRange{rows[i], column},
                                      mask, sum);
      else
        vector::StoreOp::create(b, loc, sum, op.y, ValueRange{rows[i], column});
    }
  }
}

} // namespace

void xfmr::kernels::emitPanelLinear(OpBuilder &b, Location loc,
                                    const PanelLinear &op) {
  assert(op.panel % kLanes == 0 && "panels hold whole vectors of sums");
  assert((!op.dotProducts || op.bf16Activations) &&
         "the dot products multiply bf16 activations");
  Value tokens = memref::DimOp::create(b, loc, op.x, 0);
  Activations x = prepareActivations(b, loc, op, tokens);
  int64_t panels = llvm::divideCeilSigned(op.out, op.panel);
  int64_t tile = op.tileRows;
  Value firstPanel = index(b, loc, 0);
  Value panelEnd = index(b, loc, panels);
  // Whole tiles of `tile` rows share each weight load; the rest of the rows
  // (all of decode) go one by one, each a single stream of the panel.
  auto allRows = [&](OpBuilder &b, Location loc, const PanelLinear &tiles,
                     Value p, Value weightPanel) {
    Value fullTiles =
        arith::DivUIOp::create(b, loc, tokens, index(b, loc, tile));
    serialFor(b, loc, index(b, loc, 0), fullTiles,
              [&](OpBuilder &b, Location loc, Value tb) {
                Value first =
                    arith::MulIOp::create(b, loc, tb, index(b, loc, tile));
                SmallVector<Value> rows;
                for (int64_t i = 0; i < tile; ++i)
                  rows.push_back(
                      arith::AddIOp::create(b, loc, first, index(b, loc, i)));
                emitTile(b, loc, tiles, x, p, weightPanel, rows);
              });
    Value rest = arith::MulIOp::create(b, loc, fullTiles, index(b, loc, tile));
    serialFor(b, loc, rest, tokens, [&](OpBuilder &b, Location loc, Value r) {
      emitTile(b, loc, tiles, x, p, weightPanel, {r});
    });
  };
  parallelFor(
      b, loc, firstPanel, panelEnd, [&](OpBuilder &b, Location loc, Value p) {
        if (!isFP8(op.format) || !op.bf16Activations) {
          allRows(b, loc, op, p, p);
          return;
        }
        // FP8 with bf16 activations: from two tiles of rows on, the panel's
        // weights are converted once, into a bf16 panel the tiles then read,
        // instead of once per tile.
        Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                           tokens, index(b, loc, 2 * tile));
        scf::IfOp::create(
            b, loc, many,
            [&](OpBuilder &b, Location loc) {
              int64_t pairs = llvm::divideCeilSigned<int64_t>(op.in, 2);
              auto panelType =
                  MemRefType::get({1, pairs, 2 * op.panel}, b.getBF16Type());
              Value converted = memref::AllocOp::create(b, loc, panelType);
              Value scaleRow = scaleRowOf(b, loc, op, p);
              Value zero = index(b, loc, 0);
              serialFor(b, loc, zero, index(b, loc, pairs),
                        [&](OpBuilder &b, Location loc, Value k) {
                          Value scales = pairScale(b, loc, op, scaleRow, k);
                          for (int64_t j = 0; j < op.panel / kLanes; ++j) {
                            Value offset = index(b, loc, j * 2 * kLanes);
                            Value pairsBF16 = fp8PairsAsBF16(
                                b, loc, op, ValueRange{p, k, offset}, scales);
                            vector::StoreOp::create(
                                b, loc, pairsBF16, converted,
                                ValueRange{zero, k, offset});
                          }
                        });
              PanelLinear tiles = op;
              tiles.format = WeightFormat::BF16;
              tiles.w = converted;
              allRows(b, loc, tiles, p, zero);
              memref::DeallocOp::create(b, loc, converted);
              scf::YieldOp::create(b, loc);
            },
            [&](OpBuilder &b, Location loc) {
              allRows(b, loc, op, p, p);
              scf::YieldOp::create(b, loc);
            });
      });
  if (x.scratch)
    memref::DeallocOp::create(b, loc, x.scratch);
}
