//===- MatrixTiles.cpp - prefill linears on GPU matrix units ----------===//
//
// The prefill form of gpuLinear on cuda and rocm targets whose weight and
// input suit their matrix instructions (mma.sync on NVIDIA, MFMA on AMD).
// A workgroup of 128 threads computes a 64 x 64 tile of the output (tokens
// x rows): on NVIDIA 4 warps of 32 x 32 (2 x 4 of mma's 16 x 8 tiles), on
// AMD 2 waves of 32 x 64 (2 x 4 of MFMA's 16 x 16). Each stage puts 64 rows
// x 128 bytes of the input and of the weight in workgroup memory as 32-bit
// words (a 36-word pitch: a warp's fragment loads hit 32 distinct banks),
// then runs 4 steps over them, 8 words of each row a step. Two forms:
// - E4M3 (sm_89 and later, gfx942): E4M3FN weights with [64k, 128] block
//   scales times an input that a per-token E4M3FN quantization in groups of
//   128 produced (xfmr-quantize-fp8's activations), which left its codes
//   and scales beside its values (FakeQuantizeKernel::withCodes, asked for
//   by GPUKernelTarget::takesFP8InputCodes). The kernel stages both
//   operands' codes alike, and adds each stage's sums of code products
//   times the token's and the block's scales into f32 totals: DeepSeek-V3's
//   promotion every 128 K, which keeps the matrix units' short
//   accumulation to 128 products. gfx942 multiplies FNUZ codes: an E4M3FN
//   code's bits read as FNUZ are half its value (bias 8 for 7; -0, FNUZ's
//   NaN, becomes 0 while staging), so its sums are a quarter of the
//   codes' products.
// - BF16: bf16 weights times the input rounded to bf16 (mma.m16n8k16,
//   v_mfma_f32_16x16x16_bf16), as PyTorch and cuBLAS do. --precise adds
//   the product of the rounding's remainder, also bf16: the input as the
//   sum of two bf16 values keeps about 16 of f32's 24 bits, where one
//   keeps 8.
//
// On sm_90a the warpgroup multiplies with wgmma instead: both operands
// stay in workgroup memory (in wgmma's core-matrix layout, described by
// 64-bit descriptors), 4 asynchronous m64n64 products a stage, no fragment
// loads; the accumulators are the same registers in mma.sync's C layout,
// replicated over the 8 column groups.
//
// Fragment layouts, lowest address in the lowest bits of a register:
// - mma.sync (PTX ISA, "Matrix fragments for mma.m16n8k16/k32"; MLIR's
//   NVGPU MMAUtils derives the same), lane 4g + t: A (16 x K row-major)
//   words (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4) of the step's 8;
//   B (W's rows) words (g, t), (g, t + 4); C f32 (g, 2t), (g, 2t + 1),
//   (g + 8, 2t), (g + 8, 2t + 1).
// - MFMA 16x16x32 fp8 and 16x16x16 bf16 (AMD's matrix instruction
//   calculator), lane 16q + r: A words 2q and 2q + 1 of row r (8 bytes);
//   B the same of W's row r; C f32 rows 4q + i of column r.
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
/// The output tile (tokens and rows), the workgroup, a stage's words per
/// row and the staged pitch in words.
constexpr int64_t kTile = 64, kBlock = 128, kWords = 32, kPitch = 36;
/// Steps per stage; each wave's 2 x 4 tiles of 16 tokens.
constexpr int64_t kSteps = 4, kM = 2, kN = 4;
/// The FP8 input's quantization group and block-scale columns.
constexpr int64_t kGroup = 128;

enum class Form { E4M3, BF16, BF16Split };

/// The matrix instructions of a target, and how its waves split the tile.
struct Unit {
  bool amd;
  Form form;
  /// sm_90a: one asynchronous warpgroup product (wgmma) a 64 x 64 x step
  /// from workgroup memory, instead of each warp's mma.sync.
  bool wgmma = false;
  /// How the products are made (WarpProducts.cpp: on vulkan:mma-emulation
  /// or vulkan:mfma-emulation through workgroup memory); set in the kernel
  /// body.
  mma::WarpProducts products = {};
  /// Waves along the tile's rows (NVIDIA 2 x 2 waves, AMD 2 x 1).
  int64_t rowWaves() const { return amd ? 1 : 2; }
  /// Rows of W in one instruction's tile.
  int64_t tileRows() const { return amd ? 16 : 8; }
};

