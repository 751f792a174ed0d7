//===- MoE.cpp - MoE routing and expert kernels -----------------*- C++ -*-===//
//
// Routing follows the models' definitions exactly (xfmr.moe_gate): scores,
// group ranking by the two best biased scores, top-k with ties to the lowest
// index, weights from unbiased scores. The expert kernel has three forms
// (xfmr.moe_experts' `dispatch`): dense (every expert over every token,
// weighted 0 where not routed), sparse (each token through its top-k
// experts: decode reads the active experts' weights only) and grouped
// (tokens sorted by expert, one tiled matrix product per selected expert).
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "llvm/Support/MathExtras.h"
#include "lowering/CPU/Kernels/MatmulTile.h"

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

func::FuncOp xfmr::kernels::moeRoute(KernelLibrary &lib,
                                     const MoERouteKernel &kernel) {
  MLIRContext *context = lib.getModule().getContext();
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
  return lib.get<MoERouteOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, MoERouteOperands<Value> args) {
    Value logits = args.logits, bias = args.bias;
    Value weightsOut = args.weights, indicesOut = args.indices;
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
              Value s;
              if (sigmoid) {
                // 1 / (1 + exp(-l))
                Value one = f32(b, loc, 1.0);
                Value negated = arith::NegFOp::create(b, loc, l);
                Value exp = math::ExpOp::create(b, loc, negated);
                Value denominator = arith::AddFOp::create(b, loc, one, exp);
                s = arith::DivFOp::create(b, loc, one, denominator);
              } else {
                Value shifted = arith::SubFOp::create(b, loc, l, rowMax);
                s = math::ExpOp::create(b, loc, shifted);
              }
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
            Value groupEnd = index(b, loc, groups);
            Value noGroup = index(b, loc, groups);
            auto loop = scf::ForOp::create(b, loc, zero, groupEnd, one,
                ValueRange{negInf, noGroup},
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
        Value pickEnd = index(b, loc, topK);
        Value noWeight = f32(b, loc, 0.0);
        auto pick = scf::ForOp::create(b, loc, zero, pickEnd, one,
            ValueRange{noWeight},
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
          Value normalized = arith::DivFOp::create(b, loc, w, divisor);
          Value scaled =
              arith::MulFOp::create(b, loc, normalized, f32(b, loc, factor));
          memref::StoreOp::create(b, loc, scaled, weightsOut, ValueRange{t, j});
        });
      });
    });
  });
}

