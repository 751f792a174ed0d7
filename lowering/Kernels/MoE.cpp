//===- MoE.cpp - MoE routing and expert kernels ------------------*- C++ -*-===//
//
// Routing follows the models' definitions exactly (xfmr.moe_gate): scores,
// group ranking by the two best biased scores, top-k with ties to the lowest
// index, weights from unbiased scores. The expert kernel evaluates only the
// selected experts of each token, so decode reads the active experts'
// weights only.
//
//===----------------------------------------------------------------------===//

#include "lowering/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdio>
#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
/// The index of the largest of buffer[begin..end) (first one on ties), or
/// `end` if all are -inf.
Value argmax(OpBuilder &b, Location loc, Value buffer, Value begin, Value end) {
  Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());
  auto loop = b.create<scf::ForOp>(
      loc, begin, end, index(b, loc, 1), ValueRange{negInf, end},
      [&](OpBuilder &b, Location loc, Value i, ValueRange best) {
        Value value = b.create<memref::LoadOp>(loc, buffer, i);
        Value better = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT,
                                               value, best[0]);
        b.create<scf::YieldOp>(
            loc, ValueRange{b.create<arith::SelectOp>(loc, better, value,
                                                      best[0]),
                            b.create<arith::SelectOp>(loc, better, i,
                                                      best[1])});
      });
  return loop.getResult(1);
}

/// Runs `body` inside a memref.alloca_scope so per-iteration stack buffers
/// are released at the end of each iteration.
void allocaScope(OpBuilder &b, Location loc,
                 llvm::function_ref<void(OpBuilder &, Location)> body) {
  auto scope = b.create<memref::AllocaScopeOp>(loc, TypeRange{});
  Block *block = new Block();
  scope.getBodyRegion().push_back(block);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(block);
  body(b, loc);
  b.create<memref::AllocaScopeReturnOp>(loc, ValueRange{});
}
} // namespace

