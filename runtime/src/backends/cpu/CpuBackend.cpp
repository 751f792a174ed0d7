//===- CpuBackend.cpp - model code on this machine's CPU ------------------===//

#include "backends/cpu/CpuBackend.h"
#include "backends/cpu/ForkJoin.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Host.h"
#include "xfmr/runtime/KVCache.h"
#include "xfmr/runtime/PagedKVCache.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <link.h>
#include <malloc.h>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

using namespace xfmr::runtime;
using namespace xfmr::artifact;

namespace {
/// A session's cache in host memory.
class HostCache : public DeviceBuffer {
public:
  explicit HostCache(uint64_t bytes) : cache(bytes) {}
  uint64_t bytes() const override { return cache.bytes(); }
  void clear() override { cache.clear(); }
  void read(uint64_t offset, void *out, uint64_t size) const override {
    std::memcpy(out, cache.data() + offset, size);
  }
  uint8_t *data() { return cache.data(); }

private:
  KVCache cache;
};

/// Where a session's cache (whole or paged) starts in this process.
uint8_t *hostData(DeviceBuffer &cache) {
  if (auto *paged = dynamic_cast<PagedKVCache *>(&cache))
    return paged->data();
  return static_cast<HostCache &>(cache).data();
}
} // namespace

/// The model code allocates each activation buffer (megabytes in prefill)
/// when an op runs and frees it after its last reader. glibc serves large
/// sizes with fresh mmaps by default, so every step faults its activations
/// in again: half of a 512-token prefill's time on a 2-core VM, and more at
/// 2048 tokens, whose buffers pass even glibc's largest mmap threshold
/// (32 MiB). Serving every allocation from the heap and not trimming its top
/// lets the next op reuse the pages. Process-wide; a GLIBC_TUNABLES setting
/// from the user wins.
static void keepActivationMemory() {
#ifdef __GLIBC__
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("GLIBC_TUNABLES"))
      return;
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  });
#endif
}

CpuBackend::~CpuBackend() {
  if (weightsCopy_)
    munmap(weightsCopy_, weightsCopySize_);
  if (handle_)
    dlclose(handle_);
  // Closed only after dlclose: while the code is loaded under the name
  // "/proc/self/fd/N", N must not be reused (see loadCode).
  if (codeFd_ >= 0)
    ::close(codeFd_);
}

std::string CpuBackend::checkTarget(const TargetInfo &target) const {
  if (std::string why = tripleMismatch(target.triple); !why.empty())
    return why;
  return cpuMismatch(target.cpu, target.features, target.sveBits);
}

/// Whether the kernel backs anonymous memory with transparent huge pages
/// when asked (madvise) or always.
static bool hugePagesAvailable() {
  std::ifstream file("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string setting((std::istreambuf_iterator<char>(file)),
                      std::istreambuf_iterator<char>());
  return setting.find("[always]") != std::string::npos ||
         setting.find("[madvise]") != std::string::npos;
}

void CpuBackend::uploadWeights(const uint8_t *data, uint64_t size) {
  weights_ = data;
  weightsSize_ = size;
  // Decode streams every weight once per token: with 4 KiB pages of the
  // file mapping, the TLB misses cost 5-25% (FP8 the most; see
  // docs/performance.md). A copy in memory backed by 2 MiB pages avoids
  // them. Without huge pages, or when memory is short, the mapping stays.
  if (mapWeights_ || size < (uint64_t(4) << 20) || !hugePagesAvailable())
    return;
  const uint64_t huge = uint64_t(2) << 20;
  uint64_t length = (size + huge - 1) / huge * huge + huge;
  void *region = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED)
    return;
  // 2 MiB-aligned inside the region, so whole pages can be huge.
  auto start = reinterpret_cast<uintptr_t>(region);
  auto *aligned = reinterpret_cast<uint8_t *>((start + huge - 1) / huge * huge);
  madvise(aligned, length - huge, MADV_HUGEPAGE);
  // Fault both ranges in with one call each (not one fault per 4 KiB page
  // of the file), copy, then let go of the file's pages: the kernel keeps
  // them in its page cache, they no longer count in this process.
  auto pageStart = reinterpret_cast<uintptr_t>(data) & ~uintptr_t(4095);
  auto *source = reinterpret_cast<uint8_t *>(pageStart);
  uint64_t sourceLength =
      size + (reinterpret_cast<uintptr_t>(data) - pageStart);
