//===- GpuBackend.cpp - model code on a GPU -------------------------------===//

#include "backends/gpu/GpuBackend.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/ArtifactFormat.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <algorithm>
#include <cstring>

using namespace xfmr::runtime;
using namespace xfmr::artifact;

//===----------------------------------------------------------------------===//
// The hooks the host code calls
//===----------------------------------------------------------------------===//

namespace {
extern "C" void xfmrGpuLaunch(void *context, int64_t kernel, int64_t gridX,
                              int64_t gridY, int64_t args) {
  static_cast<GpuBackend *>(context)->launchHook(
      kernel, gridX, gridY, reinterpret_cast<const int64_t *>(args));
}
extern "C" void *xfmrGpuAlloc(void *context, int64_t bytes) {
  return reinterpret_cast<void *>(
      static_cast<GpuBackend *>(context)->allocHook(bytes));
}
extern "C" void xfmrGpuFree(void *context, void *pointer) {
  static_cast<GpuBackend *>(context)->freeHook(
      reinterpret_cast<uint64_t>(pointer));
}

/// An address that is never a real allocation: what a failed allocation
/// returns to the host code (the launches using it are skipped).
constexpr uint64_t kFailedAllocation = 0x7fff000000000000ull;

class GpuCache : public DeviceBuffer {
public:
  GpuCache(GpuDevice &device, uint64_t bytes)
      : device_(device), bytes_(bytes), address_(device.allocate(bytes)) {
    clear();
  }
  ~GpuCache() override {
    try {
      device_.release(address_);
    } catch (const Error &) {
      // Nothing to do about it while destroying.
    }
  }
  uint64_t bytes() const override { return bytes_; }
  void clear() override { device_.zero(address_, bytes_); }
  void read(uint64_t offset, void *out, uint64_t size) const override {
    device_.copyToHost(out, address_ + offset, size);
  }
  uint64_t address() const { return address_; }

private:
  GpuDevice &device_;
  uint64_t bytes_, address_;
};

/// "sm_90a" -> 90 (and whether it is an arch-specific 'a' target).
int smVersion(const std::string &chip, bool *archSpecific = nullptr) {
  if (chip.rfind("sm_", 0) != 0)
    return -1;
  std::string digits = chip.substr(3);
  bool a = !digits.empty() && digits.back() == 'a';
  if (a)
    digits.pop_back();
  if (archSpecific)
    *archSpecific = a;
  return digits.empty() ? -1 : std::atoi(digits.c_str());
}

uint64_t requireUnsigned(const JsonValue &object, const char *key,
                         const std::string &path) {
  const JsonValue *value = object.find(key);
  if (!value || !value->isInteger() || value->asInt() < 0)
    throw Error(path + ": the manifest's GPU target has no valid '" + key +
                "'");
  return static_cast<uint64_t>(value->asInt());
}
} // namespace

GpuBackend::GpuBackend(std::string kind) : kind_(std::move(kind)) {}

GpuBackend::~GpuBackend() {
  if (!device_)
    return;
  try {
    device_->synchronize();
    for (uint64_t address : {weights_, ids_, logits_})
      if (address)
        device_->release(address);
  } catch (const Error &) {
    // Nothing to do about it while destroying.
  }
  // The host code's hooks point at this object: disarm them.
  if (void **context = static_cast<void **>(host_.symbol("xfmr_gpu_context")))
    *context = nullptr;
}

std::string GpuBackend::checkTarget(const TargetInfo &target) const {
  // The host code runs on this CPU; the device is checked when it opens.
  return host_.checkTarget(target);
}

