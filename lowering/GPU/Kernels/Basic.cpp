//===- Basic.cpp - embedding, elementwise, slices, norm, quantization ---===//
//
// Row kernels: one workgroup per token (per token and group for the
// activation quantization), threads striding over the channels.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdio>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

static Value dim0(OpBuilder &b, Location loc, Value memref) {
  return memref::DimOp::create(b, loc, memref, 0);
}

static MemRefType rows(MLIRContext *context, int64_t width) {
  return MemRefType::get({ShapedType::kDynamic, width},
                         Float32Type::get(context));
}

SymbolRefAttr xfmr::kernels::gpuEmbedding(GPUKernelTarget &target,
                                          const EmbeddingKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t vocab = kernel.vocab, hidden = kernel.hidden;
  WeightFormat format = kernel.table;
  EmbeddingOperands<Type> types{
      simt::buffer(context, {vocab, hidden}, format),
      MemRefType::get({ShapedType::kDynamic}, IntegerType::get(context, 32)),
      rows(context, hidden)};
  std::string key = "embedding_" + std::to_string(vocab) + "x" +
                    std::to_string(hidden) + "_" + formatName(format).str();
  // A window of the table's rows (a table split over launches).
  int64_t firstRow = kernel.firstRow;
  if (firstRow)
    key += "_from" + std::to_string(firstRow);
  return target.get<EmbeddingOperands>(
      key, types, 128,
      [](OpBuilder &b, Location loc, EmbeddingOperands<Value> args) {
        return dim0(b, loc, args.ids);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          EmbeddingOperands<Value> args) {
        Value t = thread.workgroup;
        Value id = arith::IndexCastOp::create(
            b, loc, b.getIndexType(),
            memref::LoadOp::create(b, loc, args.ids, t));
        auto copyRow = [&](OpBuilder &b, Location loc, Value row) {
          simt::strided(
              b, loc, thread, index(b, loc, hidden),
              [&](OpBuilder &b, Location loc, Value h) {
                Value v = simt::loadF32(b, loc, args.table, {row, h}, format);
                memref::StoreOp::create(b, loc, v, args.output,
                                        ValueRange{t, h});
              });
        };
        if (!firstRow) {
          copyRow(b, loc, id);
          return;
        }
        // Only the ids of this window (unsigned: ids below it wrap past).
        Value row = arith::SubIOp::create(b, loc, id, index(b, loc, firstRow));
        Value mine = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           row, index(b, loc, vocab));
        scf::IfOp::create(b, loc, mine, [&](OpBuilder &b, Location loc) {
          copyRow(b, loc, row);
          scf::YieldOp::create(b, loc);
        });
      });
}


SymbolRefAttr xfmr::kernels::gpuElementwise(GPUKernelTarget &target,
                                            const ElementwiseKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  Elementwise kind = kernel.kind;
  Type flat = MemRefType::get({ShapedType::kDynamic}, Float32Type::get(context));
  ElementwiseOperands<Type> types{flat, isBinary(kind) ? flat : Type(), flat};
  constexpr int64_t block = 256;
  return target.get<ElementwiseOperands>(
      ("elementwise_" + elementwiseName(kind)).str(), types, block,
      [](OpBuilder &b, Location loc, ElementwiseOperands<Value> args) -> Value {
        Value size = dim0(b, loc, args.output);
        Value perWorkgroup = index(b, loc, block);
        return arith::CeilDivUIOp::create(b, loc, size, perWorkgroup);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ElementwiseOperands<Value> args) {
        Value i = arith::AddIOp::create(
            b, loc,
            arith::MulIOp::create(b, loc, thread.workgroup,
                                  index(b, loc, block)),
            thread.thread);
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             i, dim0(b, loc, args.output));
        scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
          Value a = memref::LoadOp::create(b, loc, args.a, i);
          Value result;
          switch (kind) {
          case Elementwise::Silu:
            result = silu(b, loc, a);
            break;
          case Elementwise::Copy:
            result = a;
            break;
          case Elementwise::Gelu:
          case Elementwise::GeluTanh:
            result = gelu(b, loc, a, kind == Elementwise::GeluTanh, simt::erf);
            break;
          default: {
            Value other = memref::LoadOp::create(b, loc, args.b, i);
            if (kind == Elementwise::Add)
              result = arith::AddFOp::create(b, loc, a, other);
            else if (kind == Elementwise::Mul)
              result = arith::MulFOp::create(b, loc, a, other);
            else
              result = arith::MulFOp::create(b, loc, silu(b, loc, a), other);
          }
          }
          memref::StoreOp::create(b, loc, result, args.output, i);
          scf::YieldOp::create(b, loc);
        });
      });
}

SymbolRefAttr
xfmr::kernels::gpuSliceColumns(GPUKernelTarget &target,
                               const SliceColumnsKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t inDim = kernel.inDim, offset = kernel.offset, outDim = kernel.outDim;
  SliceColumnsOperands<Type> types{rows(context, inDim), rows(context, outDim)};
  std::string key = "slice_" + std::to_string(inDim) + "_" +
                    std::to_string(offset) + "_" + std::to_string(outDim);
  return target.get<SliceColumnsOperands>(
      key, types, 128,
      [](OpBuilder &b, Location loc, SliceColumnsOperands<Value> args) {
        return dim0(b, loc, args.input);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          SliceColumnsOperands<Value> args) {
        Value t = thread.workgroup;
        simt::strided(b, loc, thread, index(b, loc, outDim),
                      [&](OpBuilder &b, Location loc, Value j) {
          Value source =
              arith::AddIOp::create(b, loc, j, index(b, loc, offset));
          Value v = memref::LoadOp::create(b, loc, args.input,
                                           ValueRange{t, source});
          memref::StoreOp::create(b, loc, v, args.output, ValueRange{t, j});
        });
      });
}

