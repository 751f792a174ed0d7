//===- CpuBackend.h - model code on this machine's CPU ----------*- C++ -*-===//
//
// The code section is an ELF shared object: loaded with dlopen from an
// anonymous memfd (an unlinked temporary file where memfd or /proc are
// missing), its entry points and description taken from the model's own
// object only. Weights are read in place from the file mapping; caches are
// 64-byte aligned host memory; parallel loops run on the OpenMP runtime the
// code links.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_BACKENDS_CPU_CPUBACKEND_H
#define XFMR_RUNTIME_BACKENDS_CPU_CPUBACKEND_H

#include "xfmr/runtime/ArtifactFormat.h"
#include "xfmr/runtime/Backend.h"

struct link_map;

namespace xfmr::runtime {

class CpuBackend : public Backend {
public:
  CpuBackend() = default;
  ~CpuBackend() override;
  CpuBackend(const CpuBackend &) = delete;
  CpuBackend &operator=(const CpuBackend &) = delete;

  std::string kind() const override { return "cpu"; }
  std::string checkTarget(const TargetInfo &target) const override;
  void loadCode(const uint8_t *code, uint64_t size,
                const CodeManifest &manifest) override;
  void uploadWeights(const uint8_t *data, uint64_t size) override;
  std::unique_ptr<DeviceBuffer> allocateCache(uint64_t bytes) override;
  void run(EntryPoint entry, const RunArgs &args) override;
  bool hasStep() const override { return step_ != nullptr; }
  void runStep(const StepArgs &args) override;
  void synchronize() override {}
  bool threadsSupported() const override {
    return ompSetNumThreads_ != nullptr;
  }
  void applyThreads(int threads) const override;
  void *symbol(const std::string &name) const override;

  /// The entry points of the loaded code.
  artifact::EntryFn prefillFn() const { return prefill_; }
  artifact::EntryFn decodeFn() const { return decode_; }
  artifact::StepFn stepFn() const { return step_; }

private:
  /// Whether `address` lies in the loaded model's own code object.
  bool inModel(const void *address) const;
  /// Gives the calling thread the SVE vector length the code needs.
  void useSveVectorBits() const;
  void checkModelInfo(const CodeManifest &manifest) const;

  int codeFd_ = -1;
  void *handle_ = nullptr;
  /// The loaded code object (dlinfo's link map) and its description.
  struct link_map *modelMap_ = nullptr;
  artifact::ModelInfo info_{};
  artifact::EntryFn prefill_ = nullptr, decode_ = nullptr;
  artifact::StepFn step_ = nullptr;
  void (*ompSetNumThreads_)(int) = nullptr;
  const uint8_t *weights_ = nullptr;
  uint64_t weightsSize_ = 0;
  /// The weights' copy in 2 MiB pages (see uploadWeights), or null.
  void *weightsCopy_ = nullptr;
  uint64_t weightsCopySize_ = 0;
  bool mapWeights_ = false;
  /// AArch64 code for one SVE vector length: its bits (0: any).
  int64_t sveBits_ = 0;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_BACKENDS_CPU_CPUBACKEND_H
