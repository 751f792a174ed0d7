//===- CudaDevice.cpp - the GPU backend's device on the CUDA driver API ---===//
//
// libcuda.so.1 is loaded with dlopen (XFMR_CUDA_LIBRARY overrides the path),
// so nothing here needs the CUDA toolkit to build: the few driver types and
// entry points are declared below, with the versioned symbol names (`_v2`)
// that cuda.h's macros resolve to.
//
// All work goes to the legacy NULL stream of the device's primary context:
// the synchronous copies, the memsets and the launches are then ordered
// with each other without events, and the primary context is the one that
// other CUDA users in the process (the runtime API) share.
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
// The CUDA driver API subset (values from cuda.h).
//===----------------------------------------------------------------------===//

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUgraph = struct CUgraph_st *;
using CUgraphNode = struct CUgraphNode_st *;
using CUgraphExec = struct CUgraphExec_st *;
using CUkernel = struct CUkern_st *;

/// CUDA_KERNEL_NODE_PARAMS_v2 (cuda.h): `func` set, `kern` and `ctx` null.
struct KernelNodeParams {
  CUfunction func;
  unsigned gridDimX, gridDimY, gridDimZ;
  unsigned blockDimX, blockDimY, blockDimZ;
  unsigned sharedMemBytes;
  void **kernelParams;
  void **extra;
  CUkernel kern;
  CUcontext ctx;
};

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult CUDA_ERROR_NO_BINARY_FOR_GPU = 209;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_JIT_ERROR_LOG_BUFFER = 5;
constexpr int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;

/// The legacy default stream: implicitly ordered with the synchronous copies.
constexpr CUstream nullStream = nullptr;

/// Names of the errors worth naming when cuGetErrorName cannot (the
/// toolkit's stub library fails every call, cuGetErrorName included).
const char *knownErrorName(CUresult result) {
  switch (result) {
  case 1:
    return "CUDA_ERROR_INVALID_VALUE";
  case 2:
    return "CUDA_ERROR_OUT_OF_MEMORY";
  case 3:
    return "CUDA_ERROR_NOT_INITIALIZED";
  case 4:
    return "CUDA_ERROR_DEINITIALIZED";
  case 34:
    return "CUDA_ERROR_STUB_LIBRARY";
  case 36:
    return "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER";
  case 46:
    return "CUDA_ERROR_DEVICE_UNAVAILABLE";
  case 100:
    return "CUDA_ERROR_NO_DEVICE";
  case 101:
    return "CUDA_ERROR_INVALID_DEVICE";
  case 200:
    return "CUDA_ERROR_INVALID_IMAGE";
  case 201:
    return "CUDA_ERROR_INVALID_CONTEXT";
  case 209:
    return "CUDA_ERROR_NO_BINARY_FOR_GPU";
  case 218:
    return "CUDA_ERROR_INVALID_PTX";
  case 222:
    return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
  case 400:
    return "CUDA_ERROR_INVALID_HANDLE";
  case 500:
    return "CUDA_ERROR_NOT_FOUND";
  case 700:
    return "CUDA_ERROR_ILLEGAL_ADDRESS";
  case 701:
    return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
  case 716:
    return "CUDA_ERROR_MISALIGNED_ADDRESS";
  case 719:
    return "CUDA_ERROR_LAUNCH_FAILED";
  case 803:
    return "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH";
  case 999:
    return "CUDA_ERROR_UNKNOWN";
  default:
    return nullptr;
  }
}

