//===- Norm.cpp - RMSNorm kernel ---------------------------------*- C++ -*-===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdio>

using namespace mlir;
using namespace xfmr::kernels;

func::FuncOp xfmr::kernels::rmsNorm(KernelLibrary &lib,
    const RMSNormKernel &kernel) {
  int64_t hidden = kernel.hidden;
  WeightFormat weight = kernel.weight;
  double eps = kernel.eps;
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  auto rows = MemRefType::get({ShapedType::kDynamic, hidden}, f32Type);
  auto weightType = MemRefType::get({hidden}, storageTypeOf(weight, context));
  char epsText[32];
  std::snprintf(epsText, sizeof(epsText), "%a", eps);
  std::string key = "rms_norm_" + std::to_string(hidden) + "_" +
                    formatName(weight).str() + "_" + epsText;
  return lib.get<RMSNormOperands>(
      key, {rows, weightType, rows},
      [&](OpBuilder &b, Location loc, RMSNormOperands<Value> args) {
    Value x = args.input, w = args.weight, out = args.output;
    Value lut = isFP8(weight)
                    ? lib.lookupTable(b, loc, weight)
                    : Value();
    Value tokens = memref::DimOp::create(b, loc, x, 0);
    parallelFor(b, loc, index(b, loc, 0), tokens,
                [&](OpBuilder &b, Location loc, Value t) {
      Value zero = index(b, loc, 0);
      // sum of squares = x . x
      Value squares = dot(b, loc, x, {t}, zero, x, {t}, zero, hidden,
                          WeightFormat::F32, Value(), lib.vectorWidth());
      Value mean = arith::DivFOp::create(b, loc, squares,
                                           f32(b, loc, double(hidden)));
      Value inverse = math::RsqrtOp::create(b, 
          loc, arith::AddFOp::create(b, loc, mean, f32(b, loc, eps)));
      serialFor(b, loc, zero, index(b, loc, hidden),
                [&](OpBuilder &b, Location loc, Value h) {
        Value value = memref::LoadOp::create(b, loc, x, ValueRange{t, h});
        Value gain = loadAsF32(b, loc, w, {h}, weight, lut);
        Value normalized = arith::MulFOp::create(b, 
            loc, arith::MulFOp::create(b, loc, value, inverse), gain);
        memref::StoreOp::create(b, loc, normalized, out, ValueRange{t, h});
      });
    });
  });
}
