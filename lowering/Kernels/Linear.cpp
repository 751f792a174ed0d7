//===- Linear.cpp - y = x W^T (+ b) kernel -----------------------*- C++ -*-===//
//
// Parallel over blocks of output features. Inside, a register tile of up to
// 4 tokens x 4 weight rows shares its loads: each 16-lane step loads 4
// activation and 4 weight vectors for 16 FMAs, so prefill is bound by
// arithmetic rather than loads, and decode (one token) still streams each
// weight byte exactly once. Block-scaled (FP8) weights take a per-row path
// that applies each block's scale to its partial sum.
//
//===----------------------------------------------------------------------===//

#include "lowering/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace xfmr::kernels;

namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Rows of the register tile in each direction.
constexpr int64_t kTile = 4;

struct LinearOperands {
  Value x, w, bias, y, table;
  int64_t in;
  WeightFormat format;
  std::optional<WeightFormat> biasFormat;
  /// Block scales [ceil(out / blockRows), in / blockCols], or null. The tile
  /// path needs whole 16-lane steps per block and all of a tile's rows in
  /// one row block; it then scales the activations per block instead of the
  /// products (same scale for the whole tile).
  Value scale;
  int64_t blockRows = 0, blockCols = 0;
};

/// y[t, n] = x[t] . w[n] (+ bias[n]) for every (t, n) of tokens x rows,
/// sharing loads across the tile.
void emitTile(OpBuilder &b, Location loc, const LinearOperands &op,
              ArrayRef<Value> tokens, ArrayRef<Value> rows) {
  int64_t vectorLength = op.in / kVectorWidth * kVectorWidth;
  size_t count = tokens.size() * rows.size();
  auto vectorType = VectorType::get({kVectorWidth}, b.getF32Type());
  SmallVector<Value> sums;
  auto step = [&](OpBuilder &b, Location loc, Value k, ValueRange acc,
                  Value xScale) {
    SmallVector<Value> xs, ws;
    for (Value t : tokens) {
      Value xv = vector::LoadOp::create(b, loc, vectorType, op.x,
                                        ValueRange{t, k});
      xs.push_back(xScale ? arith::MulFOp::create(b, loc, xv, xScale)
                          : xv);
    }
    for (Value n : rows)
      ws.push_back(loadVectorAsF32(b, loc, op.w, {n, k}, op.format, op.table));
    SmallVector<Value> next;
    for (size_t i = 0; i < tokens.size(); ++i)
      for (size_t j = 0; j < rows.size(); ++j)
        next.push_back(vector::FMAOp::create(b, loc, xs[i], ws[j],
                                             acc[i * rows.size() + j]));
    return next;
  };
  if (vectorLength > 0) {
    Value zero = arith::ConstantOp::create(b, 
        loc, DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)));
    SmallVector<Value> init(count, zero);
    scf::ForOp loop;
    if (op.scale) {
      // Blocks of blockCols inputs, each with the tile's one scale.
      Value rowBlock = arith::DivUIOp::create(b, loc, rows[0],
                                              index(b, loc, op.blockRows));
      loop = scf::ForOp::create(
          b, loc, index(b, loc, 0), index(b, loc, op.in / op.blockCols),
          index(b, loc, 1), init,
          [&](OpBuilder &b, Location loc, Value block, ValueRange acc) {
            Value scale = memref::LoadOp::create(b, loc, op.scale,
                                                 ValueRange{rowBlock, block});
            Value scaleVector =
                vector::BroadcastOp::create(b, loc, vectorType, scale);
            Value begin = arith::MulIOp::create(b, loc, block,
                                                index(b, loc, op.blockCols));
            Value end = arith::AddIOp::create(b, loc, begin,
                                              index(b, loc, op.blockCols));
            auto inner = scf::ForOp::create(
                b, loc, begin, end, index(b, loc, kVectorWidth), acc,
                [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
                  scf::YieldOp::create(b, loc,
                                       step(b, loc, k, acc, scaleVector));
                });
            scf::YieldOp::create(b, loc, inner.getResults());
          });
    } else {
      loop = scf::ForOp::create(b, 
          loc, index(b, loc, 0), index(b, loc, vectorLength),
          index(b, loc, kVectorWidth), init,
          [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
            scf::YieldOp::create(b, loc, step(b, loc, k, acc, Value()));
          });
    }
    for (Value acc : loop.getResults())
      sums.push_back(vector::ReductionOp::create(b, 
          loc, vector::CombiningKind::ADD, acc, Value(),
          arith::FastMathFlags::reassoc));
  } else {
    sums.assign(count, f32(b, loc, 0.0));
  }
  if (vectorLength < op.in) {
    auto tail = scf::ForOp::create(b, 
        loc, index(b, loc, vectorLength), index(b, loc, op.in),
        index(b, loc, 1), sums,
        [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
          SmallVector<Value> next;
          for (size_t i = 0; i < tokens.size(); ++i) {
            Value xv =
                memref::LoadOp::create(b, loc, op.x, ValueRange{tokens[i], k});
            for (size_t j = 0; j < rows.size(); ++j) {
              Value wv = loadAsF32(b, loc, op.w, {rows[j], k}, op.format,
                                   op.table);
              next.push_back(arith::AddFOp::create(b, 
                  loc, acc[i * rows.size() + j],
                  arith::MulFOp::create(b, loc, xv, wv)));
            }
          }
          scf::YieldOp::create(b, loc, next);
        });
    sums.assign(tail.getResults().begin(), tail.getResults().end());
  }
  for (size_t j = 0; j < rows.size(); ++j) {
    Value shift = op.bias ? loadAsF32(b, loc, op.bias, {rows[j]},
                                      *op.biasFormat, Value())
                          : Value();
    for (size_t i = 0; i < tokens.size(); ++i) {
      Value sum = sums[i * rows.size() + j];
      if (shift)
        sum = arith::AddFOp::create(b, loc, sum, shift);
      memref::StoreOp::create(b, loc, sum, op.y, ValueRange{tokens[i], rows[j]});
    }
  }
}