void GpuBackend::loadCode(const uint8_t *code, uint64_t size,
                          const CodeManifest &manifest) {
  path_ = manifest.path;
  if (!manifest.targetJson || !manifest.targetJson->isObject())
    throw Error(path_ + ": the manifest has no GPU target description");
  const JsonValue &target = *manifest.targetJson;
  uint64_t hostSize = requireUnsigned(target, "host_code_size", path_);
  if (hostSize == 0 || hostSize > size)
    throw Error(path_ + ": the host code size " + std::to_string(hostSize) +
                " does not fit the code section (" + std::to_string(size) +
                " bytes)");

  // The kernel table.
  const JsonValue *table = target.find("kernels");
  if (!table || !table->isArray() || table->asArray().empty())
    throw Error(path_ + ": the manifest's GPU target has no kernels");
  for (const JsonValue &row : table->asArray()) {
    const JsonValue *name = row.find("name");
    const JsonValue *block = row.find("block");
    const JsonValue *buffers = row.find("buffers");
    if (!row.isObject() || !name || !name->isString() || !block ||
        !block->isArray() || block->asArray().size() != 3 || !buffers ||
        !buffers->isArray())
      throw Error(path_ + ": a kernel of the manifest is malformed");
    GpuKernelInfo info;
    info.name = name->asString();
    for (size_t i = 0; i < 3; ++i) {
      const JsonValue &dim = block->asArray()[i];
      if (!dim.isInteger() || dim.asInt() < 1 || dim.asInt() > 1024)
        throw Error(path_ + ": kernel '" + info.name +
                    "' has an invalid block size");
      info.block[i] = static_cast<uint32_t>(dim.asInt());
    }
    for (const JsonValue &bytes : buffers->asArray()) {
      // Scalars of up to 8 bytes, or vectors of 16 (16-byte loads).
      if (!bytes.isInteger() || bytes.asInt() < 1 || bytes.asInt() > 16 ||
          (bytes.asInt() & (bytes.asInt() - 1)))
        throw Error(path_ + ": kernel '" + info.name +
                    "' has an invalid buffer element size");
      info.buffers.push_back(static_cast<uint32_t>(bytes.asInt()));
    }
    info.scalars =
        static_cast<uint32_t>(requireUnsigned(row, "scalars", path_));
    // Extents (optional: artifacts before them have none): per buffer, the
    // bytes and the positions of the scalars that multiply them.
    if (const JsonValue *extents = row.find("extents")) {
      if (!extents->isArray() ||
          extents->asArray().size() != info.buffers.size())
        throw Error(path_ + ": kernel '" + info.name +
                    "' has malformed buffer extents");
      for (const JsonValue &extent : extents->asArray()) {
        std::vector<uint64_t> values;
        bool ok = extent.isArray() && !extent.asArray().empty();
        for (size_t i = 0; ok && i < extent.asArray().size(); ++i) {
          const JsonValue &value = extent.asArray()[i];
          ok = value.isInteger() && value.asInt() >= (i == 0 ? 1 : 0) &&
               (i == 0 || value.asInt() < int64_t(info.scalars));
          if (ok)
            values.push_back(static_cast<uint64_t>(value.asInt()));
        }
        if (!ok)
          throw Error(path_ + ": kernel '" + info.name +
                      "' has malformed buffer extents");
        info.extents.push_back(std::move(values));
      }
    }
    kernels_.push_back(std::move(info));
  }

  // The device binaries.
  const JsonValue *binaries = target.find("device_code");
  if (!binaries || !binaries->isArray())
    throw Error(path_ + ": the manifest's GPU target has no device code");
  struct Binary {
    std::string format;
    const uint8_t *data;
    uint64_t size;
  };
  std::vector<Binary> available;
  for (const JsonValue &entry : binaries->asArray()) {
    const JsonValue *format = entry.find("format");
    uint64_t offset = requireUnsigned(entry, "offset", path_);
    uint64_t bytes = requireUnsigned(entry, "size", path_);
    if (!format || !format->isString() || offset < hostSize ||
        offset > size || bytes > size - offset || bytes == 0)
      throw Error(path_ + ": a device binary of the manifest lies outside the "
                          "code section");
    available.push_back({format->asString(), code + offset, bytes});
  }
  auto find = [&](const std::string &format) -> const Binary * {
    for (const Binary &binary : available)
      if (binary.format == format)
        return &binary;
    return nullptr;
  };

  // The device, and the binary it can run.
  try {
    if (kind_ == "cuda")
      device_ = createCudaDevice();
    else if (kind_ == "rocm")
      device_ = createHipDevice();
    else
      device_ = createVulkanDevice();
  } catch (const Error &error) {
    throw Error(path_ + ": cannot open a " + kind_ + " device: " +
                error.what());
  }
  const std::string &chip = manifest.target ? manifest.target->chip : "";
  const Binary *binary = nullptr;
  if (kind_ == "cuda") {
    bool archSpecific = false;
    int built = smVersion(chip, &archSpecific);
    int have = smVersion(device_->chip());
    if (built == have)
      binary = find("cubin");
    else if (have > built && !archSpecific)
      binary = find("ptx"); // the driver compiles the PTX for this GPU
    if (!binary)
      throw Error(path_ + ": built for " + chip + ", the device (" +
                  device_->name() + ") is " + device_->chip() +
                  (archSpecific ? " (" + chip +
                                      " code runs on that exact chip only)"
                                : "") +
                  "; recompile with --target cuda:" + device_->chip());
  } else if (kind_ == "rocm") {
    if (device_->chip() != chip)
      throw Error(path_ + ": built for " + chip + ", the device (" +
                  device_->name() + ") is " + device_->chip() +
                  "; recompile with --target rocm:" + device_->chip());
    binary = find("hsaco");
  } else {
    binary = find("spirv");
  }
  if (!binary)
    throw Error(path_ + ": the artifact has no device code this device can "
                        "load");
  loadedFormat_ = binary->format;
  device_->loadKernels(binary->data, binary->size, kernels_);

  // The host code, and its hooks.
  host_.loadCode(code, hostSize, manifest);
  auto slot = [&](const char *name) {
    void **pointer = static_cast<void **>(host_.symbol(name));
    if (!pointer)
      throw Error(path_ + ": the host code has no '" + name +
                  "' (not compiled for a GPU target?)");
    return pointer;
  };
  *slot("xfmr_gpu_context") = this;
  *slot("xfmr_gpu_launch_fn") = reinterpret_cast<void *>(&xfmrGpuLaunch);
  *slot("xfmr_gpu_alloc_fn") = reinterpret_cast<void *>(&xfmrGpuAlloc);
  *slot("xfmr_gpu_free_fn") = reinterpret_cast<void *>(&xfmrGpuFree);
}

