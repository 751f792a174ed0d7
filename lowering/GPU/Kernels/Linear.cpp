//===- Linear.cpp - y = x W^T (+ b) on GPUs ---------------------------===//
//
// One workgroup per output element (token, row of W): its threads stride
// over K, so a warp reads consecutive weights of one row (coalesced), and
// the partial sums meet in workgroup memory. Block scales multiply each
// product (the scale of its [bm, bn] block).
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

SymbolRefAttr xfmr::kernels::gpuLinear(GPUKernelTarget &target,
                                       const LinearKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t in = kernel.in, out = kernel.out;
  const WeightOperand weight = kernel.weight;
  std::optional<WeightFormat> bias = kernel.bias;
  Type f32Type = Float32Type::get(context);
  LinearOperands<Type> types;
  types.input = MemRefType::get({ShapedType::kDynamic, in}, f32Type);
  types.weight = simt::buffer(context, {out, in}, weight.format);
  if (bias)
    types.bias = simt::buffer(context, {out}, *bias);
  if (weight.blockScale)
    types.scale = MemRefType::get(
        {llvm::divideCeilSigned(out, weight.blockScale->first),
         llvm::divideCeilSigned(in, weight.blockScale->second)},
        f32Type);
  types.output = MemRefType::get({ShapedType::kDynamic, out}, f32Type);
  std::string key = "linear_" + std::to_string(out) + "x" +
                    std::to_string(in) + "_" + weight.key();
  if (bias)
    key += "_bias_" + formatName(*bias).str();
  constexpr int64_t block = 64;
  return target.get<LinearOperands>(
      key, types, block,
      [out](OpBuilder &b, Location loc, LinearOperands<Value> args) -> Value {
        Value tokens = memref::DimOp::create(b, loc, args.input, 0);
        Value rows = index(b, loc, out);
        return arith::MulIOp::create(b, loc, tokens, rows);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          LinearOperands<Value> args) {
        Value scratch = thread.scratch(block);
        Value t = arith::DivUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, out));
        Value n = arith::RemUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, out));
        Value scaleRow;
        if (weight.blockScale)
          scaleRow = arith::DivUIOp::create(
              b, loc, n, index(b, loc, weight.blockScale->first));
        Value end = index(b, loc, in);
        Value step = index(b, loc, block);
        Value zero = f32(b, loc, 0.0);
        Value mine = simt::accumulate(
            b, loc, thread.thread, end, step, zero,
            [&](OpBuilder &b, Location loc, Value k, Value acc) -> Value {
              Value x =
                  memref::LoadOp::create(b, loc, args.input, ValueRange{t, k});
              Value w = simt::loadF32(b, loc, args.weight, {n, k},
                                      weight.format);
              if (weight.blockScale) {
                Value column = arith::DivUIOp::create(
                    b, loc, k, index(b, loc, weight.blockScale->second));
                w = arith::MulFOp::create(
                    b, loc, w,
                    memref::LoadOp::create(b, loc, args.scale,
                                           ValueRange{scaleRow, column}));
              }
              return simt::fma(b, loc, x, w, acc);
            });
        Value sum =
            simt::reduce(b, loc, thread, scratch, mine, simt::Reduction::Sum);
        simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
          Value result = sum;
          if (bias)
            result = arith::AddFOp::create(
                b, loc, result, simt::loadF32(b, loc, args.bias, {n}, *bias));
          memref::StoreOp::create(b, loc, result, args.output,
                                  ValueRange{t, n});
        });
      });
}
