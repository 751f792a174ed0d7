//===- WarpProducts.cpp - a warp's 16 x 8 matrix products ----------------===//
//
// mma.sync on cuda targets, MFMA on rocm; on vulkan:mma-emulation and
// vulkan:mfma-emulation the same fragments go through workgroup memory:
// each wave's lanes store their A and B words (16 x 8 and 8 x 8 words; AMD
// 16 x 8 each), a barrier, each lane sums its 4 C elements in f32 over the
// 8 words, a barrier. The kernels' calls are uniform over the
// workgroup (every thread makes each one), as the barriers need. Row
// reductions go through workgroup memory likewise instead of shuffles.
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
constexpr int64_t kWarp = 32, kAMDWave = 64;
constexpr llvm::StringLiteral kEmulationChip = "mma-emulation";
constexpr llvm::StringLiteral kAMDEmulationChip = "mfma-emulation";

/// Element i of a word of `elements` (bf16 pairs or FP8 quadruples, the
/// first in the lowest bits) as f32.
Value element(OpBuilder &b, Location loc, Value word, int64_t i,
              WeightFormat elements) {
  int64_t bits = elements == WeightFormat::BF16 ? 16 : 8;
  Value shifted =
      arith::ShRUIOp::create(b, loc, word, simt::i32(b, loc, bits * i));
  return simt::decodeF32(b, loc, shifted, elements);
}

/// Rows of B fragments in a wave's product (NVIDIA 8, AMD 16).
int64_t rowsB(bool amd) { return amd ? 16 : 8; }
/// Words of a wave's fragments in the emulation: `maxA` A fragments of 16
/// rows x 8 words, `maxB` B fragments.
int64_t waveWords(bool amd, int64_t maxA, int64_t maxB) {
  return maxA * 16 * 8 + maxB * rowsB(amd) * 8;
}

