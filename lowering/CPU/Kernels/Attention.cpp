//===- Attention.cpp - KV-cache writes and causal attention -----*- C++ -*-===//
//
// The cache of one layer is a [capacity, kv_heads, key_dim + value_dim] f32
// buffer: for each token and KV head, the key followed by the value, so one
// cache row serves both dot products and the value update. Attention uses an
// online softmax (running max and sum), so no score buffer of the context
// length is needed.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cstdio>
#include <limits>

using namespace mlir;
using namespace xfmr::kernels;

/// Prefill attention tiles: tokens per task, keys per chunk (a chunk of
/// f32 keys and values of one head, 128 + 128 channels, is 32 KiB).
static constexpr int64_t kQueryTile = 16, kKeyChunk = 32;

static MemRefType cacheBuffer(MLIRContext *context, int64_t capacity,
                              int64_t heads, int64_t rowSize,
                              CacheFormat format) {
  return MemRefType::get({capacity, heads, rowSize},
                         storageTypeOf(format.format, context));
}

/// The scales of an 8-bit cache, or no argument.
static Type scaleBuffer(MLIRContext *context, int64_t capacity, int64_t heads,
                        CacheFormat format) {
  if (!format.scaled)
    return Type();
  return MemRefType::get({capacity, heads, 2}, Float32Type::get(context));
}

static MemRefType perHead(MLIRContext *context, int64_t heads, int64_t dim) {
  return MemRefType::get({ShapedType::kDynamic, heads, dim},
                         Float32Type::get(context));
}

namespace {
/// A run of f32 channels src[prefix..., begin + i], i < length, that becomes
/// consecutive channels of one cache entry.
struct Segment {
  Value source;
  SmallVector<Value> prefix;
  Value begin;
  int64_t length;
};

/// Writes one cache entry (the key or the value of one token and head):
/// `segments` fill channels [offset, offset + total). 8-bit formats first
/// store scale = max(max-abs, 1e-12) / max-code at scales[row, head, slot].
void writeEntry(OpBuilder &b, Location loc, ArrayRef<Segment> segments,
                Value cache, Value scales, Value row, Value head,
                int64_t offset, int64_t slot, WeightFormat format) {
  // `scales` is set exactly for the 8-bit formats.
  Value zero = index(b, loc, 0);
  auto at = [&](OpBuilder &b, Location loc, const Segment &segment, Value i) {
    SmallVector<Value> indices(segment.prefix);
    indices.push_back(arith::AddIOp::create(b, loc, segment.begin, i));
    return memref::LoadOp::create(b, loc, segment.source, indices).getResult();
  };
  Value scale;
  if (scales) {
    Value amax = f32(b, loc, 0.0);
    for (const Segment &segment : segments)
      amax = maxAbs(b, loc, zero, index(b, loc, segment.length), amax,
                    [&](OpBuilder &b, Location loc, Value i) {
                      return at(b, loc, segment, i);
                    });
    scale = scaleForMaxAbs(b, loc, amax, format);
    memref::StoreOp::create(b, loc, scale, scales,
                            ValueRange{row, head, index(b, loc, slot)});
  }
  int64_t channel = offset;
  for (const Segment &segment : segments) {
    int64_t first = channel;
    serialFor(
        b, loc, zero, index(b, loc, segment.length),
        [&](OpBuilder &b, Location loc, Value i) {
          Value v = at(b, loc, segment, i);
          if (scale)
            v = arith::DivFOp::create(b, loc, v, scale);
          Value target = arith::AddIOp::create(b, loc, i, index(b, loc, first));
          memref::StoreOp::create(b, loc, encodeCacheValue(b, loc, v, format),
                                  cache, ValueRange{row, head, target});
        });
    channel += segment.length;
  }
}

std::string formatSuffix(CacheFormat format) {
  return format.format == WeightFormat::F32
             ? ""
             : "_" + formatName(format.format).str();
}

} // namespace

func::FuncOp xfmr::kernels::cacheWrite(KernelLibrary &lib,
                                       const CacheWriteKernel &kernel) {
  int64_t capacity = kernel.capacity;
  int64_t heads = kernel.heads;
  int64_t keyDim = kernel.keyDim;
  int64_t valueDim = kernel.valueDim;
  CacheFormat format = kernel.format;
  std::optional<int64_t> sinks = kernel.sinks;
  MLIRContext *context = lib.getModule().getContext();
  std::string key = "cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(keyDim) + "x" +
                    std::to_string(valueDim) + formatSuffix(format);
  if (sinks)
    key += "_ring" + std::to_string(*sinks);
  CacheWriteOperands<Type> types{
      perHead(context, heads, keyDim), perHead(context, heads, valueDim),
      cacheBuffer(context, capacity, heads, keyDim + valueDim, format),
      scaleBuffer(context, capacity, heads, format), IndexType::get(context)};
  return lib.get<CacheWriteOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, CacheWriteOperands<Value> args) {
        Value k = args.key, v = args.value, cache = args.cache;
        Value scales = args.scales, start = args.start;
        Value tokens = memref::DimOp::create(b, loc, k, 0);
        Value zero = index(b, loc, 0);
        parallelFor(
            b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
              Value row =
                  cacheSlot(b, loc, arith::AddIOp::create(b, loc, start, t),
                            capacity, sinks);
              serialFor(
                  b, loc, zero, index(b, loc, heads),
                  [&](OpBuilder &b, Location loc, Value h) {
                    writeEntry(b, loc, {Segment{k, {t, h}, zero, keyDim}},
                               cache, scales, row, h, 0, 0, format.format);
                    writeEntry(b, loc, {Segment{v, {t, h}, zero, valueDim}},
                               cache, scales, row, h, keyDim, 1, format.format);
                  });
            });
      });
}

func::FuncOp xfmr::kernels::mlaCacheWrite(KernelLibrary &lib,
                                          const MLACacheWriteKernel &kernel) {
  int64_t capacity = kernel.capacity;
  int64_t heads = kernel.heads;
  int64_t nope = kernel.nope;
  int64_t rope = kernel.rope;
  int64_t valueDim = kernel.valueDim;
  CacheFormat format = kernel.format;
  std::optional<int64_t> sinks = kernel.sinks;
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  std::string key = "mla_cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(nope) + "x" +
                    std::to_string(rope) + "x" + std::to_string(valueDim) +
                    formatSuffix(format);
  if (sinks)
    key += "_ring" + std::to_string(*sinks);
  MLACacheWriteOperands<Type> types{
      MemRefType::get({ShapedType::kDynamic, heads * (nope + valueDim)},
                      f32Type),
      perHead(context, 1, rope),
      cacheBuffer(context, capacity, heads, nope + rope + valueDim, format),
      scaleBuffer(context, capacity, heads, format), IndexType::get(context)};
  return lib.get<MLACacheWriteOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, MLACacheWriteOperands<Value> args) {
        Value kv = args.kv, ropeKey = args.ropeKey, cache = args.cache;
        Value scales = args.scales, start = args.start;
        Value tokens = memref::DimOp::create(b, loc, kv, 0);
        Value zero = index(b, loc, 0);
        parallelFor(
            b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
              Value row =
                  cacheSlot(b, loc, arith::AddIOp::create(b, loc, start, t),
                            capacity, sinks);
              serialFor(
                  b, loc, zero, index(b, loc, heads),
                  [&](OpBuilder &b, Location loc, Value h) {
                    // kv rows are head-major [k_nope | v]; the key is [k_nope |
                    // k_pe] with k_pe shared by all heads.
                    Value base = arith::MulIOp::create(
                        b, loc, h, index(b, loc, nope + valueDim));
                    Value valueBegin = arith::AddIOp::create(
                        b, loc, base, index(b, loc, nope));
                    writeEntry(b, loc,
                               {Segment{kv, {t}, base, nope},
                                Segment{ropeKey, {t, zero}, zero, rope}},
                               cache, scales, row, h, 0, 0, format.format);
                    writeEntry(b, loc, {Segment{kv, {t}, valueBegin, valueDim}},
                               cache, scales, row, h, nope + rope, 1,
                               format.format);
                  });
            });
      });
}

