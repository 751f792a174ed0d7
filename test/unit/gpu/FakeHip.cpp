//===- FakeHip.cpp - a HIP runtime over host memory, for tests ------------===//
//
// The libamdhip64 entry points runtime/src/backends/gpu/HipDevice.cpp uses,
// so that its host-side logic (device selection, the gfx name, copies, the
// decode step's HIP graphs) can be tested without an AMD GPU
// (XFMR_HIP_LIBRARY points the device here). What it logs: FakeDriver.h.
// The tests read and clear the log with xfmrFakeHipLog() and
// xfmrFakeHipClear().
//
// Two devices: 0 is "Fake MI300X" (gfx942), 1 "Fake MI250X" (gfx90a). With
// XFMR_FAKE_HIP_REFUSE_MODULE_NODES=1, hipGraphAddKernelNode refuses module
// kernels as ROCm 5's graphs did (hipErrorInvalidDeviceFunction).
//
//===----------------------------------------------------------------------===//

#include "FakeDriver.h"

#include <cstdio>

using namespace fake;

namespace {
constexpr int hipSuccess = 0, hipErrorInvalidValue = 1, hipErrorOutOfMemory = 2,
              hipErrorInvalidDeviceFunction = 98;

/// hipKernelNodeParams' layout.
struct Dim3 {
  unsigned x, y, z;
};
struct KernelParams {
  Dim3 blockDim;
  void **extra;
  Function *func;
  Dim3 gridDim;
  void **kernelParams;
  unsigned sharedMemBytes;
};

int current = 0;
const char *const names[] = {"Fake MI300X", "Fake MI250X"};
const char *const archs[] = {"gfx942:sramecc+:xnack-",
                             "gfx90a:sramecc+:xnack-"};
} // namespace

extern "C" {

const char *xfmrFakeHipLog() { return log().c_str(); }
void xfmrFakeHipClear() { log().clear(); }

const char *hipGetErrorName(int result) {
  return result == hipErrorInvalidDeviceFunction
             ? "hipErrorInvalidDeviceFunction"
             : "hipErrorFake";
}
int hipInit(unsigned) { return hipSuccess; }
int hipGetDeviceCount(int *count) {
  *count = 2;
  return hipSuccess;
}
int hipDeviceGet(int *device, int index) {
  *device = index;
  return hipSuccess;
}
int hipDeviceGetName(char *name, int length, int device) {
  std::snprintf(name, size_t(length), "%s", names[device]);
  return hipSuccess;
}
// ROCm 6's name. The layout: name[256] first, gcnArchName further on (at
// 1160 here, as in neither release, which the device must not assume).
int hipGetDevicePropertiesR0600(char *properties, int device) {
  std::snprintf(properties, 256, "%s", names[device]);
  std::snprintf(properties + 1160, 256, "%s", archs[device]);
  return hipSuccess;
}
int hipSetDevice(int device) {
  if (device < 0 || device > 1)
    return hipErrorInvalidValue;
  current = device;
  return hipSuccess;
}
int hipMalloc(void **block, size_t bytes) {
  *block = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *block ? hipSuccess : hipErrorOutOfMemory;
}
int hipFree(void *block) {
  std::free(block);
  return hipSuccess;
}
int hipMemcpyHtoD(void *dest, void *source, size_t bytes) {
  std::memcpy(dest, source, bytes);
  note("copy to device");
  return hipSuccess;
}
int hipMemcpyDtoH(void *dest, void *source, size_t bytes) {
  std::memcpy(dest, source, bytes);
  note("copy to host");
  return hipSuccess;
}
int hipMemsetD8(void *dest, unsigned char value, size_t bytes) {
  std::memset(dest, value, bytes);
  note("zero");
  return hipSuccess;
}
int hipModuleLoadData(void **module, const void *) {
  static int loaded;
  *module = &loaded;
  note("load on device " + std::to_string(current));
  return hipSuccess;
}
int hipModuleUnload(void *) { return hipSuccess; }
int hipModuleGetFunction(Function **kernel, void *, const char *name) {
  *kernel = function(name);
  return hipSuccess;
}
int hipModuleLaunchKernel(Function *kernel, unsigned gx, unsigned gy,
                          unsigned gz, unsigned, unsigned, unsigned, unsigned,
                          void *, void **params, void **) {
  const unsigned grid[3] = {gx, gy, gz};
  note("launch " + describe(*kernel, grid, params));
  return hipSuccess;
}
int hipDeviceSynchronize() { return hipSuccess; }

int hipGraphCreate(Graph **graph, unsigned) {
  *graph = new Graph;
  return hipSuccess;
}
int hipGraphAddKernelNode(Node **node, Graph *graph, Node *const *after,
                          size_t count, const KernelParams *params) {
  const char *refuse = std::getenv("XFMR_FAKE_HIP_REFUSE_MODULE_NODES");
  if (refuse && std::string(refuse) == "1")
    return hipErrorInvalidDeviceFunction;
  const unsigned grid[3] = {params->gridDim.x, params->gridDim.y,
                            params->gridDim.z};
  std::string launch = describe(*params->func, grid, params->kernelParams);
  return addNode(node, graph, after, count, launch) ? hipSuccess
                                                    : hipErrorInvalidValue;
}
int hipGraphInstantiateWithFlags(Exec **exec, Graph *graph,
                                 unsigned long long) {
  *exec = instantiate(graph);
  return hipSuccess;
}
int hipGraphExecKernelNodeSetParams(Exec *exec, Node *node,
                                    const KernelParams *params) {
  const unsigned grid[3] = {params->gridDim.x, params->gridDim.y,
                            params->gridDim.z};
  std::string launch = describe(*params->func, grid, params->kernelParams);
  return setNode(exec, node, launch) ? hipSuccess : hipErrorInvalidValue;
}
int hipGraphLaunch(Exec *exec, void *) {
  launchGraph(exec);
  return hipSuccess;
}
int hipGraphExecDestroy(Exec *exec) {
  delete exec;
  return hipSuccess;
}
int hipGraphDestroy(Graph *graph) {
  delete graph;
  note("graph -");
  return hipSuccess;
}

} // extern "C"
