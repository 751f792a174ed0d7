//===- CPUKernelTarget.cpp - the CPU's side of the kernel seam --------===//

#include "lowering/CPU/CPUKernelTarget.h"
#include "lowering/CPU/Kernels/Kernels.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

CPUKernelTarget::CPUKernelTarget(ModuleOp module, TargetAttr target)
    : KernelTarget(module, target),
      lib(module, CPUKernelOptions::of(target)) {}

LogicalResult CPUKernelTarget::checkCacheType(Type type, Operation *entry) {
  Type element = isa<LatentCacheType>(type)
                     ? cast<LatentCacheType>(type).getElementType()
                     : cast<KVCacheType>(type).getElementType();
  if (element.isF32() || element.isBF16() || element.isF16() ||
      isa<Float8E4M3FNType>(element) || element.isInteger(8))
    return success();
  return entry->emitOpError("the CPU lowering supports f32, bf16, f16, "
                            "f8E4M3FN and i8 caches, got ")
         << type;
}

void CPUKernelTarget::launch(OpBuilder &b, Location loc, SymbolRefAttr kernel,
                             ValueRange operands) {
  func::CallOp::create(b, loc, kernel.getLeafReference(), TypeRange{},
                       operands);
}

namespace {
/// Registers `build` (one of the builders of Kernels.h) for `Kernel`.
template <typename Kernel>
void add(KernelRegistry &registry,
         func::FuncOp (*build)(KernelLibrary &, const Kernel &)) {
  registry.addKernel<Kernel, CPUKernelTarget>(
      "cpu",
      [build](CPUKernelTarget &target,
              const Kernel &kernel) -> FailureOr<SymbolRefAttr> {
        return SymbolRefAttr(
            FlatSymbolRefAttr::get(build(target.library(), kernel)));
      });
}
} // namespace

void xfmr::registerCPUKernelTarget(KernelRegistry &registry) {
  registry.addTarget("cpu", [](ModuleOp module, TargetAttr target) {
    return std::make_unique<CPUKernelTarget>(module, target);
  });
  add<EmbeddingKernel>(registry, embedding);
  add<ElementwiseKernel>(registry, elementwise);
  add<SliceColumnsKernel>(registry, sliceColumns);
  add<FakeQuantizeKernel>(registry, fakeQuantize);
  add<RMSNormKernel>(registry, rmsNorm);
  add<LinearKernel>(registry, linear);
  add<RopeKernel>(registry, rope);
  add<CacheWriteKernel>(registry, cacheWrite);
  add<MLACacheWriteKernel>(registry, mlaCacheWrite);
  add<AttendKernel>(registry, attend);
  add<MLAAbsorbQueryKernel>(registry, mlaAbsorbQuery);
  add<LatentCacheWriteKernel>(registry, latentCacheWrite);
  add<LatentAttendKernel>(registry, latentAttend);
  add<MLAAbsorbOutputKernel>(registry, mlaAbsorbOutput);
  add<MoERouteKernel>(registry, moeRoute);
  add<MoEExpertsKernel>(registry, moeExperts);
}