func::FuncOp xfmr::kernels::attend(KernelLibrary &lib,
                                   const AttendKernel &kernel) {
  int64_t capacity = kernel.capacity;
  int64_t queryHeads = kernel.queryHeads;
  int64_t kvHeads = kernel.kvHeads;
  int64_t keyDim = kernel.keyDim;
  int64_t valueDim = kernel.valueDim;
  double scale = kernel.scale;
  std::optional<int64_t> window = kernel.window;
  CacheFormat storage = kernel.format;
  std::optional<int64_t> sinks = kernel.sinks;
  MLIRContext *context = lib.getModule().getContext();
  char scaleText[32];
  std::snprintf(scaleText, sizeof(scaleText), "%a", scale);
  std::string key = "attend_" + std::to_string(capacity) + "x" +
                    std::to_string(queryHeads) + "x" + std::to_string(kvHeads) +
                    "x" + std::to_string(keyDim) + "x" +
                    std::to_string(valueDim) + "_" + scaleText;
  if (window)
    key += "_w" + std::to_string(*window);
  if (sinks)
    key += "_ring" + std::to_string(*sinks);
  key += formatSuffix(storage);
  int64_t group = queryHeads / kvHeads;
  WeightFormat format = storage.format;
  bool scaled = storage.scaled;
  int64_t width = lib.vectorWidth();
  AttendOperands<Type> types{
      perHead(context, queryHeads, keyDim),
      cacheBuffer(context, capacity, kvHeads, keyDim + valueDim, storage),
      scaleBuffer(context, capacity, kvHeads, storage), IndexType::get(context),
      perHead(context, queryHeads, valueDim)};
  return lib.get<AttendOperands>(
      key, types, [&](OpBuilder &b, Location loc, AttendOperands<Value> args) {
        Value q = args.query, cache = args.cache, scales = args.scales;
        Value start = args.start, out = args.output;
        Value table = isFP8(format) ? lib.lookupTable(b, loc, format) : Value();
        Value tokens = memref::DimOp::create(b, loc, q, 0);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());
        // Score of key j (a cache slot) for query (t, h), scaled, and the
        // scale of value j (8-bit caches).
        auto scoreOf = [&](OpBuilder &b, Location loc, Value t, Value h,
                           Value kvHead, Value j) {
          Value score = dot(b, loc, q, {t, h}, zero, cache, {j, kvHead}, zero,
                            keyDim, format, table, width);
          Value valueScale;
          if (scaled) {
            Value keyScale = memref::LoadOp::create(
                b, loc, scales, ValueRange{j, kvHead, zero});
            score = arith::MulFOp::create(b, loc, score, keyScale);
            valueScale = memref::LoadOp::create(b, loc, scales,
                                                ValueRange{j, kvHead, one});
          }
          score = arith::MulFOp::create(b, loc, score, f32(b, loc, scale));
          return std::pair(score, valueScale);
        };
        bool vectorized = valueDim % width == 0 && valueDim <= 256;
        auto vectorType = VectorType::get({width}, b.getF32Type());
        Type i32 = b.getI32Type();
        auto laneType = VectorType::get({width}, i32);
        int64_t pieces = valueDim / width;
        // Keys [lo, hi) (key indices; `slot` maps them to cache slots) of
        // query (t, h) on the state {max, sum, output vectors...}.
        auto keyLoop =
            [&](OpBuilder &b, Location loc, Value t, Value h, Value kvHead,
                Value lo, Value hi,
                const std::function<Value(OpBuilder &, Location, Value)> &slot,
                ValueRange init) {
              return scf::ForOp::create(
                  b, loc, lo, hi, one, init,
                  [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                    Value j = slot(b, loc, i);
                    auto [score, valueScale] = scoreOf(b, loc, t, h, kvHead, j);
                    SoftmaxStep step =
                        onlineSoftmaxStep(b, loc, state[0], state[1], score);
                    Value valueWeight =
                        valueScale ? arith::MulFOp::create(b, loc, step.weight,
                                                           valueScale)
                                         .getResult()
                                   : step.weight;
                    Value c = vector::BroadcastOp::create(b, loc, vectorType,
                                                          step.correction);
                    Value w = vector::BroadcastOp::create(b, loc, vectorType,
                                                          valueWeight);
                    SmallVector<Value> next{step.max, step.sum};
                    for (int64_t p = 0; p < pieces; ++p) {
                      Value v = loadVectorAsF32(
                          b, loc, cache,
                          {j, kvHead, index(b, loc, keyDim + p * width)},
                          format, table, width);
                      Value kept =
                          arith::MulFOp::create(b, loc, state[2 + p], c);
                      next.push_back(vector::FMAOp::create(b, loc, w, v, kept));
                    }
                    scf::YieldOp::create(b, loc, next);
                  });
            };
        Value vzero = arith::ConstantOp::create(
            b, loc, DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)));
        Value vNegInf = arith::ConstantOp::create(
            b, loc,
            DenseElementsAttr::get(
                vectorType,
                b.getF32FloatAttr(-std::numeric_limits<float>::infinity())));
        // Prefill task `task` of `tiles` x kvHeads: its KV head and tokens
        // [t0, t1). Causal tiles grow with their index and OpenMP hands each
        // thread a contiguous range of tasks: the first tile is paired with
        // the last, the second with the one before, ... so every range holds
        // as much work as the others.
        struct PrefillTile {
          Value kvHead, t0, t1;
        };
        auto prefillTile = [&](OpBuilder &b, Location loc, Value task,
                               Value tiles) {
          Value tileSize = index(b, loc, kQueryTile);
          Value kvHead =
              arith::RemUIOp::create(b, loc, task, index(b, loc, kvHeads));
          Value order =
              arith::DivUIOp::create(b, loc, task, index(b, loc, kvHeads));
          Value two = index(b, loc, 2);
          Value half = arith::DivUIOp::create(b, loc, order, two);
          Value parity = arith::RemUIOp::create(b, loc, order, two);
          Value odd = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            parity, one);
          Value lastTile = arith::SubIOp::create(b, loc, tiles, one);
          Value fromEnd = arith::SubIOp::create(b, loc, lastTile, half);
          Value tile = arith::SelectOp::create(b, loc, odd, fromEnd, half);
          Value t0 = arith::MulIOp::create(b, loc, tile, tileSize);
          Value tileEnd = arith::AddIOp::create(b, loc, t0, tileSize);
          Value t1 = arith::MinUIOp::create(b, loc, tokens, tileEnd);
          return PrefillTile{kvHead, t0, t1};
        };
        // outputs[row] = outputs[row] * state[2, row] + sum over keys
        // c0 + [0, length) of weightOf(jl, row) * value(c0 + jl), for each of
        // `rows` (outputs: [*, valueDim]; state row 2: the chunk's
        // corrections), `block` value vectors at a time: each value vector is
        // loaded once for every row.
        auto accumulateValues =
            [&](OpBuilder &b, Location loc, Value kvHead, ArrayRef<Value> rows,
                Value state, Value outputs, Value c0, Value length,
                int64_t block,
                function_ref<Value(OpBuilder &, Location, Value, Value)>
                    weightOf) {
              int64_t count = static_cast<int64_t>(rows.size());
              Value correctionRow = index(b, loc, 2);
              for (int64_t p0 = 0; p0 < pieces; p0 += block) {
                int64_t span = std::min(block, pieces - p0);
                SmallVector<Value> init;
                for (int64_t r = 0; r < count; ++r) {
                  Value correction = vector::BroadcastOp::create(
                      b, loc, vectorType,
                      memref::LoadOp::create(
                          b, loc, state, ValueRange{correctionRow, rows[r]}));
                  for (int64_t p = 0; p < span; ++p) {
                    Value acc = vector::LoadOp::create(
                        b, loc, vectorType, outputs,
                        ValueRange{rows[r], index(b, loc, (p0 + p) * width)});
                    init.push_back(
                        arith::MulFOp::create(b, loc, acc, correction));
                  }
                }
                auto values = scf::ForOp::create(
                    b, loc, zero, length, one, init,
                    [&](OpBuilder &b, Location loc, Value jl, ValueRange acc) {
                      Value j = arith::AddIOp::create(b, loc, c0, jl);
                      SmallVector<Value> v;
                      for (int64_t p = 0; p < span; ++p)
                        v.push_back(loadVectorAsF32(
                            b, loc, cache,
                            {j, kvHead,
                             index(b, loc, keyDim + (p0 + p) * width)},
                            format, table, width));
                      SmallVector<Value> next;
                      for (int64_t r = 0; r < count; ++r) {
                        Value weight = vector::BroadcastOp::create(
                            b, loc, vectorType, weightOf(b, loc, jl, rows[r]));
                        for (int64_t p = 0; p < span; ++p)
                          next.push_back(vector::FMAOp::create(
                              b, loc, weight, v[p], acc[r * span + p]));
                      }
                      scf::YieldOp::create(b, loc, next);
                    });
                for (int64_t r = 0; r < count; ++r)
                  for (int64_t p = 0; p < span; ++p)
                    vector::StoreOp::create(
                        b, loc, values.getResult(r * span + p), outputs,
                        ValueRange{rows[r], index(b, loc, (p0 + p) * width)});
              }
            };
        // One chunk of keys [lo, hi) for query row r of a tile, as
        // FlashAttention does it: every score of the chunk first (independent
        // dot products the core overlaps), then one max and one rescale of
        // the running output per chunk, then the weighted values. `scores`
        // and `valueScales` hold the chunk's scores, then value weights.
        auto blockUpdate = [&](OpBuilder &b, Location loc, Value t, Value h,
                               Value kvHead, Value r, Value lo, Value hi,
                               Value stats, Value outputs, Value scores,
                               Value valueScales) {
          auto scoresLoop = scf::ForOp::create(
              b, loc, lo, hi, one, ValueRange{negInf},
              [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                auto [score, valueScale] = scoreOf(b, loc, t, h, kvHead, i);
                Value local = arith::SubIOp::create(b, loc, i, lo);
                memref::StoreOp::create(b, loc, score, scores, local);
                if (valueScale)
                  memref::StoreOp::create(b, loc, valueScale, valueScales,
                                          local);
                Value top = arith::MaximumFOp::create(b, loc, state[0], score);
                scf::YieldOp::create(b, loc, top);
              });
          Value oldMax =
              memref::LoadOp::create(b, loc, stats, ValueRange{r, zero});
          Value oldSum =
              memref::LoadOp::create(b, loc, stats, ValueRange{r, one});
          Value newMax = arith::MaximumFOp::create(b, loc, oldMax,
                                                   scoresLoop.getResult(0));
          Value drop = arith::SubFOp::create(b, loc, oldMax, newMax);
          Value correction = math::ExpOp::create(b, loc, drop);
          auto weightsLoop = scf::ForOp::create(
              b, loc, lo, hi, one, ValueRange{f32(b, loc, 0.0)},
              [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                Value local = arith::SubIOp::create(b, loc, i, lo);
                Value score = memref::LoadOp::create(b, loc, scores, local);
                Value shifted = arith::SubFOp::create(b, loc, score, newMax);
                Value weight = math::ExpOp::create(b, loc, shifted);
                // The value scale folds into the value's weight.
                Value valueWeight = weight;
                if (scaled) {
                  Value valueScale =
                      memref::LoadOp::create(b, loc, valueScales, local);
                  valueWeight =
                      arith::MulFOp::create(b, loc, weight, valueScale);
                }
                memref::StoreOp::create(b, loc, valueWeight, scores, local);
                Value total = arith::AddFOp::create(b, loc, state[0], weight);
                scf::YieldOp::create(b, loc, total);
              });
          Value kept = arith::MulFOp::create(b, loc, oldSum, correction);
          Value newSum =
              arith::AddFOp::create(b, loc, kept, weightsLoop.getResult(0));
          memref::StoreOp::create(b, loc, newMax, stats, ValueRange{r, zero});
          memref::StoreOp::create(b, loc, newSum, stats, ValueRange{r, one});
          Value rescale =
              vector::BroadcastOp::create(b, loc, vectorType, correction);
          SmallVector<Value> init;
          for (int64_t p = 0; p < pieces; ++p) {
            Value acc =
                vector::LoadOp::create(b, loc, vectorType, outputs,
                                       ValueRange{r, index(b, loc, p * width)});
            init.push_back(arith::MulFOp::create(b, loc, acc, rescale));
          }
          auto valuesLoop = scf::ForOp::create(
              b, loc, lo, hi, one, init,
              [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
                Value local = arith::SubIOp::create(b, loc, i, lo);
                Value weight = memref::LoadOp::create(b, loc, scores, local);
                Value spread =
                    vector::BroadcastOp::create(b, loc, vectorType, weight);
                SmallVector<Value> next;
                for (int64_t p = 0; p < pieces; ++p) {
                  Value v = loadVectorAsF32(
                      b, loc, cache,
                      {i, kvHead, index(b, loc, keyDim + p * width)}, format,
                      table, width);
                  next.push_back(
                      vector::FMAOp::create(b, loc, spread, v, acc[p]));
                }
                scf::YieldOp::create(b, loc, next);
              });
          for (int64_t p = 0; p < pieces; ++p)
            vector::StoreOp::create(b, loc, valuesLoop.getResult(p), outputs,
                                    ValueRange{r, index(b, loc, p * width)});
        };
        // Prefill in tiles (FlashAttention's loop order): a task takes up to
        // kQueryTile tokens of one KV head with all the query heads that
        // share it, and walks the keys in chunks of kKeyChunk. Every query
        // of the tile consumes a chunk while it is in cache, so the keys and
        // values are read once per tile instead of once per query; each
        // query's running max, sum and output wait in a small stack buffer
        // between chunks. (Eviction rings number keys differently per
        // query: they keep the per-query loop.)
        auto tiled = [&](OpBuilder &b, Location loc) {
          Value tileSize = index(b, loc, kQueryTile);
          Value tiles = arith::CeilDivUIOp::create(b, loc, tokens, tileSize);
          Value tasks =
              arith::MulIOp::create(b, loc, tiles, index(b, loc, kvHeads));
          parallelFor(
              b, loc, zero, tasks, [&](OpBuilder &b, Location loc, Value task) {
                PrefillTile tile = prefillTile(b, loc, task, tiles);
                Value kvHead = tile.kvHead, t0 = tile.t0, t1 = tile.t1;
                auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
                Block *body = new Block();
                scope.getBodyRegion().push_back(body);
                OpBuilder::InsertionGuard guard(b);
                b.setInsertionPointToStart(body);
                // State of query (t - t0) * group + g: max, sum, output.
                int64_t queries = kQueryTile * group;
                Value stats = memref::AllocaOp::create(
                    b, loc, MemRefType::get({queries, 2}, b.getF32Type()));
                Value outputs = memref::AllocaOp::create(
                    b, loc,
                    MemRefType::get({queries, valueDim}, b.getF32Type()));
                Value scores = memref::AllocaOp::create(
                    b, loc, MemRefType::get({kKeyChunk}, b.getF32Type()));
                Value valueScales = memref::AllocaOp::create(
                    b, loc, MemRefType::get({kKeyChunk}, b.getF32Type()));
                Value queryCount = index(b, loc, queries);
                serialFor(b, loc, zero, queryCount,
                          [&](OpBuilder &b, Location loc, Value r) {
                            memref::StoreOp::create(b, loc, negInf, stats,
                                                    ValueRange{r, zero});
                            memref::StoreOp::create(b, loc, f32(b, loc, 0.0),
                                                    stats, ValueRange{r, one});
                            for (int64_t p = 0; p < pieces; ++p)
                              vector::StoreOp::create(
                                  b, loc, vzero, outputs,
                                  ValueRange{r, index(b, loc, p * width)});
                          });
                Value firstPosition = arith::AddIOp::create(b, loc, start, t0);
                Value lastPosition = arith::AddIOp::create(b, loc, start, t1);
                VisibleKeys firstKeys =
                    visibleKeys(b, loc, firstPosition, capacity, window, sinks);
                // Keys up to the tile's last position (its end is that + 1).
                Value keyEnd = lastPosition;
                Value chunk = index(b, loc, kKeyChunk);
                scf::ForOp::create(
                    b, loc, firstKeys.begin, keyEnd, chunk, ValueRange{},
                    [&](OpBuilder &b, Location loc, Value c0, ValueRange) {
                      Value chunkEnd = arith::AddIOp::create(b, loc, c0, chunk);
                      Value c1 =
                          arith::MinUIOp::create(b, loc, chunkEnd, keyEnd);
                      serialFor(
                          b, loc, t0, t1,
                          [&](OpBuilder &b, Location loc, Value t) {
                            Value position =
                                arith::AddIOp::create(b, loc, start, t);
                            VisibleKeys keys = visibleKeys(
                                b, loc, position, capacity, window, sinks);
                            Value lo =
                                arith::MaxUIOp::create(b, loc, c0, keys.begin);
                            Value hi =
                                arith::MinUIOp::create(b, loc, c1, keys.end);
                            Value any = arith::CmpIOp::create(
                                b, loc, arith::CmpIPredicate::ult, lo, hi);
                            scf::IfOp::create(
                                b, loc, any, [&](OpBuilder &b, Location loc) {
                                  Value local =
                                      arith::SubIOp::create(b, loc, t, t0);
                                  Value base = arith::MulIOp::create(
                                      b, loc, local, index(b, loc, group));
                                  Value firstHead = arith::MulIOp::create(
                                      b, loc, kvHead, index(b, loc, group));
                                  serialFor(
                                      b, loc, zero, index(b, loc, group),
                                      [&](OpBuilder &b, Location loc, Value g) {
                                        Value r = arith::AddIOp::create(
                                            b, loc, base, g);
                                        Value h = arith::AddIOp::create(
                                            b, loc, firstHead, g);
                                        blockUpdate(b, loc, t, h, kvHead, r, lo,
                                                    hi, stats, outputs, scores,
                                                    valueScales);
                                      });
                                  scf::YieldOp::create(b, loc);
                                });
                          });
                      scf::YieldOp::create(b, loc);
                    });
                // out = output / sum for every query of the tile.
                serialFor(
                    b, loc, t0, t1, [&](OpBuilder &b, Location loc, Value t) {
                      Value local = arith::SubIOp::create(b, loc, t, t0);
                      Value base = arith::MulIOp::create(b, loc, local,
                                                         index(b, loc, group));
                      Value firstHead = arith::MulIOp::create(
                          b, loc, kvHead, index(b, loc, group));
                      serialFor(
                          b, loc, zero, index(b, loc, group),
                          [&](OpBuilder &b, Location loc, Value g) {
                            Value r = arith::AddIOp::create(b, loc, base, g);
                            Value h =
                                arith::AddIOp::create(b, loc, firstHead, g);
                            Value sum = memref::LoadOp::create(
                                b, loc, stats, ValueRange{r, one});
                            Value inverse = arith::DivFOp::create(
                                b, loc, f32(b, loc, 1.0), sum);
                            Value spread = vector::BroadcastOp::create(
                                b, loc, vectorType, inverse);
                            for (int64_t p = 0; p < pieces; ++p) {
                              Value channel = index(b, loc, p * width);
                              Value acc = vector::LoadOp::create(
                                  b, loc, vectorType, outputs,
                                  ValueRange{r, channel});
                              Value result =
                                  arith::MulFOp::create(b, loc, acc, spread);
                              vector::StoreOp::create(
                                  b, loc, result, out,
                                  ValueRange{t, h, channel});
                            }
                          });
                    });
                memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
              });
        };
        // Prefill as two small matrix products per chunk of keys
        // (FlashAttention-2's inner loop shaped for a CPU's vector
        // registers). A task takes kQueryTile tokens of one KV head with the
        // `group` query heads that share it: `rows` query rows, laid out in
        // vector lanes.
        //  - Q^T [keyDim, paddedRows]: the tile's queries, scaled and
        //    transposed once per task.
        //  - S^T = K Q^T per chunk: a key's channel, broadcast, times a row
        //    of Q^T accumulates keyBlock keys x laneVectors vectors of
        //    scores; no horizontal sums. Masked keys (causal, window, past
        //    the chunk, rows past the tile) score -inf.
        //  - the online softmax of all rows at once: one max, correction
        //    and set of weights per chunk, in vector exps.
        //  - O += P V: rowBlock rows x pieceBlock vectors of outputs stay in
        //    registers over the chunk; each value vector is loaded once for
        //    rowBlock rows.
        int64_t rows = kQueryTile * group;
        int64_t laneVectors = (rows + width - 1) / width;
        int64_t paddedRows = laneVectors * width;
        int64_t keyBlock = laneVectors <= 3 ? 4 : laneVectors <= 6 ? 2 : 1;
        int64_t rowBlock = width >= 16 ? 4 : 2;
        int64_t pieceBlock = std::max<int64_t>(
            1, std::min<int64_t>(pieces, (width >= 16 ? 16 : 8) / rowBlock));
        bool gemmTiles = vectorized && !sinks && laneVectors <= 8 &&
                         kKeyChunk % keyBlock == 0;
        auto tiledGemm = [&](OpBuilder &b, Location loc) {
          Value tileSize = index(b, loc, kQueryTile);
          Value tiles = arith::CeilDivUIOp::create(b, loc, tokens, tileSize);
          Value tasks =
              arith::MulIOp::create(b, loc, tiles, index(b, loc, kvHeads));
          Value groupSize = index(b, loc, group);
          parallelFor(
              b, loc, zero, tasks, [&](OpBuilder &b, Location loc, Value task) {
                PrefillTile tile = prefillTile(b, loc, task, tiles);
                Value kvHead = tile.kvHead, t0 = tile.t0, t1 = tile.t1;
                Value two = index(b, loc, 2);
                Value firstHead =
                    arith::MulIOp::create(b, loc, kvHead, groupSize);
                auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
                Block *body = new Block();
                scope.getBodyRegion().push_back(body);
                OpBuilder::InsertionGuard guard(b);
                b.setInsertionPointToStart(body);
                auto f32Buffer = [&](ArrayRef<int64_t> shape) -> Value {
                  return memref::AllocaOp::create(
                      b, loc, MemRefType::get(shape, b.getF32Type()));
                };
                Value qt = f32Buffer({keyDim, paddedRows});
                Value ot = f32Buffer({rows, valueDim});
                // Scores of the chunk, then its weights (times value scales).
                Value pt = f32Buffer({kKeyChunk, paddedRows});
                // Per row: running max, running sum, this chunk's correction.
                Value state = f32Buffer({3, paddedRows});
                // Per row: the visible keys [lo, hi).
                Value bounds = memref::AllocaOp::create(
                    b, loc, MemRefType::get({2, paddedRows}, i32));
                serialFor(
                    b, loc, zero, index(b, loc, paddedRows),
                    [&](OpBuilder &b, Location loc, Value lane) {
                      Value token = arith::AddIOp::create(
                          b, loc, t0,
                          arith::DivUIOp::create(b, loc, lane, groupSize));
                      Value g = arith::RemUIOp::create(b, loc, lane, groupSize);
                      Value inRows = arith::CmpIOp::create(
                          b, loc, arith::CmpIPredicate::ult, lane,
                          index(b, loc, rows));
                      Value inTile = arith::CmpIOp::create(
                          b, loc, arith::CmpIPredicate::ult, token, t1);
                      Value isRow =
                          arith::AndIOp::create(b, loc, inRows, inTile);
                      auto branch = scf::IfOp::create(
                          b, loc, isRow,
                          [&](OpBuilder &b, Location loc) {
                            Value position =
                                arith::AddIOp::create(b, loc, start, token);
                            VisibleKeys keys = visibleKeys(
                                b, loc, position, capacity, window, sinks);
                            Value h =
                                arith::AddIOp::create(b, loc, firstHead, g);
                            serialFor(b, loc, zero, index(b, loc, keyDim),
                                      [&](OpBuilder &b, Location loc, Value d) {
                                        Value x = memref::LoadOp::create(
                                            b, loc, q, ValueRange{token, h, d});
                                        Value scaled = arith::MulFOp::create(
                                            b, loc, x, f32(b, loc, scale));
                                        memref::StoreOp::create(
                                            b, loc, scaled, qt,
                                            ValueRange{d, lane});
                                      });
                            scf::YieldOp::create(
                                b, loc,
                                ValueRange{arith::IndexCastOp::create(
                                               b, loc, i32, keys.begin),
                                           arith::IndexCastOp::create(
                                               b, loc, i32, keys.end)});
                          },
                          [&](OpBuilder &b, Location loc) {
                            serialFor(b, loc, zero, index(b, loc, keyDim),
                                      [&](OpBuilder &b, Location loc, Value d) {
                                        memref::StoreOp::create(
                                            b, loc, f32(b, loc, 0.0), qt,
                                            ValueRange{d, lane});
                                      });
                            Value none = arith::ConstantOp::create(
                                b, loc, b.getI32IntegerAttr(0));
                            scf::YieldOp::create(b, loc,
                                                 ValueRange{none, none});
                          });
                      memref::StoreOp::create(b, loc, branch.getResult(0),
                                              bounds, ValueRange{zero, lane});
                      memref::StoreOp::create(b, loc, branch.getResult(1),
                                              bounds, ValueRange{one, lane});
                      memref::StoreOp::create(b, loc, negInf, state,
                                              ValueRange{zero, lane});
                      memref::StoreOp::create(b, loc, f32(b, loc, 0.0), state,
                                              ValueRange{one, lane});
                    });
                serialFor(b, loc, zero, index(b, loc, rows),
                          [&](OpBuilder &b, Location loc, Value r) {
                            for (int64_t p = 0; p < pieces; ++p)
                              vector::StoreOp::create(
                                  b, loc, vzero, ot,
                                  ValueRange{r, index(b, loc, p * width)});
                          });
                Value firstPosition = arith::AddIOp::create(b, loc, start, t0);
                VisibleKeys firstKeys =
                    visibleKeys(b, loc, firstPosition, capacity, window, sinks);
                Value keyEnd = arith::AddIOp::create(b, loc, start, t1);
                Value chunk = index(b, loc, kKeyChunk);
                Value lastSlot = index(b, loc, capacity - 1);
                scf::ForOp::create(
                    b, loc, firstKeys.begin, keyEnd, chunk, ValueRange{},
                    [&](OpBuilder &b, Location loc, Value c0, ValueRange) {
                      Value c1 = arith::MinUIOp::create(
                          b, loc, arith::AddIOp::create(b, loc, c0, chunk),
                          keyEnd);
                      Value length = arith::SubIOp::create(b, loc, c1, c0);
                      // S^T, masked, into pt; the chunk's max per row.
                      SmallVector<Value> maxInit(laneVectors, vNegInf);
                      auto scoreBlocks = scf::ForOp::create(
                          b, loc, c0, c1, index(b, loc, keyBlock), maxInit,
                          [&](OpBuilder &b, Location loc, Value jb,
                              ValueRange chunkMax) {
                            SmallVector<Value> slots;
                            for (int64_t k = 0; k < keyBlock; ++k)
                              slots.push_back(arith::MinUIOp::create(
                                  b, loc,
                                  arith::AddIOp::create(b, loc, jb,
                                                        index(b, loc, k)),
                                  lastSlot));
                            SmallVector<Value> accInit(keyBlock * laneVectors,
                                                       vzero);
                            auto channels = scf::ForOp::create(
                                b, loc, zero, index(b, loc, keyDim), one,
                                accInit,
                                [&](OpBuilder &b, Location loc, Value d,
                                    ValueRange acc) {
                                  SmallVector<Value> queries;
                                  for (int64_t i = 0; i < laneVectors; ++i)
                                    queries.push_back(vector::LoadOp::create(
                                        b, loc, vectorType, qt,
                                        ValueRange{d,
                                                   index(b, loc, i * width)}));
                                  SmallVector<Value> next;
                                  for (int64_t k = 0; k < keyBlock; ++k) {
                                    Value channel = loadAsF32(
                                        b, loc, cache, {slots[k], kvHead, d},
                                        format, table);
                                    Value spread = vector::BroadcastOp::create(
                                        b, loc, vectorType, channel);
                                    for (int64_t i = 0; i < laneVectors; ++i)
                                      next.push_back(vector::FMAOp::create(
                                          b, loc, spread, queries[i],
                                          acc[k * laneVectors + i]));
                                  }
                                  scf::YieldOp::create(b, loc, next);
                                });
                            SmallVector<Value> maxima(chunkMax.begin(),
                                                      chunkMax.end());
                            for (int64_t k = 0; k < keyBlock; ++k) {
                              Value j = arith::AddIOp::create(b, loc, jb,
                                                              index(b, loc, k));
                              Value inChunk = arith::CmpIOp::create(
                                  b, loc, arith::CmpIPredicate::ult, j, c1);
                              Value key = vector::BroadcastOp::create(
                                  b, loc, laneType,
                                  arith::IndexCastOp::create(b, loc, i32, j));
                              Value keyScale;
                              if (scaled)
                                keyScale = vector::BroadcastOp::create(
                                    b, loc, vectorType,
                                    memref::LoadOp::create(
                                        b, loc, scales,
                                        ValueRange{slots[k], kvHead, zero}));
                              // Rows j - c0 < kKeyChunk: blocks divide a chunk.
                              Value local =
                                  arith::SubIOp::create(b, loc, j, c0);
                              Value row = arith::MinUIOp::create(
                                  b, loc, local, index(b, loc, kKeyChunk - 1));
                              for (int64_t i = 0; i < laneVectors; ++i) {
                                Value lane = index(b, loc, i * width);
                                Value lo = vector::LoadOp::create(
                                    b, loc, laneType, bounds,
                                    ValueRange{zero, lane});
                                Value hi = vector::LoadOp::create(
                                    b, loc, laneType, bounds,
                                    ValueRange{one, lane});
                                Value afterLo = arith::CmpIOp::create(
                                    b, loc, arith::CmpIPredicate::sge, key, lo);
                                Value beforeHi = arith::CmpIOp::create(
                                    b, loc, arith::CmpIPredicate::slt, key, hi);
                                Value visible = arith::AndIOp::create(
                                    b, loc, afterLo, beforeHi);
                                Value score =
                                    channels.getResult(k * laneVectors + i);
                                if (keyScale)
                                  score = arith::MulFOp::create(b, loc, score,
                                                                keyScale);
                                score = arith::SelectOp::create(b, loc, visible,
                                                                score, vNegInf);
                                score = arith::SelectOp::create(b, loc, inChunk,
                                                                score, vNegInf);
                                vector::StoreOp::create(b, loc, score, pt,
                                                        ValueRange{row, lane});
                                maxima[i] = arith::MaximumFOp::create(
                                    b, loc, maxima[i], score);
                              }
                            }
                            scf::YieldOp::create(b, loc, maxima);
                          });
                      // The online softmax of every row: new max, correction,
                      // weights (times the value scales) and sum.
                      SmallVector<Value> shifts, sumInit;
                      for (int64_t i = 0; i < laneVectors; ++i) {
                        Value lane = index(b, loc, i * width);
                        Value oldMax = vector::LoadOp::create(
                            b, loc, vectorType, state, ValueRange{zero, lane});
                        Value newMax = arith::MaximumFOp::create(
                            b, loc, oldMax, scoreBlocks.getResult(i));
                        // A row that saw no key yet keeps max -inf: shift by 0
                        // so its weights and correction are exp(-inf) = 0.
                        Value empty = arith::CmpFOp::create(
                            b, loc, arith::CmpFPredicate::OEQ, newMax, vNegInf);
                        Value shift = arith::SelectOp::create(b, loc, empty,
                                                              vzero, newMax);
                        Value correction = vectorExp(
                            b, loc,
                            arith::SubFOp::create(b, loc, oldMax, shift));
                        vector::StoreOp::create(b, loc, newMax, state,
                                                ValueRange{zero, lane});
                        vector::StoreOp::create(b, loc, correction, state,
                                                ValueRange{two, lane});
                        Value oldSum = vector::LoadOp::create(
                            b, loc, vectorType, state, ValueRange{one, lane});
                        shifts.push_back(shift);
                        sumInit.push_back(
                            arith::MulFOp::create(b, loc, oldSum, correction));
                      }
                      auto weights = scf::ForOp::create(
                          b, loc, zero, length, one, sumInit,
                          [&](OpBuilder &b, Location loc, Value jl,
                              ValueRange sums) {
                            Value valueScale;
                            if (scaled)
                              valueScale = vector::BroadcastOp::create(
                                  b, loc, vectorType,
                                  memref::LoadOp::create(
                                      b, loc, scales,
                                      ValueRange{
                                          arith::AddIOp::create(b, loc, c0, jl),
                                          kvHead, one}));
                            SmallVector<Value> next;
                            for (int64_t i = 0; i < laneVectors; ++i) {
                              Value lane = index(b, loc, i * width);
                              Value score = vector::LoadOp::create(
                                  b, loc, vectorType, pt, ValueRange{jl, lane});
                              Value weight =
                                  vectorExp(b, loc,
                                            arith::SubFOp::create(b, loc, score,
                                                                  shifts[i]));
                              next.push_back(arith::AddFOp::create(
                                  b, loc, sums[i], weight));
                              if (valueScale)
                                weight = arith::MulFOp::create(b, loc, weight,
                                                               valueScale);
                              vector::StoreOp::create(b, loc, weight, pt,
                                                      ValueRange{jl, lane});
                            }
                            scf::YieldOp::create(b, loc, next);
                          });
                      for (int64_t i = 0; i < laneVectors; ++i)
                        vector::StoreOp::create(
                            b, loc, weights.getResult(i), state,
                            ValueRange{one, index(b, loc, i * width)});
                      // O = O * correction + P V, `count` rows from `first`.
                      auto valueBlock = [&](OpBuilder &b, Location loc,
                                            Value first, int64_t count) {
                        SmallVector<Value> rowIndex;
                        for (int64_t r = 0; r < count; ++r)
                          rowIndex.push_back(arith::AddIOp::create(
                              b, loc, first, index(b, loc, r)));
                        accumulateValues(b, loc, kvHead, rowIndex, state, ot,
                                         c0, length, pieceBlock,
                                         [&](OpBuilder &b, Location loc,
                                             Value jl, Value row) -> Value {
                                           return memref::LoadOp::create(
                                               b, loc, pt, ValueRange{jl, row});
                                         });
                      };
                      int64_t fullRows = rows - rows % rowBlock;
                      Value rowsEnd = index(b, loc, fullRows);
                      Value rowStep = index(b, loc, rowBlock);
                      if (fullRows > 0)
                        scf::ForOp::create(
                            b, loc, zero, rowsEnd, rowStep, ValueRange{},
                            [&](OpBuilder &b, Location loc, Value first,
                                ValueRange) {
                              valueBlock(b, loc, first, rowBlock);
                              scf::YieldOp::create(b, loc);
                            });
                      if (rows % rowBlock)
                        valueBlock(b, loc, index(b, loc, fullRows),
                                   rows % rowBlock);
                      scf::YieldOp::create(b, loc);
                    });
                // out = O / sum for the tile's rows.
                serialFor(
                    b, loc, t0, t1, [&](OpBuilder &b, Location loc, Value t) {
                      Value base = arith::MulIOp::create(
                          b, loc, arith::SubIOp::create(b, loc, t, t0),
                          groupSize);
                      serialFor(
                          b, loc, zero, groupSize,
                          [&](OpBuilder &b, Location loc, Value g) {
                            Value r = arith::AddIOp::create(b, loc, base, g);
                            Value h =
                                arith::AddIOp::create(b, loc, firstHead, g);
                            Value sum = memref::LoadOp::create(
                                b, loc, state, ValueRange{one, r});
                            Value spread = vector::BroadcastOp::create(
                                b, loc, vectorType,
                                arith::DivFOp::create(b, loc, f32(b, loc, 1.0),
                                                      sum));
                            for (int64_t p = 0; p < pieces; ++p) {
                              Value channel = index(b, loc, p * width);
                              Value acc = vector::LoadOp::create(
                                  b, loc, vectorType, ot,
                                  ValueRange{r, channel});
                              vector::StoreOp::create(
                                  b, loc,
                                  arith::MulFOp::create(b, loc, acc, spread),
                                  out, ValueRange{t, h, channel});
                            }
                          });
                    });
                memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
              });
        };
        // Decode (one token): a task per KV head runs the `group` query
        // heads that share it, so each key and value is read once, not once
        // per query head (at a 4000-token context the f32 cache of the 500M
        // model is 256 MB per token). Keys go in chunks: the scores of every
        // row (one key vector load feeds `group` dot products), then each
        // row's weights in vector exps, then the values, each value vector
        // loaded once for all rows.
        int64_t decodePieces = std::max<int64_t>(
            1, std::min<int64_t>(pieces, (width >= 16 ? 16 : 8) / group));
        // (Keys of any length in whole vectors; rows fit the registers.)
        bool groupedDecodeFits = vectorized && !sinks && keyDim % width == 0 &&
                                 group <= 8 && kKeyChunk % width == 0;
        auto groupedDecode = [&](OpBuilder &b, Location loc) {
          parallelFor(
              b, loc, zero, index(b, loc, kvHeads),
              [&](OpBuilder &b, Location loc, Value kvHead) {
                VisibleKeys keys =
                    visibleKeys(b, loc, start, capacity, window, std::nullopt);
                Value firstHead =
                    arith::MulIOp::create(b, loc, kvHead, index(b, loc, group));
                SmallVector<Value> heads;
                for (int64_t g = 0; g < group; ++g)
                  heads.push_back(arith::AddIOp::create(b, loc, firstHead,
                                                        index(b, loc, g)));
                auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
                Block *body = new Block();
                scope.getBodyRegion().push_back(body);
                OpBuilder::InsertionGuard guard(b);
                b.setInsertionPointToStart(body);
                // Running max, running sum and this chunk's correction, per
                // row (the layout accumulateValues reads).
                Value stats = memref::AllocaOp::create(
                    b, loc, MemRefType::get({3, group}, b.getF32Type()));
                Value outputs = memref::AllocaOp::create(
                    b, loc, MemRefType::get({group, valueDim}, b.getF32Type()));
                // Scores of the chunk per row, then its weights.
                Value scores = memref::AllocaOp::create(
                    b, loc,
                    MemRefType::get({group, kKeyChunk}, b.getF32Type()));
                Value valueScales = memref::AllocaOp::create(
                    b, loc, MemRefType::get({kKeyChunk}, b.getF32Type()));
                SmallVector<Value> rowIndex;
                for (int64_t g = 0; g < group; ++g)
                  rowIndex.push_back(index(b, loc, g));
                for (int64_t g = 0; g < group; ++g) {
                  Value row = rowIndex[g];
                  memref::StoreOp::create(b, loc, negInf, stats,
                                          ValueRange{zero, row});
                  memref::StoreOp::create(b, loc, f32(b, loc, 0.0), stats,
                                          ValueRange{one, row});
                  for (int64_t p = 0; p < pieces; ++p)
                    vector::StoreOp::create(
                        b, loc, vzero, outputs,
                        ValueRange{row, index(b, loc, p * width)});
                }
                Value chunk = index(b, loc, kKeyChunk);
                Value two = index(b, loc, 2);
                scf::ForOp::create(
                    b, loc, keys.begin, keys.end, chunk, ValueRange{},
                    [&](OpBuilder &b, Location loc, Value c0, ValueRange) {
                      Value chunkEnd = arith::AddIOp::create(b, loc, c0, chunk);
                      Value c1 =
                          arith::MinUIOp::create(b, loc, chunkEnd, keys.end);
                      // Scores: each key vector feeds every row's dot product.
                      serialFor(
                          b, loc, c0, c1,
                          [&](OpBuilder &b, Location loc, Value i) {
                            SmallVector<Value> acc(group, vzero);
                            for (int64_t p = 0; p * width < keyDim; ++p) {
                              Value channel = index(b, loc, p * width);
                              Value key = loadVectorAsF32(b, loc, cache,
                                                          {i, kvHead, channel},
                                                          format, table, width);
                              for (int64_t g = 0; g < group; ++g) {
                                Value query = vector::LoadOp::create(
                                    b, loc, vectorType, q,
                                    ValueRange{zero, heads[g], channel});
                                acc[g] = vector::FMAOp::create(b, loc, query,
                                                               key, acc[g]);
                              }
                            }
                            Value local = arith::SubIOp::create(b, loc, i, c0);
                            Value keyScale;
                            if (scaled) {
                              keyScale = memref::LoadOp::create(
                                  b, loc, scales, ValueRange{i, kvHead, zero});
                              Value valueScale = memref::LoadOp::create(
                                  b, loc, scales, ValueRange{i, kvHead, one});
                              memref::StoreOp::create(b, loc, valueScale,
                                                      valueScales, local);
                            }
                            for (int64_t g = 0; g < group; ++g) {
                              Value score = vector::ReductionOp::create(
                                  b, loc, vector::CombiningKind::ADD, acc[g],
                                  Value(), arith::FastMathFlags::reassoc);
                              if (keyScale)
                                score = arith::MulFOp::create(b, loc, score,
                                                              keyScale);
                              score = arith::MulFOp::create(b, loc, score,
                                                            f32(b, loc, scale));
                              memref::StoreOp::create(
                                  b, loc, score, scores,
                                  ValueRange{rowIndex[g], local});
                            }
                          });
                      // Each row's online softmax over the chunk, in vectors;
                      // lanes past the chunk's keys are masked.
                      Value keyCount = arith::SubIOp::create(b, loc, c1, c0);
                      Value count32 =
                          arith::IndexCastOp::create(b, loc, i32, keyCount);
                      Value counts = vector::BroadcastOp::create(
                          b, loc, laneType, count32);
                      SmallVector<Value> inChunk;
                      for (int64_t v = 0; v < kKeyChunk / width; ++v) {
                        SmallVector<int32_t> laneNumbers;
                        for (int64_t lane = 0; lane < width; ++lane)
                          laneNumbers.push_back(int32_t(v * width + lane));
                        Value lanes = arith::ConstantOp::create(
                            b, loc,
                            DenseElementsAttr::get(
                                laneType, ArrayRef<int32_t>(laneNumbers)));
                        inChunk.push_back(arith::CmpIOp::create(
                            b, loc, arith::CmpIPredicate::slt, lanes, counts));
                      }
                      for (int64_t g = 0; g < group; ++g) {
                        Value row = rowIndex[g];
                        SmallVector<Value> chunkScores;
                        Value top = vNegInf;
                        for (int64_t v = 0; v < kKeyChunk / width; ++v) {
                          Value score = vector::LoadOp::create(
                              b, loc, vectorType, scores,
                              ValueRange{row, index(b, loc, v * width)});
                          score = arith::SelectOp::create(b, loc, inChunk[v],
                                                          score, vNegInf);
                          chunkScores.push_back(score);
                          top = arith::MaximumFOp::create(b, loc, top, score);
                        }
                        Value chunkMax = vector::ReductionOp::create(
                            b, loc, vector::CombiningKind::MAXIMUMF, top);
                        Value oldMax = memref::LoadOp::create(
                            b, loc, stats, ValueRange{zero, row});
                        Value oldSum = memref::LoadOp::create(
                            b, loc, stats, ValueRange{one, row});
                        Value newMax =
                            arith::MaximumFOp::create(b, loc, oldMax, chunkMax);
                        Value drop =
                            arith::SubFOp::create(b, loc, oldMax, newMax);
                        Value correction = math::ExpOp::create(b, loc, drop);
                        Value shift = vector::BroadcastOp::create(
                            b, loc, vectorType, newMax);
                        Value total = vzero;
                        for (int64_t v = 0; v < kKeyChunk / width; ++v) {
                          Value at = index(b, loc, v * width);
                          Value shifted = arith::SubFOp::create(
                              b, loc, chunkScores[v], shift);
                          Value weight = vectorExp(b, loc, shifted);
                          total = arith::AddFOp::create(b, loc, total, weight);
                          if (scaled) {
                            Value valueScale = vector::LoadOp::create(
                                b, loc, vectorType, valueScales,
                                ValueRange{at});
                            weight = arith::SelectOp::create(
                                b, loc, inChunk[v],
                                arith::MulFOp::create(b, loc, weight,
                                                      valueScale),
                                vzero);
                          }
                          vector::StoreOp::create(b, loc, weight, scores,
                                                  ValueRange{row, at});
                        }
                        Value chunkSum = vector::ReductionOp::create(
                            b, loc, vector::CombiningKind::ADD, total, Value(),
                            arith::FastMathFlags::reassoc);
                        Value kept =
                            arith::MulFOp::create(b, loc, oldSum, correction);
                        Value newSum =
                            arith::AddFOp::create(b, loc, kept, chunkSum);
                        memref::StoreOp::create(b, loc, newMax, stats,
                                                ValueRange{zero, row});
                        memref::StoreOp::create(b, loc, newSum, stats,
                                                ValueRange{one, row});
                        memref::StoreOp::create(b, loc, correction, stats,
                                                ValueRange{two, row});
                      }
                      // Values: each value vector loaded once for every row.
                      accumulateValues(b, loc, kvHead, rowIndex, stats, outputs,
                                       c0, keyCount, decodePieces,
                                       [&](OpBuilder &b, Location loc, Value jl,
                                           Value row) -> Value {
                                         return memref::LoadOp::create(
                                             b, loc, scores,
                                             ValueRange{row, jl});
                                       });
                      scf::YieldOp::create(b, loc);
                    });
                for (int64_t g = 0; g < group; ++g) {
                  Value row = rowIndex[g];
                  Value sum = memref::LoadOp::create(b, loc, stats,
                                                     ValueRange{one, row});
                  Value inverse =
                      arith::DivFOp::create(b, loc, f32(b, loc, 1.0), sum);
                  Value spread =
                      vector::BroadcastOp::create(b, loc, vectorType, inverse);
                  for (int64_t p = 0; p < pieces; ++p) {
                    Value channel = index(b, loc, p * width);
                    Value acc = vector::LoadOp::create(
                        b, loc, vectorType, outputs, ValueRange{row, channel});
                    Value result = arith::MulFOp::create(b, loc, acc, spread);
                    vector::StoreOp::create(
                        b, loc, result, out,
                        ValueRange{zero, heads[g], channel});
                  }
                }
                memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
              });
        };
        // One (token, head) pair per task: decode parallelizes over heads.
        auto perQuery = [&](OpBuilder &b, Location loc) {
          Value work =
              arith::MulIOp::create(b, loc, tokens, index(b, loc, queryHeads));
          parallelFor(
              b, loc, zero, work, [&](OpBuilder &b, Location loc, Value item) {
                Value t = arith::DivUIOp::create(b, loc, item,
                                                 index(b, loc, queryHeads));
                Value h = arith::RemUIOp::create(b, loc, item,
                                                 index(b, loc, queryHeads));
                Value kvHead =
                    arith::DivUIOp::create(b, loc, h, index(b, loc, group));
                Value position = arith::AddIOp::create(b, loc, start, t);
                VisibleKeys keys =
                    visibleKeys(b, loc, position, capacity, window, sinks);
                auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
                Block *body = new Block();
                scope.getBodyRegion().push_back(body);
                OpBuilder::InsertionGuard guard(b);
                b.setInsertionPointToStart(body);
                if (vectorized) {
                  // The output accumulators live in vector registers.
                  SmallVector<Value> init{negInf, f32(b, loc, 0.0)};
                  init.append(pieces, vzero);
                  auto loop = keyLoop(b, loc, t, h, kvHead, keys.begin,
                                      keys.end, keys.slot, init);
                  Value inverse = arith::DivFOp::create(
                      b, loc, f32(b, loc, 1.0), loop.getResult(1));
                  Value spread =
                      vector::BroadcastOp::create(b, loc, vectorType, inverse);
                  for (int64_t p = 0; p < pieces; ++p) {
                    Value result = arith::MulFOp::create(
                        b, loc, loop.getResult(2 + p), spread);
                    Value channel = index(b, loc, p * width);
                    vector::StoreOp::create(b, loc, result, out,
                                            ValueRange{t, h, channel});
                  }
                  memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
                  return;
                }
                Value acc = memref::AllocaOp::create(
                    b, loc, MemRefType::get({valueDim}, b.getF32Type()));
                serialFor(b, loc, zero, index(b, loc, valueDim),
                          [&](OpBuilder &b, Location loc, Value d) {
                            memref::StoreOp::create(b, loc, f32(b, loc, 0.0),
                                                    acc, d);
                          });
                auto loop = scf::ForOp::create(
                    b, loc, keys.begin, keys.end, one,
                    ValueRange{negInf, f32(b, loc, 0.0)},
                    [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                      Value j = keys.slot(b, loc, i);
                      auto [score, valueScale] =
                          scoreOf(b, loc, t, h, kvHead, j);
                      SoftmaxStep step =
                          onlineSoftmaxStep(b, loc, state[0], state[1], score);
                      // The value scale folds into the softmax weight.
                      Value valueWeight =
                          valueScale ? arith::MulFOp::create(
                                           b, loc, step.weight, valueScale)
                                           .getResult()
                                     : step.weight;
                      serialFor(
                          b, loc, zero, index(b, loc, valueDim),
                          [&](OpBuilder &b, Location loc, Value d) {
                            Value channel = arith::AddIOp::create(
                                b, loc, d, index(b, loc, keyDim));
                            Value value =
                                loadAsF32(b, loc, cache, {j, kvHead, channel},
                                          format, table);
                            Value old = memref::LoadOp::create(b, loc, acc, d);
                            Value kept = arith::MulFOp::create(b, loc, old,
                                                               step.correction);
                            Value added = arith::MulFOp::create(
                                b, loc, valueWeight, value);
                            Value updated =
                                arith::AddFOp::create(b, loc, kept, added);
                            memref::StoreOp::create(b, loc, updated, acc, d);
                          });
                      scf::YieldOp::create(b, loc,
                                           ValueRange{step.max, step.sum});
                    });
                Value total = loop.getResult(1);
                serialFor(b, loc, zero, index(b, loc, valueDim),
                          [&](OpBuilder &b, Location loc, Value d) {
                            Value value =
                                memref::LoadOp::create(b, loc, acc, d);
                            Value result =
                                arith::DivFOp::create(b, loc, value, total);
                            memref::StoreOp::create(b, loc, result, out,
                                                    ValueRange{t, h, d});
                          });
                memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
              });
        };
        if (!vectorized || sinks) {
          perQuery(b, loc);
          return;
        }
        Value several = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt,
                                              tokens, one);
        scf::IfOp::create(
            b, loc, several,
            [&](OpBuilder &b, Location loc) {
              if (gemmTiles)
                tiledGemm(b, loc);
              else
                tiled(b, loc);
              scf::YieldOp::create(b, loc);
            },
            [&](OpBuilder &b, Location loc) {
              if (groupedDecodeFits)
                groupedDecode(b, loc);
              else
                perQuery(b, loc);
              scf::YieldOp::create(b, loc);
            });
      });
}
