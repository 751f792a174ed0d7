//===- CPUKernelTarget.h - the CPU's side of the kernel seam ----*- C++ -*-===//
//
// On the CPU a kernel is a private func.func in the module (built by
// lowering/CPU/Kernels) and the schedule calls it directly; its parallel
// loops run on OpenMP after xfmr-lower-to-llvm.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_CPU_CPUKERNELTARGET_H
#define XFMR_LOWERING_CPU_CPUKERNELTARGET_H

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/Common/KernelTarget.h"

namespace xfmr {

class CPUKernelTarget : public KernelTarget {
public:
  CPUKernelTarget(mlir::ModuleOp module, TargetAttr target);

  kernels::KernelLibrary &library() { return lib; }

  mlir::LogicalResult checkCacheType(mlir::Type type,
                                     mlir::Operation *entry) override;
  void launch(mlir::OpBuilder &b, mlir::Location loc,
              mlir::SymbolRefAttr kernel, mlir::ValueRange operands) override;

private:
  kernels::KernelLibrary lib;
};

/// Registers the "cpu" target and its kernel of every family.
void registerCPUKernelTarget(KernelRegistry &registry);

} // namespace xfmr

#endif // XFMR_LOWERING_CPU_CPUKERNELTARGET_H
