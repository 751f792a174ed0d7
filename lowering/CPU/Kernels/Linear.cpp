//===- Linear.cpp - y = x W^T (+ b) kernel ----------------------*- C++ -*-===//
//
// One register-tiled product (MatmulTile.h) over all tokens: prefill is
// bound by arithmetic rather than loads, and decode (one token) streams each
// weight byte exactly once.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "llvm/Support/MathExtras.h"
#include "lowering/CPU/Kernels/MatmulTile.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace xfmr::kernels;

namespace {
} // namespace

func::FuncOp xfmr::kernels::linear(KernelLibrary &lib, int64_t in,
                                   int64_t out, const WeightOperand &weight,
                                   std::optional<WeightFormat> bias) {
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  SmallVector<Type> args{
      MemRefType::get({ShapedType::kDynamic, in}, f32Type),
      MemRefType::get({out, in}, storageTypeOf(weight.format, context))};
  if (bias)
    args.push_back(MemRefType::get({out}, storageTypeOf(*bias, context)));
  if (weight.blockScale)
    args.push_back(MemRefType::get(
        {llvm::divideCeilSigned(out, weight.blockScale->first),
         llvm::divideCeilSigned(in, weight.blockScale->second)},
        f32Type));
  args.push_back(MemRefType::get({ShapedType::kDynamic, out}, f32Type));
  std::string key = "linear_" + std::to_string(out) + "x" +
                    std::to_string(in) + "_" + weight.key();
  if (bias)
    key += "_bias_" + formatName(*bias).str();
  return lib.get(key, args, [&](OpBuilder &b, Location loc, ValueRange args) {
    Value x = args[0], y = args.back();
    Value biasValue = bias ? args[2] : Value();
    MatmulTile op;
    op.x = x;
    op.w = args[1];
    op.in = in;
    op.out = out;
    op.format = weight.format;
    op.table =
        isFP8(weight.format) ? lib.lookupTable(b, loc, weight.format) : Value();
    op.blockScale = weight.blockScale;
    if (weight.blockScale)
      op.scale = args[bias ? 3 : 2];
    op.store = [&](OpBuilder &b, Location loc, Value t, Value n, Value sum) {
      if (biasValue)
        sum = arith::AddFOp::create(
            b, loc, sum, loadAsF32(b, loc, biasValue, {n}, *bias, Value()));
      memref::StoreOp::create(b, loc, sum, y, ValueRange{t, n});
    };
    Value zero = index(b, loc, 0);
    Value tokens = memref::DimOp::create(b, loc, x, 0);
    emitMatmul(b, loc, op, zero, tokens);
  });
}
