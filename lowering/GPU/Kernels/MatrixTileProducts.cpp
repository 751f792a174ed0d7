//===- MatrixTileProducts.cpp - 32 x 32 row-product tiles on matrix units -===//
//
// mma::tileProducts keeps simt::tileProducts' contract (a 32 x 32 tile of
// sums over k of A(r, k) * W_j(n, k) for one or more W operands, rows from
// callbacks so that A may gather its rows, 64 threads) and computes it on
// the target's matrix units: NVIDIA's mma.sync.m16n8k16 bf16 (2 warps, each
// 16 rows x the 32 columns: 4 products a k-step and W operand) or AMD's
// v_mfma_f32_16x16x16_bf16 (one wave of 64: 2 x 2 products of 16 x 16), or
// their emulations on Vulkan (WarpProducts.cpp). Each stage puts 64
// columns of the 32 A rows and of each W operand's 32 rows in workgroup
// memory as bf16 pairs (a 36-word pitch, as MatrixTiles.cpp: the fragment
// loads hit distinct banks), then runs 4 k-steps over them.
//
// A rounds to bf16, as the linears' matrix tiles round their input; with
// `split` (--precise) its remainder x - bf16(x) goes through a second
// product, which keeps about 16 of f32's 24 bits. The W values must be
// exact in bf16: bf16 weights, or the codes of 8-bit and 4-bit weights
// (E4M3, E5M2, int8, int4) whose block scales then multiply each stage's
// sums (a `stageScale` per operand, uniform over the tile: blocks of whole
// stages and tiles), as DeepSeek-V3 promotes its FP8 products every 128 K.
//
// mma::codeTileProducts runs the same schedule on the FP8 units where A is
// E4M3 codes too (activations quantized per token in groups of 128, as
// DeepSeek-V3 quantizes its experts' inputs): a stage is 128 columns, the
// same 32 words a row, loaded 16 bytes at a time and staged as they are
// (FNUZ on AMD: MatrixTiles.cpp),
// and multiplied by mma.sync.m16n8k32 e4m3 (v_mfma_f32_16x16x32_fp8_fp8),
// whose fragments have the bf16 forms' words. Each stage's sums are added
// to the totals times A's scale of the row (staged beside the codes) and
// W's block scale: the products' short accumulation never runs past one
// block.
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
/// The tile (rows and columns), threads, a stage's words a row (64 bf16
/// columns), the staged pitch in words, and k-steps a stage.
constexpr int64_t kTile = 32, kBlock = 64, kWords = 32, kPitch = 36, kSteps = 4;

/// How the waves split the tile: NVIDIA warp w has rows 16w + [0, 16) and
/// 4 C tiles of 8 columns; AMD's one wave 2 x 2 C tiles of 16 x 16.
struct Split {
  bool amd;
  int64_t rowTiles() const { return amd ? 2 : 1; }
  int64_t columnTiles() const { return amd ? 2 : 4; }
  int64_t columns() const { return amd ? 16 : 8; }
};

/// Stores f32 `values` (an even count) as bf16 pairs at words `at`, `at` +
/// 1, ... of `tile`, and with a `remainder` tile their remainders there.
void storeBF16Pairs(OpBuilder &b, Location loc, ArrayRef<Value> values,
                    Value tile, Value remainder, Value at, bool portable) {
  for (size_t p = 0; p < values.size() / 2; ++p) {
    SmallVector<Value> high, low;
    for (Value value : values.slice(2 * p, 2)) {
      if (remainder) {
        auto [bits, rest] = mma::splitBF16(b, loc, value, portable);
        high.push_back(bits);
        low.push_back(rest);
      } else {
        high.push_back(mma::bf16Bits(b, loc, value, portable));
      }
    }
    Value word = arith::AddIOp::create(b, loc, at, index(b, loc, p));
    auto store = [&](ArrayRef<Value> halves, Value into) {
      Value packed = mma::pack16(b, loc, halves[0], halves[1]);
      Value bits = arith::BitcastOp::create(b, loc, b.getF32Type(), packed);
      memref::StoreOp::create(b, loc, bits, into, word);
    };
    store(high, tile);
    if (remainder)
      store(low, remainder);
  }
}

