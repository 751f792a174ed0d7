//===- Attention.cpp - KV-cache writes and attention on GPUs ----------===//
//
// The cache layout is the CPU's ([capacity, kv heads, key | value] per
// layer, 8-bit formats with per-row scales [capacity, kv heads, 2]).
// Writes: a workgroup per (token, kv head). Attention: a workgroup per
// (token, query head) walks the visible keys in chunks of `block`: thread j
// scores key j of the chunk, the scores go through workgroup memory, and
// each thread runs the online softmax over the chunk for the output
// channels it owns (thread, thread + block, ...), reading values row-wise
// (coalesced). Decode (one token) runs the same walk over slices of the
// keys, a workgroup per (slice, query head), then combines the slices
// (FlashDecoding.cpp).
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdio>
#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

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

static std::string formatSuffix(CacheFormat format) {
  return format.format == WeightFormat::F32
             ? ""
             : "_" + formatName(format.format).str();
}

SymbolRefAttr xfmr::kernels::gpuCacheWrite(GPUKernelTarget &target,
                                           const CacheWriteKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t capacity = kernel.capacity, heads = kernel.heads;
  int64_t keyDim = kernel.keyDim, valueDim = kernel.valueDim;
  CacheFormat format = kernel.format;
  std::optional<int64_t> sinks = kernel.sinks;
  std::string key = "cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(keyDim) +
                    "x" + std::to_string(valueDim) + formatSuffix(format);
  if (sinks)
    key += "_ring" + std::to_string(*sinks);
  CacheWriteOperands<Type> types{
      perHead(context, heads, keyDim), perHead(context, heads, valueDim),
      simt::buffer(context, {capacity, heads, keyDim + valueDim},
                   format.format),
      scaleBuffer(context, capacity, heads, format), IndexType::get(context)};
  constexpr int64_t block = 64;
  return target.get<CacheWriteOperands>(
      key, types, block,
      [heads](OpBuilder &b, Location loc, CacheWriteOperands<Value> args)
          -> Value {
        Value tokens = memref::DimOp::create(b, loc, args.key, 0);
        Value perToken = index(b, loc, heads);
        return arith::MulIOp::create(b, loc, tokens, perToken);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          CacheWriteOperands<Value> args) {
        Value scratch = format.scaled ? thread.scratch(block) : Value();
        Value t = arith::DivUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, heads));
        Value h = arith::RemUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, heads));
        Value row = cacheSlot(
            b, loc, arith::AddIOp::create(b, loc, args.start, t), capacity,
            sinks);
        // Key at channels [0, Dk) with scale slot 0, value at [Dk, Dk + Dv)
        // with slot 1.
        auto write = [&](Value source, int64_t length, int64_t first,
                         int64_t slot) {
          Value scale;
          if (format.scaled) {
            Value end = index(b, loc, length);
            Value step = index(b, loc, block);
            Value zero = f32(b, loc, 0.0);
            Value mine = simt::accumulate(
                b, loc, thread.thread, end, step, zero,
                [&](OpBuilder &b, Location loc, Value c, Value acc) -> Value {
                  Value x = memref::LoadOp::create(b, loc, source,
                                                   ValueRange{t, h, c});
                  return arith::MaximumFOp::create(
                      b, loc, acc, math::AbsFOp::create(b, loc, x));
                });
            Value amax = simt::reduce(b, loc, thread, scratch, mine,
                                      simt::Reduction::Max);
            scale = scaleForMaxAbs(b, loc, amax, format.format);
            simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
              memref::StoreOp::create(b, loc, scale, args.scales,
                                      ValueRange{row, h, index(b, loc, slot)});
            });
          }
          simt::strided(b, loc, thread, index(b, loc, length),
                        [&](OpBuilder &b, Location loc, Value c) {
            Value x = memref::LoadOp::create(b, loc, source,
                                             ValueRange{t, h, c});
            if (scale)
              x = arith::DivFOp::create(b, loc, x, scale);
            Value channel = arith::AddIOp::create(b, loc, c,
                                                  index(b, loc, first));
            simt::storeEncoded(b, loc, x, args.cache,
                               ValueRange{row, h, channel}, format.format);
          });
        };
        write(args.key, keyDim, 0, 0);
        write(args.value, valueDim, keyDim, 1);
      });
}