/// Every product of a[m] x w[n] through workgroup memory: the lanes store
/// their fragments' words where the layouts put them (NVIDIA lane 4g + t:
/// A (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4), B (g, t), (g, t + 4);
/// AMD lane 16q + r: A and B (r, 2q), (r, 2q + 1)); a barrier; each lane
/// sums its C elements (NVIDIA (g, 2t), (g, 2t + 1), (g + 8, 2t),
/// (g + 8, 2t + 1); AMD (4q + i, r)) over the 8 words; a barrier.
SmallVector<Value> emulate(OpBuilder &b, Location loc,
                           const mma::WarpProducts &products,
                           WeightFormat elements, ArrayRef<Value> a,
                           ArrayRef<Value> w, ArrayRef<Value> c) {
  bool amd = products.amd;
  // NVIDIA g, t; AMD r (as g), q (as t).
  mma::LaneParts parts = mma::laneParts(b, loc, products.thread, amd);
  Value wave = parts.wave;
  Value base = arith::MulIOp::create(
      b, loc, wave,
      index(b, loc, waveWords(amd, products.maxA, products.maxB)));
  Value eight = index(b, loc, 8), one = index(b, loc, 1);
  int64_t bStart = products.maxA * 128;
  // Word `word` of row `row` of fragment tile `first` (words from the
  // wave's base).
  auto at = [&](OpBuilder &b, Location loc, int64_t first, Value row,
                Value word) -> Value {
    Value start = arith::MulIOp::create(b, loc, row, eight);
    Value offset = arith::AddIOp::create(b, loc, start, word);
    offset = arith::AddIOp::create(b, loc, offset, base);
    return arith::AddIOp::create(b, loc, offset, index(b, loc, first));
  };
  auto store = [&](Value fragment, int64_t i, int64_t first, Value row,
                   Value word) {
    Value bits = vector::ExtractOp::create(b, loc, fragment, i);
    Value value = arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
    memref::StoreOp::create(b, loc, value, products.scratch,
                            at(b, loc, first, row, word));
  };
  SmallVector<std::pair<Value, Value>> aWords =
      mma::fragmentWords(b, loc, amd, parts, /*isA=*/true);
  SmallVector<std::pair<Value, Value>> bWords =
      mma::fragmentWords(b, loc, amd, parts, /*isA=*/false);
  for (auto [m, fragment] : llvm::enumerate(a))
    for (auto [i, place] : llvm::enumerate(aWords))
      store(fragment, i, 128 * m, place.first, place.second);
  for (auto [n, fragment] : llvm::enumerate(w))
    for (auto [i, place] : llvm::enumerate(bWords))
      store(fragment, i, bStart + rowsB(amd) * 8 * n, place.first,
            place.second);
  mlir::gpu::BarrierOp::create(b, loc);
  // The lane's C elements: (row, column) of each of the 4.
  SmallVector<Value> rows, columns;
  for (int64_t e = 0; e < 4; ++e) {
    auto [row, column] = mma::elementOf(b, loc, amd, parts, e);
    rows.push_back(row);
    columns.push_back(column);
  }
  int64_t perWord = elements == WeightFormat::BF16 ? 2 : 4;
  int64_t count = w.size();
  Value zero = index(b, loc, 0);
  auto words = scf::ForOp::create(
      b, loc, zero, eight, one, ValueRange(c),
      [&](OpBuilder &b, Location loc, Value word, ValueRange sums) {
        SmallVector<Value> next;
        for (int64_t m = 0; m < int64_t(a.size()); ++m)
          for (int64_t n = 0; n < count; ++n)
            for (int64_t e = 0; e < 4; ++e) {
              Value aBits = memref::LoadOp::create(
                  b, loc, products.scratch, at(b, loc, 128 * m, rows[e], word));
              Value wBits = memref::LoadOp::create(
                  b, loc, products.scratch,
                  at(b, loc, bStart + rowsB(amd) * 8 * n, columns[e], word));
              Value aWord =
                  arith::BitcastOp::create(b, loc, b.getI32Type(), aBits);
              Value wWord =
                  arith::BitcastOp::create(b, loc, b.getI32Type(), wBits);
              Value sum = sums[(m * count + n) * 4 + e];
              for (int64_t i = 0; i < perWord; ++i) {
                Value x = element(b, loc, aWord, i, elements);
                Value y = element(b, loc, wWord, i, elements);
                sum = simt::fma(b, loc, x, y, sum);
              }
              next.push_back(sum);
            }
        scf::YieldOp::create(b, loc, next);
      });
  // Nobody stores the next fragments before everyone has read these.
  mlir::gpu::BarrierOp::create(b, loc);
  return SmallVector<Value>(words.getResults());
}

/// mma.sync.m16n8k16 bf16 or m16n8k32 e4m3.
SmallVector<Value> mmaSync(OpBuilder &b, Location loc, WeightFormat elements,
                           Value a, Value w, ArrayRef<Value> c) {
  Type f32Type = b.getF32Type();
  auto result = LLVM::LLVMStructType::getLiteral(
      b.getContext(), {f32Type, f32Type, f32Type, f32Type});
  StringRef name = elements == WeightFormat::F8E4M3FN
                       ? "llvm.nvvm.mma.m16n8k32.row.col.f32.e4m3.e4m3.f32"
                       : "llvm.nvvm.mma.m16n8k16.row.col.bf16";
  // The fragments travel as vector<4xi32> (A) and vector<2xi32> (B).
  SmallVector<Value> operands;
  for (int64_t i = 0; i < 4; ++i)
    operands.push_back(vector::ExtractOp::create(b, loc, a, i));
  for (int64_t i = 0; i < 2; ++i)
    operands.push_back(vector::ExtractOp::create(b, loc, w, i));
  llvm::append_range(operands, c);
  auto call = LLVM::CallIntrinsicOp::create(b, loc, result,
                                            b.getStringAttr(name), operands);
  SmallVector<Value> d;
  for (int64_t i = 0; i < 4; ++i)
    d.push_back(LLVM::ExtractValueOp::create(b, loc, call.getResult(0), i));
  return d;
}

