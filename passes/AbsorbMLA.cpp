//===- AbsorbMLA.cpp - latent caches for MLA --------------------*- C++ -*-===//
//
// A type conversion: the caches MLA ops use become latent caches whose sizes
// come from the ops (latent rank, rotary dim). Function signatures, the MLA
// ops and returns follow through the conversion framework.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Func/Transforms/FuncConversions.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_ABSORBMLA
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {

struct ConvertMLACache : OpConversionPattern<MLAAttentionOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(MLAAttentionOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Type cache = getTypeConverter()->convertType(op.getCache().getType());
    if (!cache)
      return failure();
    rewriter.replaceOpWithNewOp<MLAAttentionOp>(
        op, op.getOutput().getType(), cache, adaptor.getQuery(),
        adaptor.getLatent(), adaptor.getRopeKey(), adaptor.getKvBWeight(),
        adaptor.getScaleTensor(), adaptor.getCache(), adaptor.getStart(),
        op.getScaleAttr(), op.getScaleLayoutAttr(), op.getSlidingWindowAttr(),
        op.getSinksAttr());
    return success();
  }
};

/// `config` rotating all channels of a head from channel 0 (the rope query
/// split off from the no-rope channels).
RopeAttr wholeHeadRope(RopeAttr config) {
  return RopeAttr::get(
      config.getContext(), config.getTheta(), config.getStyle(),
      /*rotary_dim=*/0, /*rotary_offset=*/0, config.getScaling(),
      config.getFactor(), config.getOriginalMaxPositions(),
      config.getLowFreqFactor(), config.getHighFreqFactor(),
      config.getBetaFast(), config.getBetaSlow(), config.getMscale(),
      config.getMscaleAllDim());
}

/// A high-precision checkpoint weight (what the packer can fold), or null.
WeightOp foldableWeight(Value value) {
  auto weight = value.getDefiningOp<WeightOp>();
  if (!weight)
    return {};
  Type element = weight.getType().getElementType();
  return element.isF32() || element.isBF16() || element.isF16() ? weight
                                                                : WeightOp();
}

/// mla_attention over a latent cache, fed by linear -> split_heads -> rope
/// and read by merge_heads -> linear: the query projection gets W_UK and
/// o_proj gets W_UV folded in (xfmr.fold_mla_weight), attention becomes
/// xfmr.mla_latent_attention.
struct FoldAbsorbedProducts : OpRewritePattern<MLAAttentionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MLAAttentionOp op,
                                PatternRewriter &rewriter) const override {
    auto cache = dyn_cast<LatentCacheType>(op.getCache().getType());
    if (!cache)
      return rewriter.notifyMatchFailure(op, "expanded cache");
    auto rope = op.getQuery().getDefiningOp<RopeOp>();
    auto split =
        rope ? rope.getInput().getDefiningOp<SplitHeadsOp>() : SplitHeadsOp();
    auto query =
        split ? split.getInput().getDefiningOp<LinearOp>() : LinearOp();
    if (!query || query.getBias() || query.getScale() || !rope->hasOneUse() ||
        !split->hasOneUse() || !query->hasOneUse())
      return rewriter.notifyMatchFailure(
          op, "query is not linear -> heads -> rope");
    if (!op.getOutput().hasOneUse())
      return rewriter.notifyMatchFailure(op, "output read more than once");
    auto merge = dyn_cast<MergeHeadsOp>(*op.getOutput().getUsers().begin());
    auto output = merge && merge->hasOneUse()
                      ? dyn_cast<LinearOp>(*merge->getUsers().begin())
                      : LinearOp();
    if (!output || output.getScale())
      return rewriter.notifyMatchFailure(op, "output is not heads -> linear");
    WeightOp queryWeight = foldableWeight(query.getWeight());
    WeightOp kvB = foldableWeight(op.getKvBWeight());
    WeightOp outputWeight = foldableWeight(output.getWeight());
    if (!queryWeight || !kvB || !outputWeight || op.getScaleTensor())
      return rewriter.notifyMatchFailure(op, "weights are not high precision");

    Location loc = op.getLoc();
    int64_t heads = op.getQuery().getType().getDimSize(1);
    int64_t ropeDim = cache.getRopeDim(), rank = cache.getLatentDim();
    int64_t nope = op.getQuery().getType().getDimSize(2) - ropeDim;
    int64_t valueDim = op.getOutput().getType().getDimSize(2);
    int64_t in = queryWeight.getType().getDimSize(1);
    int64_t hidden = outputWeight.getType().getDimSize(0);
    // Each folded weight keeps its source's precision (bf16 stays bf16).
    auto fold = [&](WeightOp weight, Value kvBValue, MLAFold kind,
                    ArrayRef<int64_t> shape) {
      return FoldMLAWeightOp::create(
          rewriter, loc,
          RankedTensorType::get(shape, weight.getType().getElementType()),
          weight, kvBValue, MLAFoldAttr::get(rewriter.getContext(), kind),
          rewriter.getI64IntegerAttr(heads), rewriter.getI64IntegerAttr(nope),
          rewriter.getI64IntegerAttr(ropeDim),
          rewriter.getI64IntegerAttr(valueDim));
    };
    Value x = query.getInput();
    Type element = query.getType().getElementType();
    int64_t tokens = query.getType().getDimSize(0);
    auto act = [&](ArrayRef<int64_t> trailing) {
      SmallVector<int64_t> shape{tokens};
      shape.append(trailing.begin(), trailing.end());
      return RankedTensorType::get(shape, element);
    };
    rewriter.setInsertionPoint(op);
    Value wLatent =
        fold(queryWeight, kvB, MLAFold::query_latent, {heads * rank, in});
    Value wRope =
        fold(queryWeight, Value(), MLAFold::query_rope, {heads * ropeDim, in});
    Value queryLatent = SplitHeadsOp::create(
        rewriter, loc, act({heads, rank}),
        LinearOp::create(rewriter, loc, act({heads * rank}), x, wLatent,
                         Value(), Value(), ScaleLayoutAttr()));
    Value queryRope = RopeOp::create(
        rewriter, loc,
        SplitHeadsOp::create(
            rewriter, loc, act({heads, ropeDim}),
            LinearOp::create(rewriter, loc, act({heads * ropeDim}), x, wRope,
                             Value(), Value(), ScaleLayoutAttr())),
        rope.getStart(), wholeHeadRope(rope.getConfig()));
    auto attention = MLALatentAttentionOp::create(
        rewriter, loc, act({heads, rank}), cache, queryLatent, queryRope,
        op.getLatent(), op.getRopeKey(), op.getCache(), op.getStart(),
        op.getScaleAttr(), op.getSlidingWindowAttr(), op.getSinksAttr());
    rewriter.setInsertionPoint(output);
    Value wOutput =
        fold(outputWeight, kvB, MLAFold::output, {hidden, heads * rank});
    Value merged = MergeHeadsOp::create(rewriter, loc, act({heads * rank}),
                                        attention.getOutput());
    rewriter.replaceOpWithNewOp<LinearOp>(output, output.getType(), merged,
                                          wOutput, output.getBias(), Value(),
                                          ScaleLayoutAttr());
    rewriter.replaceAllUsesWith(op.getNewCache(), attention.getNewCache());
    rewriter.eraseOp(merge);
    rewriter.eraseOp(op);
    rewriter.eraseOp(rope);
    rewriter.eraseOp(split);
    rewriter.eraseOp(query);
    return success();
  }
};

