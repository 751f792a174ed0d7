//===- MoE.cpp - Mixture-of-Experts routing and experts on GPUs -------===//
//
// moe_route: one workgroup per token. Its threads compute the scores
// (softmax or sigmoid of the router logits) into workgroup memory; thread 0
// then does what the CPU kernel does serially (softmax sum, correction bias,
// group-limited selection, top-k with ties to the lowest index,
// renormalization, routed scaling): E is at most a few hundred.
//
// moe_experts, decode (one token): two launches through a scratch of the
// experts' activations (GPUKernelTarget::twoSteps), so that the rows of the
// token's experts spread over the GPU: a workgroup per (expert slot, 8
// intermediate rows) computes silu(x . gate) * (x . up), then a workgroup
// per 8 output channels sums w * (act . down) over the experts in the
// CPU's order, and the shared expert's.
//
// moe_experts, prefill: grouped products (GPUKernelTarget::sequence). One
// workgroup sorts the token x slot entries by expert; 32 x 32 tiles
// (simt::tileProducts) of (32 entries of one expert, 32 rows) compute
// silu(x . gate) * (x . up), then (32 entries, 32 hidden rows) their down
// projection, so each expert's weights are read once per 32 of its tokens
// (on cuda, rocm and their emulations, experts in bf16 or in 8-bit and
// 4-bit codes with block scales of whole tiles: on the matrix units,
// mma::tileProducts, the activations rounded to bf16 or, with --precise,
// split in two, the codes' block scales applied to each stage's sums;
// other formats and targets: f32 SIMT tiles);
// the shared expert goes the same way over all tokens; a workgroup per token
// sums w * y over its experts in the CPU's order (slot order for `sparse`,
// expert order for `dense` and `grouped`), then the shared expert's. Dense
// dispatch skips the experts a token did not select: the CPU adds 0 * their
// output, which changes nothing for finite outputs.
//
// Decode's row products are computed by lanes of 32 threads (a warp reads
// 32 consecutive weights of a row), 8 rows at a time per 256-thread
// workgroup. (Lanes of 32 once gave wrong results on lavapipe for
// intermediate sizes >= 4000: the zero-trip loop results that
// xfmr-guard-empty-loops now handles; lanes of 8 were the workaround.)
//
// counts (i64 on the host) is read as pairs of i32 (low, high: little
// endian) so that kernels need no Int64 (Vulkan): workgroup 0's threads
// each count the rows of their experts and add with a carry.
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "llvm/Support/MathExtras.h"

#include <cstdio>
#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {

Value loadIndex(OpBuilder &b, Location loc, Value memref, ValueRange at) {
  Value raw = memref::LoadOp::create(b, loc, memref, at);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), raw);
}

/// 1 where `bit` (i1) is set, else 0, as an index (SPIR-V has no
/// arith.index_castui).
Value asCount(OpBuilder &b, Location loc, Value bit) {
  Value one = index(b, loc, 1);
  Value none = index(b, loc, 0);
  return arith::SelectOp::create(b, loc, bit, one, none);
}

/// scf.if (condition) { body } without results.
void ifThen(OpBuilder &b, Location loc, Value condition,
            function_ref<void(OpBuilder &, Location)> body) {
  scf::IfOp::create(b, loc, condition, [&](OpBuilder &b, Location loc) {
    body(b, loc);
    scf::YieldOp::create(b, loc);
  });
}

/// The index of the largest of buffer[0..end) (first one on ties), or `end`
/// if all are -inf.
Value argmax(OpBuilder &b, Location loc, Value buffer, int64_t count) {
  Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());
  Value zero = index(b, loc, 0);
  Value end = index(b, loc, count);
  Value one = index(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, zero, end, one, ValueRange{negInf, end},
      [&](OpBuilder &b, Location loc, Value i, ValueRange best) {
        Value value = memref::LoadOp::create(b, loc, buffer, i);
        Value better = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                             value, best[0]);
        Value bestValue =
            arith::SelectOp::create(b, loc, better, value, best[0]);
        Value bestIndex = arith::SelectOp::create(b, loc, better, i, best[1]);
        scf::YieldOp::create(b, loc, ValueRange{bestValue, bestIndex});
      });
  return loop.getResult(1);
}

} // namespace

static SymbolRefAttr gpuMoERoute(GPUKernelTarget &target,
                                 const MoERouteKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  int64_t experts = kernel.experts, topK = kernel.topK;
  int64_t groups = kernel.groups, keptGroups = kernel.keptGroups;
  int64_t perGroup = experts / groups;
  bool sigmoid = kernel.sigmoid, hasBias = kernel.bias;
  bool normalize = kernel.normalize;
  double factor = kernel.factor;
  char factorText[32];
  std::snprintf(factorText, sizeof(factorText), "%a", factor);
  std::string key = "moe_route_" + std::to_string(experts) + "_k" +
                    std::to_string(topK) + "_g" + std::to_string(groups) +
                    "x" + std::to_string(keptGroups) +
                    (sigmoid ? "_sigmoid" : "_softmax") +
                    (hasBias ? "_bias" : "") + (normalize ? "_norm" : "") +
                    "_" + factorText;
  MoERouteOperands<Type> types;
  types.logits = MemRefType::get({ShapedType::kDynamic, experts}, f32Type);
  if (hasBias)
    types.bias = MemRefType::get({experts}, f32Type);
  types.weights = MemRefType::get({ShapedType::kDynamic, topK}, f32Type);
  types.indices = MemRefType::get({ShapedType::kDynamic, topK},
                                  IntegerType::get(context, 32));
  constexpr int64_t block = 64;
  return target.get<MoERouteOperands>(
      key, types, block,
      [](OpBuilder &b, Location loc, MoERouteOperands<Value> args) -> Value {
        return memref::DimOp::create(b, loc, args.logits, 0);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          MoERouteOperands<Value> args) {
        Value logits = args.logits, bias = args.bias;
        Value weightsOut = args.weights, indicesOut = args.indices;
        Value t = thread.workgroup;
        Value reduction = thread.scratch(block);
        Value scores = thread.scratch(experts);
        Value rank = thread.scratch(experts);
        Value groupScore = groups > 1 ? thread.scratch(groups) : Value();
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value expertCount = index(b, loc, experts);
        Value step = index(b, loc, block);
        Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());

        // Scores, one expert per thread. Softmax subtracts the row maximum.
        Value rowMax;
        if (!sigmoid) {
          Value mine = simt::accumulate(
              b, loc, thread.thread, expertCount, step, negInf,
              [&](OpBuilder &b, Location loc, Value e, Value acc) -> Value {
                Value l =
                    memref::LoadOp::create(b, loc, logits, ValueRange{t, e});
                return arith::MaximumFOp::create(b, loc, acc, l);
              });
          rowMax = simt::reduce(b, loc, thread, reduction, mine,
                                simt::Reduction::Max);
        }
        simt::strided(b, loc, thread, expertCount,
                      [&](OpBuilder &b, Location loc, Value e) {
          Value l = memref::LoadOp::create(b, loc, logits, ValueRange{t, e});
          Value s;
          if (sigmoid) {
            // 1 / (1 + exp(-l))
            Value unit = f32(b, loc, 1.0);
            Value negated = arith::NegFOp::create(b, loc, l);
            Value exp = math::ExpOp::create(b, loc, negated);
            Value denominator = arith::AddFOp::create(b, loc, unit, exp);
            s = arith::DivFOp::create(b, loc, unit, denominator);
          } else {
            Value shifted = arith::SubFOp::create(b, loc, l, rowMax);
            s = math::ExpOp::create(b, loc, shifted);
          }
          memref::StoreOp::create(b, loc, s, scores, e);
        });
        gpu::BarrierOp::create(b, loc);

        // The rest is serial, as on the CPU.
        simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
          Value total;
          if (!sigmoid) {
            Value start = f32(b, loc, 0.0);
            total = simt::accumulate(
                b, loc, zero, expertCount, one, start,
                [&](OpBuilder &b, Location loc, Value e, Value acc) -> Value {
                  Value s = memref::LoadOp::create(b, loc, scores, e);
                  return arith::AddFOp::create(b, loc, acc, s);
                });
          }
          simt::forLoop(b, loc, zero, expertCount, one,
                        [&](OpBuilder &b, Location loc, Value e) {
            Value s = memref::LoadOp::create(b, loc, scores, e);
            if (!sigmoid) {
              s = arith::DivFOp::create(b, loc, s, total);
              memref::StoreOp::create(b, loc, s, scores, e);
            }
            // Selection ranks biased scores; weights use unbiased ones.
            Value r = s;
            if (hasBias) {
              Value correction = memref::LoadOp::create(b, loc, bias, e);
              r = arith::AddFOp::create(b, loc, s, correction);
            }
            memref::StoreOp::create(b, loc, r, rank, e);
          });
          if (groups > 1) {
            // A group ranks by the sum of its two best biased scores.
            Value groupCount = index(b, loc, groups);
            Value groupSize = index(b, loc, perGroup);
            simt::forLoop(b, loc, zero, groupCount, one,
                          [&](OpBuilder &b, Location loc, Value g) {
              Value begin = arith::MulIOp::create(b, loc, g, groupSize);
              Value end = arith::AddIOp::create(b, loc, begin, groupSize);
              auto loop = scf::ForOp::create(
                  b, loc, begin, end, one, ValueRange{negInf, negInf},
                  [&](OpBuilder &b, Location loc, Value e, ValueRange best) {
                    Value r = memref::LoadOp::create(b, loc, rank, e);
                    Value above1 = arith::CmpFOp::create(
                        b, loc, arith::CmpFPredicate::OGT, r, best[0]);
                    Value above2 = arith::CmpFOp::create(
                        b, loc, arith::CmpFPredicate::OGT, r, best[1]);
                    Value first =
                        arith::SelectOp::create(b, loc, above1, r, best[0]);
                    Value runnerUp =
                        arith::SelectOp::create(b, loc, above2, r, best[1]);
                    Value second = arith::SelectOp::create(b, loc, above1,
                                                           best[0], runnerUp);
                    scf::YieldOp::create(b, loc, ValueRange{first, second});
                  });
              Value sum = arith::AddFOp::create(b, loc, loop.getResult(0),
                                                loop.getResult(1));
              memref::StoreOp::create(b, loc, sum, groupScore, g);
            });
            // Keep the best groups: mark them +inf one by one, then drop the
            // experts of every group not marked.
            Value inf = f32(b, loc, std::numeric_limits<double>::infinity());
            Value keptCount = index(b, loc, keptGroups);
            simt::forLoop(b, loc, zero, keptCount, one,
                          [&](OpBuilder &b, Location loc, Value) {
              // Already kept groups hold +inf; pick the best of the others.
              auto loop = scf::ForOp::create(
                  b, loc, zero, groupCount, one,
                  ValueRange{negInf, groupCount},
                  [&](OpBuilder &b, Location loc, Value g, ValueRange best) {
                    Value v = memref::LoadOp::create(b, loc, groupScore, g);
                    Value candidate = arith::CmpFOp::create(
                        b, loc, arith::CmpFPredicate::OLT, v, inf);
                    Value above = arith::CmpFOp::create(
                        b, loc, arith::CmpFPredicate::OGT, v, best[0]);
                    Value better =
                        arith::AndIOp::create(b, loc, candidate, above);
                    Value bestValue =
                        arith::SelectOp::create(b, loc, better, v, best[0]);
                    Value bestGroup =
                        arith::SelectOp::create(b, loc, better, g, best[1]);
                    scf::YieldOp::create(b, loc,
                                         ValueRange{bestValue, bestGroup});
                  });
              memref::StoreOp::create(b, loc, inf, groupScore,
                                      loop.getResult(1));
            });
            simt::forLoop(b, loc, zero, expertCount, one,
                          [&](OpBuilder &b, Location loc, Value e) {
              Value g = arith::DivUIOp::create(b, loc, e, groupSize);
              Value score = memref::LoadOp::create(b, loc, groupScore, g);
              Value kept = arith::CmpFOp::create(
                  b, loc, arith::CmpFPredicate::OEQ, score, inf);
              Value r = memref::LoadOp::create(b, loc, rank, e);
              Value keptRank = arith::SelectOp::create(b, loc, kept, r, negInf);
              memref::StoreOp::create(b, loc, keptRank, rank, e);
            });
          }
          // Top-k, ties to the lowest index; chosen experts leave the race.
          Value pickEnd = index(b, loc, topK);
          Value noWeight = f32(b, loc, 0.0);
          Value chosen = simt::accumulate(
              b, loc, zero, pickEnd, one, noWeight,
              [&](OpBuilder &b, Location loc, Value j, Value acc) -> Value {
                Value e = argmax(b, loc, rank, experts);
                memref::StoreOp::create(b, loc, negInf, rank, e);
                Value w = memref::LoadOp::create(b, loc, scores, e);
                memref::StoreOp::create(b, loc, w, weightsOut,
                                        ValueRange{t, j});
                Value e32 =
                    arith::IndexCastOp::create(b, loc, b.getI32Type(), e);
                memref::StoreOp::create(b, loc, e32, indicesOut,
                                        ValueRange{t, j});
                return arith::AddFOp::create(b, loc, acc, w);
              });
          Value divisor;
          if (normalize) {
            Value tiny = f32(b, loc, 1e-20);
            divisor = arith::AddFOp::create(b, loc, chosen, tiny);
          } else {
            divisor = f32(b, loc, 1.0);
          }
          Value scale = f32(b, loc, factor);
          simt::forLoop(b, loc, zero, pickEnd, one,
                        [&](OpBuilder &b, Location loc, Value j) {
            Value w =
                memref::LoadOp::create(b, loc, weightsOut, ValueRange{t, j});
            Value normalized = arith::DivFOp::create(b, loc, w, divisor);
            Value scaled = arith::MulFOp::create(b, loc, normalized, scale);
            memref::StoreOp::create(b, loc, scaled, weightsOut,
                                    ValueRange{t, j});
          });
        });
      });
}