namespace {
/// Threads of the attention kernels.
constexpr int64_t kAttendBlock = 64;

/// The state a workgroup's walk over keys of one query head leaves: the
/// running maximum score, the sum of exp(score - max), and the unnormalized
/// outputs of the channels this thread owns.
struct SoftmaxState {
  Value max, sum;
  SmallVector<Value> outputs;
};

/// What every attention kernel of one AttendKernel shares.
struct AttendWalk {
  const AttendKernel &kernel;
  const GPUThread &thread;
  /// Output channels per thread (thread, thread + block, ...).
  int64_t owned;

  /// This thread's output channels, clamped (the extra ones are computed on
  /// a valid channel and not stored).
  SmallVector<Value> channels(OpBuilder &b, Location loc) const {
    SmallVector<Value> result;
    for (int64_t r = 0; r < owned; ++r) {
      Value c = arith::AddIOp::create(b, loc, thread.thread,
                                      index(b, loc, r * thread.block));
      result.push_back(arith::MinUIOp::create(
          b, loc, c, index(b, loc, kernel.valueDim - 1)));
    }
    return result;
  }

  /// Keys [first, last) of `keys` for token t's query head h, in chunks of
  /// a block: thread j scores key j of the chunk, the scores go through
  /// workgroup memory `scores`, and each thread folds them into its
  /// channels with the online softmax (walkHeads for one head).
  SoftmaxState walk(OpBuilder &b, Location loc, AttendOperands<Value> args,
                    Value scores, Value t, Value h, const VisibleKeys &keys,
                    Value first, Value last) const {
    return walkHeads(b, loc, args, scores, t, h, 1, keys, first, last)[0];
  }