std::optional<Unit> unitOf(const GPUKernelTarget &target,
                           const LinearKernel &kernel) {
  StringRef chip = target.getTarget().getChip();
  if (!mma::hasMatrixUnits(target) || kernel.weight.panel)
    return std::nullopt;
  bool amd = mma::usesMFMA(target);
  // bf16 products on every chip we build for (sm_80 and later, gfx90a and
  // later), FP8 on some.
  bool fp8 = mma::hasFP8Units(target);
  const WeightOperand &weight = kernel.weight;
  Unit unit{amd, Form::BF16, /*wgmma=*/chip == "sm_90a", {}};
  if (fp8 && weight.format == WeightFormat::F8E4M3FN && weight.blockScale &&
      weight.blockScale->first % kTile == 0 &&
      weight.blockScale->second == kGroup && kernel.fp8InputGroup == kGroup &&
      kernel.in % kGroup == 0) {
    unit.form = Form::E4M3;
    return unit;
  }
  // 64 bf16 columns a stage.
  if (weight.format == WeightFormat::BF16 && !weight.blockScale &&
      kernel.in % (2 * kWords) == 0) {
    unit.form = kernel.precise ? Form::BF16Split : Form::BF16;
    return unit;
  }
  return std::nullopt;
}

Value f32Of(OpBuilder &b, Location loc, Value i32Bits) {
  return arith::BitcastOp::create(b, loc, b.getF32Type(), i32Bits);
}

using mma::bf16Bits;
using mma::pack16;

/// Stores word `column` of staged row `row`: at a 36-word pitch for the
/// fragment loads, or for wgmma in its canonical K-major layout without
/// swizzling: "core matrices" of 8 rows x 16 bytes, each 128 contiguous
/// bytes, the 8 of a row band side by side (16-byte chunk c of row r at
/// ((r / 8) * 8 + c) * 128 + (r % 8) * 16 bytes).
void storeWord(OpBuilder &b, Location loc, const Unit &unit, Value word,
               Value tile, Value row, Value column, Value offset = {}) {
  Value at;
  if (unit.wgmma) {
    Value eight = index(b, loc, 8), four = index(b, loc, 4);
    Value band = arith::DivUIOp::create(b, loc, row, eight);
    Value chunk = arith::DivUIOp::create(b, loc, column, four);
    Value bandChunks = arith::MulIOp::create(b, loc, band, eight);
    Value core = arith::AddIOp::create(b, loc, bandChunks, chunk);
    Value coreStart = arith::MulIOp::create(b, loc, core, index(b, loc, 32));
    Value inBand = arith::RemUIOp::create(b, loc, row, eight);
    Value rowStart = arith::MulIOp::create(b, loc, inBand, four);
    Value inChunk = arith::RemUIOp::create(b, loc, column, four);
    at = arith::AddIOp::create(b, loc, coreStart, rowStart);
    at = arith::AddIOp::create(b, loc, at, inChunk);
  } else {
    Value start = arith::MulIOp::create(b, loc, row, index(b, loc, kPitch));
    at = arith::AddIOp::create(b, loc, start, column);
  }
  // A second buffer of the tile (stages in flight).
  if (offset)
    at = arith::AddIOp::create(b, loc, at, offset);
  memref::StoreOp::create(b, loc, f32Of(b, loc, word), tile, at);
}

/// d = a[m] x w[n] + c for each pair of instruction tiles (c and d: 4 f32
/// a lane and pair, m-major).
SmallVector<Value> multiplyTiles(OpBuilder &b, Location loc, const Unit &unit,
                                 ArrayRef<Value> a, ArrayRef<Value> w,
                                 ArrayRef<Value> c) {
  WeightFormat elements = WeightFormat::BF16;
  if (unit.form == Form::E4M3)
    elements = unit.amd ? WeightFormat::F8E4M3FNUZ : WeightFormat::F8E4M3FN;
  return mma::multiplyGrid(b, loc, unit.products, elements, a, w, c);
}

/// Accumulator index of (m tile, n tile, element).
int64_t at(int64_t m, int64_t n, int64_t e) { return (m * kN + n) * 4 + e; }

struct Tiles {
  Value input, inputRemainder, weight, inputScales;
  /// Where this stage's buffers start in them (words; null: 0), when two
  /// stages are in flight.
  Value offset, scalesOffset;
};

/// Where this thread works: its wave's tile corner, and its lane's parts
/// (NVIDIA lane 4g + t; AMD lane 16q + r, kept as g = r, t = q).
struct Lane {
  Value waveRow, waveColumn, g, t;
};

