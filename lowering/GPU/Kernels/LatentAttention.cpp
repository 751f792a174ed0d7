//===- LatentAttention.cpp - MLA caches and attention on GPUs ---------===//
//
// The MLA kernel families of KernelContracts.h, with the CPU kernels
// (lowering/CPU/Kernels/{Attention,LatentAttention}.cpp) as the semantic
// reference and the same summation orders where they are serial:
//
//   - mla_cache_write: a workgroup per (token, head) writes the key
//     [k_nope | k_pe] (k_pe shared by the heads) and the value of the head,
//     8-bit caches with a per-entry scale from a workgroup max-abs.
//   - latent_cache_write: a workgroup per token writes the latent (8-bit:
//     one scale per block of 128 channels) and k_pe.
//   - mla_absorb_query: a workgroup per (token, head, 64 latent channels),
//     thread r sums q_nope . kv_b[key rows, r] (neighbouring threads read
//     neighbouring weights of a row).
//   - latent_attend: as gpuAttend, a workgroup per (token, head) walks the
//     visible keys in chunks of `block`: thread j scores key j of the chunk
//     (q_lat . c_kv per scale block, plus q_pe . k_pe) into workgroup
//     memory, then each thread folds the chunk with the online softmax into
//     the latent channels it owns (thread, thread + block, ...: rank / block
//     loop-carried values), each weighted by its block's scale. Decode
//     (one token) runs it over slices of the keys, then combines them
//     (FlashDecoding.cpp).
//   - mla_absorb_output: a workgroup per (token, head, value channel), its
//     threads striding over the rank of one kv_b row, as gpuLinear.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/MathExtras.h"

#include <cstdio>
#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {

/// Threads per workgroup of every kernel here.
constexpr int64_t kBlock = 64;
// latent_attend finds each owned channel's scale block statically.
static_assert(LatentCacheType::kScaleBlock % kBlock == 0,
              "a scale block must hold whole thread strides");

MemRefType f32Buffer(MLIRContext *context, ArrayRef<int64_t> shape) {
  return MemRefType::get(shape, Float32Type::get(context));
}

std::string formatSuffix(CacheFormat format) {
  return format.format == WeightFormat::F32
             ? ""
             : "_" + formatName(format.format).str();
}

/// The types of kv_b [rows, rank] and its block scales (null without).
std::pair<Type, Type> kvBTypes(MLIRContext *context, int64_t rows,
                               int64_t rank, const WeightOperand &kvB) {
  Type weight = simt::buffer(context, {rows, rank}, kvB.format);
  if (!kvB.blockScale)
    return {weight, Type()};
  return {weight,
          f32Buffer(context,
                    {llvm::divideCeilSigned(rows, kvB.blockScale->first),
                     llvm::divideCeilSigned(rank, kvB.blockScale->second)})};
}

/// The types of a latent cache's buffers: latent, scales (null without),
/// rope keys.
std::tuple<Type, Type, Type> latentCacheTypes(MLIRContext *context,
                                              int64_t capacity, int64_t rank,
                                              int64_t rope,
                                              const LatentCacheFormat &storage) {
  Type scales = storage.scaleBlocks
                    ? f32Buffer(context, {capacity, storage.scaleBlocks})
                    : Type();
  return {simt::buffer(context, {capacity, rank}, storage.format), scales,
          simt::buffer(context, {capacity, rope}, storage.ropeFormat)};
}

/// The number of workgroups: the tokens (dim 0 of `rows`) times `perToken`.
Value tokensTimes(OpBuilder &b, Location loc, Value rows, int64_t perToken) {
  Value tokens = memref::DimOp::create(b, loc, rows, 0);
  Value count = index(b, loc, perToken);
  return arith::MulIOp::create(b, loc, tokens, count);
}

/// (value / count, value % count).
std::pair<Value, Value> divRem(OpBuilder &b, Location loc, Value value,
                               int64_t count) {
  Value divisor = index(b, loc, count);
  Value quotient = arith::DivUIOp::create(b, loc, value, divisor);
  Value remainder = arith::RemUIOp::create(b, loc, value, divisor);
  return {quotient, remainder};
}

