//===- QuantizeInt4.cpp - W4A8: group-wise int4 weights ---------*- C++ -*-===//
//
// Group-wise symmetric 4-bit weights for CPUs, as llama.cpp's Q4_0 x Q8_0:
// every linear weight gets one f16 scale per output channel and group of
// `group` inputs (evaluated at compile time when the weights are packed),
// and every linear input one scale per token, the same quantize/dequantize
// pair xfmr-quantize-int8 makes, which the CPU lowering fuses into the
// integer products.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_QUANTIZEINT4
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {

struct QuantizeLinearInt4 : OpRewritePattern<LinearOp> {
  QuantizeLinearInt4(MLIRContext *context, int64_t group,
                     ArrayRef<std::string> keep)
      : OpRewritePattern(context), group(group), keep(keep) {}

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
    if (inputType.getRank() != 2 || weight.getType().getRank() != 2)
      return rewriter.notifyMatchFailure(linear, "not a [tokens, in] input");
    ArrayRef<int64_t> shape = weight.getType().getShape();
    int64_t out = shape[0], in = shape[1];

    Location loc = linear.getLoc();
    MLIRContext *context = getContext();
    auto weightLayout =
        ScaleLayoutAttr::get(context, ScaleKind::block, {1, group});
    auto weightQuantize = QuantizeOp::create(
        rewriter, loc, RankedTensorType::get(shape, rewriter.getIntegerType(4)),
        RankedTensorType::get({out, llvm::divideCeilSigned(in, group)},
                              rewriter.getF16Type()),
        weight, weightLayout);
    Value input = quantizeTokensInt8(rewriter, loc, linear.getInput());
    rewriter.replaceOpWithNewOp<LinearOp>(
        linear, linear.getType(), input, weightQuantize.getResult(),
        linear.getBias(), weightQuantize.getScale(), weightLayout);
    return success();
  }

  int64_t group;
  SmallVector<std::string> keep;
};

/// Routed experts (`xfmr.moe_experts` without a fused shared expert): their
/// stacked weights get an f16 scale per row and group of `group` inputs,
/// as the linears do; their input and each expert's SwiGLU output one int8
/// scale per token, as in xfmr-quantize-int8. The expert kernels scale each
/// 16-weight vector as they load it, so the group must be a multiple of 16
/// (other groups leave the experts to the int8 patterns).
struct QuantizeExpertsInt4 : OpRewritePattern<MoEExpertsOp> {
  QuantizeExpertsInt4(MLIRContext *context, int64_t group,
                      ArrayRef<std::string> keep)
      : OpRewritePattern(context), group(group), keep(keep) {}

  LogicalResult matchAndRewrite(MoEExpertsOp experts,
                                PatternRewriter &rewriter) const override {
    if (group % kInt4ExpertGroupMultiple != 0)
      return rewriter.notifyMatchFailure(experts, "groups of partial vectors");
    if (StringRef why = whyExpertsKept(experts, keep); !why.empty())
      return rewriter.notifyMatchFailure(experts, why);
    replaceWithQuantizedExperts(
        rewriter, experts, rewriter.getIntegerType(4), rewriter.getF16Type(),
        ScaleLayoutAttr::get(getContext(), ScaleKind::block, {1, group}));
    return success();
  }

  int64_t group;
  SmallVector<std::string> keep;
};

struct QuantizeInt4Pass : xfmr::impl::QuantizeInt4Base<QuantizeInt4Pass> {
  using QuantizeInt4Base::QuantizeInt4Base;

  void runOnOperation() override {
    // Whole groups of 8 inputs: the kernels read a group as whole 32-bit
    // words of 8 nibbles.
    if (group < 8 || group % 8 != 0 || group > 65536) {
      getOperation()->emitError()
          << "xfmr-quantize-int4: the group must be a multiple of 8 in [8, "
             "65536], got "
          << int64_t(group);
      return signalPassFailure();
    }
    if (experts != "int4" && experts != "int8") {
      getOperation()->emitError()
          << "xfmr-quantize-int4: experts must be int4 or int8, got '"
          << experts << "'";
      return signalPassFailure();
    }
    if (head != "int8" && head != "int4" && head != "keep") {
      getOperation()->emitError()
          << "xfmr-quantize-int4: head must be int8, int4 or keep, got '"
          << head << "'";
      return signalPassFailure();
    }
    MLIRContext *context = &getContext();
    SmallVector<std::string> names;
    if (keep.hasValue())
      names.assign(keep.begin(), keep.end());
    else
      names = {"embed_tokens"};
    // A tied LM head reads the embedding table, whose name is kept: its
    // linear gets the head's quantization anyway (a copy of the table's
    // codes; the embedding keeps the table), since decode reads all of it
    // every token.
    SmallVector<Operation *> tiedHeads;
    getOperation()->walk([&](LinearOp linear) {
      auto weight = linear.getWeight().getDefiningOp<WeightOp>();
      if (weight && llvm::any_of(weight->getUsers(), [](Operation *user) {
            return isa<EmbeddingOp>(user);
          }))
        tiedHeads.push_back(linear);
    });
    if (head != "keep" && !tiedHeads.empty()) {
      RewritePatternSet tiedPatterns(context);
      if (head == "int4")
        tiedPatterns.add<QuantizeLinearInt4>(context, group,
                                             ArrayRef<std::string>{});
      else
        populateQuantizeInt8Patterns(tiedPatterns, {});
      GreedyRewriteConfig config;
      config.setStrictness(GreedyRewriteStrictness::ExistingOps);
      if (failed(applyOpPatternsGreedily(tiedHeads, std::move(tiedPatterns),
                                         config)))
        return signalPassFailure();
    }
    // int4 next, for everything but the kept names and (unless head=int4)
    // the LM head.
    // head=keep: a tied head keeps its table as well.
    if (head == "keep")
      for (Operation *linear : tiedHeads) {
        auto weight =
            cast<LinearOp>(linear).getWeight().getDefiningOp<WeightOp>();
        names.push_back(weight.getName().str());
      }
    SmallVector<std::string> int4Keep = names;
    if (head != "int4")
      int4Keep.push_back("lm_head");
    RewritePatternSet int4Patterns(context);
    int4Patterns.add<QuantizeLinearInt4>(context, group, int4Keep);
    if (experts == "int4")
      int4Patterns.add<QuantizeExpertsInt4>(context, group, int4Keep);
    if (failed(applyPatternsGreedily(getOperation(), std::move(int4Patterns))))
      return signalPassFailure();
    // Then int8 (W8A8) for what int4 left in high precision: the LM head
    // (head=int8), and the routed experts with experts=int8 or when the
    // group is not a multiple of 16.
    SmallVector<std::string> int8Keep = names;
    if (head == "keep")
      int8Keep.push_back("lm_head");
    RewritePatternSet int8Patterns(context);
    populateQuantizeInt8Patterns(int8Patterns, int8Keep);
    if (failed(applyPatternsGreedily(getOperation(), std::move(int8Patterns))))
      signalPassFailure();
  }
};

} // namespace
