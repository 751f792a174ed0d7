//===- Attention.cpp - KV-cache writes and attention on GPUs ----------===//
//
// The cache layout is the CPU's ([capacity, kv heads, key | value] per
// layer, 8-bit formats with per-row scales [capacity, kv heads, 2]).
// Writes: a workgroup per (token, kv head). Attention: a workgroup per
// (token, query head) walks the visible keys in chunks of `block`: thread j
// scores key j of the chunk, the scores go through workgroup memory, and
// each thread runs the online softmax over the chunk for the output
// channels it owns (thread, thread + block, ...), reading values row-wise
// (coalesced).
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
  AttendOperands<Type> types{
      perHead(context, queryHeads, keyDim),
      simt::buffer(context, {capacity, kvHeads, keyDim + valueDim}, format),
      scaleBuffer(context, capacity, kvHeads, storage), IndexType::get(context),
      perHead(context, queryHeads, valueDim)};
  constexpr int64_t block = 64;
  // Output channels per thread.
  int64_t owned = llvm::divideCeil(valueDim, block);
  return target.get<AttendOperands>(
      key, types, block,
      [queryHeads](OpBuilder &b, Location loc, AttendOperands<Value> args)
          -> Value {
        Value tokens = memref::DimOp::create(b, loc, args.query, 0);
        Value perToken = index(b, loc, queryHeads);
        return arith::MulIOp::create(b, loc, tokens, perToken);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          AttendOperands<Value> args) {
        Value scores = thread.scratch(block);
        Value q = args.query, cache = args.cache, scales = args.scales;
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value t = arith::DivUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, queryHeads));
        Value h = arith::RemUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, queryHeads));
        Value kvHead = arith::DivUIOp::create(b, loc, h, index(b, loc, group));
        Value position = arith::AddIOp::create(b, loc, args.start, t);
        VisibleKeys keys =
            visibleKeys(b, loc, position, capacity, window, sinks);
        Value blockSize = index(b, loc, block);
        // This thread's output channels, clamped (the extra ones are
        // computed on a valid channel and not stored).
        SmallVector<Value> channels;
        for (int64_t r = 0; r < owned; ++r) {
          Value c = arith::AddIOp::create(b, loc, thread.thread,
                                          index(b, loc, r * block));
          channels.push_back(arith::MinUIOp::create(
              b, loc, c, index(b, loc, valueDim - 1)));
        }
        SmallVector<Value> init{
            f32(b, loc, -std::numeric_limits<double>::infinity()),
            f32(b, loc, 0.0)};
        init.append(owned, f32(b, loc, 0.0));
        auto chunks = scf::ForOp::create(
            b, loc, keys.begin, keys.end, blockSize, init,
            [&](OpBuilder &b, Location loc, Value chunk, ValueRange state) {
          // Thread j scores key chunk + j.
          Value mine = arith::AddIOp::create(b, loc, chunk, thread.thread);
          Value valid = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                              mine, keys.end);
          auto score = scf::IfOp::create(
              b, loc, valid,
              [&](OpBuilder &b, Location loc) {
                Value slot = keys.slot(b, loc, mine);
                Value end = index(b, loc, keyDim);
                Value start = f32(b, loc, 0.0);
                Value dot = simt::accumulate(
                    b, loc, zero, end, one, start,
                    [&](OpBuilder &b, Location loc, Value d, Value acc)
                        -> Value {
                      Value qd = memref::LoadOp::create(b, loc, q,
                                                        ValueRange{t, h, d});
                      Value kd = simt::loadF32(b, loc, cache,
                                               {slot, kvHead, d}, format);
                      return simt::fma(b, loc, qd, kd, acc);
                    });
                if (storage.scaled)
                  dot = arith::MulFOp::create(
                      b, loc, dot,
                      memref::LoadOp::create(b, loc, scales,
                                             ValueRange{slot, kvHead, zero}));
                dot = arith::MulFOp::create(b, loc, dot, f32(b, loc, scale));
                scf::YieldOp::create(b, loc, dot);
              },
              [&](OpBuilder &b, Location loc) {
                scf::YieldOp::create(b, loc, f32(b, loc, 0.0));
              });
          memref::StoreOp::create(b, loc, score.getResult(0), scores,
                                  thread.thread);
          mlir::gpu::BarrierOp::create(b, loc);
          // Every thread folds the chunk's scores into its channels.
          Value count = arith::MinUIOp::create(
              b, loc, blockSize, arith::SubIOp::create(b, loc, keys.end, chunk));
          auto fold = scf::ForOp::create(
              b, loc, zero, count, one, state,
              [&](OpBuilder &b, Location loc, Value i, ValueRange state) {
                Value s = memref::LoadOp::create(b, loc, scores, i);
                SoftmaxStep step = onlineSoftmaxStep(b, loc, state[0], state[1], s);
                Value slot = keys.slot(
                    b, loc, arith::AddIOp::create(b, loc, chunk, i));
                Value weight = step.weight;
                if (storage.scaled)
                  weight = arith::MulFOp::create(
                      b, loc, weight,
                      memref::LoadOp::create(b, loc, scales,
                                             ValueRange{slot, kvHead, one}));
                SmallVector<Value> next{step.max, step.sum};
                for (int64_t r = 0; r < owned; ++r) {
                  Value channel = arith::AddIOp::create(
                      b, loc, channels[r], index(b, loc, keyDim));
                  Value v = simt::loadF32(b, loc, cache,
                                          {slot, kvHead, channel}, format);
                  next.push_back(simt::fma(
                      b, loc, weight, v,
                      arith::MulFOp::create(b, loc, state[2 + r],
                                            step.correction)));
                }
                scf::YieldOp::create(b, loc, next);
              });
          // The scores are read by all before the next chunk overwrites them.
          mlir::gpu::BarrierOp::create(b, loc);
          scf::YieldOp::create(b, loc, fold.getResults());
        });
        Value inverse = arith::DivFOp::create(b, loc, f32(b, loc, 1.0),
                                              chunks.getResult(1));
        for (int64_t r = 0; r < owned; ++r) {
          Value c = arith::AddIOp::create(b, loc, thread.thread,
                                          index(b, loc, r * block));
          Value inside = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, c, index(b, loc, valueDim));
          scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
            memref::StoreOp::create(
                b, loc,
                arith::MulFOp::create(b, loc, chunks.getResult(2 + r), inverse),
                args.output, ValueRange{t, h, c});
            scf::YieldOp::create(b, loc);
          });
        }
      });
}