struct AbsorbMLAPass : xfmr::impl::AbsorbMLABase<AbsorbMLAPass> {
  using AbsorbMLABase::AbsorbMLABase;

  void runOnOperation() override {
    if (failed(convertCaches()))
      return signalPassFailure();
    if (!fold)
      return;
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldAbsorbedProducts>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
    // Folding was asked for: every MLA op must have been folded.
    WalkResult left = getOperation().walk([](MLAAttentionOp op) {
      op.emitOpError("cannot fold W_UK/W_UV at compile time: it needs the "
                     "query from linear -> split_heads -> rope, the output "
                     "read by merge_heads -> linear, and high-precision "
                     "(f32/bf16/f16) query, kv_b and o_proj weights (FP8 "
                     "weights are absorbed per token instead)");
      return WalkResult::interrupt();
    });
    if (left.wasInterrupted())
      signalPassFailure();
  }

  LogicalResult convertCaches() {
    MLIRContext *context = &getContext();
    // The latent cache of each expanded MLA cache type, from its ops.
    llvm::DenseMap<Type, Type> latentOf;
    bool consistent = true;
    getOperation().walk([&](MLAAttentionOp op) {
      auto cache = dyn_cast<KVCacheType>(op.getCache().getType());
      if (!cache)
        return;
      auto latent = LatentCacheType::get(
          context, Float32Type::get(context), cache.getCapacity(),
          op.getLatent().getType().getDimSize(1),
          op.getRopeKey().getType().getDimSize(2));
      auto [it, inserted] = latentOf.try_emplace(cache, latent);
      if (!inserted && it->second != latent) {
        op.emitOpError("MLA ops sharing a cache type disagree on its latent");
        consistent = false;
      }
    });
    if (!consistent)
      return failure();
    if (latentOf.empty())
      return success();

    TypeConverter converter;
    converter.addConversion([](Type type) { return type; });
    converter.addConversion([&](KVCacheType cache) -> Type {
      auto it = latentOf.find(cache);
      return it == latentOf.end() ? Type(cache) : it->second;
    });
    ConversionTarget legal(*context);
    legal.markUnknownOpDynamicallyLegal([&](Operation *op) {
      return converter.isLegal(op->getOperandTypes()) &&
             converter.isLegal(op->getResultTypes());
    });
    legal.addDynamicallyLegalOp<func::FuncOp>([&](func::FuncOp func) {
      return converter.isSignatureLegal(func.getFunctionType()) &&
             converter.isLegal(&func.getBody());
    });
    RewritePatternSet patterns(context);
    populateFunctionOpInterfaceTypeConversionPattern<func::FuncOp>(patterns,
                                                                   converter);
    populateReturnOpTypeConversionPattern(patterns, converter);
    patterns.add<ConvertMLACache>(converter, context);
    return applyFullConversion(getOperation(), legal, std::move(patterns));
  }
};

} // namespace
