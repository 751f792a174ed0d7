//===- AnnotateModelStats.cpp - parameter and cache sizes -------*- C++ -*-===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_ANNOTATEMODELSTATS
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {
/// Bytes of one element; sub-byte types round up.
int64_t elementBytes(Type type) {
  return (type.getIntOrFloatBitWidth() + 7) / 8;
}

struct AnnotateModelStatsPass
    : xfmr::impl::AnnotateModelStatsBase<AnnotateModelStatsPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (!func->hasAttr(kEntryAttrName))
        continue;
      // A weight read twice (e.g. tied embeddings) counts once.
      llvm::StringSet<> seen;
      int64_t weightBytes = 0, parameters = 0;
      func.walk([&](WeightOp weight) {
        if (!seen.insert(weight.getName()).second)
          return;
        RankedTensorType type = weight.getType();
        parameters += type.getNumElements();
        weightBytes += type.getNumElements() * elementBytes(type.getElementType());
      });
      int64_t cacheBytesPerToken = 0;
      for (Type type : func.getArgumentTypes()) {
        if (auto cache = dyn_cast<KVCacheType>(type))
          cacheBytesPerToken += cache.bytesPerToken();
        else if (auto latent = dyn_cast<LatentCacheType>(type))
          cacheBytesPerToken += latent.bytesPerToken();
      }
      Builder builder(&getContext());
      func->setAttr("xfmr.weight_bytes", builder.getI64IntegerAttr(weightBytes));
      func->setAttr("xfmr.parameter_count",
                    builder.getI64IntegerAttr(parameters));
      func->setAttr("xfmr.kv_cache_bytes_per_token",
                    builder.getI64IntegerAttr(cacheBytesPerToken));
    }
  }
};
} // namespace