  /// Keys [first, last) for query heads [h0, h0 + count), which share one
  /// KV head (count divides the GQA group and h0): thread j scores key j
  /// against each of them (`scores`: count x block f32) and every thread
  /// folds each key's values into its channels of all of them, so the
  /// workgroup reads each key and value once for the heads instead of once
  /// per head.
  SmallVector<SoftmaxState> walkHeads(OpBuilder &b, Location loc,
                                      AttendOperands<Value> args, Value scores,
                                      Value t, Value h0, int64_t count,
                                      const VisibleKeys &keys, Value first,
                                      Value last) const {
    int64_t group = kernel.queryHeads / kernel.kvHeads;
    WeightFormat format = kernel.format.format;
    bool scaled = kernel.format.scaled;
    Value q = args.query, cache = args.cache, scales = args.scales;
    Value zero = index(b, loc, 0), one = index(b, loc, 1);
    Value kvHead = arith::DivUIOp::create(b, loc, h0, index(b, loc, group));
    Value blockSize = index(b, loc, thread.block);
    SmallVector<Value> mine = channels(b, loc);
    SmallVector<Value> heads;
    for (int64_t g = 0; g < count; ++g)
      heads.push_back(arith::AddIOp::create(b, loc, h0, index(b, loc, g)));
    int64_t perHead = 2 + owned;
    SmallVector<Value> init;
    for (int64_t g = 0; g < count; ++g) {
      init.push_back(f32(b, loc, -std::numeric_limits<double>::infinity()));
      init.push_back(f32(b, loc, 0.0));
      init.append(owned, f32(b, loc, 0.0));
    }
    auto chunks = scf::ForOp::create(
        b, loc, first, last, blockSize, init,
        [&](OpBuilder &b, Location loc, Value chunk, ValueRange state) {
          // Thread j scores key chunk + j against every head.
          Value key = arith::AddIOp::create(b, loc, chunk, thread.thread);
          Value valid = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                              key, last);
          auto score = scf::IfOp::create(
              b, loc, valid,
              [&](OpBuilder &b, Location loc) {
                Value slot = keys.slot(b, loc, key);
                Value end = index(b, loc, kernel.keyDim);
                SmallVector<Value> starts(count, f32(b, loc, 0.0));
                auto dots = scf::ForOp::create(
                    b, loc, zero, end, one, starts,
                    [&](OpBuilder &b, Location loc, Value d, ValueRange acc) {
                      Value kd = simt::loadF32(b, loc, cache, {slot, kvHead, d},
                                               format);
                      SmallVector<Value> next;
                      for (int64_t g = 0; g < count; ++g) {
                        Value qd = memref::LoadOp::create(
                            b, loc, q, ValueRange{t, heads[g], d});
                        next.push_back(simt::fma(b, loc, qd, kd, acc[g]));
                      }
                      scf::YieldOp::create(b, loc, next);
                    });
                Value factor = f32(b, loc, kernel.scale);
                if (scaled) {
                  Value keyScale = memref::LoadOp::create(
                      b, loc, scales, ValueRange{slot, kvHead, zero});
                  factor = arith::MulFOp::create(b, loc, factor, keyScale);
                }
                SmallVector<Value> scored;
                for (int64_t g = 0; g < count; ++g)
                  scored.push_back(
                      arith::MulFOp::create(b, loc, dots.getResult(g), factor));
                scf::YieldOp::create(b, loc, scored);
              },
              [&](OpBuilder &b, Location loc) {
                SmallVector<Value> zeros(count, f32(b, loc, 0.0));
                scf::YieldOp::create(b, loc, zeros);
              });
          simt::storeScores(b, loc, thread, scores, score.getResults());
          mlir::gpu::BarrierOp::create(b, loc);
          // Every thread folds the chunk's values into its channels of
          // every head.
          Value inChunk = arith::MinUIOp::create(
              b, loc, blockSize, arith::SubIOp::create(b, loc, last, chunk));
          auto fold = scf::ForOp::create(
              b, loc, zero, inChunk, one, state,
              [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                Value slot =
                    keys.slot(b, loc, arith::AddIOp::create(b, loc, chunk, i));
                SmallVector<Value> values;
                for (int64_t r = 0; r < owned; ++r) {
                  Value channel = arith::AddIOp::create(
                      b, loc, mine[r], index(b, loc, kernel.keyDim));
                  values.push_back(simt::loadF32(
                      b, loc, cache, {slot, kvHead, channel}, format));
                }
                Value valueScale;
                if (scaled)
                  valueScale = memref::LoadOp::create(
                      b, loc, scales, ValueRange{slot, kvHead, one});
                SmallVector<Value> next;
                for (int64_t g = 0; g < count; ++g) {
                  Value at = arith::AddIOp::create(
                      b, loc, i, index(b, loc, g * thread.block));
                  Value s = memref::LoadOp::create(b, loc, scores, at);
                  int64_t base = g * perHead;
                  SoftmaxStep step = onlineSoftmaxStep(b, loc, state[base],
                                                       state[base + 1], s);
                  Value weight = step.weight;
                  if (scaled)
                    weight = arith::MulFOp::create(b, loc, weight, valueScale);
                  next.push_back(step.max);
                  next.push_back(step.sum);
                  for (int64_t r = 0; r < owned; ++r) {
                    Value kept = arith::MulFOp::create(
                        b, loc, state[base + 2 + r], step.correction);
                    next.push_back(simt::fma(b, loc, weight, values[r], kept));
                  }
                }
                scf::YieldOp::create(b, loc, next);
              });
          // The scores are read by all before the next chunk overwrites them.
          mlir::gpu::BarrierOp::create(b, loc);
          scf::YieldOp::create(b, loc, fold.getResults());
        });
    SmallVector<SoftmaxState> result;
    for (int64_t g = 0; g < count; ++g) {
      int64_t base = g * perHead;
      SoftmaxState head{chunks.getResult(base), chunks.getResult(base + 1), {}};
      for (int64_t r = 0; r < owned; ++r)
        head.outputs.push_back(chunks.getResult(base + 2 + r));
      result.push_back(head);
    }
    return result;
  }

  /// Stores `value(r)` at channel thread + r * block of `memref[prefix...]`
  /// for the channels below the value dimension.
  void storeChannels(OpBuilder &b, Location loc, Value memref,
                     ValueRange prefix,
                     function_ref<Value(int64_t)> value) const {
    for (int64_t r = 0; r < owned; ++r) {
      Value c = arith::AddIOp::create(b, loc, thread.thread,
                                      index(b, loc, r * thread.block));
      Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, c,
                                           index(b, loc, kernel.valueDim));
      scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
        SmallVector<Value> indices(prefix.begin(), prefix.end());
        indices.push_back(c);
        memref::StoreOp::create(b, loc, value(r), memref, indices);
        scf::YieldOp::create(b, loc);
      });
    }
  }
};