namespace {

/// The operands of one expert SwiGLU over rows of a gathered input. Routed
/// experts index their stacks by expert; a shared expert has no stack.
struct ExpertMatmuls {
  Value gate, up, down, gateScale, upScale, downScale, table;
  int64_t inter, hidden;
  int64_t width; // KernelLibrary::vectorWidth()
  WeightOperand weight;
  bool stacked = true;
  /// FP8 activation groups of the SwiGLU output before the down projection.
  std::optional<int64_t> activationGroup;
};

/// For x rows [begin, end): hidden[r] = silu(x[r] . gate_e) * (x[r] . up_e)
/// and then `combine(r, n, hidden[r] . down_e[n])` for each output feature n.
/// Each product is register-tiled over the rows, so the expert's weights are
/// read once for all of them.
void emitExpert(OpBuilder &b, Location loc, const ExpertMatmuls &m, Value x,
                Value hidden, Value e, Value begin, Value end,
                const std::function<void(OpBuilder &, Location, Value, Value,
                                         Value)> &combine) {
  auto product = [&](Value input, Value w, Value scale, int64_t in,
                     int64_t out) {
    MatmulTile op;
    op.x = input;
    op.w = w;
    if (m.stacked)
      op.weightPrefix = {e};
    op.in = in;
    op.out = out;
    op.width = m.width;
    op.format = m.weight.format;
    op.table = m.table;
    op.blockScale = m.weight.blockScale;
    op.scale = scale;
    return op;
  };
  // Int4 experts quantize the SwiGLU output to int8 per token (W4A8).
  WeightFormat activationFormat =
      m.weight.format == WeightFormat::I4 ? WeightFormat::I8 : m.weight.format;
  MatmulTile gate = product(x, m.gate, m.gateScale, m.hidden, m.inter);
  gate.store = [&](OpBuilder &b, Location loc, Value r, Value i, Value g) {
    memref::StoreOp::create(b, loc, g, hidden, ValueRange{r, i});
  };
  emitMatmul(b, loc, gate, begin, end);
  MatmulTile up = product(x, m.up, m.upScale, m.hidden, m.inter);
  up.store = [&](OpBuilder &b, Location loc, Value r, Value i, Value u) {
    Value g = memref::LoadOp::create(b, loc, hidden, ValueRange{r, i});
    memref::StoreOp::create(b, loc,
                            arith::MulFOp::create(b, loc, silu(b, loc, g), u),
                            hidden, ValueRange{r, i});
  };
  emitMatmul(b, loc, up, begin, end);
  if (m.activationGroup)
    parallelFor(b, loc, begin, end, [&](OpBuilder &b, Location loc, Value r) {
      fakeQuantizeRow(b, loc, hidden, hidden, r, m.inter, *m.activationGroup,
                      activationFormat);
    });
  MatmulTile down = product(hidden, m.down, m.downScale, m.inter, m.hidden);
  down.store = combine;
  emitMatmul(b, loc, down, begin, end);
}

Value allocRows(OpBuilder &b, Location loc, Value rows, int64_t width,
                Type element) {
  return memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic, width}, element),
      ValueRange{rows}, b.getI64IntegerAttr(64));
}

/// out[t, n] += w * value.
void accumulate(OpBuilder &b, Location loc, Value out, Value t, Value n,
                Value w, Value value) {
  Value old = memref::LoadOp::create(b, loc, out, ValueRange{t, n});
  memref::StoreOp::create(
      b, loc,
      arith::AddFOp::create(b, loc, old,
                            arith::MulFOp::create(b, loc, w, value)),
      out, ValueRange{t, n});
}

Value loadIndex(OpBuilder &b, Location loc, Value memref, ValueRange at) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                    memref::LoadOp::create(b, loc, memref, at));
}

void increment(OpBuilder &b, Location loc, Value memref, Value at,
               Value amount) {
  Value old = memref::LoadOp::create(b, loc, memref, at);
  memref::StoreOp::create(b, loc, arith::AddIOp::create(b, loc, old, amount),
                          memref, at);
}
} // namespace

