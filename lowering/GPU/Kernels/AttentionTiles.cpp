//===- AttentionTiles.cpp - prefill attention on NVIDIA's matrix units ----===//
//
// The prefill form of gpuAttend on cuda targets (FlashAttention-2's
// schedule on mma.sync.m16n8k16 with bf16 operands): a workgroup of 4 warps
// per (tile of 64 tokens, query head), each warp owning 16 queries whose
// bf16 fragments stay in registers. The workgroup walks the keys any of its
// queries sees in chunks of 64:
// - it stages the chunk's keys (64 rows of Dk bf16) and values, transposed
//   (Dv rows of 64 bf16 keys), in workgroup memory as 32-bit words, with
//   the 8-bit formats' per-entry scales;
// - each warp computes its 16 x 64 scores S = Q K^T (Dk / 16 steps of 8
//   16 x 8 tiles), scales and masks them (causal, sliding window),
//   updates each query's running maximum and sum (a row's elements lie in
//   the 4 lanes of a quad: two butterfly shuffles) and rescales its
//   outputs;
// - the probabilities P = exp(S - max), times the value scales, rounded to
//   bf16, are already in the A layout of the next product (an m16n8 C tile
//   holds the same rows and columns as half of an m16n8k16 A tile), so
//   O += P V runs with no trip through workgroup memory.
// The rows' sums are combined over the quad once, at the end.
//
// Precision: the queries, the probabilities and f32/f16 caches round to
// bf16 (bf16 caches and 8-bit codes are exact in bf16), with f32 sums, as
// FlashAttention does for bf16 models; --precise keeps the f32 SIMT tiles.
//
// Fragments (PTX ISA, mma.m16n8k16), lane 4g + t of a warp: A words (g, t),
// (g + 8, t), (g, t + 4), (g + 8, t + 4) of a 16-column step (8 words); B
// words (n = g, t) and (g, t + 4) of the operand stored n-major; C (g, 2t),
// (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
/// Keys a chunk, threads a workgroup.
constexpr int64_t kChunk = 64, kBlock = 128;
/// Keys a chunk in bf16 pairs: the transposed values' pitch in words (36:
/// a warp's fragment loads hit 32 distinct banks).
constexpr int64_t kValuePitch = kChunk / 2 + 4;
/// AMD's probabilities go through workgroup memory: a wave's 16 rows of 64
/// f32, this pitch apart.
constexpr int64_t kProbabilityPitch = kChunk + 4;
/// Static workgroup memory every CUDA device has, and every AMD one (LDS).
constexpr int64_t kWorkgroupBytes = 48 * 1024, kAMDWorkgroupBytes = 64 * 1024;

/// Word pitch of the staged keys: Dk / 2 words a key rounded up to whole
/// 32-bank rows, plus 4 (rows 4 banks apart: conflict-free fragments).
int64_t keyPitch(int64_t keyDim) { return llvm::alignTo(keyDim / 2, 32) + 4; }

/// How the target's matrix instruction lays out a wave's tiles: NVIDIA's
/// mma.sync (warps of 32, 16 x 8 C tiles, lane 4g + t) or AMD's MFMA (waves
/// of 64, 16 x 16 C tiles, lane 16q + r).
struct Layout {
  bool amd;
  int64_t lanes() const { return amd ? 64 : 32; }
  /// Queries a workgroup: 16 a wave.
  int64_t queries() const { return 16 * (kBlock / lanes()); }
  /// Columns (keys or channels) of one product's C tile.
  int64_t columns() const { return amd ? 16 : 8; }
  /// Query rows a lane's C elements hold: NVIDIA g and g + 8, AMD 4q to
  /// 4q + 3; C element e belongs to row rowOf(e) of them.
  int64_t rowsPerLane() const { return amd ? 4 : 2; }
  int64_t rowOf(int64_t e) const { return amd ? e : e / 2; }
};

/// Where this lane works: its wave's first query in the tile, and its
/// parts (NVIDIA g = lane / 4, t = lane % 4; AMD r = lane % 16 as g,
/// q = lane / 16 as t).
struct Lane {
  Value waveRow, g, t;
};

