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
  auto loop = scf::ForOp::create(b, 
      loc, begin, end, index(b, loc, 1), ValueRange{negInf, end},
      [&](OpBuilder &b, Location loc, Value i, ValueRange best) {
        Value value = memref::LoadOp::create(b, loc, buffer, i);
        Value better = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                               value, best[0]);
        scf::YieldOp::create(b, 
            loc, ValueRange{arith::SelectOp::create(b, loc, better, value,
                                                      best[0]),
                            arith::SelectOp::create(b, loc, better, i,
                                                      best[1])});
      });
  return loop.getResult(1);
}

/// Runs `body` inside a memref.alloca_scope so per-iteration stack buffers
/// are released at the end of each iteration.
void allocaScope(OpBuilder &b, Location loc,
                 llvm::function_ref<void(OpBuilder &, Location)> body) {
  auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
  Block *block = new Block();
  scope.getBodyRegion().push_back(block);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(block);
  body(b, loc);
  memref::AllocaScopeReturnOp::create(b, loc, ValueRange{});
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
    Value tokens = memref::DimOp::create(b, loc, logits, 0);
    Value zero = index(b, loc, 0), one = index(b, loc, 1);
    Value expertCount = index(b, loc, experts);
    Value negInf = f32(b, loc, -std::numeric_limits<double>::infinity());
    parallelFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      allocaScope(b, loc, [&](OpBuilder &b, Location loc) {
        auto vectorOf = [&](int64_t n) {
          return memref::AllocaOp::create(b, 
              loc, MemRefType::get({n}, b.getF32Type()));
        };
        Value scores = vectorOf(experts), rank = vectorOf(experts);
        // Scores. Softmax subtracts the row maximum for stability.
        Value rowMax = negInf;
        if (!sigmoid) {
          auto loop = scf::ForOp::create(b, 
              loc, zero, expertCount, one, ValueRange{negInf},
              [&](OpBuilder &b, Location loc, Value e, ValueRange acc) {
                Value l = memref::LoadOp::create(b, loc, logits,
                                                   ValueRange{t, e});
                scf::YieldOp::create(b, 
                    loc, ValueRange{arith::MaximumFOp::create(b, loc, acc[0], l)});
              });
          rowMax = loop.getResult(0);
        }
        auto sumLoop = scf::ForOp::create(b, 
            loc, zero, expertCount, one, ValueRange{f32(b, loc, 0.0)},
            [&](OpBuilder &b, Location loc, Value e, ValueRange acc) {
              Value l = memref::LoadOp::create(b, loc, logits, ValueRange{t, e});
              Value s = sigmoid
                            ? arith::DivFOp::create(b, 
                                  loc, f32(b, loc, 1.0),
                                  arith::AddFOp::create(b, 
                                      loc, f32(b, loc, 1.0),
                                      math::ExpOp::create(b, 
                                          loc, arith::NegFOp::create(b, loc, l))))
                                  .getResult()
                            : math::ExpOp::create(b, 
                                   loc, arith::SubFOp::create(b, loc, l, rowMax))
                                  .getResult();
              memref::StoreOp::create(b, loc, s, scores, e);
              scf::YieldOp::create(b, 
                  loc, ValueRange{arith::AddFOp::create(b, loc, acc[0], s)});
            });
        Value total = sumLoop.getResult(0);
        serialFor(b, loc, zero, expertCount,
                  [&](OpBuilder &b, Location loc, Value e) {
          Value s = memref::LoadOp::create(b, loc, scores, e);
          if (!sigmoid) {
            s = arith::DivFOp::create(b, loc, s, total);
            memref::StoreOp::create(b, loc, s, scores, e);
          }
          // Selection ranks biased scores; weights use unbiased ones.
          Value r = hasBias ? arith::AddFOp::create(b, 
                                   loc, s, memref::LoadOp::create(b, loc, bias, e))
                                  .getResult()
                            : s;
          memref::StoreOp::create(b, loc, r, rank, e);
        });
        if (groups > 1) {
          // A group ranks by the sum of its two best biased scores.
          Value groupScore = vectorOf(groups);
          serialFor(b, loc, zero, index(b, loc, groups),
                    [&](OpBuilder &b, Location loc, Value g) {
            Value begin = arith::MulIOp::create(b, loc, g, index(b, loc, perGroup));
            Value end = arith::AddIOp::create(b, loc, begin, index(b, loc, perGroup));
            auto loop = scf::ForOp::create(b, 
                loc, begin, end, one, ValueRange{negInf, negInf},
                [&](OpBuilder &b, Location loc, Value e, ValueRange best) {
                  Value r = memref::LoadOp::create(b, loc, rank, e);
                  Value above1 = arith::CmpFOp::create(b, 
                      loc, arith::CmpFPredicate::OGT, r, best[0]);
                  Value above2 = arith::CmpFOp::create(b, 
                      loc, arith::CmpFPredicate::OGT, r, best[1]);
                  Value first =
                      arith::SelectOp::create(b, loc, above1, r, best[0]);
                  Value second = arith::SelectOp::create(b, 
                      loc, above1, best[0],
                      arith::SelectOp::create(b, loc, above2, r, best[1]));
                  scf::YieldOp::create(b, loc, ValueRange{first, second});
                });
            memref::StoreOp::create(b, 
                loc,
                arith::AddFOp::create(b, loc, loop.getResult(0),
                                        loop.getResult(1)),
                groupScore, g);
          });
          // Keep the best groups: mark them +inf one by one, then drop the
          // experts of every group not marked.
          Value inf = f32(b, loc, std::numeric_limits<double>::infinity());
          serialFor(b, loc, zero, index(b, loc, keptGroups),
                    [&](OpBuilder &b, Location loc, Value) {
            // Already kept groups hold +inf; pick the best of the others.
            auto loop = scf::ForOp::create(b, 
                loc, zero, index(b, loc, groups), one,
                ValueRange{negInf, index(b, loc, groups)},
                [&](OpBuilder &b, Location loc, Value g, ValueRange best) {
                  Value v = memref::LoadOp::create(b, loc, groupScore, g);
                  Value candidate = arith::CmpFOp::create(b, 
                      loc, arith::CmpFPredicate::OLT, v, inf);
                  Value better = arith::AndIOp::create(b, 
                      loc, candidate,
                      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                              v, best[0]));
                  scf::YieldOp::create(b, 
                      loc, ValueRange{
                               arith::SelectOp::create(b, loc, better, v, best[0]),
                               arith::SelectOp::create(b, loc, better, g,
                                                         best[1])});
                });
            memref::StoreOp::create(b, loc, inf, groupScore, loop.getResult(1));
          });
          serialFor(b, loc, zero, expertCount,
                    [&](OpBuilder &b, Location loc, Value e) {
            Value g = arith::DivUIOp::create(b, loc, e, index(b, loc, perGroup));
            Value kept = arith::CmpFOp::create(b, 
                loc, arith::CmpFPredicate::OEQ,
                memref::LoadOp::create(b, loc, groupScore, g), inf);
            Value r = memref::LoadOp::create(b, loc, rank, e);
            memref::StoreOp::create(b, 
                loc, arith::SelectOp::create(b, loc, kept, r, negInf), rank, e);
          });
        }
        // Top-k, ties to the lowest index; chosen experts leave the race.
        auto pick = scf::ForOp::create(b, 
            loc, zero, index(b, loc, topK), one, ValueRange{f32(b, loc, 0.0)},
            [&](OpBuilder &b, Location loc, Value j, ValueRange acc) {
              Value e = argmax(b, loc, rank, zero, expertCount);
              memref::StoreOp::create(b, loc, negInf, rank, e);
              Value w = memref::LoadOp::create(b, loc, scores, e);
              memref::StoreOp::create(b, loc, w, weightsOut, ValueRange{t, j});
              memref::StoreOp::create(b, 
                  loc, arith::IndexCastOp::create(b, loc, b.getI32Type(), e),
                  indicesOut, ValueRange{t, j});
              scf::YieldOp::create(b, 
                  loc, ValueRange{arith::AddFOp::create(b, loc, acc[0], w)});
            });
        Value chosen = pick.getResult(0);
        Value divisor = normalize
                            ? arith::AddFOp::create(b, loc, chosen,
                                                      f32(b, loc, 1e-20))
                                  .getResult()
                            : f32(b, loc, 1.0);
        serialFor(b, loc, zero, index(b, loc, topK),
                  [&](OpBuilder &b, Location loc, Value j) {
          Value w = memref::LoadOp::create(b, loc, weightsOut, ValueRange{t, j});
          Value scaled = arith::MulFOp::create(b, 
              loc, arith::DivFOp::create(b, loc, w, divisor),
              f32(b, loc, factor));
          memref::StoreOp::create(b, loc, scaled, weightsOut, ValueRange{t, j});
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
    Value tokens = memref::DimOp::create(b, loc, x, 0);
    Value zero = index(b, loc, 0);
    serialFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      serialFor(b, loc, zero, index(b, loc, hidden),
                [&](OpBuilder &b, Location loc, Value n) {
        memref::StoreOp::create(b, loc, f32(b, loc, 0.0), out, ValueRange{t, n});
      });
      serialFor(b, loc, zero, index(b, loc, topK),
                [&](OpBuilder &b, Location loc, Value j) {
        Value e = arith::IndexCastOp::create(b, 
            loc, b.getIndexType(),
            memref::LoadOp::create(b, loc, routeIndices, ValueRange{t, j}));
        Value w = memref::LoadOp::create(b, loc, routeWeights, ValueRange{t, j});
        parallelFor(b, loc, zero, index(b, loc, inter),
                    [&](OpBuilder &b, Location loc, Value i) {
          Value g = scaledDot(b, loc, x, {t}, gate, {e, i}, hidden,
                              weight.format, lut, weight.blockScale, gateScale,
                              {e}, i);
          Value u = scaledDot(b, loc, x, {t}, up, {e, i}, hidden, weight.format,
                              lut, weight.blockScale, upScale, {e}, i);
          memref::StoreOp::create(b, 
              loc, arith::MulFOp::create(b, loc, silu(b, loc, g), u), scratch, i);
        });
        parallelFor(b, loc, zero, index(b, loc, hidden),
                    [&](OpBuilder &b, Location loc, Value n) {
          Value d = scaledDot(b, loc, scratch, {}, down, {e, n}, inter,
                              weight.format, lut, weight.blockScale, downScale,
                              {e}, n);
          Value old = memref::LoadOp::create(b, loc, out, ValueRange{t, n});
          memref::StoreOp::create(b, 
              loc, arith::AddFOp::create(b, loc, old,
                                           arith::MulFOp::create(b, loc, w, d)),
              out, ValueRange{t, n});
        });
      });
    });
  });
}
