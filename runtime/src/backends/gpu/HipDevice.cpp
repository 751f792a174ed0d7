//===- HipDevice.cpp - the GPU backend's device on HIP (ROCm) -------------===//
//
// libamdhip64 is loaded with dlopen (XFMR_HIP_LIBRARY overrides the path),
// so nothing here needs ROCm to build: the few HIP types and entry points
// are declared below. Only calls whose C signature is the same from ROCm 5
// (Debian's 5.2) to 6 are used; hipDeviceProp_t changed layout in ROCm 6,
// so the one field read from it (gcnArchName) is found by content, see
// gfxName().
//
// All work goes to the NULL stream of the selected device, which orders the
// synchronous copies, the memsets and the launches without events.
//
// Decode steps as HIP graphs (XFMR_HIP_GRAPHS=1, opt-in as CUDA's until
// measured on a GPU): the step's launches become a chain of kernel nodes,
// instantiated once and relaunched with new parameter values while the
// kernels and grids stay the same (KernelLaunch.h). The nodes name module
// kernels (hipFunction_t), which HIP's graphs take from ROCm 6 (clr's
// GraphKernelNode::getFunc); where a runtime refuses them, the device says
// so once on stderr and launches directly from then on.
//
//===----------------------------------------------------------------------===//

#include "backends/gpu/DeviceMemory.h"
#include "backends/gpu/GpuDevice.h"
#include "backends/gpu/KernelLaunch.h"
#include "xfmr/runtime/Error.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

using namespace xfmr::runtime;

namespace {

//===----------------------------------------------------------------------===//
// The HIP API subset (values from hip_runtime_api.h).
//===----------------------------------------------------------------------===//

using hipError_t = int;
using hipDevice_t = int;
using hipDeviceptr_t = void *;
using hipModule_t = struct ihipModule_t *;
using hipFunction_t = struct ihipModuleSymbol_t *;
using hipStream_t = struct ihipStream_t *;
using hipGraph_t = struct ihipGraph *;
using hipGraphNode_t = struct hipGraphNode *;
using hipGraphExec_t = struct hipGraphExec *;

/// hip_runtime_api.h's dim3 and hipKernelNodeParams (the same in ROCm 5
/// and 6): `func` is the module kernel, `extra` null.
struct Dim3 {
  uint32_t x, y, z;
};
struct KernelNodeParams {
  Dim3 blockDim;
  void **extra;
  void *func;
  Dim3 gridDim;
  void **kernelParams;
  unsigned sharedMemBytes;
};

constexpr hipError_t hipSuccess = 0;
constexpr hipError_t hipErrorOutOfMemory = 2;
constexpr hipError_t hipErrorNoDevice = 100;

constexpr hipStream_t nullStream = nullptr;

/// Bytes given to hipGetDeviceProperties: far more than any layout so far
/// (about 1 KiB in ROCm 5, 1.5 KiB in ROCm 6).
constexpr size_t propertiesBytes = 64 * 1024;

/// The HIP entry points this device uses.
struct HipApi {
  const char *(*hipGetErrorName)(hipError_t);
  hipError_t (*hipInit)(unsigned);
  hipError_t (*hipGetDeviceCount)(int *);
  hipError_t (*hipDeviceGet)(hipDevice_t *, int);
  hipError_t (*hipDeviceGetName)(char *, int, hipDevice_t);
  hipError_t (*hipGetDeviceProperties)(void *, int);
  hipError_t (*hipSetDevice)(int);
  hipError_t (*hipMalloc)(void **, size_t);
  hipError_t (*hipFree)(void *);
  hipError_t (*hipMemcpyHtoD)(hipDeviceptr_t, void *, size_t);
  hipError_t (*hipMemcpyDtoH)(void *, hipDeviceptr_t, size_t);
  hipError_t (*hipMemsetD8)(hipDeviceptr_t, unsigned char, size_t);
  hipError_t (*hipModuleLoadData)(hipModule_t *, const void *);
  hipError_t (*hipModuleUnload)(hipModule_t);
  hipError_t (*hipModuleGetFunction)(hipFunction_t *, hipModule_t,
                                     const char *);
  hipError_t (*hipModuleLaunchKernel)(hipFunction_t, unsigned, unsigned,
                                      unsigned, unsigned, unsigned, unsigned,
                                      unsigned, hipStream_t, void **, void **);
  hipError_t (*hipDeviceSynchronize)();
  // Graphs (optional: null where the runtime lacks them).
  hipError_t (*hipGraphCreate)(hipGraph_t *, unsigned);
  hipError_t (*hipGraphAddKernelNode)(hipGraphNode_t *, hipGraph_t,
                                      const hipGraphNode_t *, size_t,
                                      const KernelNodeParams *);
  hipError_t (*hipGraphInstantiateWithFlags)(hipGraphExec_t *, hipGraph_t,
                                             unsigned long long);
  hipError_t (*hipGraphExecKernelNodeSetParams)(hipGraphExec_t, hipGraphNode_t,
                                                const KernelNodeParams *);
  hipError_t (*hipGraphLaunch)(hipGraphExec_t, hipStream_t);
  hipError_t (*hipGraphExecDestroy)(hipGraphExec_t);
  hipError_t (*hipGraphDestroy)(hipGraph_t);
  bool hasGraphs() const {
    return hipGraphCreate && hipGraphAddKernelNode &&
           hipGraphInstantiateWithFlags && hipGraphExecKernelNodeSetParams &&
           hipGraphLaunch && hipGraphExecDestroy && hipGraphDestroy;
  }

