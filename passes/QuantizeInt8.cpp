//===- QuantizeInt8.cpp - W8A8: int8 weights and activations ----*- C++ -*-===//
//
// SmoothQuant-style W8A8 without smoothing, for CPUs: every linear weight
// gets one scale per output channel (evaluated at compile time when the
// weights are packed, like FP8's), and every linear input one scale per
// token (a quantize/dequantize pair the CPU lowering fuses into the integer
// product). Both scales are max-abs / 127, codes round to nearest even.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <algorithm>

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_QUANTIZEINT8
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {

/// The widest input whose int32 sums cannot overflow: the CPU kernels add
/// products of at most 255 x 127 (code + 128 against a code, see
/// lowering/CPU/Kernels/Int8PanelLinear.h) in 32 bits.
constexpr int64_t kMaxInputs = 65536;

/// One scale per row of a [rows, cols] tensor.
ScaleLayoutAttr rowLayout(MLIRContext *context, int64_t cols) {
  return ScaleLayoutAttr::get(context, ScaleKind::block, {1, cols});
}

struct QuantizeLinearInt8 : OpRewritePattern<LinearOp> {
  QuantizeLinearInt8(MLIRContext *context, ArrayRef<std::string> keep)
      : OpRewritePattern(context), keep(keep) {}

  LogicalResult matchAndRewrite(LinearOp linear,
                                PatternRewriter &rewriter) const override {
    auto weight = linear.getWeight().getDefiningOp<WeightOp>();
    if (!weight || linear.getScale())
      return rewriter.notifyMatchFailure(linear, "not a checkpoint weight");
    if (StringRef why = whyKeptForIntegerCodes(weight, keep); !why.empty())
      return rewriter.notifyMatchFailure(linear, why);
    if (linear.getInput().getDefiningOp<DequantizeOp>())
      return rewriter.notifyMatchFailure(linear, "input already quantized");
    auto inputType = cast<RankedTensorType>(linear.getInput().getType());
    if (inputType.getRank() != 2)
      return rewriter.notifyMatchFailure(linear, "not a [tokens, in] input");
    ArrayRef<int64_t> shape = weight.getType().getShape();
    int64_t out = shape[0], in = shape[1];
    if (in > kMaxInputs)
      return rewriter.notifyMatchFailure(linear, "too many inputs for int32");

    Location loc = linear.getLoc();
    MLIRContext *context = getContext();
    Type i8 = rewriter.getI8Type(), f32 = rewriter.getF32Type();
    ScaleLayoutAttr layout = rowLayout(context, in);
    auto weightQuantize = QuantizeOp::create(
        rewriter, loc, RankedTensorType::get(shape, i8),
        RankedTensorType::get({out, 1}, f32), weight, layout);
    Value input = quantizeTokensInt8(rewriter, loc, linear.getInput());
    rewriter.replaceOpWithNewOp<LinearOp>(
        linear, linear.getType(), input, weightQuantize.getResult(),
        linear.getBias(), weightQuantize.getScale(), layout);
    return success();
  }

  SmallVector<std::string> keep;
};

/// Routed experts (`xfmr.moe_experts` without a fused shared expert): their
/// stacked weights get one scale per row of each expert's matrix (one block
/// as wide as the widest row), their input one per token, and each expert's
/// SwiGLU output one per token (activation_group = the intermediate size).
struct QuantizeExpertsInt8 : OpRewritePattern<MoEExpertsOp> {
  QuantizeExpertsInt8(MLIRContext *context, ArrayRef<std::string> keep)
      : OpRewritePattern(context), keep(keep) {}

  LogicalResult matchAndRewrite(MoEExpertsOp experts,
                                PatternRewriter &rewriter) const override {
    if (StringRef why = whyExpertsKept(experts, keep); !why.empty())
      return rewriter.notifyMatchFailure(experts, why);
    ArrayRef<int64_t> gate = experts.getGateWeight().getType().getShape();
    int64_t inter = gate[1], hidden = gate[2];
    if (std::max(inter, hidden) > kMaxInputs)
      return rewriter.notifyMatchFailure(experts, "too many inputs for int32");
    replaceWithQuantizedExperts(
        rewriter, experts, rewriter.getI8Type(), rewriter.getF32Type(),
        rowLayout(getContext(), std::max(inter, hidden)));
    return success();
  }

  SmallVector<std::string> keep;
};

struct QuantizeInt8Pass : xfmr::impl::QuantizeInt8Base<QuantizeInt8Pass> {
  using QuantizeInt8Base::QuantizeInt8Base;

  void runOnOperation() override {
    MLIRContext *context = &getContext();
    SmallVector<std::string> names;
    if (keep.hasValue())
      names.assign(keep.begin(), keep.end());
    else
      names = {"embed_tokens", "lm_head"};
    RewritePatternSet patterns(context);
    populateQuantizeInt8Patterns(patterns, names);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace

Value xfmr::quantizeTokensInt8(PatternRewriter &rewriter, Location loc,
                               Value input) {
  auto type = cast<RankedTensorType>(input.getType());
  ScaleLayoutAttr layout = rowLayout(rewriter.getContext(), type.getDimSize(1));
  auto quantize = QuantizeOp::create(
      rewriter, loc,
      RankedTensorType::get(type.getShape(), rewriter.getI8Type()),
      RankedTensorType::get({type.getDimSize(0), 1}, rewriter.getF32Type()),
      input, layout);
  return DequantizeOp::create(rewriter, loc, type, quantize.getResult(),
                              quantize.getScale(), layout);
}

StringRef xfmr::whyExpertsKept(MoEExpertsOp experts,
                               ArrayRef<std::string> keep) {
  if (experts.getGateScale() || experts.getSharedGate() ||
      experts.getInput().getDefiningOp<DequantizeOp>())
    return "already quantized";
  for (Value stack : {experts.getGateWeight(), experts.getUpWeight(),
                      experts.getDownWeight()}) {
    auto weight = stack.getDefiningOp<WeightOp>();
    if (!weight)
      return "not checkpoint weights";
    if (StringRef why = whyKeptForIntegerCodes(weight, keep); !why.empty())
      return why;
  }
  return "";
}

void xfmr::replaceWithQuantizedExperts(PatternRewriter &rewriter,
                                       MoEExpertsOp experts, Type codeType,
                                       Type scaleType, ScaleLayoutAttr layout) {
  Location loc = experts.getLoc();
  Value codes[3], scales[3];
  Value stacks[3] = {experts.getGateWeight(), experts.getUpWeight(),
                     experts.getDownWeight()};
  for (int i = 0; i < 3; ++i) {
    ArrayRef<int64_t> shape =
        cast<RankedTensorType>(stacks[i].getType()).getShape();
    auto quantize = QuantizeOp::create(
        rewriter, loc, RankedTensorType::get(shape, codeType),
        RankedTensorType::get(layout.scaleShape(shape), scaleType), stacks[i],
        layout);
    codes[i] = quantize.getResult();
    scales[i] = quantize.getScale();
  }
  Value input = quantizeTokensInt8(rewriter, loc, experts.getInput());
  int64_t inter = experts.getGateWeight().getType().getDimSize(1);
  rewriter.replaceOpWithNewOp<MoEExpertsOp>(
      experts, experts.getType(), input, experts.getWeights(),
      experts.getIndices(), codes[0], codes[1], codes[2], scales[0], scales[1],
      scales[2], Value(), Value(), Value(), Value(), Value(), Value(), layout,
      rewriter.getI64IntegerAttr(inter), experts.getDispatchAttr());
}

StringRef xfmr::whyKeptForIntegerCodes(WeightOp weight,
                                       ArrayRef<std::string> keep) {
  Type element = weight.getType().getElementType();
  if (!element.isF32() && !element.isBF16() && !element.isF16())
    return "not a high-precision weight";
  for (const std::string &name : keep)
    if (weight.getName().contains(name))
      return "kept by name";
  return "";
}

void xfmr::populateQuantizeInt8Patterns(RewritePatternSet &patterns,
                                        ArrayRef<std::string> keep) {
  patterns.add<QuantizeLinearInt8, QuantizeExpertsInt8>(patterns.getContext(),
                                                        keep);
}