void GpuBackend::uploadWeights(const uint8_t *data, uint64_t size) {
  auto begin = std::chrono::steady_clock::now();
  weightsSize_ = size;
  weights_ = device_->allocate(std::max<uint64_t>(size, 1));
  // Streamed from the file mapping in pieces: never a second copy of the
  // whole blob in host memory.
  constexpr uint64_t piece = 64ull << 20;
  for (uint64_t offset = 0; offset < size; offset += piece)
    device_->copyToDevice(weights_ + offset, data + offset,
                          std::min(piece, size - offset));
  device_->synchronize();
  uploadSeconds_ = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - begin)
                       .count();
}

std::unique_ptr<DeviceBuffer> GpuBackend::allocateCache(uint64_t bytes) {
  return std::make_unique<GpuCache>(*device_, std::max<uint64_t>(bytes, 1));
}

/// Grows the device buffer at `address` (of `have` bytes) to `need`.
static void ensureBuffer(GpuDevice &device, uint64_t &address, uint64_t &have,
                         uint64_t need) {
  if (have >= need && address)
    return;
  if (address)
    device.release(address);
  address = 0;
  have = 0;
  address = device.allocate(std::max<uint64_t>(need, 256));
  have = std::max<uint64_t>(need, 256);
}

void GpuBackend::run(EntryPoint entry, const RunArgs &args) {
  // A prompt whose activations exceed what the device binds at once (the
  // logits of 1200 tokens of a 32000-word vocabulary are 154 MB; many Vulkan
  // devices bind 128 MiB) goes in parts: each part's prefill writes its
  // positions of the cache and its rows of the logits, as one call would.
  if (entry != EntryPoint::Prefill) {
    runWhole(entry, args);
    return;
  }
  for (int64_t first = 0; first < args.count;) {
    int64_t part = args.count - first;
    if (prefillLimit_)
      part = std::min(part, prefillLimit_);
    RunArgs chunk = args;
    chunk.ids = args.ids + first;
    chunk.count = part;
    chunk.start = args.start + first;
    chunk.logits = args.logits + first * args.vocab;
    try {
      runWhole(entry, chunk);
    } catch (const BindingRangeError &) {
      // A failed part re-runs in smaller ones: it wrote only positions they
      // write again.
      if (part < 2)
        throw;
      prefillLimit_ = part / 2;
      continue;
    }
    first += part;
  }
}

void GpuBackend::runWhole(EntryPoint entry, const RunArgs &args) {
  int64_t n = args.count;
  uint64_t idsBytes = static_cast<uint64_t>(n) * sizeof(int32_t);
  uint64_t logitsBytes =
      static_cast<uint64_t>(n) * static_cast<uint64_t>(args.vocab) * 4;
  ensureBuffer(*device_, ids_, idsBytes_, idsBytes);
  ensureBuffer(*device_, logits_, logitsBytes_, logitsBytes);
  device_->copyToDevice(ids_, args.ids, idsBytes);

  auto *ids = reinterpret_cast<int32_t *>(ids_);
  auto *weights = reinterpret_cast<uint8_t *>(weights_);
  auto *cache =
      reinterpret_cast<uint8_t *>(static_cast<GpuCache *>(args.cache)->address());
  auto *logits = reinterpret_cast<float *>(logits_);
  MemRef<int32_t, 1> idsRef{ids, ids, 0, {n}, {1}};
  MemRef<uint8_t, 1> weightsRef{
      weights, weights, 0, {static_cast<int64_t>(weightsSize_)}, {1}};
  MemRef<uint8_t, 1> cacheRef{
      cache, cache, 0, {static_cast<int64_t>(args.cache->bytes())}, {1}};
  MemRef<float, 2> logitsRef{logits, logits, 0, {n, args.vocab},
                             {args.vocab, 1}};
  EntryFn fn = entry == EntryPoint::Decode ? host_.decodeFn() : host_.prefillFn();
  // A decode step's launches go to the device as one unit where it can
  // (CUDA graphs): the same kernels every step, only their arguments move.
  bool step = entry == EntryPoint::Decode;
  if (step)
    device_->beginStep();
  fn(&idsRef, args.start, &weightsRef, &cacheRef, &logitsRef);
  if (step)
    device_->endStep(/*discard=*/!hookError_.empty());
  rethrowHookError();
  device_->copyToHost(args.logits, logits_, logitsBytes);
}