/// The lane's parts as mma::LaneParts (its wave does not matter here).
mma::LaneParts partsOf(const Lane &lane) { return {Value(), lane.g, lane.t}; }

/// The B fragments of `count` tiles of n-major rows (the tile's columns
/// each), step `step`: NVIDIA two tiles an ldmatrix.x4 (the words t and
/// t + 4 of the lane's row g), AMD the words 2q and 2q + 1.
SmallVector<Value> fragmentsB(OpBuilder &b, Location loc, const Layout &layout,
                              const mma::WarpProducts &products,
                              const Lane &lane, Value tile, int64_t pitch,
                              int64_t count, int64_t step) {
  auto words = mma::fragmentWords(b, loc, layout.amd, partsOf(lane),
                                  /*isA=*/false);
  Value word = index(b, loc, 8 * step);
  SmallVector<Value> fragments;
  for (int64_t n = 0; n < count; ++n) {
    Value row = index(b, loc, layout.columns() * n);
    if (!layout.amd && n + 1 < count) {
      fragments.append(
          mma::loadFragmentsB(b, loc, products, tile, pitch, row, word));
      ++n;
      continue;
    }
    fragments.push_back(
        mma::loadFragment(b, loc, tile, pitch, words, row, word));
  }
  return fragments;
}

/// The column (key or channel) of C element e of tile n: NVIDIA
/// 8n + 2t + e % 2, AMD 16n + r.
Value columnOf(OpBuilder &b, Location loc, const Layout &layout,
               const Lane &lane, int64_t n, int64_t e) {
  Value inTile = mma::elementOf(b, loc, layout.amd, partsOf(lane), e).second;
  return arith::AddIOp::create(b, loc, inTile,
                               index(b, loc, layout.columns() * n));
}

/// `value()` where `inside`, else `otherwise`.
Value selectIf(OpBuilder &b, Location loc, Value inside, Value otherwise,
               function_ref<Value(OpBuilder &, Location)> value) {
  auto branch = scf::IfOp::create(b, loc, TypeRange{otherwise.getType()},
                                  inside, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&branch.getThenRegion().front());
  scf::YieldOp::create(b, loc, value(b, loc));
  b.setInsertionPointToStart(&branch.getElseRegion().front());
  scf::YieldOp::create(b, loc, otherwise);
  return branch.getResult(0);
}

