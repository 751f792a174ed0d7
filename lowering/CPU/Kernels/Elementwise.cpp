//===- Elementwise.cpp - embedding, elementwise and copy kernels -*- C++ -*-===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace xfmr::kernels;

static MemRefType f32Buffer(MLIRContext *context, ArrayRef<int64_t> shape) {
  return MemRefType::get(shape, Float32Type::get(context));
}

func::FuncOp xfmr::kernels::embedding(KernelLibrary &lib,
    const EmbeddingKernel &kernel) {
  // Tables are split over launches for GPU bindings only.
  assert(kernel.firstRow == 0 && "the CPU embeds from whole tables");
  int64_t vocab = kernel.vocab;
  int64_t hidden = kernel.hidden;
  WeightFormat table = kernel.table;
  MLIRContext *context = lib.getModule().getContext();
  auto tableType =
      MemRefType::get({vocab, hidden}, storageTypeOf(table, context));
  auto idsType =
      MemRefType::get({ShapedType::kDynamic}, IntegerType::get(context, 32));
  auto outType = f32Buffer(context, {ShapedType::kDynamic, hidden});
  std::string key = "embedding_" + std::to_string(vocab) + "x" +
                    std::to_string(hidden) + "_" + formatName(table).str();
  EmbeddingOperands<Type> types{tableType, idsType, outType};
  return lib.get<EmbeddingOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, EmbeddingOperands<Value> args) {
                   Value tokens = memref::DimOp::create(b, loc, args.ids, 0);
                   Value lut = isFP8(table)
                                   ? lib.lookupTable(b, loc, table)
                                   : Value();
                   parallelFor(b, loc, index(b, loc, 0), tokens,
                               [&](OpBuilder &b, Location loc, Value t) {
                     Value id = memref::LoadOp::create(b, loc, args.ids, t);
                     Value row = arith::IndexCastOp::create(b, 
                         loc, b.getIndexType(), id);
                     Value zero = index(b, loc, 0);
                     Value end = index(b, loc, hidden);
                     serialFor(b, loc, zero, end,
                               [&](OpBuilder &b, Location loc, Value h) {
                       Value value = loadAsF32(b, loc, args.table, {row, h},
                                               table, lut);
                       memref::StoreOp::create(b, loc, value, args.output,
                                                 ValueRange{t, h});
                     });
                   });
                 });
}


func::FuncOp xfmr::kernels::elementwise(KernelLibrary &lib,
    const ElementwiseKernel &kernel) {
  Elementwise kind = kernel.kind;
  MLIRContext *context = lib.getModule().getContext();
  Type flat = f32Buffer(context, {ShapedType::kDynamic});
  ElementwiseOperands<Type> types{flat, isBinary(kind) ? flat : Type(), flat};
  return lib.get<ElementwiseOperands>(
      ("elementwise_" + elementwiseName(kind)).str(), types,
      [&](OpBuilder &b, Location loc, ElementwiseOperands<Value> args) {
        Value out = args.output;
        Value size = memref::DimOp::create(b, loc, out, 0);
        // Chunks of 4096 elements per parallel iteration keep the
        // scheduling overhead small; the inner loop vectorizes.
        int64_t chunk = 4096;
        Value chunkSize = index(b, loc, chunk);
        Value chunks = arith::CeilDivUIOp::create(b, loc, size, chunkSize);
        parallelFor(b, loc, index(b, loc, 0), chunks,
                    [&](OpBuilder &b, Location loc, Value c) {
          Value begin = arith::MulIOp::create(b, loc, c, chunkSize);
          Value end = arith::MinUIOp::create(b, 
              loc, arith::AddIOp::create(b, loc, begin, chunkSize), size);
          serialFor(b, loc, begin, end,
                    [&](OpBuilder &b, Location loc, Value i) {
            Value a = memref::LoadOp::create(b, loc, args.a, i);
            Value result;
            if (!isBinary(kind)) {
              if (kind == Elementwise::Silu)
                result = silu(b, loc, a);
              else if (kind == Elementwise::Copy)
                result = a;
              else
                result = gelu(b, loc, a, kind == Elementwise::GeluTanh,
                              [](OpBuilder &b, Location loc, Value x) {
                                return math::ErfOp::create(b, loc, x)
                                    .getResult();
                              });
            } else {
              Value c2 = memref::LoadOp::create(b, loc, args.b, i);
              if (kind == Elementwise::Add)
                result = arith::AddFOp::create(b, loc, a, c2);
              else if (kind == Elementwise::Mul)
                result = arith::MulFOp::create(b, loc, a, c2);
              else
                result = arith::MulFOp::create(b, loc, silu(b, loc, a), c2);
            }
            memref::StoreOp::create(b, loc, result, out, i);
          });
        });
      });
}

func::FuncOp xfmr::kernels::sliceColumns(KernelLibrary &lib,
    const SliceColumnsKernel &kernel) {
  int64_t inDim = kernel.inDim;
  int64_t offset = kernel.offset;
  int64_t outDim = kernel.outDim;
  MLIRContext *context = lib.getModule().getContext();
  auto inType = f32Buffer(context, {ShapedType::kDynamic, inDim});
  auto outType = f32Buffer(context, {ShapedType::kDynamic, outDim});
  std::string key = "slice_" + std::to_string(inDim) + "_" +
                    std::to_string(offset) + "_" + std::to_string(outDim);
  return lib.get<SliceColumnsOperands>(
      key, {inType, outType},
      [&](OpBuilder &b, Location loc, SliceColumnsOperands<Value> args) {
    Value tokens = memref::DimOp::create(b, loc, args.input, 0);
    parallelFor(b, loc, index(b, loc, 0), tokens,
                [&](OpBuilder &b, Location loc, Value t) {
      Value zero = index(b, loc, 0);
      Value end = index(b, loc, outDim);
      serialFor(b, loc, zero, end,
                [&](OpBuilder &b, Location loc, Value j) {
        Value source = arith::AddIOp::create(b, loc, j, index(b, loc, offset));
        Value value =
            memref::LoadOp::create(b, loc, args.input, ValueRange{t, source});
        memref::StoreOp::create(b, loc, value, args.output, ValueRange{t, j});
      });
    });
  });
}
