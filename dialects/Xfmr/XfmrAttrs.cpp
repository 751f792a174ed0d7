//===- XfmrAttrs.cpp - attributes and enums of xfmr -------------*- C++ -*-===//

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

using namespace mlir;
using namespace xfmr;

#include "dialects/Xfmr/XfmrEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Xfmr/XfmrAttrs.cpp.inc"

void XfmrDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Xfmr/XfmrAttrs.cpp.inc"
#include "llvm/Support/MathExtras.h"
      >();
}

FailureOr<APFloat> xfmr::parseF64Parameter(AsmParser &parser) {
  double value;
  if (parser.parseFloat(value))
    return failure();
  return APFloat(value);
}

std::string xfmr::formatF64(double value) {
  // Integral values print as "10000.0"; others in the shortest "%g" form
  // that reads back bit-exactly. Either way the text reads as a float.
  char buffer[64];
  if (std::isfinite(value) && value == std::floor(value) &&
      std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof(buffer), "%.1f", value);
  } else {
    for (int precision = 1; precision <= 17; ++precision) {
      std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
      if (std::strtod(buffer, nullptr) == value)
        break;
    }
  }
  std::string text(buffer);
  if (std::isfinite(value) && text.find_first_of(".e") == std::string::npos)
    text += ".0";
  return text;
}

void xfmr::printF64Parameter(AsmPrinter &printer, const APFloat &number) {
  printer.getStream() << formatF64(number.convertToDouble());
}

//===----------------------------------------------------------------------===//
// RopeAttr
//===----------------------------------------------------------------------===//

LogicalResult RopeAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               APFloat thetaValue, RopeStyle, int64_t rotaryDim,
                               int64_t rotaryOffset, RopeScalingKind scaling,
                               APFloat factorValue, int64_t originalMaxPositions,
                               APFloat lowFreqValue, APFloat highFreqValue,
                               APFloat betaFastValue, APFloat betaSlowValue,
                               APFloat, APFloat) {
  double theta = thetaValue.convertToDouble();
  double factor = factorValue.convertToDouble();
  double lowFreqFactor = lowFreqValue.convertToDouble();
  double highFreqFactor = highFreqValue.convertToDouble();
  double betaFast = betaFastValue.convertToDouble();
  double betaSlow = betaSlowValue.convertToDouble();
  if (!(theta > 0) || !std::isfinite(theta))
    return emitError() << "rope theta must be a positive finite number, got "
                       << formatF64(theta);
  if (rotaryDim < 0 || rotaryDim % 2 != 0)
    return emitError() << "rope rotary_dim must be even and >= 0, got "
                       << rotaryDim;
  if (rotaryOffset < 0)
    return emitError() << "rope rotary_offset must be >= 0, got "
                       << rotaryOffset;
  if (scaling != RopeScalingKind::none && (!(factor > 0) || !std::isfinite(factor)))
    return emitError() << "rope scaling factor must be positive, got "
                       << formatF64(factor);
  if ((scaling == RopeScalingKind::llama3 || scaling == RopeScalingKind::yarn) &&
      originalMaxPositions <= 0)
    return emitError() << "rope scaling '" << stringifyRopeScalingKind(scaling)
                       << "' needs original_max_positions > 0";
  if (scaling == RopeScalingKind::llama3 && !(highFreqFactor > lowFreqFactor))
    return emitError() << "llama3 rope scaling needs high_freq_factor ("
                       << formatF64(highFreqFactor) << ") > low_freq_factor ("
                       << formatF64(lowFreqFactor) << ")";
  if (scaling == RopeScalingKind::yarn && !(betaFast > betaSlow))
    return emitError() << "yarn rope scaling needs beta_fast (" << formatF64(betaFast)
                       << ") > beta_slow (" << formatF64(betaSlow) << ")";
  return success();
}

double RopeAttr::yarnMscale(double factor, double m) {
  if (factor <= 1.0)
    return 1.0;
  return 0.1 * m * std::log(factor) + 1.0;
}

//===----------------------------------------------------------------------===//
// ScaleLayoutAttr
//===----------------------------------------------------------------------===//

