//===- RegisterTargets.cpp - every target this build has --------------===//

#include "lowering/CPU/CPUKernelTarget.h"
#include "lowering/Common/KernelTarget.h"
#include "lowering/GPU/GPUKernelTarget.h"

#include <mutex>

void xfmr::registerKernelTargets() {
  static std::once_flag once;
  std::call_once(once, [] {
    KernelRegistry &registry = KernelRegistry::global();
    registerCPUKernelTarget(registry);
    registerGPUKernelTarget(registry);
  });
}