  /// "hipErrorOutOfMemory (2)".
  std::string errorName(hipError_t result) const {
    const char *name = hipGetErrorName(result);
    return std::string(name ? name : "HIP error") + " (" +
           std::to_string(result) + ")";
  }

  /// Throws "<call> failed: <error><context>" unless `result` is success.
  void check(hipError_t result, const char *call,
             const std::string &context = "") const {
    if (result != hipSuccess)
      throw Error(std::string(call) + " failed: " + errorName(result) +
                  context);
  }
};

/// Loads the HIP runtime, which is never unloaded (it keeps threads and exit
/// handlers). Without an override: the development name, then the sonames
/// of ROCm 6 and 5.
HipApi loadHip() {
  const char *overridePath = std::getenv("XFMR_HIP_LIBRARY");
  std::vector<std::string> paths;
  if (overridePath && *overridePath)
    paths = {overridePath};
  else
    paths = {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"};
  void *library = nullptr;
  std::string path, why;
  for (const std::string &candidate : paths) {
    library = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library) {
      path = candidate;
      break;
    }
    const char *error = dlerror();
    why = error ? error : "unknown dlopen error";
  }
  if (!library) {
    std::string tried;
    for (const std::string &candidate : paths)
      tried += (tried.empty() ? "" : ", ") + candidate;
    throw Error(
        tried +
        " cannot be loaded (no ROCm HIP runtime on this machine?): " + why);
  }

  HipApi api;
  auto resolve = [&](auto &function, const char *symbol) {
    void *address = dlsym(library, symbol);
    if (!address)
      throw Error(path + " has no " + symbol +
                  " (a HIP runtime older than this runtime supports?)");
    function =
        reinterpret_cast<std::remove_reference_t<decltype(function)>>(address);
  };
#define XFMR_RESOLVE(name) resolve(api.name, #name)
  XFMR_RESOLVE(hipGetErrorName);
  XFMR_RESOLVE(hipInit);
  XFMR_RESOLVE(hipGetDeviceCount);
  XFMR_RESOLVE(hipDeviceGet);
  XFMR_RESOLVE(hipDeviceGetName);
  XFMR_RESOLVE(hipSetDevice);
  XFMR_RESOLVE(hipMalloc);
  XFMR_RESOLVE(hipFree);
  XFMR_RESOLVE(hipMemcpyHtoD);
  XFMR_RESOLVE(hipMemcpyDtoH);
  XFMR_RESOLVE(hipMemsetD8);
  XFMR_RESOLVE(hipModuleLoadData);
  XFMR_RESOLVE(hipModuleUnload);
  XFMR_RESOLVE(hipModuleGetFunction);
  XFMR_RESOLVE(hipModuleLaunchKernel);
  XFMR_RESOLVE(hipDeviceSynchronize);
#undef XFMR_RESOLVE
  auto optional = [&](auto &function, const char *symbol) {
    function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(
        dlsym(library, symbol));
  };
#define XFMR_OPTIONAL(name) optional(api.name, #name)
  XFMR_OPTIONAL(hipGraphCreate);
  XFMR_OPTIONAL(hipGraphAddKernelNode);
  XFMR_OPTIONAL(hipGraphInstantiateWithFlags);
  XFMR_OPTIONAL(hipGraphExecKernelNodeSetParams);
  XFMR_OPTIONAL(hipGraphLaunch);
  XFMR_OPTIONAL(hipGraphExecDestroy);
  XFMR_OPTIONAL(hipGraphDestroy);
#undef XFMR_OPTIONAL
  // ROCm 6 headers map hipGetDeviceProperties to the R0600 layout; ROCm 5
  // has only the unsuffixed one. gfxName() reads either.
  api.hipGetDeviceProperties = reinterpret_cast<hipError_t (*)(void *, int)>(
      dlsym(library, "hipGetDevicePropertiesR0600"));
  if (!api.hipGetDeviceProperties)
    resolve(api.hipGetDeviceProperties, "hipGetDeviceProperties");
  return api;
}

/// The device index XFMR_HIP_DEVICE selects (default 0) among `count`.
int selectDevice(int count) {
  const char *text = std::getenv("XFMR_HIP_DEVICE");
  if (!text || !*text)
    return 0;
  char *end = nullptr;
  errno = 0;
  long index = std::strtol(text, &end, 10);
  if (errno || *end || index < 0 || index >= count)
    throw Error(std::string("XFMR_HIP_DEVICE=") + text +
                " is not a HIP device index: this machine has " +
                std::to_string(count) + " (0 to " + std::to_string(count - 1) +
                ")");
  return static_cast<int>(index);
}

/// The gfx name ("gfx942") in a hipDeviceProp_t of any layout. HIP offers
/// the architecture name only as the struct's gcnArchName
/// ("gfx942:sramecc+:xnack-"; hipDeviceAttributeGcnArchName is not an int
/// attribute and its enum value moved between releases), and the struct's
/// layout differs between ROCm 5 and 6. Every layout starts with name[256]
/// and holds gcnArchName as a NUL-terminated string, so the first
/// "gfx<digits/letters>" ending in NUL or ':' after the name is it; the
/// feature suffix is dropped.
std::string gfxName(const char *properties, size_t size) {
  for (size_t i = 256; i + 4 < size; ++i) {
    if (std::memcmp(properties + i, "gfx", 3) != 0)
      continue;
    size_t end = i + 3;
    while (end < size && ((properties[end] >= '0' && properties[end] <= '9') ||
                          (properties[end] >= 'a' && properties[end] <= 'z')))
      ++end;
    if (end > i + 3 && end < size &&
        (properties[end] == '\0' || properties[end] == ':'))
      return std::string(properties + i, end - i);
  }
  return "";
}


void *pointer(uint64_t address) {
  return reinterpret_cast<void *>(uintptr_t(address));
}

struct HipKernel {
  GpuKernelInfo info;
  hipFunction_t function;
};

class HipDevice final : public GpuDevice {
public:
  HipDevice() : api(loadHip()) {
    api.check(api.hipInit(0), "hipInit");
    int count = 0;
    hipError_t result = api.hipGetDeviceCount(&count);
    if (result == hipErrorNoDevice || (result == hipSuccess && count <= 0))
      throw Error("no HIP device on this machine (hipGetDeviceCount found "
                  "none)");
    api.check(result, "hipGetDeviceCount");
    index = selectDevice(count);
    api.check(api.hipSetDevice(index), "hipSetDevice");
    hipDevice_t device = 0;
    api.check(api.hipDeviceGet(&device, index), "hipDeviceGet");

    char text[256] = {};
    api.check(api.hipDeviceGetName(text, sizeof(text) - 1, device),
              "hipDeviceGetName");
    deviceName = text;

    std::vector<char> properties(propertiesBytes, 0);
    api.check(api.hipGetDeviceProperties(properties.data(), index),
              "hipGetDeviceProperties");
    chipName = gfxName(properties.data(), properties.size());
    // The backend matches artifacts by chip: without one nothing would run.
    if (chipName.empty())
      throw Error("HIP device " + std::to_string(index) + " (" + deviceName +
                  ") reports no gfx architecture name");
    const char *graphsVariable = std::getenv("XFMR_HIP_GRAPHS");
    steps.enable(graphsVariable && std::string(graphsVariable) == "1" &&
                 api.hasGraphs());
  }

