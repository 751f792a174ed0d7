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
/// Queries and keys per tile, threads (4 warps of 16 queries).
constexpr int64_t kTile = 64, kBlock = 128, kWarp = 32;
/// Keys a chunk, in bf16 pairs: the transposed values' pitch in words (36:
/// a warp's fragment loads hit 32 distinct banks).
constexpr int64_t kValuePitch = kTile / 2 + 4;
/// Static workgroup memory every CUDA device has.
constexpr int64_t kWorkgroupBytes = 48 * 1024;

/// Word pitch of the staged keys: Dk / 2 words a key rounded up to whole
/// 32-bank rows, plus 4 (rows 4 banks apart: conflict-free fragments).
int64_t keyPitch(int64_t keyDim) { return llvm::alignTo(keyDim / 2, 32) + 4; }

Value i32Of(OpBuilder &b, Location loc, Value f32Bits) {
  return arith::BitcastOp::create(b, loc, b.getI32Type(), f32Bits);
}

/// Where this lane works: its warp's first query in the tile, and its parts
/// g (lane / 4) and t (lane % 4).
struct Lane {
  Value warpRow, g, t;
};

/// The staged word (row, word) of a tile with `pitch` words a row.
Value stagedWord(OpBuilder &b, Location loc, Value tile, int64_t pitch,
                 Value row, Value word) {
  Value start = arith::MulIOp::create(b, loc, row, index(b, loc, pitch));
  Value at = arith::AddIOp::create(b, loc, start, word);
  Value bits = memref::LoadOp::create(b, loc, tile, at);
  return i32Of(b, loc, bits);
}

/// The B fragment of 8 n-major rows from `firstRow` (lane's row g), words
/// t and t + 4 of step `step`.
Value fragmentB(OpBuilder &b, Location loc, const Lane &lane, Value tile,
                int64_t pitch, int64_t firstRow, int64_t step) {
  Value row = arith::AddIOp::create(b, loc, lane.g, index(b, loc, firstRow));
  Value word = arith::AddIOp::create(b, loc, lane.t, index(b, loc, 8 * step));
  Value other = arith::AddIOp::create(b, loc, word, index(b, loc, 4));
  SmallVector<Value> words{stagedWord(b, loc, tile, pitch, row, word),
                           stagedWord(b, loc, tile, pitch, row, other)};
  auto type = VectorType::get({2}, b.getI32Type());
  return vector::FromElementsOp::create(b, loc, type, words);
}