func::FuncOp xfmr::kernels::moeExperts(KernelLibrary &lib,
    const MoEExpertsKernel &kernel) {
  int64_t experts = kernel.experts;
  int64_t inter = kernel.inter;
  int64_t hidden = kernel.hidden;
  int64_t topK = kernel.topK;
  const WeightOperand &weight = kernel.weight;
  MoEDispatch dispatch = kernel.dispatch;
  std::optional<SharedExpert> shared = kernel.shared;
  std::optional<int64_t> activationGroup = kernel.activationGroup;
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context);
  Type i64Type = IntegerType::get(context, 64);
  Type storage = storageTypeOf(weight.format, context);
  auto tokensBy = [&](int64_t n, Type element) {
    return MemRefType::get({ShapedType::kDynamic, n}, element);
  };
  MoEExpertsOperands<Type> types;
  types.input = tokensBy(hidden, f32Type);
  types.weights = tokensBy(topK, f32Type);
  types.indices = tokensBy(topK, IntegerType::get(context, 32));
  // Int4 stacks: two codes a byte along each row (int4RowStorageShape),
  // with f16 group scales.
  bool int4 = weight.format == WeightFormat::I4;
  auto stored = [&](int64_t cols) {
    return int4 ? llvm::divideCeilSigned<int64_t>(cols, 2) : cols;
  };
  types.gate = MemRefType::get({experts, inter, stored(hidden)}, storage);
  types.up = MemRefType::get({experts, inter, stored(hidden)}, storage);
  types.down = MemRefType::get({experts, hidden, stored(inter)}, storage);
  if (weight.blockScale) {
    auto [rows, cols] = *weight.blockScale;
    Type scaleType = int4 ? Type(Float16Type::get(context)) : f32Type;
    types.gateScale = types.upScale =
        MemRefType::get({experts, llvm::divideCeilSigned(inter, rows),
                         llvm::divideCeilSigned(hidden, cols)},
                        scaleType);
    types.downScale =
        MemRefType::get({experts, llvm::divideCeilSigned(hidden, rows),
                         llvm::divideCeilSigned(inter, cols)},
                        scaleType);
  }
  std::string key = "moe_experts_" + std::to_string(experts) + "x" +
                    std::to_string(inter) + "x" + std::to_string(hidden) +
                    "_k" + std::to_string(topK) + "_" + weight.key() + "_" +
                    stringifyMoEDispatch(dispatch).str();
  if (activationGroup)
    key += "_act" + std::to_string(*activationGroup);
  if (shared) {
    Type sharedStorage = storageTypeOf(shared->weight.format, context);
    types.sharedGate = MemRefType::get({shared->inter, hidden}, sharedStorage);
    types.sharedUp = MemRefType::get({shared->inter, hidden}, sharedStorage);
    types.sharedDown = MemRefType::get({hidden, shared->inter}, sharedStorage);
    if (auto block = shared->weight.blockScale) {
      auto [rows, cols] = *block;
      types.sharedGateScale = types.sharedUpScale = MemRefType::get(
          {llvm::divideCeilSigned(shared->inter, rows),
           llvm::divideCeilSigned(hidden, cols)},
          f32Type);
      types.sharedDownScale = MemRefType::get(
          {llvm::divideCeilSigned(hidden, rows),
           llvm::divideCeilSigned(shared->inter, cols)},
          f32Type);
    }
    key +=
        "_shared" + std::to_string(shared->inter) + "_" + shared->weight.key();
  }
  types.counts = MemRefType::get({experts}, i64Type);
  types.output = tokensBy(hidden, f32Type);
  return lib.get<MoEExpertsOperands>(
      key, types,
      [&](OpBuilder &b, Location loc, MoEExpertsOperands<Value> args) {
    Value x = args.input, routeWeights = args.weights;
    Value routeIndices = args.indices;
    ExpertMatmuls m;
    m.gate = args.gate;
    m.up = args.up;
    m.down = args.down;
    m.gateScale = args.gateScale;
    m.upScale = args.upScale;
    m.downScale = args.downScale;
    m.width = lib.vectorWidth();
    m.inter = inter;
    m.hidden = hidden;
    m.weight = weight;
    m.activationGroup = activationGroup;
    m.table =
        isFP8(weight.format) ? lib.lookupTable(b, loc, weight.format) : Value();
    Value counts = args.counts, out = args.output;
    Value tokens = memref::DimOp::create(b, loc, x, 0);
    Value zero = index(b, loc, 0), one = index(b, loc, 1);
    Value k = index(b, loc, topK), expertCount = index(b, loc, experts);
    Value hiddenCount = index(b, loc, hidden);

    // Per-expert token counts for the runtime's statistics, and a zeroed
    // output to accumulate into.
    serialFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      serialFor(b, loc, zero, k, [&](OpBuilder &b, Location loc, Value j) {
        Value expert = loadIndex(b, loc, routeIndices, {t, j});
        Value one =
            arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(1));
        increment(b, loc, counts, expert, one);
      });
    });
    parallelFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      serialFor(b, loc, zero, hiddenCount,
                [&](OpBuilder &b, Location loc, Value n) {
                  memref::StoreOp::create(b, loc, f32(b, loc, 0.0), out,
                                          ValueRange{t, n});
                });
    });

    switch (dispatch) {
    case MoEDispatch::dense: {
      // Every expert over every token; a token's weight for an expert it
      // did not select is 0.
      Value dense = allocRows(b, loc, tokens, experts, f32Type);
      serialFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
        serialFor(b, loc, zero, expertCount,
                  [&](OpBuilder &b, Location loc, Value e) {
                    memref::StoreOp::create(b, loc, f32(b, loc, 0.0), dense,
                                            ValueRange{t, e});
                  });
        serialFor(b, loc, zero, k, [&](OpBuilder &b, Location loc, Value j) {
          Value e = loadIndex(b, loc, routeIndices, {t, j});
          Value w =
              memref::LoadOp::create(b, loc, routeWeights, ValueRange{t, j});
          Value old = memref::LoadOp::create(b, loc, dense, ValueRange{t, e});
          memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, w),
                                  dense, ValueRange{t, e});
        });
      });
      Value act = allocRows(b, loc, tokens, inter, f32Type);
      serialFor(
          b, loc, zero, expertCount, [&](OpBuilder &b, Location loc, Value e) {
            emitExpert(
                b, loc, m, x, act, e, zero, tokens,
                [&](OpBuilder &b, Location loc, Value t, Value n, Value v) {
                  Value w =
                      memref::LoadOp::create(b, loc, dense, ValueRange{t, e});
                  accumulate(b, loc, out, t, n, w, v);
                });
          });
      memref::DeallocOp::create(b, loc, act);
      memref::DeallocOp::create(b, loc, dense);
      break;
    }
    case MoEDispatch::sparse: {
      // Token by token, each of its experts over its one row.
      Value act = allocRows(b, loc, tokens, inter, f32Type);
      serialFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
        Value next = arith::AddIOp::create(b, loc, t, one);
        serialFor(b, loc, zero, k, [&](OpBuilder &b, Location loc, Value j) {
          Value e = loadIndex(b, loc, routeIndices, {t, j});
          Value w =
              memref::LoadOp::create(b, loc, routeWeights, ValueRange{t, j});
          emitExpert(b, loc, m, x, act, e, t, next,
                     [&](OpBuilder &b, Location loc, Value t, Value n,
                         Value v) { accumulate(b, loc, out, t, n, w, v); });
        });
      });
      memref::DeallocOp::create(b, loc, act);
      break;
    }
    case MoEDispatch::grouped: {
      // Counting sort of the (token, slot) pairs by expert: expert e owns
      // rows [begin[e], begin[e] + size[e]) of the gathered input.
      Value rows = arith::MulIOp::create(b, loc, tokens, k);
      auto vectorOf = [&](Value n, Type element) {
        return memref::AllocOp::create(
            b, loc, MemRefType::get({ShapedType::kDynamic}, element),
            ValueRange{n}, b.getI64IntegerAttr(64));
      };
      Type indexType = b.getIndexType();
      Value size = vectorOf(expertCount, indexType);
      Value begin = vectorOf(expertCount, indexType);
      Value fill = vectorOf(expertCount, indexType);
      serialFor(b, loc, zero, expertCount,
                [&](OpBuilder &b, Location loc, Value e) {
                  memref::StoreOp::create(b, loc, zero, size, e);
                });
      serialFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
        serialFor(b, loc, zero, k, [&](OpBuilder &b, Location loc, Value j) {
          increment(b, loc, size, loadIndex(b, loc, routeIndices, {t, j}), one);
        });
      });
      // Exclusive prefix sum of the sizes: each expert's first row.
      scf::ForOp::create(
          b, loc, zero, expertCount, one, ValueRange{zero},
          [&](OpBuilder &b, Location loc, Value e, ValueRange acc) {
            memref::StoreOp::create(b, loc, acc[0], begin, e);
            memref::StoreOp::create(b, loc, acc[0], fill, e);
            scf::YieldOp::create(
                b, loc,
                ValueRange{arith::AddIOp::create(
                    b, loc, acc[0], memref::LoadOp::create(b, loc, size, e))});
          });
      Value rowToken = vectorOf(rows, indexType);
      Value rowWeight = vectorOf(rows, f32Type);
      serialFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
        serialFor(b, loc, zero, k, [&](OpBuilder &b, Location loc, Value j) {
          Value e = loadIndex(b, loc, routeIndices, {t, j});
          Value r = memref::LoadOp::create(b, loc, fill, e);
          memref::StoreOp::create(b, loc, t, rowToken, r);
          memref::StoreOp::create(
              b, loc,
              memref::LoadOp::create(b, loc, routeWeights, ValueRange{t, j}),
              rowWeight, r);
          memref::StoreOp::create(b, loc, arith::AddIOp::create(b, loc, r, one),
                                  fill, e);
        });
      });
      Value gathered = allocRows(b, loc, rows, hidden, f32Type);
      parallelFor(b, loc, zero, rows, [&](OpBuilder &b, Location loc, Value r) {
        Value t = memref::LoadOp::create(b, loc, rowToken, r);
        serialFor(b, loc, zero, hiddenCount,
                  [&](OpBuilder &b, Location loc, Value n) {
                    memref::StoreOp::create(
                        b, loc,
                        memref::LoadOp::create(b, loc, x, ValueRange{t, n}),
                        gathered, ValueRange{r, n});
                  });
      });
      Value act = allocRows(b, loc, rows, inter, f32Type);
      serialFor(
          b, loc, zero, expertCount, [&](OpBuilder &b, Location loc, Value e) {
            Value first = memref::LoadOp::create(b, loc, begin, e);
            Value n = memref::LoadOp::create(b, loc, size, e);
            Value used = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::ugt, n, zero);
            // Experts no token chose are skipped: their weights are never read.
            scf::IfOp::create(b, loc, used, [&](OpBuilder &b, Location loc) {
              emitExpert(
                  b, loc, m, gathered, act, e, first,
                  arith::AddIOp::create(b, loc, first, n),
                  [&](OpBuilder &b, Location loc, Value r, Value col, Value v) {
                    // A token selects an expert once: rows of one expert never
                    // share a token, so the parallel columns do not race.
                    Value token = memref::LoadOp::create(b, loc, rowToken, r);
                    Value weight = memref::LoadOp::create(b, loc, rowWeight, r);
                    accumulate(b, loc, out, token, col, weight, v);
                  });
              scf::YieldOp::create(b, loc);
            });
          });
      for (Value buffer :
           {act, gathered, rowWeight, rowToken, fill, begin, size})
        memref::DeallocOp::create(b, loc, buffer);
      break;
    }
    }

    // The shared expert: every token, weight 1, whatever the dispatch.
    if (shared) {
      ExpertMatmuls s;
      s.gate = args.sharedGate;
      s.up = args.sharedUp;
      s.down = args.sharedDown;
      s.gateScale = args.sharedGateScale;
      s.upScale = args.sharedUpScale;
      s.downScale = args.sharedDownScale;
      s.width = lib.vectorWidth();
      s.inter = shared->inter;
      s.hidden = hidden;
      s.weight = shared->weight;
      s.stacked = false;
      // A quantized shared expert quantizes its SwiGLU output as the
      // routed ones do (it was a W8A8 or FP8 linear before fusion).
      if (isFP8(shared->weight.format) ||
          shared->weight.format == WeightFormat::I8)
        s.activationGroup = activationGroup;
      s.table = isFP8(shared->weight.format)
                    ? lib.lookupTable(b, loc, shared->weight.format)
                    : Value();
      Value act = allocRows(b, loc, tokens, shared->inter, f32Type);
      emitExpert(
          b, loc, s, x, act, Value(), zero, tokens,
          [&](OpBuilder &b, Location loc, Value t, Value n, Value v) {
            Value old = memref::LoadOp::create(b, loc, out, ValueRange{t, n});
            memref::StoreOp::create(b, loc,
                                    arith::AddFOp::create(b, loc, old, v), out,
                                    ValueRange{t, n});
          });
      memref::DeallocOp::create(b, loc, act);
    }
  });
}