/// v_mfma_f32_16x16x16_bf16 (gfx90a's _1k form, gfx942) or 16x16x32 fp8.
SmallVector<Value> mfma(OpBuilder &b, Location loc, WeightFormat elements,
                        Value a, Value w, ArrayRef<Value> c) {
  Type f32Type = b.getF32Type();
  auto vector4 = VectorType::get({4}, f32Type);
  Value accumulator = vector::FromElementsOp::create(b, loc, vector4, c);
  bool fp8 = elements != WeightFormat::BF16;
  StringRef name = fp8 ? "llvm.amdgcn.mfma.f32.16x16x32.fp8.fp8"
                       : "llvm.amdgcn.mfma.f32.16x16x16bf16.1k";
  // The fragments travel as vector<2xi32>: 8 bytes, as i64 (fp8) or
  // vector<4xi16> (bf16).
  Type operandType =
      fp8 ? Type(b.getI64Type()) : Type(VectorType::get({4}, b.getI16Type()));
  Value zero = simt::i32(b, loc, 0);
  auto asOperand = [&](Value words) -> Value {
    if (auto vector = dyn_cast<VectorType>(operandType))
      return vector::BitCastOp::create(b, loc, vector, words);
    auto one = VectorType::get({1}, operandType);
    Value cast = vector::BitCastOp::create(b, loc, one, words);
    return vector::ExtractOp::create(b, loc, cast, 0);
  };
  Value aOperand = asOperand(a);
  Value wOperand = asOperand(w);
  auto call = LLVM::CallIntrinsicOp::create(
      b, loc, vector4, b.getStringAttr(name),
      ValueRange{aOperand, wOperand, accumulator, zero, zero, zero});
  SmallVector<Value> d;
  for (int64_t i = 0; i < 4; ++i)
    d.push_back(vector::ExtractOp::create(b, loc, call.getResult(0), i));
  return d;
}
} // namespace

bool mma::emulatesMFMA(const GPUKernelTarget &target) {
  return target.getKind() == "vulkan" &&
         target.getTarget().getChip() == kAMDEmulationChip;
}

bool mma::emulatesMMA(const GPUKernelTarget &target) {
  return target.getKind() == "vulkan" &&
         target.getTarget().getChip() == kEmulationChip;
}

bool mma::usesMFMA(const GPUKernelTarget &target) {
  return target.getKind() == "rocm" || emulatesMFMA(target);
}

bool mma::hasMatrixUnits(const GPUKernelTarget &target) {
  // bf16 products: every chip we build for (sm_80 and later, gfx90a and
  // later), and the emulations.
  return target.getKind() == "cuda" || usesMFMA(target) || emulatesMMA(target);
}

bool mma::hasFP8Units(const GPUKernelTarget &target) {
  // Ada and Hopper, MI300; the emulations (NVIDIA's layouts with sm_90's
  // FP8, AMD's with gfx942's).
  if (emulatesMMA(target) || emulatesMFMA(target))
    return true;
  StringRef chip = target.getTarget().getChip();
  if (usesMFMA(target))
    return chip == "gfx942";
  return target.getKind() == "cuda" &&
         (chip == "sm_89" || chip == "sm_90" || chip == "sm_90a");
}

Value mma::fnuzWord(OpBuilder &b, Location loc, Value word) {
  Value magnitudes = simt::i32(b, loc, 0x7f7f7f7f);
  Value magnitude = arith::AndIOp::create(b, loc, word, magnitudes);
  Value carried = arith::AddIOp::create(b, loc, magnitude, magnitudes);
  Value signs = simt::i32(b, loc, int64_t(0x80808080));
  Value nonzero = arith::AndIOp::create(b, loc, carried, signs);
  Value keep = arith::OrIOp::create(b, loc, nonzero, magnitudes);
  return arith::AndIOp::create(b, loc, word, keep);
}

