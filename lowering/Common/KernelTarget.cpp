//===- KernelTarget.cpp - where the host schedule meets a target ------===//

#include "lowering/Common/KernelTarget.h"
#include "lowering/Common/MemoryPlan.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace xfmr;

TargetAttr xfmr::getModuleTarget(ModuleOp module) {
  if (auto target = module->getAttrOfType<TargetAttr>(kTargetAttrName))
    return target;
  return TargetAttr::get(module.getContext(), "cpu", "x86_64-unknown-linux-gnu",
                         "x86-64-v2", "", 0);
}

KernelTarget::~KernelTarget() = default;

FailureOr<SymbolRefAttr>
KernelTarget::materialize(const kernels::KernelConfig &config, Location loc) {
  StringRef family = kernels::kernelName(config);
  const KernelRegistry::Materializer *build =
      KernelRegistry::global().lookup(family, getKind());
  if (!build) {
    // Name the targets that have it: the model compiles there.
    SmallVector<std::string> others;
    for (const std::string &kind : KernelRegistry::global().targetKinds())
      if (KernelRegistry::global().lookup(family, kind))
        others.push_back(kind);
    return emitError(loc) << "kernel '" << family
                          << "' is not implemented for target '" << getKind()
                          << "' yet (targets that have it: "
                          << llvm::join(others, ", ") << ")";
  }
  return (*build)(*this, config);
}

Value KernelTarget::allocate(OpBuilder &b, Location loc, MemRefType type,
                             ValueRange dynamicSizes) {
  return memref::AllocOp::create(b, loc, type, dynamicSizes,
                                 b.getI64IntegerAttr(kBufferAlignment));
}

void KernelTarget::deallocate(OpBuilder &b, Location loc, Value buffer) {
  memref::DeallocOp::create(b, loc, buffer);
}

KernelRegistry &KernelRegistry::global() {
  static KernelRegistry registry;
  return registry;
}

void KernelRegistry::addTarget(StringRef kind, TargetFactory factory) {
  targets[kind.str()] = std::move(factory);
}

void KernelRegistry::addKernel(StringRef family, StringRef kind,
                               Materializer materializer) {
  kernels[{family.str(), kind.str()}] = std::move(materializer);
}

std::unique_ptr<KernelTarget>
KernelRegistry::createTarget(ModuleOp module) const {
  TargetAttr target = getModuleTarget(module);
  auto it = targets.find(target.getKind().str());
  if (it == targets.end())
    return nullptr;
  return it->second(module, target);
}

const KernelRegistry::Materializer *
KernelRegistry::lookup(StringRef family, StringRef kind) const {
  auto it = kernels.find({family.str(), kind.str()});
  return it == kernels.end() ? nullptr : &it->second;
}

SmallVector<std::string> KernelRegistry::targetKinds() const {
  SmallVector<std::string> kinds;
  for (const auto &[kind, factory] : targets)
    kinds.push_back(kind);
  return kinds;
}