  ~HipDevice() override {
    // Errors are ignored: after a failed kernel the device may be unusable.
    if (api.hipSetDevice(index) != hipSuccess)
      return;
    api.hipDeviceSynchronize();
    destroyGraph();
    if (module)
      api.hipModuleUnload(module);
    memory.freeAll();
  }

  std::string name() const override { return deviceName; }
  std::string chip() const override { return chipName; }
  uint64_t memoryInUse() const override { return memory.driverBytes(); }

  uint64_t allocate(uint64_t bytes) override { return memory.allocate(bytes); }

  // Later work on the one in-order stream is all that can reuse it.
  void release(uint64_t address) override { memory.release(address); }

  void copyToDevice(uint64_t dest, const void *source,
                    uint64_t bytes) override {
    if (!bytes)
      return;
    interrupt();
    bind();
    // Synchronous, on the NULL stream: after earlier work, and `source` is
    // consumed when it returns. HIP's parameter is non-const but only read.
    api.check(
        api.hipMemcpyHtoD(pointer(dest), const_cast<void *>(source), bytes),
        "hipMemcpyHtoD",
        " copying " + std::to_string(bytes) + " bytes to " + hexAddress(dest));
  }

  void copyToHost(void *dest, uint64_t source, uint64_t bytes) override {
    if (!bytes)
      return;
    // Waiting first blames a failed kernel on the wait, not on the copy.
    synchronize();
    api.check(api.hipMemcpyDtoH(dest, pointer(source), bytes), "hipMemcpyDtoH",
              " copying " + std::to_string(bytes) + " bytes from " +
                  hexAddress(source));
  }

