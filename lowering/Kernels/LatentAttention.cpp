//===- LatentAttention.cpp - MLA in latent space -----------------*- C++ -*-===//
//
// With a latent cache, MLA never expands keys and values: per head, the
// query's no-rope part is multiplied by W_UK (the head's first `nope` rows of
// kv_b) into the latent space, attention scores latent . c_KV plus
// q_pe . k_pe, the softmax-weighted sum of c_KV stays latent, and W_UV (the
// head's next `v` rows of kv_b) maps it back. The cache holds rank + rope
// values per token instead of heads x (nope + rope + v).
//
//===----------------------------------------------------------------------===//

#include "lowering/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdio>
#include <limits>

using namespace mlir;
using namespace xfmr::kernels;

namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

MemRefType f32Buffer(MLIRContext *context, ArrayRef<int64_t> shape) {
  return MemRefType::get(shape, Float32Type::get(context));
}

/// kv_b (and its scales) as kernel arguments.
SmallVector<Type> kvBArgs(MLIRContext *context, int64_t rows, int64_t rank,
                          const WeightOperand &kvB) {
  SmallVector<Type> args{
      MemRefType::get({rows, rank}, storageTypeOf(kvB.format, context))};
  if (kvB.blockScale)
    args.push_back(f32Buffer(context, {ceilDiv(rows, kvB.blockScale->first),
                                       ceilDiv(rank, kvB.blockScale->second)}));
  return args;
}

/// kv_b[row, r] as f32 (with its block scale).
Value kvBAt(OpBuilder &b, Location loc, Value w, Value scales, Value row,
            Value r, const WeightOperand &kvB, Value table) {
  Value value = loadAsF32(b, loc, w, {row, r}, kvB.format, table);
  if (!kvB.blockScale)
    return value;
  Value scale = memref::LoadOp::create(
      b, loc, scales,
      ValueRange{arith::DivUIOp::create(b, loc, row,
                                        index(b, loc, kvB.blockScale->first)),
                 arith::DivUIOp::create(b, loc, r,
                                        index(b, loc, kvB.blockScale->second))});
  return arith::MulFOp::create(b, loc, value, scale);
}

} // namespace

func::FuncOp xfmr::kernels::mlaAbsorbQuery(KernelLibrary &lib, int64_t heads,
                                           int64_t nope, int64_t rope,
                                           int64_t valueDim, int64_t rank,
                                           const WeightOperand &kvB) {
  MLIRContext *context = lib.getModule().getContext();
  int64_t rows = heads * (nope + valueDim);
  SmallVector<Type> args{
      f32Buffer(context, {ShapedType::kDynamic, heads, nope + rope})};
  args.append(kvBArgs(context, rows, rank, kvB));
  args.push_back(f32Buffer(context, {ShapedType::kDynamic, heads, rank}));
  std::string key = "mla_absorb_query_" + std::to_string(heads) + "x" +
                    std::to_string(nope) + "x" + std::to_string(rope) + "x" +
                    std::to_string(valueDim) + "x" + std::to_string(rank) +
                    "_" + kvB.key();
  return lib.get(key, args, [&](OpBuilder &b, Location loc, ValueRange args) {
    Value q = args[0], w = args[1], out = args.back();
    Value scales = kvB.blockScale ? args[2] : Value();
    Value table = isFP8(kvB.format) ? lib.lookupTable(b, loc, kvB.format) : Value();
    Value tokens = memref::DimOp::create(b, loc, q, 0);
    Value zero = index(b, loc, 0);
    Value work = arith::MulIOp::create(b, loc, tokens, index(b, loc, heads));
    parallelFor(b, loc, zero, work, [&](OpBuilder &b, Location loc, Value item) {
      Value t = arith::DivUIOp::create(b, loc, item, index(b, loc, heads));
      Value h = arith::RemUIOp::create(b, loc, item, index(b, loc, heads));
      Value base = arith::MulIOp::create(b, loc, h, index(b, loc, nope + valueDim));
      // out[t, h, r] = sum_i q[t, h, i] * kv_b[base + i, r]
      serialFor(b, loc, zero, index(b, loc, rank),
                [&](OpBuilder &b, Location loc, Value r) {
        auto sum = scf::ForOp::create(
            b, loc, zero, index(b, loc, nope), index(b, loc, 1),
            ValueRange{f32(b, loc, 0.0)},
            [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
              Value qv = memref::LoadOp::create(b, loc, q, ValueRange{t, h, i});
              Value wv = kvBAt(b, loc, w, scales,
                               arith::AddIOp::create(b, loc, base, i), r, kvB,
                               table);
              scf::YieldOp::create(
                  b, loc,
                  ValueRange{arith::AddFOp::create(
                      b, loc, acc[0], arith::MulFOp::create(b, loc, qv, wv))});
            });
        memref::StoreOp::create(b, loc, sum.getResult(0), out,
                                ValueRange{t, h, r});
      });
    });
  });
}