#ifdef MADV_POPULATE_READ
  madvise(source, sourceLength, MADV_POPULATE_READ);
  madvise(aligned, size, MADV_POPULATE_WRITE);
#endif
  std::memcpy(aligned, data, size);
  mprotect(aligned, (size + 4095) / 4096 * 4096, PROT_READ);
  madvise(source, sourceLength, MADV_DONTNEED);
  weightsCopy_ = region;
  weightsCopySize_ = length;
  weights_ = aligned;
}

std::unique_ptr<DeviceBuffer> CpuBackend::allocateCache(uint64_t bytes) {
  return std::make_unique<HostCache>(bytes);
}

void CpuBackend::run(EntryPoint entry, const RunArgs &args) {
  int64_t n = args.count;
  // The ABI passes mutable pointers; the code only reads ids and weights
  // (the weights mapping is read-only, a write would fault).
  auto *ids = const_cast<int32_t *>(args.ids);
  auto *weights = const_cast<uint8_t *>(weights_);
  uint8_t *cache = hostData(*args.cache);
  MemRef<int32_t, 1> idsRef{ids, ids, 0, {n}, {1}};
  MemRef<uint8_t, 1> weightsRef{
      weights, weights, 0, {static_cast<int64_t>(weightsSize_)}, {1}};
  MemRef<uint8_t, 1> cacheRef{
      cache, cache, 0, {static_cast<int64_t>(args.cache->bytes())}, {1}};
  MemRef<float, 2> logitsRef{
      args.logits, args.logits, 0, {n, args.vocab}, {args.vocab, 1}};
  // OpenMP keeps the thread count per calling thread: apply it here.
  if (args.threads > 0)
    applyThreads(args.threads);
  useSveVectorBits();
  EntryFn fn = entry == EntryPoint::Decode ? decode_ : prefill_;
  fn(&idsRef, args.start, &weightsRef, &cacheRef, &logitsRef);
}

void CpuBackend::runStep(const StepArgs &args) {
  if (!step_)
    Backend::runStep(args);
  StepTable table = makeStepTable(args, [](DeviceBuffer &cache) {
    return reinterpret_cast<uint64_t>(hostData(cache));
  });
  auto *base = reinterpret_cast<uint8_t *>(table.base);
  auto n = static_cast<int64_t>(args.segments.size());
  auto *ids = const_cast<int32_t *>(args.ids);
  auto *weights = const_cast<uint8_t *>(weights_);
  MemRef<int32_t, 1> idsRef{ids, ids, 0, {args.count}, {1}};
  MemRef<int64_t, 2> segmentsRef{
      table.rows.data(), table.rows.data(), 0, {n, 4}, {4, 1}};
  MemRef<uint8_t, 1> weightsRef{
      weights, weights, 0, {static_cast<int64_t>(weightsSize_)}, {1}};
  MemRef<uint8_t, 1> cachesRef{
      base, base, 0, {static_cast<int64_t>(table.end - table.base)}, {1}};
  MemRef<float, 2> logitsRef{
      args.logits, args.logits, 0, {n, args.vocab}, {args.vocab, 1}};
  if (args.threads > 0)
    applyThreads(args.threads);
  useSveVectorBits();
  step_(&idsRef, &segmentsRef, &weightsRef, &cachesRef, &logitsRef);
}

void CpuBackend::useSveVectorBits() const {
  // The calling thread may not be the one that loaded the code.
  if (sveBits_ && !setSveVectorBits(sveBits_))
    throw Error("cannot set this thread's SVE vector length to " +
                std::to_string(sveBits_) + " bits, which the code needs");
}

void CpuBackend::applyThreads(int threads) const {
  if (ompSetNumThreads_)
    ompSetNumThreads_(threads);
}

void *CpuBackend::symbol(const std::string &name) const {
  return handle_ ? dlsym(handle_, name.c_str()) : nullptr;
}

static void writeAll(int fd, const uint8_t *data, uint64_t size,
                     const std::string &path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      throw Error(path + ": cannot write the model code to a temporary file: " +
                  std::strerror(errno));
    data += n;
    size -= static_cast<uint64_t>(n);
  }
}