namespace {

/// Threads per workgroup of moe_experts, and threads per row product.
constexpr int64_t kExpertBlock = 256;
constexpr int64_t kLanes = 32;
constexpr int64_t kRowsAtOnce = kExpertBlock / kLanes;
/// Prefill's grouped products: entries per tile (simt::tileProducts' 32 x
/// 32 tiles) and threads per workgroup.
constexpr int64_t kEntryTile = 32;
constexpr int64_t kTileThreads = 64;
/// One workgroup computes sums over rows [0, rows) of `terms` (each row a
/// dot product over [0, length)): lanes of kLanes threads take a row each,
/// kRowsAtOnce rows at a time, and stride over its columns; `product(row,
/// column)` gives each term's value (terms.size() sums side by side);
/// `finish(row, sums)` runs on one thread per row, the thread with lane 0
/// of row % kRowsAtOnce. Every thread must call it (barriers).
void rowSums(OpBuilder &b, Location loc, const GPUThread &thread,
             Value partials, int64_t rowBound, Value rows, Value length,
             int64_t terms,
             function_ref<SmallVector<Value>(OpBuilder &, Location, Value,
                                             Value)>
                 product,
             function_ref<void(OpBuilder &, Location, Value, ValueRange)>
                 finish) {
  Value lanes = index(b, loc, kLanes);
  Value lane = arith::RemUIOp::create(b, loc, thread.thread, lanes);
  Value slot = arith::DivUIOp::create(b, loc, thread.thread, lanes);
  Value zero = index(b, loc, 0);
  Value atOnce = index(b, loc, kRowsAtOnce);
  Value firstLane = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                          lane, zero);
  Value bound = index(b, loc, rowBound);
  simt::forLoop(b, loc, zero, bound, atOnce,
                [&](OpBuilder &b, Location loc, Value base) {
    Value row = arith::AddIOp::create(b, loc, base, slot);
    Value valid =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, row, rows);
    Value end = arith::SelectOp::create(b, loc, valid, length, zero);
    SmallVector<Value> init;
    for (int64_t i = 0; i < terms; ++i)
      init.push_back(f32(b, loc, 0.0));
    auto loop = scf::ForOp::create(
        b, loc, lane, end, lanes, init,
        [&](OpBuilder &b, Location loc, Value k, ValueRange acc) {
          SmallVector<Value> values = product(b, loc, row, k);
          SmallVector<Value> next;
          for (int64_t i = 0; i < terms; ++i)
            next.push_back(arith::AddFOp::create(b, loc, acc[i], values[i]));
          scf::YieldOp::create(b, loc, next);
        });
    for (int64_t i = 0; i < terms; ++i) {
      Value offset = index(b, loc, i * kExpertBlock);
      Value at = arith::AddIOp::create(b, loc, offset, thread.thread);
      memref::StoreOp::create(b, loc, loop.getResult(i), partials, at);
    }
    gpu::BarrierOp::create(b, loc);
    Value finisher = arith::AndIOp::create(b, loc, firstLane, valid);
    ifThen(b, loc, finisher, [&](OpBuilder &b, Location loc) {
      SmallVector<Value> sums;
      for (int64_t i = 0; i < terms; ++i) {
        Value offset = index(b, loc, i * kExpertBlock);
        Value first = arith::AddIOp::create(b, loc, offset, thread.thread);
        Value last = arith::AddIOp::create(b, loc, first, lanes);
        Value one = index(b, loc, 1);
        Value start = f32(b, loc, 0.0);
        sums.push_back(simt::accumulate(
            b, loc, first, last, one, start,
            [&](OpBuilder &b, Location loc, Value p, Value acc) -> Value {
              Value v = memref::LoadOp::create(b, loc, partials, p);
              return arith::AddFOp::create(b, loc, acc, v);
            }));
      }
      finish(b, loc, row, sums);
    });
    gpu::BarrierOp::create(b, loc);
  });
}

/// The weights of one SwiGLU expert as the kernel sees them.
struct ExpertWeights {
  Value gate, up, down, gateScale, upScale, downScale;
  int64_t inter;
  WeightOperand weight;
  /// Routed experts index stacks [E, ...] by expert; the shared one not.
  bool stacked;
  std::optional<int64_t> activationGroup;
  /// Prefill multiplies E4M3 codes on the FP8 units (codesOnFP8Units): the
  /// prefill kernels see gate, up and down as 16 codes a vector<4xi32>.
  bool fp8Units = false;
  /// Prefill's matrix units read bf16 weights as they are, 8 a
  /// vector<4xi32> (packedBF16).
  bool packedBF16 = false;
};

/// The block scale of w[prefix..., row, column] in `scale`.
Value blockScaleOf(OpBuilder &b, Location loc, const ExpertWeights &m,
                   Value scale, Value e, Value row, Value column) {
  auto [rows, cols] = *m.weight.blockScale;
  Value scaleRow = arith::DivUIOp::create(b, loc, row, index(b, loc, rows));
  Value scaleColumn =
      arith::DivUIOp::create(b, loc, column, index(b, loc, cols));
  SmallVector<Value> scaleAt;
  if (m.stacked)
    scaleAt.push_back(e);
  scaleAt.push_back(scaleRow);
  scaleAt.push_back(scaleColumn);
  return memref::LoadOp::create(b, loc, scale, scaleAt);
}

/// w[prefix..., row, column] as f32, times its block scale if any (unless
/// `codes`: the stored value only).
Value loadWeight(OpBuilder &b, Location loc, const ExpertWeights &m, Value w,
                 Value scale, Value e, Value row, Value column,
                 bool codes = false) {
  SmallVector<Value> at;
  if (m.stacked)
    at.push_back(e);
  at.push_back(row);
  at.push_back(column);
  Value value = simt::loadF32(b, loc, w, at, m.weight.format);
  if (!m.weight.blockScale || codes)
    return value;
  Value s = blockScaleOf(b, loc, m, scale, e, row, column);
  return arith::MulFOp::create(b, loc, value, s);
}

/// Adds each expert's rows among `tokens` x `topK` routing `indices` to the
/// i64 `counts` (read as (low, high) i32 pairs, added with a carry): a
/// thread per expert of the workgroup that calls it.
void countRoutedRows(OpBuilder &b, Location loc, const GPUThread &thread,
                     Value counts, Value indices, Value tokens, int64_t experts,
                     int64_t topK) {
  Type i32Type = b.getI32Type();
  Value zero = index(b, loc, 0), one = index(b, loc, 1);
  Value k = index(b, loc, topK);
  Value expertCount = index(b, loc, experts);
  simt::strided(
      b, loc, thread, expertCount, [&](OpBuilder &b, Location loc, Value e) {
        Value e32 = arith::IndexCastOp::create(b, loc, i32Type, e);
        Value none = simt::i32(b, loc, 0);
        auto count = scf::ForOp::create(
            b, loc, zero, tokens, one, ValueRange{none},
            [&](OpBuilder &b, Location loc, Value row, ValueRange acc) {
              auto inner = scf::ForOp::create(
                  b, loc, zero, k, one, acc,
                  [&](OpBuilder &b, Location loc, Value j, ValueRange acc) {
                    Value chosen = memref::LoadOp::create(b, loc, indices,
                                                          ValueRange{row, j});
                    Value match = arith::CmpIOp::create(
                        b, loc, arith::CmpIPredicate::eq, chosen, e32);
                    Value bit = arith::ExtUIOp::create(b, loc, i32Type, match);
                    Value sum = arith::AddIOp::create(b, loc, acc[0], bit);
                    scf::YieldOp::create(b, loc, ValueRange{sum});
                  });
              scf::YieldOp::create(b, loc, inner.getResults());
            });
        Value two = index(b, loc, 2);
        Value lowAt = arith::MulIOp::create(b, loc, e, two);
        Value highAt = arith::AddIOp::create(b, loc, lowAt, one);
        Value low = memref::LoadOp::create(b, loc, counts, lowAt);
        Value high = memref::LoadOp::create(b, loc, counts, highAt);
        Value newLow = arith::AddIOp::create(b, loc, low, count.getResult(0));
        Value wrapped = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                              newLow, low);
        Value carry = arith::ExtUIOp::create(b, loc, i32Type, wrapped);
        Value newHigh = arith::AddIOp::create(b, loc, high, carry);
        memref::StoreOp::create(b, loc, newLow, counts, lowAt);
        memref::StoreOp::create(b, loc, newHigh, counts, highAt);
      });
}