mma::LaneParts mma::laneParts(OpBuilder &b, Location loc, Value thread,
                              bool amd) {
  Value lanes = index(b, loc, amd ? kAMDWave : kWarp);
  Value wave = arith::DivUIOp::create(b, loc, thread, lanes);
  Value lane = arith::RemUIOp::create(b, loc, thread, lanes);
  Value split = index(b, loc, amd ? 16 : 4);
  if (amd) {
    Value g = arith::RemUIOp::create(b, loc, lane, split);
    Value t = arith::DivUIOp::create(b, loc, lane, split);
    return {wave, g, t};
  }
  Value g = arith::DivUIOp::create(b, loc, lane, split);
  Value t = arith::RemUIOp::create(b, loc, lane, split);
  return {wave, g, t};
}

int64_t mma::emulationWords(const GPUKernelTarget &target, int64_t block,
                            int64_t maxA, int64_t maxB) {
  if (!emulatesMMA(target) && !emulatesMFMA(target))
    return 0;
  bool amd = emulatesMFMA(target);
  int64_t waves = llvm::divideCeil(block, amd ? kAMDWave : kWarp);
  return waves * waveWords(amd, maxA, maxB) + block;
}

mma::WarpProducts mma::warpProducts(const GPUKernelTarget &target,
                                    const GPUThread &thread, int64_t maxA,
                                    int64_t maxB) {
  mma::WarpProducts products;
  products.amd = usesMFMA(target);
  products.thread = thread.thread;
  int64_t words = emulationWords(target, thread.block, maxA, maxB);
  if (!words)
    return products;
  // The waves' fragments, then a word per thread for row reductions.
  products.scratch = thread.scratch(words);
  products.reductions = words - thread.block;
  products.maxA = maxA;
  products.maxB = maxB;
  return products;
}

SmallVector<Value> mma::runningMaxima(OpBuilder &b, Location loc,
                                      const WarpProducts &products,
                                      ArrayRef<Value> chunkMaxima,
                                      MutableArrayRef<Value> maxima) {
  SmallVector<Value> corrections;
  for (auto [chunkMax, max] : llvm::zip_equal(chunkMaxima, maxima)) {
    Value rowMax = rowReduce(b, loc, products, chunkMax, /*max=*/true);
    Value next = arith::MaximumFOp::create(b, loc, max, rowMax);
    Value drop = arith::SubFOp::create(b, loc, max, next);
    corrections.push_back(math::ExpOp::create(b, loc, drop));
    max = next;
  }
  return corrections;
}

Value mma::fragmentOfSums(OpBuilder &b, Location loc, ArrayRef<Value> sums,
                          int64_t k, bool portable) {
  // Step k's words are C tiles 2k and 2k + 1, rows g then g + 8: the
  // registers as they are.
  SmallVector<Value> words;
  for (int64_t n : {2 * k, 2 * k + 1})
    for (int64_t r : {0, 1})
      words.push_back(bf16Pair(b, loc, sums[4 * n + 2 * r],
                               sums[4 * n + 2 * r + 1], portable));
  auto type = VectorType::get({int64_t(words.size())}, b.getI32Type());
  return vector::FromElementsOp::create(b, loc, type, words);
}

/// The word index of the row lane `lane` gives ldmatrix (a multiple of 4).
using RowWordOf = function_ref<Value(OpBuilder &b, Location loc, Value lane)>;