func::FuncOp xfmr::kernels::latentCacheWrite(KernelLibrary &lib,
                                             int64_t capacity, int64_t rank,
                                             int64_t rope) {
  MLIRContext *context = lib.getModule().getContext();
  std::string key = "latent_cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(rank) + "x" + std::to_string(rope);
  return lib.get(
      key,
      {f32Buffer(context, {ShapedType::kDynamic, rank}),
       f32Buffer(context, {ShapedType::kDynamic, 1, rope}),
       f32Buffer(context, {capacity, rank + rope}), IndexType::get(context)},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value latent = args[0], ropeKey = args[1], cache = args[2];
        Value start = args[3];
        Value tokens = memref::DimOp::create(b, loc, latent, 0);
        Value zero = index(b, loc, 0);
        parallelFor(b, loc, zero, tokens,
                    [&](OpBuilder &b, Location loc, Value t) {
          Value row = arith::AddIOp::create(b, loc, start, t);
          serialFor(b, loc, zero, index(b, loc, rank),
                    [&](OpBuilder &b, Location loc, Value r) {
            Value v = memref::LoadOp::create(b, loc, latent, ValueRange{t, r});
            memref::StoreOp::create(b, loc, v, cache, ValueRange{row, r});
          });
          serialFor(b, loc, zero, index(b, loc, rope),
                    [&](OpBuilder &b, Location loc, Value i) {
            Value v = memref::LoadOp::create(b, loc, ropeKey,
                                             ValueRange{t, zero, i});
            Value column = arith::AddIOp::create(b, loc, i, index(b, loc, rank));
            memref::StoreOp::create(b, loc, v, cache, ValueRange{row, column});
          });
        });
      });
}