/// The keys per decode slice for `count` visible keys: ceil(count /
/// kDecodeSlices) rounded up to whole blocks. The slices are ceil(count /
/// that) <= kDecodeSlices.
/// Prefill queries per workgroup: a tile of consecutive tokens of one query
/// head shares every key and value it reads (as many as fit 16 KiB of
/// workgroup memory with their scores: Vulkan's guaranteed minimum).
int64_t queryTileOf(int64_t keyDim) {
  for (int64_t tile : {16, 8, 4, 2})
    if (tile * (keyDim + kAttendBlock) * 4 <= 16 * 1024)
      return tile;
  return 1;
}

} // namespace

QueryTile xfmr::kernels::queryTile(OpBuilder &b, Location loc,
                                   const GPUThread &thread,
                                   AttendOperands<Value> args,
                                   const AttendKernel &kernel, int64_t tile) {
  QueryTile span;
  Value one = index(b, loc, 1);
  span.tokens = simt::leadingSize(b, loc, args.query);
  Value heads = index(b, loc, kernel.queryHeads);
  Value tileIndex = arith::DivUIOp::create(b, loc, thread.workgroup, heads);
  span.head = arith::RemUIOp::create(b, loc, thread.workgroup, heads);
  Value group = index(b, loc, kernel.queryHeads / kernel.kvHeads);
  span.kvHead = arith::DivUIOp::create(b, loc, span.head, group);
  span.firstToken =
      arith::MulIOp::create(b, loc, tileIndex, index(b, loc, tile));
  Value tileEnd =
      arith::AddIOp::create(b, loc, span.firstToken, index(b, loc, tile));
  Value end = arith::MinUIOp::create(b, loc, tileEnd, span.tokens);
  span.lastToken = arith::SubIOp::create(b, loc, end, one);
  span.tileStart = arith::AddIOp::create(b, loc, args.start, span.firstToken);
  span.firstKey = visibleKeys(b, loc, span.tileStart, kernel.capacity,
                              kernel.window, std::nullopt)
                      .begin;
  Value lastPosition =
      arith::AddIOp::create(b, loc, args.start, span.lastToken);
  span.lastKey = visibleKeys(b, loc, lastPosition, kernel.capacity,
                             kernel.window, std::nullopt)
                     .end;
  return span;
}