/// A run of f32 channels source[prefix..., begin + i], i < length, that
/// becomes consecutive channels of one cache entry.
struct Segment {
  Value source;
  SmallVector<Value> prefix;
  Value begin;
  int64_t length;
};

Value segmentAt(OpBuilder &b, Location loc, const Segment &segment, Value i) {
  SmallVector<Value> indices(segment.prefix);
  indices.push_back(arith::AddIOp::create(b, loc, segment.begin, i));
  return memref::LoadOp::create(b, loc, segment.source, indices);
}

/// The workgroup writes one cache entry: `segments` fill channels
/// cache[prefix..., offset + ...]. With `scales` (8-bit formats), the entry's
/// scale max(max-abs, 1e-12) / max-code goes to scales[scaleIndices] first
/// (through `scratch`, kBlock f32; every thread must get here).
void writeEntry(OpBuilder &b, Location loc, const GPUThread &thread,
                ArrayRef<Segment> segments, Value cache,
                ArrayRef<Value> prefix, int64_t offset, Value scales,
                ArrayRef<Value> scaleIndices, Value scratch,
                WeightFormat format) {
  Value scale;
  if (scales) {
    Value step = index(b, loc, thread.block);
    // One max per segment, combined after the loops: chaining the segments'
    // loops (the second's init the first's result) gave wrong maxima on
    // Vulkan (lavapipe).
    Value mine;
    for (const Segment &segment : segments) {
      Value end = index(b, loc, segment.length);
      Value zero = f32(b, loc, 0.0);
      Value part = simt::accumulate(
          b, loc, thread.thread, end, step, zero,
          [&](OpBuilder &b, Location loc, Value i, Value acc) -> Value {
            Value x = segmentAt(b, loc, segment, i);
            Value magnitude = math::AbsFOp::create(b, loc, x);
            return arith::MaximumFOp::create(b, loc, acc, magnitude);
          });
      mine = mine ? arith::MaximumFOp::create(b, loc, mine, part).getResult()
                  : part;
    }
    Value amax =
        simt::reduce(b, loc, thread, scratch, mine, simt::Reduction::Max);
    scale = scaleForMaxAbs(b, loc, amax, format);
    simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
      memref::StoreOp::create(b, loc, scale, scales, scaleIndices);
    });
  }
  int64_t channel = offset;
  for (const Segment &segment : segments) {
    int64_t first = channel;
    Value end = index(b, loc, segment.length);
    simt::strided(b, loc, thread, end,
                  [&](OpBuilder &b, Location loc, Value i) {
      Value x = segmentAt(b, loc, segment, i);
      if (scale)
        x = arith::DivFOp::create(b, loc, x, scale);
      Value firstChannel = index(b, loc, first);
      Value target = arith::AddIOp::create(b, loc, i, firstChannel);
      SmallVector<Value> indices(prefix);
      indices.push_back(target);
      simt::storeEncoded(b, loc, x, cache, indices, format);
    });
    channel += segment.length;
  }
}

} // namespace

