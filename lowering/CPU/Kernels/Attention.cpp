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
    serialFor(b, loc, zero, index(b, loc, segment.length),
              [&](OpBuilder &b, Location loc, Value i) {
      Value v = at(b, loc, segment, i);
      if (scale)
        v = arith::DivFOp::create(b, loc, v, scale);
      Value target = arith::AddIOp::create(b, loc, i, index(b, loc, first));
      memref::StoreOp::create(b, loc, encodeCacheValue(b, loc, v, format), cache,
                              ValueRange{row, head, target});
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
                    std::to_string(heads) + "x" + std::to_string(keyDim) +
                    "x" + std::to_string(valueDim) + formatSuffix(format);
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
    parallelFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      Value row = cacheSlot(b, loc, arith::AddIOp::create(b, loc, start, t),
                            capacity, sinks);
      serialFor(b, loc, zero, index(b, loc, heads),
                [&](OpBuilder &b, Location loc, Value h) {
        writeEntry(b, loc, {Segment{k, {t, h}, zero, keyDim}}, cache, scales,
                   row, h, 0, 0, format.format);
        writeEntry(b, loc, {Segment{v, {t, h}, zero, valueDim}}, cache,
                   scales, row, h, keyDim, 1, format.format);
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
    parallelFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      Value row = cacheSlot(b, loc, arith::AddIOp::create(b, loc, start, t),
                            capacity, sinks);
      serialFor(b, loc, zero, index(b, loc, heads),
                [&](OpBuilder &b, Location loc, Value h) {
        // kv rows are head-major [k_nope | v]; the key is [k_nope | k_pe]
        // with k_pe shared by all heads.
        Value base =
            arith::MulIOp::create(b, loc, h, index(b, loc, nope + valueDim));
        Value valueBegin =
            arith::AddIOp::create(b, loc, base, index(b, loc, nope));
        writeEntry(b, loc,
                   {Segment{kv, {t}, base, nope},
                    Segment{ropeKey, {t, zero}, zero, rope}},
                   cache, scales, row, h, 0, 0, format.format);
        writeEntry(b, loc, {Segment{kv, {t}, valueBegin, valueDim}}, cache,
                   scales, row, h, nope + rope, 1, format.format);
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
                    std::to_string(queryHeads) + "x" +
                    std::to_string(kvHeads) + "x" + std::to_string(keyDim) +
                    "x" + std::to_string(valueDim) + "_" + scaleText;
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
      key, types,
      [&](OpBuilder &b, Location loc, AttendOperands<Value> args) {
        Value q = args.query, cache = args.cache, scales = args.scales;
        Value start = args.start, out = args.output;
        Value table = isFP8(format) ? lib.lookupTable(b, loc, format) : Value();
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
          VisibleKeys keys =
              visibleKeys(b, loc, position, capacity, window, sinks);
          Value begin = keys.begin, end = keys.end;
          auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
          Block *body = new Block();
          scope.getBodyRegion().push_back(body);
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(body);
          Value negInf =
              f32(b, loc, -std::numeric_limits<double>::infinity());
          // Score of key j (scaled), and the scale of value j (8-bit caches).
          auto scoreOf = [&](OpBuilder &b, Location loc, Value j) {
            // j is a cache slot.
            Value score = dot(b, loc, q, {t, h}, zero, cache, {j, kvHead},
                              zero, keyDim, format, table, width);
            Value valueScale;
            if (scaled) {
              score = arith::MulFOp::create(
                  b, loc, score,
                  memref::LoadOp::create(b, loc, scales,
                                         ValueRange{j, kvHead, zero}));
              valueScale = memref::LoadOp::create(b, loc, scales,
                                                  ValueRange{j, kvHead, one});
            }
            score = arith::MulFOp::create(b, loc, score, f32(b, loc, scale));
            return std::pair(score, valueScale);
          };
          if (valueDim % width == 0 && valueDim <= 256) {
            // The output accumulators live in vector registers.
            auto vectorType = VectorType::get({width}, b.getF32Type());
            int64_t pieces = valueDim / width;
            Value vzero = arith::ConstantOp::create(
                b, loc, DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)));
            SmallVector<Value> init{negInf, f32(b, loc, 0.0)};
            init.append(pieces, vzero);
            auto loop = scf::ForOp::create(
                b, loc, begin, end, one, init,
                [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                  Value j = keys.slot(b, loc, i);
                  auto [score, valueScale] = scoreOf(b, loc, j);
                  SoftmaxStep step =
                      onlineSoftmaxStep(b, loc, state[0], state[1], score);
                  Value maxNew = step.max, sumNew = step.sum;
                  Value correction = step.correction, weight = step.weight;
                  Value valueWeight =
                      valueScale
                          ? arith::MulFOp::create(b, loc, weight, valueScale)
                                .getResult()
                          : weight;
                  Value c = vector::BroadcastOp::create(b, loc, vectorType,
                                                        correction);
                  Value w = vector::BroadcastOp::create(b, loc, vectorType,
                                                        valueWeight);
                  SmallVector<Value> next{maxNew, sumNew};
                  for (int64_t i = 0; i < pieces; ++i) {
                    Value v = loadVectorAsF32(
                        b, loc, cache,
                        {j, kvHead, index(b, loc, keyDim + i * width)},
                        format, table, width);
                    next.push_back(vector::FMAOp::create(
                        b, loc, w, v,
                        arith::MulFOp::create(b, loc, state[2 + i], c)));
                  }
                  scf::YieldOp::create(b, loc, next);
                });
            Value inverse = vector::BroadcastOp::create(
                b, loc, vectorType,
                arith::DivFOp::create(b, loc, f32(b, loc, 1.0),
                                      loop.getResult(1)));
            for (int64_t i = 0; i < pieces; ++i) {
              Value scaled =
                  arith::MulFOp::create(b, loc, loop.getResult(2 + i), inverse);
              Value channel = index(b, loc, i * width);
              vector::StoreOp::create(b, loc, scaled, out,
                                      ValueRange{t, h, channel});
            }
            memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
            return;
          }
          Value acc = memref::AllocaOp::create(b, 
              loc, MemRefType::get({valueDim}, b.getF32Type()));
          serialFor(b, loc, zero, index(b, loc, valueDim),
                    [&](OpBuilder &b, Location loc, Value d) {
            memref::StoreOp::create(b, loc, f32(b, loc, 0.0), acc, d);
          });
          auto loop = scf::ForOp::create(b, 
              loc, begin, end, one, ValueRange{negInf, f32(b, loc, 0.0)},
              [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                Value j = keys.slot(b, loc, i);
                auto [score, valueScale] = scoreOf(b, loc, j);
                SoftmaxStep step =
                    onlineSoftmaxStep(b, loc, state[0], state[1], score);
                Value maxNew = step.max, sumNew = step.sum;
                Value correction = step.correction, weight = step.weight;
                // The value scale folds into the softmax weight.
                Value valueWeight =
                    valueScale ? arith::MulFOp::create(b, loc, weight, valueScale)
                                     .getResult()
                               : weight;
                serialFor(b, loc, zero, index(b, loc, valueDim),
                          [&](OpBuilder &b, Location loc, Value d) {
                  Value channel =
                      arith::AddIOp::create(b, loc, d, index(b, loc, keyDim));
                  Value value = loadAsF32(b, loc, cache, {j, kvHead, channel},
                                          format, table);
                  Value old = memref::LoadOp::create(b, loc, acc, d);
                  Value kept = arith::MulFOp::create(b, loc, old, correction);
                  Value added =
                      arith::MulFOp::create(b, loc, valueWeight, value);
                  Value updated = arith::AddFOp::create(b, loc, kept, added);
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
