//===- Kernels.h - the CPU's kernel builders --------------------*- C++ -*-===//
//
// Each function returns (creating on first use) the CPU kernel of one
// family (lowering/Common/KernelContracts.h says what each computes): a
// private func.func whose arguments are the present roles of the family's
// Operands, in the order of its fields().
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_CPU_KERNELS_KERNELS_H
#define XFMR_LOWERING_CPU_KERNELS_KERNELS_H

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/Common/KernelContracts.h"

namespace xfmr::kernels {

mlir::func::FuncOp embedding(KernelLibrary &lib, const EmbeddingKernel &kernel);
mlir::func::FuncOp elementwise(KernelLibrary &lib,
                               const ElementwiseKernel &kernel);
mlir::func::FuncOp sliceColumns(KernelLibrary &lib,
                                const SliceColumnsKernel &kernel);
mlir::func::FuncOp fakeQuantize(KernelLibrary &lib,
                                const FakeQuantizeKernel &kernel);
mlir::func::FuncOp rmsNorm(KernelLibrary &lib, const RMSNormKernel &kernel);
mlir::func::FuncOp linear(KernelLibrary &lib, const LinearKernel &kernel);
mlir::func::FuncOp rope(KernelLibrary &lib, const RopeKernel &kernel);
mlir::func::FuncOp cacheWrite(KernelLibrary &lib,
                              const CacheWriteKernel &kernel);
mlir::func::FuncOp mlaCacheWrite(KernelLibrary &lib,
                                 const MLACacheWriteKernel &kernel);
mlir::func::FuncOp attend(KernelLibrary &lib, const AttendKernel &kernel);
mlir::func::FuncOp mlaAbsorbQuery(KernelLibrary &lib,
                                  const MLAAbsorbQueryKernel &kernel);
mlir::func::FuncOp latentCacheWrite(KernelLibrary &lib,
                                    const LatentCacheWriteKernel &kernel);
mlir::func::FuncOp latentAttend(KernelLibrary &lib,
                                const LatentAttendKernel &kernel);
mlir::func::FuncOp mlaAbsorbOutput(KernelLibrary &lib,
                                   const MLAAbsorbOutputKernel &kernel);
mlir::func::FuncOp moeRoute(KernelLibrary &lib, const MoERouteKernel &kernel);
mlir::func::FuncOp moeExperts(KernelLibrary &lib,
                              const MoEExpertsKernel &kernel);

} // namespace xfmr::kernels

#endif // XFMR_LOWERING_CPU_KERNELS_KERNELS_H