/// `body(row, q)` for the items this thread stages of the tile's 32 rows x
/// `perRow` items (words or 16-byte loads): items i + 64j for thread i, so
/// neighbouring threads take neighbouring items of a row.
void forEachStagedItem(
    OpBuilder &b, Location loc, const GPUThread &thread, int64_t perRow,
    function_ref<void(OpBuilder &, Location, Value row, Value q)> body) {
  Value zero = index(b, loc, 0), one = index(b, loc, 1);
  Value perThread = index(b, loc, kTile * perRow / kBlock);
  simt::forLoop(
      b, loc, zero, perThread, one, [&](OpBuilder &b, Location loc, Value j) {
        Value spread = arith::MulIOp::create(b, loc, j, index(b, loc, kBlock));
        Value e = arith::AddIOp::create(b, loc, thread.thread, spread);
        Value row = arith::DivUIOp::create(b, loc, e, index(b, loc, perRow));
        Value q = arith::RemUIOp::create(b, loc, e, index(b, loc, perRow));
        body(b, loc, row, q);
      });
}

/// Load `at` of row `row` through `rows` (a `type` vector), or zero where
/// the row does not exist or `at` is at or past `end` (where set).
Value loadOrZero(OpBuilder &b, Location loc, const mma::PackedRows &rows,
                 Value row, Value at, std::optional<int64_t> end, Type type) {
  Value exists = rows.exists(b, loc, row);
  if (end) {
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, at,
                                         index(b, loc, *end));
    exists = arith::AndIOp::create(b, loc, exists, inside);
  }
  return simt::valueOrZero(
      b, loc, exists, type,
      [&](OpBuilder &b, Location loc) { return rows.load(b, loc, row, at); });
}

/// Stages columns [k0, k0 + 64) of the 32 rows of `rows` (zero past `depth`
/// and where a row does not exist) as bf16 pairs into `tile`, and with a
/// `remainder` tile the remainders there, a word (two values) an item.
void stageRows(OpBuilder &b, Location loc, const GPUThread &thread,
               const simt::TileRows &rows, Value k0, int64_t depth, Value tile,
               Value remainder, bool portable) {
  Value depthEnd = index(b, loc, depth);
  forEachStagedItem(
      b, loc, thread, kWords,
      [&](OpBuilder &b, Location loc, Value row, Value word) {
        Value pair = arith::MulIOp::create(b, loc, word, index(b, loc, 2));
        Value exists = rows.exists(b, loc, row);
        SmallVector<Value> values;
        for (int64_t i = 0; i < 2; ++i) {
          Value k = arith::AddIOp::create(b, loc, k0, pair);
          k = arith::AddIOp::create(b, loc, k, index(b, loc, i));
          Value kInside = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, k, depthEnd);
          Value inside = arith::AndIOp::create(b, loc, exists, kInside);
          values.push_back(simt::valueOrZero(b, loc, inside, b.getF32Type(),
                                             [&](OpBuilder &b, Location loc) {
                                               return rows.at(b, loc, row, k);
                                             }));
        }
        Value start = arith::MulIOp::create(b, loc, row, index(b, loc, kPitch));
        Value at = arith::AddIOp::create(b, loc, start, word);
        storeBF16Pairs(b, loc, values, tile, remainder, at, portable);
      });
}

/// stageRows for f32 rows read 4 columns (16 bytes) a load through
/// `rows` (depth % 4 == 0), a load an item.
void stageFloatLoads(OpBuilder &b, Location loc, const GPUThread &thread,
                     const mma::PackedRows &rows, Value k0, int64_t depth,
                     Value tile, Value remainder, bool portable) {
  auto floats = VectorType::get({4}, b.getF32Type());
  Value q0 = arith::DivUIOp::create(b, loc, k0, index(b, loc, 4));
  forEachStagedItem(
      b, loc, thread, 2 * kWords / 4,
      [&](OpBuilder &b, Location loc, Value row, Value q) {
        Value at = arith::AddIOp::create(b, loc, q0, q);
        Value loaded = loadOrZero(b, loc, rows, row, at, depth / 4, floats);
        SmallVector<Value> values;
        for (int64_t i = 0; i < 4; ++i)
          values.push_back(vector::ExtractOp::create(b, loc, loaded, i));
        Value start = arith::MulIOp::create(b, loc, row, index(b, loc, kPitch));
        Value firstWord = arith::MulIOp::create(b, loc, q, index(b, loc, 2));
        Value word = arith::AddIOp::create(b, loc, start, firstWord);
        storeBF16Pairs(b, loc, values, tile, remainder, word, portable);
      });
}