void CpuBackend::loadCode(const uint8_t *code, uint64_t codeSize,
                          const CodeManifest &manifest) {
  keepActivationMemory();
  mapWeights_ = manifest.mapWeights;
  sveBits_ = manifest.target ? manifest.target->sveBits : 0;
  const std::string &path_ = manifest.path;
  if (codeSize < 4 || std::memcmp(code,
                                  "\x7f"
                                  "ELF",
                                  4) != 0)
    throw Error(path_ + ": the code section is not an ELF shared object");

  // dlopen needs a file: an anonymous memfd leaves nothing on disk. Where
  // memfd or /proc is unavailable, fall back to an unlinked temporary file.
  // For profilers, XFMR_PROFILE_CODE_DIR keeps the code as a named file that
  // outlives the process (perf report reads the kernels' symbols from it).
  std::string loadPath;
  std::vector<int> spares;
  if (const char *keep = std::getenv("XFMR_PROFILE_CODE_DIR"); keep && *keep) {
    static std::atomic<int> counter{0};
    loadPath = std::string(keep) + "/xfmr-code-" + std::to_string(getpid()) +
               "-" + std::to_string(counter++) + ".so";
    int out =
        ::open(loadPath.c_str(),
               O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (out < 0)
      throw Error(path_ + ": XFMR_PROFILE_CODE_DIR: cannot create " + loadPath +
                  ": " + std::strerror(errno));
    try {
      writeAll(out, code, codeSize, path_);
    } catch (...) {
      ::close(out);
      ::unlink(loadPath.c_str());
      throw;
    }
    ::close(out);
    handle_ = dlopen(loadPath.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_)
      throw Error(path_ + ": cannot load the model code: " + dlerror());
  } else {
    int fd = memfd_create("xfmr-model-code", MFD_CLOEXEC);
    bool isMemfd = fd >= 0 && ::access("/proc/self/fd", F_OK) == 0;
    if (isMemfd) {
      writeAll(fd, code, codeSize, path_);
      // dlopen matches names before files: code from an earlier artifact that
      // was never unloaded may still be registered as "/proc/self/fd/N". Move
      // to a fresh descriptor number until the name is unused.
      while (true) {
        loadPath = "/proc/self/fd/" + std::to_string(fd);
        void *stale = dlopen(loadPath.c_str(), RTLD_LAZY | RTLD_NOLOAD);
        if (!stale)
          break;
        dlclose(stale);
        spares.push_back(fd);
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
          break;
      }
      for (int spare : spares)
        ::close(spare);
      if (fd < 0)
        throw Error(path_ +
                    ": cannot duplicate a descriptor: " + std::strerror(errno));
    } else {
      if (fd >= 0)
        ::close(fd);
      const char *tmp = std::getenv("TMPDIR");
      loadPath = std::string(tmp && *tmp ? tmp : "/tmp") + "/xfmr-code-XXXXXX";
      fd = mkstemp(loadPath.data());
      if (fd < 0)
        throw Error(path_ +
                    ": cannot create a temporary file for the model "
                    "code: " +
                    std::strerror(errno));
      try {
        writeAll(fd, code, codeSize, path_);
      } catch (...) {
        ::unlink(loadPath.c_str());
        ::close(fd);
        throw;
      }
    }

    handle_ = dlopen(loadPath.c_str(), RTLD_NOW | RTLD_LOCAL);
    const char *why = handle_ ? nullptr : dlerror();
    std::string dlMessage = why ? why : "";
    if (isMemfd) {
      codeFd_ = fd;
    } else {
      ::unlink(loadPath.c_str());
      ::close(fd);
    }
    if (!handle_)
      throw Error(path_ + ": cannot load the model code: " + dlMessage);
  }

  if (dlinfo(handle_, RTLD_DI_LINKMAP, &modelMap_) != 0 || !modelMap_)
    throw Error(path_ + ": cannot inspect the loaded model code");

  // dlsym also searches the libraries the code links (libc, libomp), so
  // every symbol taken from the code must lie in the model's own object: a
  // manifest naming "system" must not make the runtime call libc.
  dlerror();
  void *table = dlsym(handle_, kModelInfoSymbol);
  Dl_info where;
  void *entry = nullptr;
  if (table)
    dladdr1(table, &where, &entry, RTLD_DL_SYMENT);
  const auto *symbol = static_cast<const ElfW(Sym) *>(entry);
  if (!table || !inModel(table) || !symbol ||
      symbol->st_size < sizeof(ModelInfo))
    throw Error(path_ + ": the model code does not export its description '" +
                kModelInfoSymbol +
                "' (it was not compiled by xfmr-compile of this format "
                "version); recompile the model");
  std::memcpy(&info_, table, sizeof(ModelInfo));
  if (info_.abiVersion != kModelAbiVersion || info_.size != sizeof(ModelInfo))
    throw Error(path_ + ": the model code has ABI version " +
                std::to_string(info_.abiVersion) +
                " (this runtime supports version " +
                std::to_string(kModelAbiVersion) + "); recompile the model");
  for (auto [name, fn] :
       {std::pair{"prefill", info_.prefill}, std::pair{"decode", info_.decode}})
    if (!fn || !inModel(reinterpret_cast<const void *>(fn)))
      throw Error(path_ + ": the model code's " + name +
                  " entry point lies outside the model code");
  prefill_ = info_.prefill;
  decode_ = info_.decode;
  if (info_.step && !inModel(reinterpret_cast<const void *>(info_.step)))
    throw Error(path_ + ": the model code's step entry point lies outside "
                        "the model code");
  step_ = info_.step;

  // The manifest names the entry points too; the names must mean the same
  // functions.
  auto check = [&](const char *entry, const std::string &name,
                   const void *expected) {
    dlerror();
    void *sym = dlsym(handle_, name.c_str());
    if (!sym || !inModel(sym))
      throw Error(path_ + ": entry point '" + entry + "' names symbol '" +
                  name + "', which the model code does not define");
    if (sym != expected)
      throw Error(path_ + ": entry point '" + entry + "' names symbol '" +
                  name + "', which is not the model's " + entry +
                  " entry point");
  };
  check("prefill", manifest.prefillName,
        reinterpret_cast<const void *>(prefill_));
  check("decode", manifest.decodeName, reinterpret_cast<const void *>(decode_));
  if (!manifest.stepName.empty())
    check("step", manifest.stepName, reinterpret_cast<const void *>(step_));
  // OpenMP's entry lives in libomp, which the model links; on AArch64 the
  // runtime defines OpenMP's entry points itself (ForkJoin.cpp).
  ompSetNumThreads_ =
      reinterpret_cast<void (*)(int)>(dlsym(handle_, "omp_set_num_threads"));
#ifdef XFMR_BUILTIN_OPENMP
  if (!ompSetNumThreads_)
    ompSetNumThreads_ = forkJoinSetThreads;
#endif
  checkModelInfo(manifest);
}

bool CpuBackend::inModel(const void *address) const {
  Dl_info info;
  struct link_map *map = nullptr;
  return dladdr1(address, &info, reinterpret_cast<void **>(&map),
                 RTLD_DL_LINKMAP) != 0 &&
         map == modelMap_;
}

void CpuBackend::checkModelInfo(const CodeManifest &manifest) const {
  const std::string &path_ = manifest.path;
  const ModelConfig &model_ = *manifest.model;
  const TargetInfo &target_ = *manifest.target;
  // The manifest must describe the code it ships with: sizes that disagree
  // would hand the code buffers of the wrong size.
  auto expect = [&](const char *field, int64_t manifest, int64_t code) {
    if (manifest != code)
      throw Error(path_ + ": manifest field '" + field + "' is " +
                  std::to_string(manifest) +
                  " but the model code was compiled for " +
                  std::to_string(code) +
                  " (the manifest was edited or belongs to another model)");
  };
  expect("model.vocab_size", model_.vocabSize, info_.vocabSize);
  expect("model.context_length", model_.contextLength, info_.contextLength);
  expect("model.kv_window", model_.kvWindow, info_.kvWindow);
  expect("model.kv_sinks", model_.kvSinks, info_.kvSinks);
  expect("kv_cache.bytes", static_cast<int64_t>(manifest.kvCacheBytes),
         info_.kvCacheBytes);
  expect("weights.bytes", static_cast<int64_t>(manifest.weightsBytes),
         info_.weightsBytes);
  // The host check read the manifest's target; it must be the code's.
  auto expectText = [&](const char *field, const std::string &manifest,
                        const char *code) {
    if (!code || !inModel(code) || manifest != code)
      throw Error(path_ + ": manifest field '" + field + "' is '" + manifest +
                  "' but the model code was compiled for '" +
                  (code && inModel(code) ? code : "?") +
                  "' (the manifest was edited or belongs to another model)");
  };
  expectText("target.cpu", target_.cpu, info_.cpu);
  expectText("target.features", target_.features, info_.features);
}
