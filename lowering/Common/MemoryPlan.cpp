//===- MemoryPlan.cpp - the weight and cache blobs, target-neutral --------===//

#include "lowering/Common/MemoryPlan.h"

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace xfmr;

int64_t xfmr::storedElementBytes(Type type) {
  return llvm::divideCeilSigned<int64_t>(type.getIntOrFloatBitWidth(), 8);
}

int64_t xfmr::panelGroup(Type element) {
  if (element.isInteger(8))
    return 4;
  if (element.isInteger(4))
    return 8;
  if (element.isF16())
    return 1;
  return 2;
}

SmallVector<int64_t, 3> xfmr::panelStorageShape(ArrayRef<int64_t> shape,
                                                int64_t panel, Type element) {
  int64_t group = panelGroup(element);
  // i4: two codes a byte, so a group of 8 is 4 stored bytes a row.
  int64_t stored = element.isInteger(4) ? group / 2 : group;
  return {llvm::divideCeilSigned(shape[0], panel),
          llvm::divideCeilSigned<int64_t>(shape[1], group), stored * panel};
}

SmallVector<int64_t, 3> xfmr::int4RowStorageShape(ArrayRef<int64_t> shape) {
  SmallVector<int64_t, 3> stored(shape.begin(), shape.end());
  stored.back() = llvm::divideCeilSigned<int64_t>(stored.back(), 2);
  return stored;
}

namespace {
/// The bytes of one row of each part of a cache: codes, scales (0 without),
/// and for a latent cache k_pe.
struct CacheRows {
  int64_t capacity = 0;
  SmallVector<int64_t, 3> rowBytes;
};
} // namespace

static CacheRows cacheRows(Type cacheType) {
  CacheRows rows;
  if (auto latent = dyn_cast<LatentCacheType>(cacheType)) {
    rows.capacity = latent.getCapacity();
    rows.rowBytes = {
        latent.getLatentDim() * storedElementBytes(latent.getElementType()),
        latent.scaleBlocks() * 4,
        latent.getRopeDim() * storedElementBytes(latent.ropeElementType())};
    return rows;
  }
  auto kv = cast<KVCacheType>(cacheType);
  rows.capacity = kv.getCapacity();
  rows.rowBytes = {kv.getHeads() * (kv.getKeyDim() + kv.getValueDim()) *
                       storedElementBytes(kv.getElementType()),
                   kv.hasScales() ? kv.getHeads() * 2 * 4 : 0};
  return rows;
}

CacheStorage xfmr::cacheStorage(Type cacheType) {
  CacheRows rows = cacheRows(cacheType);
  CacheStorage storage;
  auto layout = [&](int64_t alignment) {
    int64_t end = rows.capacity * rows.rowBytes[0];
    storage.scalesOffset = 0;
    if (rows.rowBytes[1]) {
      storage.scalesOffset = llvm::alignTo(end, alignment);
      end = storage.scalesOffset + rows.capacity * rows.rowBytes[1];
    }
    if (rows.rowBytes.size() > 2) {
      storage.ropeOffset = llvm::alignTo(end, alignment);
      end = storage.ropeOffset + rows.capacity * rows.rowBytes[2];
    }
    storage.bytes = end;
    storage.alignment = alignment;
  };
  // Packed at kBufferAlignment first: that size decides the alignment.
  layout(kBufferAlignment);
  if (storage.bytes >= 16 * kCachePageBytes)
    layout(kCachePageBytes);
  return storage;
}

SmallVector<CacheRegion, 3> xfmr::cacheRegions(Type cacheType) {
  CacheRows rows = cacheRows(cacheType);
  CacheStorage storage = cacheStorage(cacheType);
  SmallVector<CacheRegion, 3> regions{{0, rows.rowBytes[0]}};
  if (rows.rowBytes[1])
    regions.push_back({storage.scalesOffset, rows.rowBytes[1]});
  if (rows.rowBytes.size() > 2)
    regions.push_back({storage.ropeOffset, rows.rowBytes[2]});
  return regions;
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