LogicalResult
ScaleLayoutAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        ScaleKind kind, ArrayRef<int64_t> block) {
  if (kind != ScaleKind::block) {
    if (!block.empty())
      return emitError() << "scale layout '" << stringifyScaleKind(kind)
                         << "' takes no block sizes";
    return success();
  }
  if (block.size() != 2)
    return emitError() << "block scale layout needs two block sizes [rows, "
                          "cols], got "
                       << block.size();
  if (block[0] <= 0 || block[1] <= 0)
    return emitError() << "block sizes must be positive, got [" << block[0]
                       << ", " << block[1] << "]";
  return success();
}

SmallVector<int64_t> ScaleLayoutAttr::scaleShape(ArrayRef<int64_t> shape) const {
  auto ceilDiv = [](int64_t size, int64_t blockSize) {
    return ShapedType::isDynamic(size) ? ShapedType::kDynamic
                                       : llvm::divideCeilSigned(size, blockSize);
  };
  switch (getKind()) {
  case ScaleKind::per_tensor:
    return {};
  case ScaleKind::per_channel:
    return SmallVector<int64_t>(shape.drop_back());
  case ScaleKind::block: {
    SmallVector<int64_t> result(shape.begin(), shape.end());
    size_t rank = result.size();
    if (rank >= 2)
      result[rank - 2] = ceilDiv(result[rank - 2], getBlock()[0]);
    if (rank >= 1)
      result[rank - 1] = ceilDiv(result[rank - 1], getBlock()[1]);
    return result;
  }
  }
  return {};
}

LogicalResult
MemoryPlanAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                       ArrayAttr weights, ArrayAttr caches, ArrayAttr counters,
                       int64_t weightBytes, int64_t cacheBytes) {
  if (!llvm::all_of(weights, llvm::IsaPred<WeightSlotAttr>))
    return emitError() << "memory_plan weights must be #xfmr.weight_slot";
  if (!llvm::all_of(caches, llvm::IsaPred<CacheSlotAttr>))
    return emitError() << "memory_plan caches must be #xfmr.cache_slot";
  if (!llvm::all_of(counters, llvm::IsaPred<CounterSlotAttr>))
    return emitError() << "memory_plan counters must be #xfmr.counter_slot";
  for (auto slot : weights.getAsRange<WeightSlotAttr>())
    if (slot.getOffset() < 0 || slot.getBytes() < 0 ||
        slot.getOffset() + slot.getBytes() > weightBytes)
      return emitError() << "memory_plan weight slot of '"
                         << slot.getSource().getValue()
                         << "' lies outside the " << weightBytes
                         << "-byte weight blob";
  for (auto slot : caches.getAsRange<CacheSlotAttr>())
    if (slot.getOffset() < 0 || slot.getBytes() < 0 ||
        slot.getOffset() + slot.getBytes() > cacheBytes)
      return emitError() << "memory_plan cache slot at " << slot.getOffset()
                         << " lies outside the " << cacheBytes
                         << "-byte cache blob";
  for (auto slot : counters.getAsRange<CounterSlotAttr>())
    if (slot.getOffset() < 0 || slot.getExperts() <= 0 ||
        slot.getOffset() + slot.getExperts() * 8 > cacheBytes)
      return emitError() << "memory_plan counters of '"
                         << slot.getName().getValue()
                         << "' lie outside the cache blob";
  return success();
}

LogicalResult TargetAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                 StringRef kind, StringRef triple, StringRef,
                                 StringRef features, int64_t sveBits) {
  if (sveBits == 0)
    return success();
  if (sveBits != 256 && sveBits != 512)
    return emitError() << "sve_bits must be 256 or 512 (or 0: none), got "
                       << sveBits;
  if (kind != "cpu" || !triple.starts_with("aarch64"))
    return emitError() << "sve_bits applies to AArch64 CPU code, not '" << kind
                       << "' for '" << triple << "'";
  SmallVector<StringRef> list;
  features.split(list, ',', -1, /*KeepEmpty=*/false);
  if (!llvm::is_contained(list, "+sve"))
    return emitError() << "sve_bits needs the +sve feature, got features '"
                       << features << "'";
  return success();
}

bool TargetAttr::hasFeature(StringRef feature) const {
  SmallVector<StringRef> features;
  getFeatures().split(features, ',', -1, /*KeepEmpty=*/false);
  return llvm::is_contained(features, ("+" + feature).str());
}