  void zero(uint64_t dest, uint64_t bytes) override {
    if (!bytes)
      return;
    interrupt();
    bind();
    api.check(api.hipMemsetD8(pointer(dest), 0, bytes), "hipMemsetD8",
              " zeroing " + std::to_string(bytes) + " bytes at " + hexAddress(dest));
  }

  void loadKernels(const uint8_t *binary, uint64_t size,
                   const std::vector<GpuKernelInfo> &kernelInfos) override {
    bind();
    // A hsaco is an ELF code object; HIP reads its size from the headers.
    hipModule_t loaded = nullptr;
    api.check(api.hipModuleLoadData(&loaded, binary), "hipModuleLoadData",
              " loading the device binary (" + std::to_string(size) +
                  " bytes) on " + chipName);

    std::vector<HipKernel> resolved;
    for (const GpuKernelInfo &info : kernelInfos) {
      hipFunction_t function = nullptr;
      hipError_t result =
          api.hipModuleGetFunction(&function, loaded, info.name.c_str());
      if (result != hipSuccess) {
        api.hipModuleUnload(loaded);
        api.check(result, "hipModuleGetFunction",
                  " looking up kernel '" + info.name +
                      "' in the device binary");
      }
      resolved.push_back({info, function});
    }

    if (module) {
      // Kernels of the old module may still be running.
      synchronize();
      api.hipModuleUnload(module);
    }
    module = loaded;
    kernels = std::move(resolved);
  }

  void launch(uint32_t kernelIndex, const uint32_t grid[3],
              GpuLaunchArgs args) override {
    if (kernelIndex >= kernels.size())
      throw Error("launching kernel " + std::to_string(kernelIndex) + " of " +
                  std::to_string(kernels.size()) + " loaded");
    const HipKernel &kernel = kernels[kernelIndex];
    // An empty grid is no work.
    if (!grid[0] || !grid[1] || !grid[2])
      return;
    // HIP copies the parameter values when it launches (or adds the graph
    // node).
    KernelLaunch launch = kernelLaunch(kernelIndex, grid, kernel.info, args);
    if (!steps.record(launch))
      submit(launch);
  }

  void beginStep() override { steps.begin(); }

  void endStep(bool discard) override {
    std::vector<KernelLaunch> step = steps.end(discard);
    if (!step.empty())
      replayAsGraph(step);
  }

  void synchronize() override {
    interrupt();
    bind();
    api.check(api.hipDeviceSynchronize(), "hipDeviceSynchronize",
              " (waiting for the launched work; a failed kernel reports "
              "here)");
  }

private:
  /// Selects the device on this thread: the device may be used from any
  /// thread, and HIP's current device is per thread.
  void bind() { api.check(api.hipSetDevice(index), "hipSetDevice"); }

  /// HIP's description of `launch` (pointers into `params`, which must
  /// outlive the call that reads it).
  KernelNodeParams nodeParams(const KernelLaunch &launch) {
    const HipKernel &kernel = kernels[launch.index];
    const uint32_t *block = kernel.info.block;
    return KernelNodeParams{{block[0], block[1], block[2]},
                            nullptr,
                            kernel.function,
                            {launch.grid[0], launch.grid[1], launch.grid[2]},
                            launch.parameters(params),
                            0};
  }

  std::string describe(const KernelLaunch &launch) const {
    return describeLaunch(launch, kernels[launch.index].info);
  }

  /// Launches `launch` now, on the NULL stream.
  void submit(const KernelLaunch &launch) {
    bind();
    KernelNodeParams p = nodeParams(launch);
    api.check(api.hipModuleLaunchKernel(
                  static_cast<hipFunction_t>(p.func), p.gridDim.x, p.gridDim.y,
                  p.gridDim.z, p.blockDim.x, p.blockDim.y, p.blockDim.z, 0,
                  nullStream, p.kernelParams, nullptr),
              "hipModuleLaunchKernel", describe(launch));
  }

