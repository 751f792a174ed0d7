//===- FlashDecoding.cpp - decode attention in slices of the cache ----===//
//
// Decode (one token) attends the whole visible cache with one query per
// head: a workgroup per head leaves most of a GPU idle on a long cache.
// Flash decoding splits each head's visible keys into at most kSlices
// slices of whole chunks; a workgroup per (slice, head) runs the online
// softmax over its slice and leaves [unnormalized outputs, max, sum] in a
// scratch buffer, and a second launch combines the slices of each head:
//
//   out = sum_s outputs_s e^(max_s - M) / sum_s sum_s e^(max_s - M),
//   M = max_s max_s.
//
// Both launches find the slices from the same visible keys, so the host
// launches a fixed grid of slices (kSlices unless the kernel asks for more)
// x heads, and slices past the keys exit.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

/// ceil(a / divisor) for a > 0 (SPIR-V has no arith.ceildivui lowering).
static Value ceilDiv(OpBuilder &b, Location loc, Value a, Value divisor) {
  Value less = arith::SubIOp::create(b, loc, a, index(b, loc, 1));
  Value quotient = arith::DivUIOp::create(b, loc, less, divisor);
  return arith::AddIOp::create(b, loc, quotient, index(b, loc, 1));
}

/// The keys per slice for `count` (> 0) visible keys: ceil(count / slices)
/// rounded up to whole chunks.
static Value keysPerSlice(OpBuilder &b, Location loc, Value count,
                          int64_t chunk, int64_t slices) {
  Value perSlice = ceilDiv(b, loc, count, index(b, loc, slices));
  Value chunks = ceilDiv(b, loc, perSlice, index(b, loc, chunk));
  return arith::MulIOp::create(b, loc, chunks, index(b, loc, chunk));
}

MemRefType flash::scratchType(MLIRContext *context, int64_t heads,
                              int64_t width, int64_t slices) {
  return MemRefType::get({slices, heads, width + 2}, Float32Type::get(context));
}

flash::Slice flash::sliceOf(OpBuilder &b, Location loc, const VisibleKeys &keys,
                            Value slice, int64_t chunk, int64_t slices) {
  Value count = arith::SubIOp::create(b, loc, keys.end, keys.begin);
  Value perSlice = keysPerSlice(b, loc, count, chunk, slices);
  Value offset = arith::MulIOp::create(b, loc, slice, perSlice);
  Value first = arith::AddIOp::create(b, loc, keys.begin, offset);
  Value used =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, first, keys.end);
  Value next = arith::AddIOp::create(b, loc, first, perSlice);
  Value last = arith::MinUIOp::create(b, loc, next, keys.end);
  return {first, last, used};
}

SymbolRefAttr flash::slicesKernel(GPUKernelTarget &target, StringRef key,
                                  ArrayRef<Type> operands,
                                  unsigned startOperand, int64_t heads,
                                  int64_t width, int64_t capacity,
                                  int64_t chunk, std::optional<int64_t> window,
                                  std::optional<int64_t> sinks, SliceBody body,
                                  int64_t headsPerWorkgroup, int64_t threads,
                                  int64_t slices) {
  assert(heads % headsPerWorkgroup == 0 && "whole groups of heads");
  MLIRContext *context = target.getModule().getContext();
  SmallVector<Type> types(operands);
  types.push_back(scratchType(context, heads, width, slices));
  int64_t groups = heads / headsPerWorkgroup;
  return target.get(
      key, types, threads ? threads : chunk,
      [groups, slices](OpBuilder &b, Location loc, ValueRange) -> Value {
        return index(b, loc, groups * slices);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange arguments) {
        Value count = index(b, loc, groups);
        Value slice = arith::DivUIOp::create(b, loc, thread.workgroup, count);
        Value group = arith::RemUIOp::create(b, loc, thread.workgroup, count);
        Value head = arith::MulIOp::create(b, loc, group,
                                           index(b, loc, headsPerWorkgroup));
        VisibleKeys keys = visibleKeys(b, loc, arguments[startOperand],
                                       capacity, window, sinks);
        Slice range = sliceOf(b, loc, keys, slice, chunk, slices);
        // Slices past the keys have nothing to do (the combination skips
        // them too); the branch is uniform across the workgroup.
        scf::IfOp::create(b, loc, range.used, [&](OpBuilder &b, Location loc) {
          body(b, loc, thread, arguments, slice, head, keys, range);
          scf::YieldOp::create(b, loc);
        });
      });
}