SymbolRefAttr
xfmr::kernels::gpuFakeQuantize(GPUKernelTarget &target,
                               const FakeQuantizeKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t channels = kernel.channels, group = kernel.group;
  WeightFormat format = kernel.format;
  int64_t groups = llvm::divideCeil(channels, group);
  FakeQuantizeOperands<Type> types;
  types.input = types.output = rows(context, channels);
  std::string key = "fake_quantize_" + std::to_string(channels) + "_g" +
                    std::to_string(group) + "_" + formatName(format).str();
  // The codes and scales too, for FP8 matrix units.
  bool withCodes = kernel.withCodes;
  if (withCodes) {
    types.codes =
        simt::buffer(context, {ShapedType::kDynamic, channels}, format);
    types.scales = MemRefType::get({ShapedType::kDynamic, groups},
                                   Float32Type::get(context));
    key += "_codes";
  }
  constexpr int64_t block = 64;
  return target.get<FakeQuantizeOperands>(
      key, types, block,
      [groups](OpBuilder &b, Location loc, FakeQuantizeOperands<Value> args)
          -> Value {
        Value tokens = dim0(b, loc, args.input);
        Value perToken = index(b, loc, groups);
        return arith::MulIOp::create(b, loc, tokens, perToken);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          FakeQuantizeOperands<Value> args) {
        Value scratch = thread.scratch(block);
        Value t = arith::DivUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, groups));
        Value g = arith::RemUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, groups));
        Value first = arith::MulIOp::create(b, loc, g, index(b, loc, group));
        Value groupSize = index(b, loc, group);
        Value groupEnd = arith::AddIOp::create(b, loc, first, groupSize);
        Value channelCount = index(b, loc, channels);
        Value last = arith::MinUIOp::create(b, loc, groupEnd, channelCount);
        Value lb = arith::AddIOp::create(b, loc, first, thread.thread);
        Value step = index(b, loc, block);
        Value zero = f32(b, loc, 0.0);
        Value mine = simt::accumulate(
            b, loc, lb, last, step, zero,
            [&](OpBuilder &b, Location loc, Value c, Value acc) -> Value {
              Value x = memref::LoadOp::create(b, loc, args.input,
                                               ValueRange{t, c});
              return arith::MaximumFOp::create(
                  b, loc, acc, math::AbsFOp::create(b, loc, x));
            });
        Value amax =
            simt::reduce(b, loc, thread, scratch, mine, simt::Reduction::Max);
        Value scale = scaleForMaxAbs(b, loc, amax, format);
        if (withCodes)
          simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
            memref::StoreOp::create(b, loc, scale, args.scales,
                                    ValueRange{t, g});
          });
        simt::forLoop(b, loc, lb, last, step,
                      [&](OpBuilder &b, Location loc, Value c) {
          Value x = memref::LoadOp::create(b, loc, args.input, ValueRange{t, c});
          Value q = roundToCode(b, loc, arith::DivFOp::create(b, loc, x, scale),
                                format);
          memref::StoreOp::create(b, loc,
                                  arith::MulFOp::create(b, loc, q, scale),
                                  args.output, ValueRange{t, c});
          if (withCodes)
            simt::storeEncoded(b, loc, q, args.codes, {t, c}, format);
        });
      });
}

SymbolRefAttr xfmr::kernels::gpuRMSNorm(GPUKernelTarget &target,
                                        const RMSNormKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t hidden = kernel.hidden;
  WeightFormat weight = kernel.weight;
  double eps = kernel.eps;
  char epsText[32];
  std::snprintf(epsText, sizeof(epsText), "%a", eps);
  std::string key = "rms_norm_" + std::to_string(hidden) + "_" +
                    formatName(weight).str() + "_" + epsText;
  RMSNormOperands<Type> types{rows(context, hidden),
                              simt::buffer(context, {hidden}, weight),
                              rows(context, hidden)};
  constexpr int64_t block = 128;
  return target.get<RMSNormOperands>(
      key, types, block,
      [](OpBuilder &b, Location loc, RMSNormOperands<Value> args) {
        return dim0(b, loc, args.input);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          RMSNormOperands<Value> args) {
        Value scratch = thread.scratch(block);
        Value t = thread.workgroup;
        Value step = index(b, loc, block);
        Value end = index(b, loc, hidden);
        Value zero = f32(b, loc, 0.0);
        Value mine = simt::accumulate(
            b, loc, thread.thread, end, step, zero,
            [&](OpBuilder &b, Location loc, Value h, Value acc) -> Value {
              Value x =
                  memref::LoadOp::create(b, loc, args.input, ValueRange{t, h});
              return simt::fma(b, loc, x, x, acc);
            });
        Value squares =
            simt::reduce(b, loc, thread, scratch, mine, simt::Reduction::Sum);
        Value mean = arith::DivFOp::create(b, loc, squares,
                                           f32(b, loc, double(hidden)));
        Value inverse = math::RsqrtOp::create(
            b, loc, arith::AddFOp::create(b, loc, mean, f32(b, loc, eps)));
        simt::strided(b, loc, thread, index(b, loc, hidden),
                      [&](OpBuilder &b, Location loc, Value h) {
          Value x = memref::LoadOp::create(b, loc, args.input, ValueRange{t, h});
          Value gain = simt::loadF32(b, loc, args.weight, {h}, weight);
          Value normalized = arith::MulFOp::create(
              b, loc, arith::MulFOp::create(b, loc, x, inverse), gain);
          memref::StoreOp::create(b, loc, normalized, args.output,
                                  ValueRange{t, h});
        });
      });
}