func::FuncOp xfmr::kernels::latentAttend(KernelLibrary &lib, int64_t capacity,
                                         int64_t heads, int64_t nope,
                                         int64_t rope, int64_t rank,
                                         double scale) {
  MLIRContext *context = lib.getModule().getContext();
  char scaleText[32];
  std::snprintf(scaleText, sizeof(scaleText), "%a", scale);
  std::string key = "latent_attend_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(nope) + "x" +
                    std::to_string(rope) + "x" + std::to_string(rank) + "_" +
                    scaleText;
  return lib.get(
      key,
      {f32Buffer(context, {ShapedType::kDynamic, heads, rank}),
       f32Buffer(context, {ShapedType::kDynamic, heads, nope + rope}),
       f32Buffer(context, {capacity, rank + rope}), IndexType::get(context),
       f32Buffer(context, {ShapedType::kDynamic, heads, rank})},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value qLatent = args[0], q = args[1], cache = args[2];
        Value start = args[3], out = args[4];
        Value tokens = memref::DimOp::create(b, loc, q, 0);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value work = arith::MulIOp::create(b, loc, tokens, index(b, loc, heads));
        parallelFor(b, loc, zero, work,
                    [&](OpBuilder &b, Location loc, Value item) {
          Value t = arith::DivUIOp::create(b, loc, item, index(b, loc, heads));
          Value h = arith::RemUIOp::create(b, loc, item, index(b, loc, heads));
          Value end = arith::AddIOp::create(
              b, loc, arith::AddIOp::create(b, loc, start, t), one);
          auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
          Block *block = new Block();
          scope.getBodyRegion().push_back(block);
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(block);
          Value acc = memref::AllocaOp::create(
              b, loc, MemRefType::get({rank}, b.getF32Type()));
          serialFor(b, loc, zero, index(b, loc, rank),
                    [&](OpBuilder &b, Location loc, Value r) {
            memref::StoreOp::create(b, loc, f32(b, loc, 0.0), acc, r);
          });
          Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());
          auto loop = scf::ForOp::create(
              b, loc, zero, end, one, ValueRange{negInf, f32(b, loc, 0.0)},
              [&](OpBuilder &b, Location loc, Value j, ValueRange state) {
                Value latentScore =
                    dot(b, loc, qLatent, {t, h}, zero, cache, {j}, zero, rank,
                        WeightFormat::F32, Value());
                Value ropeScore =
                    dot(b, loc, q, {t, h}, index(b, loc, nope), cache, {j},
                        index(b, loc, rank), rope, WeightFormat::F32, Value());
                Value score = arith::MulFOp::create(
                    b, loc, arith::AddFOp::create(b, loc, latentScore, ropeScore),
                    f32(b, loc, scale));
                Value maxNew = arith::MaximumFOp::create(b, loc, state[0], score);
                Value correction = math::ExpOp::create(
                    b, loc, arith::SubFOp::create(b, loc, state[0], maxNew));
                Value weight = math::ExpOp::create(
                    b, loc, arith::SubFOp::create(b, loc, score, maxNew));
                Value sumNew = arith::AddFOp::create(
                    b, loc, arith::MulFOp::create(b, loc, state[1], correction),
                    weight);
                serialFor(b, loc, zero, index(b, loc, rank),
                          [&](OpBuilder &b, Location loc, Value r) {
                  Value c = memref::LoadOp::create(b, loc, cache, ValueRange{j, r});
                  Value old = memref::LoadOp::create(b, loc, acc, r);
                  memref::StoreOp::create(
                      b, loc,
                      arith::AddFOp::create(
                          b, loc, arith::MulFOp::create(b, loc, old, correction),
                          arith::MulFOp::create(b, loc, weight, c)),
                      acc, r);
                });
                scf::YieldOp::create(b, loc, ValueRange{maxNew, sumNew});
              });
          Value total = loop.getResult(1);
          serialFor(b, loc, zero, index(b, loc, rank),
                    [&](OpBuilder &b, Location loc, Value r) {
            Value v = memref::LoadOp::create(b, loc, acc, r);
            memref::StoreOp::create(b, loc, arith::DivFOp::create(b, loc, v, total),
                                    out, ValueRange{t, h, r});
          });
          memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
        });
      });
}

func::FuncOp xfmr::kernels::mlaAbsorbOutput(KernelLibrary &lib, int64_t heads,
                                            int64_t nope, int64_t valueDim,
                                            int64_t rank,
                                            const WeightOperand &kvB) {
  MLIRContext *context = lib.getModule().getContext();
  int64_t rows = heads * (nope + valueDim);
  SmallVector<Type> args{f32Buffer(context, {ShapedType::kDynamic, heads, rank})};
  args.append(kvBArgs(context, rows, rank, kvB));
  args.push_back(f32Buffer(context, {ShapedType::kDynamic, heads, valueDim}));
  std::string key = "mla_absorb_output_" + std::to_string(heads) + "x" +
                    std::to_string(nope) + "x" + std::to_string(valueDim) +
                    "x" + std::to_string(rank) + "_" + kvB.key();
  return lib.get(key, args, [&](OpBuilder &b, Location loc, ValueRange args) {
    Value latent = args[0], w = args[1], out = args.back();
    Value scales = kvB.blockScale ? args[2] : Value();
    Value table = isFP8(kvB.format) ? lib.lookupTable(b, loc, kvB.format) : Value();
    Value tokens = memref::DimOp::create(b, loc, latent, 0);
    Value zero = index(b, loc, 0);
    Value work = arith::MulIOp::create(b, loc, tokens, index(b, loc, heads));
    parallelFor(b, loc, zero, work, [&](OpBuilder &b, Location loc, Value item) {
      Value t = arith::DivUIOp::create(b, loc, item, index(b, loc, heads));
      Value h = arith::RemUIOp::create(b, loc, item, index(b, loc, heads));
      Value base = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, h, index(b, loc, nope + valueDim)),
          index(b, loc, nope));
      serialFor(b, loc, zero, index(b, loc, valueDim),
                [&](OpBuilder &b, Location loc, Value d) {
        Value row = arith::AddIOp::create(b, loc, base, d);
        Value sum = scaledDot(b, loc, latent, {t, h}, w, {row}, rank, kvB.format,
                              table, kvB.blockScale, scales, {}, row);
        memref::StoreOp::create(b, loc, sum, out, ValueRange{t, h, d});
      });
    });
  });
}
