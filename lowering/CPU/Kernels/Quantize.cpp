//===- Quantize.cpp - dynamic activation quantization ------------*- C++ -*-===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace xfmr::kernels;

func::FuncOp xfmr::kernels::fakeQuantize(KernelLibrary &lib,
    const FakeQuantizeKernel &kernel) {
  // The CPU's linears multiply the dequantized values: its target never
  // asks for the codes (KernelTarget::takesFP8InputCodes).
  assert(!kernel.withCodes && "the CPU kernels take no FP8 input codes");
  int64_t channels = kernel.channels;
  int64_t group = kernel.group;
  WeightFormat format = kernel.format;
  MLIRContext *context = lib.getModule().getContext();
  auto buffer =
      MemRefType::get({ShapedType::kDynamic, channels}, Float32Type::get(context));
  std::string key = "fake_quantize_" + std::to_string(channels) + "_g" +
                    std::to_string(group) + "_" + formatName(format).str();
  FakeQuantizeOperands<Type> types;
  types.input = buffer;
  types.output = buffer;
  return lib.get<FakeQuantizeOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, FakeQuantizeOperands<Value> args) {
        Value x = args.input, out = args.output;
        Value tokens = memref::DimOp::create(b, loc, x, 0);
        parallelFor(b, loc, index(b, loc, 0), tokens,
                    [&](OpBuilder &b, Location loc, Value t) {
                      fakeQuantizeRow(b, loc, x, out, t, channels, group,
                                      format);
                    });
      });
}

void xfmr::kernels::fakeQuantizeRow(OpBuilder &b, Location loc, Value in,
                                    Value out, Value row, int64_t channels,
                                    int64_t group, WeightFormat format) {
  int64_t groups = llvm::divideCeilSigned(channels, group);
  Value firstGroup = index(b, loc, 0);
  Value groupEnd = index(b, loc, groups);
  serialFor(
      b, loc, firstGroup, groupEnd,
      [&](OpBuilder &b, Location loc, Value g) {
        Value begin = arith::MulIOp::create(b, loc, g, index(b, loc, group));
        Value unclamped =
            arith::AddIOp::create(b, loc, begin, index(b, loc, group));
        Value end = arith::MinUIOp::create(b, loc, unclamped,
                                           index(b, loc, channels));
        Value amax = maxAbs(
            b, loc, begin, end, f32(b, loc, 0.0),
            [&](OpBuilder &b, Location loc, Value k) -> Value {
              return memref::LoadOp::create(b, loc, in, ValueRange{row, k});
            });
        Value scale = scaleForMaxAbs(b, loc, amax, format);
        serialFor(b, loc, begin, end, [&](OpBuilder &b, Location loc, Value k) {
          Value v = memref::LoadOp::create(b, loc, in, ValueRange{row, k});
          Value q = roundToCode(b, loc, arith::DivFOp::create(b, loc, v, scale),
                                format);
          memref::StoreOp::create(b, loc,
                                  arith::MulFOp::create(b, loc, q, scale), out,
                                  ValueRange{row, k});
        });
      });
}