void flash::storeTotals(OpBuilder &b, Location loc, const GPUThread &thread,
                        Value scratch, Value slice, Value head, int64_t width,
                        Value max, Value sum) {
  simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
    Value maxColumn = index(b, loc, width);
    memref::StoreOp::create(b, loc, max, scratch,
                            ValueRange{slice, head, maxColumn});
    Value sumColumn = index(b, loc, width + 1);
    memref::StoreOp::create(b, loc, sum, scratch,
                            ValueRange{slice, head, sumColumn});
  });
}

SymbolRefAttr flash::combineKernel(GPUKernelTarget &target, StringRef key,
                                   int64_t heads, int64_t width,
                                   int64_t capacity, int64_t chunk,
                                   std::optional<int64_t> window,
                                   std::optional<int64_t> sinks,
                                   int64_t slices) {
  MLIRContext *context = target.getModule().getContext();
  // Channels a workgroup, groups of its threads that split the slices
  // between them, and the slices whose partial outputs a thread loads
  // before it adds any up.
  constexpr int64_t channels = 64, groups = 4, unroll = 8;
  constexpr int64_t block = channels * groups;
  auto output = MemRefType::get({ShapedType::kDynamic, heads, width},
                                Float32Type::get(context));
  SmallVector<Type> types{scratchType(context, heads, width, slices),
                          IndexType::get(context), output};
  // A workgroup per (head, 64 channels), `groups` threads a channel: the
  // slices' partial outputs are the most of what decode attention reads
  // besides the cache (128 slices of DeepSeek's 16 x 512 latent outputs:
  // 4 MiB), so they are read by many workgroups, `unroll` loads in flight a
  // thread, a quarter of the slices each.
  int64_t blocks = llvm::divideCeil(width, channels);
  return target.get(
      key, types, block,
      [heads, blocks](OpBuilder &b, Location loc, ValueRange) -> Value {
        return index(b, loc, heads * blocks);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        Value scratch = operands[0], start = operands[1], out = operands[2];
        Value h = arith::DivUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, blocks));
        Value channelBlock = arith::RemUIOp::create(b, loc, thread.workgroup,
                                                    index(b, loc, blocks));
        VisibleKeys keys = visibleKeys(b, loc, start, capacity, window, sinks);
        Value count = arith::SubIOp::create(b, loc, keys.end, keys.begin);
        Value perSlice = keysPerSlice(b, loc, count, chunk, slices);
        Value used = ceilDiv(b, loc, count, perSlice);
        Value maxColumn = index(b, loc, width);
        Value sumColumn = index(b, loc, width + 1);
        Value step = index(b, loc, block);
        Value reduction = thread.scratch(block);
        // Each slice's weight e^(max_s - M), zero past the used slices.
        int64_t padded = llvm::alignTo(slices, unroll);
        Value weights = thread.scratch(padded);
        Value lowest = f32(b, loc, -std::numeric_limits<double>::infinity());
        Value mine = simt::accumulate(
            b, loc, thread.thread, used, step, lowest,
            [&](OpBuilder &b, Location loc, Value s, Value acc) -> Value {
              Value max = memref::LoadOp::create(b, loc, scratch,
                                                 ValueRange{s, h, maxColumn});
              return arith::MaximumFOp::create(b, loc, acc, max);
            });
        Value largest =
            simt::reduce(b, loc, thread, reduction, mine, simt::Reduction::Max);
        Value zero = f32(b, loc, 0.0);
        Value part = simt::accumulate(
            b, loc, thread.thread, index(b, loc, padded), step, zero,
            [&](OpBuilder &b, Location loc, Value s, Value acc) -> Value {
              Value inside = arith::CmpIOp::create(
                  b, loc, arith::CmpIPredicate::ult, s, used);
              auto weighed = scf::IfOp::create(
                  b, loc, TypeRange{b.getF32Type(), b.getF32Type()}, inside,
                  /*withElseRegion=*/true);
              {
                OpBuilder::InsertionGuard guard(b);
                b.setInsertionPointToStart(&weighed.getThenRegion().front());
                Value max = memref::LoadOp::create(b, loc, scratch,
                                                   ValueRange{s, h, maxColumn});
                Value sum = memref::LoadOp::create(b, loc, scratch,
                                                   ValueRange{s, h, sumColumn});
                Value shift = arith::SubFOp::create(b, loc, max, largest);
                Value weight = math::ExpOp::create(b, loc, shift);
                Value weightedSum = arith::MulFOp::create(b, loc, sum, weight);
                scf::YieldOp::create(b, loc, ValueRange{weight, weightedSum});
                b.setInsertionPointToStart(&weighed.getElseRegion().front());
                scf::YieldOp::create(b, loc, ValueRange{zero, zero});
              }
              memref::StoreOp::create(b, loc, weighed.getResult(0), weights, s);
              return arith::AddFOp::create(b, loc, acc, weighed.getResult(1));
            });
        // The reduction's barriers also publish the weights.
        Value total =
            simt::reduce(b, loc, thread, reduction, part, simt::Reduction::Sum);
        Value lane = arith::RemUIOp::create(b, loc, thread.thread,
                                            index(b, loc, channels));
        Value group = arith::DivUIOp::create(b, loc, thread.thread,
                                             index(b, loc, channels));
        Value first = arith::MulIOp::create(b, loc, channelBlock,
                                            index(b, loc, channels));
        Value c = arith::AddIOp::create(b, loc, first, lane);
        Value lastChannel = index(b, loc, width - 1);
        Value readChannel = arith::MinUIOp::create(b, loc, c, lastChannel);
        // Group g's slices: `unroll` from g * unroll, every groups * unroll;
        // slices past the used ones read the last used one's (finite)
        // outputs, with weight 0.
        Value lastUsed = arith::SubIOp::create(b, loc, used, index(b, loc, 1));
        Value begin =
            arith::MulIOp::create(b, loc, group, index(b, loc, unroll));
        Value stride = index(b, loc, groups * unroll);
        Value mineSum = simt::accumulate(
            b, loc, begin, used, stride, zero,
            [&](OpBuilder &b, Location loc, Value s0, Value acc) -> Value {
              SmallVector<Value> parts, slicesWeights;
              for (int64_t u = 0; u < unroll; ++u) {
                Value s = arith::AddIOp::create(b, loc, s0, index(b, loc, u));
                Value read = arith::MinUIOp::create(b, loc, s, lastUsed);
                parts.push_back(memref::LoadOp::create(
                    b, loc, scratch, ValueRange{read, h, readChannel}));
                slicesWeights.push_back(
                    memref::LoadOp::create(b, loc, weights, s));
              }
              for (int64_t u = 0; u < unroll; ++u)
                acc = simt::fma(b, loc, parts[u], slicesWeights[u], acc);
              return acc;
            });
        // The groups' sums of each channel, added in group order.
        memref::StoreOp::create(b, loc, mineSum, reduction, thread.thread);
        mlir::gpu::BarrierOp::create(b, loc);
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             c, index(b, loc, width));
        Value firstGroup = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::eq, group, index(b, loc, 0));
        Value writer = arith::AndIOp::create(b, loc, inside, firstGroup);
        scf::IfOp::create(b, loc, writer, [&](OpBuilder &b, Location loc) {
          Value sum = zero;
          for (int64_t g = 0; g < groups; ++g) {
            Value at = arith::AddIOp::create(b, loc, lane,
                                             index(b, loc, g * channels));
            Value part = memref::LoadOp::create(b, loc, reduction, at);
            sum = arith::AddFOp::create(b, loc, sum, part);
          }
          Value result = arith::DivFOp::create(b, loc, sum, total);
          memref::StoreOp::create(b, loc, result, out,
                                  ValueRange{index(b, loc, 0), h, c});
          scf::YieldOp::create(b, loc);
        });
      });
}
