//===- MatmulTile.cpp - register-tiled x . W^T over a row range -----------===//

#include "lowering/CPU/Kernels/MatmulTile.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace xfmr::kernels;

namespace {

/// Rows of the register tile in each direction.
constexpr int64_t kTile = 4;

/// The register tile's x rows and weight rows. Int4 weights cost more to
/// widen than to multiply, so their tiles share each widened vector among 8
/// x rows (8 x 2 tiles: 16 sums, 8 x vectors, 2 weight vectors in registers).
int64_t xTileRows(const MatmulTile &op) {
  return op.format == WeightFormat::I4 ? 8 : kTile;
}
int64_t weightTileRows(const MatmulTile &op) {
  return op.format == WeightFormat::I4 ? 2 : kTile;
}

/// One scale per weight row, over all its inputs (int8 W8A8's per-channel
/// scales): each finished sum is scaled once.
bool rowScaled(const MatmulTile &op) {
  return op.format != WeightFormat::I4 && op.blockScale &&
         op.blockScale->first == 1 && op.blockScale->second >= op.in;
}

/// The tile path applies one block scale to a whole tile: it needs whole
/// vector steps per block and all of a tile's weight rows in one row block
/// (or row scales, applied to the sums).
bool tileScalable(const MatmulTile &op) {
  if (!op.blockScale || rowScaled(op) || op.format == WeightFormat::I4)
    return true;
  auto [blockRows, blockCols] = *op.blockScale;
  return blockCols % op.width == 0 && op.in % blockCols == 0 &&
         blockRows % kTile == 0;
}

SmallVector<Value> withPrefix(ArrayRef<Value> prefix, ArrayRef<Value> rest) {
  SmallVector<Value> indices(prefix.begin(), prefix.end());
  indices.append(rest.begin(), rest.end());
  return indices;
}

/// Int4 weight row `n`'s stored nibbles (codes + 8, 0-15) at inputs
/// [k, k + width) (k a multiple of the width), as f32: one 8-byte load, a
/// mask, a shift and an interleave.
Value loadInt4Nibbles(OpBuilder &b, Location loc, const MatmulTile &op, Value n,
                      Value k) {
  int64_t half = op.width / 2;
  auto bytesType = VectorType::get({half}, b.getI8Type());
  auto valuesType = VectorType::get({op.width}, b.getF32Type());
  Value byte = arith::DivUIOp::create(b, loc, k, index(b, loc, 2));
  Value bytes = vector::LoadOp::create(b, loc, bytesType, op.w,
                                       withPrefix(op.weightPrefix, {n, byte}));
  Value low =
      arith::AndIOp::create(b, loc, bytes, splat(b, loc, bytesType, 15));
  Value high =
      arith::ShRUIOp::create(b, loc, bytes, splat(b, loc, bytesType, 4));
  // Inputs k + 2i in the low nibbles, k + 2i + 1 in the high ones.
  SmallVector<int64_t> order;
  for (int64_t i = 0; i < half; ++i)
    order.append({i, half + i});
  Value nibbles = vector::ShuffleOp::create(b, loc, low, high, order);
  return arith::UIToFPOp::create(b, loc, valuesType, nibbles);
}

/// Int4 weight row `n`'s values (code x scale) at inputs [k, k + width).
Value loadInt4Vector(OpBuilder &b, Location loc, const MatmulTile &op, Value n,
                     Value k) {
  auto valuesType = VectorType::get({op.width}, b.getF32Type());
  Value nibbles = loadInt4Nibbles(b, loc, op, n, k);
  Value group =
      arith::DivUIOp::create(b, loc, k, index(b, loc, op.blockScale->second));
  Value halfScale = memref::LoadOp::create(
      b, loc, op.scale, withPrefix(op.weightPrefix, {n, group}));
  Value scale = arith::ExtFOp::create(b, loc, b.getF32Type(), halfScale);
  Value scales = vector::BroadcastOp::create(b, loc, valuesType, scale);
  // (nibble - 8) x scale = nibble x scale - 8 x scale.
  Value offset = arith::MulFOp::create(b, loc, scale, f32(b, loc, -8.0));
  Value offsets = vector::BroadcastOp::create(b, loc, valuesType, offset);
  return vector::FMAOp::create(b, loc, nibbles, scales, offsets);
}

/// The vector sums of an int4 tile over inputs [0, vectorLength), group by
/// group: within a group x . nibbles and the sum of x accumulate, and at its
/// end sum += (x . nibbles - 8 sum(x)) x scale, so the codes' offset and
/// scale cost one step a group, not one a weight vector.
SmallVector<Value> emitInt4TileSums(OpBuilder &b, Location loc,
                                    const MatmulTile &op, ArrayRef<Value> xRows,
                                    ArrayRef<Value> rows,
                                    int64_t vectorLength) {
  int64_t group = op.blockScale->second;
  size_t count = xRows.size() * rows.size();
  auto vectorType = VectorType::get({op.width}, b.getF32Type());
  Value zero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)));
  Value minusEight =
      vector::BroadcastOp::create(b, loc, vectorType, f32(b, loc, -8.0));
  SmallVector<Value> init(count, zero);
  Value firstGroup = index(b, loc, 0);
  Value groupEnd =
      index(b, loc, llvm::divideCeilSigned<int64_t>(vectorLength, group));
  Value one = index(b, loc, 1);
  auto groups = scf::ForOp::create(
      b, loc, firstGroup, groupEnd, one, init,
      [&](OpBuilder &b, Location loc, Value g, ValueRange totals) {
        Value begin = arith::MulIOp::create(b, loc, g, index(b, loc, group));
        Value past = arith::AddIOp::create(b, loc, begin, index(b, loc, group));
        Value end =
            arith::MinUIOp::create(b, loc, past, index(b, loc, vectorLength));
        // x . nibbles for each (x row, weight row), then sum(x) per x row.
        SmallVector<Value> inner(count + xRows.size(), zero);
        auto loop = scf::ForOp::create(
            b, loc, begin, end, index(b, loc, op.width), inner,
            [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
              SmallVector<Value> xs, ws;
              for (Value r : xRows)
                xs.push_back(vector::LoadOp::create(b, loc, vectorType, op.x,
                                                    ValueRange{r, k}));
              for (Value n : rows)
                ws.push_back(loadInt4Nibbles(b, loc, op, n, k));
              SmallVector<Value> next;
              for (size_t i = 0; i < xRows.size(); ++i)
                for (size_t j = 0; j < rows.size(); ++j)
                  next.push_back(vector::FMAOp::create(
                      b, loc, xs[i], ws[j], acc[i * rows.size() + j]));
              for (size_t i = 0; i < xRows.size(); ++i)
                next.push_back(
                    arith::AddFOp::create(b, loc, acc[count + i], xs[i]));
              scf::YieldOp::create(b, loc, next);
            });
        SmallVector<Value> next(totals.begin(), totals.end());
        for (size_t j = 0; j < rows.size(); ++j) {
          Value halfScale = memref::LoadOp::create(
              b, loc, op.scale, withPrefix(op.weightPrefix, {rows[j], g}));
          Value scale =
              arith::ExtFOp::create(b, loc, b.getF32Type(), halfScale);
          Value scales = vector::BroadcastOp::create(b, loc, vectorType, scale);
          for (size_t i = 0; i < xRows.size(); ++i) {
            size_t at = i * rows.size() + j;
            Value exact =
                vector::FMAOp::create(b, loc, loop.getResult(count + i),
                                      minusEight, loop.getResult(at));
            next[at] = vector::FMAOp::create(b, loc, exact, scales, next[at]);
          }
        }
        scf::YieldOp::create(b, loc, next);
      });
  return SmallVector<Value>(groups.getResults());
}