/// `body(slot, expert, weight)` for token t's experts in the order the CPU
/// sums them: slot order for `sparse`; expert order for `dense` and
/// `grouped` (the j-th round takes the smallest index above the previous
/// round's).
using RoutedExpertBody =
    function_ref<void(OpBuilder &, Location, Value slot, Value e, Value w)>;
void forEachRoutedExpert(OpBuilder &b, Location loc, MoEDispatch dispatch,
                         Value indices, Value weights, Value t, int64_t topK,
                         int64_t experts, RoutedExpertBody body) {
  Value zero = index(b, loc, 0), one = index(b, loc, 1);
  Value k = index(b, loc, topK);
  if (dispatch == MoEDispatch::sparse) {
    simt::forLoop(
        b, loc, zero, k, one, [&](OpBuilder &b, Location loc, Value j) {
          Value e = loadIndex(b, loc, indices, {t, j});
          Value w = memref::LoadOp::create(b, loc, weights, ValueRange{t, j});
          body(b, loc, j, e, w);
        });
    return;
  }
  Value before = simt::i32(b, loc, -1);
  scf::ForOp::create(
      b, loc, zero, k, one, ValueRange{before},
      [&](OpBuilder &b, Location loc, Value, ValueRange previous) {
        Value beyond = simt::i32(b, loc, experts);
        Value noWeight = f32(b, loc, 0.0);
        auto pick = scf::ForOp::create(
            b, loc, zero, k, one, ValueRange{beyond, noWeight, zero},
            [&](OpBuilder &b, Location loc, Value s, ValueRange best) {
              Value e =
                  memref::LoadOp::create(b, loc, indices, ValueRange{t, s});
              Value w =
                  memref::LoadOp::create(b, loc, weights, ValueRange{t, s});
              Value after = arith::CmpIOp::create(
                  b, loc, arith::CmpIPredicate::sgt, e, previous[0]);
              Value below = arith::CmpIOp::create(
                  b, loc, arith::CmpIPredicate::slt, e, best[0]);
              Value better = arith::AndIOp::create(b, loc, after, below);
              Value bestExpert =
                  arith::SelectOp::create(b, loc, better, e, best[0]);
              Value bestWeight =
                  arith::SelectOp::create(b, loc, better, w, best[1]);
              Value bestSlot =
                  arith::SelectOp::create(b, loc, better, s, best[2]);
              scf::YieldOp::create(
                  b, loc, ValueRange{bestExpert, bestWeight, bestSlot});
            });
        Value e32 = pick.getResult(0);
        Value e = arith::IndexCastOp::create(b, loc, b.getIndexType(), e32);
        body(b, loc, pick.getResult(2), e, pick.getResult(1));
        scf::YieldOp::create(b, loc, ValueRange{e32});
      });
}

} // namespace

/// Whether prefill's grouped products of experts with `weight` run on the
/// target's matrix units (MatrixTileProducts.cpp rounds the activations to
/// bf16, or splits them in two with --precise): where its values are exact
/// in bf16 (bf16), or its codes are (8-bit and 4-bit formats) and its block
/// scales hold whole tiles of 32 rows and stages of K; else in f32 SIMT
/// tiles.
static bool groupedOnMatrixUnits(const GPUKernelTarget &target,
                                 const WeightOperand &weight) {
  if (!mma::hasMatrixUnits(target))
    return false;
  if (weight.format == WeightFormat::BF16 && !weight.blockScale)
    return true;
  bool exactCodes = isFP8(weight.format) || weight.format == WeightFormat::I8 ||
                    weight.format == WeightFormat::I4;
  if (!exactCodes || !weight.blockScale)
    return false;
  auto [rows, cols] = *weight.blockScale;
  return rows % kEntryTile == 0 && cols % mma::tileProductsStage() == 0;
}

/// Whether the grouped products of experts with `weight`, `inter` wide, can
/// multiply E4M3 codes on the target's FP8 units, given that their inputs
/// are quantized per token in groups of 128 (codeTileProductsStage()):
/// E4M3FN weights with block scales of whole 32-row tiles and 128 columns,
/// and widths of whole stages.
static bool codesOnFP8Units(const GPUKernelTarget &target,
                            const WeightOperand &weight, int64_t inter,
                            int64_t hidden) {
  int64_t stage = mma::codeTileProductsStage();
  if (!mma::hasFP8Units(target) || weight.format != WeightFormat::F8E4M3FN ||
      !weight.blockScale)
    return false;
  auto [rows, cols] = *weight.blockScale;
  return rows % kEntryTile == 0 && cols == stage && inter % stage == 0 &&
         hidden % stage == 0;
}

/// Whether prefill's grouped products of bf16 experts `inter` wide read
/// their rows 16 bytes (8 values) a load, as the bf16 pairs the matrix units
/// multiply.
static bool packedBF16(const GPUKernelTarget &target,
                       const WeightOperand &weight, int64_t inter,
                       int64_t hidden) {
  return groupedOnMatrixUnits(target, weight) &&
         weight.format == WeightFormat::BF16 && !weight.blockScale &&
         inter % 8 == 0 && hidden % 8 == 0;
}

bool xfmr::kernels::expertsOnFP8Units(const GPUKernelTarget &target,
                                      const MoEExpertsKernel &experts) {
  int64_t stage = mma::codeTileProductsStage();
  return experts.fp8InputGroup == stage && experts.activationGroup == stage &&
         codesOnFP8Units(target, experts.weight, experts.inter, experts.hidden);
}

