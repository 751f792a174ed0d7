//===- GpuDevice.h - one GPU API under the GPU backend ----------*- C++ -*-===//
//
// A GPU artifact's code is host code (an ELF shared object, run by the
// GpuBackend like CPU code) that launches device kernels through callbacks,
// plus one device binary (cubin / hsaco / SPIR-V). The GpuBackend does
// everything common; a GpuDevice is what one API implements: memory,
// copies, loading the binary and launching its kernels, in order on one
// queue/stream.
//
// Device addresses are opaque 64-bit values the host code computes with
// (base + byte offset) but never dereferences: real device pointers on CUDA
// and HIP; on Vulkan, buffer id << 40 | byte offset.
//
// Errors throw runtime::Error with the API's own error name and the call
// that failed ("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY").
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_BACKENDS_GPU_GPUDEVICE_H
#define XFMR_RUNTIME_BACKENDS_GPU_GPUDEVICE_H

#include "xfmr/runtime/Error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace xfmr::runtime {

/// One kernel of the device binary, as the manifest describes it.
///
/// Kernel parameter ABI (all GPU targets, see lowering/GPU/GPUKernelTarget):
///   1. one buffer per entry of `buffers` (a 1-D memref<?xT>; on CUDA/HIP
///      lowered to the 5 memref descriptor fields: allocated pointer,
///      aligned pointer, i64 offset, i64 size, i64 stride; on Vulkan a
///      storage-buffer binding: descriptor set 0, binding = parameter index),
///   2. one i32 element offset per buffer (CUDA/HIP pass 0 since their
///      pointers already point at the element; Vulkan binds the buffer at an
///      aligned offset and passes the rest here, in elements),
///   3. `scalars` i32 values.
/// On Vulkan, 2. and 3. are one storage buffer of i32 (binding = number of
/// buffers), so that a kernel needs buffers + 1 descriptors whatever its
/// scalar count (devices allow as few as 12 storage buffers per stage).
struct GpuKernelInfo {
  std::string name;
  /// Threads per block / workgroup.
  uint32_t block[3] = {1, 1, 1};
  /// Element size in bytes of each buffer parameter.
  std::vector<uint32_t> buffers;
  /// Number of trailing i32 scalar parameters.
  uint32_t scalars = 0;
  /// Per buffer, the bytes the kernel may touch from its first element:
  /// extents[k][0] times the scalars at positions extents[k][1...] (its
  /// dynamic sizes). Empty when the manifest has none (older artifacts).
  std::vector<std::vector<uint64_t>> extents;
};

/// Launch arguments as the host code passes them: for each buffer its
/// device address (already at the first element), then each scalar.
using GpuLaunchArgs = const int64_t *;

/// A launch that needs more of a buffer than the device binds at once
/// (Vulkan's maxStorageBufferRange): fewer tokens per call may fit.
class BindingRangeError : public Error {
public:
  using Error::Error;
};

/// The bytes buffer `k` of a launch of `info` on `args` may touch from its
/// first element (0: unknown).
uint64_t bufferExtent(const GpuKernelInfo &info, size_t k, GpuLaunchArgs args);

class GpuDevice {
public:
  virtual ~GpuDevice();

  /// The device's name ("NVIDIA H100 80GB HBM3", "llvmpipe (LLVM 15, 256
  /// bits)").
  virtual std::string name() const = 0;
  /// The chip the device is ("sm_90", "gfx942"; "" for Vulkan).
  virtual std::string chip() const = 0;
  /// Device memory in use by this device object, in bytes.
  virtual uint64_t memoryInUse() const = 0;

  /// Device memory of at least `bytes` (> 0), 256-byte aligned.
  virtual uint64_t allocate(uint64_t bytes) = 0;
  /// Releases an address allocate() returned (ordered after the work
  /// already launched: the memory may be reused by later launches only).
  virtual void release(uint64_t address) = 0;

  /// Copies host memory to the device (may return before it is done only if
  /// `source` is no longer needed by then), device to host (returns when the
  /// data is in `dest`, after all launched work), and zeroes device memory.
  virtual void copyToDevice(uint64_t dest, const void *source,
                            uint64_t bytes) = 0;
  virtual void copyToHost(void *dest, uint64_t source, uint64_t bytes) = 0;
  virtual void zero(uint64_t dest, uint64_t bytes) = 0;

  /// Loads the device binary and resolves `kernels` in it (by name).
  virtual void loadKernels(const uint8_t *binary, uint64_t size,
                           const std::vector<GpuKernelInfo> &kernels) = 0;
  /// Launches kernel `index` (into loadKernels' list) on a grid of `grid`
  /// blocks, after everything launched before it.
  virtual void launch(uint32_t index, const uint32_t grid[3],
                      GpuLaunchArgs args) = 0;
  /// Waits for everything launched.
  virtual void synchronize() = 0;

  /// Brackets one decode step's launches, which a device may submit as one
  /// unit at endStep() (CUDA: a graph, replayed with new arguments while
  /// the step's kernels and grids stay the same). Between the two, launches
  /// may be deferred: any other call (a copy, a wait) submits them first.
  /// `discard` drops the deferred launches (the step failed on the host).
  /// By default launches go out one by one.
  virtual void beginStep() {}
  virtual void endStep(bool discard = false) {}
};

/// The devices of this runtime. Each loads its API library with dlopen and
/// throws runtime::Error when it is missing ("libcuda.so.1 is not
/// installed: ...") or has no device.
std::unique_ptr<GpuDevice> createCudaDevice();
std::unique_ptr<GpuDevice> createHipDevice();
std::unique_ptr<GpuDevice> createVulkanDevice();

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_BACKENDS_GPU_GPUDEVICE_H