/// NVIDIA's ldmatrix.sync.aligned.m8n8.x4(.trans).b16: four 8 x 8 matrices
/// of 16-bit elements from workgroup memory `tile` (f32 words, each row 16
/// bytes), row r of matrix m at word rowWordOf(8m + r). Register m of lane
/// 4g + t holds word t of matrix m's row g, or with `transposed` element g
/// of its rows 2t (low half) and 2t + 1. The emulation reads those words
/// itself, each lane evaluating the addresses the other lanes would give.
static SmallVector<Value> loadMatrices(OpBuilder &b, Location loc,
                                       const mma::WarpProducts &products,
                                       Value tile, RowWordOf rowWordOf,
                                       bool transposed) {
  assert(!products.amd && "ldmatrix is NVIDIA's");
  Type i32 = b.getI32Type();
  if (!products.emulated()) {
    // The row's address in workgroup memory (tile's base + 4 bytes a word).
    Value lane =
        arith::RemUIOp::create(b, loc, products.thread, index(b, loc, kWarp));
    Value rowWord = rowWordOf(b, loc, lane);
    Value base = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, tile);
    Value bytes = arith::MulIOp::create(b, loc, rowWord, index(b, loc, 4));
    Value address = arith::AddIOp::create(b, loc, base, bytes);
    Value wide = arith::IndexCastOp::create(b, loc, b.getI64Type(), address);
    auto shared = LLVM::LLVMPointerType::get(b.getContext(), 3);
    Value pointer = LLVM::IntToPtrOp::create(b, loc, shared, wide);
    auto result =
        LLVM::LLVMStructType::getLiteral(b.getContext(), {i32, i32, i32, i32});
    StringRef name = transposed
                         ? "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.trans.b16"
                         : "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16";
    auto call = LLVM::CallIntrinsicOp::create(b, loc, result,
                                              b.getStringAttr(name), pointer);
    SmallVector<Value> words;
    for (int64_t i = 0; i < 4; ++i)
      words.push_back(
          LLVM::ExtractValueOp::create(b, loc, call.getResult(0), i));
    return words;
  }
  mma::LaneParts parts = mma::laneParts(b, loc, products.thread, false);
  // Row r of matrix m: where lane 8m + r points.
  auto rowOf = [&](int64_t m, Value r) -> Value {
    Value source = arith::AddIOp::create(b, loc, r, index(b, loc, 8 * m));
    return rowWordOf(b, loc, source);
  };
  auto wordAt = [&](Value row, Value word) -> Value {
    Value at = arith::AddIOp::create(b, loc, row, word);
    Value bits = memref::LoadOp::create(b, loc, tile, at);
    return arith::BitcastOp::create(b, loc, i32, bits);
  };
  SmallVector<Value> words;
  for (int64_t m = 0; m < 4; ++m) {
    if (!transposed) {
      // Lane 4g + t: word t of row g.
      Value row = rowOf(m, parts.g);
      words.push_back(wordAt(row, parts.t));
      continue;
    }
    // Lane 4g + t: element g of rows 2t and 2t + 1 (half g % 2 of word
    // g / 2 of each).
    Value twice = arith::MulIOp::create(b, loc, parts.t, index(b, loc, 2));
    Value next = arith::AddIOp::create(b, loc, twice, index(b, loc, 1));
    Value column = arith::DivUIOp::create(b, loc, parts.g, index(b, loc, 2));
    Value odd = arith::RemUIOp::create(b, loc, parts.g, index(b, loc, 2));
    Value oddBits = arith::IndexCastOp::create(b, loc, i32, odd);
    Value shift = arith::MulIOp::create(b, loc, oddBits, simt::i32(b, loc, 16));
    SmallVector<Value> halves;
    for (Value r : {twice, next}) {
      Value row = rowOf(m, r);
      Value word = wordAt(row, column);
      Value moved = arith::ShRUIOp::create(b, loc, word, shift);
      halves.push_back(
          arith::AndIOp::create(b, loc, moved, simt::i32(b, loc, 0xffff)));
    }
    words.push_back(mma::pack16(b, loc, halves[0], halves[1]));
  }
  return words;
}