void attentionTilesBody(OpBuilder &b, Location loc, const GPUThread &thread,
                        AttendOperands<Value> args, const AttendKernel &kernel,
                        const mma::WarpProducts &products) {
  Layout layout{products.amd};
  int64_t keyDim = kernel.keyDim, valueDim = kernel.valueDim;
  int64_t pitch = keyPitch(keyDim);
  int64_t tile = layout.queries(), columns = layout.columns();
  int64_t rowsPerLane = layout.rowsPerLane();
  int64_t keySteps = keyDim / 16, valueTiles = valueDim / columns;
  int64_t keyTiles = kChunk / columns, valueSteps = kChunk / 16;
  WeightFormat format = kernel.format.format;
  bool scaled = kernel.format.scaled;
  Value keys = thread.scratch(kChunk * pitch);
  Value values = thread.scratch(valueDim * kValuePitch);
  Value keyScales, valueScales, probabilityRows;
  if (scaled) {
    keyScales = thread.scratch(kChunk);
    valueScales = thread.scratch(kChunk);
  }
  if (layout.amd)
    probabilityRows = thread.scratch(tile * kProbabilityPitch);
  Value one = index(b, loc, 1);
  bool portable = products.emulated();
  Value zeroWord = simt::i32(b, loc, 0);
  Value zeroF32 = f32(b, loc, 0.0);
  QueryTile span = queryTile(b, loc, thread, args, kernel, tile);
  Value tokens = span.tokens, h = span.head, kvHead = span.kvHead;
  Value firstToken = span.firstToken, tileStart = span.tileStart;
  Value first = span.firstKey, last = span.lastKey;

  Lane lane;
  {
    mma::LaneParts parts = mma::laneParts(b, loc, thread.thread, layout.amd);
    lane.g = parts.g;
    lane.t = parts.t;
    lane.waveRow = arith::MulIOp::create(b, loc, parts.wave, index(b, loc, 16));
  }
  // This lane's query rows in the tile (C tiles): NVIDIA g and g + 8 of its
  // warp's 16, AMD 4q to 4q + 3.
  Value within =
      layout.amd
          ? Value(arith::MulIOp::create(b, loc, lane.t, index(b, loc, 4)))
          : lane.g;
  Value firstRow = arith::AddIOp::create(b, loc, lane.waveRow, within);
  SmallVector<Value> rows;
  for (int64_t r = 0; r < rowsPerLane; ++r)
    rows.push_back(arith::AddIOp::create(
        b, loc, firstRow, index(b, loc, layout.amd ? r : 8 * r)));
  SmallVector<std::pair<Value, Value>> aWords =
      mma::fragmentWords(b, loc, layout.amd, partsOf(lane), /*isA=*/true);
  auto aType = VectorType::get({int64_t(aWords.size())}, b.getI32Type());

  // The queries' A fragments, once: word w of step s holds channels
  // 16s + 2w and 16s + 2w + 1; tokens past the prompt are zeros.
  SmallVector<Value> queries;
  for (int64_t s = 0; s < keySteps; ++s) {
    SmallVector<Value> words;
    for (auto [rowInWave, word] : aWords) {
      Value row = arith::AddIOp::create(b, loc, lane.waveRow, rowInWave);
      Value token = arith::AddIOp::create(b, loc, firstToken, row);
      Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           token, tokens);
      Value pair = arith::MulIOp::create(b, loc, word, index(b, loc, 2));
      Value d = arith::AddIOp::create(b, loc, pair, index(b, loc, 16 * s));
      words.push_back(
          selectIf(b, loc, inside, zeroWord, [&](OpBuilder &b, Location loc) {
            Value next = arith::AddIOp::create(b, loc, d, one);
            Value low = memref::LoadOp::create(b, loc, args.query,
                                               ValueRange{token, h, d});
            Value high = memref::LoadOp::create(b, loc, args.query,
                                                ValueRange{token, h, next});
            return mma::bf16Pair(b, loc, low, high, portable);
          }));
    }
    queries.push_back(vector::FromElementsOp::create(b, loc, aType, words));
  }

  // Key i of the chunk from `chunk` exists when chunk + i < last.
  auto existing = [&](OpBuilder &b, Location loc, Value chunk,
                      Value i) -> std::pair<Value, Value> {
    return simt::offsetBelow(b, loc, chunk, i, last);
  };
  // Stages the chunk: the keys' words (key, pair) with neighbouring threads
  // on neighbouring channels, the values' (channel, key pair) likewise
  // (coalesced reads), zeros past `last`.
  auto stage = [&](OpBuilder &b, Location loc, Value chunk) {
    int64_t keyWords = keyDim / 2;
    simt::strided(
        b, loc, thread, index(b, loc, kChunk * keyWords),
        [&](OpBuilder &b, Location loc, Value e) {
          Value i = arith::DivUIOp::create(b, loc, e, index(b, loc, keyWords));
          Value w = arith::RemUIOp::create(b, loc, e, index(b, loc, keyWords));
          Value key, inside;
          std::tie(key, inside) = existing(b, loc, chunk, i);
          Value word = selectIf(
              b, loc, inside, zeroWord, [&](OpBuilder &b, Location loc) {
                Value d = arith::MulIOp::create(b, loc, w, index(b, loc, 2));
                Value next = arith::AddIOp::create(b, loc, d, one);
                Value low =
                    simt::loadF32(b, loc, args.cache, {key, kvHead, d}, format);
                Value high = simt::loadF32(b, loc, args.cache,
                                           {key, kvHead, next}, format);
                return mma::bf16Pair(b, loc, low, high, portable);
              });
          Value start = arith::MulIOp::create(b, loc, i, index(b, loc, pitch));
          Value at = arith::AddIOp::create(b, loc, start, w);
          Value bits = arith::BitcastOp::create(b, loc, b.getF32Type(), word);
          memref::StoreOp::create(b, loc, bits, keys, at);
        });
    simt::strided(
        b, loc, thread, index(b, loc, valueDim * kChunk / 2),
        [&](OpBuilder &b, Location loc, Value e) {
          Value c = arith::RemUIOp::create(b, loc, e, index(b, loc, valueDim));
          Value p = arith::DivUIOp::create(b, loc, e, index(b, loc, valueDim));
          Value channel =
              arith::AddIOp::create(b, loc, c, index(b, loc, keyDim));
          SmallVector<Value> halves;
          for (int64_t k : {0, 1}) {
            Value pair = arith::MulIOp::create(b, loc, p, index(b, loc, 2));
            Value i = arith::AddIOp::create(b, loc, pair, index(b, loc, k));
            Value key, inside;
            std::tie(key, inside) = existing(b, loc, chunk, i);
            halves.push_back(selectIf(
                b, loc, inside, zeroF32, [&](OpBuilder &b, Location loc) {
                  return simt::loadF32(b, loc, args.cache,
                                       {key, kvHead, channel}, format);
                }));
          }
          Value word = mma::bf16Pair(b, loc, halves[0], halves[1], portable);
          Value start =
              arith::MulIOp::create(b, loc, c, index(b, loc, kValuePitch));
          Value at = arith::AddIOp::create(b, loc, start, p);
          Value bits = arith::BitcastOp::create(b, loc, b.getF32Type(), word);
          memref::StoreOp::create(b, loc, bits, values, at);
        });
    if (!scaled)
      return;
    Value mine = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       thread.thread, index(b, loc, kChunk));
    scf::IfOp::create(b, loc, mine, [&](OpBuilder &b, Location loc) {
      Value key, inside;
      std::tie(key, inside) = existing(b, loc, chunk, thread.thread);
      for (int64_t slot : {0, 1}) {
        Value scale =
            selectIf(b, loc, inside, zeroF32, [&](OpBuilder &b, Location loc) {
              return memref::LoadOp::create(
                  b, loc, args.scales,
                  ValueRange{key, kvHead, index(b, loc, slot)});
            });
        memref::StoreOp::create(b, loc, scale, slot ? valueScales : keyScales,
                                thread.thread);
      }
      scf::YieldOp::create(b, loc);
    });
  };

  // State: the lane's rows' maxima and (this lane's part of the) sums, then
  // the outputs (valueTiles C tiles, 4 f32 each).
  // The running maximum starts at a finite lowest value: a masked key
  // (-inf) then gives exp(-inf - max) = 0, never exp(-inf + inf).
  SmallVector<Value> init(rowsPerLane, f32(b, loc, -1e30));
  init.append(rowsPerLane, zeroF32);
  init.append(valueTiles * 4, zeroF32);
  int64_t outputs = 2 * rowsPerLane;
  double negInf = -std::numeric_limits<double>::infinity();
  auto chunks = scf::ForOp::create(
      b, loc, first, last, index(b, loc, kChunk), init,
      [&](OpBuilder &b, Location loc, Value chunk, ValueRange state) {
        stage(b, loc, chunk);
        mlir::gpu::BarrierOp::create(b, loc);
        // Scores: keyTiles C tiles of 16 queries x `columns` keys.
        SmallVector<Value> scores(keyTiles * 4, zeroF32);
        for (int64_t s = 0; s < keySteps; ++s) {
          SmallVector<Value> w = fragmentsB(b, loc, layout, products, lane,
                                            keys, pitch, keyTiles, s);
          scores = mma::multiplyGrid(b, loc, products, WeightFormat::BF16,
                                     queries[s], w, scores);
        }
        // Scale and mask.
        SmallVector<Value> rowMax(rowsPerLane, f32(b, loc, negInf));
        for (int64_t n = 0; n < keyTiles; ++n)
          for (int64_t e = 0; e < 4; ++e) {
            Value column = columnOf(b, loc, layout, lane, n, e);
            Value key, inside;
            std::tie(key, inside) = existing(b, loc, chunk, column);
            Value factor = f32(b, loc, kernel.scale);
            if (scaled) {
              Value keyScale =
                  memref::LoadOp::create(b, loc, keyScales, column);
              factor = arith::MulFOp::create(b, loc, factor, keyScale);
            }
            Value score =
                arith::MulFOp::create(b, loc, scores[4 * n + e], factor);
            // Query q (position tileStart + q) sees key k when
            // k - tileStart <= q, and > q - window.
            Value relative = arith::SubIOp::create(b, loc, key, tileStart);
            Value query = rows[layout.rowOf(e)];
            Value visible = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::sle, relative, query);
            visible = arith::AndIOp::create(b, loc, visible, inside);
            if (kernel.window) {
              Value earliest = arith::SubIOp::create(
                  b, loc, query, index(b, loc, *kernel.window));
              Value inWindow = arith::CmpIOp::create(
                  b, loc, arith::CmpIPredicate::sgt, relative, earliest);
              visible = arith::AndIOp::create(b, loc, visible, inWindow);
            }
            scores[4 * n + e] = arith::SelectOp::create(b, loc, visible, score,
                                                        f32(b, loc, negInf));
            int64_t r = layout.rowOf(e);
            rowMax[r] =
                arith::MaximumFOp::create(b, loc, rowMax[r], scores[4 * n + e]);
          }
        SmallVector<Value> next(state.begin(), state.end());
        SmallVector<Value> correction = mma::runningMaxima(
            b, loc, products, rowMax,
            MutableArrayRef<Value>(next).take_front(rowsPerLane));
        // Probabilities (times the value scales for the product) and this
        // lane's part of each row's sum.
        SmallVector<Value> sums(rowsPerLane, zeroF32);
        SmallVector<Value> weights(keyTiles * 4);
        for (int64_t n = 0; n < keyTiles; ++n)
          for (int64_t e = 0; e < 4; ++e) {
            int64_t r = layout.rowOf(e);
            Value shifted =
                arith::SubFOp::create(b, loc, scores[4 * n + e], next[r]);
            Value p = math::ExpOp::create(b, loc, shifted);
            sums[r] = arith::AddFOp::create(b, loc, sums[r], p);
            if (scaled) {
              Value column = columnOf(b, loc, layout, lane, n, e);
              Value valueScale =
                  memref::LoadOp::create(b, loc, valueScales, column);
              p = arith::MulFOp::create(b, loc, p, valueScale);
            }
            weights[4 * n + e] = p;
          }
        for (int64_t r = 0; r < rowsPerLane; ++r) {
          Value kept = arith::MulFOp::create(b, loc, state[rowsPerLane + r],
                                             correction[r]);
          next[rowsPerLane + r] = arith::AddFOp::create(b, loc, kept, sums[r]);
        }
        // P's A fragments for the steps of 16 keys.
        SmallVector<Value> probabilities;
        if (!layout.amd) {
          // NVIDIA: step k's words are C tiles 2k and 2k + 1, rows g then
          // g + 8: the registers as they are.
          for (int64_t k = 0; k < valueSteps; ++k)
            probabilities.push_back(
                mma::fragmentOfSums(b, loc, weights, k, portable));
        } else {
          // AMD: a lane's C elements are 4 rows of one key, its A words 4
          // keys of one row: through workgroup memory, the wave's 16 rows.
          for (int64_t n = 0; n < keyTiles; ++n)
            for (int64_t e = 0; e < 4; ++e) {
              Value start = arith::MulIOp::create(
                  b, loc, rows[e], index(b, loc, kProbabilityPitch));
              Value column = columnOf(b, loc, layout, lane, n, e);
              Value at = arith::AddIOp::create(b, loc, start, column);
              memref::StoreOp::create(b, loc, weights[4 * n + e],
                                      probabilityRows, at);
            }
          mlir::gpu::BarrierOp::create(b, loc);
          Value row = arith::AddIOp::create(b, loc, lane.waveRow, lane.g);
          Value rowStart = arith::MulIOp::create(
              b, loc, row, index(b, loc, kProbabilityPitch));
          Value quad = arith::MulIOp::create(b, loc, lane.t, index(b, loc, 4));
          Value firstKey = arith::AddIOp::create(b, loc, rowStart, quad);
          for (int64_t k = 0; k < valueSteps; ++k) {
            SmallVector<Value> p;
            for (int64_t j = 0; j < 4; ++j) {
              Value at = arith::AddIOp::create(b, loc, firstKey,
                                               index(b, loc, 16 * k + j));
              p.push_back(memref::LoadOp::create(b, loc, probabilityRows, at));
            }
            SmallVector<Value> words{
                mma::bf16Pair(b, loc, p[0], p[1], portable),
                mma::bf16Pair(b, loc, p[2], p[3], portable)};
            probabilities.push_back(
                vector::FromElementsOp::create(b, loc, aType, words));
          }
        }
        // O = O * correction + P V.
        SmallVector<Value> o;
        for (int64_t n = 0; n < valueTiles; ++n)
          for (int64_t e = 0; e < 4; ++e)
            o.push_back(arith::MulFOp::create(b, loc,
                                              state[outputs + 4 * n + e],
                                              correction[layout.rowOf(e)]));
        for (int64_t k = 0; k < valueSteps; ++k) {
          SmallVector<Value> v = fragmentsB(b, loc, layout, products, lane,
                                            values, kValuePitch, valueTiles, k);
          o = mma::multiplyGrid(b, loc, products, WeightFormat::BF16,
                                probabilities[k], v, o);
        }
        std::copy(o.begin(), o.end(), next.begin() + outputs);
        // Nobody restages the chunk (or AMD's probabilities) before
        // everyone has read it.
        mlir::gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(b, loc, next);
      });

  for (int64_t r = 0; r < rowsPerLane; ++r) {
    Value sum =
        mma::rowReduce(b, loc, products, chunks.getResult(rowsPerLane + r),
                       /*max=*/false);
    Value inverse = arith::DivFOp::create(b, loc, f32(b, loc, 1.0), sum);
    Value token = arith::AddIOp::create(b, loc, firstToken, rows[r]);
    Value inside =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, token, tokens);
    scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
      for (int64_t n = 0; n < valueTiles; ++n)
        for (int64_t e = 0; e < 4; ++e) {
          if (layout.rowOf(e) != r)
            continue;
          Value channel = columnOf(b, loc, layout, lane, n, e);
          Value o = chunks.getResult(outputs + 4 * n + e);
          Value result = arith::MulFOp::create(b, loc, o, inverse);
          memref::StoreOp::create(b, loc, result, args.output,
                                  ValueRange{token, h, channel});
        }
      scf::YieldOp::create(b, loc);
    });
  }
}
} // namespace