Lane laneOf(OpBuilder &b, Location loc, const Unit &unit,
            const GPUThread &thread) {
  mma::LaneParts parts = mma::laneParts(b, loc, thread.thread, unit.amd);
  Value wave = parts.wave;
  Value rowWaves = index(b, loc, unit.rowWaves());
  Value waveM = arith::DivUIOp::create(b, loc, wave, rowWaves);
  Value waveN = arith::RemUIOp::create(b, loc, wave, rowWaves);
  Lane result;
  result.waveRow = arith::MulIOp::create(b, loc, waveM, index(b, loc, 32));
  result.waveColumn = arith::MulIOp::create(
      b, loc, waveN, index(b, loc, kTile / unit.rowWaves()));
  if (unit.wgmma) {
    // The warpgroup's accumulator: warp w holds rows 16w + [0, 16) of all
    // 64 columns.
    result.waveRow = arith::MulIOp::create(b, loc, wave, index(b, loc, 16));
    result.waveColumn = index(b, loc, 0);
  }
  result.g = parts.g;
  result.t = parts.t;
  return result;
}

/// The tile row and column of accumulator element e of tile (m, n): the
/// element's place in its C tile (mma::elementOf) from the tile's corner.
std::pair<Value, Value> elementAt(OpBuilder &b, Location loc, const Unit &unit,
                                  const Lane &lane, int64_t m, int64_t n,
                                  int64_t e) {
  Value row =
      arith::AddIOp::create(b, loc, lane.waveRow, index(b, loc, 16 * m));
  Value column = arith::AddIOp::create(b, loc, lane.waveColumn,
                                       index(b, loc, unit.tileRows() * n));
  if (unit.wgmma) {
    // Accumulator register 4j + e (j = 4m + n): mma.sync's C layout in
    // rows g and g + 8 of the warp's 16, columns 8j + 2t and 8j + 2t + 1.
    row = lane.waveRow;
    column = index(b, loc, 8 * (4 * m + n));
  }
  mma::LaneParts parts{Value(), lane.g, lane.t};
  auto [inRow, inColumn] = mma::elementOf(b, loc, unit.amd, parts, e);
  row = arith::AddIOp::create(b, loc, row, inRow);
  column = arith::AddIOp::create(b, loc, column, inColumn);
  return {row, column};
}

/// The (row, 16-byte load of the row) of staging item e of a stage's 64
/// rows x `perRow` loads. Pitched tiles: neighbouring threads take
/// neighbouring loads of a row (coalesced). wgmma's core matrices: 8
/// neighbouring threads take 8 rows of one load column, whose stores then
/// fill 128 contiguous bytes (no bank conflicts), a warp still reading 4
/// loads of each of its rows.
std::pair<Value, Value> rowAndLoad(OpBuilder &b, Location loc, const Unit &unit,
                                   Value e, int64_t perRow) {
  if (!unit.wgmma) {
    Value row = arith::DivUIOp::create(b, loc, e, index(b, loc, perRow));
    Value q = arith::RemUIOp::create(b, loc, e, index(b, loc, perRow));
    return {row, q};
  }
  Value eight = index(b, loc, 8);
  Value inBand = arith::RemUIOp::create(b, loc, e, eight);
  Value band = arith::DivUIOp::create(b, loc, e, index(b, loc, 8 * perRow));
  Value bandStart = arith::MulIOp::create(b, loc, band, eight);
  Value row = arith::AddIOp::create(b, loc, bandStart, inBand);
  Value column = arith::DivUIOp::create(b, loc, e, eight);
  Value q = arith::RemUIOp::create(b, loc, column, index(b, loc, perRow));
  return {row, q};
}

