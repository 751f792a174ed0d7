//===- FuseSharedExperts.cpp - shared SwiGLU into moe_experts ---*- C++ -*-===//
//
// add(moe_experts(x), down(swiglu(gate(x), up(x)))) -> moe_experts(x) with
// shared(gate, up, down): the routed and shared experts run in one kernel.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_FUSESHAREDEXPERTS
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {
/// The quantize of a dynamically quantized activation
/// (xfmr.dequantize(xfmr.quantize(x))), or null.
QuantizeOp activationQuantize(Value value) {
  auto dequantize = value.getDefiningOp<DequantizeOp>();
  return dequantize ? dequantize.getInput().getDefiningOp<QuantizeOp>()
                    : QuantizeOp();
}

/// Whether `a` and `b` are the same value, or the same activation quantized
/// the same way (FP8 inserts one quantization per linear).
bool sameActivation(Value a, Value b) {
  if (a == b)
    return true;
  QuantizeOp qa = activationQuantize(a), qb = activationQuantize(b);
  return qa && qb && qa.getInput() == qb.getInput() &&
         qa.getLayout() == qb.getLayout() && qa.getType(0) == qb.getType(0);
}

/// A bias-free linear of `input` (or of the same activation quantized the
/// same way) used only once, or null.
LinearOp plainLinearOf(Value value, Value input) {
  auto linear = value.getDefiningOp<LinearOp>();
  if (!linear || linear.getBias() || !linear->hasOneUse() ||
      !sameActivation(linear.getInput(), input))
    return {};
  return linear;
}

/// What the shared down projection reads: the SwiGLU, quantized per token in
/// groups of the experts' `activation_group` when they have one.
SwiGLUOp swigluOfDownInput(Value input, MoEExpertsOp experts) {
  std::optional<uint64_t> group = experts.getActivationGroup();
  if (!group)
    return input.getDefiningOp<SwiGLUOp>();
  QuantizeOp quantize = activationQuantize(input);
  if (!quantize || !input.hasOneUse())
    return {};
  ArrayRef<int64_t> block = quantize.getLayout().getBlock();
  auto layoutOk = quantize.getLayout().getKind() == ScaleKind::block &&
                  block.size() == 2 && block[0] == 1 &&
                  block[1] == static_cast<int64_t>(*group) &&
                  quantize.getResult().getType().getElementType() ==
                      experts.getGateWeight().getType().getElementType();
  return layoutOk ? quantize.getInput().getDefiningOp<SwiGLUOp>() : SwiGLUOp();
}

struct FoldSharedExpert : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(AddOp add,
                                PatternRewriter &rewriter) const override {
    // The add is commutative: the routed experts may sit on either side.
    for (auto [routedSide, sharedSide] :
         {std::pair(add.getLhs(), add.getRhs()),
          std::pair(add.getRhs(), add.getLhs())}) {
      auto experts = routedSide.getDefiningOp<MoEExpertsOp>();
      if (!experts || !experts->hasOneUse() || experts.getSharedGate())
        continue;
      auto down = sharedSide.getDefiningOp<LinearOp>();
      if (!down || down.getBias() || !down->hasOneUse())
        continue;
      SwiGLUOp swiglu = swigluOfDownInput(down.getInput(), experts);
      if (!swiglu || !swiglu->hasOneUse())
        continue;
      Value x = experts.getInput();
      LinearOp gate = plainLinearOf(swiglu.getGate(), x);
      LinearOp up = plainLinearOf(swiglu.getUp(), x);
      if (!gate || !up || gate == up)
        continue;
      // Int4 shared weights (xfmr-quantize-int4) stay linears: the MoE
      // kernels' fused shared-expert path reads no int4.
      if (llvm::any_of(
              std::initializer_list<LinearOp>{gate, up, down},
              [](LinearOp linear) {
                return linear.getWeight().getType().getElementType().isInteger(
                    4);
              }))
        continue;
      // FP8 shared weights must use the routed experts' scale layout.
      ScaleLayoutAttr layout = experts.getScaleLayoutAttr();
      bool scaled = gate.getScale() && up.getScale() && down.getScale();
      bool unscaled = !gate.getScale() && !up.getScale() && !down.getScale();
      if (!(unscaled || (scaled && gate.getScaleLayoutAttr() == layout &&
                         up.getScaleLayoutAttr() == layout &&
                         down.getScaleLayoutAttr() == layout)))
        continue;
      if (scaled && !layout)
        continue;
      // Quantized activations imply FP8 shared weights, as for the experts.
      if (experts.getActivationGroup() && !scaled)
        continue;
      rewriter.replaceOpWithNewOp<MoEExpertsOp>(
          add, add.getType(), x, experts.getWeights(), experts.getIndices(),
          experts.getGateWeight(), experts.getUpWeight(),
          experts.getDownWeight(), experts.getGateScale(), experts.getUpScale(),
          experts.getDownScale(), gate.getWeight(), up.getWeight(),
          down.getWeight(), gate.getScale(), up.getScale(), down.getScale(),
          layout, experts.getActivationGroupAttr(), experts.getDispatchAttr());
      return success();
    }
    return rewriter.notifyMatchFailure(add, "not routed + shared experts");
  }
};

struct FuseSharedExpertsPass
    : xfmr::impl::FuseSharedExpertsBase<FuseSharedExpertsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateFuseSharedExpertsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void xfmr::populateFuseSharedExpertsPatterns(RewritePatternSet &patterns) {
  patterns.add<FoldSharedExpert>(patterns.getContext());
}
