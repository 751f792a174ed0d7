//===- CompressKVCache.cpp - narrower KV-cache element types ----*- C++ -*-===//
//
// A type conversion: every !xfmr.kv_cache gets the requested element type
// (and, with eviction, the capacity sinks + window), through function
// signatures, attention ops and returns. What the element type means (codes
// and per-entry scales for 8-bit types) is the cache type's contract; what
// eviction means is xfmr.attention's `sinks`; the lowering implements both.
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

/// Eviction settings: none when window == 0.
struct Eviction {
  int64_t window = 0;
  int64_t sinks = 0;
};

/// Recreates an attention op with converted cache types; with eviction,
/// xfmr.attention also gets its window and sinks.
template <typename AttentionLike>
struct ConvertCacheTypes : OpConversionPattern<AttentionLike> {
  ConvertCacheTypes(const TypeConverter &converter, MLIRContext *context,
                    Eviction eviction)
      : OpConversionPattern<AttentionLike>(converter, context),
        eviction(eviction) {}
  using OpAdaptor = typename AttentionLike::Adaptor;

  LogicalResult
  matchAndRewrite(AttentionLike op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    SmallVector<Type> results;
    if (failed(this->getTypeConverter()->convertTypes(op->getResultTypes(),
                                                      results)))
      return failure();
    NamedAttrList attrs(op->getAttrs());
    if (eviction.window) {
      attrs.set("sliding_window", rewriter.getI64IntegerAttr(eviction.window));
      attrs.set("sinks", rewriter.getI64IntegerAttr(eviction.sinks));
    }
    Operation *replacement =
        rewriter.create(op.getLoc(), op->getName().getIdentifier(),
                        adaptor.getOperands(), results, attrs.getAttrs());
    rewriter.replaceOp(op, replacement->getResults());
    return success();
  }

  Eviction eviction;
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
    Eviction eviction{window, sinks};
    if (failed(checkEviction(eviction)))
      return signalPassFailure();

    TypeConverter converter;
    converter.addConversion([](Type type) { return type; });
    converter.addConversion([&](KVCacheType cache) -> Type {
      int64_t capacity = eviction.window ? eviction.window + eviction.sinks
                                         : cache.getCapacity();
      return KVCacheType::get(context, target, capacity, cache.getHeads(),
                              cache.getKeyDim(), cache.getValueDim(),
                              cache.getLayout());
    });
    // MLA's latent cache (after xfmr-absorb-mla): the latent in the target
    // type (8-bit: FlashMLA-style block scales, k_pe in bf16).
    converter.addConversion([&](LatentCacheType cache) -> Type {
      int64_t capacity = eviction.window ? eviction.window + eviction.sinks
                                         : cache.getCapacity();
      return LatentCacheType::get(context, target, capacity,
                                  cache.getLatentDim(), cache.getRopeDim());
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
    patterns
        .add<ConvertCacheTypes<AttentionOp>, ConvertCacheTypes<MLAAttentionOp>,
             ConvertCacheTypes<MLALatentAttentionOp>>(converter, context,
                                                      eviction);
    if (failed(applyFullConversion(getOperation(), legal, std::move(patterns))))
      return signalPassFailure();
    if (eviction.window)
      recordEviction(eviction);
  }

  /// Eviction needs a positive window, and causal attention without a
  /// sliding window of its own.
  LogicalResult checkEviction(const Eviction &eviction) {
    ModuleOp module = getOperation();
    if (eviction.window == 0 && eviction.sinks == 0)
      return success();
    if (eviction.window <= 0 || eviction.sinks < 0)
      return module.emitError()
             << "xfmr-compress-kv-cache: eviction needs window > 0 and "
                "sinks >= 0, got window="
             << eviction.window << " sinks=" << eviction.sinks;
    WalkResult result = module.walk([&](Operation *op) {
      std::optional<uint64_t> window;
      if (auto attention = dyn_cast<AttentionOp>(op))
        window = attention.getSlidingWindow();
      else if (auto mla = dyn_cast<MLAAttentionOp>(op))
        window = mla.getSlidingWindow();
      else if (auto latent = dyn_cast<MLALatentAttentionOp>(op))
        window = latent.getSlidingWindow();
      if (window) {
        op->emitError() << "xfmr-compress-kv-cache: the model already "
                           "attends through a sliding window of "
                        << *window << "; eviction over it is not supported";
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    return failure(result.wasInterrupted());
  }

  /// The runtime learns from xfmr.model that positions are unbounded and
  /// that a multi-token call must not wrap the cache.
  void recordEviction(const Eviction &eviction) {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    NamedAttrList model;
    if (auto old = module->getAttrOfType<DictionaryAttr>("xfmr.model"))
      model.append(old.getValue());
    model.set("kv_window", b.getI64IntegerAttr(eviction.window));
    model.set("kv_sinks", b.getI64IntegerAttr(eviction.sinks));
    module->setAttr("xfmr.model", model.getDictionary(module.getContext()));
  }
};

} // namespace
