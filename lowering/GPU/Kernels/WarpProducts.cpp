//===- WarpProducts.cpp - a warp's 16 x 8 matrix products ----------------===//
//
// mma.sync on cuda targets, MFMA on rocm; on vulkan:mma-emulation and
// vulkan:mfma-emulation the same fragments go through workgroup memory:
// each wave's lanes store their A and B words (16 x 8 and 8 x 8 words; AMD
// 16 x 8 each), a barrier, each lane sums its 4 C elements in f32 over the
// 8 words, a barrier. The kernels' calls are uniform over the
// workgroup (every thread makes each one), as the barriers need. Quad
// reductions go through workgroup memory likewise instead of shuffles.
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
constexpr int64_t kWarp = 32, kAMDWave = 64;
/// Words of a wave's A (16 x 8) and B (NVIDIA 8 x 8, AMD 16 x 8) fragments
/// in the emulation.
constexpr int64_t kWarpWords = 16 * 8 + 8 * 8, kAMDWaveWords = 16 * 8 + 16 * 8;
constexpr llvm::StringLiteral kEmulationChip = "mma-emulation";
constexpr llvm::StringLiteral kAMDEmulationChip = "mfma-emulation";

/// A lane's parts: warp, g = lane / 4, t = lane % 4.
struct LaneParts {
  Value warp, g, t;
};
LaneParts laneParts(OpBuilder &b, Location loc, Value thread) {
  Value warps = index(b, loc, kWarp);
  Value lane = arith::RemUIOp::create(b, loc, thread, warps);
  return {arith::DivUIOp::create(b, loc, thread, warps),
          arith::DivUIOp::create(b, loc, lane, index(b, loc, 4)),
          arith::RemUIOp::create(b, loc, lane, index(b, loc, 4))};
}

/// Element i of a word of `elements` (bf16 pairs or E4M3 quadruples) as f32.
Value element(OpBuilder &b, Location loc, Value word, int64_t i,
              WeightFormat elements) {
  if (elements == WeightFormat::BF16) {
    Value bits =
        i == 0
            ? Value(arith::ShLIOp::create(b, loc, word, simt::i32(b, loc, 16)))
            : Value(arith::AndIOp::create(b, loc, word,
                                          simt::i32(b, loc, 0xffff0000)));
    return arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
  }
  Value shifted =
      arith::ShRUIOp::create(b, loc, word, simt::i32(b, loc, 8 * i));
  return simt::decodeF32(b, loc, shifted, elements);
}

