//===- Backend.h - where a model's code runs --------------------*- C++ -*-===//
//
// The artifact layer (Artifact.h) reads and checks the file; a Backend runs
// what is in it on one kind of device: it loads the code section, makes the
// weights available to it, owns the KV caches of sessions and runs the
// entry points. Artifact::open picks the backend by the manifest's target
// kind ("cpu" today); sessions only talk to this interface. Plain C++17:
// no MLIR or LLVM, as the rest of the runtime.
//
// Adding a backend: implement this interface under runtime/src/backends/
// and add its kind to createBackend() (runtime/src/Backend.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_BACKEND_H
#define XFMR_RUNTIME_BACKEND_H

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace xfmr::runtime {

struct ModelConfig;
struct TargetInfo;
class JsonValue;

/// What the manifest says about the code, for the backend to check the code
/// against before anything runs.
struct CodeManifest {
  /// The artifact's path, for messages.
  std::string path;
  const ModelConfig *model = nullptr;
  const TargetInfo *target = nullptr;
  uint64_t kvCacheBytes = 0;
  uint64_t weightsBytes = 0;
  /// The entry points' symbol names; stepName is empty in artifacts
  /// without a step entry.
  std::string prefillName, decodeName, stepName;
  /// The manifest's "target" object, for backends with more to read (GPU
  /// artifacts: device binaries and the kernel table).
  const JsonValue *targetJson = nullptr;
  /// CPU: keep the weights in the file mapping (OpenOptions::mapWeights).
  bool mapWeights = false;
};

/// Memory of a backend's device holding one session's KV cache (and the MoE
/// expert counters the code keeps in it).
class DeviceBuffer {
public:
  virtual ~DeviceBuffer();
  virtual uint64_t bytes() const = 0;
  /// Zeroes it (the ABI's "zero at reset").
  virtual void clear() = 0;
  /// Copies `size` bytes at `offset` to host memory.
  virtual void read(uint64_t offset, void *out, uint64_t size) const = 0;
};

enum class EntryPoint { Prefill, Decode };

/// One call of an entry point; ids and logits are host memory.
struct RunArgs {
  const int32_t *ids = nullptr;
  int64_t count = 0;
  /// The position of ids[0].
  int64_t start = 0;
  DeviceBuffer *cache = nullptr;
  /// [count, vocab], written.
  float *logits = nullptr;
  int64_t vocab = 0;
  /// Threads for the code (host backends); 0 leaves the current count.
  int threads = 0;
};

/// One sequence of a step: `count` ids from `firstRow` of the step's ids,
/// at positions start..., in `cache`.
struct StepSegment {
  int64_t firstRow = 0;
  int64_t count = 0;
  int64_t start = 0;
  DeviceBuffer *cache = nullptr;
};

/// One call of the step entry: several sequences' tokens in one call.
struct StepArgs {
  /// Every segment's ids, in segment order.
  const int32_t *ids = nullptr;
  int64_t count = 0;
  std::vector<StepSegment> segments;
  /// [segments, vocab], written: the logits of each segment's last id.
  float *logits = nullptr;
  int64_t vocab = 0;
  int threads = 0;
};

/// What a backend hands the step entry about its segments: `rows` is the
/// [segments, 4] table (first row, count, start, the byte offset of the
/// segment's cache from `base`), `base` the lowest cache address and `end`
/// the end of the highest cache. The caches stay separate allocations; the
/// code only forms addresses inside them.
struct StepTable {
  std::vector<int64_t> rows;
  uint64_t base = 0, end = 0;
};
/// The table for `args`, with each cache's address as `address` gives it.
StepTable makeStepTable(const StepArgs &args,
                        const std::function<uint64_t(DeviceBuffer &)> &address);

class Backend {
public:
  virtual ~Backend();

  /// The target kind it runs ("cpu").
  virtual std::string kind() const = 0;

  /// Why code compiled for `target` cannot run here ("" when it can): the
  /// CPU compares the triple and the ISA features with the host's.
  virtual std::string checkTarget(const TargetInfo &target) const = 0;

  /// Loads the code section and checks that its own description agrees
  /// with `manifest`. Throws `Error` naming manifest.path.
  virtual void loadCode(const uint8_t *code, uint64_t size,
                        const CodeManifest &manifest) = 0;

  /// Makes the weight blob (inside the artifact's read-only mapping, which
  /// outlives the backend) available to the code: the CPU reads it in place,
  /// a GPU copies it to device memory once.
  virtual void uploadWeights(const uint8_t *data, uint64_t size) = 0;

  /// A zeroed KV cache of `bytes` for one session. Throws `Error`.
  virtual std::unique_ptr<DeviceBuffer> allocateCache(uint64_t bytes) = 0;

  /// Runs an entry point (validated inputs: the session checks ids and
  /// positions first).
  virtual void run(EntryPoint entry, const RunArgs &args) = 0;

  /// Whether the loaded code has the step entry (artifacts since ABI 2).
  virtual bool hasStep() const { return false; }
  /// Runs the step entry (validated inputs: every segment's cache comes
  /// from this backend's allocateCache() and no two segments share one).
  virtual void runStep(const StepArgs &args);

  /// Waits until everything run() started has finished and its logits are
  /// in host memory (the CPU runs synchronously).
  virtual void synchronize() = 0;

  /// Thread counts of host code: whether the code honours them, and
  /// applying one for the calling thread.
  virtual bool threadsSupported() const { return false; }
  virtual void applyThreads(int threads) const {}

  /// For statistics: the device's name, the device memory the backend
  /// holds and how long uploadWeights() took.
  virtual std::string deviceName() const { return kind(); }
  virtual uint64_t deviceMemoryBytes() const { return 0; }
  virtual double uploadSeconds() const { return 0; }

  /// A symbol of the loaded code, or null (host backends).
  virtual void *symbol(const std::string &name) const { return nullptr; }
};

/// The backend for a target kind; throws `Error` naming the kinds this
/// runtime has when it has none for `kind`.
std::unique_ptr<Backend> createBackend(const std::string &kind);

/// The kinds createBackend() knows.
std::vector<std::string> backendKinds();

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_BACKEND_H