/// All tokens against the weight rows `rows`: 4-token tiles, then the
/// remaining tokens one at a time.
void emitRowBlock(OpBuilder &b, Location loc, const LinearOperands &op,
                  ArrayRef<Value> rows) {
  Value tokenCount = memref::DimOp::create(b, loc, op.x, 0);
  Value tile = index(b, loc, kTile);
  Value fullTiles = arith::DivUIOp::create(b, loc, tokenCount, tile);
  serialFor(b, loc, index(b, loc, 0), fullTiles,
            [&](OpBuilder &b, Location loc, Value tb) {
    Value t0 = arith::MulIOp::create(b, loc, tb, tile);
    SmallVector<Value> tokens;
    for (int64_t i = 0; i < kTile; ++i)
      tokens.push_back(arith::AddIOp::create(b, loc, t0, index(b, loc, i)));
    emitTile(b, loc, op, tokens, rows);
  });
  // Leftover tokens (all of decode) read the rows one after the other: one
  // long sequential stream per thread is what the hardware prefetcher
  // follows best, and it matters more than load sharing here.
  serialFor(b, loc, arith::MulIOp::create(b, loc, fullTiles, tile), tokenCount,
            [&](OpBuilder &b, Location loc, Value t) {
    for (Value row : rows)
      emitTile(b, loc, op, {t}, {row});
  });
}

} // namespace

func::FuncOp xfmr::kernels::linear(KernelLibrary &lib, int64_t in,
                                   int64_t out, const WeightOperand &weight,
                                   std::optional<WeightFormat> bias) {
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  SmallVector<Type> args{
      MemRefType::get({ShapedType::kDynamic, in}, f32Type),
      MemRefType::get({out, in}, storageTypeOf(weight.format, context))};
  if (bias)
    args.push_back(MemRefType::get({out}, storageTypeOf(*bias, context)));
  if (weight.blockScale)
    args.push_back(MemRefType::get(
        {ceilDiv(out, weight.blockScale->first),
         ceilDiv(in, weight.blockScale->second)},
        f32Type));
  args.push_back(MemRefType::get({ShapedType::kDynamic, out}, f32Type));
  std::string key = "linear_" + std::to_string(out) + "x" +
                    std::to_string(in) + "_" + weight.key();
  if (bias)
    key += "_bias_" + formatName(*bias).str();
  return lib.get(key, args, [&](OpBuilder &b, Location loc, ValueRange args) {
    LinearOperands op;
    op.x = args[0];
    op.w = args[1];
    op.y = args.back();
    op.bias = bias ? args[2] : Value();
    op.biasFormat = bias;
    op.in = in;
    op.format = weight.format;
    bool fp8 = isFP8(weight.format);
    op.table = fp8 ? lib.lookupTable(b, loc, weight.format) : Value();
    Value tokens = memref::DimOp::create(b, loc, op.x, 0);

    if (weight.blockScale) {
      auto [blockRows, blockCols] = *weight.blockScale;
      if (blockCols % kVectorWidth == 0 && in % blockCols == 0 &&
          blockRows % kTile == 0) {
        op.scale = args[bias ? 3 : 2];
        op.blockRows = blockRows;
        op.blockCols = blockCols;
      }
    }
    if (weight.blockScale && !op.scale) {
      Value scale = args[bias ? 3 : 2];
      parallelFor(b, loc, index(b, loc, 0), index(b, loc, out),
                  [&](OpBuilder &b, Location loc, Value n) {
        Value shift = bias ? loadAsF32(b, loc, op.bias, {n}, *bias, Value())
                           : Value();
        serialFor(b, loc, index(b, loc, 0), tokens,
                  [&](OpBuilder &b, Location loc, Value t) {
          Value sum = scaledDot(b, loc, op.x, {t}, op.w, {n}, in,
                                weight.format, op.table, weight.blockScale,
                                scale, {}, n);
          if (shift)
            sum = arith::AddFOp::create(b, loc, sum, shift);
          memref::StoreOp::create(b, loc, sum, op.y, ValueRange{t, n});
        });
      });
      return;
    }

    // Blocks of 4 weight rows in parallel, then the last out % 4 rows.
    int64_t fullBlocks = out / kTile;
    if (fullBlocks > 0)
      parallelFor(b, loc, index(b, loc, 0), index(b, loc, fullBlocks),
                  [&](OpBuilder &b, Location loc, Value block) {
        Value n0 = arith::MulIOp::create(b, loc, block, index(b, loc, kTile));
        SmallVector<Value> rows;
        for (int64_t j = 0; j < kTile; ++j)
          rows.push_back(arith::AddIOp::create(b, loc, n0, index(b, loc, j)));
        emitRowBlock(b, loc, op, rows);
      });
    if (out % kTile != 0)
      parallelFor(b, loc, index(b, loc, fullBlocks * kTile),
                  index(b, loc, out),
                  [&](OpBuilder &b, Location loc, Value n) {
        emitRowBlock(b, loc, op, {n});
      });
  });
}