SmallVector<Value> emulate(OpBuilder &b, Location loc,
                           const mma::WarpProducts &products,
                           WeightFormat elements, Value a, Value w,
                           ArrayRef<Value> c) {
  LaneParts lane = laneParts(b, loc, products.thread);
  Value base =
      arith::MulIOp::create(b, loc, lane.warp, index(b, loc, kWarpWords));
  Value eight = index(b, loc, 8);
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
  Value below = arith::AddIOp::create(b, loc, lane.g, eight);
  Value later = arith::AddIOp::create(b, loc, lane.t, index(b, loc, 4));
  // A: (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4); B: (g, t), (g, t + 4).
  store(a, 0, 0, lane.g, lane.t);
  store(a, 1, 0, below, lane.t);
  store(a, 2, 0, lane.g, later);
  store(a, 3, 0, below, later);
  store(w, 0, 128, lane.g, lane.t);
  store(w, 1, 128, lane.g, later);
  mlir::gpu::BarrierOp::create(b, loc);
  // C: (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
  Value pair = arith::MulIOp::create(b, loc, lane.t, index(b, loc, 2));
  Value rows[4] = {lane.g, lane.g, below, below};
  Value one = index(b, loc, 1);
  Value odd = arith::AddIOp::create(b, loc, pair, one);
  Value columns[4] = {pair, odd, pair, odd};
  int64_t perWord = elements == WeightFormat::BF16 ? 2 : 4;
  Value zero = index(b, loc, 0);
  auto words = scf::ForOp::create(
      b, loc, zero, eight, one, ValueRange(c),
      [&](OpBuilder &b, Location loc, Value word, ValueRange sums) {
        SmallVector<Value> next;
        for (int64_t e = 0; e < 4; ++e) {
          Value aBits = memref::LoadOp::create(b, loc, products.scratch,
                                               at(b, loc, 0, rows[e], word));
          Value wBits = memref::LoadOp::create(
              b, loc, products.scratch, at(b, loc, 128, columns[e], word));
          Value aWord = arith::BitcastOp::create(b, loc, b.getI32Type(), aBits);
          Value wWord = arith::BitcastOp::create(b, loc, b.getI32Type(), wBits);
          Value sum = sums[e];
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
/// MFMA's 16 x 16 tile through workgroup memory: lane 16q + r stores words
/// 2q and 2q + 1 of row r of A and of B's n-major rows, then sums C rows
/// 4q + i of column r.
SmallVector<Value> emulateMFMA(OpBuilder &b, Location loc,
                               const mma::WarpProducts &products,
                               WeightFormat elements, Value a, Value w,
                               ArrayRef<Value> c) {
  Value waves = index(b, loc, kAMDWave);
  Value wave = arith::DivUIOp::create(b, loc, products.thread, waves);
  Value lane = arith::RemUIOp::create(b, loc, products.thread, waves);
  Value sixteen = index(b, loc, 16);
  Value r = arith::RemUIOp::create(b, loc, lane, sixteen);
  Value q = arith::DivUIOp::create(b, loc, lane, sixteen);
  Value base =
      arith::MulIOp::create(b, loc, wave, index(b, loc, kAMDWaveWords));
  Value eight = index(b, loc, 8);
  auto at = [&](OpBuilder &b, Location loc, int64_t first, Value row,
                Value word) -> Value {
    Value start = arith::MulIOp::create(b, loc, row, eight);
    Value offset = arith::AddIOp::create(b, loc, start, word);
    offset = arith::AddIOp::create(b, loc, offset, base);
    return arith::AddIOp::create(b, loc, offset, index(b, loc, first));
  };
  Value one = index(b, loc, 1);
  Value word = arith::MulIOp::create(b, loc, q, index(b, loc, 2));
  Value next = arith::AddIOp::create(b, loc, word, one);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t operand = 0; operand < 2; ++operand) {
      Value fragment = operand ? w : a;
      Value bits = vector::ExtractOp::create(b, loc, fragment, i);
      Value value = arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
      memref::StoreOp::create(b, loc, value, products.scratch,
                              at(b, loc, 128 * operand, r, i ? next : word));
    }
  mlir::gpu::BarrierOp::create(b, loc);
  Value quad = arith::MulIOp::create(b, loc, q, index(b, loc, 4));
  SmallVector<Value> rows;
  for (int64_t i = 0; i < 4; ++i)
    rows.push_back(arith::AddIOp::create(b, loc, quad, index(b, loc, i)));
  int64_t perWord = elements == WeightFormat::BF16 ? 2 : 4;
  Value zero = index(b, loc, 0);
  auto words = scf::ForOp::create(
      b, loc, zero, eight, one, ValueRange(c),
      [&](OpBuilder &b, Location loc, Value k, ValueRange sums) {
        SmallVector<Value> result;
        for (int64_t i = 0; i < 4; ++i) {
          Value aBits = memref::LoadOp::create(b, loc, products.scratch,
                                               at(b, loc, 0, rows[i], k));
          Value wBits = memref::LoadOp::create(b, loc, products.scratch,
                                               at(b, loc, 128, r, k));
          Value aWord = arith::BitcastOp::create(b, loc, b.getI32Type(), aBits);
          Value wWord = arith::BitcastOp::create(b, loc, b.getI32Type(), wBits);
          Value sum = sums[i];
          for (int64_t e = 0; e < perWord; ++e) {
            Value x = element(b, loc, aWord, e, elements);
            Value y = element(b, loc, wWord, e, elements);
            sum = simt::fma(b, loc, x, y, sum);
          }
          result.push_back(sum);
        }
        scf::YieldOp::create(b, loc, result);
      });
  // Nobody stores the next fragments before everyone has read these.
  mlir::gpu::BarrierOp::create(b, loc);
  return SmallVector<Value>(words.getResults());
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

mma::WarpProducts mma::warpProducts(const GPUKernelTarget &target,
                                    const GPUThread &thread) {
  mma::WarpProducts products;
  products.amd = target.getKind() == "rocm" || emulatesMFMA(target);
  if (!emulatesMMA(target) && !emulatesMFMA(target))
    return products;
  // The waves' fragments, then a word per thread for quad reductions.
  int64_t waveWords =
      products.amd ? llvm::divideCeil(thread.block, kAMDWave) * kAMDWaveWords
                   : llvm::divideCeil(thread.block, kWarp) * kWarpWords;
  products.scratch = thread.scratch(waveWords + thread.block);
  products.thread = thread.thread;
  products.reductions = waveWords;
  return products;
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

Value mma::pack16(OpBuilder &b, Location loc, Value low, Value high) {
  Value shifted = arith::ShLIOp::create(b, loc, high, simt::i32(b, loc, 16));
  return arith::OrIOp::create(b, loc, low, shifted);
}

SmallVector<Value> mma::multiply(OpBuilder &b, Location loc,
                                 const WarpProducts &products,
                                 WeightFormat elements, Value a, Value w,
                                 ArrayRef<Value> c) {
  if (products.amd)
    return products.emulated()
               ? emulateMFMA(b, loc, products, elements, a, w, c)
               : mfma(b, loc, elements, a, w, c);
  if (products.emulated())
    return emulate(b, loc, products, elements, a, w, c);
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

Value mma::quadReduce(OpBuilder &b, Location loc, const WarpProducts &products,
                      Value value, bool max) {
  auto combine = [&](Value x, Value y) -> Value {
    if (max)
      return arith::MaximumFOp::create(b, loc, x, y);
    return arith::AddFOp::create(b, loc, x, y);
  };
  if (!products.emulated()) {
    // Butterflies over lanes xor 1, then xor 2.
    for (int32_t offset : {1, 2}) {
      Value other = mlir::gpu::ShuffleOp::create(b, loc, value, offset, kWarp,
                                                 mlir::gpu::ShuffleMode::XOR)
                        .getShuffleResult();
      value = combine(value, other);
    }
    return value;
  }
  // Each thread's word after the warps' fragments; its quad's 4 combined
  // in the butterflies' order.
  Value start = index(b, loc, products.reductions);
  Value mine = arith::AddIOp::create(b, loc, start, products.thread);
  memref::StoreOp::create(b, loc, value, products.scratch, mine);
  mlir::gpu::BarrierOp::create(b, loc);
  Value inQuad =
      arith::RemUIOp::create(b, loc, products.thread, index(b, loc, 4));
  Value quad = arith::SubIOp::create(b, loc, mine, inQuad);
  SmallVector<Value> lanes;
  for (int64_t i = 0; i < 4; ++i) {
    Value at = arith::AddIOp::create(b, loc, quad, index(b, loc, i));
    lanes.push_back(memref::LoadOp::create(b, loc, products.scratch, at));
  }
  Value low = combine(lanes[0], lanes[1]);
  Value high = combine(lanes[2], lanes[3]);
  Value result = combine(low, high);
  // Nobody stores the next values before everyone has read these.
  mlir::gpu::BarrierOp::create(b, loc);
  return result;
}
