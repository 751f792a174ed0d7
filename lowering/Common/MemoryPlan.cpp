//===- MemoryPlan.cpp - the weight and cache blobs, target-neutral --------===//

#include "lowering/Common/MemoryPlan.h"

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace xfmr;

int64_t xfmr::storedElementBytes(Type type) {
  return llvm::divideCeilSigned<int64_t>(type.getIntOrFloatBitWidth(), 8);
}

int64_t xfmr::panelGroup(Type element) { return element.isInteger(8) ? 4 : 2; }

SmallVector<int64_t, 3> xfmr::panelStorageShape(ArrayRef<int64_t> shape,
                                                int64_t panel, Type element) {
  int64_t group = panelGroup(element);
  return {llvm::divideCeilSigned(shape[0], panel),
          llvm::divideCeilSigned<int64_t>(shape[1], group), group * panel};
}

CacheStorage xfmr::cacheStorage(Type cacheType) {
  CacheStorage storage;
  if (auto latent = dyn_cast<LatentCacheType>(cacheType)) {
    int64_t latentBytes = latent.getCapacity() * latent.getLatentDim() *
                          storedElementBytes(latent.getElementType());
    int64_t scaleBytes = latent.getCapacity() * latent.scaleBlocks() * 4;
    int64_t end = latentBytes;
    if (scaleBytes) {
      storage.scalesOffset = llvm::alignTo(end, kBufferAlignment);
      end = storage.scalesOffset + scaleBytes;
    }
    storage.ropeOffset = llvm::alignTo(end, kBufferAlignment);
    storage.bytes = storage.ropeOffset +
                    latent.getCapacity() * latent.getRopeDim() *
                        storedElementBytes(latent.ropeElementType());
    return storage;
  }
  auto kv = cast<KVCacheType>(cacheType);
  storage.bytes = kv.getCapacity() * kv.getHeads() *
                  (kv.getKeyDim() + kv.getValueDim()) *
                  storedElementBytes(kv.getElementType());
  if (kv.hasScales()) {
    storage.scalesOffset = llvm::alignTo(storage.bytes, kBufferAlignment);
    storage.bytes = storage.scalesOffset +
                    kv.getCapacity() * kv.getHeads() * 2 * int64_t(sizeof(float));
  }
  return storage;
}

MemoryPlanAttr xfmr::getMemoryPlan(ModuleOp module) {
  return module->getAttrOfType<MemoryPlanAttr>(kMemoryPlanAttrName);
}

WeightSlotAttr xfmr::getWeightSlot(MemoryPlanAttr plan, Operation *op,
                                   StringRef attrName) {
  auto index = op->getAttrOfType<IntegerAttr>(attrName);
  if (!plan || !index || index.getInt() < 0 ||
      index.getInt() >= int64_t(plan.getWeights().size()))
    return WeightSlotAttr();
  return cast<WeightSlotAttr>(plan.getWeights()[index.getInt()]);
}