/// Stages input columns [stage * 64, + 64) of the tile's 64 tokens as bf16
/// words (and the remainders' for the split form): 16 loads of 4 f32 a
/// row, 8 per thread.
void stageBF16Input(OpBuilder &b, Location loc, const Unit &unit,
                    const GPUThread &thread, Value input, Value tokens,
                    Value firstToken, Value stage, const Tiles &tiles) {
  bool split = unit.form == Form::BF16Split;
  constexpr int64_t perRow = 2 * kWords / 4;
  Value firstLoad = arith::MulIOp::create(b, loc, stage, index(b, loc, perRow));
  auto vector4 = VectorType::get({4}, b.getF32Type());
  for (int64_t i = 0; i < kTile * perRow / kBlock; ++i) {
    Value e =
        arith::AddIOp::create(b, loc, thread.thread, index(b, loc, i * kBlock));
    Value row, q;
    std::tie(row, q) = rowAndLoad(b, loc, unit, e, perRow);
    Value token = arith::AddIOp::create(b, loc, firstToken, row);
    Value inside =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, token, tokens);
    Value column = arith::AddIOp::create(b, loc, firstLoad, q);
    Value x = simt::valueOrZero(b, loc, inside, vector4,
                                [&](OpBuilder &b, Location loc) -> Value {
                                  return memref::LoadOp::create(
                                      b, loc, input, ValueRange{token, column});
                                });
    SmallVector<Value> high, remainder;
    for (int64_t j = 0; j < 4; ++j) {
      Value value = vector::ExtractOp::create(b, loc, x, j);
      bool portable = unit.products.emulated();
      if (split) {
        auto [bits, rest] = mma::splitBF16(b, loc, value, portable);
        high.push_back(bits);
        remainder.push_back(rest);
      } else {
        high.push_back(bf16Bits(b, loc, value, portable));
      }
    }
    Value word = arith::MulIOp::create(b, loc, q, index(b, loc, 2));
    Value next = arith::AddIOp::create(b, loc, word, index(b, loc, 1));
    storeWord(b, loc, unit, pack16(b, loc, high[0], high[1]), tiles.input, row,
              word, tiles.offset);
    storeWord(b, loc, unit, pack16(b, loc, high[2], high[3]), tiles.input, row,
              next, tiles.offset);
    if (split) {
      Value low = pack16(b, loc, remainder[0], remainder[1]);
      storeWord(b, loc, unit, low, tiles.inputRemainder, row, word,
                tiles.offset);
      Value high23 = pack16(b, loc, remainder[2], remainder[3]);
      storeWord(b, loc, unit, high23, tiles.inputRemainder, row, next,
                tiles.offset);
    }
  }
}

/// Stages the stage's 128 bytes of 64 rows of `source` (the weight, or the
/// input's FP8 codes), from `firstRow` on, below `rows`, into `tile`: 8
/// loads of 16 bytes a row, 4 per thread. FP8 codes go to AMD as FNUZ.
void stageRows(OpBuilder &b, Location loc, const Unit &unit,
               const GPUThread &thread, Value source, Value rows,
               Value firstRow, Value stage, Value tile, Value offset) {
  constexpr int64_t perRow = kWords / 4;
  auto words = VectorType::get({4}, b.getI32Type());
  Value firstLoad = arith::MulIOp::create(b, loc, stage, index(b, loc, perRow));
  for (int64_t i = 0; i < kTile * perRow / kBlock; ++i) {
    Value e =
        arith::AddIOp::create(b, loc, thread.thread, index(b, loc, i * kBlock));
    Value row, q;
    std::tie(row, q) = rowAndLoad(b, loc, unit, e, perRow);
    Value n = arith::AddIOp::create(b, loc, firstRow, row);
    Value inside =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, n, rows);
    Value column = arith::AddIOp::create(b, loc, firstLoad, q);
    Value loaded = simt::valueOrZero(
        b, loc, inside, words, [&](OpBuilder &b, Location loc) -> Value {
          return memref::LoadOp::create(b, loc, source, ValueRange{n, column});
        });
    Value firstWord = arith::MulIOp::create(b, loc, q, index(b, loc, 4));
    for (int64_t j = 0; j < 4; ++j) {
      Value word = vector::ExtractOp::create(b, loc, loaded, j);
      if (unit.amd && unit.form == Form::E4M3)
        word = mma::fnuzWord(b, loc, word);
      Value slot = arith::AddIOp::create(b, loc, firstWord, index(b, loc, j));
      storeWord(b, loc, unit, word, tile, row, slot, offset);
    }
  }
}

/// Stages the scales of the tile's 64 tokens for the stage's 128 columns
/// (threads 0-63, one each).
void stageInputScales(OpBuilder &b, Location loc, const GPUThread &thread,
                      Value scales, Value tokens, Value firstToken, Value stage,
                      const Tiles &tiles) {
  Value mine = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                     thread.thread, index(b, loc, kTile));
  scf::IfOp::create(b, loc, mine, [&](OpBuilder &b, Location loc) {
    Value token = arith::AddIOp::create(b, loc, firstToken, thread.thread);
    Value inside =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, token, tokens);
    Value scale =
        simt::valueOrZero(b, loc, inside, b.getF32Type(),
                          [&](OpBuilder &b, Location loc) -> Value {
                            return memref::LoadOp::create(
                                b, loc, scales, ValueRange{token, stage});
                          });
    Value at = thread.thread;
    if (tiles.scalesOffset)
      at = arith::AddIOp::create(b, loc, at, tiles.scalesOffset);
    memref::StoreOp::create(b, loc, scale, tiles.inputScales, at);
    scf::YieldOp::create(b, loc);
  });
}

