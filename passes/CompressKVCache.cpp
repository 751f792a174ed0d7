//===- CompressKVCache.cpp - narrower KV-cache element types ----*- C++ -*-===//
//
// A type conversion: every !xfmr.kv_cache gets the requested element type,
// through function signatures, attention ops and returns. What the element
// type means (codes and per-entry scales for 8-bit types) is the cache
// type's contract; the lowering implements it.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Func/Transforms/FuncConversions.h"
#include "mlir/Transforms/DialectConversion.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_COMPRESSKVCACHE
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {

/// Recreates an attention op with converted cache types.
template <typename AttentionLike>
struct ConvertCacheTypes : OpConversionPattern<AttentionLike> {
  using OpConversionPattern<AttentionLike>::OpConversionPattern;
  using OpAdaptor = typename AttentionLike::Adaptor;

  LogicalResult
  matchAndRewrite(AttentionLike op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    SmallVector<Type> results;
    if (failed(this->getTypeConverter()->convertTypes(op->getResultTypes(),
                                                      results)))
      return failure();
    Operation *replacement = rewriter.create(
        op.getLoc(), op->getName().getIdentifier(), adaptor.getOperands(),
        results, op->getAttrs());
    rewriter.replaceOp(op, replacement->getResults());
    return success();
  }
};

struct CompressKVCachePass
    : xfmr::impl::CompressKVCacheBase<CompressKVCachePass> {
  using CompressKVCacheBase::CompressKVCacheBase;

  void runOnOperation() override {
    MLIRContext *context = &getContext();
    Type target;
    if (element == "f32")
      target = Float32Type::get(context);
    else if (element == "bf16")
      target = BFloat16Type::get(context);
    else if (element == "f16")
      target = Float16Type::get(context);
    else if (element == "fp8")
      target = Float8E4M3FNType::get(context);
    else if (element == "int8")
      target = IntegerType::get(context, 8);
    else {
      getOperation()->emitError()
          << "xfmr-compress-kv-cache: unknown element type '" << element
          << "' (expected f32, bf16, f16, fp8 or int8)";
      return signalPassFailure();
    }

    TypeConverter converter;
    converter.addConversion([](Type type) { return type; });
    converter.addConversion([&](KVCacheType cache) -> Type {
      return KVCacheType::get(context, target, cache.getCapacity(),
                              cache.getHeads(), cache.getKeyDim(),
                              cache.getValueDim(), cache.getLayout());
    });

    ConversionTarget legal(*context);
    auto hasLegalTypes = [&](Operation *op) {
      return converter.isLegal(op->getOperandTypes()) &&
             converter.isLegal(op->getResultTypes());
    };
    legal.markUnknownOpDynamicallyLegal(hasLegalTypes);
    legal.addDynamicallyLegalOp<func::FuncOp>([&](func::FuncOp func) {
      return converter.isSignatureLegal(func.getFunctionType()) &&
             converter.isLegal(&func.getBody());
    });

    RewritePatternSet patterns(context);
    populateFunctionOpInterfaceTypeConversionPattern<func::FuncOp>(patterns,
                                                                   converter);
    populateReturnOpTypeConversionPattern(patterns, converter);
    patterns.add<ConvertCacheTypes<AttentionOp>,
                 ConvertCacheTypes<MLAAttentionOp>>(converter, context);
    if (failed(applyFullConversion(getOperation(), legal, std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
