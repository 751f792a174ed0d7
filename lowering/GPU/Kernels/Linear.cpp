//===- Linear.cpp - y = x W^T (+ b) on GPUs ---------------------------===//
//
// Two forms in one kernel, chosen by the token count (uniform per launch):
// - one token (decode, a matrix-vector product): one workgroup per row of
//   W; its threads stride over K, so a warp reads consecutive weights of one
//   row (coalesced), and the partial sums meet in workgroup memory. Where
//   a row is whole 16-byte words (and so is each block-scale column), each
//   thread loads 16 bytes at a time (vector<4xi32>: 8 bf16, 16 FP8 codes),
//   as a GPU needs to stream weights at its bandwidth;
// - several tokens (prefill, a matrix product): one workgroup per 32 x 32
//   tile of the output (tokens x rows). It steps over K in slices of 32,
//   staging the slice of x and of W (decoded to f32, block scales applied)
//   in workgroup memory, and each thread accumulates 4 x 4 outputs. Each
//   weight is read once per 32 tokens instead of once per token.
// Block scales multiply each weight (the scale of its [bm, bn] block).
// Where the input's FP8 quantization left its codes and scales
// (LinearKernel::fp8InputCodes), the prefill tiles read those; cuda and
// rocm chips with FP8 or bf16 matrix units run the prefill on them instead
// (MatrixTiles.cpp).
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
/// The prefill tile: tokens x rows (simt::tileProducts).
constexpr int64_t kTile = 32;
/// Loads in flight per thread in the matrix-vector form.
constexpr int64_t kUnroll = 4;

/// Elements of `format` in one 16-byte word, or 0 where a row of the
/// kernel's weight is not whole words (or a block-scale column is not).
int64_t elementsPerWord(const LinearKernel &kernel);
void matrixVector(OpBuilder &b, Location loc, const GPUThread &thread,
                  LinearOperands<Value> args, Value scratch,
                  const LinearKernel &kernel);
void matrixVectorByWords(OpBuilder &b, Location loc, const GPUThread &thread,
                         LinearOperands<Value> args, Value scratch,
                         const LinearKernel &kernel);
void matrixTiles(OpBuilder &b, Location loc, const GPUThread &thread,
                 LinearOperands<Value> args, Value xTile, Value wTile,
                 const LinearKernel &kernel);
} // namespace

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
    types.scale =
        MemRefType::get({llvm::divideCeilSigned(out, weight.blockScale->first),
                         llvm::divideCeilSigned(in, weight.blockScale->second)},
                        f32Type);
  // A window of a wider output's columns (a weight split over launches):
  // rows of outputStride, columns [0, out) written.
  int64_t outputStride = kernel.outputStride ? kernel.outputStride : out;
  types.output = MemRefType::get({ShapedType::kDynamic, outputStride}, f32Type);
  std::string key = "linear_" + std::to_string(out) + "x" + std::to_string(in) +
                    "_" + weight.key();
  if (kernel.outputStride)
    key += "_of" + std::to_string(outputStride);
  if (bias)
    key += "_bias_" + formatName(*bias).str();
  // The input's FP8 codes and scales: every form of the kernel takes them
  // (one launch site), the matrix-unit prefill multiplies them.
  if (kernel.fp8InputCodes) {
    types.inputCodes = simt::buffer(context, {ShapedType::kDynamic, in},
                                    WeightFormat::F8E4M3FN);
    types.inputScale =
        MemRefType::get({ShapedType::kDynamic,
                         llvm::divideCeilSigned(in, kernel.fp8InputGroup)},
                        f32Type);
    key += "_codes_g" + std::to_string(kernel.fp8InputGroup);
  }
  constexpr int64_t block = 64;
  // Decode by 16-byte words: the weight and the input viewed as vectors of
  // 4 words (4 f32 inputs).
  int64_t perWord = elementsPerWord(kernel);
  LinearOperands<Type> wordTypes = types;
  if (perWord) {
    auto words = VectorType::get({4}, IntegerType::get(context, 32));
    auto inputs = VectorType::get({4}, f32Type);
    wordTypes.weight = MemRefType::get({out, in / perWord}, words);
    wordTypes.input = MemRefType::get({ShapedType::kDynamic, in / 4}, inputs);
  }
  SymbolRefAttr single = target.get<LinearOperands>(
      key + (perWord ? "_words" : "_vector"), wordTypes, block,
      [out](OpBuilder &b, Location loc, LinearOperands<Value>) -> Value {
        return index(b, loc, out);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          LinearOperands<Value> args) {
        if (perWord)
          matrixVectorByWords(b, loc, thread, args, thread.scratch(block),
                              kernel);
        else
          matrixVector(b, loc, thread, args, thread.scratch(block), kernel);
      });
  // Prefill on the matrix units where the target has them, else in SIMT
  // tiles.
  SymbolRefAttr several = mma::linearTiles(target, kernel, types, key);
  if (!several)
    several = target.get<LinearOperands>(
        key + "_tiles", types, block,
        [out](OpBuilder &b, Location loc, LinearOperands<Value> args) -> Value {
          Value tokens = memref::DimOp::create(b, loc, args.input, 0);
          return simt::outputTiles(b, loc, tokens, out, kTile);
        },
        [&](OpBuilder &b, Location loc, const GPUThread &thread,
            LinearOperands<Value> args) {
          Value xTile = thread.scratch(simt::tileScratch(1));
          Value wTile = thread.scratch(simt::tileScratch(1));
          matrixTiles(b, loc, thread, args, xTile, wTile, kernel);
        });
  // The input is the first operand.
  return target.byLeadingSize(key, single, several, /*operand=*/0);
}