namespace {
/// Prefill in tiles (FlashAttention-style, on SIMT): a workgroup per (tile of
/// `tile` tokens, query head) stages the tile's queries in workgroup memory
/// and walks the keys any of them sees in chunks of a block: thread j scores
/// key j against every query of the tile (one read of the key for all of
/// them; keys a query does not see score -inf), then each thread folds the
/// chunk into every query's softmax state for the output channels it owns,
/// reading each value once for the tile. Caches without an evicting ring
/// (key index = position).
void emitTiledPrefill(OpBuilder &b, Location loc, const AttendWalk &walk,
                      AttendOperands<Value> args, int64_t tile, Value queries,
                      Value scores) {
  const AttendKernel &kernel = walk.kernel;
  const GPUThread &thread = walk.thread;
  int64_t block = thread.block, owned = walk.owned;
  int64_t keyDim = kernel.keyDim;
  WeightFormat format = kernel.format.format;
  bool scaled = kernel.format.scaled;
  double negInf = -std::numeric_limits<double>::infinity();
  Value zero = index(b, loc, 0), one = index(b, loc, 1);
  QueryTile span = queryTile(b, loc, thread, args, kernel, tile);
  Value tokens = span.tokens, h = span.head, kvHead = span.kvHead;
  Value firstToken = span.firstToken, tileStart = span.tileStart;
  // Query q (token firstToken + q, position tileStart + q) sees key k when
  // k - tileStart <= q (causal) and k - tileStart > q - window (sliding
  // window). Comparing k - tileStart (signed) with the constant q keeps the
  // tile's bounds in one value. Queries past the tokens (q >= inTile) are
  // zeros: their finite results are never stored.
  Value remaining = arith::SubIOp::create(b, loc, tokens, firstToken);
  Value inTile = arith::MinUIOp::create(b, loc, remaining, index(b, loc, tile));
  auto present = [&](OpBuilder &b, Location loc, int64_t q) -> Value {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                 index(b, loc, q), inTile);
  };
  auto sees = [&](OpBuilder &b, Location loc, Value relative,
                  int64_t q) -> Value {
    Value causal = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                                         relative, index(b, loc, q));
    if (!kernel.window)
      return causal;
    Value inside =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, relative,
                              index(b, loc, q - *kernel.window));
    return arith::AndIOp::create(b, loc, causal, inside);
  };
  // The keys of the whole tile: from the first query's first to the last
  // token's end.
  Value first = span.firstKey, last = span.lastKey;
  // Stage the queries (0 past the tokens).
  Value staged = index(b, loc, tile * keyDim);
  simt::strided(
      b, loc, thread, staged, [&](OpBuilder &b, Location loc, Value e) {
        Value dim = index(b, loc, keyDim);
        Value q = arith::DivUIOp::create(b, loc, e, dim);
        Value d = arith::RemUIOp::create(b, loc, e, dim);
        Value t = arith::AddIOp::create(b, loc, firstToken, q);
        Value inside =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, t, tokens);
        auto value = scf::IfOp::create(
            b, loc, inside,
            [&](OpBuilder &b, Location loc) {
              Value x = memref::LoadOp::create(b, loc, args.query,
                                               ValueRange{t, h, d});
              scf::YieldOp::create(b, loc, x);
            },
            [&](OpBuilder &b, Location loc) {
              scf::YieldOp::create(b, loc, f32(b, loc, 0.0));
            });
        memref::StoreOp::create(b, loc, value.getResult(0), queries, e);
      });
  mlir::gpu::BarrierOp::create(b, loc);

  SmallVector<Value> mine = walk.channels(b, loc);
  // State: per query its max and sum, then its outputs.
  // The running max starts at a finite lowest value: a masked key (-inf)
  // then gives exp(-inf - max) = 0, never exp(-inf + inf).
  SmallVector<Value> init;
  for (int64_t q = 0; q < tile; ++q) {
    init.push_back(f32(b, loc, -1e30));
    init.push_back(f32(b, loc, 0.0));
  }
  init.append(tile * owned, f32(b, loc, 0.0));
  Value blockSize = index(b, loc, block);
  auto chunks = scf::ForOp::create(
      b, loc, first, last, blockSize, init,
      [&](OpBuilder &b, Location loc, Value chunk, ValueRange state) {
        // Thread j scores key chunk + j against every query.
        Value key = arith::AddIOp::create(b, loc, chunk, thread.thread);
        Value valid =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, key, last);
        SmallVector<Type> scoreTypes(tile, b.getF32Type());
        auto dots = scf::IfOp::create(b, loc, scoreTypes, valid,
                                      /*withElseRegion=*/true);
        {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(&dots.getThenRegion().front());
          SmallVector<Value> zeros(tile, f32(b, loc, 0.0));
          auto sums = scf::ForOp::create(
              b, loc, zero, index(b, loc, keyDim), one, zeros,
              [&](OpBuilder &b, Location loc, Value d, ValueRange acc) {
                Value kd =
                    simt::loadF32(b, loc, args.cache, {key, kvHead, d}, format);
                SmallVector<Value> next;
                for (int64_t q = 0; q < tile; ++q) {
                  Value at = arith::AddIOp::create(b, loc, d,
                                                   index(b, loc, q * keyDim));
                  Value qd = memref::LoadOp::create(b, loc, queries, at);
                  next.push_back(simt::fma(b, loc, qd, kd, acc[q]));
                }
                scf::YieldOp::create(b, loc, next);
              });
          Value factor = f32(b, loc, kernel.scale);
          if (scaled) {
            Value keyScale = memref::LoadOp::create(
                b, loc, args.scales, ValueRange{key, kvHead, zero});
            factor = arith::MulFOp::create(b, loc, factor, keyScale);
          }
          Value relative = arith::SubIOp::create(b, loc, key, tileStart);
          SmallVector<Value> results;
          for (int64_t q = 0; q < tile; ++q) {
            Value score =
                arith::MulFOp::create(b, loc, sums.getResult(q), factor);
            Value visible = sees(b, loc, relative, q);
            results.push_back(arith::SelectOp::create(b, loc, visible, score,
                                                      f32(b, loc, negInf)));
          }
          scf::YieldOp::create(b, loc, results);
          b.setInsertionPointToStart(&dots.getElseRegion().front());
          SmallVector<Value> masked(tile, f32(b, loc, negInf));
          scf::YieldOp::create(b, loc, masked);
        }
        simt::storeScores(b, loc, thread, scores, dots.getResults());
        mlir::gpu::BarrierOp::create(b, loc);
        // Every thread folds the chunk into its channels of every query.
        Value count = arith::MinUIOp::create(
            b, loc, blockSize, arith::SubIOp::create(b, loc, last, chunk));
        auto fold = scf::ForOp::create(
            b, loc, zero, count, one, state,
            [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
              Value slot = arith::AddIOp::create(b, loc, chunk, i);
              Value valueScale;
              if (scaled)
                valueScale = memref::LoadOp::create(
                    b, loc, args.scales, ValueRange{slot, kvHead, one});
              SmallVector<Value> values;
              for (int64_t r = 0; r < owned; ++r) {
                Value channel = arith::AddIOp::create(b, loc, mine[r],
                                                      index(b, loc, keyDim));
                values.push_back(simt::loadF32(
                    b, loc, args.cache, {slot, kvHead, channel}, format));
              }
              SmallVector<Value> next(state.begin(), state.end());
              for (int64_t q = 0; q < tile; ++q) {
                Value at =
                    arith::AddIOp::create(b, loc, i, index(b, loc, q * block));
                Value s = memref::LoadOp::create(b, loc, scores, at);
                // A key the query does not see scores -inf: weight 0 and
                // correction 1 (the running max starts finite), so its
                // state stays as it is without a select.
                SoftmaxStep step = onlineSoftmaxStep(b, loc, state[2 * q],
                                                     state[2 * q + 1], s);
                Value weight = step.weight;
                if (scaled)
                  weight = arith::MulFOp::create(b, loc, weight, valueScale);
                next[2 * q] = step.max;
                next[2 * q + 1] = step.sum;
                for (int64_t r = 0; r < owned; ++r) {
                  int64_t o = 2 * tile + q * owned + r;
                  Value kept =
                      arith::MulFOp::create(b, loc, state[o], step.correction);
                  next[o] = simt::fma(b, loc, weight, values[r], kept);
                }
              }
              scf::YieldOp::create(b, loc, next);
            });
        // The scores are read by all before the next chunk overwrites them.
        mlir::gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(b, loc, fold.getResults());
      });
  for (int64_t q = 0; q < tile; ++q) {
    Value t = arith::AddIOp::create(b, loc, firstToken, index(b, loc, q));
    Value isToken = present(b, loc, q);
    scf::IfOp::create(b, loc, isToken, [&](OpBuilder &b, Location loc) {
      Value inverse = arith::DivFOp::create(b, loc, f32(b, loc, 1.0),
                                            chunks.getResult(2 * q + 1));
      walk.storeChannels(b, loc, args.output, ValueRange{t, h},
                         [&](int64_t r) -> Value {
                           Value o = chunks.getResult(2 * tile + q * owned + r);
                           return arith::MulFOp::create(b, loc, o, inverse);
                         });
      scf::YieldOp::create(b, loc);
    });
  }
}
} // namespace

