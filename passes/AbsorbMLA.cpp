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

struct AbsorbMLAPass : xfmr::impl::AbsorbMLABase<AbsorbMLAPass> {
  void runOnOperation() override {
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
      return signalPassFailure();
    if (latentOf.empty())
      return;

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
    if (failed(applyFullConversion(getOperation(), legal, std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
