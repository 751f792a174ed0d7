//===- XfmrTypes.cpp - types of xfmr ----------------------------*- C++ -*-===//

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace xfmr;

#define GET_TYPEDEF_CLASSES
#include "dialects/Xfmr/XfmrTypes.cpp.inc"

void XfmrDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/Xfmr/XfmrTypes.cpp.inc"
#include "llvm/Support/MathExtras.h"
      >();
}

/// Cache elements: float formats, FP8 and INT8 (quantized caches).
static bool isCacheElementType(Type type) {
  return isa<FloatType>(type) || type.isInteger(8);
}

static int64_t elementBytes(Type type) {
  return (type.getIntOrFloatBitWidth() + 7) / 8;
}

LogicalResult KVCacheType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  Type elementType, int64_t capacity,
                                  int64_t heads, int64_t keyDim,
                                  int64_t valueDim, CacheLayout layout) {
  if (!isCacheElementType(elementType))
    return emitError() << "kv_cache element type must be a float or i8, got "
                       << elementType;
  if (capacity <= 0 || heads <= 0 || keyDim <= 0 || valueDim <= 0)
    return emitError() << "kv_cache sizes must be positive, got capacity = "
                       << capacity << ", heads = " << heads
                       << ", key_dim = " << keyDim
                       << ", value_dim = " << valueDim;
  // Reserved for the GPU back ends; nothing lowers it yet, and accepting it
  // would let a cache be written in one order and read in another.
  if (layout != CacheLayout::token_major)
    return emitError() << "kv_cache layout = " << stringifyCacheLayout(layout)
                       << " is not supported yet (caches are token_major)";
  return success();
}

bool KVCacheType::hasScales() const {
  return getElementType().getIntOrFloatBitWidth() == 8;
}

int64_t KVCacheType::bytesPerToken() const {
  int64_t scales = hasScales() ? getHeads() * 2 * 4 : 0;
  return getHeads() * (getKeyDim() + getValueDim()) *
             elementBytes(getElementType()) +
         scales;
}

LogicalResult
LatentCacheType::verify(function_ref<InFlightDiagnostic()> emitError,
                        Type elementType, int64_t capacity, int64_t latentDim,
                        int64_t ropeDim) {
  if (!isCacheElementType(elementType))
    return emitError()
           << "latent_cache element type must be a float or i8, got "
           << elementType;
  if (capacity <= 0 || latentDim <= 0 || ropeDim <= 0 || ropeDim % 2 != 0)
    return emitError() << "latent_cache sizes must be positive (rope_dim "
                          "even), got capacity = "
                       << capacity << ", latent_dim = " << latentDim
                       << ", rope_dim = " << ropeDim;
  return success();
}

bool LatentCacheType::hasScales() const {
  return getElementType().getIntOrFloatBitWidth() == 8;
}

int64_t LatentCacheType::scaleBlocks() const {
  return hasScales() ? llvm::divideCeilSigned(getLatentDim(), kScaleBlock) : 0;
}

Type LatentCacheType::ropeElementType() const {
  return hasScales() ? BFloat16Type::get(getContext()) : getElementType();
}

int64_t LatentCacheType::bytesPerToken() const {
  return getLatentDim() * elementBytes(getElementType()) + scaleBlocks() * 4 +
         getRopeDim() * elementBytes(ropeElementType());
}