func::FuncOp xfmr::kernels::moeRoute(KernelLibrary &lib, MoEGateOp op) {
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  int64_t experts = op.getGateWeight().getType().getDimSize(0);
  int64_t topK = op.getTopK(), groups = op.getNGroup();
  int64_t keptGroups = op.getTopkGroup(), perGroup = experts / groups;
  bool sigmoid = op.getScoring() == ScoringFunc::sigmoid;
  bool hasBias = static_cast<bool>(op.getBias());
  bool normalize = op.getNormTopkProb();
  double factor = op.getRoutedScalingFactor().convertToDouble();
  char factorText[32];
  std::snprintf(factorText, sizeof(factorText), "%a", factor);
  std::string key = "moe_route_" + std::to_string(experts) + "_k" +
                    std::to_string(topK) + "_g" + std::to_string(groups) +
                    "x" + std::to_string(keptGroups) +
                    (sigmoid ? "_sigmoid" : "_softmax") +
                    (hasBias ? "_bias" : "") + (normalize ? "_norm" : "") +
                    "_" + factorText;
  SmallVector<Type> args{
      MemRefType::get({ShapedType::kDynamic, experts}, f32Type)};
  if (hasBias)
    args.push_back(MemRefType::get({experts}, f32Type));
  args.push_back(MemRefType::get({ShapedType::kDynamic, topK}, f32Type));
  args.push_back(MemRefType::get({ShapedType::kDynamic, topK},
                                 IntegerType::get(context, 32)));
  return lib.get(key, args, [&](OpBuilder &b, Location loc, ValueRange args) {
    Value logits = args[0], bias = hasBias ? args[1] : Value();
    Value weightsOut = args[args.size() - 2], indicesOut = args.back();
    Value tokens = b.create<memref::DimOp>(loc, logits, 0);
    Value zero = index(b, loc, 0), one = index(b, loc, 1);
    Value expertCount = index(b, loc, experts);
    Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());
    parallelFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      allocaScope(b, loc, [&](OpBuilder &b, Location loc) {
        auto vectorOf = [&](int64_t n) {
          return b.create<memref::AllocaOp>(
              loc, MemRefType::get({n}, b.getF32Type()));
        };
        Value scores = vectorOf(experts), rank = vectorOf(experts);
        // Scores. Softmax subtracts the row maximum for stability.
        Value rowMax = negInf;
        if (!sigmoid) {
          auto loop = b.create<scf::ForOp>(
              loc, zero, expertCount, one, ValueRange{negInf},
              [&](OpBuilder &b, Location loc, Value e, ValueRange acc) {
                Value l = b.create<memref::LoadOp>(loc, logits,
                                                   ValueRange{t, e});
                b.create<scf::YieldOp>(
                    loc, ValueRange{b.create<arith::MaximumFOp>(loc, acc[0], l)});
              });
          rowMax = loop.getResult(0);
        }
        auto sumLoop = b.create<scf::ForOp>(
            loc, zero, expertCount, one, ValueRange{f32(b, loc, 0.0)},
            [&](OpBuilder &b, Location loc, Value e, ValueRange acc) {
              Value l = b.create<memref::LoadOp>(loc, logits, ValueRange{t, e});
              Value s = sigmoid
                            ? b.create<arith::DivFOp>(
                                  loc, f32(b, loc, 1.0),
                                  b.create<arith::AddFOp>(
                                      loc, f32(b, loc, 1.0),
                                      b.create<math::ExpOp>(
                                          loc, b.create<arith::NegFOp>(loc, l))))
                                  .getResult()
                            : b.create<math::ExpOp>(
                                   loc, b.create<arith::SubFOp>(loc, l, rowMax))
                                  .getResult();
              b.create<memref::StoreOp>(loc, s, scores, e);
              b.create<scf::YieldOp>(
                  loc, ValueRange{b.create<arith::AddFOp>(loc, acc[0], s)});
            });
        Value total = sumLoop.getResult(0);
        serialFor(b, loc, zero, expertCount,
                  [&](OpBuilder &b, Location loc, Value e) {
          Value s = b.create<memref::LoadOp>(loc, scores, e);
          if (!sigmoid) {
            s = b.create<arith::DivFOp>(loc, s, total);
            b.create<memref::StoreOp>(loc, s, scores, e);
          }
          // Selection ranks biased scores; weights use unbiased ones.
          Value r = hasBias ? b.create<arith::AddFOp>(
                                   loc, s, b.create<memref::LoadOp>(loc, bias, e))
                                  .getResult()
                            : s;
          b.create<memref::StoreOp>(loc, r, rank, e);
        });
        if (groups > 1) {
          // A group ranks by the sum of its two best biased scores.
          Value groupScore = vectorOf(groups);
          serialFor(b, loc, zero, index(b, loc, groups),
                    [&](OpBuilder &b, Location loc, Value g) {
            Value begin = b.create<arith::MulIOp>(loc, g, index(b, loc, perGroup));
            Value end = b.create<arith::AddIOp>(loc, begin, index(b, loc, perGroup));
            auto loop = b.create<scf::ForOp>(
                loc, begin, end, one, ValueRange{negInf, negInf},
                [&](OpBuilder &b, Location loc, Value e, ValueRange best) {
                  Value r = b.create<memref::LoadOp>(loc, rank, e);
                  Value above1 = b.create<arith::CmpFOp>(
                      loc, arith::CmpFPredicate::OGT, r, best[0]);
                  Value above2 = b.create<arith::CmpFOp>(
                      loc, arith::CmpFPredicate::OGT, r, best[1]);
                  Value first =
                      b.create<arith::SelectOp>(loc, above1, r, best[0]);
                  Value second = b.create<arith::SelectOp>(
                      loc, above1, best[0],
                      b.create<arith::SelectOp>(loc, above2, r, best[1]));
                  b.create<scf::YieldOp>(loc, ValueRange{first, second});
                });
            b.create<memref::StoreOp>(
                loc,
                b.create<arith::AddFOp>(loc, loop.getResult(0),
                                        loop.getResult(1)),
                groupScore, g);
          });
          // Keep the best groups: mark them +inf one by one, then drop the
          // experts of every group not marked.
          Value inf = f32(b, loc, std::numeric_limits<double>::infinity());
          serialFor(b, loc, zero, index(b, loc, keptGroups),
                    [&](OpBuilder &b, Location loc, Value) {
            // Already kept groups hold +inf; pick the best of the others.
            auto loop = b.create<scf::ForOp>(
                loc, zero, index(b, loc, groups), one,
                ValueRange{negInf, index(b, loc, groups)},
                [&](OpBuilder &b, Location loc, Value g, ValueRange best) {
                  Value v = b.create<memref::LoadOp>(loc, groupScore, g);
                  Value candidate = b.create<arith::CmpFOp>(
                      loc, arith::CmpFPredicate::OLT, v, inf);
                  Value better = b.create<arith::AndIOp>(
                      loc, candidate,
                      b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT,
                                              v, best[0]));
                  b.create<scf::YieldOp>(
                      loc, ValueRange{
                               b.create<arith::SelectOp>(loc, better, v, best[0]),
                               b.create<arith::SelectOp>(loc, better, g,
                                                         best[1])});
                });
            b.create<memref::StoreOp>(loc, inf, groupScore, loop.getResult(1));
          });
          serialFor(b, loc, zero, expertCount,
                    [&](OpBuilder &b, Location loc, Value e) {
            Value g = b.create<arith::DivUIOp>(loc, e, index(b, loc, perGroup));
            Value kept = b.create<arith::CmpFOp>(
                loc, arith::CmpFPredicate::OEQ,
                b.create<memref::LoadOp>(loc, groupScore, g), inf);
            Value r = b.create<memref::LoadOp>(loc, rank, e);
            b.create<memref::StoreOp>(
                loc, b.create<arith::SelectOp>(loc, kept, r, negInf), rank, e);
          });
        }
        // Top-k, ties to the lowest index; chosen experts leave the race.
        auto pick = b.create<scf::ForOp>(
            loc, zero, index(b, loc, topK), one, ValueRange{f32(b, loc, 0.0)},
            [&](OpBuilder &b, Location loc, Value j, ValueRange acc) {
              Value e = argmax(b, loc, rank, zero, expertCount);
              b.create<memref::StoreOp>(loc, negInf, rank, e);
              Value w = b.create<memref::LoadOp>(loc, scores, e);
              b.create<memref::StoreOp>(loc, w, weightsOut, ValueRange{t, j});
              b.create<memref::StoreOp>(
                  loc, b.create<arith::IndexCastOp>(loc, b.getI32Type(), e),
                  indicesOut, ValueRange{t, j});
              b.create<scf::YieldOp>(
                  loc, ValueRange{b.create<arith::AddFOp>(loc, acc[0], w)});
            });
        Value chosen = pick.getResult(0);
        Value divisor = normalize
                            ? b.create<arith::AddFOp>(loc, chosen,
                                                      f32(b, loc, 1e-20))
                                  .getResult()
                            : f32(b, loc, 1.0);
        serialFor(b, loc, zero, index(b, loc, topK),
                  [&](OpBuilder &b, Location loc, Value j) {
          Value w = b.create<memref::LoadOp>(loc, weightsOut, ValueRange{t, j});
          Value scaled = b.create<arith::MulFOp>(
              loc, b.create<arith::DivFOp>(loc, w, divisor),
              f32(b, loc, factor));
          b.create<memref::StoreOp>(loc, scaled, weightsOut, ValueRange{t, j});
        });
      });
    });
  });
}