static SymbolRefAttr gpuMoEExperts(GPUKernelTarget &target,
                                   const MoEExpertsKernel &kernel) {
  int64_t experts = kernel.experts;
  int64_t inter = kernel.inter;
  int64_t hidden = kernel.hidden;
  int64_t topK = kernel.topK;
  const WeightOperand weight = kernel.weight;
  MoEDispatch dispatch = kernel.dispatch;
  std::optional<SharedExpert> shared = kernel.shared;
  std::optional<int64_t> activationGroup = kernel.activationGroup;
  MLIRContext *context = target.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  Type i32Type = IntegerType::get(context, 32);
  auto tokensBy = [&](int64_t n, Type element) {
    return MemRefType::get({ShapedType::kDynamic, n}, element);
  };
  MoEExpertsOperands<Type> types;
  types.input = tokensBy(hidden, f32Type);
  types.weights = tokensBy(topK, f32Type);
  types.indices = tokensBy(topK, i32Type);
  types.gate = simt::buffer(context, {experts, inter, hidden}, weight.format);
  types.up = simt::buffer(context, {experts, inter, hidden}, weight.format);
  types.down = simt::buffer(context, {experts, hidden, inter}, weight.format);
  if (weight.blockScale) {
    auto [rows, cols] = *weight.blockScale;
    types.gateScale = types.upScale = MemRefType::get(
        {experts, llvm::divideCeilSigned(inter, rows),
         llvm::divideCeilSigned(hidden, cols)},
        f32Type);
    types.downScale = MemRefType::get(
        {experts, llvm::divideCeilSigned(hidden, rows),
         llvm::divideCeilSigned(inter, cols)},
        f32Type);
  }
  std::string key = "moe_experts_" + std::to_string(experts) + "x" +
                    std::to_string(inter) + "x" + std::to_string(hidden) +
                    "_k" + std::to_string(topK) + "_" + weight.key() + "_" +
                    stringifyMoEDispatch(dispatch).str();
  if (activationGroup)
    key += "_act" + std::to_string(*activationGroup);
  // Prefill's products on the FP8 units multiply the input's codes, which
  // the quantization before the experts left (16 codes a vector<4xi32>), and
  // their SwiGLU outputs' codes.
  int64_t codeStage = mma::codeTileProductsStage();
  bool fp8Units = kernel.fp8InputCodes;
  assert((!fp8Units || expertsOnFP8Units(target, kernel)) &&
         "codes only where the FP8 units take them");
  bool sharedFP8Units =
      fp8Units && shared &&
      codesOnFP8Units(target, shared->weight, shared->inter, hidden);
  bool routedBF16 = packedBF16(target, weight, inter, hidden);
  bool sharedBF16 =
      shared && packedBF16(target, shared->weight, shared->inter, hidden);
  // Codes are read 16 at a time (16-byte loads).
  auto codes16 = VectorType::get({4}, i32Type);
  if (fp8Units) {
    types.inputCodes = tokensBy(hidden / 16, codes16);
    types.inputScale = tokensBy(hidden / codeStage, f32Type);
    key += "_e4m3";
  }
  // Prefill's products on the matrix units (routed or shared experts):
  // --precise splits their activations in two.
  if (groupedOnMatrixUnits(target, weight) ||
      (shared && groupedOnMatrixUnits(target, shared->weight)))
    key += kernel.precise ? "_mma_x2" : "_mma";
  std::optional<int64_t> sharedGroup;
  if (shared) {
    WeightFormat format = shared->weight.format;
    int64_t s = shared->inter;
    types.sharedGate = simt::buffer(context, {s, hidden}, format);
    types.sharedUp = simt::buffer(context, {s, hidden}, format);
    types.sharedDown = simt::buffer(context, {hidden, s}, format);
    if (auto block = shared->weight.blockScale) {
      auto [rows, cols] = *block;
      types.sharedGateScale = types.sharedUpScale = MemRefType::get(
          {llvm::divideCeilSigned(s, rows),
           llvm::divideCeilSigned(hidden, cols)},
          f32Type);
      types.sharedDownScale = MemRefType::get(
          {llvm::divideCeilSigned(hidden, rows),
           llvm::divideCeilSigned(s, cols)},
          f32Type);
    }
    if (isFP8(format) || format == WeightFormat::I8)
      sharedGroup = activationGroup;
    key += "_shared" + std::to_string(s) + "_" + shared->weight.key();
  }
  // The i64 counters as (low, high) i32 pairs: the host passes the i64
  // buffer's address, the kernel reads 4-byte elements.
  types.counts = MemRefType::get({2 * experts}, i32Type);
  types.output = tokensBy(hidden, f32Type);
  // Decode (one token): the experts' rows spread over the GPU in two
  // launches through a scratch of activations [topK x inter + shared]:
  //   1. a workgroup per (slot, kRowsAtOnce rows of the intermediate
  //      dimension): act[slot, i] = silu(x . gate[e, i]) * (x . up[e, i]),
  //      the shared expert as slot topK;
  //   2. a workgroup per kRowsAtOnce output channels: out[n] = sum over the
  //      experts (in the CPU's order) of w * (act . down[e, n]), then the
  //      shared expert's; FP8 activations are quantized per group on the
  //      way (each workgroup finds the groups' scales first).
  int64_t sharedInter = shared ? shared->inter : 0;
  int64_t slots = topK + (shared ? 1 : 0);
  int64_t tilesPerSlot =
      llvm::divideCeil(std::max(inter, sharedInter), kRowsAtOnce);
  auto scratchType = MemRefType::get({topK * inter + sharedInter}, f32Type);
  SmallVector<Type> operandTypes = presentOperands(types);
  SmallVector<Type> upTypes(operandTypes);
  upTypes.push_back(scratchType);
  auto expertsOf = [&](MoEExpertsOperands<Value> args) {
    return ExpertWeights{args.gate,       args.up,      args.down,
                         args.gateScale,  args.upScale, args.downScale,
                         inter,           weight,       true,
                         activationGroup, fp8Units,     routedBF16};
  };
  auto sharedOf = [&](MoEExpertsOperands<Value> args) {
    return ExpertWeights{
        args.sharedGate,      args.sharedUp,      args.sharedDown,
        args.sharedGateScale, args.sharedUpScale, args.sharedDownScale,
        sharedInter,          shared->weight,     false,
        sharedGroup,          sharedFP8Units,     sharedBF16};
  };
  SymbolRefAttr up = target.get(
      key + "_decode_up", upTypes, kExpertBlock,
      [slots, tilesPerSlot](OpBuilder &b, Location loc, ValueRange) -> Value {
        return index(b, loc, slots * tilesPerSlot);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        MoEExpertsOperands<Value> args =
            bindOperands(types, operands.drop_back());
        Value act = operands.back();
        Value partials = thread.scratch(2 * kExpertBlock);
        Value zero = index(b, loc, 0);
        Value tiles = index(b, loc, tilesPerSlot);
        Value slot = arith::DivUIOp::create(b, loc, thread.workgroup, tiles);
        Value tile = arith::RemUIOp::create(b, loc, thread.workgroup, tiles);
        Value firstRow =
            arith::MulIOp::create(b, loc, tile, index(b, loc, kRowsAtOnce));
        Value firstGroup = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::eq, thread.workgroup, zero);
        ifThen(b, loc, firstGroup, [&](OpBuilder &b, Location loc) {
          countRoutedRows(b, loc, thread, args.counts, args.indices,
                          index(b, loc, 1), experts, topK);
        });
        // Rows [firstRow, firstRow + kRowsAtOnce) of expert e's (null:
        // the shared expert's) activations, stored from act[base].
        auto activations = [&](OpBuilder &b, Location loc,
                               const ExpertWeights &m, Value e, Value base) {
          Value rowCount = index(b, loc, m.inter);
          Value inside = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, firstRow, rowCount);
          ifThen(b, loc, inside, [&](OpBuilder &b, Location loc) {
            Value left = arith::SubIOp::create(b, loc, rowCount, firstRow);
            Value rows = arith::MinUIOp::create(b, loc, left,
                                                index(b, loc, kRowsAtOnce));
            rowSums(
                b, loc, thread, partials, kRowsAtOnce, rows,
                index(b, loc, hidden), 2,
                [&](OpBuilder &b, Location loc, Value r,
                    Value k) -> SmallVector<Value> {
                  Value i = arith::AddIOp::create(b, loc, firstRow, r);
                  Value xk = memref::LoadOp::create(b, loc, args.input,
                                                    ValueRange{zero, k});
                  Value g = loadWeight(b, loc, m, m.gate, m.gateScale, e, i, k);
                  Value gx = arith::MulFOp::create(b, loc, xk, g);
                  Value u = loadWeight(b, loc, m, m.up, m.upScale, e, i, k);
                  Value ux = arith::MulFOp::create(b, loc, xk, u);
                  return {gx, ux};
                },
                [&](OpBuilder &b, Location loc, Value r, ValueRange sums) {
                  Value activated = silu(b, loc, sums[0]);
                  Value product =
                      arith::MulFOp::create(b, loc, activated, sums[1]);
                  Value i = arith::AddIOp::create(b, loc, firstRow, r);
                  Value at = arith::AddIOp::create(b, loc, base, i);
                  memref::StoreOp::create(b, loc, product, act, at);
                });
          });
        };
        Value routed = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             slot, index(b, loc, topK));
        auto branch = scf::IfOp::create(b, loc, routed, /*withElse=*/true);
        {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(&branch.getThenRegion().front());
          Value e = loadIndex(b, loc, args.indices, {zero, slot});
          Value base =
              arith::MulIOp::create(b, loc, slot, index(b, loc, inter));
          activations(b, loc, expertsOf(args), e, base);
          b.setInsertionPointToStart(&branch.getElseRegion().front());
          if (shared) {
            ExpertWeights m = sharedOf(args);
            Value base = index(b, loc, topK * inter);
            activations(b, loc, m, Value(), base);
          }
        }
      });

  // The activation groups of each slot (FP8 activations): their scales go
  // to workgroup memory; act(slot, i) is then the quantized value.
  int64_t routedGroups =
      activationGroup ? llvm::divideCeil(inter, *activationGroup) : 0;
  int64_t sharedGroups =
      sharedGroup ? llvm::divideCeil(sharedInter, *sharedGroup) : 0;
  int64_t groupCount = topK * routedGroups + sharedGroups;
  SmallVector<Type> downTypes{scratchType};
  downTypes.append(operandTypes);
  SmallVector<unsigned> downOperands;
  for (unsigned i = 0; i < operandTypes.size(); ++i)
    downOperands.push_back(i);
  SymbolRefAttr down = target.get(
      key + "_decode_down", downTypes, kExpertBlock,
      [hidden](OpBuilder &b, Location loc, ValueRange) -> Value {
        return index(b, loc, llvm::divideCeil(hidden, kRowsAtOnce));
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        Value act = operands.front();
        MoEExpertsOperands<Value> args =
            bindOperands(types, operands.drop_front());
        Value partials = thread.scratch(2 * kExpertBlock);
        Value scales = groupCount ? thread.scratch(groupCount) : Value();
        Value zero = index(b, loc, 0);
        Value firstRow = arith::MulIOp::create(b, loc, thread.workgroup,
                                               index(b, loc, kRowsAtOnce));
        Value hiddenCount = index(b, loc, hidden);
        Value left = arith::SubIOp::create(b, loc, hiddenCount, firstRow);
        Value atOnce = index(b, loc, kRowsAtOnce);
        Value rows = arith::MinUIOp::create(b, loc, left, atOnce);
        // Group g of the scratch's groups: the routed slots' (topK x
        // routedGroups of activationGroup channels), then the shared one's.
        auto groupBounds = [&](OpBuilder &b, Location loc, Value g) {
          Value routedEnd = index(b, loc, topK * routedGroups);
          Value isRouted = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, g, routedEnd);
          Value perSlot = index(b, loc, std::max<int64_t>(routedGroups, 1));
          Value slot = arith::DivUIOp::create(b, loc, g, perSlot);
          Value inSlot = arith::RemUIOp::create(b, loc, g, perSlot);
          Value routedGroup = index(b, loc, activationGroup.value_or(1));
          Value interCount = index(b, loc, inter);
          Value slotBegin = arith::MulIOp::create(b, loc, slot, interCount);
          Value inSlotBegin =
              arith::MulIOp::create(b, loc, inSlot, routedGroup);
          Value routedBegin =
              arith::AddIOp::create(b, loc, slotBegin, inSlotBegin);
          Value routedLimit =
              arith::AddIOp::create(b, loc, slotBegin, interCount);
          Value sharedIndex = arith::SubIOp::create(b, loc, g, routedEnd);
          Value sharedSize = index(b, loc, sharedGroup.value_or(1));
          Value sharedBase = index(b, loc, topK * inter);
          Value sharedOffset =
              arith::MulIOp::create(b, loc, sharedIndex, sharedSize);
          Value sharedBegin =
              arith::AddIOp::create(b, loc, sharedBase, sharedOffset);
          Value sharedLimit = index(b, loc, topK * inter + sharedInter);
          Value begin = arith::SelectOp::create(b, loc, isRouted, routedBegin,
                                                sharedBegin);
          Value size = arith::SelectOp::create(b, loc, isRouted, routedGroup,
                                               sharedSize);
          Value limit = arith::SelectOp::create(b, loc, isRouted, routedLimit,
                                                sharedLimit);
          Value end = arith::MinUIOp::create(
              b, loc, arith::AddIOp::create(b, loc, begin, size), limit);
          return std::make_pair(begin, end);
        };
        if (groupCount) {
          simt::strided(
              b, loc, thread, index(b, loc, groupCount),
              [&](OpBuilder &b, Location loc, Value g) {
                auto [begin, end] = groupBounds(b, loc, g);
                Value amax =
                    maxAbs(b, loc, begin, end, f32(b, loc, 0.0),
                           [&](OpBuilder &b, Location loc, Value i) -> Value {
                             return memref::LoadOp::create(b, loc, act, i);
                           });
                memref::StoreOp::create(
                    b, loc, scaleForMaxAbs(b, loc, amax, weight.format), scales,
                    g);
              });
          gpu::BarrierOp::create(b, loc);
        }
        // act[at] as the down projection reads it: quantized and back with
        // its group's scale where the expert's activations are FP8.
        auto activation = [&](OpBuilder &b, Location loc, Value at, Value group,
                              bool quantized) -> Value {
          Value value = memref::LoadOp::create(b, loc, act, at);
          if (!quantized)
            return value;
          Value scale = memref::LoadOp::create(b, loc, scales, group);
          Value scaled = arith::DivFOp::create(b, loc, value, scale);
          Value code = roundToCode(b, loc, scaled, weight.format);
          return arith::MulFOp::create(b, loc, code, scale);
        };
        // The output rows start at zero, each zeroed by the thread that
        // adds to it (rowSums' finisher of that row).
        Value lanes = index(b, loc, kLanes);
        Value lane = arith::RemUIOp::create(b, loc, thread.thread, lanes);
        Value rowSlot = arith::DivUIOp::create(b, loc, thread.thread, lanes);
        Value firstLane =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, lane, zero);
        Value ownsRow = arith::AndIOp::create(
            b, loc, firstLane,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, rowSlot,
                                  rows));
        ifThen(b, loc, ownsRow, [&](OpBuilder &b, Location loc) {
          Value n = arith::AddIOp::create(b, loc, firstRow, rowSlot);
          memref::StoreOp::create(b, loc, f32(b, loc, 0.0), args.output,
                                  ValueRange{zero, n});
        });
        // out[n] += w * (act[base + i] . down[e, n, i]) over i < m.inter.
        auto project = [&](OpBuilder &b, Location loc, const ExpertWeights &m,
                           Value e, Value w, Value base, Value firstGroup,
                           bool quantized) {
          rowSums(
              b, loc, thread, partials, kRowsAtOnce, rows,
              index(b, loc, m.inter), 1,
              [&](OpBuilder &b, Location loc, Value r,
                  Value i) -> SmallVector<Value> {
                Value n = arith::AddIOp::create(b, loc, firstRow, r);
                Value at = arith::AddIOp::create(b, loc, base, i);
                Value group;
                if (quantized)
                  group = arith::AddIOp::create(
                      b, loc, firstGroup,
                      arith::DivUIOp::create(
                          b, loc, i, index(b, loc, *m.activationGroup)));
                Value a = activation(b, loc, at, group, quantized);
                Value d = loadWeight(b, loc, m, m.down, m.downScale, e, n, i);
                return {arith::MulFOp::create(b, loc, a, d)};
              },
              [&](OpBuilder &b, Location loc, Value r, ValueRange sums) {
                Value n = arith::AddIOp::create(b, loc, firstRow, r);
                Value contribution = sums[0];
                if (w)
                  contribution = arith::MulFOp::create(b, loc, w, contribution);
                Value old = memref::LoadOp::create(b, loc, args.output,
                                                   ValueRange{zero, n});
                Value sum = arith::AddFOp::create(b, loc, old, contribution);
                memref::StoreOp::create(b, loc, sum, args.output,
                                        ValueRange{zero, n});
              });
        };
        ExpertWeights routedExperts = expertsOf(args);
        forEachRoutedExpert(
            b, loc, dispatch, args.indices, args.weights, zero, topK, experts,
            [&](OpBuilder &b, Location loc, Value slot, Value e, Value w) {
              Value base =
                  arith::MulIOp::create(b, loc, slot, index(b, loc, inter));
              Value firstGroup = arith::MulIOp::create(
                  b, loc, slot, index(b, loc, routedGroups));
              project(b, loc, routedExperts, e, w, base, firstGroup,
                      activationGroup.has_value());
            });
        if (shared) {
          ExpertWeights m = sharedOf(args);
          Value base = index(b, loc, topK * inter);
          Value firstGroup = index(b, loc, topK * routedGroups);
          project(b, loc, m, Value(), Value(), base, firstGroup,
                  sharedGroup.has_value());
        }
      });
  SymbolRefAttr decode =
      target.twoSteps(key + "_decode", up, down, scratchType, downOperands);

  // Prefill: grouped products over the tokens routed to each expert, so
  // each expert's weights are read once per 32 of its tokens (not once per
  // token), through scratches sized by the token count T:
  //   route (i32): [entries per expert, prefix: E + 1 | 32-entry tiles per
  //     expert, prefix: E + 1 | order: the T x k entries (t * k + slot)
  //     sorted by expert, tokens in order | where: each entry's position]
  //   act [T * k, inter] and ys [T * k, hidden] (f32) by sorted position;
  //   with a shared expert, sharedAct [T, shared inter] and sharedY [T,
  //   hidden].
  // Launches: route (one workgroup, which also counts), gate/up tiles of
  // (32 entries of one expert, 32 intermediate rows), FP8 activations
  // quantized per entry, down tiles of (32 entries, 32 hidden rows), the
  // shared expert's three over all tokens, then a workgroup per token sums
  // w * ys over its experts in the CPU's order, and the shared expert's.
  int64_t routeHeader = 2 * (experts + 1);
  auto dynamicF32 = MemRefType::get({ShapedType::kDynamic}, f32Type);
  auto dynamicI32 = MemRefType::get({ShapedType::kDynamic}, i32Type);
  auto tokensOf = [](OpBuilder &b, Location loc, ValueRange operands) {
    return memref::DimOp::create(b, loc, operands[0], 0).getResult();
  };
  auto scaledTokens = [&](int64_t perToken, int64_t plus) {
    return [tokensOf, perToken, plus](OpBuilder &b, Location loc,
                                      ValueRange operands) -> Value {
      Value tokens = tokensOf(b, loc, operands);
      Value scaled =
          arith::MulIOp::create(b, loc, tokens, index(b, loc, perToken));
      return arith::AddIOp::create(b, loc, scaled, index(b, loc, plus));
    };
  };
  SmallVector<GPUKernelTarget::Scratch> scratches{
      {dynamicI32, scaledTokens(2 * topK, routeHeader)},
      {dynamicF32, scaledTokens(topK * inter, 0)},
      {dynamicF32, scaledTokens(topK * hidden, 0)}};
  if (shared) {
    scratches.push_back({dynamicF32, scaledTokens(sharedInter, 0)});
    scratches.push_back({dynamicF32, scaledTokens(hidden, 0)});
  }
  enum : unsigned { kRoute, kAct, kYs, kSharedAct, kSharedY };
  // On the FP8 units, the activations' codes (16 a vector<4xi32>) and
  // scales.
  unsigned actCodesAt = 0, sharedActCodesAt = 0;
  auto addCodeScratches = [&](int64_t perToken) {
    unsigned at = scratches.size();
    scratches.push_back({MemRefType::get({ShapedType::kDynamic}, codes16),
                         scaledTokens(perToken / 16, 0)});
    scratches.push_back({dynamicF32, scaledTokens(perToken / codeStage, 0)});
    return at;
  };
  if (fp8Units)
    actCodesAt = addCodeScratches(topK * inter);
  if (sharedFP8Units)
    sharedActCodesAt = addCodeScratches(sharedInter);
  // The prefill kernels see the weights that the FP8 units multiply as
  // 16 codes a vector<4xi32>.
  MoEExpertsOperands<Type> prefillOperandTypes = types;
  // bf16 weights likewise, 8 values a vector<4xi32>.
  auto words = [&](ArrayRef<int64_t> shape, int64_t perLoad) {
    SmallVector<int64_t> vectorShape(shape);
    vectorShape.back() /= perLoad;
    return MemRefType::get(vectorShape, codes16);
  };
  // The input 4 values a vector<4xf32> where every prefill kernel that
  // reads its values takes them so: the bf16 matrix units' products of
  // bf16 experts (and of a shared one).
  bool inputPacked = routedBF16 && (!shared || sharedBF16);
  if (inputPacked)
    prefillOperandTypes.input =
        tokensBy(hidden / 4, VectorType::get({4}, f32Type));
  if (fp8Units || routedBF16) {
    int64_t perLoad = fp8Units ? 16 : 8;
    prefillOperandTypes.gate = words({experts, inter, hidden}, perLoad);
    prefillOperandTypes.up = words({experts, inter, hidden}, perLoad);
    prefillOperandTypes.down = words({experts, hidden, inter}, perLoad);
  }
  if (sharedFP8Units || sharedBF16) {
    int64_t perLoad = sharedFP8Units ? 16 : 8;
    prefillOperandTypes.sharedGate = words({sharedInter, hidden}, perLoad);
    prefillOperandTypes.sharedUp = words({sharedInter, hidden}, perLoad);
    prefillOperandTypes.sharedDown = words({hidden, sharedInter}, perLoad);
  }
  unsigned operandCount = operandTypes.size();
  // Every prefill kernel takes all the operands, then the scratches.
  SmallVector<Type> prefillTypes = presentOperands(prefillOperandTypes);
  for (const GPUKernelTarget::Scratch &scratch : scratches)
    prefillTypes.push_back(scratch.type);
  auto argumentsOf = [&](ValueRange operands) {
    return bindOperands(prefillOperandTypes, operands.take_front(operandCount));
  };
  auto scratchOf = [&](ValueRange operands, unsigned which) {
    return operands[operandCount + which];
  };
  // The codes scratch at `at` and the scales after it (null: none).
  auto codeScratchOf = [&](ValueRange operands, bool present, unsigned at) {
    if (!present)
      return std::make_pair(Value(), Value());
    Value codes = scratchOf(operands, at);
    Value scales = scratchOf(operands, at + 1);
    return std::make_pair(codes, scales);
  };

  // 1. Route: entries per expert, their prefix sums, the sorted order.
  SymbolRefAttr route = target.get(
      key + "_prefill_route", prefillTypes, kExpertBlock,
      [](OpBuilder &b, Location loc, ValueRange) -> Value {
        return index(b, loc, 1);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        MoEExpertsOperands<Value> args = argumentsOf(operands);
        Value table = scratchOf(operands, kRoute);
        Value tokens = simt::leadingSize(b, loc, args.input);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value k = index(b, loc, topK);
        Value entries = arith::MulIOp::create(b, loc, tokens, k);
        countRoutedRows(b, loc, thread, args.counts, args.indices, tokens,
                        experts, topK);
        // entry p's expert, as an index.
        auto expertOf = [&](OpBuilder &b, Location loc, Value p) -> Value {
          Value t = arith::DivUIOp::create(b, loc, p, k);
          Value slot = arith::RemUIOp::create(b, loc, p, k);
          return loadIndex(b, loc, args.indices, {t, slot});
        };
        auto store = [&](OpBuilder &b, Location loc, Value value, Value at) {
          Value word = arith::IndexCastOp::create(b, loc, i32Type, value);
          memref::StoreOp::create(b, loc, word, table, at);
        };
        auto load = [&](OpBuilder &b, Location loc, Value at) {
          return loadIndex(b, loc, table, {at});
        };
        Value expertCount = index(b, loc, experts);
        // Counts into offsets[e + 1].
        simt::strided(
            b, loc, thread, expertCount,
            [&](OpBuilder &b, Location loc, Value e) {
              auto count = scf::ForOp::create(
                  b, loc, zero, entries, one, ValueRange{zero},
                  [&](OpBuilder &b, Location loc, Value p, ValueRange acc) {
                    Value match =
                        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                              expertOf(b, loc, p), e);
                    Value bit = asCount(b, loc, match);
                    Value sum = arith::AddIOp::create(b, loc, acc[0], bit);
                    scf::YieldOp::create(b, loc, sum);
                  });
              Value at = arith::AddIOp::create(b, loc, e, one);
              store(b, loc, count.getResult(0), at);
            });
        gpu::BarrierOp::create(b, loc);
        // Prefix sums of entries and of 32-entry tiles, by thread 0.
        simt::firstThread(b, loc, thread, [&](OpBuilder &b, Location loc) {
          Value tilesBase = index(b, loc, experts + 1);
          store(b, loc, zero, zero);
          store(b, loc, zero, tilesBase);
          scf::ForOp::create(
              b, loc, zero, expertCount, one, ValueRange{zero, zero},
              [&](OpBuilder &b, Location loc, Value e, ValueRange totals) {
                Value next = arith::AddIOp::create(b, loc, e, one);
                Value count = load(b, loc, next);
                Value entriesSoFar =
                    arith::AddIOp::create(b, loc, totals[0], count);
                Value tileSize = index(b, loc, kEntryTile);
                Value roundedUp = arith::AddIOp::create(
                    b, loc, count, index(b, loc, kEntryTile - 1));
                Value tiles =
                    arith::DivUIOp::create(b, loc, roundedUp, tileSize);
                Value tilesSoFar =
                    arith::AddIOp::create(b, loc, totals[1], tiles);
                store(b, loc, entriesSoFar, next);
                Value tileAt = arith::AddIOp::create(b, loc, tilesBase, next);
                store(b, loc, tilesSoFar, tileAt);
                scf::YieldOp::create(b, loc,
                                     ValueRange{entriesSoFar, tilesSoFar});
              });
        });
        gpu::BarrierOp::create(b, loc);
        // Each expert's entries in token order, and where each went.
        Value orderBase = index(b, loc, routeHeader);
        Value whereBase = arith::AddIOp::create(b, loc, orderBase, entries);
        simt::strided(
            b, loc, thread, expertCount,
            [&](OpBuilder &b, Location loc, Value e) {
              Value start = load(b, loc, e);
              scf::ForOp::create(
                  b, loc, zero, entries, one, ValueRange{start},
                  [&](OpBuilder &b, Location loc, Value p, ValueRange next) {
                    Value match =
                        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                              expertOf(b, loc, p), e);
                    ifThen(b, loc, match, [&](OpBuilder &b, Location loc) {
                      Value orderAt =
                          arith::AddIOp::create(b, loc, orderBase, next[0]);
                      store(b, loc, p, orderAt);
                      Value whereAt =
                          arith::AddIOp::create(b, loc, whereBase, p);
                      store(b, loc, next[0], whereAt);
                    });
                    Value bit = asCount(b, loc, match);
                    Value after = arith::AddIOp::create(b, loc, next[0], bit);
                    scf::YieldOp::create(b, loc, after);
                  });
            });
      });

  // The tiles of routed entries: workgroup w takes tile w / columnTiles of
  // the experts' 32-entry tiles (the first `tile - tiles[e]` of expert e)
  // and column tile w % columnTiles. At most ceil(T k / 32) + E tiles hold
  // entries.
  auto routedGrid = [&](int64_t columns) {
    int64_t columnTiles = llvm::divideCeil(columns, kEntryTile);
    return [topK, experts, columnTiles](OpBuilder &b, Location loc,
                                        ValueRange operands) -> Value {
      Value tokens = memref::DimOp::create(b, loc, operands[0], 0);
      Value entries =
          arith::MulIOp::create(b, loc, tokens, index(b, loc, topK));
      Value tiles = arith::CeilDivUIOp::create(b, loc, entries,
                                               index(b, loc, kEntryTile));
      Value bound =
          arith::AddIOp::create(b, loc, tiles, index(b, loc, experts));
      return arith::MulIOp::create(b, loc, bound, index(b, loc, columnTiles));
    };
  };
  // The entries of this workgroup's tile: expert e, sorted positions
  // [first, end), column tile; `body` runs where the tile exists.
  struct EntryTile {
    Value e, first, end, firstColumn;
  };
  auto forRoutedTile =
      [&](OpBuilder &b, Location loc, const GPUThread &thread, Value table,
          int64_t columns,
          function_ref<void(OpBuilder &, Location, const EntryTile &)> body) {
        int64_t columnTiles = llvm::divideCeil(columns, kEntryTile);
        Value count = index(b, loc, columnTiles);
        Value tile = arith::DivUIOp::create(b, loc, thread.workgroup, count);
        Value columnTile =
            arith::RemUIOp::create(b, loc, thread.workgroup, count);
        Value tilesBase = index(b, loc, experts + 1);
        Value zero = index(b, loc, 0), one = index(b, loc, 1);
        Value totalAt = index(b, loc, 2 * experts + 1);
        Value total = loadIndex(b, loc, table, {totalAt});
        Value exists = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             tile, total);
        ifThen(b, loc, exists, [&](OpBuilder &b, Location loc) {
          // e = the number of experts whose tiles end at or before `tile`.
          auto scan = scf::ForOp::create(
              b, loc, zero, index(b, loc, experts), one, ValueRange{zero},
              [&](OpBuilder &b, Location loc, Value x, ValueRange acc) {
                Value next = arith::AddIOp::create(b, loc, x, one);
                Value endAt = arith::AddIOp::create(b, loc, tilesBase, next);
                Value tilesEnd = loadIndex(b, loc, table, {endAt});
                Value before = arith::CmpIOp::create(
                    b, loc, arith::CmpIPredicate::ule, tilesEnd, tile);
                Value bit = asCount(b, loc, before);
                Value sum = arith::AddIOp::create(b, loc, acc[0], bit);
                scf::YieldOp::create(b, loc, sum);
              });
          Value e = scan.getResult(0);
          Value firstTileAt = arith::AddIOp::create(b, loc, tilesBase, e);
          Value firstTile = loadIndex(b, loc, table, {firstTileAt});
          Value within = arith::SubIOp::create(b, loc, tile, firstTile);
          Value offset =
              arith::MulIOp::create(b, loc, within, index(b, loc, kEntryTile));
          Value expertStart = loadIndex(b, loc, table, {e});
          Value first = arith::AddIOp::create(b, loc, expertStart, offset);
          Value nextExpert = arith::AddIOp::create(b, loc, e, one);
          Value expertEnd = loadIndex(b, loc, table, {nextExpert});
          Value tileEnd =
              arith::AddIOp::create(b, loc, first, index(b, loc, kEntryTile));
          Value end = arith::MinUIOp::create(b, loc, tileEnd, expertEnd);
          Value firstColumn = arith::MulIOp::create(b, loc, columnTile,
                                                    index(b, loc, kEntryTile));
          body(b, loc, EntryTile{e, first, end, firstColumn});
        });
      };
  // Rows of a tile: [first + r < end]; columns [firstColumn + n < columns].
  auto rowExists = [](Value first, Value end) {
    return [first, end](OpBuilder &b, Location loc, Value r) -> Value {
      Value p = arith::AddIOp::create(b, loc, first, r);
      return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, p, end);
    };
  };
  auto columnExists = [](Value firstColumn, int64_t columns) {
    return
        [firstColumn, columns](OpBuilder &b, Location loc, Value n) -> Value {
          Value column = arith::AddIOp::create(b, loc, firstColumn, n);
          return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       column, index(b, loc, columns));
        };
  };
  // Rows [firstColumn, + 32) of expert e's `weights` (of `rows` rows) as
  // the prefill kernels see them where they are read 16 bytes a load.
  auto packedWeightRows = [&](const ExpertWeights &m, Value e,
                              Value firstColumn, int64_t rows,
                              ArrayRef<std::pair<Value, Value>> weights) {
    SmallVector<mma::PackedRows> packed;
    for (const std::pair<Value, Value> &weight : weights) {
      Value w = weight.first;
      bool stacked = m.stacked;
      packed.push_back(mma::PackedRows{
          columnExists(firstColumn, rows),
          [stacked, e, firstColumn, w](OpBuilder &b, Location loc, Value n,
                                       Value q) -> Value {
            SmallVector<Value> at;
            if (stacked)
              at.push_back(e);
            at.push_back(arith::AddIOp::create(b, loc, firstColumn, n));
            at.push_back(q);
            return memref::LoadOp::create(b, loc, w, at);
          }});
    }
    return packed;
  };
  // The grouped products of the entries `a` (over `depth` columns) with
  // rows [firstColumn, + 32) of expert e's matrices `weights` (memref and
  // block scales; `rows` rows each): on the matrix units, the codes times
  // each stage's block scale, or in f32 SIMT tiles (groupedOnMatrixUnits).
  auto groupedProducts = [&](OpBuilder &b, Location loc,
                             const GPUThread &thread, const ExpertWeights &m,
                             Value e, Value firstColumn, int64_t rows,
                             int64_t depth, const simt::TileRows &a,
                             std::optional<mma::PackedRows> packedA,
                             ArrayRef<std::pair<Value, Value>> weights,
                             simt::TileFinish finish) {
    bool matrixUnits = groupedOnMatrixUnits(target, m.weight);
    bool codes = matrixUnits && m.weight.blockScale;
    SmallVector<simt::TileRows> weightRows;
    for (const std::pair<Value, Value> &weight : weights) {
      Value w = weight.first, scale = weight.second;
      weightRows.push_back(simt::TileRows{
          columnExists(firstColumn, rows),
          [&, w, scale](OpBuilder &b, Location loc, Value n, Value k) -> Value {
            Value row = arith::AddIOp::create(b, loc, firstColumn, n);
            return loadWeight(b, loc, m, w, scale, e, row, k, codes);
          }});
    }
    if (!matrixUnits) {
      SmallVector<Value> tiles;
      for (size_t o = 0; o <= weights.size(); ++o)
        tiles.push_back(thread.scratch(simt::tileScratch(1)));
      simt::tileProducts(b, loc, thread, depth, a, weightRows, tiles, finish);
      return;
    }
    mma::StageScale stageScale;
    if (codes)
      stageScale = [&](OpBuilder &b, Location loc, Value k0,
                       int64_t operand) -> Value {
        Value scale = weights[operand].second;
        return blockScaleOf(b, loc, m, scale, e, firstColumn, k0);
      };
    mma::PackedOperands packed;
    packed.a = packedA;
    if (m.packedBF16)
      packed.w = packedWeightRows(m, e, firstColumn, rows, weights);
    mma::tileProducts(b, loc, target, thread, depth, a, weightRows, packed,
                      kernel.precise, stageScale, finish);
  };
  // The grouped products on the FP8 units: the entries' codes `a` (and
  // their row scales) times rows [firstColumn, + 32) of expert e's
  // `weights` (16 codes a vector<4xi32>, block scales; `rows` rows each),
  // promoted with each stage's block scale.
  auto groupedCodeProducts =
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          const ExpertWeights &m, Value e, Value firstColumn, int64_t rows,
          int64_t depth, const mma::PackedRows &a, const mma::RowScale &aScale,
          ArrayRef<std::pair<Value, Value>> weights, simt::TileFinish finish) {
        SmallVector<mma::PackedRows> weightRows =
            packedWeightRows(m, e, firstColumn, rows, weights);
        mma::StageScale stageScale = [&](OpBuilder &b, Location loc, Value k0,
                                         int64_t operand) -> Value {
          Value scale = weights[operand].second;
          return blockScaleOf(b, loc, m, scale, e, firstColumn, k0);
        };
        mma::codeTileProducts(b, loc, target, thread, depth, a, aScale,
                              weightRows, stageScale, finish);
      };
  // Rows `first + r` of the activations' codes and scales (`width` wide),
  // as A of the FP8 units' products.
  auto codeRowsOf = [&](Value codes, Value scales, Value first, Value end,
                        int64_t width) {
    mma::PackedRows rows{rowExists(first, end),
                         [first, codes, width](OpBuilder &b, Location loc,
                                               Value r, Value q) -> Value {
                           Value p = arith::AddIOp::create(b, loc, first, r);
                           Value rowStart = arith::MulIOp::create(
                               b, loc, p, index(b, loc, width / 16));
                           Value at =
                               arith::AddIOp::create(b, loc, rowStart, q);
                           return memref::LoadOp::create(b, loc, codes, at);
                         }};
    mma::RowScale scale = [first, scales, width,
                           codeStage](OpBuilder &b, Location loc, Value r,
                                      Value k0) -> Value {
      Value p = arith::AddIOp::create(b, loc, first, r);
      Value rowStart =
          arith::MulIOp::create(b, loc, p, index(b, loc, width / codeStage));
      Value group =
          arith::DivUIOp::create(b, loc, k0, index(b, loc, codeStage));
      Value at = arith::AddIOp::create(b, loc, rowStart, group);
      return memref::LoadOp::create(b, loc, scales, at);
    };
    return std::make_pair(rows, scale);
  };
  // act rows = silu(x . gate) * (x . up) over `rows` x-rows (`token(r)`),
  // the expert's (or the shared one's) intermediate rows.
  auto gateUpTile = [&](OpBuilder &b, Location loc, const GPUThread &thread,
                        MoEExpertsOperands<Value> args, const ExpertWeights &m,
                        Value e, Value first, Value end, Value firstColumn,
                        function_ref<Value(OpBuilder &, Location, Value)> token,
                        Value act, int64_t width) {
    auto store = [&](OpBuilder &b, Location loc, Value r, Value n,
                     ValueRange sums) {
      Value activated = silu(b, loc, sums[0]);
      Value product = arith::MulFOp::create(b, loc, activated, sums[1]);
      Value p = arith::AddIOp::create(b, loc, first, r);
      Value i = arith::AddIOp::create(b, loc, firstColumn, n);
      Value rowStart = arith::MulIOp::create(b, loc, p, index(b, loc, width));
      Value at = arith::AddIOp::create(b, loc, rowStart, i);
      memref::StoreOp::create(b, loc, product, act, at);
    };
    if (m.fp8Units) {
      // The tokens' codes and scales, as the quantization before the
      // experts left them.
      mma::PackedRows x{rowExists(first, end),
                        [&](OpBuilder &b, Location loc, Value r, Value q) {
                          Value t = token(b, loc, r);
                          return memref::LoadOp::create(b, loc, args.inputCodes,
                                                        ValueRange{t, q})
                              .getResult();
                        }};
      mma::RowScale xScale = [&](OpBuilder &b, Location loc, Value r,
                                 Value k0) -> Value {
        Value t = token(b, loc, r);
        Value group =
            arith::DivUIOp::create(b, loc, k0, index(b, loc, codeStage));
        return memref::LoadOp::create(b, loc, args.inputScale,
                                      ValueRange{t, group});
      };
      groupedCodeProducts(b, loc, thread, m, e, firstColumn, m.inter, hidden, x,
                          xScale, {{m.gate, m.gateScale}, {m.up, m.upScale}},
                          store);
      return;
    }
    // The input as the prefill kernels see it: 4 values a vector<4xf32>
    // (16-byte loads of each token's row) or a value at a time.
    std::optional<mma::PackedRows> packedX;
    if (inputPacked)
      packedX = mma::PackedRows{
          rowExists(first, end),
          [&](OpBuilder &b, Location loc, Value r, Value q) -> Value {
            Value t = token(b, loc, r);
            return memref::LoadOp::create(b, loc, args.input, ValueRange{t, q});
          }};
    simt::TileRows x{
        rowExists(first, end),
        [&](OpBuilder &b, Location loc, Value r, Value k) -> Value {
          Value t = token(b, loc, r);
          return memref::LoadOp::create(b, loc, args.input, ValueRange{t, k});
        }};
    groupedProducts(b, loc, thread, m, e, firstColumn, m.inter, hidden, x,
                    packedX, {{m.gate, m.gateScale}, {m.up, m.upScale}}, store);
  };
  // Whether down's kernel reads the activations (f32) 16 bytes a load: on
  // the bf16 matrix units, rows of whole 4-value loads. Its kernel then
  // sees their scratch as vector<4xf32> (the other kernels write values).
  auto actPacked = [&](const WeightOperand &w, int64_t width, bool codes) {
    return !codes && groupedOnMatrixUnits(target, w) && width % 4 == 0;
  };
  bool routedActPacked = actPacked(weight, inter, fp8Units);
  bool sharedActPacked =
      shared && actPacked(shared->weight, sharedInter, sharedFP8Units);
  auto packedActTypes = [&](bool packed, unsigned actAt) {
    SmallVector<Type> types(prefillTypes);
    if (packed)
      types[operandCount + actAt] = MemRefType::get(
          {ShapedType::kDynamic}, VectorType::get({4}, f32Type));
    return types;
  };
  // ys rows = act rows . down^T over the hidden rows of one column tile;
  // on the FP8 units from the activations' codes and scales (`actCodes`
  // and the scratch after it).
  auto downTile = [&](OpBuilder &b, Location loc, const GPUThread &thread,
                      const ExpertWeights &m, Value e, Value first, Value end,
                      Value firstColumn, Value act, Value ys, Value actCodes,
                      Value actScales) {
    auto store = [&](OpBuilder &b, Location loc, Value r, Value n,
                     ValueRange sums) {
      Value p = arith::AddIOp::create(b, loc, first, r);
      Value column = arith::AddIOp::create(b, loc, firstColumn, n);
      Value rowStart = arith::MulIOp::create(b, loc, p, index(b, loc, hidden));
      Value at = arith::AddIOp::create(b, loc, rowStart, column);
      memref::StoreOp::create(b, loc, sums[0], ys, at);
    };
    if (m.fp8Units) {
      auto [codes, scale] =
          codeRowsOf(actCodes, actScales, first, end, m.inter);
      groupedCodeProducts(b, loc, thread, m, e, firstColumn, hidden, m.inter,
                          codes, scale, {{m.down, m.downScale}}, store);
      return;
    }
    std::optional<mma::PackedRows> packedA;
    if (actPacked(m.weight, m.inter, m.fp8Units))
      packedA = mma::PackedRows{
          rowExists(first, end),
          [&](OpBuilder &b, Location loc, Value r, Value q) -> Value {
            Value p = arith::AddIOp::create(b, loc, first, r);
            Value rowStart =
                arith::MulIOp::create(b, loc, p, index(b, loc, m.inter / 4));
            Value at = arith::AddIOp::create(b, loc, rowStart, q);
            return memref::LoadOp::create(b, loc, act, at);
          }};
    simt::TileRows a{
        rowExists(first, end),
        [&](OpBuilder &b, Location loc, Value r, Value i) -> Value {
          Value p = arith::AddIOp::create(b, loc, first, r);
          Value rowStart =
              arith::MulIOp::create(b, loc, p, index(b, loc, m.inter));
          Value at = arith::AddIOp::create(b, loc, rowStart, i);
          return memref::LoadOp::create(b, loc, act, at);
        }};
    groupedProducts(b, loc, thread, m, e, firstColumn, hidden, m.inter, a,
                    packedA, {{m.down, m.downScale}}, store);
  };
  // FP8 activations: each row of `act` ([rows, width]) quantized per group
  // in place, a workgroup per row, a thread per group. With `codes`, the
  // codes (16 a vector<4xi32>, [rows, width / 16]) and the groups' scales
  // (`scales`, [rows, width / group]) instead, for the FP8 units' products
  // (whole groups: width % group == 0, group % 16 == 0).
  auto quantizeRows = [&](OpBuilder &b, Location loc, const GPUThread &thread,
                          Value act, Value row, int64_t width, int64_t group,
                          WeightFormat format, Value codes, Value scales) {
    int64_t groupCount = llvm::divideCeil(width, group);
    Value groups = index(b, loc, groupCount);
    Value rowStart = arith::MulIOp::create(b, loc, row, index(b, loc, width));
    simt::strided(
        b, loc, thread, groups, [&](OpBuilder &b, Location loc, Value g) {
          Value groupStart =
              arith::MulIOp::create(b, loc, g, index(b, loc, group));
          Value begin = arith::AddIOp::create(b, loc, rowStart, groupStart);
          Value unclamped =
              arith::AddIOp::create(b, loc, begin, index(b, loc, group));
          Value rowEnd =
              arith::AddIOp::create(b, loc, rowStart, index(b, loc, width));
          Value end = arith::MinUIOp::create(b, loc, unclamped, rowEnd);
          Value amax =
              maxAbs(b, loc, begin, end, f32(b, loc, 0.0),
                     [&](OpBuilder &b, Location loc, Value i) -> Value {
                       return memref::LoadOp::create(b, loc, act, i);
                     });
          Value scale = scaleForMaxAbs(b, loc, amax, format);
          auto codeOf = [&](OpBuilder &b, Location loc, Value i) {
            Value v = memref::LoadOp::create(b, loc, act, i);
            Value scaled = arith::DivFOp::create(b, loc, v, scale);
            return roundToCode(b, loc, scaled, format);
          };
          if (!codes) {
            simt::forLoop(b, loc, begin, end, index(b, loc, 1),
                          [&](OpBuilder &b, Location loc, Value i) {
                            Value q = codeOf(b, loc, i);
                            Value back =
                                arith::MulFOp::create(b, loc, q, scale);
                            memref::StoreOp::create(b, loc, back, act, i);
                          });
            return;
          }
          Value rowGroups =
              arith::MulIOp::create(b, loc, row, index(b, loc, groupCount));
          Value scaleAt = arith::AddIOp::create(b, loc, rowGroups, g);
          memref::StoreOp::create(b, loc, scale, scales, scaleAt);
          // 16 codes a vector<4xi32>, the lowest column in the lowest byte.
          Value firstLoad =
              arith::DivUIOp::create(b, loc, begin, index(b, loc, 16));
          Value zero = index(b, loc, 0);
          Value groupLoads = index(b, loc, group / 16);
          Value one = index(b, loc, 1);
          simt::forLoop(
              b, loc, zero, groupLoads, one,
              [&](OpBuilder &b, Location loc, Value v) {
                Value storeAt = arith::AddIOp::create(b, loc, firstLoad, v);
                Value first =
                    arith::MulIOp::create(b, loc, storeAt, index(b, loc, 16));
                SmallVector<Value> words;
                for (int64_t w = 0; w < 4; ++w) {
                  Value word = simt::i32(b, loc, 0);
                  for (int64_t j = 0; j < 4; ++j) {
                    Value i = arith::AddIOp::create(b, loc, first,
                                                    index(b, loc, 4 * w + j));
                    Value q = codeOf(b, loc, i);
                    Value bits = simt::fp8Bits(b, loc, q, format);
                    Value shifted = arith::ShLIOp::create(
                        b, loc, bits, simt::i32(b, loc, 8 * j));
                    word = arith::OrIOp::create(b, loc, word, shifted);
                  }
                  words.push_back(word);
                }
                Value packed = vector::FromElementsOp::create(
                    b, loc, VectorType::get({4}, b.getI32Type()), words);
                memref::StoreOp::create(b, loc, packed, codes, storeAt);
              });
        });
  };
  auto routedToken = [&](Value table, Value first) {
    return [&, table, first](OpBuilder &b, Location loc, Value r) -> Value {
      Value p = arith::AddIOp::create(b, loc, first, r);
      Value orderAt =
          arith::AddIOp::create(b, loc, index(b, loc, routeHeader), p);
      Value entry = loadIndex(b, loc, table, {orderAt});
      return arith::DivUIOp::create(b, loc, entry, index(b, loc, topK));
    };
  };

  // 2. Gate/up of the routed entries.
  SymbolRefAttr routedUp = target.get(
      key + "_prefill_up", prefillTypes, kTileThreads, routedGrid(inter),
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        MoEExpertsOperands<Value> args = argumentsOf(operands);
        Value table = scratchOf(operands, kRoute);
        Value act = scratchOf(operands, kAct);
        forRoutedTile(b, loc, thread, table, inter,
                      [&](OpBuilder &b, Location loc, const EntryTile &tile) {
                        ExpertWeights m = expertsOf(args);
                        auto token = routedToken(table, tile.first);
                        gateUpTile(b, loc, thread, args, m, tile.e, tile.first,
                                   tile.end, tile.firstColumn, token, act,
                                   inter);
                      });
      });
  // 3. Their FP8 activations.
  SymbolRefAttr routedQuantize;
  if (activationGroup)
    routedQuantize =
        target.get(key + "_prefill_quantize", prefillTypes, kTileThreads,
                   scaledTokens(topK, 0),
                   [&](OpBuilder &b, Location loc, const GPUThread &thread,
                       ValueRange operands) {
                     auto codes = codeScratchOf(operands, fp8Units, actCodesAt);
                     quantizeRows(b, loc, thread, scratchOf(operands, kAct),
                                  thread.workgroup, inter, *activationGroup,
                                  weight.format, codes.first, codes.second);
                   });
  // 4. Down of the routed entries.
  SmallVector<Type> routedDownTypes = packedActTypes(routedActPacked, kAct);
  SymbolRefAttr routedDown = target.get(
      key + "_prefill_down", routedDownTypes, kTileThreads, routedGrid(hidden),
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        MoEExpertsOperands<Value> args = argumentsOf(operands);
        Value table = scratchOf(operands, kRoute);
        forRoutedTile(b, loc, thread, table, hidden,
                      [&](OpBuilder &b, Location loc, const EntryTile &tile) {
                        ExpertWeights m = expertsOf(args);
                        Value act = scratchOf(operands, kAct);
                        Value ys = scratchOf(operands, kYs);
                        auto codes =
                            codeScratchOf(operands, fp8Units, actCodesAt);
                        downTile(b, loc, thread, m, tile.e, tile.first,
                                 tile.end, tile.firstColumn, act, ys,
                                 codes.first, codes.second);
                      });
      });
  // 5-7. The shared expert over all tokens: tiles of 32 tokens.
  SymbolRefAttr sharedUp, sharedQuantize, sharedDown;
  auto tokenGrid = [](int64_t columns) {
    int64_t columnTiles = llvm::divideCeil(columns, kEntryTile);
    return [columnTiles](OpBuilder &b, Location loc,
                         ValueRange operands) -> Value {
      Value tokens = memref::DimOp::create(b, loc, operands[0], 0);
      Value tiles =
          arith::CeilDivUIOp::create(b, loc, tokens, index(b, loc, kEntryTile));
      return arith::MulIOp::create(b, loc, tiles, index(b, loc, columnTiles));
    };
  };
  // This workgroup's tokens [first, end) and column tile.
  auto forTokenTile = [&](OpBuilder &b, Location loc, const GPUThread &thread,
                          Value tokens, int64_t columns) {
    int64_t columnTiles = llvm::divideCeil(columns, kEntryTile);
    Value count = index(b, loc, columnTiles);
    Value tile = arith::DivUIOp::create(b, loc, thread.workgroup, count);
    Value columnTile = arith::RemUIOp::create(b, loc, thread.workgroup, count);
    Value first =
        arith::MulIOp::create(b, loc, tile, index(b, loc, kEntryTile));
    Value tileEnd =
        arith::AddIOp::create(b, loc, first, index(b, loc, kEntryTile));
    Value end = arith::MinUIOp::create(b, loc, tileEnd, tokens);
    Value firstColumn =
        arith::MulIOp::create(b, loc, columnTile, index(b, loc, kEntryTile));
    return std::make_tuple(first, end, firstColumn);
  };
  if (shared) {
    sharedUp = target.get(
        key + "_prefill_shared_up", prefillTypes, kTileThreads,
        tokenGrid(sharedInter),
        [&](OpBuilder &b, Location loc, const GPUThread &thread,
            ValueRange operands) {
          MoEExpertsOperands<Value> args = argumentsOf(operands);
          Value tokens = simt::leadingSize(b, loc, args.input);
          auto [first, end, firstColumn] =
              forTokenTile(b, loc, thread, tokens, sharedInter);
          Value tokenFirst = first;
          ExpertWeights m = sharedOf(args);
          Value act = scratchOf(operands, kSharedAct);
          auto token = [tokenFirst](OpBuilder &b, Location loc, Value r) {
            return arith::AddIOp::create(b, loc, tokenFirst, r).getResult();
          };
          gateUpTile(b, loc, thread, args, m, Value(), first, end, firstColumn,
                     token, act, sharedInter);
        });
    if (sharedGroup)
      sharedQuantize = target.get(
          key + "_prefill_shared_quantize", prefillTypes, kTileThreads,
          scaledTokens(1, 0),
          [&](OpBuilder &b, Location loc, const GPUThread &thread,
              ValueRange operands) {
            auto codes =
                codeScratchOf(operands, sharedFP8Units, sharedActCodesAt);
            quantizeRows(b, loc, thread, scratchOf(operands, kSharedAct),
                         thread.workgroup, sharedInter, *sharedGroup,
                         shared->weight.format, codes.first, codes.second);
          });
    SmallVector<Type> sharedDownTypes =
        packedActTypes(sharedActPacked, kSharedAct);
    sharedDown = target.get(key + "_prefill_shared_down", sharedDownTypes,
                            kTileThreads, tokenGrid(hidden),
                            [&](OpBuilder &b, Location loc,
                                const GPUThread &thread, ValueRange operands) {
                              MoEExpertsOperands<Value> args =
                                  argumentsOf(operands);
                              Value tokens =
                                  simt::leadingSize(b, loc, args.input);
                              auto [first, end, firstColumn] =
                                  forTokenTile(b, loc, thread, tokens, hidden);
                              ExpertWeights m = sharedOf(args);
                              Value act = scratchOf(operands, kSharedAct);
                              Value ys = scratchOf(operands, kSharedY);
                              auto codes = codeScratchOf(
                                  operands, sharedFP8Units, sharedActCodesAt);
                              downTile(b, loc, thread, m, Value(), first, end,
                                       firstColumn, act, ys, codes.first,
                                       codes.second);
                            });
  }
  // 8. out[t] = sum over t's experts (CPU order) of w * ys[where], plus the
  // shared expert's.
  SymbolRefAttr combine = target.get(
      key + "_prefill_combine", prefillTypes, kTileThreads, scaledTokens(1, 0),
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands) {
        MoEExpertsOperands<Value> args = argumentsOf(operands);
        Value table = scratchOf(operands, kRoute);
        Value ys = scratchOf(operands, kYs);
        Value t = thread.workgroup;
        Value tokens = simt::leadingSize(b, loc, args.input);
        Value entries =
            arith::MulIOp::create(b, loc, tokens, index(b, loc, topK));
        Value whereBase =
            arith::AddIOp::create(b, loc, index(b, loc, routeHeader), entries);
        simt::strided(
            b, loc, thread, index(b, loc, hidden),
            [&](OpBuilder &b, Location loc, Value n) {
              Value zero = f32(b, loc, 0.0);
              memref::StoreOp::create(b, loc, zero, args.output,
                                      ValueRange{t, n});
              forEachRoutedExpert(
                  b, loc, dispatch, args.indices, args.weights, t, topK,
                  experts,
                  [&](OpBuilder &b, Location loc, Value slot, Value, Value w) {
                    Value entryStart =
                        arith::MulIOp::create(b, loc, t, index(b, loc, topK));
                    Value entry =
                        arith::AddIOp::create(b, loc, entryStart, slot);
                    Value whereAt =
                        arith::AddIOp::create(b, loc, whereBase, entry);
                    Value p = loadIndex(b, loc, table, {whereAt});
                    Value rowStart =
                        arith::MulIOp::create(b, loc, p, index(b, loc, hidden));
                    Value at = arith::AddIOp::create(b, loc, rowStart, n);
                    Value y = memref::LoadOp::create(b, loc, ys, at);
                    Value old = memref::LoadOp::create(b, loc, args.output,
                                                       ValueRange{t, n});
                    Value sum = simt::fma(b, loc, w, y, old);
                    memref::StoreOp::create(b, loc, sum, args.output,
                                            ValueRange{t, n});
                  });
              if (shared) {
                Value rowStart =
                    arith::MulIOp::create(b, loc, t, index(b, loc, hidden));
                Value at = arith::AddIOp::create(b, loc, rowStart, n);
                Value y = memref::LoadOp::create(
                    b, loc, scratchOf(operands, kSharedY), at);
                Value old = memref::LoadOp::create(b, loc, args.output,
                                                   ValueRange{t, n});
                Value sum = arith::AddFOp::create(b, loc, old, y);
                memref::StoreOp::create(b, loc, sum, args.output,
                                        ValueRange{t, n});
              }
            });
      });
  SmallVector<GPUKernelTarget::Step> launches;
  for (SymbolRefAttr kernel : {route, routedUp, routedQuantize, routedDown,
                               sharedUp, sharedQuantize, sharedDown, combine})
    if (kernel)
      launches.push_back({kernel, {}});
  SymbolRefAttr prefill =
      target.sequence(key + "_prefill", scratches, launches);
  // The input is the first operand.
  return target.byLeadingSize(key + "_by_tokens", decode, prefill,
                              /*operand=*/0);
}

void xfmr::kernels::registerGPUMoEKernels(KernelRegistry &registry) {
  addGPUKernel<MoERouteKernel>(registry, gpuMoERoute);
  addGPUKernel<MoEExpertsKernel>(registry, gpuMoEExperts);
}