/// Inline PTX `text` over the 32 accumulator registers of the warpgroup
/// (tied: read and written in place) and `operands` ($64, $65, ...):
/// statements that order themselves against the accumulators' other uses,
/// which LLVM would otherwise move across the asynchronous products.
SmallVector<Value> onAccumulators(OpBuilder &b, Location loc, StringRef text,
                                  ValueRange acc, ValueRange operands = {}) {
  int64_t count = acc.size();
  std::string constraints;
  for (int64_t i = 0; i < count; ++i)
    constraints += "=f,";
  for (int64_t i = 0; i < count; ++i)
    constraints += std::to_string(i) + ",";
  for (Value operand : operands) {
    (void)operand;
    constraints += "l,";
  }
  constraints.pop_back();
  SmallVector<Type> types(count, b.getF32Type());
  auto result = LLVM::LLVMStructType::getLiteral(b.getContext(), types);
  SmallVector<Value> inputs(acc);
  llvm::append_range(inputs, operands);
  auto statement = LLVM::InlineAsmOp::create(
      b, loc, result, inputs, text, constraints, /*has_side_effects=*/true,
      /*is_align_stack=*/false, LLVM::tailcallkind::TailCallKind::None,
      LLVM::AsmDialectAttr::get(b.getContext(), LLVM::AsmDialect::AD_ATT),
      ArrayAttr());
  SmallVector<Value> values;
  for (int64_t i = 0; i < count; ++i)
    values.push_back(
        LLVM::ExtractValueOp::create(b, loc, statement.getResult(0), i));
  return values;
}

/// wgmma's shared-memory matrix descriptor of k-step `step` of a staged
/// tile (storeWord's core matrices): the start address >> 4 in bits 0-13,
/// the leading (K) byte offset between core matrices, 128, >> 4 in bits
/// 16-29, the stride (M or N) byte offset, 8 x 128, >> 4 in bits 32-45; no
/// swizzling (bits 62-63 zero).
Value descriptor(OpBuilder &b, Location loc, Value tile, Value offset,
                 int64_t step) {
  auto i64 = [&](int64_t value) -> Value {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(value));
  };
  Value pointer = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, tile);
  Value address = arith::IndexCastOp::create(b, loc, b.getI64Type(), pointer);
  if (offset) {
    // The stage's buffer: `offset` words further.
    Value words = arith::IndexCastOp::create(b, loc, b.getI64Type(), offset);
    Value bytes = arith::MulIOp::create(b, loc, words, i64(4));
    address = arith::AddIOp::create(b, loc, address, bytes);
  }
  // A step is 32 bytes of each row: two core matrices along K.
  Value start = arith::AddIOp::create(b, loc, address, i64(256 * step));
  Value shifted = arith::ShRUIOp::create(b, loc, start, i64(4));
  Value field = arith::AndIOp::create(b, loc, shifted, i64(0x3fff));
  int64_t strides = (int64_t(128 >> 4) << 16) | (int64_t(1024 >> 4) << 32);
  return arith::OrIOp::create(b, loc, field, i64(strides));
}

/// A stage on sm_90a: the warpgroup's 4 (8 with the bf16 remainder)
/// asynchronous m64n64 products over the staged tiles, then `meanwhile`
/// (the next stage's staging, which must not touch the accumulators), then
/// the wait for the products.
SmallVector<Value>
warpgroupStage(OpBuilder &b, Location loc, const Unit &unit, const Tiles &tiles,
               ValueRange acc,
               function_ref<void(OpBuilder &, Location)> meanwhile = nullptr) {
  std::string registers;
  for (int64_t i = 0; i < int64_t(acc.size()); ++i)
    registers += (i ? ", $" : "$") + std::to_string(i);
  // d, a-desc, b-desc, scale-d, imm-scale-a, imm-scale-b[, imm-trans-a,
  // imm-trans-b]: accumulate, no negation, both operands K-major.
  std::string product =
      unit.form == Form::E4M3
          ? "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 {" +
                registers + "}, $64, $65, 1, 1, 1;"
          : "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" +
                registers + "}, $64, $65, 1, 1, 1, 0, 0;";
  SmallVector<Value> sums =
      onAccumulators(b, loc, "wgmma.fence.sync.aligned;", acc);
  for (int64_t s = 0; s < kSteps; ++s) {
    Value w = descriptor(b, loc, tiles.weight, tiles.offset, s);
    Value a = descriptor(b, loc, tiles.input, tiles.offset, s);
    sums = onAccumulators(b, loc, product, sums, {a, w});
    if (unit.form == Form::BF16Split) {
      Value rest = descriptor(b, loc, tiles.inputRemainder, tiles.offset, s);
      sums = onAccumulators(b, loc, product, sums, {rest, w});
    }
  }
  sums = onAccumulators(b, loc, "wgmma.commit_group.sync.aligned;", sums);
  if (meanwhile)
    meanwhile(b, loc);
  return onAccumulators(b, loc, "wgmma.wait_group.sync.aligned 0;", sums);
}