func::FuncOp xfmr::kernels::moeExperts(KernelLibrary &lib, int64_t experts,
                                       int64_t inter, int64_t hidden,
                                       int64_t topK,
                                       const WeightOperand &weight) {
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  Type storage = storageTypeOf(weight.format, context);
  auto tokensBy = [&](int64_t n, Type element) {
    return MemRefType::get({ShapedType::kDynamic, n}, element);
  };
  SmallVector<Type> args{tokensBy(hidden, f32Type), tokensBy(topK, f32Type),
                         tokensBy(topK, IntegerType::get(context, 32)),
                         MemRefType::get({experts, inter, hidden}, storage),
                         MemRefType::get({experts, inter, hidden}, storage),
                         MemRefType::get({experts, hidden, inter}, storage)};
  auto ceilDiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  if (weight.blockScale) {
    auto [rows, cols] = *weight.blockScale;
    auto upScale = MemRefType::get(
        {experts, ceilDiv(inter, rows), ceilDiv(hidden, cols)}, f32Type);
    args.push_back(upScale);
    args.push_back(upScale);
    args.push_back(MemRefType::get(
        {experts, ceilDiv(hidden, rows), ceilDiv(inter, cols)}, f32Type));
  }
  args.push_back(MemRefType::get({inter}, f32Type));
  args.push_back(tokensBy(hidden, f32Type));
  std::string key = "moe_experts_" + std::to_string(experts) + "x" +
                    std::to_string(inter) + "x" + std::to_string(hidden) +
                    "_k" + std::to_string(topK) + "_" + weight.key();
  return lib.get(key, args, [&](OpBuilder &b, Location loc, ValueRange args) {
    Value x = args[0], routeWeights = args[1], routeIndices = args[2];
    Value gate = args[3], up = args[4], down = args[5];
    Value gateScale, upScale, downScale;
    if (weight.blockScale) {
      gateScale = args[6];
      upScale = args[7];
      downScale = args[8];
    }
    Value scratch = args[args.size() - 2], out = args.back();
    bool fp8 = isFP8(weight.format);
    Value lut = fp8 ? lib.lookupTable(b, loc, weight.format) : Value();
    Value tokens = b.create<memref::DimOp>(loc, x, 0);
    Value zero = index(b, loc, 0);
    serialFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      serialFor(b, loc, zero, index(b, loc, hidden),
                [&](OpBuilder &b, Location loc, Value n) {
        b.create<memref::StoreOp>(loc, f32(b, loc, 0.0), out, ValueRange{t, n});
      });
      serialFor(b, loc, zero, index(b, loc, topK),
                [&](OpBuilder &b, Location loc, Value j) {
        Value e = b.create<arith::IndexCastOp>(
            loc, b.getIndexType(),
            b.create<memref::LoadOp>(loc, routeIndices, ValueRange{t, j}));
        Value w = b.create<memref::LoadOp>(loc, routeWeights, ValueRange{t, j});
        parallelFor(b, loc, zero, index(b, loc, inter),
                    [&](OpBuilder &b, Location loc, Value i) {
          Value g = scaledDot(b, loc, x, {t}, gate, {e, i}, hidden,
                              weight.format, lut, weight.blockScale, gateScale,
                              {e}, i);
          Value u = scaledDot(b, loc, x, {t}, up, {e, i}, hidden, weight.format,
                              lut, weight.blockScale, upScale, {e}, i);
          b.create<memref::StoreOp>(
              loc, b.create<arith::MulFOp>(loc, silu(b, loc, g), u), scratch, i);
        });
        parallelFor(b, loc, zero, index(b, loc, hidden),
                    [&](OpBuilder &b, Location loc, Value n) {
          Value d = scaledDot(b, loc, scratch, {}, down, {e, n}, inter,
                              weight.format, lut, weight.blockScale, downScale,
                              {e}, n);
          Value old = b.create<memref::LoadOp>(loc, out, ValueRange{t, n});
          b.create<memref::StoreOp>(
              loc, b.create<arith::AddFOp>(loc, old,
                                           b.create<arith::MulFOp>(loc, w, d)),
              out, ValueRange{t, n});
        });
      });
    });
  });
}