/// Stages the 16-byte loads [q0, q0 + 8) (words [4 q0, 4 q0 + 32)) of the
/// 32 rows of `rows` (zero where a row does not exist, and from load `qEnd`
/// on where that is set) into `tile` as they are, or as FNUZ codes for AMD.
void stageLoads(OpBuilder &b, Location loc, const GPUThread &thread,
                const mma::PackedRows &rows, Value q0,
                std::optional<int64_t> qEnd, Value tile, bool fnuz) {
  auto words = VectorType::get({4}, b.getI32Type());
  forEachStagedItem(
      b, loc, thread, kWords / 4,
      [&](OpBuilder &b, Location loc, Value row, Value q) {
        Value at = arith::AddIOp::create(b, loc, q0, q);
        Value loaded = loadOrZero(b, loc, rows, row, at, qEnd, words);
        Value start = arith::MulIOp::create(b, loc, row, index(b, loc, kPitch));
        Value firstWord = arith::MulIOp::create(b, loc, q, index(b, loc, 4));
        Value rowWords = arith::AddIOp::create(b, loc, start, firstWord);
        for (int64_t i = 0; i < 4; ++i) {
          Value codes = vector::ExtractOp::create(b, loc, loaded, i);
          if (fnuz)
            codes = mma::fnuzWord(b, loc, codes);
          Value slot =
              arith::AddIOp::create(b, loc, rowWords, index(b, loc, i));
          Value bits = arith::BitcastOp::create(b, loc, b.getF32Type(), codes);
          memref::StoreOp::create(b, loc, bits, tile, slot);
        }
      });
}

/// What tileProducts and codeTileProducts share: the tile's products over
/// stages of `stageColumns`, which `stage(k0, tileA, remainderA, tilesW)`
/// puts in workgroup memory. With `stageScale` each stage's sums start from
/// zero and are added to the totals times stageScale(k0, o) and, with
/// `rowScales`, times A's scale of the element's row there (workgroup
/// memory that `stage` fills).
struct Schedule {
  int64_t terms, stageColumns;
  bool split;
  WeightFormat elements;
  std::function<void(OpBuilder &, Location, Value k0, Value tileA,
                     Value remainderA, ArrayRef<Value> tilesW)>
      stage;
  std::function<Value(OpBuilder &, Location, Value r)> rowExists, columnExists;
  std::function<Value(OpBuilder &, Location, Value k0, int64_t o)> stageScale;
  Value rowScales;
};

