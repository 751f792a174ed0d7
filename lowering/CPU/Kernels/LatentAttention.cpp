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

#include "lowering/CPU/Kernels/Kernels.h"

#include "llvm/Support/MathExtras.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdio>
#include <limits>

using namespace mlir;
using namespace xfmr::kernels;

namespace {

MemRefType f32Buffer(MLIRContext *context, ArrayRef<int64_t> shape) {
  return MemRefType::get(shape, Float32Type::get(context));
}

/// The types of kv_b [rows, rank] and its block scales (null without).
std::pair<Type, Type> kvBTypes(MLIRContext *context, int64_t rows,
                               int64_t rank, const WeightOperand &kvB) {
  Type weight =
      MemRefType::get({rows, rank}, storageTypeOf(kvB.format, context));
  if (!kvB.blockScale)
    return {weight, Type()};
  return {weight,
          f32Buffer(context,
                    {llvm::divideCeilSigned(rows, kvB.blockScale->first),
                     llvm::divideCeilSigned(rank, kvB.blockScale->second)})};
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

func::FuncOp xfmr::kernels::mlaAbsorbQuery(KernelLibrary &lib,
    const MLAAbsorbQueryKernel &kernel) {
  int64_t heads = kernel.heads;
  int64_t nope = kernel.nope;
  int64_t rope = kernel.rope;
  int64_t valueDim = kernel.valueDim;
  int64_t rank = kernel.rank;
  const WeightOperand &kvB = kernel.kvB;
  MLIRContext *context = lib.getModule().getContext();
  int64_t rows = heads * (nope + valueDim);
  MLAAbsorbQueryOperands<Type> types;
  types.query = f32Buffer(context, {ShapedType::kDynamic, heads, nope + rope});
  std::tie(types.kvB, types.kvBScale) = kvBTypes(context, rows, rank, kvB);
  types.output = f32Buffer(context, {ShapedType::kDynamic, heads, rank});
  std::string key = "mla_absorb_query_" + std::to_string(heads) + "x" +
                    std::to_string(nope) + "x" + std::to_string(rope) + "x" +
                    std::to_string(valueDim) + "x" + std::to_string(rank) +
                    "_" + kvB.key();
  return lib.get<MLAAbsorbQueryOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, MLAAbsorbQueryOperands<Value> args) {
    Value q = args.query, w = args.kvB, out = args.output;
    Value scales = args.kvBScale;
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
        Value ub = index(b, loc, nope);
        Value step = index(b, loc, 1);
        Value init = f32(b, loc, 0.0);
        auto sum = scf::ForOp::create(
            b, loc, zero, ub, step, ValueRange{init},
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

/// The types of a latent cache's buffers: latent, scales (null without),
/// rope keys.
static std::tuple<Type, Type, Type>
latentCacheTypes(MLIRContext *context, int64_t capacity, int64_t rank,
                 int64_t rope, const LatentCacheFormat &storage) {
  Type scales = storage.scaleBlocks
                    ? f32Buffer(context, {capacity, storage.scaleBlocks})
                    : Type();
  return {MemRefType::get({capacity, rank},
                          storageTypeOf(storage.format, context)),
          scales,
          MemRefType::get({capacity, rope},
                          storageTypeOf(storage.ropeFormat, context))};
}

func::FuncOp xfmr::kernels::latentCacheWrite(KernelLibrary &lib,
    const LatentCacheWriteKernel &kernel) {
  int64_t capacity = kernel.capacity;
  int64_t rank = kernel.rank;
  int64_t rope = kernel.rope;
  const LatentCacheFormat &storage = kernel.storage;
  std::optional<int64_t> sinks = kernel.sinks;
  MLIRContext *context = lib.getModule().getContext();
  std::string key = "latent_cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(rank) + "x" + std::to_string(rope) +
                    storage.key();
  if (sinks)
    key += "_ring" + std::to_string(*sinks);
  LatentCacheWriteOperands<Type> types;
  types.latent = f32Buffer(context, {ShapedType::kDynamic, rank});
  types.ropeKey = f32Buffer(context, {ShapedType::kDynamic, 1, rope});
  std::tie(types.latentCache, types.scales, types.ropeCache) =
      latentCacheTypes(context, capacity, rank, rope, storage);
  types.start = IndexType::get(context);
  bool scaled = storage.scaleBlocks > 0;
  return lib.get<LatentCacheWriteOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, LatentCacheWriteOperands<Value> args) {
        Value latent = args.latent, ropeKey = args.ropeKey;
        Value latentCache = args.latentCache, scales = args.scales;
        Value ropeCache = args.ropeCache, start = args.start;
        Value tokens = memref::DimOp::create(b, loc, latent, 0);
        Value zero = index(b, loc, 0);
        parallelFor(b, loc, zero, tokens,
                    [&](OpBuilder &b, Location loc, Value t) {
          Value row = cacheSlot(b, loc, arith::AddIOp::create(b, loc, start, t),
                                capacity, sinks);
          // The latent, one block of channels per scale (one block when
          // unscaled).
          int64_t block = scaled ? LatentCacheType::kScaleBlock : rank;
          for (int64_t first = 0; first < rank; first += block) {
            Value lo = index(b, loc, first);
            Value hi = index(b, loc, std::min(rank, first + block));
            Value scale;
            if (scaled) {
              Value amax = maxAbs(
                  b, loc, lo, hi, f32(b, loc, 0.0),
                  [&](OpBuilder &b, Location loc, Value r) -> Value {
                    return memref::LoadOp::create(b, loc, latent,
                                                  ValueRange{t, r});
                  });
              scale = scaleForMaxAbs(b, loc, amax, storage.format);
              memref::StoreOp::create(
                  b, loc, scale, scales,
                  ValueRange{row, index(b, loc, first / block)});
            }
            serialFor(b, loc, lo, hi, [&](OpBuilder &b, Location loc, Value r) {
              Value v = memref::LoadOp::create(b, loc, latent, ValueRange{t, r});
              if (scale)
                v = arith::DivFOp::create(b, loc, v, scale);
              memref::StoreOp::create(
                  b, loc, encodeCacheValue(b, loc, v, storage.format),
                  latentCache, ValueRange{row, r});
            });
          }
          serialFor(b, loc, zero, index(b, loc, rope),
                    [&](OpBuilder &b, Location loc, Value i) {
            Value v = memref::LoadOp::create(b, loc, ropeKey,
                                             ValueRange{t, zero, i});
            memref::StoreOp::create(
                b, loc, encodeCacheValue(b, loc, v, storage.ropeFormat),
                ropeCache, ValueRange{row, i});
          });
        });
      });
}

func::FuncOp xfmr::kernels::latentAttend(KernelLibrary &lib,
    const LatentAttendKernel &kernel) {
  int64_t capacity = kernel.capacity;
  int64_t heads = kernel.heads;
  int64_t nope = kernel.nope;
  int64_t rope = kernel.rope;
  int64_t rank = kernel.rank;
  double scale = kernel.scale;
  const LatentCacheFormat &storage = kernel.storage;
  std::optional<int64_t> window = kernel.window;
  std::optional<int64_t> sinks = kernel.sinks;
  MLIRContext *context = lib.getModule().getContext();
  char scaleText[32];
  std::snprintf(scaleText, sizeof(scaleText), "%a", scale);
  std::string key = "latent_attend_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(nope) + "x" +
                    std::to_string(rope) + "x" + std::to_string(rank) + "_" +
                    scaleText + storage.key();
  if (window)
    key += "_w" + std::to_string(*window);
  if (sinks)
    key += "_ring" + std::to_string(*sinks);
  LatentAttendOperands<Type> types;
  types.queryLatent = f32Buffer(context, {ShapedType::kDynamic, heads, rank});
  types.query = f32Buffer(context, {ShapedType::kDynamic, heads, nope + rope});
  std::tie(types.latentCache, types.scales, types.ropeCache) =
      latentCacheTypes(context, capacity, rank, rope, storage);
  types.start = IndexType::get(context);
  types.output = f32Buffer(context, {ShapedType::kDynamic, heads, rank});
  bool scaled = storage.scaleBlocks > 0;
  int64_t block = scaled ? LatentCacheType::kScaleBlock : rank;
  int64_t width = lib.vectorWidth();
  return lib.get<LatentAttendOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, LatentAttendOperands<Value> args) {
        Value qLatent = args.queryLatent, q = args.query;
        Value latentCache = args.latentCache, scales = args.scales;
        Value ropeCache = args.ropeCache;
        Value start = args.start, out = args.output;
        Value latentTable = isFP8(storage.format)
                                ? lib.lookupTable(b, loc, storage.format)
                                : Value();
        Value tokens = memref::DimOp::create(b, loc, q, 0);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value work = arith::MulIOp::create(b, loc, tokens, index(b, loc, heads));
        parallelFor(b, loc, zero, work,
                    [&](OpBuilder &b, Location loc, Value item) {
          Value t = arith::DivUIOp::create(b, loc, item, index(b, loc, heads));
          Value h = arith::RemUIOp::create(b, loc, item, index(b, loc, heads));
          VisibleKeys keys =
              visibleKeys(b, loc, arith::AddIOp::create(b, loc, start, t),
                          capacity, window, sinks);
          auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
          Block *body = new Block();
          scope.getBodyRegion().push_back(body);
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(body);
          Value acc = memref::AllocaOp::create(
              b, loc, MemRefType::get({rank}, b.getF32Type()));
          serialFor(b, loc, zero, index(b, loc, rank),
                    [&](OpBuilder &b, Location loc, Value r) {
            memref::StoreOp::create(b, loc, f32(b, loc, 0.0), acc, r);
          });
          Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());
          auto loop = scf::ForOp::create(
              b, loc, keys.begin, keys.end, one,
              ValueRange{negInf, f32(b, loc, 0.0)},
              [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                Value j = keys.slot(b, loc, i);
                // q_lat . c_kv, one partial sum per scale block.
                Value latentScore = f32(b, loc, 0.0);
                for (int64_t first = 0; first < rank; first += block) {
                  Value qBegin = index(b, loc, first);
                  Value cacheBegin = index(b, loc, first);
                  Value part = dot(b, loc, qLatent, {t, h}, qBegin,
                                   latentCache, {j}, cacheBegin,
                                   std::min(block, rank - first), storage.format,
                                   latentTable, width);
                  if (scaled)
                    part = arith::MulFOp::create(
                        b, loc, part,
                        memref::LoadOp::create(
                            b, loc, scales,
                            ValueRange{j, index(b, loc, first / block)}));
                  latentScore = arith::AddFOp::create(b, loc, latentScore, part);
                }
                Value ropeScore =
                    dot(b, loc, q, {t, h}, index(b, loc, nope), ropeCache, {j},
                        zero, rope, storage.ropeFormat, Value(), width);
                Value sum =
                    arith::AddFOp::create(b, loc, latentScore, ropeScore);
                Value score =
                    arith::MulFOp::create(b, loc, sum, f32(b, loc, scale));
                SoftmaxStep step =
                    onlineSoftmaxStep(b, loc, state[0], state[1], score);
                Value maxNew = step.max, sumNew = step.sum;
                Value correction = step.correction, weight = step.weight;
                for (int64_t first = 0; first < rank; first += block) {
                  // The block's scale folds into the softmax weight.
                  Value blockWeight =
                      scaled ? arith::MulFOp::create(
                                   b, loc, weight,
                                   memref::LoadOp::create(
                                       b, loc, scales,
                                       ValueRange{j, index(b, loc, first / block)}))
                                   .getResult()
                             : weight;
                  Value blockBegin = index(b, loc, first);
                  Value blockEnd = index(b, loc, std::min(rank, first + block));
                  serialFor(b, loc, blockBegin, blockEnd,
                            [&](OpBuilder &b, Location loc, Value r) {
                    Value c = loadAsF32(b, loc, latentCache, {j, r},
                                        storage.format, latentTable);
                    Value old = memref::LoadOp::create(b, loc, acc, r);
                    Value kept = arith::MulFOp::create(b, loc, old, correction);
                    Value added = arith::MulFOp::create(b, loc, blockWeight, c);
                    Value updated = arith::AddFOp::create(b, loc, kept, added);
                    memref::StoreOp::create(b, loc, updated, acc, r);
                  });
                }
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

func::FuncOp xfmr::kernels::mlaAbsorbOutput(KernelLibrary &lib,
    const MLAAbsorbOutputKernel &kernel) {
  int64_t heads = kernel.heads;
  int64_t nope = kernel.nope;
  int64_t valueDim = kernel.valueDim;
  int64_t rank = kernel.rank;
  const WeightOperand &kvB = kernel.kvB;
  MLIRContext *context = lib.getModule().getContext();
  int64_t rows = heads * (nope + valueDim);
  MLAAbsorbOutputOperands<Type> types;
  types.latent = f32Buffer(context, {ShapedType::kDynamic, heads, rank});
  std::tie(types.kvB, types.kvBScale) = kvBTypes(context, rows, rank, kvB);
  types.output = f32Buffer(context, {ShapedType::kDynamic, heads, valueDim});
  std::string key = "mla_absorb_output_" + std::to_string(heads) + "x" +
                    std::to_string(nope) + "x" + std::to_string(valueDim) +
                    "x" + std::to_string(rank) + "_" + kvB.key();
  return lib.get<MLAAbsorbOutputOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, MLAAbsorbOutputOperands<Value> args) {
    Value latent = args.latent, w = args.kvB, out = args.output;
    Value scales = args.kvBScale;
    Value table = isFP8(kvB.format) ? lib.lookupTable(b, loc, kvB.format) : Value();
    Value tokens = memref::DimOp::create(b, loc, latent, 0);
    Value zero = index(b, loc, 0);
    Value work = arith::MulIOp::create(b, loc, tokens, index(b, loc, heads));
    parallelFor(b, loc, zero, work, [&](OpBuilder &b, Location loc, Value item) {
      Value t = arith::DivUIOp::create(b, loc, item, index(b, loc, heads));
      Value h = arith::RemUIOp::create(b, loc, item, index(b, loc, heads));
      Value headBase =
          arith::MulIOp::create(b, loc, h, index(b, loc, nope + valueDim));
      Value base = arith::AddIOp::create(b, loc, headBase, index(b, loc, nope));
      serialFor(b, loc, zero, index(b, loc, valueDim),
                [&](OpBuilder &b, Location loc, Value d) {
        Value row = arith::AddIOp::create(b, loc, base, d);
        Value sum = scaledDot(b, loc, latent, {t, h}, w, {row}, rank, kvB.format,
                              table, kvB.blockScale, scales, {}, row,
                              lib.vectorWidth());
        memref::StoreOp::create(b, loc, sum, out, ValueRange{t, h, d});
      });
    });
  });
}
