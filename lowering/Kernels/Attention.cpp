//===- Attention.cpp - KV-cache writes and causal attention -----*- C++ -*-===//
//
// The cache of one layer is a [capacity, kv_heads, key_dim + value_dim] f32
// buffer: for each token and KV head, the key followed by the value, so one
// cache row serves both dot products and the value update. Attention uses an
// online softmax (running max and sum), so no score buffer of the context
// length is needed.
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

static MemRefType cacheBuffer(MLIRContext *context, int64_t capacity,
                              int64_t heads, int64_t rowSize) {
  return MemRefType::get({capacity, heads, rowSize},
                         Float32Type::get(context));
}

static MemRefType perHead(MLIRContext *context, int64_t heads, int64_t dim) {
  return MemRefType::get({ShapedType::kDynamic, heads, dim},
                         Float32Type::get(context));
}

/// Copies `length` channels of src[srcIndices..., srcBegin + i] to
/// dst[dstIndices..., dstBegin + i].
static void copyRow(OpBuilder &b, Location loc, Value src,
                    ValueRange srcIndices, int64_t srcBegin, Value dst,
                    ValueRange dstIndices, int64_t dstBegin, int64_t length) {
  serialFor(b, loc, index(b, loc, 0), index(b, loc, length),
            [&](OpBuilder &b, Location loc, Value i) {
    SmallVector<Value> from(srcIndices.begin(), srcIndices.end());
    from.push_back(arith::AddIOp::create(b, loc, i, index(b, loc, srcBegin)));
    SmallVector<Value> to(dstIndices.begin(), dstIndices.end());
    to.push_back(arith::AddIOp::create(b, loc, i, index(b, loc, dstBegin)));
    Value v = memref::LoadOp::create(b, loc, src, from);
    memref::StoreOp::create(b, loc, v, dst, to);
  });
}

func::FuncOp xfmr::kernels::cacheWrite(KernelLibrary &lib, int64_t capacity,
                                       int64_t heads, int64_t keyDim,
                                       int64_t valueDim) {
  MLIRContext *context = lib.getModule().getContext();
  std::string key = "cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(keyDim) +
                    "x" + std::to_string(valueDim);
  return lib.get(
      key,
      {perHead(context, heads, keyDim), perHead(context, heads, valueDim),
       cacheBuffer(context, capacity, heads, keyDim + valueDim),
       IndexType::get(context)},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value k = args[0], v = args[1], cache = args[2], start = args[3];
        Value tokens = memref::DimOp::create(b, loc, k, 0);
        parallelFor(b, loc, index(b, loc, 0), tokens,
                    [&](OpBuilder &b, Location loc, Value t) {
          Value row = arith::AddIOp::create(b, loc, start, t);
          serialFor(b, loc, index(b, loc, 0), index(b, loc, heads),
                    [&](OpBuilder &b, Location loc, Value h) {
            copyRow(b, loc, k, {t, h}, 0, cache, {row, h}, 0, keyDim);
            copyRow(b, loc, v, {t, h}, 0, cache, {row, h}, keyDim, valueDim);
          });
        });
      });
}

func::FuncOp xfmr::kernels::mlaCacheWrite(KernelLibrary &lib, int64_t capacity,
                                          int64_t heads, int64_t nope,
                                          int64_t rope, int64_t valueDim) {
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  std::string key = "mla_cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(nope) + "x" +
                    std::to_string(rope) + "x" + std::to_string(valueDim);
  return lib.get(
      key,
      {MemRefType::get({ShapedType::kDynamic, heads * (nope + valueDim)},
                       f32Type),
       perHead(context, 1, rope),
       cacheBuffer(context, capacity, heads, nope + rope + valueDim),
       IndexType::get(context)},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value kv = args[0], ropeKey = args[1], cache = args[2], start = args[3];
        Value tokens = memref::DimOp::create(b, loc, kv, 0);
        Value zero = index(b, loc, 0);
        parallelFor(b, loc, zero, tokens,
                    [&](OpBuilder &b, Location loc, Value t) {
          Value row = arith::AddIOp::create(b, loc, start, t);
          serialFor(b, loc, zero, index(b, loc, heads),
                    [&](OpBuilder &b, Location loc, Value h) {
            // kv rows are head-major [k_nope | v]; the key is
            // [k_nope | k_pe] with k_pe shared by all heads.
            Value base = arith::MulIOp::create(b, 
                loc, h, index(b, loc, nope + valueDim));
            auto copyFromKV = [&](int64_t from, int64_t to, int64_t length) {
              serialFor(b, loc, zero, index(b, loc, length),
                        [&](OpBuilder &b, Location loc, Value i) {
                Value source = arith::AddIOp::create(b, 
                    loc, base,
                    arith::AddIOp::create(b, loc, i, index(b, loc, from)));
                Value value =
                    memref::LoadOp::create(b, loc, kv, ValueRange{t, source});
                Value target =
                    arith::AddIOp::create(b, loc, i, index(b, loc, to));
                memref::StoreOp::create(b, loc, value, cache,
                                          ValueRange{row, h, target});
              });
            };
            copyFromKV(0, 0, nope);
            copyRow(b, loc, ropeKey, {t, zero}, 0, cache, {row, h}, nope,
                    rope);
            copyFromKV(nope, nope + rope, valueDim);
          });
        });
      });
}