/// Int4 weight (n, k) times its group's scale, as f32.
Value loadInt4Scalar(OpBuilder &b, Location loc, const MatmulTile &op, Value n,
                     Value k) {
  Value two = index(b, loc, 2);
  Value byteIndex = arith::DivUIOp::create(b, loc, k, two);
  Value byte = memref::LoadOp::create(
      b, loc, op.w, withPrefix(op.weightPrefix, {n, byteIndex}));
  // Even inputs in the low nibble, odd ones in the high.
  Value odd = arith::RemUIOp::create(b, loc, k, two);
  Value shiftIndex = arith::MulIOp::create(b, loc, odd, index(b, loc, 4));
  Value shift = arith::IndexCastOp::create(b, loc, b.getI8Type(), shiftIndex);
  Value shifted = arith::ShRUIOp::create(b, loc, byte, shift);
  Value nibble = arith::AndIOp::create(
      b, loc, shifted,
      arith::ConstantOp::create(b, loc, b.getI8IntegerAttr(15)));
  Value value = arith::UIToFPOp::create(b, loc, b.getF32Type(), nibble);
  Value code = arith::SubFOp::create(b, loc, value, f32(b, loc, 8.0));
  Value group =
      arith::DivUIOp::create(b, loc, k, index(b, loc, op.blockScale->second));
  Value halfScale = memref::LoadOp::create(
      b, loc, op.scale, withPrefix(op.weightPrefix, {n, group}));
  Value scale = arith::ExtFOp::create(b, loc, b.getF32Type(), halfScale);
  return arith::MulFOp::create(b, loc, code, scale);
}

