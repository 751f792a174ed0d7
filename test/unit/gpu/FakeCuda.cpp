//===- FakeCuda.cpp - a CUDA driver over host memory, for tests -----------===//
//
// The libcuda entry points runtime/src/backends/gpu/CudaDevice.cpp uses, so
// that its host-side logic (the decode step's CUDA graphs) can be tested
// without a GPU (XFMR_CUDA_LIBRARY points the device here). Memory is host
// memory; kernels do not run: each launch, direct or a node of a launched
// graph, appends "name(v0,v1,...) GXxGYxGZ" to a log, with its i32
// parameters (the tests' kernels take scalars only: a kernel's count is
// the number after "_s" in its name). Graph calls log too ("node +",
// "node =", "instantiate", "graph launch", "graph -"). The tests read and
// clear the log with xfmrFakeCudaLog() and xfmrFakeCudaClear().
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

struct Function {
  std::string name;
  int scalars = 0;
};

/// CUDA_KERNEL_NODE_PARAMS_v2's layout.
struct KernelParams {
  Function *func;
  unsigned grid[3], block[3];
  unsigned sharedMemBytes;
  void **kernelParams;
  void **extra;
  void *kern, *ctx;
};

/// A launch as the log shows it.
std::string describe(const Function &function, const unsigned grid[3],
                     void **params) {
  std::string text = function.name + "(";
  for (int i = 0; i < function.scalars; ++i) {
    int32_t value;
    std::memcpy(&value, params[i], sizeof(value));
    text += (i ? "," : "") + std::to_string(value);
  }
  return text + ") " + std::to_string(grid[0]) + "x" + std::to_string(grid[1]) +
         "x" + std::to_string(grid[2]);
}

struct Node {
  std::string launch;
};
struct Graph {
  std::vector<std::unique_ptr<Node>> nodes;
};
/// An instantiated graph: its own copy of each node, by the graph's node.
struct Exec {
  std::vector<Node *> order;
  std::map<Node *, std::string> launches;
};

std::string &log() {
  static std::string text;
  return text;
}
void note(const std::string &line) { log() += line + "\n"; }

std::vector<std::unique_ptr<Function>> &functions() {
  static std::vector<std::unique_ptr<Function>> all;
  return all;
}

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
int cuModuleGetFunction(Function **function, void *, const char *name) {
  auto made = std::make_unique<Function>();
  made->name = name;
  if (const char *count = std::strstr(name, "_s"))
    made->scalars = std::atoi(count + 2);
  *function = made.get();
  functions().push_back(std::move(made));
  return 0;
}
int cuLaunchKernel(Function *function, unsigned gx, unsigned gy, unsigned gz,
                   unsigned, unsigned, unsigned, unsigned, void *,
                   void **params, void **) {
  const unsigned grid[3] = {gx, gy, gz};
  note("launch " + describe(*function, grid, params));
  return 0;
}
int cuStreamSynchronize(void *) { return 0; }

int cuGraphCreate(Graph **graph, unsigned) {
  *graph = new Graph;
  return 0;
}
int cuGraphAddKernelNode_v2(Node **node, Graph *graph, Node *const *after,
                            size_t count, const KernelParams *params) {
  // The device builds a chain: each node after the one before.
  bool chained = graph->nodes.empty()
                     ? count == 0
                     : count == 1 && after[0] == graph->nodes.back().get();
  if (!chained)
    return 1;
  auto made = std::make_unique<Node>();
  made->launch = describe(*params->func, params->grid, params->kernelParams);
  note("node + " + made->launch);
  *node = made.get();
  graph->nodes.push_back(std::move(made));
  return 0;
}
int cuGraphInstantiateWithFlags(Exec **exec, Graph *graph, unsigned long long) {
  auto *made = new Exec;
  for (auto &node : graph->nodes) {
    made->order.push_back(node.get());
    made->launches[node.get()] = node->launch;
  }
  note("instantiate " + std::to_string(graph->nodes.size()));
  *exec = made;
  return 0;
}
int cuGraphExecKernelNodeSetParams_v2(Exec *exec, Node *node,
                                      const KernelParams *params) {
  auto found = exec->launches.find(node);
  if (found == exec->launches.end())
    return 1;
  found->second = describe(*params->func, params->grid, params->kernelParams);
  note("node = " + found->second);
  return 0;
}
int cuGraphLaunch(Exec *exec, void *) {
  note("graph launch");
  for (Node *node : exec->order)
    note("launch " + exec->launches[node]);
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
