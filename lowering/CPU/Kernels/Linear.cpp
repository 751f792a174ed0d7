//===- Linear.cpp - y = x W^T (+ b) kernel ----------------------*- C++ -*-===//
//
// One register-tiled product over all tokens: prefill is bound by arithmetic
// rather than loads, and decode (one token) streams each weight byte exactly
// once. Weights stored in panels (CPU-only artifacts) go through the panel
// microkernels (PanelLinear.h), the others through MatmulTile.h.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "llvm/Support/MathExtras.h"
#include "lowering/CPU/Kernels/MatmulTile.h"
#include "lowering/CPU/Kernels/PanelLinear.h"
#include "lowering/Common/MemoryPlan.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace xfmr::kernels;

func::FuncOp xfmr::kernels::linear(KernelLibrary &lib,
    const LinearKernel &kernel) {
  // Weights are split over launches for GPU bindings only.
  assert(kernel.outputStride == 0 && "the CPU writes whole outputs");
  int64_t in = kernel.in;
  int64_t out = kernel.out;
  const WeightOperand &weight = kernel.weight;
  std::optional<WeightFormat> bias = kernel.bias;
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  LinearOperands<Type> types;
  types.input = MemRefType::get({ShapedType::kDynamic, in}, f32Type);
  types.weight = MemRefType::get({out, in}, storageTypeOf(weight.format, context));
  if (bias)
    types.bias = MemRefType::get({out}, storageTypeOf(*bias, context));
  if (weight.blockScale && weight.format == WeightFormat::I4)
    // f16 group scales, in panels of single columns (see WeightPacking.h).
    types.scale = MemRefType::get(
        panelStorageShape(
            {out, llvm::divideCeilSigned(in, weight.blockScale->second)},
            weight.panel, Float16Type::get(context)),
        Float16Type::get(context));
  else if (weight.blockScale)
    types.scale = MemRefType::get(
        {llvm::divideCeilSigned(out, weight.blockScale->first),
         llvm::divideCeilSigned(in, weight.blockScale->second)},
        f32Type);
  types.output = MemRefType::get({ShapedType::kDynamic, out}, f32Type);
  std::string key = "linear_" + std::to_string(out) + "x" +
                    std::to_string(in) + "_" + weight.key();
  if (bias)
    key += "_bias_" + formatName(*bias).str();
  if (weight.panel) {
    Type storage = storageTypeOf(weight.format, context);
    // Int8 codes are stored in quads, int4 in octets, bf16 and FP8 in pairs
    // (panelGroup).
    Type element = weight.format == WeightFormat::I8 ? storage
                   : weight.format == WeightFormat::I4
                       ? Type(IntegerType::get(context, 4))
                       : Type(BFloat16Type::get(context));
    types.weight = MemRefType::get(
        panelStorageShape({out, in}, weight.panel, element), storage);
    key += kernel.int8Activations   ? "_ai8"
           : kernel.bf16Activations ? "_abf16"
                                    : "_af32";
    assert((weight.format == WeightFormat::BF16 ||
            (isFP8(weight.format) && weight.blockScale) ||
            (weight.format == WeightFormat::I8 && kernel.int8Activations &&
             weight.blockScale && weight.blockScale->first == 1 &&
             weight.blockScale->second >= in) ||
            (weight.format == WeightFormat::I4 && kernel.int8Activations &&
             weight.blockScale && weight.blockScale->first == 1 &&
             weight.blockScale->second % 8 == 0)) &&
           "panels hold bf16 weights, block-scaled FP8 codes, int8 codes "
           "with a scale per row or int4 codes with group scales");
    const CPUKernelOptions &options = lib.getOptions();
    return lib.get<LinearOperands>(
        key, types, [&](OpBuilder &b, Location loc, LinearOperands<Value> args) {
      PanelLinear op;
      op.x = args.input;
      op.w = args.weight;
      op.format = weight.format;
      if (isFP8(weight.format)) {
        op.scale = args.scale;
        op.blockScale = *weight.blockScale;
        if (weight.format == WeightFormat::F8E4M3FNUZ)
          op.table = lib.lookupTable(b, loc, weight.format);
      }
      if (weight.format == WeightFormat::I4) {
        op.scale = args.scale;
        op.groupSize = weight.blockScale->second;
      }
      if (weight.format == WeightFormat::I8)
        op.scale = memref::CollapseShapeOp::create(
            b, loc, args.scale, ArrayRef<ReassociationIndices>{{0, 1}});
      op.bias = args.bias;
      op.biasFormat = bias.value_or(WeightFormat::F32);
      op.y = args.output;
      op.in = in;
      op.out = out;
      op.panel = weight.panel;
      op.bf16Activations = kernel.bf16Activations;
      op.dotProducts = kernel.int8Activations ? options.has("avx512vnni")
                                              : kernel.bf16Activations &&
                                                    options.has("avx512bf16");
      op.byteTables = op.dotProducts && isFP8(weight.format) &&
                      options.has("avx512vbmi");
      if (!kernel.int8Activations && kernel.bf16Activations &&
          options.has("bf16") && !op.dotProducts) {
        op.dotProducts = true;
        op.armBFDot = true;
      }
      op.avx2Madd = weight.format == WeightFormat::I4 && !op.dotProducts &&
                    options.has("avx2");
      // usmmla takes octets: int8 rows of whole octets only; bfmmla quads
      // of bf16 inputs (bf16 weights, not FP8's block-scaled codes).
      op.armMatmul =
          (options.has("i8mm") &&
           (weight.format == WeightFormat::I4 ||
            (weight.format == WeightFormat::I8 && in % 8 == 0))) ||
          (op.armBFDot && weight.format == WeightFormat::BF16 && in % 4 == 0);
      // SVE's sdot is SVE's own (a64fx has it without NEON's dotprod).
      if (kernel.int8Activations && options.has("i8mm"))
        op.armDot = PanelLinear::ArmDot::Usdot;
      else if (kernel.int8Activations &&
               (options.has("dotprod") || options.sveBits))
        op.armDot = PanelLinear::ArmDot::Sdot;
      op.sveBits = options.sveBits;
      // 6 rows x 4 vectors of sums + 4 weight vectors + 1 broadcast fit the
      // 32 AVX-512 registers; with 16 (AVX2), a row alone takes 8. Int4
      // keeps f32 sums besides the int32 ones of the group, and 8 weight
      // operands (the low and high nibbles).
      op.tileRows = !options.has("avx512f")             ? 1
                    : weight.format == WeightFormat::I4 ? 3
                                                        : 6;
      emitPanelLinear(b, loc, op);
    });
  }
  return lib.get<LinearOperands>(
      key, types, [&](OpBuilder &b, Location loc, LinearOperands<Value> args) {
    Value x = args.input, y = args.output, biasValue = args.bias;
    MatmulTile op;
    op.x = x;
    op.w = args.weight;
    op.in = in;
    op.out = out;
    op.width = lib.vectorWidth();
    op.format = weight.format;
    op.table =
        isFP8(weight.format) ? lib.lookupTable(b, loc, weight.format) : Value();
    op.blockScale = weight.blockScale;
    op.scale = args.scale;
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