static SymbolRefAttr gpuMLACacheWrite(GPUKernelTarget &target,
                                      const MLACacheWriteKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t capacity = kernel.capacity, heads = kernel.heads;
  int64_t nope = kernel.nope, rope = kernel.rope, valueDim = kernel.valueDim;
  CacheFormat format = kernel.format;
  std::optional<int64_t> sinks = kernel.sinks;
  std::string key = "mla_cache_write_" + std::to_string(capacity) + "x" +
                    std::to_string(heads) + "x" + std::to_string(nope) + "x" +
                    std::to_string(rope) + "x" + std::to_string(valueDim) +
                    formatSuffix(format);
  if (sinks)
    key += "_ring" + std::to_string(*sinks);
  MLACacheWriteOperands<Type> types;
  types.kv = f32Buffer(context,
                       {ShapedType::kDynamic, heads * (nope + valueDim)});
  types.ropeKey = f32Buffer(context, {ShapedType::kDynamic, 1, rope});
  types.cache = simt::buffer(context, {capacity, heads, nope + rope + valueDim},
                             format.format);
  if (format.scaled)
    types.scales = f32Buffer(context, {capacity, heads, 2});
  types.start = IndexType::get(context);
  return target.get<MLACacheWriteOperands>(
      key, types, kBlock,
      [heads](OpBuilder &b, Location loc, MLACacheWriteOperands<Value> args)
          -> Value { return tokensTimes(b, loc, args.kv, heads); },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          MLACacheWriteOperands<Value> args) {
        Value scratch = format.scaled ? thread.scratch(kBlock) : Value();
        Value t, h;
        std::tie(t, h) = divRem(b, loc, thread.workgroup, heads);
        Value position = arith::AddIOp::create(b, loc, args.start, t);
        Value row = cacheSlot(b, loc, position, capacity, sinks);
        Value zero = index(b, loc, 0);
        // kv rows are head-major [k_nope | v]; the key is [k_nope | k_pe]
        // with k_pe shared by all heads.
        Value width = index(b, loc, nope + valueDim);
        Value base = arith::MulIOp::create(b, loc, h, width);
        Value nopeEnd = index(b, loc, nope);
        Value valueBegin = arith::AddIOp::create(b, loc, base, nopeEnd);
        Value keySlot = zero;
        Value valueSlot = index(b, loc, 1);
        Segment keySegments[] = {Segment{args.kv, {t}, base, nope},
                                 Segment{args.ropeKey, {t, zero}, zero, rope}};
        writeEntry(b, loc, thread, keySegments, args.cache, {row, h}, 0,
                   args.scales, {row, h, keySlot}, scratch, format.format);
        Segment valueSegments[] = {Segment{args.kv, {t}, valueBegin, valueDim}};
        writeEntry(b, loc, thread, valueSegments, args.cache, {row, h},
                   nope + rope, args.scales, {row, h, valueSlot}, scratch,
                   format.format);
      });
}

static SymbolRefAttr gpuMLAAbsorbQuery(GPUKernelTarget &target,
                                       const MLAAbsorbQueryKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t heads = kernel.heads, nope = kernel.nope, rope = kernel.rope;
  int64_t valueDim = kernel.valueDim, rank = kernel.rank;
  const WeightOperand kvB = kernel.kvB;
  int64_t rows = heads * (nope + valueDim);
  MLAAbsorbQueryOperands<Type> types;
  types.query = f32Buffer(context, {ShapedType::kDynamic, heads, nope + rope});
  std::tie(types.kvB, types.kvBScale) = kvBTypes(context, rows, rank, kvB);
  types.output = f32Buffer(context, {ShapedType::kDynamic, heads, rank});
  std::string key = "mla_absorb_query_" + std::to_string(heads) + "x" +
                    std::to_string(nope) + "x" + std::to_string(rope) + "x" +
                    std::to_string(valueDim) + "x" + std::to_string(rank) +
                    "_" + kvB.key();
  // Workgroups per (token, head): one per kBlock latent channels.
  int64_t chunks = llvm::divideCeil(rank, kBlock);
  return target.get<MLAAbsorbQueryOperands>(
      key, types, kBlock,
      [heads, chunks](OpBuilder &b, Location loc,
                      MLAAbsorbQueryOperands<Value> args) -> Value {
        return tokensTimes(b, loc, args.query, heads * chunks);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          MLAAbsorbQueryOperands<Value> args) {
        Value item, chunk;
        std::tie(item, chunk) = divRem(b, loc, thread.workgroup, chunks);
        Value t, h;
        std::tie(t, h) = divRem(b, loc, item, heads);
        Value chunkBlock = index(b, loc, kBlock);
        Value chunkBegin = arith::MulIOp::create(b, loc, chunk, chunkBlock);
        Value r = arith::AddIOp::create(b, loc, chunkBegin, thread.thread);
        Value rankEnd = index(b, loc, rank);
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             r, rankEnd);
        scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
          Value width = index(b, loc, nope + valueDim);
          Value base = arith::MulIOp::create(b, loc, h, width);
          // out[t, h, r] = sum_i q[t, h, i] * kv_b[base + i, r], in order.
          Value zero = index(b, loc, 0);
          Value end = index(b, loc, nope);
          Value one = index(b, loc, 1);
          Value init = f32(b, loc, 0.0);
          Value sum = simt::accumulate(
              b, loc, zero, end, one, init,
              [&](OpBuilder &b, Location loc, Value i, Value acc) -> Value {
                Value qi = memref::LoadOp::create(b, loc, args.query,
                                                  ValueRange{t, h, i});
                Value row = arith::AddIOp::create(b, loc, base, i);
                Value w = simt::loadWeightF32(b, loc, args.kvB, args.kvBScale,
                                              row, r, kvB);
                return simt::fma(b, loc, qi, w, acc);
              });
          memref::StoreOp::create(b, loc, sum, args.output,
                                  ValueRange{t, h, r});
          scf::YieldOp::create(b, loc);
        });
      });
}