namespace {

using Product = function_ref<Value(OpBuilder &, Location, Value, Value)>;

/// One workgroup per row of W for one token: row n of token t is the sum,
/// over the `count` steps of a row, of `product`(step, partial sum).
void rowByWorkgroup(OpBuilder &b, Location loc, const GPUThread &thread,
                    LinearOperands<Value> args, Value scratch,
                    const LinearKernel &kernel, Value t, Value n, int64_t count,
                    Product product) {
  int64_t block = thread.block;
  // kUnroll independent loads per thread in flight (each one coalesced
  // across the warp) over the whole spans of kUnroll * block steps, then
  // the rest one at a time.
  int64_t span = kUnroll * block, fullEnd = count / span * span;
  Value zero = f32(b, loc, 0.0);
  SmallVector<Value> init(kUnroll, zero);
  Value first = index(b, loc, 0);
  Value spanEnd = index(b, loc, fullEnd);
  Value spanStep = index(b, loc, span);
  auto spans = scf::ForOp::create(
      b, loc, first, spanEnd, spanStep, init,
      [&](OpBuilder &b, Location loc, Value base, ValueRange acc) {
        Value mine = arith::AddIOp::create(b, loc, base, thread.thread);
        SmallVector<Value> next;
        for (int64_t u = 0; u < kUnroll; ++u) {
          Value k =
              arith::AddIOp::create(b, loc, mine, index(b, loc, u * block));
          next.push_back(product(b, loc, k, acc[u]));
        }
        scf::YieldOp::create(b, loc, next);
      });
  Value pair0 =
      arith::AddFOp::create(b, loc, spans.getResult(0), spans.getResult(1));
  Value pair1 =
      arith::AddFOp::create(b, loc, spans.getResult(2), spans.getResult(3));
  Value partial = arith::AddFOp::create(b, loc, pair0, pair1);
  Value tailBegin = arith::AddIOp::create(b, loc, spanEnd, thread.thread);
  Value end = index(b, loc, count);
  Value step = index(b, loc, block);
  Value mine = simt::accumulate(b, loc, tailBegin, end, step, partial, product);
  Value sum = simt::reduce(b, loc, thread, scratch, mine, simt::Reduction::Sum);
  simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
    Value result = sum;
    if (kernel.bias)
      result = arith::AddFOp::create(
          b, loc, result, simt::loadF32(b, loc, args.bias, {n}, *kernel.bias));
    memref::StoreOp::create(b, loc, result, args.output, ValueRange{t, n});
  });
}

