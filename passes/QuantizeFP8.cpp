//===- QuantizeFP8.cpp - FP8 weights and dynamic activations ----*- C++ -*-===//
//
// Weight quantization is expressed in the IR (xfmr.quantize of an
// xfmr.weight) and evaluated at compile time when the weights are packed;
// activation quantization is a quantize/dequantize pair per linear input,
// which the lowering fuses into one pass over the activations.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_QUANTIZEFP8
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {

struct QuantizeSettings {
  std::string granularity;
  int64_t blockRows, blockCols, activationGroup;
  bool activations;
  Type element;
  SmallVector<std::string> keep;
};

bool isHighPrecision(Type type) {
  return type.isF32() || type.isBF16() || type.isF16();
}

/// The weight op behind `value` when it is a quantizable high-precision
/// weight not kept by name.
WeightOp quantizableWeight(Value value, const QuantizeSettings &settings) {
  auto weight = value.getDefiningOp<WeightOp>();
  if (!weight || !isHighPrecision(weight.getType().getElementType()))
    return {};
  for (const std::string &keep : settings.keep)
    if (weight.getName().contains(keep))
      return {};
  return weight;
}

/// The scale layout of a weight of shape [..., rows, cols].
ScaleLayoutAttr weightLayout(MLIRContext *context, ArrayRef<int64_t> shape,
                             const QuantizeSettings &settings) {
  int64_t rows = shape[shape.size() - 2], cols = shape.back();
  int64_t blockRows = settings.blockRows, blockCols = settings.blockCols;
  if (settings.granularity == "channel") {
    blockRows = 1;
    blockCols = cols;
  } else if (settings.granularity == "tensor") {
    blockRows = rows;
    blockCols = cols;
  }
  return ScaleLayoutAttr::get(context, ScaleKind::block, {blockRows, blockCols});
}

/// xfmr.quantize of a weight: FP8 codes and f32 scales.
std::pair<Value, Value> quantizeWeight(PatternRewriter &rewriter, Location loc,
                                       Value weight, ScaleLayoutAttr layout,
                                       const QuantizeSettings &settings) {
  auto type = cast<RankedTensorType>(weight.getType());
  auto codes = RankedTensorType::get(type.getShape(), settings.element);
  auto scales = RankedTensorType::get(layout.scaleShape(type.getShape()),
                                      rewriter.getF32Type());
  auto quantize = QuantizeOp::create(rewriter, loc, codes, scales, weight, layout);
  return {quantize.getResult(), quantize.getScale()};
}

/// Dynamic per-token, per-group quantization of a linear input.
Value quantizeActivations(PatternRewriter &rewriter, Location loc, Value input,
                          const QuantizeSettings &settings) {
  if (input.getDefiningOp<DequantizeOp>())
    return input; // already quantized
  auto type = cast<RankedTensorType>(input.getType());
  auto layout = ScaleLayoutAttr::get(rewriter.getContext(), ScaleKind::block,
                                     {1, settings.activationGroup});
  auto codes = RankedTensorType::get(type.getShape(), settings.element);
  auto scales = RankedTensorType::get(layout.scaleShape(type.getShape()),
                                      rewriter.getF32Type());
  auto quantize = QuantizeOp::create(rewriter, loc, codes, scales, input, layout);
  return DequantizeOp::create(rewriter, loc, type, quantize.getResult(),
                                       quantize.getScale(), layout);
}

struct QuantizeLinear : OpRewritePattern<LinearOp> {
  QuantizeLinear(MLIRContext *context, const QuantizeSettings &settings)
      : OpRewritePattern(context), settings(settings) {}

  LogicalResult matchAndRewrite(LinearOp linear,
                                PatternRewriter &rewriter) const override {
    WeightOp weight = quantizableWeight(linear.getWeight(), settings);
    bool nativeFP8 = linear.getScale() != Value();
    bool needsActivations =
        settings.activations && !linear.getInput().getDefiningOp<DequantizeOp>();
    if (!weight && !(nativeFP8 && needsActivations))
      return rewriter.notifyMatchFailure(linear, "nothing to quantize");
    Value input = linear.getInput(), w = linear.getWeight();
    Value scale = linear.getScale();
    ScaleLayoutAttr layout = linear.getScaleLayoutAttr();
    if (weight) {
      layout = weightLayout(getContext(), weight.getType().getShape(), settings);
      std::tie(w, scale) =
          quantizeWeight(rewriter, linear.getLoc(), w, layout, settings);
    }
    if (settings.activations)
      input = quantizeActivations(rewriter, linear.getLoc(), input, settings);
    rewriter.replaceOpWithNewOp<LinearOp>(linear, linear.getType(), input, w,
                                          linear.getBias(), scale, layout);
    return success();
  }

  QuantizeSettings settings;
};

struct QuantizeExperts : OpRewritePattern<MoEExpertsOp> {
  QuantizeExperts(MLIRContext *context, const QuantizeSettings &settings)
      : OpRewritePattern(context), settings(settings) {}

  LogicalResult matchAndRewrite(MoEExpertsOp experts,
                                PatternRewriter &rewriter) const override {
    Location loc = experts.getLoc();
    WeightOp gate = quantizableWeight(experts.getGateWeight(), settings);
    WeightOp up = quantizableWeight(experts.getUpWeight(), settings);
    WeightOp down = quantizableWeight(experts.getDownWeight(), settings);
    bool quantizeWeights = gate && up && down;
    bool nativeFP8 = static_cast<bool>(experts.getGateScale());
    bool addActivations = settings.activations &&
                          !experts.getActivationGroupAttr() &&
                          (quantizeWeights || nativeFP8);
    if (!quantizeWeights && !addActivations)
      return rewriter.notifyMatchFailure(experts, "nothing to quantize");

    Value weights[3] = {experts.getGateWeight(), experts.getUpWeight(),
                        experts.getDownWeight()};
    Value scales[3] = {experts.getGateScale(), experts.getUpScale(),
                       experts.getDownScale()};
    Value sharedWeights[3] = {experts.getSharedGate(), experts.getSharedUp(),
                              experts.getSharedDown()};
    Value sharedScales[3] = {experts.getSharedGateScale(),
                             experts.getSharedUpScale(),
                             experts.getSharedDownScale()};
    ScaleLayoutAttr layout = experts.getScaleLayoutAttr();
    if (quantizeWeights) {
      // One layout serves every stack (and a fused shared expert): blocks
      // as set, or for per-channel/per-tensor scales blocks covering the
      // widest row/matrix, which gives each stack one scale per row/matrix.
      ArrayRef<int64_t> shape = gate.getType().getShape();
      int64_t widest = std::max(shape[1], shape[2]);
      if (Value shared = experts.getSharedGate())
        widest = std::max(
            widest, cast<RankedTensorType>(shared.getType()).getDimSize(0));
      layout = weightLayout(getContext(), {widest, widest}, settings);
      WeightOp sources[3] = {gate, up, down};
      for (int i = 0; i < 3; ++i)
        std::tie(weights[i], scales[i]) =
            quantizeWeight(rewriter, loc, sources[i], layout, settings);
      // A fused shared expert shares the layout (block scales only); one
      // that cannot be quantized with it (kept, or already FP8) stays.
      if (sharedWeights[0] && !sharedScales[0]) {
        WeightOp shared[3];
        for (int i = 0; i < 3; ++i)
          shared[i] = quantizableWeight(sharedWeights[i], settings);
        if (shared[0] && shared[1] && shared[2])
          for (int i = 0; i < 3; ++i)
            std::tie(sharedWeights[i], sharedScales[i]) =
                quantizeWeight(rewriter, loc, shared[i], layout, settings);
      }
    }
    // DeepSeek-V3 quantizes the input of every FP8 linear: the experts'
    // input here, their SwiGLU outputs in the kernel (activation_group). A
    // fused shared expert kept in high precision must see the unquantized
    // input, so then activations stay as they are.
    Value input = experts.getInput();
    IntegerAttr group = experts.getActivationGroupAttr();
    if (addActivations && (!sharedWeights[0] || sharedScales[0])) {
      input = quantizeActivations(rewriter, loc, input, settings);
      group = rewriter.getI64IntegerAttr(settings.activationGroup);
    } else if (!quantizeWeights) {
      return rewriter.notifyMatchFailure(experts, "nothing to quantize");
    }
    rewriter.replaceOpWithNewOp<MoEExpertsOp>(
        experts, experts.getType(), input, experts.getWeights(),
        experts.getIndices(), weights[0], weights[1], weights[2], scales[0],
        scales[1], scales[2], sharedWeights[0], sharedWeights[1],
        sharedWeights[2], sharedScales[0], sharedScales[1], sharedScales[2],
        layout, group, experts.getDispatchAttr());
    return success();
  }

  QuantizeSettings settings;
};

struct QuantizeMLA : OpRewritePattern<MLAAttentionOp> {
  QuantizeMLA(MLIRContext *context, const QuantizeSettings &settings)
      : OpRewritePattern(context), settings(settings) {}

  LogicalResult matchAndRewrite(MLAAttentionOp mla,
                                PatternRewriter &rewriter) const override {
    WeightOp weight = quantizableWeight(mla.getKvBWeight(), settings);
    if (!weight)
      return rewriter.notifyMatchFailure(mla, "kv_b not quantizable");
    ScaleLayoutAttr layout =
        weightLayout(getContext(), weight.getType().getShape(), settings);
    std::pair<Value, Value> quantized =
        quantizeWeight(rewriter, mla.getLoc(), weight, layout, settings);
    Value w = quantized.first, scale = quantized.second;
    rewriter.modifyOpInPlace(mla, [&] {
      mla.getKvBWeightMutable().assign(w);
      mla.getScaleTensorMutable().assign(scale);
      mla.setScaleLayoutAttr(layout);
    });
    return success();
  }

  QuantizeSettings settings;
};

struct QuantizeFP8Pass : xfmr::impl::QuantizeFP8Base<QuantizeFP8Pass> {
  using QuantizeFP8Base::QuantizeFP8Base;

  void runOnOperation() override {
    MLIRContext *context = &getContext();
    QuantizeSettings settings;
    settings.granularity = granularity;
    settings.blockRows = blockRows;
    settings.blockCols = blockCols;
    settings.activations = activations;
    settings.activationGroup = activationGroup;
    if (granularity != "block" && granularity != "channel" &&
        granularity != "tensor") {
      getOperation()->emitError() << "xfmr-quantize-fp8: unknown granularity '"
                                  << granularity
                                  << "' (expected block, channel or tensor)";
      return signalPassFailure();
    }
    if (blockRows <= 0 || blockCols <= 0 || activationGroup <= 0) {
      getOperation()->emitError()
          << "xfmr-quantize-fp8: block sizes and the activation group must "
             "be positive";
      return signalPassFailure();
    }
    if (format == "e4m3fn")
      settings.element = Float8E4M3FNType::get(context);
    else if (format == "e4m3fnuz")
      settings.element = Float8E4M3FNUZType::get(context);
    else {
      getOperation()->emitError() << "xfmr-quantize-fp8: unknown format '"
                                  << format << "' (expected e4m3fn or e4m3fnuz)";
      return signalPassFailure();
    }
    if (keep.hasValue())
      settings.keep.assign(keep.begin(), keep.end());
    else
      settings.keep = {"embed_tokens", "lm_head"};

    RewritePatternSet patterns(context);
    patterns.add<QuantizeLinear, QuantizeExperts, QuantizeMLA>(context,
                                                               settings);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