func::FuncOp xfmr::kernels::attend(KernelLibrary &lib, int64_t capacity,
                                   int64_t queryHeads, int64_t kvHeads,
                                   int64_t keyDim, int64_t valueDim,
                                   double scale, std::optional<int64_t> window) {
  MLIRContext *context = lib.getModule().getContext();
  char scaleText[32];
  std::snprintf(scaleText, sizeof(scaleText), "%a", scale);
  std::string key = "attend_" + std::to_string(capacity) + "x" +
                    std::to_string(queryHeads) + "x" +
                    std::to_string(kvHeads) + "x" + std::to_string(keyDim) +
                    "x" + std::to_string(valueDim) + "_" + scaleText;
  if (window)
    key += "_w" + std::to_string(*window);
  int64_t group = queryHeads / kvHeads;
  return lib.get(
      key,
      {perHead(context, queryHeads, keyDim),
       cacheBuffer(context, capacity, kvHeads, keyDim + valueDim),
       IndexType::get(context), perHead(context, queryHeads, valueDim)},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value q = args[0], cache = args[1], start = args[2], out = args[3];
        Value tokens = memref::DimOp::create(b, loc, q, 0);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value work = arith::MulIOp::create(b, loc, tokens,
                                             index(b, loc, queryHeads));
        // One (token, head) pair per iteration: decode parallelizes over
        // heads, prefill over tokens too.
        parallelFor(b, loc, zero, work,
                    [&](OpBuilder &b, Location loc, Value item) {
          Value t = arith::DivUIOp::create(b, loc, item,
                                             index(b, loc, queryHeads));
          Value h = arith::RemUIOp::create(b, loc, item,
                                             index(b, loc, queryHeads));
          Value kvHead = arith::DivUIOp::create(b, loc, h, index(b, loc, group));
          Value position = arith::AddIOp::create(b, loc, start, t);
          Value end = arith::AddIOp::create(b, loc, position, one);
          Value begin = zero;
          if (window) {
            // Keys at positions > p - window.
            Value windowSize = index(b, loc, *window);
            Value inside = arith::CmpIOp::create(b, 
                loc, arith::CmpIPredicate::uge, end, windowSize);
            begin = arith::SelectOp::create(b, 
                loc, inside, arith::SubIOp::create(b, loc, end, windowSize),
                zero);
          }
          auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
          Block *body = new Block();
          scope.getBodyRegion().push_back(body);
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(body);
          Value acc = memref::AllocaOp::create(b, 
              loc, MemRefType::get({valueDim}, b.getF32Type()));
          serialFor(b, loc, zero, index(b, loc, valueDim),
                    [&](OpBuilder &b, Location loc, Value d) {
            memref::StoreOp::create(b, loc, f32(b, loc, 0.0), acc, d);
          });
          Value negInf =
              f32(b, loc, -std::numeric_limits<double>::infinity());
          auto loop = scf::ForOp::create(b, 
              loc, begin, end, one, ValueRange{negInf, f32(b, loc, 0.0)},
              [&](OpBuilder &b, Location loc, Value j, ValueRange state) {
                Value score = dot(b, loc, q, {t, h}, zero, cache, {j, kvHead},
                                  zero, keyDim, WeightFormat::F32, Value());
                score = arith::MulFOp::create(b, loc, score, f32(b, loc, scale));
                Value maxOld = state[0], sumOld = state[1];
                Value maxNew = arith::MaximumFOp::create(b, loc, maxOld, score);
                Value correction = math::ExpOp::create(b, 
                    loc, arith::SubFOp::create(b, loc, maxOld, maxNew));
                Value weight = math::ExpOp::create(b, 
                    loc, arith::SubFOp::create(b, loc, score, maxNew));
                Value sumNew = arith::AddFOp::create(b, 
                    loc, arith::MulFOp::create(b, loc, sumOld, correction),
                    weight);
                serialFor(b, loc, zero, index(b, loc, valueDim),
                          [&](OpBuilder &b, Location loc, Value d) {
                  Value channel =
                      arith::AddIOp::create(b, loc, d, index(b, loc, keyDim));
                  Value value = memref::LoadOp::create(b, 
                      loc, cache, ValueRange{j, kvHead, channel});
                  Value old = memref::LoadOp::create(b, loc, acc, d);
                  Value updated = arith::AddFOp::create(b, 
                      loc, arith::MulFOp::create(b, loc, old, correction),
                      arith::MulFOp::create(b, loc, weight, value));
                  memref::StoreOp::create(b, loc, updated, acc, d);
                });
                scf::YieldOp::create(b, loc, ValueRange{maxNew, sumNew});
              });
          Value total = loop.getResult(1);
          serialFor(b, loc, zero, index(b, loc, valueDim),
                    [&](OpBuilder &b, Location loc, Value d) {
            Value value = memref::LoadOp::create(b, loc, acc, d);
            memref::StoreOp::create(b, 
                loc, arith::DivFOp::create(b, loc, value, total), out,
                ValueRange{t, h, d});
          });
          memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
        });
      });
}