static SymbolRefAttr
gpuLatentCacheWrite(GPUKernelTarget &target,
                    const LatentCacheWriteKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t capacity = kernel.capacity, rank = kernel.rank, rope = kernel.rope;
  const LatentCacheFormat storage = kernel.storage;
  std::optional<int64_t> sinks = kernel.sinks;
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
  return target.get<LatentCacheWriteOperands>(
      key, types, kBlock,
      [](OpBuilder &b, Location loc, LatentCacheWriteOperands<Value> args)
          -> Value { return tokensTimes(b, loc, args.latent, 1); },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          LatentCacheWriteOperands<Value> args) {
        Value scratch = scaled ? thread.scratch(kBlock) : Value();
        Value t = thread.workgroup;
        Value position = arith::AddIOp::create(b, loc, args.start, t);
        Value row = cacheSlot(b, loc, position, capacity, sinks);
        Value zero = index(b, loc, 0);
        // The latent, one entry per scale block (one block when unscaled).
        int64_t block = scaled ? LatentCacheType::kScaleBlock : rank;
        for (int64_t first = 0; first < rank; first += block) {
          Value begin = index(b, loc, first);
          Segment segment{args.latent, {t}, begin,
                          std::min(block, rank - first)};
          Value scaleBlock = scaled ? index(b, loc, first / block) : Value();
          writeEntry(b, loc, thread, segment, args.latentCache, {row}, first,
                     args.scales, {row, scaleBlock}, scratch, storage.format);
        }
        Segment ropeSegment{args.ropeKey, {t, zero}, zero, rope};
        writeEntry(b, loc, thread, ropeSegment, args.ropeCache, {row}, 0,
                   Value(), {}, Value(), storage.ropeFormat);
      });
}

