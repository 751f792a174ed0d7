//===- GpuBackend.h - model code on a GPU -----------------------*- C++ -*-===//
//
// Runs GPU artifacts (--target cuda:CHIP, rocm:CHIP, vulkan): the host code
// (an ELF shared object, loaded as the CPU backend loads CPU code) computes
// views and launches kernels through three hooks this backend stores in it
// (xfmr_gpu_launch_fn, xfmr_gpu_alloc_fn, xfmr_gpu_free_fn with
// xfmr_gpu_context); a GpuDevice (CUDA, HIP or Vulkan) does the memory,
// copies and launches. Weights are uploaded once, KV caches live in device
// memory, and only the logits come back.
//
// The hooks are called from compiled code, which has no unwind tables: they
// never throw. The first error is kept, later launches are skipped, and
// run() throws it when the entry point returns.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_BACKENDS_GPU_GPUBACKEND_H
#define XFMR_RUNTIME_BACKENDS_GPU_GPUBACKEND_H

#include "backends/cpu/CpuBackend.h"
#include "backends/gpu/GpuDevice.h"
#include "xfmr/runtime/Backend.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace xfmr::runtime {

class GpuBackend : public Backend {
public:
  /// `kind` is "cuda", "rocm" or "vulkan".
  explicit GpuBackend(std::string kind);
  ~GpuBackend() override;

  std::string kind() const override { return kind_; }
  std::string checkTarget(const TargetInfo &target) const override;
  void loadCode(const uint8_t *code, uint64_t size,
                const CodeManifest &manifest) override;
  void uploadWeights(const uint8_t *data, uint64_t size) override;
  std::unique_ptr<DeviceBuffer> allocateCache(uint64_t bytes) override;
  void run(EntryPoint entry, const RunArgs &args) override;
  bool hasStep() const override { return host_.stepFn() != nullptr; }
  void runStep(const StepArgs &args) override;
  void synchronize() override;
  void *symbol(const std::string &name) const override {
    return host_.symbol(name);
  }

  std::string deviceName() const override;
  uint64_t deviceMemoryBytes() const override;
  double uploadSeconds() const override { return uploadSeconds_; }
  /// Which device binary was loaded ("cubin", "ptx", "hsaco", "spirv").
  const std::string &loadedFormat() const { return loadedFormat_; }

  // The hooks' work (public for the C hooks only).
  void launchHook(int64_t kernel, int64_t gridX, int64_t gridY,
                  const int64_t *args) noexcept;
  uint64_t allocHook(int64_t bytes) noexcept;
  void freeHook(uint64_t address) noexcept;

private:
  /// Rethrows and clears the first error a hook recorded.
  void rethrowHookError();
  /// One call of the entry on all of `args`' tokens.
  void runWhole(EntryPoint entry, const RunArgs &args);

  std::string kind_;
  std::string path_;
  CpuBackend host_;
  std::unique_ptr<GpuDevice> device_;
  std::vector<GpuKernelInfo> kernels_;
  std::string loadedFormat_;
  uint64_t weights_ = 0, weightsSize_ = 0;
  double uploadSeconds_ = 0;
  /// Scratch device buffers for the ids and logits of a run, grown as
  /// needed.
  uint64_t ids_ = 0, idsBytes_ = 0, logits_ = 0, logitsBytes_ = 0;
  std::string hookError_;
  /// The first hook error was a BindingRangeError.
  bool hookRangeError_ = false;
  /// Tokens a prefill call may take on this device (0: as many as given):
  /// halved each time a call needs more of a buffer than a binding holds.
  int64_t prefillLimit_ = 0;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_BACKENDS_GPU_GPUBACKEND_H