void runSchedule(OpBuilder &b, Location loc, const GPUKernelTarget &target,
                 const GPUThread &thread, int64_t depth,
                 const Schedule &schedule, simt::TileFinish finish) {
  assert(thread.block == kBlock && "64 threads");
  // ptxas' own register budget for 64-thread kernels is below what these
  // take on sm_90 (96 registers and a spill for FP8 experts' gate and up,
  // where it uses 134 and spills nothing when told it may): the whole
  // register file's share of a thread is theirs.
  if (target.getKind() == "cuda" && thread.kernel)
    thread.kernel->setAttr("nvvm.maxnreg", b.getI32IntegerAttr(255));
  int64_t terms = schedule.terms;
  bool split = schedule.split;
  Split layout{mma::usesMFMA(target)};
  mma::WarpProducts products = mma::warpProducts(
      target, thread, layout.rowTiles(), terms * layout.columnTiles());
  Value tileA = thread.scratch(kTile * kPitch);
  Value remainderA = split ? thread.scratch(kTile * kPitch) : Value();
  SmallVector<Value> tilesW;
  for (int64_t o = 0; o < terms; ++o)
    tilesW.push_back(thread.scratch(kTile * kPitch));

  mma::LaneParts lane = mma::laneParts(b, loc, thread.thread, layout.amd);
  // NVIDIA: warp w's rows start at 16w; AMD's one wave has them all.
  Value waveRow =
      layout.amd ? index(b, loc, 0)
                 : arith::MulIOp::create(b, loc, lane.wave, index(b, loc, 16));
  auto wordsA = mma::fragmentWords(b, loc, layout.amd, lane, /*isA=*/true);
  auto wordsB = mma::fragmentWords(b, loc, layout.amd, lane, /*isA=*/false);
  int64_t rowTiles = layout.rowTiles(), columnTiles = layout.columnTiles();
  // The tile row of the lane's C element e of row tile m.
  auto rowOf = [&](OpBuilder &b, Location loc, int64_t m, int64_t e) {
    Value inRow = mma::elementOf(b, loc, layout.amd, lane, e).first;
    Value row = arith::AddIOp::create(b, loc, waveRow, inRow);
    return arith::AddIOp::create(b, loc, row, index(b, loc, 16 * m))
        .getResult();
  };
  // Sums of (row tile m, operand o's column tile n, element e) at
  // ((m * terms + o) * columnTiles + n) * 4 + e: multiplyGrid's order with
  // every operand's B fragments in one list.
  int64_t count = rowTiles * terms * columnTiles * 4;
  SmallVector<Value> zeros(count, f32(b, loc, 0.0));
  int64_t stageColumns = schedule.stageColumns;
  Value stages = index(b, loc, llvm::divideCeil(depth, stageColumns));
  Value zero = index(b, loc, 0), one = index(b, loc, 1);
  bool promotes = static_cast<bool>(schedule.stageScale);
  auto loop = scf::ForOp::create(
      b, loc, zero, stages, one, zeros,
      [&](OpBuilder &b, Location loc, Value stage, ValueRange acc) {
        Value k0 =
            arith::MulIOp::create(b, loc, stage, index(b, loc, stageColumns));
        schedule.stage(b, loc, k0, tileA, remainderA, tilesW);
        gpu::BarrierOp::create(b, loc);
        // With scales the stage's sums start from zero and are scaled into
        // the totals after its products.
        SmallVector<Value> sums(acc);
        if (promotes)
          sums.assign(count, f32(b, loc, 0.0));
        for (int64_t s = 0; s < kSteps; ++s) {
          Value stepWord = index(b, loc, 8 * s);
          SmallVector<Value> fragmentsA, fragmentsRest, fragmentsW;
          // NVIDIA: an A fragment, or two B fragments, an ldmatrix.x4.
          auto fragmentA = [&](Value tile, Value row) -> Value {
            if (!layout.amd)
              return mma::loadFragmentA(b, loc, products, tile, kPitch, row,
                                        stepWord);
            return mma::loadFragment(b, loc, tile, kPitch, wordsA, row,
                                     stepWord);
          };
          for (int64_t m = 0; m < rowTiles; ++m) {
            Value row =
                arith::AddIOp::create(b, loc, waveRow, index(b, loc, 16 * m));
            fragmentsA.push_back(fragmentA(tileA, row));
            if (split)
              fragmentsRest.push_back(fragmentA(remainderA, row));
          }
          for (int64_t o = 0; o < terms; ++o)
            for (int64_t n = 0; n < columnTiles; n += layout.amd ? 1 : 2) {
              Value row = index(b, loc, layout.columns() * n);
              if (!layout.amd)
                fragmentsW.append(mma::loadFragmentsB(
                    b, loc, products, tilesW[o], kPitch, row, stepWord));
              else
                fragmentsW.push_back(mma::loadFragment(
                    b, loc, tilesW[o], kPitch, wordsB, row, stepWord));
            }
          sums = mma::multiplyGrid(b, loc, products, schedule.elements,
                                   fragmentsA, fragmentsW, sums);
          if (split)
            sums = mma::multiplyGrid(b, loc, products, schedule.elements,
                                     fragmentsRest, fragmentsW, sums);
        }
        if (promotes) {
          SmallVector<Value> totals(acc);
          int64_t perOperand = columnTiles * 4;
          // A's scale of each of the lane's rows (n does not change them).
          SmallVector<Value> rowScale(rowTiles * 4);
          if (schedule.rowScales)
            for (int64_t m = 0; m < rowTiles; ++m)
              for (int64_t e = 0; e < 4; ++e)
                rowScale[m * 4 + e] = memref::LoadOp::create(
                    b, loc, schedule.rowScales, rowOf(b, loc, m, e));
          for (int64_t o = 0; o < terms; ++o) {
            Value scale = schedule.stageScale(b, loc, k0, o);
            for (int64_t m = 0; m < rowTiles; ++m)
              for (int64_t i = 0; i < perOperand; ++i) {
                int64_t at = (m * terms + o) * perOperand + i;
                Value factor = scale;
                if (schedule.rowScales)
                  factor = arith::MulFOp::create(
                      b, loc, rowScale[m * 4 + i % 4], scale);
                totals[at] = simt::fma(b, loc, sums[at], factor, totals[at]);
              }
          }
          sums = totals;
        }
        // Nobody restages the tiles before everyone has read them.
        gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(b, loc, sums);
      });
  for (int64_t m = 0; m < rowTiles; ++m)
    for (int64_t n = 0; n < columnTiles; ++n)
      for (int64_t e = 0; e < 4; ++e) {
        Value row = rowOf(b, loc, m, e);
        Value inColumn = mma::elementOf(b, loc, layout.amd, lane, e).second;
        Value column = arith::AddIOp::create(
            b, loc, inColumn, index(b, loc, layout.columns() * n));
        Value rowExists = schedule.rowExists(b, loc, row);
        Value columnExists = schedule.columnExists(b, loc, column);
        Value both = arith::AndIOp::create(b, loc, rowExists, columnExists);
        scf::IfOp::create(b, loc, both, [&](OpBuilder &b, Location loc) {
          SmallVector<Value> values;
          for (int64_t o = 0; o < terms; ++o)
            values.push_back(
                loop.getResult(((m * terms + o) * columnTiles + n) * 4 + e));
          finish(b, loc, row, column, values);
          scf::YieldOp::create(b, loc);
        });
      }
}
} // namespace