/// The driver entry points this device uses.
struct CudaApi {
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuDevicePrimaryCtxRelease_v2)(CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuMemAlloc_v2)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree_v2)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH_v2)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *,
                                 void **);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, CUstream, void **,
                             void **);
  CUresult (*cuStreamSynchronize)(CUstream);
  // Graphs (optional: null where the driver lacks them).
  CUresult (*cuGraphCreate)(CUgraph *, unsigned);
  CUresult (*cuGraphAddKernelNode_v2)(CUgraphNode *, CUgraph,
                                      const CUgraphNode *, size_t,
                                      const KernelNodeParams *);
  CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph,
                                          unsigned long long);
  CUresult (*cuGraphExecKernelNodeSetParams_v2)(CUgraphExec, CUgraphNode,
                                                const KernelNodeParams *);
  CUresult (*cuGraphLaunch)(CUgraphExec, CUstream);
  CUresult (*cuGraphExecDestroy)(CUgraphExec);
  CUresult (*cuGraphDestroy)(CUgraph);
  bool hasGraphs() const {
    return cuGraphCreate && cuGraphAddKernelNode_v2 &&
           cuGraphInstantiateWithFlags && cuGraphExecKernelNodeSetParams_v2 &&
           cuGraphLaunch && cuGraphExecDestroy && cuGraphDestroy;
  }

  /// "CUDA_ERROR_OUT_OF_MEMORY (2)".
  std::string errorName(CUresult result) const {
    const char *name = nullptr;
    if (cuGetErrorName(result, &name) != CUDA_SUCCESS || !name)
      name = knownErrorName(result);
    std::string text = name ? name : "CUDA error";
    return text + " (" + std::to_string(result) + ")";
  }

  /// Throws "<call> failed: <error><context>" unless `result` is success.
  void check(CUresult result, const char *call,
             const std::string &context = "") const {
    if (result != CUDA_SUCCESS)
      throw Error(std::string(call) + " failed: " + errorName(result) +
                  context);
  }
};

/// Loads the driver library. It is never unloaded: the driver keeps threads
/// and exit handlers that must outlive every device object.
CudaApi loadCuda() {
  const char *overridePath = std::getenv("XFMR_CUDA_LIBRARY");
  std::string path =
      overridePath && *overridePath ? overridePath : "libcuda.so.1";
  void *library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char *why = dlerror();
    throw Error(path +
                " cannot be loaded (no NVIDIA driver on this machine?): " +
                (why ? why : "unknown dlopen error"));
  }
  CudaApi api;
  auto resolve = [&](auto &function, const char *symbol) {
    void *address = dlsym(library, symbol);
    if (!address)
      throw Error(path + " has no " + symbol +
                  " (a driver older than this runtime supports?)");
    function =
        reinterpret_cast<std::remove_reference_t<decltype(function)>>(address);
  };
#define XFMR_RESOLVE(name) resolve(api.name, #name)
  XFMR_RESOLVE(cuGetErrorName);
  XFMR_RESOLVE(cuInit);
  XFMR_RESOLVE(cuDeviceGetCount);
  XFMR_RESOLVE(cuDeviceGet);
  XFMR_RESOLVE(cuDeviceGetName);
  XFMR_RESOLVE(cuDeviceGetAttribute);
  XFMR_RESOLVE(cuDevicePrimaryCtxRetain);
  XFMR_RESOLVE(cuDevicePrimaryCtxRelease_v2);
  XFMR_RESOLVE(cuCtxSetCurrent);
  XFMR_RESOLVE(cuMemAlloc_v2);
  XFMR_RESOLVE(cuMemFree_v2);
  XFMR_RESOLVE(cuMemcpyHtoD_v2);
  XFMR_RESOLVE(cuMemcpyDtoH_v2);
  XFMR_RESOLVE(cuMemsetD8Async);
  XFMR_RESOLVE(cuModuleLoadDataEx);
  XFMR_RESOLVE(cuModuleUnload);
  XFMR_RESOLVE(cuModuleGetFunction);
  XFMR_RESOLVE(cuLaunchKernel);
  XFMR_RESOLVE(cuStreamSynchronize);
#undef XFMR_RESOLVE
  auto optional = [&](auto &function, const char *symbol) {
    function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(
        dlsym(library, symbol));
  };
#define XFMR_OPTIONAL(name) optional(api.name, #name)
  XFMR_OPTIONAL(cuGraphCreate);
  XFMR_OPTIONAL(cuGraphAddKernelNode_v2);
  XFMR_OPTIONAL(cuGraphInstantiateWithFlags);
  XFMR_OPTIONAL(cuGraphExecKernelNodeSetParams_v2);
  XFMR_OPTIONAL(cuGraphLaunch);
  XFMR_OPTIONAL(cuGraphExecDestroy);
  XFMR_OPTIONAL(cuGraphDestroy);
