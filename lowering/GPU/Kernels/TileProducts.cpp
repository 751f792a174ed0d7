//===- TileProducts.cpp - 32 x 32 tiles of row products ---------------===//
//
// simt::tileProducts: a workgroup of 64 threads computes a 32 x 32 tile of
// sums over k of A(r, k) * W_j(n, k) for one A operand and one or more W
// operands (gate and up share their input), stepping over K in slices of
// 32 staged in workgroup memory (a 33-float pitch keeps a warp's reads on
// distinct banks); thread (r, c) of an 8 x 8 grid owns rows r + 8i of A and
// c + 8j of W. Rows come from callbacks, so an operand may gather its rows
// (the tokens routed to an expert).
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
constexpr int64_t kTile = 32, kPitch = kTile + 1, kSide = 8;
constexpr int64_t kPerThread = kTile / kSide; // 4
} // namespace

Value simt::valueOrZero(OpBuilder &b, Location loc, Value inside, Type type,
                        function_ref<Value(OpBuilder &, Location)> value) {
  auto branch = scf::IfOp::create(b, loc, TypeRange{type}, inside,
                                  /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&branch.getThenRegion().front());
  scf::YieldOp::create(b, loc, value(b, loc));
  b.setInsertionPointToStart(&branch.getElseRegion().front());
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(type));
  scf::YieldOp::create(b, loc, zero);
  return branch.getResult(0);
}

int64_t simt::tileScratch(int64_t operands) {
  return operands * kTile * kPitch;
}

void simt::tileProducts(OpBuilder &b, Location loc, const GPUThread &thread,
                        int64_t depth, const TileRows &a, ArrayRef<TileRows> w,
                        ArrayRef<Value> tiles, TileFinish finish) {
  assert(thread.block == kSide * kSide && tiles.size() == 1 + w.size() &&
         "64 threads, a staged tile per operand");
  int64_t terms = w.size();
  Value tile = index(b, loc, kTile), pitch = index(b, loc, kPitch);
  Value side = index(b, loc, kSide);
  Value r = arith::DivUIOp::create(b, loc, thread.thread, side);
  Value c = arith::RemUIOp::create(b, loc, thread.thread, side);
  Value depthEnd = index(b, loc, depth);
  SmallVector<Value> zeros(terms * kPerThread * kPerThread, f32(b, loc, 0.0));
  auto loop = scf::ForOp::create(
      b, loc, index(b, loc, 0), depthEnd, tile, zeros,
      [&](OpBuilder &b, Location loc, Value k0, ValueRange acc) {
        // Stage column slice [k0, k0 + 32) of each operand's 32 rows:
        // element e = thread + 64 i is (e / 32, e % 32), so neighbouring
        // threads read neighbouring columns.
        for (int64_t i = 0; i < kTile * kTile / thread.block; ++i) {
          Value e = arith::AddIOp::create(b, loc, thread.thread,
                                          index(b, loc, i * thread.block));
          Value row = arith::DivUIOp::create(b, loc, e, tile);
          Value col = arith::RemUIOp::create(b, loc, e, tile);
          Value k = arith::AddIOp::create(b, loc, k0, col);
          Value kInside = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, k, depthEnd);
          Value rowStart = arith::MulIOp::create(b, loc, row, pitch);
          Value slot = arith::AddIOp::create(b, loc, rowStart, col);
          for (int64_t o = 0; o <= terms; ++o) {
            const TileRows &rows = o == 0 ? a : w[o - 1];
            Value exists = rows.exists(b, loc, row);
            Value inside = arith::AndIOp::create(b, loc, kInside, exists);
            Value value =
                simt::valueOrZero(b, loc, inside, b.getF32Type(),
                                  [&](OpBuilder &b, Location loc) -> Value {
                                    return rows.at(b, loc, row, k);
                                  });
            memref::StoreOp::create(b, loc, value, tiles[o], slot);
          }
        }
        mlir::gpu::BarrierOp::create(b, loc);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        auto inner = scf::ForOp::create(
            b, loc, zero, tile, one, acc,
            [&](OpBuilder &b, Location loc, Value kk, ValueRange acc) {
              // tiles[o][(first + i * 8) * pitch + kk].
              auto staged = [&](Value staging, Value first,
                                int64_t i) -> Value {
                Value row = arith::AddIOp::create(b, loc, first,
                                                  index(b, loc, i * kSide));
                Value start = arith::MulIOp::create(b, loc, row, pitch);
                Value at = arith::AddIOp::create(b, loc, start, kk);
                return memref::LoadOp::create(b, loc, staging, at);
              };
              SmallVector<Value> xs;
              for (int64_t i = 0; i < kPerThread; ++i)
                xs.push_back(staged(tiles[0], r, i));
              SmallVector<Value> next;
              for (int64_t o = 0; o < terms; ++o) {
                SmallVector<Value> ws;
                for (int64_t j = 0; j < kPerThread; ++j)
                  ws.push_back(staged(tiles[1 + o], c, j));
                for (int64_t i = 0; i < kPerThread; ++i)
                  for (int64_t j = 0; j < kPerThread; ++j) {
                    int64_t at = (o * kPerThread + i) * kPerThread + j;
                    next.push_back(simt::fma(b, loc, xs[i], ws[j], acc[at]));
                  }
              }
              scf::YieldOp::create(b, loc, next);
            });
        // Nobody restages the tiles before everyone has read them.
        mlir::gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(b, loc, inner.getResults());
      });
  for (int64_t i = 0; i < kPerThread; ++i)
    for (int64_t j = 0; j < kPerThread; ++j) {
      Value row = arith::AddIOp::create(b, loc, r, index(b, loc, i * kSide));
      Value column = arith::AddIOp::create(b, loc, c, index(b, loc, j * kSide));
      Value rowExists = a.exists(b, loc, row);
      Value columnExists = w[0].exists(b, loc, column);
      Value both = arith::AndIOp::create(b, loc, rowExists, columnExists);
      scf::IfOp::create(b, loc, both, [&](OpBuilder &b, Location loc) {
        SmallVector<Value> sums;
        for (int64_t o = 0; o < terms; ++o)
          sums.push_back(loop.getResult((o * kPerThread + i) * kPerThread + j));
        finish(b, loc, row, column, sums);
        scf::YieldOp::create(b, loc);
      });
    }
}