int64_t mma::tileProductsStage() { return 2 * kWords; }

int64_t mma::codeTileProductsStage() { return 4 * kWords; }

void mma::tileProducts(OpBuilder &b, Location loc,
                       const GPUKernelTarget &target, const GPUThread &thread,
                       int64_t depth, const simt::TileRows &a,
                       ArrayRef<simt::TileRows> w, const PackedOperands &packed,
                       bool split, const StageScale &stageScale,
                       simt::TileFinish finish) {
  assert((!packed.a || depth % 4 == 0) && "f32 4 columns a load");
  assert(
      (packed.w.empty() || (packed.w.size() == w.size() && depth % 8 == 0)) &&
      "bf16 pairs 8 columns a load");
  bool portable = emulatesMMA(target) || emulatesMFMA(target);
  Schedule schedule;
  schedule.terms = w.size();
  schedule.stageColumns = tileProductsStage();
  schedule.split = split;
  schedule.elements = WeightFormat::BF16;
  schedule.stage = [&](OpBuilder &b, Location loc, Value k0, Value tileA,
                       Value remainderA, ArrayRef<Value> tilesW) {
    if (packed.a)
      stageFloatLoads(b, loc, thread, *packed.a, k0, depth, tileA, remainderA,
                      portable);
    else
      stageRows(b, loc, thread, a, k0, depth, tileA, remainderA, portable);
    Value q0 = arith::DivUIOp::create(b, loc, k0, index(b, loc, 8));
    for (auto [o, tile] : llvm::enumerate(tilesW)) {
      if (packed.w.empty())
        stageRows(b, loc, thread, w[o], k0, depth, tile, Value(), portable);
      else
        stageLoads(b, loc, thread, packed.w[o], q0, depth / 8, tile, false);
    }
  };
  schedule.rowExists = a.exists;
  schedule.columnExists = w[0].exists;
  schedule.stageScale = stageScale;
  runSchedule(b, loc, target, thread, depth, schedule, finish);
}

void mma::codeTileProducts(OpBuilder &b, Location loc,
                           const GPUKernelTarget &target,
                           const GPUThread &thread, int64_t depth,
                           const PackedRows &a, const RowScale &aScale,
                           ArrayRef<PackedRows> w, const StageScale &stageScale,
                           simt::TileFinish finish) {
  assert(depth % codeTileProductsStage() == 0 && "whole stages");
  bool amd = usesMFMA(target);
  Value rowScales = thread.scratch(kTile);
  Schedule schedule;
  schedule.terms = w.size();
  schedule.stageColumns = codeTileProductsStage();
  schedule.split = false;
  schedule.elements = amd ? WeightFormat::F8E4M3FNUZ : WeightFormat::F8E4M3FN;
  schedule.stage = [&](OpBuilder &b, Location loc, Value k0, Value tileA, Value,
                       ArrayRef<Value> tilesW) {
    Value q0 = arith::DivUIOp::create(b, loc, k0, index(b, loc, 16));
    stageLoads(b, loc, thread, a, q0, std::nullopt, tileA, amd);
    for (auto [rows, tile] : llvm::zip_equal(w, tilesW))
      stageLoads(b, loc, thread, rows, q0, std::nullopt, tile, amd);
    // A's scales of the stage: threads 0-31, a row each (0 where the row
    // does not exist).
    Value mine = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       thread.thread, index(b, loc, kTile));
    scf::IfOp::create(b, loc, mine, [&](OpBuilder &b, Location loc) {
      Value r = thread.thread;
      Value scale = simt::valueOrZero(
          b, loc, a.exists(b, loc, r), b.getF32Type(),
          [&](OpBuilder &b, Location loc) { return aScale(b, loc, r, k0); });
      memref::StoreOp::create(b, loc, scale, rowScales, r);
      scf::YieldOp::create(b, loc);
    });
  };
  schedule.rowExists = a.exists;
  schedule.columnExists = w[0].exists;
  // gfx942's FNUZ codes are half the E4M3FN values: their products a
  // quarter.
  schedule.stageScale = [&](OpBuilder &b, Location loc, Value k0,
                            int64_t o) -> Value {
    Value scale = stageScale(b, loc, k0, o);
    if (amd)
      scale = arith::MulFOp::create(b, loc, scale, f32(b, loc, 4.0));
    return scale;
  };
  schedule.rowScales = rowScales;
  runSchedule(b, loc, target, thread, depth, schedule, finish);
}