void GpuBackend::runStep(const StepArgs &args) {
  if (!hasStep())
    Backend::runStep(args);
  int64_t n = args.count;
  uint64_t idsBytes = static_cast<uint64_t>(n) * sizeof(int32_t);
  auto segments = static_cast<int64_t>(args.segments.size());
  uint64_t logitsBytes =
      static_cast<uint64_t>(segments) * static_cast<uint64_t>(args.vocab) * 4;
  ensureBuffer(*device_, ids_, idsBytes_, idsBytes);
  ensureBuffer(*device_, logits_, logitsBytes_, logitsBytes);
  device_->copyToDevice(ids_, args.ids, idsBytes);

  // The segment table stays in host memory, where the host code reads it.
  StepTable table = makeStepTable(args, [](DeviceBuffer &cache) {
    return static_cast<GpuCache &>(cache).address();
  });
  auto *ids = reinterpret_cast<int32_t *>(ids_);
  auto *weights = reinterpret_cast<uint8_t *>(weights_);
  auto *caches = reinterpret_cast<uint8_t *>(table.base);
  auto *logits = reinterpret_cast<float *>(logits_);
  MemRef<int32_t, 1> idsRef{ids, ids, 0, {n}, {1}};
  MemRef<int64_t, 2> segmentsRef{
      table.rows.data(), table.rows.data(), 0, {segments, 4}, {4, 1}};
  MemRef<uint8_t, 1> weightsRef{
      weights, weights, 0, {static_cast<int64_t>(weightsSize_)}, {1}};
  MemRef<uint8_t, 1> cachesRef{
      caches, caches, 0, {static_cast<int64_t>(table.end - table.base)}, {1}};
  // One logits row per segment.
  MemRef<float, 2> logitsRef{
      logits, logits, 0, {segments, args.vocab}, {args.vocab, 1}};
  host_.stepFn()(&idsRef, &segmentsRef, &weightsRef, &cachesRef, &logitsRef);
  rethrowHookError();
  device_->copyToHost(args.logits, logits_, logitsBytes);
}

void GpuBackend::synchronize() { device_->synchronize(); }

std::string GpuBackend::deviceName() const {
  return device_ ? device_->name() : "";
}

uint64_t GpuBackend::deviceMemoryBytes() const {
  return device_ ? device_->memoryInUse() : 0;
}

void GpuBackend::rethrowHookError() {
  if (hookError_.empty())
    return;
  std::string message = std::move(hookError_);
  hookError_.clear();
  bool range = hookRangeError_;
  hookRangeError_ = false;
  if (range)
    throw BindingRangeError(path_ + ": " + message);
  throw Error(path_ + ": " + message);
}

void GpuBackend::launchHook(int64_t kernel, int64_t gridX, int64_t gridY,
                            const int64_t *args) noexcept {
  if (!hookError_.empty())
    return;
  try {
    if (kernel < 0 || static_cast<size_t>(kernel) >= kernels_.size())
      throw Error("the host code launched kernel " + std::to_string(kernel) +
                  ", which the artifact does not have");
    if (gridX <= 0 || gridY <= 0)
      return; // no work (an empty launch)
    const GpuKernelInfo &info = kernels_[static_cast<size_t>(kernel)];
    for (size_t i = 0; i < info.buffers.size(); ++i)
      if (static_cast<uint64_t>(args[i]) == kFailedAllocation)
        return; // an allocation failed: its error is already recorded
    uint32_t grid[3] = {static_cast<uint32_t>(gridX),
                        static_cast<uint32_t>(gridY), 1};
    device_->launch(static_cast<uint32_t>(kernel), grid, args);
  } catch (const BindingRangeError &error) {
    hookError_ = error.what();
    hookRangeError_ = true;
  } catch (const std::exception &error) {
    hookError_ = error.what();
  }
}

uint64_t GpuBackend::allocHook(int64_t bytes) noexcept {
  if (!hookError_.empty())
    return kFailedAllocation;
  try {
    return device_->allocate(static_cast<uint64_t>(std::max<int64_t>(bytes, 1)));
  } catch (const std::exception &error) {
    hookError_ = error.what();
    return kFailedAllocation;
  }
}

void GpuBackend::freeHook(uint64_t address) noexcept {
  if (address == kFailedAllocation || address == 0)
    return;
  try {
    device_->release(address);
  } catch (const std::exception &error) {
    if (hookError_.empty())
      hookError_ = error.what();
  }
}