/// sum[r, n] for every (r, n) of xRows x rows, sharing loads across the tile.
void emitTile(OpBuilder &b, Location loc, const MatmulTile &op,
              ArrayRef<Value> xRows, ArrayRef<Value> rows) {
  int64_t vectorLength = op.in / op.width * op.width;
  size_t count = xRows.size() * rows.size();
  auto vectorType = VectorType::get({op.width}, b.getF32Type());
  SmallVector<Value> sums;
  auto step = [&](OpBuilder &b, Location loc, Value k, ValueRange acc,
                  Value xScale) {
    SmallVector<Value> xs, ws;
    for (Value r : xRows) {
      Value xv =
          vector::LoadOp::create(b, loc, vectorType, op.x, ValueRange{r, k});
      xs.push_back(xScale ? arith::MulFOp::create(b, loc, xv, xScale) : xv);
    }
    for (Value n : rows)
      ws.push_back(op.format == WeightFormat::I4
                       ? loadInt4Vector(b, loc, op, n, k)
                       : loadVectorAsF32(b, loc, op.w,
                                         withPrefix(op.weightPrefix, {n, k}),
                                         op.format, op.table, op.width));
    SmallVector<Value> next;
    for (size_t i = 0; i < xRows.size(); ++i)
      for (size_t j = 0; j < rows.size(); ++j)
        next.push_back(vector::FMAOp::create(b, loc, xs[i], ws[j],
                                             acc[i * rows.size() + j]));
    return next;
  };
  // Int4: one x row (decode) sums per group; a tile of rows scales each
  // weight vector as it loads it (the sums per group would not fit in the
  // registers next to 8 x 2 tiles' totals).
  if (vectorLength > 0 && op.format == WeightFormat::I4 && xRows.size() == 1) {
    for (Value total : emitInt4TileSums(b, loc, op, xRows, rows, vectorLength))
      sums.push_back(
          vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, total,
                                      Value(), arith::FastMathFlags::reassoc));
  } else if (vectorLength > 0) {
    Value zero = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)));
    SmallVector<Value> init(count, zero);
    scf::ForOp loop;
    if (op.blockScale && !rowScaled(op) && op.format != WeightFormat::I4) {
      // Blocks of blockCols inputs, each with the tile's one scale, applied
      // to the activations.
      int64_t blockRows = op.blockScale->first;
      int64_t blockCols = op.blockScale->second;
      Value rowBlock =
          arith::DivUIOp::create(b, loc, rows[0], index(b, loc, blockRows));
      Value lb = index(b, loc, 0);
      Value ub = index(b, loc, op.in / blockCols);
      Value one = index(b, loc, 1);
      loop = scf::ForOp::create(
          b, loc, lb, ub, one, init,
          [&](OpBuilder &b, Location loc, Value block, ValueRange acc) {
            Value scale = memref::LoadOp::create(
                b, loc, op.scale,
                withPrefix(op.weightPrefix, {rowBlock, block}));
            Value scaleVector =
                vector::BroadcastOp::create(b, loc, vectorType, scale);
            Value begin =
                arith::MulIOp::create(b, loc, block, index(b, loc, blockCols));
            Value end =
                arith::AddIOp::create(b, loc, begin, index(b, loc, blockCols));
            auto inner = scf::ForOp::create(
                b, loc, begin, end, index(b, loc, op.width), acc,
                [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
                  scf::YieldOp::create(b, loc,
                                       step(b, loc, k, acc, scaleVector));
                });
            scf::YieldOp::create(b, loc, inner.getResults());
          });
    } else {
      Value lb = index(b, loc, 0);
      Value ub = index(b, loc, vectorLength);
      Value width = index(b, loc, op.width);
      loop = scf::ForOp::create(
          b, loc, lb, ub, width, init,
          [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
            scf::YieldOp::create(b, loc, step(b, loc, k, acc, Value()));
          });
    }
    for (Value acc : loop.getResults())
      sums.push_back(
          vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, acc,
                                      Value(), arith::FastMathFlags::reassoc));
  } else {
    sums.assign(count, f32(b, loc, 0.0));
  }
  if (vectorLength < op.in) {
    Value lb = index(b, loc, vectorLength);
    Value ub = index(b, loc, op.in);
    Value one = index(b, loc, 1);
    auto tail = scf::ForOp::create(
        b, loc, lb, ub, one, sums,
        [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
          SmallVector<Value> next;
          for (size_t i = 0; i < xRows.size(); ++i) {
            Value xv =
                memref::LoadOp::create(b, loc, op.x, ValueRange{xRows[i], k});
            for (size_t j = 0; j < rows.size(); ++j) {
              Value wv =
                  op.format == WeightFormat::I4
                      ? loadInt4Scalar(b, loc, op, rows[j], k)
                      : loadAsF32(b, loc, op.w,
                                  withPrefix(op.weightPrefix, {rows[j], k}),
                                  op.format, op.table);
              next.push_back(
                  arith::AddFOp::create(b, loc, acc[i * rows.size() + j],
                                        arith::MulFOp::create(b, loc, xv, wv)));
            }
          }
          scf::YieldOp::create(b, loc, next);
        });
    sums.assign(tail.getResults().begin(), tail.getResults().end());
  }
  for (size_t j = 0; j < rows.size(); ++j) {
    Value rowScale;
    if (rowScaled(op)) {
      Value first = index(b, loc, 0);
      rowScale = memref::LoadOp::create(
          b, loc, op.scale, withPrefix(op.weightPrefix, {rows[j], first}));
    }
    for (size_t i = 0; i < xRows.size(); ++i) {
      Value sum = sums[i * rows.size() + j];
      if (rowScale)
        sum = arith::MulFOp::create(b, loc, sum, rowScale);
      op.store(b, loc, xRows[i], rows[j], sum);
    }
  }
}