/// ldmatrix.x4 of the 4 8 x 8 matrices (16 rows x 8 words from `firstRow`
/// and `firstWord`): lane l gives a row of matrix m = l / 8, whose bit 0
/// picks rows 8-15 (`rowsFirst`) or words 4-7, and bit 1 the other.
static SmallVector<Value> loadQuad(OpBuilder &b, Location loc,
                                   const mma::WarpProducts &products,
                                   Value tile, int64_t pitch, Value firstRow,
                                   Value firstWord, bool rowsFirst,
                                   bool transposed) {
  auto rowWordOf = [&](OpBuilder &b, Location loc, Value lane) -> Value {
    Value row = arith::RemUIOp::create(b, loc, lane, index(b, loc, 8));
    Value matrix = arith::DivUIOp::create(b, loc, lane, index(b, loc, 8));
    Value low = arith::RemUIOp::create(b, loc, matrix, index(b, loc, 2));
    Value high = arith::DivUIOp::create(b, loc, matrix, index(b, loc, 2));
    Value rowBlock = rowsFirst ? low : high, wordBlock = rowsFirst ? high : low;
    Value rowOffset = arith::MulIOp::create(b, loc, rowBlock, index(b, loc, 8));
    row = arith::AddIOp::create(b, loc, row, rowOffset);
    row = arith::AddIOp::create(b, loc, row, firstRow);
    Value wordOffset =
        arith::MulIOp::create(b, loc, wordBlock, index(b, loc, 4));
    Value word = arith::AddIOp::create(b, loc, firstWord, wordOffset);
    Value start = arith::MulIOp::create(b, loc, row, index(b, loc, pitch));
    return arith::AddIOp::create(b, loc, start, word);
  };
  return loadMatrices(b, loc, products, tile, rowWordOf, transposed);
}

Value mma::loadFragmentA(OpBuilder &b, Location loc,
                         const WarpProducts &products, Value tile,
                         int64_t pitch, Value firstRow, Value firstWord) {
  // Matrices (rows 0-7, words 0-3), (8-15, 0-3), (0-7, 4-7), (8-15, 4-7):
  // the A words (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4).
  SmallVector<Value> words = loadQuad(b, loc, products, tile, pitch, firstRow,
                                      firstWord, /*rowsFirst=*/true, false);
  auto type = VectorType::get({4}, b.getI32Type());
  return vector::FromElementsOp::create(b, loc, type, words);
}

SmallVector<Value> mma::loadFragmentsB(OpBuilder &b, Location loc,
                                       const WarpProducts &products, Value tile,
                                       int64_t pitch, Value firstRow,
                                       Value firstWord, bool transposed) {
  // Stored n-major: matrices (rows 0-7, words 0-3), (0-7, 4-7), then rows
  // 8-15: the B words (g, t) and (g, t + 4) of each tile. Transposed (K
  // rows): (keys 0-7, channels 0-7), (keys 8-15, ...), then channels 8-15.
  SmallVector<Value> words =
      loadQuad(b, loc, products, tile, pitch, firstRow, firstWord,
               /*rowsFirst=*/transposed, transposed);
  auto type = VectorType::get({2}, b.getI32Type());
  SmallVector<Value> fragments;
  for (int64_t n = 0; n < 2; ++n)
    fragments.push_back(vector::FromElementsOp::create(
        b, loc, type, ValueRange{words[2 * n], words[2 * n + 1]}));
  return fragments;
}

Value mma::bf16Pair(OpBuilder &b, Location loc, Value low, Value high,
                    bool portable) {
  Value lowBits = bf16Bits(b, loc, low, portable);
  Value highBits = bf16Bits(b, loc, high, portable);
  return pack16(b, loc, lowBits, highBits);
}