/// The 4 steps of a stage for this wave's 2 x 4 tiles, on `acc`.
SmallVector<Value> multiplyStage(OpBuilder &b, Location loc, const Unit &unit,
                                 const Tiles &tiles, const Lane &lane,
                                 ValueRange acc) {
  if (unit.wgmma)
    return warpgroupStage(b, loc, unit, tiles, acc);
  SmallVector<Value> sums(acc);
  // NVIDIA A (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4), B (g, t),
  // (g, t + 4); AMD both (r, 2q), (r, 2q + 1).
  mma::LaneParts parts{Value(), lane.g, lane.t};
  auto wordsA = mma::fragmentWords(b, loc, unit.amd, parts, /*isA=*/true);
  auto wordsB = mma::fragmentWords(b, loc, unit.amd, parts, /*isA=*/false);
  for (int64_t s = 0; s < kSteps; ++s) {
    Value stepWord = index(b, loc, 8 * s);
    // NVIDIA: an A fragment, or two B fragments, an ldmatrix.x4.
    auto fragmentA = [&](Value tile, int64_t m) -> Value {
      Value row =
          arith::AddIOp::create(b, loc, lane.waveRow, index(b, loc, 16 * m));
      if (!unit.amd)
        return mma::loadFragmentA(b, loc, unit.products, tile, kPitch, row,
                                  stepWord);
      return mma::loadFragment(b, loc, tile, kPitch, wordsA, row, stepWord);
    };
    SmallVector<Value> a, remainder, w;
    for (int64_t m = 0; m < kM; ++m) {
      a.push_back(fragmentA(tiles.input, m));
      if (unit.form == Form::BF16Split)
        remainder.push_back(fragmentA(tiles.inputRemainder, m));
    }
    for (int64_t n = 0; n < kN; n += unit.amd ? 1 : 2) {
      Value row = arith::AddIOp::create(b, loc, lane.waveColumn,
                                        index(b, loc, unit.tileRows() * n));
      if (!unit.amd)
        w.append(mma::loadFragmentsB(b, loc, unit.products, tiles.weight,
                                     kPitch, row, stepWord));
      else
        w.push_back(mma::loadFragment(b, loc, tiles.weight, kPitch, wordsB, row,
                                      stepWord));
    }
    // Every (m, n) pair (at(m, n, e) is m-major), then the remainders'.
    sums = multiplyTiles(b, loc, unit, a, w, sums);
    if (unit.form == Form::BF16Split)
      sums = multiplyTiles(b, loc, unit, remainder, w, sums);
  }
  return sums;
}