/// x rows [begin, end) against the weight rows `rows`: 4-row tiles, then the
/// remaining rows one at a time.
void emitRowBlock(OpBuilder &b, Location loc, const MatmulTile &op, Value begin,
                  Value end, ArrayRef<Value> rows) {
  int64_t tileRows = xTileRows(op);
  Value tile = index(b, loc, tileRows);
  Value fullTiles = arith::DivUIOp::create(
      b, loc, arith::SubIOp::create(b, loc, end, begin), tile);
  serialFor(b, loc, index(b, loc, 0), fullTiles,
            [&](OpBuilder &b, Location loc, Value tb) {
              Value r0 = arith::AddIOp::create(
                  b, loc, begin, arith::MulIOp::create(b, loc, tb, tile));
              SmallVector<Value> xRows;
              for (int64_t i = 0; i < tileRows; ++i)
                xRows.push_back(
                    arith::AddIOp::create(b, loc, r0, index(b, loc, i)));
              emitTile(b, loc, op, xRows, rows);
            });
  // Leftover rows (all of decode) read the weight rows one after the
  // other: one long sequential stream per thread is what the hardware
  // prefetcher follows best, and it matters more than load sharing here.
  Value rest = arith::AddIOp::create(
      b, loc, begin, arith::MulIOp::create(b, loc, fullTiles, tile));
  serialFor(b, loc, rest, end, [&](OpBuilder &b, Location loc, Value r) {
    for (Value row : rows)
      emitTile(b, loc, op, {r}, {row});
  });
}

} // namespace

void xfmr::kernels::emitMatmul(OpBuilder &b, Location loc, const MatmulTile &op,
                               Value begin, Value end) {
  assert((op.format != WeightFormat::I4 ||
          (op.blockScale && op.blockScale->first == 1 &&
           op.blockScale->second % op.width == 0)) &&
         "int4 weights have one scale per row and group of whole vectors");
  if (!tileScalable(op)) {
    // One weight row at a time, each block's partial sum scaled.
    Value firstRow = index(b, loc, 0);
    Value rowEnd = index(b, loc, op.out);
    parallelFor(b, loc, firstRow, rowEnd,
                [&](OpBuilder &b, Location loc, Value n) {
                  serialFor(b, loc, begin, end,
                            [&](OpBuilder &b, Location loc, Value r) {
                              Value sum = scaledDot(
                                  b, loc, op.x, {r}, op.w,
                                  withPrefix(op.weightPrefix, {n}), op.in,
                                  op.format, op.table, op.blockScale, op.scale,
                                  op.weightPrefix, n, op.width);
                              op.store(b, loc, r, n, sum);
                            });
                });
    return;
  }
  // Blocks of 4 weight rows in parallel, then the last out % 4 rows.
  int64_t blockRows = weightTileRows(op);
  int64_t fullBlocks = op.out / blockRows;
  if (fullBlocks > 0) {
    Value firstBlock = index(b, loc, 0);
    Value blockEnd = index(b, loc, fullBlocks);
    parallelFor(
        b, loc, firstBlock, blockEnd,
        [&](OpBuilder &b, Location loc, Value block) {
          Value n0 =
              arith::MulIOp::create(b, loc, block, index(b, loc, blockRows));
          SmallVector<Value> rows;
          for (int64_t j = 0; j < blockRows; ++j)
            rows.push_back(arith::AddIOp::create(b, loc, n0, index(b, loc, j)));
          emitRowBlock(b, loc, op, begin, end, rows);
        });
  }
  if (op.out % blockRows != 0) {
    Value tailBegin = index(b, loc, fullBlocks * blockRows);
    Value tailEnd = index(b, loc, op.out);
    parallelFor(b, loc, tailBegin, tailEnd,
                [&](OpBuilder &b, Location loc, Value n) {
                  emitRowBlock(b, loc, op, begin, end, {n});
                });
  }
}
