//===- LatentAttention.cpp - MLA caches and attention on GPUs ---------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

void xfmr::kernels::registerGPULatentKernels(KernelRegistry &registry) {
  // mla_cache_write, mla_absorb_query, latent_cache_write, latent_attend,
  // mla_absorb_output: not yet.
}