Value mma::bf16Bits(OpBuilder &b, Location loc, Value x, bool portable) {
  if (!portable) {
    Value rounded = arith::TruncFOp::create(b, loc, b.getBF16Type(), x);
    Value bits = arith::BitcastOp::create(b, loc, b.getI16Type(), rounded);
    return arith::ExtUIOp::create(b, loc, b.getI32Type(), bits);
  }
  // Round to nearest even on the bits: add 0x7fff plus the lowest kept bit,
  // keep the top 16 (finite values and infinities; NaN stays NaN).
  Value bits = arith::BitcastOp::create(b, loc, b.getI32Type(), x);
  Value sixteen = simt::i32(b, loc, 16);
  Value kept = arith::ShRUIOp::create(b, loc, bits, sixteen);
  Value odd = arith::AndIOp::create(b, loc, kept, simt::i32(b, loc, 1));
  Value bias = arith::AddIOp::create(b, loc, odd, simt::i32(b, loc, 0x7fff));
  Value rounded = arith::AddIOp::create(b, loc, bits, bias);
  return arith::ShRUIOp::create(b, loc, rounded, sixteen);
}

SmallVector<std::pair<Value, Value>> mma::fragmentWords(OpBuilder &b,
                                                        Location loc, bool amd,
                                                        const LaneParts &lane,
                                                        bool isA) {
  Value g = lane.g, t = lane.t;
  if (amd) {
    Value word = arith::MulIOp::create(b, loc, t, index(b, loc, 2));
    Value next = arith::AddIOp::create(b, loc, word, index(b, loc, 1));
    return {{g, word}, {g, next}};
  }
  Value later = arith::AddIOp::create(b, loc, t, index(b, loc, 4));
  if (!isA)
    return {{g, t}, {g, later}};
  Value below = arith::AddIOp::create(b, loc, g, index(b, loc, 8));
  return {{g, t}, {below, t}, {g, later}, {below, later}};
}

std::pair<Value, Value> mma::elementOf(OpBuilder &b, Location loc, bool amd,
                                       const LaneParts &lane, int64_t e) {
  if (amd) {
    Value quad = arith::MulIOp::create(b, loc, lane.t, index(b, loc, 4));
    return {arith::AddIOp::create(b, loc, quad, index(b, loc, e)), lane.g};
  }
  Value row = arith::AddIOp::create(b, loc, lane.g, index(b, loc, 8 * (e / 2)));
  Value pair = arith::MulIOp::create(b, loc, lane.t, index(b, loc, 2));
  return {row, arith::AddIOp::create(b, loc, pair, index(b, loc, e % 2))};
}

Value mma::loadFragment(OpBuilder &b, Location loc, Value tile, int64_t pitch,
                        ArrayRef<std::pair<Value, Value>> words, Value firstRow,
                        Value firstWord) {
  SmallVector<Value> values;
  for (auto [row, word] : words) {
    Value r = arith::AddIOp::create(b, loc, firstRow, row);
    Value w = arith::AddIOp::create(b, loc, firstWord, word);
    Value start = arith::MulIOp::create(b, loc, r, index(b, loc, pitch));
    Value at = arith::AddIOp::create(b, loc, start, w);
    Value bits = memref::LoadOp::create(b, loc, tile, at);
    values.push_back(arith::BitcastOp::create(b, loc, b.getI32Type(), bits));
  }
  auto type = VectorType::get({int64_t(values.size())}, b.getI32Type());
  return vector::FromElementsOp::create(b, loc, type, values);
}

std::pair<Value, Value> mma::splitBF16(OpBuilder &b, Location loc, Value x,
                                       bool portable) {
  Value bits = bf16Bits(b, loc, x, portable);
  // x - bf16(x) is exact; an infinite bf16(x) (x infinite, or past bf16's
  // range) leaves no remainder, rather than NaN.
  Value shifted = arith::ShLIOp::create(b, loc, bits, simt::i32(b, loc, 16));
  Value high = arith::BitcastOp::create(b, loc, b.getF32Type(), shifted);
  Value rest = arith::SubFOp::create(b, loc, x, high);
  Value magnitude = math::AbsFOp::create(b, loc, high);
  Value infinity = f32(b, loc, std::numeric_limits<float>::infinity());
  Value finite = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT,
                                       magnitude, infinity);
  rest = arith::SelectOp::create(b, loc, finite, rest, f32(b, loc, 0.0));
  return {bits, bf16Bits(b, loc, rest, portable)};
}

