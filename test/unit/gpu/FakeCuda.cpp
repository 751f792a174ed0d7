//===- FakeCuda.cpp - a CUDA driver over host memory, for tests -----------===//
//
// The libcuda entry points runtime/src/backends/gpu/CudaDevice.cpp uses, so
// that its host-side logic (the decode step's CUDA graphs) can be tested
// without a GPU (XFMR_CUDA_LIBRARY points the device here). What it logs:
// FakeDriver.h. The tests read and clear the log with xfmrFakeCudaLog() and
// xfmrFakeCudaClear().
//
//===----------------------------------------------------------------------===//

#include "FakeDriver.h"

#include <cstdio>

using namespace fake;

namespace {
/// CUDA_KERNEL_NODE_PARAMS_v2's layout.
struct KernelParams {
  Function *func;
  unsigned grid[3], block[3];
  unsigned sharedMemBytes;
  void **kernelParams;
  void **extra;
  void *kern, *ctx;
};
} // namespace

extern "C" {

const char *xfmrFakeCudaLog() { return log().c_str(); }
void xfmrFakeCudaClear() { log().clear(); }

int cuGetErrorName(int, const char **name) {
  *name = "FAKE_CUDA_ERROR";
  return 0;
}
int cuInit(unsigned) { return 0; }
int cuDeviceGetCount(int *count) {
  *count = 1;
  return 0;
}
int cuDeviceGet(int *device, int index) {
  *device = index;
  return 0;
}
int cuDeviceGetName(char *name, int length, int) {
  std::snprintf(name, size_t(length), "Fake CUDA device");
  return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int) {
  // Compute capability 9.0 (attributes 75 and 76).
  *value = attribute == 75 ? 9 : 0;
  return 0;
}
int cuDevicePrimaryCtxRetain(void **context, int) {
  static int primary;
  *context = &primary;
  return 0;
}
int cuDevicePrimaryCtxRelease_v2(int) { return 0; }
int cuCtxSetCurrent(void *) { return 0; }
int cuMemAlloc_v2(unsigned long long *address, size_t bytes) {
  *address = reinterpret_cast<uintptr_t>(
      std::aligned_alloc(256, (bytes + 255) / 256 * 256));
  return *address ? 0 : 2;
}
int cuMemFree_v2(unsigned long long address) {
  std::free(reinterpret_cast<void *>(uintptr_t(address)));
  return 0;
}
int cuMemcpyHtoD_v2(unsigned long long dest, const void *source, size_t bytes) {
  std::memcpy(reinterpret_cast<void *>(uintptr_t(dest)), source, bytes);
  note("copy to device");
  return 0;
}
int cuMemcpyDtoH_v2(void *dest, unsigned long long source, size_t bytes) {
  std::memcpy(dest, reinterpret_cast<void *>(uintptr_t(source)), bytes);
  note("copy to host");
  return 0;
}
int cuMemsetD8Async(unsigned long long dest, unsigned char value, size_t bytes,
                    void *) {
  std::memset(reinterpret_cast<void *>(uintptr_t(dest)), value, bytes);
  return 0;
}
int cuModuleLoadDataEx(void **module, const void *, unsigned, int *, void **) {
  static int loaded;
  *module = &loaded;
  return 0;
}
int cuModuleUnload(void *) { return 0; }
int cuModuleGetFunction(Function **kernel, void *, const char *name) {
  *kernel = function(name);
  return 0;
}
int cuLaunchKernel(Function *kernel, unsigned gx, unsigned gy, unsigned gz,
                   unsigned, unsigned, unsigned, unsigned, void *,
                   void **params, void **) {
  const unsigned grid[3] = {gx, gy, gz};
  note("launch " + describe(*kernel, grid, params));
  return 0;
}
int cuStreamSynchronize(void *) { return 0; }

int cuGraphCreate(Graph **graph, unsigned) {
  *graph = new Graph;
  return 0;
}
int cuGraphAddKernelNode_v2(Node **node, Graph *graph, Node *const *after,
                            size_t count, const KernelParams *params) {
  std::string launch =
      describe(*params->func, params->grid, params->kernelParams);
  return addNode(node, graph, after, count, launch) ? 0 : 1;
}
int cuGraphInstantiateWithFlags(Exec **exec, Graph *graph, unsigned long long) {
  *exec = instantiate(graph);
  return 0;
}
int cuGraphExecKernelNodeSetParams_v2(Exec *exec, Node *node,
                                      const KernelParams *params) {
  std::string launch =
      describe(*params->func, params->grid, params->kernelParams);
  return setNode(exec, node, launch) ? 0 : 1;
}
int cuGraphLaunch(Exec *exec, void *) {
  launchGraph(exec);
  return 0;
}
int cuGraphExecDestroy(Exec *exec) {
  delete exec;
  return 0;
}
int cuGraphDestroy(Graph *graph) {
  delete graph;
  note("graph -");
  return 0;
}

} // extern "C"