SymbolRefAttr mma::attentionTiles(GPUKernelTarget &target,
                                  const AttendKernel &kernel,
                                  AttendOperands<Type> types, StringRef key) {
  bool amd = mma::usesMFMA(target);
  Layout layout{amd};
  if (!mma::hasMatrixUnits(target) || kernel.sinks || kernel.precise ||
      kernel.keyDim % 16 != 0 || kernel.valueDim % layout.columns() != 0)
    return {};
  // The emulation's grids: one A fragment by the chunk's key tiles or the
  // value tiles.
  int64_t products = std::max(kChunk, kernel.valueDim) / layout.columns();
  int64_t words = kChunk * keyPitch(kernel.keyDim) +
                  kernel.valueDim * kValuePitch +
                  (kernel.format.scaled ? 2 * kChunk : 0) +
                  (amd ? layout.queries() * kProbabilityPitch : 0) +
                  mma::emulationWords(target, kBlock, 1, products);
  if (4 * words >
      (target.getKind() == "rocm" ? kAMDWorkgroupBytes : kWorkgroupBytes))
    return {};
  int64_t queryHeads = kernel.queryHeads, tile = layout.queries();
  return target.get<AttendOperands>(
      key.str() + "_mma", types, kBlock,
      [queryHeads, tile](OpBuilder &b, Location loc,
                         AttendOperands<Value> args) -> Value {
        Value tokens = memref::DimOp::create(b, loc, args.query, 0);
        Value tiles =
            arith::CeilDivUIOp::create(b, loc, tokens, index(b, loc, tile));
        return arith::MulIOp::create(b, loc, tiles, index(b, loc, queryHeads));
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          AttendOperands<Value> args) {
        attentionTilesBody(b, loc, thread, args, kernel,
                           mma::warpProducts(target, thread, 1, products));
      });
}