#undef XFMR_OPTIONAL
  return api;
}

/// The device index XFMR_CUDA_DEVICE selects (default 0) among `count`.
int selectDevice(int count) {
  const char *text = std::getenv("XFMR_CUDA_DEVICE");
  if (!text || !*text)
    return 0;
  char *end = nullptr;
  errno = 0;
  long index = std::strtol(text, &end, 10);
  if (errno || *end || index < 0 || index >= count)
    throw Error(std::string("XFMR_CUDA_DEVICE=") + text +
                " is not a CUDA device index: this machine has " +
                std::to_string(count) + " (0 to " + std::to_string(count - 1) +
                ")");
  return static_cast<int>(index);
}

struct CudaKernel {
  GpuKernelInfo info;
  CUfunction function;
};

class CudaDevice final : public GpuDevice {
public:
  CudaDevice() : api(loadCuda()) {
    api.check(api.cuInit(0), "cuInit");
    int count = 0;
    api.check(api.cuDeviceGetCount(&count), "cuDeviceGetCount");
    if (count <= 0)
      throw Error("no CUDA device on this machine (cuDeviceGetCount found "
                  "none)");
    int index = selectDevice(count);
    api.check(api.cuDeviceGet(&device, index), "cuDeviceGet");

    char text[256] = {};
    api.check(api.cuDeviceGetName(text, sizeof(text) - 1, device),
              "cuDeviceGetName");
    deviceName = text;
    int major = 0, minor = 0;
    api.check(api.cuDeviceGetAttribute(
                  &major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
              "cuDeviceGetAttribute");
    api.check(api.cuDeviceGetAttribute(
                  &minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
              "cuDeviceGetAttribute");
    // No "a" suffix: an sm_90a artifact is what an sm_90 device runs.
    chipName = "sm_" + std::to_string(major * 10 + minor);

    // Last, so that nothing above can fail with the context retained.
    api.check(api.cuDevicePrimaryCtxRetain(&context, device),
              "cuDevicePrimaryCtxRetain");
    CUresult result = api.cuCtxSetCurrent(context);
    if (result != CUDA_SUCCESS) {
      api.cuDevicePrimaryCtxRelease_v2(device);
      api.check(result, "cuCtxSetCurrent");
    }
    // Decode steps as graphs: opt-in until measured on a GPU.
    const char *graphsVariable = std::getenv("XFMR_CUDA_GRAPHS");
    steps.enable(graphsVariable && std::string(graphsVariable) == "1" &&
                 api.hasGraphs());
  }

  ~CudaDevice() override {
    // Errors are ignored: a failed kernel leaves the context unusable, and
    // releasing the primary context frees whatever remains anyway.
    if (api.cuCtxSetCurrent(context) == CUDA_SUCCESS) {
      api.cuStreamSynchronize(nullStream);
      destroyGraph();
      if (module)
        api.cuModuleUnload(module);
      memory.freeAll();
    }
    api.cuDevicePrimaryCtxRelease_v2(device);
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
    // consumed (staged) when it returns.
    api.check(api.cuMemcpyHtoD_v2(dest, source, bytes), "cuMemcpyHtoD_v2",
              " copying " + std::to_string(bytes) + " bytes to " + hexAddress(dest));
  }

  void copyToHost(void *dest, uint64_t source, uint64_t bytes) override {
    if (!bytes)
      return;
    // Waiting first blames a failed kernel on the wait, not on the copy.
    synchronize();
    api.check(api.cuMemcpyDtoH_v2(dest, source, bytes), "cuMemcpyDtoH_v2",
              " copying " + std::to_string(bytes) + " bytes from " +
                  hexAddress(source));
  }

  void zero(uint64_t dest, uint64_t bytes) override {
    if (!bytes)
      return;
    interrupt();
    bind();
    api.check(api.cuMemsetD8Async(dest, 0, bytes, nullStream),
              "cuMemsetD8Async",
              " zeroing " + std::to_string(bytes) + " bytes at " + hexAddress(dest));
  }

  void loadKernels(const uint8_t *binary, uint64_t size,
                   const std::vector<GpuKernelInfo> &kernelInfos) override {
    bind();
    // A cubin (ELF) or fatbinary is passed as is; PTX is text that the
    // driver reads up to a NUL, which the artifact's bytes need not have.
    bool isElf = size >= 4 && std::memcmp(binary,
                                          "\x7f"
                                          "ELF",
                                          4) == 0;
    bool isFatbin =
        size >= 4 && std::memcmp(binary, "\x50\xed\x55\xba", 4) == 0;
    std::string ptx;
    const void *image = binary;
    if (!isElf && !isFatbin) {
      ptx.assign(reinterpret_cast<const char *>(binary), size);
      ptx.push_back('\0');
      image = ptx.c_str();
    }

    char log[8192] = {};
    int options[] = {CU_JIT_ERROR_LOG_BUFFER,
                     CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *values[] = {log, reinterpret_cast<void *>(uintptr_t(sizeof(log)))};
    CUmodule loaded = nullptr;
    CUresult result =
        api.cuModuleLoadDataEx(&loaded, image, 2, options, values);
    if (result != CUDA_SUCCESS) {
      log[sizeof(log) - 1] = '\0';
      std::string context = std::string(" loading the device binary (") +
                            (isElf      ? "cubin"
                             : isFatbin ? "fatbin"
                                        : "PTX") +
                            ", " + std::to_string(size) + " bytes) on " +
                            chipName;
      if (result == CUDA_ERROR_NO_BINARY_FOR_GPU)
        context += " (it was built for another chip)";
      if (*log)
        context += ": " + std::string(log);
      api.check(result, "cuModuleLoadDataEx", context);
    }

    std::vector<CudaKernel> resolved;
    for (const GpuKernelInfo &info : kernelInfos) {
      CUfunction function = nullptr;
      result = api.cuModuleGetFunction(&function, loaded, info.name.c_str());
      if (result != CUDA_SUCCESS) {
        api.cuModuleUnload(loaded);
        api.check(result, "cuModuleGetFunction",
                  " looking up kernel '" + info.name +
                      "' in the device binary");
      }
      resolved.push_back({info, function});
    }

    if (module) {
      // Kernels of the old module may still be running.
      synchronize();
      api.cuModuleUnload(module);
    }
    module = loaded;
    kernels = std::move(resolved);
  }

  void launch(uint32_t index, const uint32_t grid[3],
              GpuLaunchArgs args) override {
    if (index >= kernels.size())
      throw Error("launching kernel " + std::to_string(index) + " of " +
                  std::to_string(kernels.size()) + " loaded");
    const CudaKernel &kernel = kernels[index];
    // An empty grid is no work (and an error to cuLaunchKernel).
    if (!grid[0] || !grid[1] || !grid[2])
      return;

    // The driver copies the parameter values when it launches (or adds the
    // graph node).
    KernelLaunch launch = kernelLaunch(index, grid, kernel.info, args);
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
    api.check(api.cuStreamSynchronize(nullStream), "cuStreamSynchronize",
              " (waiting for the launched work; a failed kernel reports "
              "here)");
  }

private:
  /// Makes the context current: the device may be used from any thread.
  void bind() { api.check(api.cuCtxSetCurrent(context), "cuCtxSetCurrent"); }

  /// The driver's description of `launch` (pointers into `params`, which
  /// must outlive the call that reads it).
  KernelNodeParams nodeParams(const KernelLaunch &launch) {
    const CudaKernel &kernel = kernels[launch.index];
    const uint32_t *block = kernel.info.block;
    return KernelNodeParams{kernel.function,
                            launch.grid[0],
                            launch.grid[1],
                            launch.grid[2],
                            block[0],
                            block[1],
                            block[2],
                            0,
                            launch.parameters(params),
                            nullptr,
                            nullptr,
                            nullptr};
  }

  std::string describe(const KernelLaunch &launch) const {
    return describeLaunch(launch, kernels[launch.index].info);
  }

  /// Launches `launch` now, on the NULL stream.
  void submit(const KernelLaunch &launch) {
    bind();
    KernelNodeParams p = nodeParams(launch);
    api.check(api.cuLaunchKernel(p.func, p.gridDimX, p.gridDimY, p.gridDimZ,
                                 p.blockDimX, p.blockDimY, p.blockDimZ, 0,
                                 nullStream, p.kernelParams, nullptr),
              "cuLaunchKernel", describe(launch));
  }

  /// Anything but a launch during a step submits what the step recorded so
  /// far, one by one, and ends the recording (this step runs without a
  /// graph).
  void interrupt() {
    for (const KernelLaunch &launch : steps.interrupt())
      submit(launch);
  }

  /// Runs the step's launches as one graph: the last step's, with new
  /// arguments, when the kernels and grids are the same (every decode step
  /// after the first), else a new one (a chain of kernel nodes).
  void replayAsGraph(const std::vector<KernelLaunch> &step) {
    bind();
    if (graphExec && steps.fitsGraph(step)) {
      for (size_t i = 0; i < step.size(); ++i) {
        KernelNodeParams p = nodeParams(step[i]);
        api.check(
            api.cuGraphExecKernelNodeSetParams_v2(graphExec, nodes[i], &p),
            "cuGraphExecKernelNodeSetParams", describe(step[i]));
      }
    } else {
      destroyGraph();
      api.check(api.cuGraphCreate(&graph, 0), "cuGraphCreate");
      for (const KernelLaunch &launch : step) {
        KernelNodeParams p = nodeParams(launch);
        CUgraphNode node = nullptr;
        const CUgraphNode *after = nodes.empty() ? nullptr : &nodes.back();
        api.check(api.cuGraphAddKernelNode_v2(&node, graph, after,
                                              nodes.empty() ? 0 : 1, &p),
                  "cuGraphAddKernelNode", describe(launch));
        nodes.push_back(node);
      }
      api.check(api.cuGraphInstantiateWithFlags(&graphExec, graph, 0),
                "cuGraphInstantiateWithFlags",
                " (a decode step of " + std::to_string(step.size()) +
                    " kernels)");
      steps.keepShape(step);
    }
    api.check(api.cuGraphLaunch(graphExec, nullStream), "cuGraphLaunch");
  }

  void destroyGraph() {
    if (graphExec)
      api.cuGraphExecDestroy(graphExec);
    if (graph)
      api.cuGraphDestroy(graph);
    graphExec = nullptr;
    graph = nullptr;
    nodes.clear();
    steps.forgetShape();
  }

  CudaApi api;
  CUdevice device = 0;
  CUcontext context = nullptr;
  std::string deviceName, chipName;

  CUmodule module = nullptr;
  std::vector<CudaKernel> kernels;

  /// Device memory, cached by size class over cuMemAlloc/cuMemFree.
  CachingAllocator memory{CachingAllocator::Driver{
      [this](uint64_t bytes, bool lastTry, uint64_t &address) {
        bind();
        CUdeviceptr block = 0;
        CUresult result = api.cuMemAlloc_v2(&block, bytes);
        if (result == CUDA_ERROR_OUT_OF_MEMORY && !lastTry)
          return false;
        api.check(result, "cuMemAlloc_v2",
                  " allocating " + std::to_string(bytes) + " bytes (" +
                      std::to_string(memory.liveBytes()) + " bytes in use)");
        address = block;
        return true;
      },
      [this](uint64_t address) {
        api.check(api.cuMemFree_v2(address), "cuMemFree_v2");
      },
      [this] { synchronize(); }}};

  /// The parameter pointers of the launch being submitted.
  std::vector<void *> params;

  /// Decode steps as CUDA graphs (XFMR_CUDA_GRAPHS=1, where the driver has
  /// them): the step being recorded, and the last step's graph with its
  /// nodes.
  StepRecorder steps;
  CUgraph graph = nullptr;
  CUgraphExec graphExec = nullptr;
  std::vector<CUgraphNode> nodes;
};

} // namespace

std::unique_ptr<GpuDevice> xfmr::runtime::createCudaDevice() {
  return std::make_unique<CudaDevice>();
}