SymbolRefAttr xfmr::kernels::gpuAttend(GPUKernelTarget &target,
                                       const AttendKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t capacity = kernel.capacity, queryHeads = kernel.queryHeads;
  int64_t kvHeads = kernel.kvHeads, keyDim = kernel.keyDim;
  int64_t valueDim = kernel.valueDim;
  double scale = kernel.scale;
  std::optional<int64_t> window = kernel.window, sinks = kernel.sinks;
  CacheFormat storage = kernel.format;
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
  WeightFormat format = storage.format;
  AttendOperands<Type> types{
      perHead(context, queryHeads, keyDim),
      simt::buffer(context, {capacity, kvHeads, keyDim + valueDim}, format),
      scaleBuffer(context, capacity, kvHeads, storage), IndexType::get(context),
      perHead(context, queryHeads, valueDim)};
  constexpr int64_t block = kAttendBlock;
  int64_t owned = llvm::divideCeil(valueDim, block);

  // Prefill with an evicting ring: a workgroup per (token, query head) over
  // all its visible keys (a ring's key order depends on the position).
  // Otherwise tiles of queries: on NVIDIA's matrix units where they suit
  // (AttentionTiles.cpp), else SIMT (emitTiledPrefill).
  SymbolRefAttr several = mma::attentionTiles(target, kernel, types, key);
  if (!several && !sinks) {
    int64_t tile = queryTileOf(keyDim);
    several = target.get<AttendOperands>(
        key + "_tiles", types, block,
        [queryHeads, tile](OpBuilder &b, Location loc,
                           AttendOperands<Value> args) -> Value {
          Value tokens = memref::DimOp::create(b, loc, args.query, 0);
          Value tiles =
              arith::CeilDivUIOp::create(b, loc, tokens, index(b, loc, tile));
          return arith::MulIOp::create(b, loc, tiles,
                                       index(b, loc, queryHeads));
        },
        [&](OpBuilder &b, Location loc, const GPUThread &thread,
            AttendOperands<Value> args) {
          AttendWalk walk{kernel, thread, owned};
          Value queries = thread.scratch(tile * keyDim);
          Value scores = thread.scratch(tile * block);
          emitTiledPrefill(b, loc, walk, args, tile, queries, scores);
        });
  }
  if (!several)
    several = target.get<AttendOperands>(
        key, types, block,
        [queryHeads](OpBuilder &b, Location loc,
                     AttendOperands<Value> args) -> Value {
          Value tokens = memref::DimOp::create(b, loc, args.query, 0);
          Value perToken = index(b, loc, queryHeads);
          return arith::MulIOp::create(b, loc, tokens, perToken);
        },
        [&](OpBuilder &b, Location loc, const GPUThread &thread,
            AttendOperands<Value> args) {
          AttendWalk walk{kernel, thread, owned};
          Value t = arith::DivUIOp::create(b, loc, thread.workgroup,
                                           index(b, loc, queryHeads));
          Value h = arith::RemUIOp::create(b, loc, thread.workgroup,
                                           index(b, loc, queryHeads));
          Value position = arith::AddIOp::create(b, loc, args.start, t);
          VisibleKeys keys =
              visibleKeys(b, loc, position, capacity, window, sinks);
          SoftmaxState state = walk.walk(b, loc, args, thread.scratch(block), t,
                                         h, keys, keys.begin, keys.end);
          Value inverse =
              arith::DivFOp::create(b, loc, f32(b, loc, 1.0), state.sum);
          walk.storeChannels(
              b, loc, args.output, ValueRange{t, h}, [&](int64_t r) -> Value {
                return arith::MulFOp::create(b, loc, state.outputs[r], inverse);
              });
        });

  // Decode (one token), flash decoding (FlashDecoding.cpp): workgroup
  // (slice, up to 8 query heads of one KV head) walks its slice of the
  // visible keys for those heads, reading each key and value once for all
  // of them (GQA: Llama-3-8B's 4 query heads a KV head read the cache once,
  // not 4 times); then a workgroup per head combines the slices.
  int64_t headsPerWorkgroup = 1;
  while (headsPerWorkgroup < 8 &&
         (queryHeads / kvHeads) % (2 * headsPerWorkgroup) == 0)
    headsPerWorkgroup *= 2;
  MemRefType scratchType = flash::scratchType(context, queryHeads, valueDim);
  unsigned startOperand = types.scales ? 3 : 2;
  SymbolRefAttr partial = flash::slicesKernel(
      target, key + "_slices", presentOperands(types), startOperand, queryHeads,
      valueDim, capacity, block, window, sinks,
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands, Value slice, Value h0, const VisibleKeys &keys,
          const flash::Slice &range) {
        AttendOperands<Value> args = bindOperands(types, operands.drop_back());
        Value scratch = operands.back();
        AttendWalk walk{kernel, thread, owned};
        Value t = index(b, loc, 0);
        SmallVector<SoftmaxState> states = walk.walkHeads(
            b, loc, args, thread.scratch(headsPerWorkgroup * block), t, h0,
            headsPerWorkgroup, keys, range.first, range.last);
        for (int64_t g = 0; g < headsPerWorkgroup; ++g) {
          const SoftmaxState &state = states[g];
          Value h = arith::AddIOp::create(b, loc, h0, index(b, loc, g));
          walk.storeChannels(b, loc, scratch, ValueRange{slice, h},
                             [&](int64_t r) { return state.outputs[r]; });
          flash::storeTotals(b, loc, thread, scratch, slice, h, valueDim,
                             state.max, state.sum);
        }
      },
      headsPerWorkgroup);
  SymbolRefAttr combine =
      flash::combineKernel(target, key + "_combine", queryHeads, valueDim,
                           capacity, block, window, sinks);
  SymbolRefAttr sliced =
      target.twoSteps(key + "_decode", partial, combine, scratchType,
                      {startOperand, startOperand + 1});
  // The query is the first operand.
  return target.byLeadingSize(key + "_by_tokens", sliced, several,
                              /*operand=*/0);
}