void matrixTiles(OpBuilder &b, Location loc, const GPUThread &thread,
                 LinearOperands<Value> args, const LinearKernel &kernel,
                 Unit unit, const GPUKernelTarget &target) {
  unit.products = mma::warpProducts(target, thread, kM, kN);
  int64_t in = kernel.in, out = kernel.out;
  bool e4m3 = unit.form == Form::E4M3;
  // wgmma runs asynchronously: the next stage is staged into a second
  // buffer while the products of this one run (not with the bf16
  // remainder's third tile: 2 x 3 x 9 KiB would pass 48 KiB).
  bool pipelined = unit.wgmma && unit.form != Form::BF16Split;
  int64_t buffers = pipelined ? 2 : 1;
  Tiles tiles;
  tiles.input = thread.scratch(buffers * kTile * kPitch);
  tiles.weight = thread.scratch(buffers * kTile * kPitch);
  if (unit.form == Form::BF16Split)
    tiles.inputRemainder = thread.scratch(kTile * kPitch);
  if (e4m3)
    tiles.inputScales = thread.scratch(buffers * kTile);
  Value tokens = simt::leadingSize(b, loc, args.input);
  Value firstToken, firstRow;
  std::tie(firstToken, firstRow) =
      simt::tileCorner(b, loc, thread.workgroup, out, kTile);
  Lane lane = laneOf(b, loc, unit, thread);
  int64_t stageColumns = e4m3 ? 4 * kWords : 2 * kWords;
  Value stages = index(b, loc, in / stageColumns);
  // The block-scale row of the tile's 64 rows (bm is a multiple of 64), and
  // what the FNUZ codes' halving takes from the products.
  Value scaleRow;
  double codeScale = unit.amd ? 4.0 : 1.0;
  if (e4m3)
    scaleRow = arith::DivUIOp::create(
        b, loc, firstRow, index(b, loc, kernel.weight.blockScale->first));
  // Stage `stage` of both operands into `into`'s buffers; wgmma reads
  // workgroup memory through the async proxy, so the stores are fenced
  // for it.
  auto stageBoth = [&](OpBuilder &b, Location loc, Value stage,
                       const Tiles &into) {
    if (e4m3) {
      stageRows(b, loc, unit, thread, args.inputCodes, tokens, firstToken,
                stage, into.input, into.offset);
      stageInputScales(b, loc, thread, args.inputScale, tokens, firstToken,
                       stage, into);
    } else {
      stageBF16Input(b, loc, unit, thread, args.input, tokens, firstToken,
                     stage, into);
    }
    Value rows = index(b, loc, out);
    stageRows(b, loc, unit, thread, args.weight, rows, firstRow, stage,
              into.weight, into.offset);
    if (unit.wgmma)
      LLVM::InlineAsmOp::create(
          b, loc, TypeRange{}, ValueRange{}, "fence.proxy.async.shared::cta;",
          "", /*has_side_effects=*/true,
          /*is_align_stack=*/false, LLVM::tailcallkind::TailCallKind::None,
          LLVM::AsmDialectAttr::get(b.getContext(), LLVM::AsmDialect::AD_ATT),
          ArrayAttr());
  };
  // The stage's sums of code products (E4M3), promoted to the f32 totals
  // `acc` with the token's scale times the block's.
  auto promote = [&](OpBuilder &b, Location loc, Value stage, const Tiles &from,
                     ArrayRef<Value> partial,
                     ValueRange acc) -> SmallVector<Value> {
    Value blockScale =
        memref::LoadOp::create(b, loc, args.scale, ValueRange{scaleRow, stage});
    if (codeScale != 1.0)
      blockScale =
          arith::MulFOp::create(b, loc, blockScale, f32(b, loc, codeScale));
    SmallVector<Value> next(acc.begin(), acc.end());
    for (int64_t m = 0; m < kM; ++m)
      for (int64_t e = 0; e < 4; ++e) {
        Value row = elementAt(b, loc, unit, lane, m, 0, e).first;
        if (from.scalesOffset)
          row = arith::AddIOp::create(b, loc, row, from.scalesOffset);
        Value tokenScale =
            memref::LoadOp::create(b, loc, from.inputScales, row);
        Value scale = arith::MulFOp::create(b, loc, tokenScale, blockScale);
        for (int64_t n = 0; n < kN; ++n) {
          int64_t i = at(m, n, e);
          next[i] = simt::fma(b, loc, partial[i], scale, next[i]);
        }
      }
    return next;
  };
  // Buffer `parity` (0 or 1) of the tiles.
  auto buffer = [&](OpBuilder &b, Location loc, Value parity) {
    Tiles view = tiles;
    view.offset =
        arith::MulIOp::create(b, loc, parity, index(b, loc, kTile * kPitch));
    view.scalesOffset =
        arith::MulIOp::create(b, loc, parity, index(b, loc, kTile));
    return view;
  };
  SmallVector<Value> zeros(kM * kN * 4, f32(b, loc, 0.0));
  Value first = index(b, loc, 0), step = index(b, loc, 1);
  if (pipelined) {
    // The first stage, before the loop.
    stageBoth(b, loc, first, buffer(b, loc, first));
    mlir::gpu::BarrierOp::create(b, loc);
  }
  auto loop = scf::ForOp::create(
      b, loc, first, stages, step, zeros,
      [&](OpBuilder &b, Location loc, Value stage, ValueRange acc) {
        if (pipelined) {
          // Products of this stage's buffer, and meanwhile the next stage
          // into the other one; after the wait and a barrier both are free.
          Value two = index(b, loc, 2), one = index(b, loc, 1);
          Value parity = arith::RemUIOp::create(b, loc, stage, two);
          Value otherParity = arith::SubIOp::create(b, loc, one, parity);
          Tiles current = buffer(b, loc, parity);
          Tiles other = buffer(b, loc, otherParity);
          Value nextStage = arith::AddIOp::create(b, loc, stage, one);
          Value more = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             nextStage, stages);
          auto stageNext = [&](OpBuilder &b, Location loc) {
            scf::IfOp::create(b, loc, more, [&](OpBuilder &b, Location loc) {
              stageBoth(b, loc, nextStage, other);
              scf::YieldOp::create(b, loc);
            });
          };
          SmallVector<Value> next;
          if (e4m3) {
            SmallVector<Value> partial =
                warpgroupStage(b, loc, unit, current, zeros, stageNext);
            next = promote(b, loc, stage, current, partial, acc);
          } else {
            next = warpgroupStage(b, loc, unit, current, acc, stageNext);
          }
          mlir::gpu::BarrierOp::create(b, loc);
          scf::YieldOp::create(b, loc, next);
          return;
        }
        stageBoth(b, loc, stage, tiles);
        mlir::gpu::BarrierOp::create(b, loc);
        SmallVector<Value> next;
        if (!e4m3) {
          next = multiplyStage(b, loc, unit, tiles, lane, acc);
        } else {
          SmallVector<Value> partial =
              multiplyStage(b, loc, unit, tiles, lane, zeros);
          next = promote(b, loc, stage, tiles, partial, acc);
        }
        // Nobody restages the tiles before everyone has read them.
        mlir::gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(b, loc, next);
      });
  for (int64_t m = 0; m < kM; ++m)
    for (int64_t n = 0; n < kN; ++n)
      for (int64_t e = 0; e < 4; ++e) {
        auto [row, column] = elementAt(b, loc, unit, lane, m, n, e);
        Value token = arith::AddIOp::create(b, loc, firstToken, row);
        Value channel = arith::AddIOp::create(b, loc, firstRow, column);
        Value tokenInside = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::ult, token, tokens);
        Value channelInside = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::ult, channel, index(b, loc, out));
        Value both = arith::AndIOp::create(b, loc, tokenInside, channelInside);
        scf::IfOp::create(b, loc, both, [&](OpBuilder &b, Location loc) {
          Value result = loop.getResult(at(m, n, e));
          if (kernel.bias)
            result = arith::AddFOp::create(
                b, loc, result,
                simt::loadF32(b, loc, args.bias, {channel}, *kernel.bias));
          memref::StoreOp::create(b, loc, result, args.output,
                                  ValueRange{token, channel});
          scf::YieldOp::create(b, loc);
        });
      }
}
} // namespace

