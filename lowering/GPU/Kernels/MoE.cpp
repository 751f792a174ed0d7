//===- MoE.cpp - Mixture-of-Experts routing and experts on GPUs -------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

void xfmr::kernels::registerGPUMoEKernels(KernelRegistry &registry) {
  // moe_route and moe_experts: not yet.
}