/// Two f32 values as one word of bf16 bits (the first in the low half);
/// `portable`: without bf16 types (the emulation on Vulkan).
Value bf16Pair(OpBuilder &b, Location loc, Value low, Value high,
               bool portable) {
  Value lowBits = mma::bf16Bits(b, loc, low, portable);
  Value highBits = mma::bf16Bits(b, loc, high, portable);
  return mma::pack16(b, loc, lowBits, highBits);
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
  int64_t keyDim = kernel.keyDim, valueDim = kernel.valueDim;
  int64_t queryHeads = kernel.queryHeads;
  int64_t group = queryHeads / kernel.kvHeads;
  int64_t pitch = keyPitch(keyDim);
  int64_t keySteps = keyDim / 16, valueTiles = valueDim / 8;
  constexpr int64_t keyTiles = kTile / 8, valueSteps = kTile / 16;
  WeightFormat format = kernel.format.format;
  bool scaled = kernel.format.scaled;
  Value keys = thread.scratch(kTile * pitch);
  Value values = thread.scratch(valueDim * kValuePitch);
  Value keyScales, valueScales;
  if (scaled) {
    keyScales = thread.scratch(kTile);
    valueScales = thread.scratch(kTile);
  }
  Value one = index(b, loc, 1);
  bool portable = products.emulated();
  Value zeroWord = simt::i32(b, loc, 0);
  Value zeroF32 = f32(b, loc, 0.0);
  Value tokens = simt::leadingSize(b, loc, args.query);
  Value heads = index(b, loc, queryHeads);
  Value tileIndex = arith::DivUIOp::create(b, loc, thread.workgroup, heads);
  Value h = arith::RemUIOp::create(b, loc, thread.workgroup, heads);
  Value kvHead = arith::DivUIOp::create(b, loc, h, index(b, loc, group));
  Value firstToken =
      arith::MulIOp::create(b, loc, tileIndex, index(b, loc, kTile));
  Value tileEnd =
      arith::AddIOp::create(b, loc, firstToken, index(b, loc, kTile));
  Value lastToken = arith::SubIOp::create(
      b, loc, arith::MinUIOp::create(b, loc, tileEnd, tokens), one);
  Value tileStart = arith::AddIOp::create(b, loc, args.start, firstToken);
  // The keys of the whole tile: from the first query's first to the last
  // token's end (key index = position: no evicting ring here).
  Value first = visibleKeys(b, loc, tileStart, kernel.capacity, kernel.window,
                            std::nullopt)
                    .begin;
  Value lastPosition = arith::AddIOp::create(b, loc, args.start, lastToken);
  Value last = visibleKeys(b, loc, lastPosition, kernel.capacity, kernel.window,
                           std::nullopt)
                   .end;

  Lane lane;
  {
    Value warps = index(b, loc, kWarp);
    Value warp = arith::DivUIOp::create(b, loc, thread.thread, warps);
    Value inWarp = arith::RemUIOp::create(b, loc, thread.thread, warps);
    lane.warpRow = arith::MulIOp::create(b, loc, warp, index(b, loc, 16));
    lane.g = arith::DivUIOp::create(b, loc, inWarp, index(b, loc, 4));
    lane.t = arith::RemUIOp::create(b, loc, inWarp, index(b, loc, 4));
  }
  // This lane's two queries (tile rows g and g + 8 of its warp's 16).
  Value upper = arith::AddIOp::create(b, loc, lane.warpRow, lane.g);
  Value rows[2] = {upper,
                   arith::AddIOp::create(b, loc, upper, index(b, loc, 8))};

  // The queries' A fragments, once: step s, words (row, t) and (row, t + 4)
  // of rows g and g + 8; tokens past the prompt are zeros.
  SmallVector<Value> queries;
  for (int64_t s = 0; s < keySteps; ++s) {
    SmallVector<Value> words;
    for (int64_t half : {0, 1})
      for (int64_t row : {0, 1}) {
        Value token = arith::AddIOp::create(b, loc, firstToken, rows[row]);
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             token, tokens);
        Value pair = arith::MulIOp::create(b, loc, lane.t, index(b, loc, 2));
        Value d = arith::AddIOp::create(b, loc, pair,
                                        index(b, loc, 16 * s + 8 * half));
        words.push_back(
            selectIf(b, loc, inside, zeroWord, [&](OpBuilder &b, Location loc) {
              Value next = arith::AddIOp::create(b, loc, d, one);
              Value low = memref::LoadOp::create(b, loc, args.query,
                                                 ValueRange{token, h, d});
              Value high = memref::LoadOp::create(b, loc, args.query,
                                                  ValueRange{token, h, next});
              return bf16Pair(b, loc, low, high, portable);
            }));
      }
    auto type = VectorType::get({4}, b.getI32Type());
    queries.push_back(vector::FromElementsOp::create(b, loc, type, words));
  }

  // Key i of the chunk from `chunk` exists when chunk + i < last.
  auto existing = [&](OpBuilder &b, Location loc, Value chunk,
                      Value i) -> std::pair<Value, Value> {
    Value key = arith::AddIOp::create(b, loc, chunk, i);
    Value inside =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, key, last);
    return {key, inside};
  };
  // Stages the chunk: the keys' words (key, pair) with neighbouring threads
  // on neighbouring channels, the values' (channel, key pair) likewise
  // (coalesced reads), zeros past `last`.
  auto stage = [&](OpBuilder &b, Location loc, Value chunk) {
    int64_t keyWords = keyDim / 2;
    simt::strided(
        b, loc, thread, index(b, loc, kTile * keyWords),
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
                return bf16Pair(b, loc, low, high, portable);
              });
          Value start = arith::MulIOp::create(b, loc, i, index(b, loc, pitch));
          Value at = arith::AddIOp::create(b, loc, start, w);
          Value bits = arith::BitcastOp::create(b, loc, b.getF32Type(), word);
          memref::StoreOp::create(b, loc, bits, keys, at);
        });
    simt::strided(
        b, loc, thread, index(b, loc, valueDim * kTile / 2),
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
          Value word = bf16Pair(b, loc, halves[0], halves[1], portable);
          Value start =
              arith::MulIOp::create(b, loc, c, index(b, loc, kValuePitch));
          Value at = arith::AddIOp::create(b, loc, start, p);
          Value bits = arith::BitcastOp::create(b, loc, b.getF32Type(), word);
          memref::StoreOp::create(b, loc, bits, values, at);
        });
    if (!scaled)
      return;
    Value mine = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       thread.thread, index(b, loc, kTile));
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

  // State: the two rows' maxima and (this lane's part of the) sums, then
  // the outputs (valueTiles 16 x 8 tiles, 4 f32 each).
  // The running maximum starts at a finite lowest value: a masked key
  // (-inf) then gives exp(-inf - max) = 0, never exp(-inf + inf).
  SmallVector<Value> init{f32(b, loc, -1e30), f32(b, loc, -1e30), zeroF32,
                          zeroF32};
  init.append(valueTiles * 4, zeroF32);
  double negInf = -std::numeric_limits<double>::infinity();
  auto chunks = scf::ForOp::create(
      b, loc, first, last, index(b, loc, kTile), init,
      [&](OpBuilder &b, Location loc, Value chunk, ValueRange state) {
        stage(b, loc, chunk);
        mlir::gpu::BarrierOp::create(b, loc);
        // Scores: 8 tiles of 16 queries x 8 keys.
        SmallVector<Value> scores(keyTiles * 4, zeroF32);
        for (int64_t s = 0; s < keySteps; ++s)
          for (int64_t n = 0; n < keyTiles; ++n) {
            Value w = fragmentB(b, loc, lane, keys, pitch, 8 * n, s);
            ArrayRef<Value> c(scores.data() + 4 * n, 4);
            SmallVector<Value> d = mma::multiply(
                b, loc, products, WeightFormat::BF16, queries[s], w, c);
            std::copy(d.begin(), d.end(), scores.begin() + 4 * n);
          }
        // Scale and mask: element e of tile n is query rows[e / 2], key
        // 8n + 2t + e % 2 of the chunk.
        Value pair = arith::MulIOp::create(b, loc, lane.t, index(b, loc, 2));
        SmallVector<Value> columns;
        for (int64_t n = 0; n < keyTiles; ++n)
          for (int64_t e : {0, 1})
            columns.push_back(
                arith::AddIOp::create(b, loc, pair, index(b, loc, 8 * n + e)));
        Value rowMax[2] = {f32(b, loc, negInf), f32(b, loc, negInf)};
        for (int64_t n = 0; n < keyTiles; ++n)
          for (int64_t e = 0; e < 4; ++e) {
            Value column = columns[2 * n + e % 2];
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
            Value query = rows[e / 2];
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
            rowMax[e / 2] = arith::MaximumFOp::create(b, loc, rowMax[e / 2],
                                                      scores[4 * n + e]);
          }
        SmallVector<Value> next(state.begin(), state.end());
        Value correction[2];
        for (int64_t r : {0, 1}) {
          Value chunkMax =
              mma::quadReduce(b, loc, products, rowMax[r], /*max=*/true);
          Value max = arith::MaximumFOp::create(b, loc, state[r], chunkMax);
          Value drop = arith::SubFOp::create(b, loc, state[r], max);
          correction[r] = math::ExpOp::create(b, loc, drop);
          next[r] = max;
        }
        // Probabilities, this lane's part of each row's sum, and the A
        // fragments of P (times the value scales) for the 4 steps of 16
        // keys: step k's words are tiles 2k and 2k + 1, rows g then g + 8.
        Value sums[2] = {zeroF32, zeroF32};
        SmallVector<Value> weights(keyTiles * 4);
        for (int64_t n = 0; n < keyTiles; ++n)
          for (int64_t e = 0; e < 4; ++e) {
            Value shifted =
                arith::SubFOp::create(b, loc, scores[4 * n + e], next[e / 2]);
            Value p = math::ExpOp::create(b, loc, shifted);
            sums[e / 2] = arith::AddFOp::create(b, loc, sums[e / 2], p);
            if (scaled) {
              Value valueScale = memref::LoadOp::create(b, loc, valueScales,
                                                        columns[2 * n + e % 2]);
              p = arith::MulFOp::create(b, loc, p, valueScale);
            }
            weights[4 * n + e] = p;
          }
        for (int64_t r : {0, 1}) {
          Value kept =
              arith::MulFOp::create(b, loc, state[2 + r], correction[r]);
          next[2 + r] = arith::AddFOp::create(b, loc, kept, sums[r]);
        }
        SmallVector<Value> probabilities;
        for (int64_t k = 0; k < valueSteps; ++k) {
          SmallVector<Value> words;
          for (int64_t n : {2 * k, 2 * k + 1})
            for (int64_t r : {0, 1})
              words.push_back(bf16Pair(b, loc, weights[4 * n + 2 * r],
                                       weights[4 * n + 2 * r + 1], portable));
          auto type = VectorType::get({4}, b.getI32Type());
          probabilities.push_back(
              vector::FromElementsOp::create(b, loc, type, words));
        }
        // O = O * correction + P V.
        for (int64_t n = 0; n < valueTiles; ++n) {
          SmallVector<Value> o;
          for (int64_t e = 0; e < 4; ++e)
            o.push_back(arith::MulFOp::create(b, loc, state[4 + 4 * n + e],
                                              correction[e / 2]));
          for (int64_t k = 0; k < valueSteps; ++k) {
            Value v = fragmentB(b, loc, lane, values, kValuePitch, 8 * n, k);
            o = mma::multiply(b, loc, products, WeightFormat::BF16,
                              probabilities[k], v, o);
          }
          std::copy(o.begin(), o.end(), next.begin() + 4 + 4 * n);
        }
        // Nobody restages the chunk before everyone has read it.
        mlir::gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(b, loc, next);
      });

  Value inverse[2];
  for (int64_t r : {0, 1}) {
    Value sum = mma::quadReduce(b, loc, products, chunks.getResult(2 + r),
                                /*max=*/false);
    inverse[r] = arith::DivFOp::create(b, loc, f32(b, loc, 1.0), sum);
  }
  Value pair = arith::MulIOp::create(b, loc, lane.t, index(b, loc, 2));
  for (int64_t r : {0, 1}) {
    Value token = arith::AddIOp::create(b, loc, firstToken, rows[r]);
    Value inside =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, token, tokens);
    scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
      for (int64_t n = 0; n < valueTiles; ++n)
        for (int64_t e : {0, 1}) {
          Value channel =
              arith::AddIOp::create(b, loc, pair, index(b, loc, 8 * n + e));
          Value o = chunks.getResult(4 + 4 * n + 2 * r + e);
          Value result = arith::MulFOp::create(b, loc, o, inverse[r]);
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
  bool emulated = mma::emulatesMMA(target);
  if ((target.getKind() != "cuda" && !emulated) || kernel.sinks ||
      kernel.precise || kernel.keyDim % 16 != 0 || kernel.valueDim % 8 != 0)
    return {};
  int64_t words = kTile * keyPitch(kernel.keyDim) +
                  kernel.valueDim * kValuePitch +
                  (kernel.format.scaled ? 2 * kTile : 0);
  if (4 * words > kWorkgroupBytes)
    return {};
  int64_t queryHeads = kernel.queryHeads;
  return target.get<AttendOperands>(
      key.str() + "_mma", types, kBlock,
      [queryHeads](OpBuilder &b, Location loc,
                   AttendOperands<Value> args) -> Value {
        Value tokens = memref::DimOp::create(b, loc, args.query, 0);
        Value tiles =
            arith::CeilDivUIOp::create(b, loc, tokens, index(b, loc, kTile));
        return arith::MulIOp::create(b, loc, tiles, index(b, loc, queryHeads));
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          AttendOperands<Value> args) {
        attentionTilesBody(b, loc, thread, args, kernel,
                           mma::warpProducts(target, thread));
      });
}