static SymbolRefAttr gpuLatentAttend(GPUKernelTarget &target,
                                     const LatentAttendKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t capacity = kernel.capacity, heads = kernel.heads;
  int64_t nope = kernel.nope, rope = kernel.rope, rank = kernel.rank;
  double scale = kernel.scale;
  const LatentCacheFormat storage = kernel.storage;
  std::optional<int64_t> window = kernel.window, sinks = kernel.sinks;
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
  // On NVIDIA's matrix units where they suit the kernel (LatentTiles.cpp).
  if (SymbolRefAttr tiles = mma::latentTiles(target, kernel, types, key))
    return tiles;
  bool scaled = storage.scaleBlocks > 0;
  // Channels per scale (all of them when unscaled).
  int64_t scaleBlock = scaled ? LatentCacheType::kScaleBlock : rank;
  // Latent channels per thread.
  int64_t owned = llvm::divideCeil(rank, kBlock);
  // Token t's query heads [h0, h0 + group) over keys [first, last) of
  // `keys`, in chunks of kBlock, at once, so that a workgroup reads each
  // cache entry for all of them (FlashMLA's point: the latent is every
  // head's key and value). Thread j scores key j against each head
  // (`scores`: group x kBlock f32); every thread folds the chunk into its
  // channels of each head with the online softmax. Returns each head's
  // (maximum, sum, unnormalized channels...) in turn.
  auto walkKeysOfGroup =
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          LatentAttendOperands<Value> args, Value scores, Value t, Value h0,
          int64_t group, const VisibleKeys &keys, Value first,
          Value last) -> SmallVector<Value> {
    Value qLatent = args.queryLatent, q = args.query;
    Value latentCache = args.latentCache, scales = args.scales;
    Value ropeCache = args.ropeCache;
    Value zero = index(b, loc, 0), one = index(b, loc, 1);
    Value blockSize = index(b, loc, kBlock);
    SmallVector<Value> heads;
    for (int64_t g = 0; g < group; ++g)
      heads.push_back(arith::AddIOp::create(b, loc, h0, index(b, loc, g)));
    SmallVector<Value> channels;
    SmallVector<int64_t> channelBlocks;
    for (int64_t r = 0; r < owned; ++r) {
      Value offset = index(b, loc, r * kBlock);
      Value c = arith::AddIOp::create(b, loc, thread.thread, offset);
      Value lastChannel = index(b, loc, rank - 1);
      channels.push_back(arith::MinUIOp::create(b, loc, c, lastChannel));
      channelBlocks.push_back(r * kBlock / scaleBlock);
    }
    int64_t perHead = 2 + owned;
    SmallVector<Value> init;
    for (int64_t g = 0; g < group; ++g) {
      init.push_back(f32(b, loc, -std::numeric_limits<double>::infinity()));
      init.push_back(f32(b, loc, 0.0));
      for (int64_t r = 0; r < owned; ++r)
        init.push_back(f32(b, loc, 0.0));
    }
    // sum over d in [lo, hi) of query(h, d) * key(d), for every head.
    auto dots =
        [&](OpBuilder &b, Location loc, int64_t lo, int64_t hi,
            function_ref<Value(OpBuilder &, Location, Value, Value)> query,
            function_ref<Value(OpBuilder &, Location, Value)> key)
        -> SmallVector<Value> {
      SmallVector<Value> starts(group, f32(b, loc, 0.0));
      Value begin = index(b, loc, lo), end = index(b, loc, hi);
      auto loop = scf::ForOp::create(
          b, loc, begin, end, one, starts,
          [&](OpBuilder &b, Location loc, Value d, ValueRange acc) {
            Value k = key(b, loc, d);
            SmallVector<Value> next;
            for (int64_t g = 0; g < group; ++g)
              next.push_back(
                  simt::fma(b, loc, query(b, loc, heads[g], d), k, acc[g]));
            scf::YieldOp::create(b, loc, next);
          });
      return SmallVector<Value>(loop.getResults());
    };
    auto chunks = scf::ForOp::create(
        b, loc, first, last, blockSize, init,
        [&](OpBuilder &b, Location loc, Value chunk, ValueRange state) {
          // Thread j scores key chunk + j against every head of the group.
          Value mine = arith::AddIOp::create(b, loc, chunk, thread.thread);
          Value valid = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                              mine, last);
          auto score = scf::IfOp::create(
              b, loc, valid,
              [&](OpBuilder &b, Location loc) {
                Value slot = keys.slot(b, loc, mine);
                SmallVector<Value> sums(group, f32(b, loc, 0.0));
                for (int64_t lo = 0; lo < rank; lo += scaleBlock) {
                  SmallVector<Value> part = dots(
                      b, loc, lo, std::min(rank, lo + scaleBlock),
                      [&](OpBuilder &b, Location loc, Value h, Value d) {
                        return memref::LoadOp::create(b, loc, qLatent,
                                                      ValueRange{t, h, d})
                            .getResult();
                      },
                      [&](OpBuilder &b, Location loc, Value d) {
                        return simt::loadF32(b, loc, latentCache, {slot, d},
                                             storage.format);
                      });
                  Value blockScale;
                  if (scaled) {
                    Value blockIndex = index(b, loc, lo / scaleBlock);
                    blockScale = memref::LoadOp::create(
                        b, loc, scales, ValueRange{slot, blockIndex});
                  }
                  for (int64_t g = 0; g < group; ++g) {
                    Value p = part[g];
                    if (scaled)
                      p = arith::MulFOp::create(b, loc, p, blockScale);
                    sums[g] = arith::AddFOp::create(b, loc, sums[g], p);
                  }
                }
                SmallVector<Value> ropeSums = dots(
                    b, loc, 0, rope,
                    [&](OpBuilder &b, Location loc, Value h, Value d) {
                      Value nopeEnd = index(b, loc, nope);
                      Value channel = arith::AddIOp::create(b, loc, d, nopeEnd);
                      return memref::LoadOp::create(b, loc, q,
                                                    ValueRange{t, h, channel})
                          .getResult();
                    },
                    [&](OpBuilder &b, Location loc, Value d) {
                      return simt::loadF32(b, loc, ropeCache, {slot, d},
                                           storage.ropeFormat);
                    });
                SmallVector<Value> scored;
                for (int64_t g = 0; g < group; ++g) {
                  Value sum =
                      arith::AddFOp::create(b, loc, sums[g], ropeSums[g]);
                  Value factor = f32(b, loc, scale);
                  scored.push_back(arith::MulFOp::create(b, loc, sum, factor));
                }
                scf::YieldOp::create(b, loc, scored);
              },
              [&](OpBuilder &b, Location loc) {
                SmallVector<Value> zeros(group, f32(b, loc, 0.0));
                scf::YieldOp::create(b, loc, zeros);
              });
          simt::storeScores(b, loc, thread, scores, score.getResults());
          mlir::gpu::BarrierOp::create(b, loc);
          // Every thread folds the chunk's keys into its channels of every
          // head: each latent value read once for the group.
          Value remaining = arith::SubIOp::create(b, loc, last, chunk);
          Value count = arith::MinUIOp::create(b, loc, blockSize, remaining);
          auto fold = scf::ForOp::create(
              b, loc, zero, count, one, state,
              [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                Value keyIndex = arith::AddIOp::create(b, loc, chunk, i);
                Value slot = keys.slot(b, loc, keyIndex);
                // This thread's latent values of the key, with their scale
                // block's scale.
                llvm::SmallDenseMap<int64_t, Value> blockScales;
                SmallVector<Value> values;
                for (int64_t r = 0; r < owned; ++r) {
                  Value c = simt::loadF32(b, loc, latentCache,
                                          {slot, channels[r]}, storage.format);
                  if (scaled) {
                    Value &blockScale = blockScales[channelBlocks[r]];
                    if (!blockScale) {
                      Value blockIndex = index(b, loc, channelBlocks[r]);
                      blockScale = memref::LoadOp::create(
                          b, loc, scales, ValueRange{slot, blockIndex});
                    }
                    c = arith::MulFOp::create(b, loc, c, blockScale);
                  }
                  values.push_back(c);
                }
                SmallVector<Value> next;
                for (int64_t g = 0; g < group; ++g) {
                  Value at = arith::AddIOp::create(b, loc, i,
                                                   index(b, loc, g * kBlock));
                  Value s = memref::LoadOp::create(b, loc, scores, at);
                  int64_t base = g * perHead;
                  SoftmaxStep step = onlineSoftmaxStep(b, loc, state[base],
                                                       state[base + 1], s);
                  next.push_back(step.max);
                  next.push_back(step.sum);
                  for (int64_t r = 0; r < owned; ++r) {
                    Value kept = arith::MulFOp::create(
                        b, loc, state[base + 2 + r], step.correction);
                    next.push_back(
                        simt::fma(b, loc, step.weight, values[r], kept));
                  }
                }
                scf::YieldOp::create(b, loc, next);
              });
          // The scores are read by all before the next chunk overwrites them.
          mlir::gpu::BarrierOp::create(b, loc);
          scf::YieldOp::create(b, loc, fold.getResults());
        });
    return SmallVector<Value>(chunks.getResults());
  };
  // Token t's query head h over keys [first, last) of `keys` (prefill): the
  // same walk for one head.
  auto walkKeys = [&](OpBuilder &b, Location loc, const GPUThread &thread,
                      LatentAttendOperands<Value> args, Value scores, Value t,
                      Value h, const VisibleKeys &keys, Value first,
                      Value last) -> SmallVector<Value> {
    return walkKeysOfGroup(b, loc, thread, args, scores, t, h, 1, keys, first,
                           last);
  };
  // Stores value(r) at latent channel thread + r * kBlock of
  // memref[prefix...] for the channels below the rank.
  auto storeLatent =
      [&](OpBuilder &b, Location loc, const GPUThread &thread, Value memref,
          ValueRange prefix,
          function_ref<Value(OpBuilder &, Location, int64_t)> value) {
        for (int64_t r = 0; r < owned; ++r) {
          Value offset = index(b, loc, r * kBlock);
          Value c = arith::AddIOp::create(b, loc, thread.thread, offset);
          Value rankEnd = index(b, loc, rank);
          Value inside = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, c, rankEnd);
          scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
            SmallVector<Value> indices(prefix.begin(), prefix.end());
            indices.push_back(c);
            memref::StoreOp::create(b, loc, value(b, loc, r), memref, indices);
            scf::YieldOp::create(b, loc);
          });
        }
      };
  // Prefill: a workgroup per (token, head) over all its visible keys.
  SymbolRefAttr whole = target.get<LatentAttendOperands>(
      key, types, kBlock,
      [heads](OpBuilder &b, Location loc, LatentAttendOperands<Value> args)
          -> Value { return tokensTimes(b, loc, args.query, heads); },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          LatentAttendOperands<Value> args) {
        Value t, h;
        std::tie(t, h) = divRem(b, loc, thread.workgroup, heads);
        Value position = arith::AddIOp::create(b, loc, args.start, t);
        VisibleKeys keys =
            visibleKeys(b, loc, position, capacity, window, sinks);
        SmallVector<Value> state =
            walkKeys(b, loc, thread, args, thread.scratch(kBlock), t, h, keys,
                     keys.begin, keys.end);
        Value total = state[1];
        storeLatent(b, loc, thread, args.output, ValueRange{t, h},
                    [&](OpBuilder &b, Location loc, int64_t r) -> Value {
                      return arith::DivFOp::create(b, loc, state[2 + r], total);
                    });
      });

  // Decode (one token), flash decoding (FlashDecoding.cpp): workgroup
  // (slice, group of heads) walks its slice of the visible keys for every
  // head of the group and leaves their latent outputs, maxima and sums in
  // the scratch; a workgroup per head combines the slices. A group of up
  // to 8 heads reads each cache entry once where a workgroup per head read
  // it once per head (DeepSeek's 16 or 128 heads: 2 or 16 reads instead).
  int64_t group = 1;
  while (group < 8 && heads % (2 * group) == 0)
    group *= 2;
  MemRefType scratchType = flash::scratchType(context, heads, rank);
  unsigned startOperand = types.scales ? 5 : 4;
  SymbolRefAttr partial = flash::slicesKernel(
      target, key + "_slices", presentOperands(types), startOperand, heads,
      rank, capacity, kBlock, window, sinks,
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands, Value slice, Value h0, const VisibleKeys &keys,
          const flash::Slice &range) {
        LatentAttendOperands<Value> args =
            bindOperands(types, operands.drop_back());
        Value scratch = operands.back();
        Value t = index(b, loc, 0);
        SmallVector<Value> state = walkKeysOfGroup(
            b, loc, thread, args, thread.scratch(group * kBlock), t, h0, group,
            keys, range.first, range.last);
        for (int64_t g = 0; g < group; ++g) {
          Value h = arith::AddIOp::create(b, loc, h0, index(b, loc, g));
          int64_t base = g * (2 + owned);
          storeLatent(b, loc, thread, scratch, ValueRange{slice, h},
                      [&](OpBuilder &, Location, int64_t r) {
                        return state[base + 2 + r];
                      });
          flash::storeTotals(b, loc, thread, scratch, slice, h, rank,
                             state[base], state[base + 1]);
        }
      },
      group);
  SymbolRefAttr combine = flash::combineKernel(
      target, key + "_combine", heads, rank, capacity, kBlock, window, sinks);
  SymbolRefAttr sliced =
      target.twoSteps(key + "_decode", partial, combine, scratchType,
                      {startOperand, startOperand + 1});
  // The latent query is the first operand.
  return target.byLeadingSize(key + "_by_tokens", sliced, whole,
                              /*operand=*/0);
}