Value mma::pack16(OpBuilder &b, Location loc, Value low, Value high) {
  Value shifted = arith::ShLIOp::create(b, loc, high, simt::i32(b, loc, 16));
  return arith::OrIOp::create(b, loc, low, shifted);
}

SmallVector<Value> mma::multiplyGrid(OpBuilder &b, Location loc,
                                     const WarpProducts &products,
                                     WeightFormat elements, ArrayRef<Value> a,
                                     ArrayRef<Value> w, ArrayRef<Value> c) {
  assert(c.size() == 4 * a.size() * w.size() && "4 sums a product");
  if (products.emulated()) {
    assert(int64_t(a.size()) <= products.maxA &&
           int64_t(w.size()) <= products.maxB && "fragments past the scratch");
    return emulate(b, loc, products, elements, a, w, c);
  }
  SmallVector<Value> d;
  for (auto [m, fragmentA] : llvm::enumerate(a))
    for (auto [n, fragmentB] : llvm::enumerate(w)) {
      ArrayRef<Value> sums = c.slice((m * w.size() + n) * 4, 4);
      llvm::append_range(
          d, products.amd
                 ? mfma(b, loc, elements, fragmentA, fragmentB, sums)
                 : mmaSync(b, loc, elements, fragmentA, fragmentB, sums));
    }
  return d;
}

Value mma::rowReduce(OpBuilder &b, Location loc, const WarpProducts &products,
                     Value value, bool max) {
  auto combine = [&](Value x, Value y) -> Value {
    if (max)
      return arith::MaximumFOp::create(b, loc, x, y);
    return arith::AddFOp::create(b, loc, x, y);
  };
  // NVIDIA: lanes xor 1 and 2; AMD: xor 1, 2, 4 and 8.
  int64_t group = products.amd ? 16 : 4;
  if (!products.emulated()) {
    int32_t width = products.amd ? kAMDWave : kWarp;
    for (int32_t offset = 1; offset < group; offset *= 2) {
      Value other = mlir::gpu::ShuffleOp::create(b, loc, value, offset, width,
                                                 mlir::gpu::ShuffleMode::XOR)
                        .getShuffleResult();
      value = combine(value, other);
    }
    return value;
  }
  // Each thread's word after the waves' fragments; its group's combined
  // pairwise, as the butterflies do.
  Value start = index(b, loc, products.reductions);
  Value mine = arith::AddIOp::create(b, loc, start, products.thread);
  memref::StoreOp::create(b, loc, value, products.scratch, mine);
  mlir::gpu::BarrierOp::create(b, loc);
  Value inGroup =
      arith::RemUIOp::create(b, loc, products.thread, index(b, loc, group));
  Value groupStart = arith::SubIOp::create(b, loc, mine, inGroup);
  SmallVector<Value> lanes;
  for (int64_t i = 0; i < group; ++i) {
    Value at = arith::AddIOp::create(b, loc, groupStart, index(b, loc, i));
    lanes.push_back(memref::LoadOp::create(b, loc, products.scratch, at));
  }
  while (lanes.size() > 1) {
    SmallVector<Value> pairs;
    for (size_t i = 0; i < lanes.size(); i += 2)
      pairs.push_back(combine(lanes[i], lanes[i + 1]));
    lanes = pairs;
  }
  // Nobody stores the next values before everyone has read these.
  mlir::gpu::BarrierOp::create(b, loc);
  return lanes[0];
}