  /// Anything but a launch during a step launches what the step recorded so
  /// far, one by one, and ends the recording (this step runs without a
  /// graph).
  void interrupt() {
    for (const KernelLaunch &launch : steps.interrupt())
      submit(launch);
  }

  /// Runs the step's launches as one graph: the last step's, with new
  /// parameter values, when the kernels and grids are the same (every
  /// decode step after the first), else a new chain of kernel nodes.
  void replayAsGraph(const std::vector<KernelLaunch> &step) {
    bind();
    if (graphExec && steps.fitsGraph(step)) {
      for (size_t i = 0; i < step.size(); ++i) {
        KernelNodeParams p = nodeParams(step[i]);
        api.check(api.hipGraphExecKernelNodeSetParams(graphExec, nodes[i], &p),
                  "hipGraphExecKernelNodeSetParams", describe(step[i]));
      }
    } else if (!buildGraph(step)) {
      return;
    }
    api.check(api.hipGraphLaunch(graphExec, nullStream), "hipGraphLaunch");
  }

  /// A new graph of `step`'s launches. Where HIP refuses it (a runtime whose
  /// graphs take no module kernels), says why once, launches the step
  /// directly and turns graphs off; false then.
  bool buildGraph(const std::vector<KernelLaunch> &step) {
    destroyGraph();
    try {
      api.check(api.hipGraphCreate(&graph, 0), "hipGraphCreate");
      for (const KernelLaunch &launch : step) {
        KernelNodeParams p = nodeParams(launch);
        hipGraphNode_t node = nullptr;
        const hipGraphNode_t *after = nodes.empty() ? nullptr : &nodes.back();
        api.check(api.hipGraphAddKernelNode(&node, graph, after,
                                            nodes.empty() ? 0 : 1, &p),
                  "hipGraphAddKernelNode", describe(launch));
        nodes.push_back(node);
      }
      api.check(api.hipGraphInstantiateWithFlags(&graphExec, graph, 0),
                "hipGraphInstantiateWithFlags",
                " (a decode step of " + std::to_string(step.size()) +
                    " kernels)");
    } catch (const Error &error) {
      destroyGraph();
      steps.enable(false);
      std::fprintf(stderr,
                   "xfmr: XFMR_HIP_GRAPHS=1, but this HIP runtime builds no "
                   "graph of the decode step (%s); launching its kernels "
                   "one by one\n",
                   error.what());
      for (const KernelLaunch &launch : step)
        submit(launch);
      return false;
    }
    steps.keepShape(step);
    return true;
  }

  void destroyGraph() {
    if (graphExec)
      api.hipGraphExecDestroy(graphExec);
    if (graph)
      api.hipGraphDestroy(graph);
    graphExec = nullptr;
    graph = nullptr;
    nodes.clear();
    steps.forgetShape();
  }

  HipApi api;
  int index = 0;
  std::string deviceName, chipName;

  hipModule_t module = nullptr;
  std::vector<HipKernel> kernels;

  /// Device memory, cached by size class over hipMalloc/hipFree.
  CachingAllocator memory{CachingAllocator::Driver{
      [this](uint64_t bytes, bool lastTry, uint64_t &address) {
        bind();
        void *block = nullptr;
        hipError_t result = api.hipMalloc(&block, bytes);
        if (result == hipErrorOutOfMemory && !lastTry)
          return false;
        api.check(result, "hipMalloc",
                  " allocating " + std::to_string(bytes) + " bytes (" +
                      std::to_string(memory.liveBytes()) + " bytes in use)");
        address = reinterpret_cast<uintptr_t>(block);
        return true;
      },
      [this](uint64_t address) {
        api.check(api.hipFree(pointer(address)), "hipFree");
      },
      [this] { synchronize(); }}};

  /// The parameter pointers of the launch being submitted.
  std::vector<void *> params;

  /// Decode steps as HIP graphs (XFMR_HIP_GRAPHS=1, where the runtime has
  /// them): the step being recorded, and the last step's graph with its
  /// nodes.
  StepRecorder steps;
  hipGraph_t graph = nullptr;
  hipGraphExec_t graphExec = nullptr;
  std::vector<hipGraphNode_t> nodes;
};

} // namespace

std::unique_ptr<GpuDevice> xfmr::runtime::createHipDevice() {
  return std::make_unique<HipDevice>();
}
