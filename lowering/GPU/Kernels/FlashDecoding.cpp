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
// launches a fixed kSlices x heads grid and slices past the keys exit.
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

/// The keys per slice for `count` (> 0) visible keys: ceil(count / kSlices)
/// rounded up to whole chunks.
static Value keysPerSlice(OpBuilder &b, Location loc, Value count,
                          int64_t chunk) {
  Value perSlice = ceilDiv(b, loc, count, index(b, loc, flash::kSlices));
  Value chunks = ceilDiv(b, loc, perSlice, index(b, loc, chunk));
  return arith::MulIOp::create(b, loc, chunks, index(b, loc, chunk));
}

MemRefType flash::scratchType(MLIRContext *context, int64_t heads,
                              int64_t width) {
  return MemRefType::get({kSlices, heads, width + 2},
                         Float32Type::get(context));
}

flash::Slice flash::sliceOf(OpBuilder &b, Location loc, const VisibleKeys &keys,
                            Value slice, int64_t chunk) {
  Value count = arith::SubIOp::create(b, loc, keys.end, keys.begin);
  Value perSlice = keysPerSlice(b, loc, count, chunk);
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
                                  int64_t headsPerWorkgroup) {
  assert(heads % headsPerWorkgroup == 0 && "whole groups of heads");
  MLIRContext *context = target.getModule().getContext();
  SmallVector<Type> types(operands);
  types.push_back(scratchType(context, heads, width));
  int64_t groups = heads / headsPerWorkgroup;
  return target.get(
      key, types, chunk,
      [groups](OpBuilder &b, Location loc, ValueRange) -> Value {
        return index(b, loc, groups * kSlices);
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
        Slice range = sliceOf(b, loc, keys, slice, chunk);
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
                                   std::optional<int64_t> sinks) {
  MLIRContext *context = target.getModule().getContext();
  constexpr int64_t block = 64;
  auto output = MemRefType::get({ShapedType::kDynamic, heads, width},
                                Float32Type::get(context));
  SmallVector<Type> types{scratchType(context, heads, width),
                          IndexType::get(context), output};
  int64_t owned = llvm::divideCeil(width, block);
  return target.get(
      key, types, block,
      [heads](OpBuilder &b, Location loc, ValueRange) -> Value {
        return index(b, loc, heads);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        Value scratch = operands[0], start = operands[1], out = operands[2];
        Value h = thread.workgroup;
        VisibleKeys keys = visibleKeys(b, loc, start, capacity, window, sinks);
        Value count = arith::SubIOp::create(b, loc, keys.end, keys.begin);
        Value perSlice = keysPerSlice(b, loc, count, chunk);
        Value slices = ceilDiv(b, loc, count, perSlice);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value maxColumn = index(b, loc, width);
        Value sumColumn = index(b, loc, width + 1);
        Value lowest = f32(b, loc, -std::numeric_limits<double>::infinity());
        Value largest = simt::accumulate(
            b, loc, zero, slices, one, lowest,
            [&](OpBuilder &b, Location loc, Value s, Value acc) -> Value {
              Value max = memref::LoadOp::create(b, loc, scratch,
                                                 ValueRange{s, h, maxColumn});
              return arith::MaximumFOp::create(b, loc, acc, max);
            });
        // This thread's channels thread + r * block, clamped (the extra
        // ones are read from a valid channel and not stored).
        SmallVector<Value> channels;
        for (int64_t r = 0; r < owned; ++r) {
          Value c = arith::AddIOp::create(b, loc, thread.thread,
                                          index(b, loc, r * block));
          channels.push_back(
              arith::MinUIOp::create(b, loc, c, index(b, loc, width - 1)));
        }
        SmallVector<Value> init(owned + 1, f32(b, loc, 0.0));
        auto sums = scf::ForOp::create(
            b, loc, zero, slices, one, init,
            [&](OpBuilder &b, Location loc, Value s, ValueRange acc) {
              Value max = memref::LoadOp::create(b, loc, scratch,
                                                 ValueRange{s, h, maxColumn});
              Value sum = memref::LoadOp::create(b, loc, scratch,
                                                 ValueRange{s, h, sumColumn});
              Value shift = arith::SubFOp::create(b, loc, max, largest);
              Value weight = math::ExpOp::create(b, loc, shift);
              SmallVector<Value> next{simt::fma(b, loc, sum, weight, acc[0])};
              for (int64_t r = 0; r < owned; ++r) {
                Value part = memref::LoadOp::create(
                    b, loc, scratch, ValueRange{s, h, channels[r]});
                next.push_back(simt::fma(b, loc, part, weight, acc[1 + r]));
              }
              scf::YieldOp::create(b, loc, next);
            });
        Value inverse =
            arith::DivFOp::create(b, loc, f32(b, loc, 1.0), sums.getResult(0));
        for (int64_t r = 0; r < owned; ++r) {
          Value c = arith::AddIOp::create(b, loc, thread.thread,
                                          index(b, loc, r * block));
          Value inside = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, c, index(b, loc, width));
          scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
            Value result =
                arith::MulFOp::create(b, loc, sums.getResult(1 + r), inverse);
            memref::StoreOp::create(b, loc, result, out,
                                    ValueRange{zero, h, c});
            scf::YieldOp::create(b, loc);
          });
        }
      });
}
