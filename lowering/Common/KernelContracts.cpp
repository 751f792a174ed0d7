//===- KernelContracts.cpp - what each kernel family computes ---*- C++ -*-===//

#include "lowering/Common/KernelContracts.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

WeightFormat xfmr::kernels::weightFormatOf(Type type) {
  if (type.isBF16())
    return WeightFormat::BF16;
  if (type.isF16())
    return WeightFormat::F16;
  if (isa<Float8E4M3FNType>(type))
    return WeightFormat::F8E4M3FN;
  if (isa<Float8E4M3FNUZType>(type))
    return WeightFormat::F8E4M3FNUZ;
  if (isa<Float8E5M2Type>(type))
    return WeightFormat::F8E5M2;
  if (type.isInteger(8))
    return WeightFormat::I8;
  if (type.isInteger(4))
    return WeightFormat::I4;
  return WeightFormat::F32;
}

Type xfmr::kernels::storageTypeOf(WeightFormat format, MLIRContext *context) {
  Builder b(context);
  switch (format) {
  case WeightFormat::F32:
    return b.getF32Type();
  case WeightFormat::BF16:
    return b.getBF16Type();
  case WeightFormat::F16:
    return b.getF16Type();
  case WeightFormat::F8E4M3FN:
  case WeightFormat::F8E4M3FNUZ:
  case WeightFormat::F8E5M2:
  case WeightFormat::I8:
  case WeightFormat::I4:
    return b.getI8Type();
  }
  return {};
}

StringRef xfmr::kernels::formatName(WeightFormat format) {
  switch (format) {
  case WeightFormat::F32:
    return "f32";
  case WeightFormat::BF16:
    return "bf16";
  case WeightFormat::F16:
    return "f16";
  case WeightFormat::F8E4M3FN:
    return "f8e4m3fn";
  case WeightFormat::F8E4M3FNUZ:
    return "f8e4m3fnuz";
  case WeightFormat::F8E5M2:
    return "f8e5m2";
  case WeightFormat::I8:
    return "i8";
  case WeightFormat::I4:
    return "i4";
  }
  return "";
}

std::string WeightOperand::key() const {
  std::string text = formatName(format).str();
  if (blockScale)
    text += "_b" + std::to_string(blockScale->first) + "x" +
            std::to_string(blockScale->second);
  if (panel)
    text += "_p" + std::to_string(panel);
  return text;
}

CacheFormat xfmr::kernels::cacheFormatOf(KVCacheType cache) {
  return {weightFormatOf(cache.getElementType()), cache.hasScales()};
}

std::string LatentCacheFormat::key() const {
  if (format == WeightFormat::F32)
    return "";
  return "_" + formatName(format).str() +
         (scaleBlocks ? "_rope_" + formatName(ropeFormat).str() : "");
}

llvm::StringRef xfmr::kernels::elementwiseName(Elementwise kind) {
  switch (kind) {
  case Elementwise::Add:
    return "add";
  case Elementwise::Mul:
    return "mul";
  case Elementwise::SwiGLU:
    return "swiglu";
  case Elementwise::Silu:
    return "silu";
  case Elementwise::Gelu:
    return "gelu";
  case Elementwise::GeluTanh:
    return "gelu_tanh";
  case Elementwise::Copy:
    return "copy";
  }
  return "";
}

bool xfmr::kernels::isBinary(Elementwise kind) {
  return kind == Elementwise::Add || kind == Elementwise::Mul ||
         kind == Elementwise::SwiGLU;
}

LatentCacheFormat xfmr::kernels::latentCacheFormatOf(LatentCacheType cache) {
  return {weightFormatOf(cache.getElementType()),
          weightFormatOf(cache.ropeElementType()), cache.scaleBlocks()};
}

MoERouteKernel MoERouteKernel::of(MoEGateOp op) {
  MoERouteKernel kernel;
  kernel.experts = op.getGateWeight().getType().getDimSize(0);
  kernel.topK = op.getTopK();
  kernel.groups = op.getNGroup();
  kernel.keptGroups = op.getTopkGroup();
  kernel.sigmoid = op.getScoring() == ScoringFunc::sigmoid;
  kernel.bias = static_cast<bool>(op.getBias());
  kernel.normalize = op.getNormTopkProb();
  kernel.factor = op.getRoutedScalingFactor().convertToDouble();
  return kernel;
}

StringRef xfmr::kernels::kernelName(const KernelConfig &config) {
  return std::visit(
      [](const auto &kernel) -> StringRef {
        return std::decay_t<decltype(kernel)>::kName;
      },
      config);
}

template <size_t... I>
static SmallVector<StringRef> namesOf(std::index_sequence<I...>) {
  return {std::variant_alternative_t<I, KernelConfig>::kName...};
}

SmallVector<StringRef> xfmr::kernels::kernelNames() {
  return namesOf(std::make_index_sequence<std::variant_size_v<KernelConfig>>());
}