static SymbolRefAttr gpuMLAAbsorbOutput(GPUKernelTarget &target,
                                        const MLAAbsorbOutputKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t heads = kernel.heads, nope = kernel.nope;
  int64_t valueDim = kernel.valueDim, rank = kernel.rank;
  const WeightOperand kvB = kernel.kvB;
  int64_t rows = heads * (nope + valueDim);
  MLAAbsorbOutputOperands<Type> types;
  types.latent = f32Buffer(context, {ShapedType::kDynamic, heads, rank});
  std::tie(types.kvB, types.kvBScale) = kvBTypes(context, rows, rank, kvB);
  types.output = f32Buffer(context, {ShapedType::kDynamic, heads, valueDim});
  std::string key = "mla_absorb_output_" + std::to_string(heads) + "x" +
                    std::to_string(nope) + "x" + std::to_string(valueDim) +
                    "x" + std::to_string(rank) + "_" + kvB.key();
  return target.get<MLAAbsorbOutputOperands>(
      key, types, kBlock,
      [heads, valueDim](OpBuilder &b, Location loc,
                        MLAAbsorbOutputOperands<Value> args) -> Value {
        return tokensTimes(b, loc, args.latent, heads * valueDim);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          MLAAbsorbOutputOperands<Value> args) {
        Value scratch = thread.scratch(kBlock);
        Value item, d;
        std::tie(item, d) = divRem(b, loc, thread.workgroup, valueDim);
        Value t, h;
        std::tie(t, h) = divRem(b, loc, item, heads);
        // kv_b row of value channel d of head h: h * (nope + v) + nope + d.
        Value width = index(b, loc, nope + valueDim);
        Value headBase = arith::MulIOp::create(b, loc, h, width);
        Value nopeEnd = index(b, loc, nope);
        Value base = arith::AddIOp::create(b, loc, headBase, nopeEnd);
        Value row = arith::AddIOp::create(b, loc, base, d);
        Value end = index(b, loc, rank);
        Value step = index(b, loc, kBlock);
        Value init = f32(b, loc, 0.0);
        Value mine = simt::accumulate(
            b, loc, thread.thread, end, step, init,
            [&](OpBuilder &b, Location loc, Value r, Value acc) -> Value {
              Value x = memref::LoadOp::create(b, loc, args.latent,
                                               ValueRange{t, h, r});
              Value w = simt::loadWeightF32(b, loc, args.kvB, args.kvBScale,
                                            row, r, kvB);
              return simt::fma(b, loc, x, w, acc);
            });
        Value sum =
            simt::reduce(b, loc, thread, scratch, mine, simt::Reduction::Sum);
        simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
          memref::StoreOp::create(b, loc, sum, args.output,
                                  ValueRange{t, h, d});
        });
      });
}

void xfmr::kernels::registerGPULatentKernels(KernelRegistry &registry) {
  addGPUKernel<MLACacheWriteKernel>(registry, gpuMLACacheWrite);
  addGPUKernel<MLAAbsorbQueryKernel>(registry, gpuMLAAbsorbQuery);
  addGPUKernel<LatentCacheWriteKernel>(registry, gpuLatentCacheWrite);
  addGPUKernel<LatentAttendKernel>(registry, gpuLatentAttend);
  addGPUKernel<MLAAbsorbOutputKernel>(registry, gpuMLAAbsorbOutput);
}