SymbolRefAttr mma::linearTiles(GPUKernelTarget &target,
                               const LinearKernel &kernel,
                               LinearOperands<Type> types, StringRef key) {
  std::optional<Unit> unit = unitOf(target, kernel);
  if (!unit || (unit->form == Form::E4M3 && !kernel.fp8InputCodes))
    return {};
  MLIRContext *context = target.getModule().getContext();
  // 16-byte loads: the input as 4 f32, the weight and the input's codes as
  // 4 words.
  auto words = VectorType::get({4}, IntegerType::get(context, 32));
  types.input =
      MemRefType::get({ShapedType::kDynamic, kernel.in / 4},
                      VectorType::get({4}, Float32Type::get(context)));
  int64_t perWord = unit->form == Form::E4M3 ? 16 : 8;
  types.weight = MemRefType::get({kernel.out, kernel.in / perWord}, words);
  if (unit->form == Form::E4M3)
    types.inputCodes =
        MemRefType::get({ShapedType::kDynamic, kernel.in / perWord}, words);
  std::string suffix = unit->wgmma ? "_wgmma" : "_mma";
  suffix += unit->form == Form::E4M3   ? "_e4m3"
            : unit->form == Form::BF16 ? "_bf16"
                                       : "_bf16x2";
  int64_t out = kernel.out;
  return target.get<LinearOperands>(
      key.str() + suffix, types, kBlock,
      [out](OpBuilder &b, Location loc, LinearOperands<Value> args) -> Value {
        Value tokens = memref::DimOp::create(b, loc, args.input, 0);
        return simt::outputTiles(b, loc, tokens, out, kTile);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          LinearOperands<Value> args) {
        matrixTiles(b, loc, thread, args, kernel, *unit, target);
      });
}
