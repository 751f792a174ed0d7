//===- Linear.cpp - y = x W^T (+ b) kernel -----------------------*- C++ -*-===//
//
// Parallel over output features: each iteration streams one weight row once
// and reuses it for every token, so decode (one token) reads each weight
// byte exactly once and prefill keeps the row in cache across tokens.
//
//===----------------------------------------------------------------------===//

#include "lowering/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace xfmr::kernels;

static int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

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
        {ceilDiv(out, weight.blockScale->first),
         ceilDiv(in, weight.blockScale->second)},
        f32Type));
  args.push_back(MemRefType::get({ShapedType::kDynamic, out}, f32Type));
  std::string key = "linear_" + std::to_string(out) + "x" +
                    std::to_string(in) + "_" + weight.key();
  if (bias)
    key += "_bias_" + formatName(*bias).str();
  return lib.get(key, args, [&](OpBuilder &b, Location loc, ValueRange args) {
    Value x = args[0], w = args[1], y = args.back();
    Value biasValue = bias ? args[2] : Value();
    Value scale = weight.blockScale ? args[bias ? 3 : 2] : Value();
    bool fp8 = weight.format == WeightFormat::F8E4M3FN ||
               weight.format == WeightFormat::F8E5M2;
    Value lut = fp8 ? lib.lookupTable(b, loc, weight.format) : Value();
    Value tokens = b.create<memref::DimOp>(loc, x, 0);
    parallelFor(b, loc, index(b, loc, 0), index(b, loc, out),
                [&](OpBuilder &b, Location loc, Value n) {
      Value shift = bias ? loadAsF32(b, loc, biasValue, {n}, *bias, Value())
                         : Value();
      serialFor(b, loc, index(b, loc, 0), tokens,
                [&](OpBuilder &b, Location loc, Value t) {
        Value sum = scaledDot(b, loc, x, {t}, w, {n}, in, weight.format, lut,
                              weight.blockScale, scale, {}, n);
        if (shift)
          sum = b.create<arith::AddFOp>(loc, sum, shift);
        b.create<memref::StoreOp>(loc, sum, y, ValueRange{t, n});
      });
    });
  });
}