/// The token and the row of this workgroup, and the row's block-scale row
/// (null without block scales).
std::tuple<Value, Value, Value> tokenAndRow(OpBuilder &b, Location loc,
                                            const GPUThread &thread,
                                            const LinearKernel &kernel) {
  Value out = index(b, loc, kernel.out);
  Value t = arith::DivUIOp::create(b, loc, thread.workgroup, out);
  Value n = arith::RemUIOp::create(b, loc, thread.workgroup, out);
  Value scaleRow;
  if (kernel.weight.blockScale)
    scaleRow = arith::DivUIOp::create(
        b, loc, n, index(b, loc, kernel.weight.blockScale->first));
  return {t, n, scaleRow};
}

/// One element at a time (rows that are not whole 16-byte words).
void matrixVector(OpBuilder &b, Location loc, const GPUThread &thread,
                  LinearOperands<Value> args, Value scratch,
                  const LinearKernel &kernel) {
  const WeightOperand &weight = kernel.weight;
  Value t, n, scaleRow;
  std::tie(t, n, scaleRow) = tokenAndRow(b, loc, thread, kernel);
  // x[t, k] * W[n, k] (block scale applied) added to `acc`.
  auto product = [&](OpBuilder &b, Location loc, Value k, Value acc) -> Value {
    Value x = memref::LoadOp::create(b, loc, args.input, ValueRange{t, k});
    Value w = simt::loadF32(b, loc, args.weight, {n, k}, weight.format);
    if (weight.blockScale) {
      Value column = arith::DivUIOp::create(
          b, loc, k, index(b, loc, weight.blockScale->second));
      Value scale = memref::LoadOp::create(b, loc, args.scale,
                                           ValueRange{scaleRow, column});
      w = arith::MulFOp::create(b, loc, w, scale);
    }
    return simt::fma(b, loc, x, w, acc);
  };
  rowByWorkgroup(b, loc, thread, args, scratch, kernel, t, n, kernel.in,
                 product);
}

int64_t elementsPerWord(const LinearKernel &kernel) {
  const WeightOperand &weight = kernel.weight;
  int64_t perWord = 0;
  switch (weight.format) {
  case WeightFormat::F32:
    perWord = 4;
    break;
  case WeightFormat::BF16:
  case WeightFormat::F16:
    perWord = 8;
    break;
  case WeightFormat::I8:
  case WeightFormat::F8E4M3FN:
  case WeightFormat::F8E4M3FNUZ:
  case WeightFormat::F8E5M2:
    perWord = 16;
    break;
  case WeightFormat::I4: // CPU-only
    return 0;
  }
  if (weight.panel || kernel.in % perWord ||
      (weight.blockScale && weight.blockScale->second % perWord))
    return 0;
  return perWord;
}

/// 16 bytes of W a step: the word's elements decoded (simt::decodeWord),
/// times the inputs (4 f32 a load), summed, then scaled once by their block's
/// scale and the decoding's.
void matrixVectorByWords(OpBuilder &b, Location loc, const GPUThread &thread,
                         LinearOperands<Value> args, Value scratch,
                         const LinearKernel &kernel) {
  const WeightOperand &weight = kernel.weight;
  int64_t perWord = elementsPerWord(kernel), perLane = perWord / 4;
  double decodingScale = simt::wordScale(weight.format);
  bool scaled = weight.blockScale || decodingScale != 1.0;
  Value t, n, scaleRow;
  std::tie(t, n, scaleRow) = tokenAndRow(b, loc, thread, kernel);
  auto product = [&](OpBuilder &b, Location loc, Value k, Value acc) -> Value {
    Value words = memref::LoadOp::create(b, loc, args.weight, ValueRange{n, k});
    // The inputs of word k: loads [k * perLane, (k + 1) * perLane).
    Value firstInput = arith::MulIOp::create(b, loc, k, index(b, loc, perLane));
    SmallVector<Value> inputs;
    for (int64_t q = 0; q < perLane; ++q) {
      Value at = arith::AddIOp::create(b, loc, firstInput, index(b, loc, q));
      inputs.push_back(
          memref::LoadOp::create(b, loc, args.input, ValueRange{t, at}));
    }
    // Unscaled products go straight into `acc`.
    Value sum = scaled ? f32(b, loc, 0.0) : acc;
    for (int64_t lane = 0; lane < 4; ++lane) {
      Value word = vector::ExtractOp::create(b, loc, words, lane);
      SmallVector<Value> w = simt::decodeWord(b, loc, word, weight.format);
      for (auto [i, value] : llvm::enumerate(w)) {
        int64_t e = lane * perLane + int64_t(i);
        Value x = vector::ExtractOp::create(b, loc, inputs[e / 4], e % 4);
        sum = simt::fma(b, loc, x, value, sum);
      }
    }
    if (!scaled)
      return sum;
    Value scale = f32(b, loc, decodingScale);
    if (weight.blockScale) {
      Value firstColumn =
          arith::MulIOp::create(b, loc, k, index(b, loc, perWord));
      Value column = arith::DivUIOp::create(
          b, loc, firstColumn, index(b, loc, weight.blockScale->second));
      Value blockScale = memref::LoadOp::create(b, loc, args.scale,
                                                ValueRange{scaleRow, column});
      scale = arith::MulFOp::create(b, loc, blockScale, scale);
    }
    return simt::fma(b, loc, sum, scale, acc);
  };
  rowByWorkgroup(b, loc, thread, args, scratch, kernel, t, n,
                 kernel.in / perWord, product);
}

/// One workgroup per 32 x 32 tile of the output (tokens x rows): the
/// shared tile products (simt::tileProducts) of the tile's tokens and
/// weight rows, decoded to f32 with their block scales.
void matrixTiles(OpBuilder &b, Location loc, const GPUThread &thread,
                 LinearOperands<Value> args, Value xTile, Value wTile,
                 const LinearKernel &kernel) {
  int64_t in = kernel.in, out = kernel.out;
  const WeightOperand &weight = kernel.weight;
  Value tokens = simt::leadingSize(b, loc, args.input);
  Value firstToken, firstRow;
  std::tie(firstToken, firstRow) =
      simt::tileCorner(b, loc, thread.workgroup, out, kTile);
  auto below = [](Value first, Value bound) {
    return [first, bound](OpBuilder &b, Location loc, Value r) -> Value {
      Value at = arith::AddIOp::create(b, loc, first, r);
      return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, at,
                                   bound);
    };
  };
  simt::TileRows x{
      below(firstToken, tokens),
      [&](OpBuilder &b, Location loc, Value r, Value k) -> Value {
        Value t = arith::AddIOp::create(b, loc, firstToken, r);
        if (!kernel.fp8InputCodes)
          return memref::LoadOp::create(b, loc, args.input, ValueRange{t, k});
        // The FP8 code times its group's scale: the dequantized value, bit
        // for bit, from a byte instead of four.
        Value code = simt::loadF32(b, loc, args.inputCodes, {t, k},
                                   WeightFormat::F8E4M3FN);
        Value group = arith::DivUIOp::create(
            b, loc, k, index(b, loc, kernel.fp8InputGroup));
        Value scale = memref::LoadOp::create(b, loc, args.inputScale,
                                             ValueRange{t, group});
        return arith::MulFOp::create(b, loc, code, scale);
      }};
  simt::TileRows w{
      below(firstRow, index(b, loc, out)),
      [&](OpBuilder &b, Location loc, Value r, Value k) -> Value {
        Value n = arith::AddIOp::create(b, loc, firstRow, r);
        return simt::loadWeightF32(b, loc, args.weight, args.scale, n, k,
                                   weight);
      }};
  simt::tileProducts(
      b, loc, thread, in, x, {w}, {xTile, wTile},
      [&](OpBuilder &b, Location loc, Value r, Value c, ValueRange sums) {
        Value t = arith::AddIOp::create(b, loc, firstToken, r);
        Value n = arith::AddIOp::create(b, loc, firstRow, c);
        Value result = sums[0];
        if (kernel.bias)
          result = arith::AddFOp::create(
              b, loc, result,
              simt::loadF32(b, loc, args.bias, {n}, *kernel.bias));
        memref::StoreOp::create(b, loc, result, args.output, ValueRange{t, n});
      });
}

} // namespace
