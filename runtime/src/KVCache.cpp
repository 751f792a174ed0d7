//===- KVCache.cpp - the KV cache blob of one session ---------------------===//

#include "xfmr/runtime/KVCache.h"

#include "xfmr/runtime/Error.h"

#include <cstdlib>
#include <cstring>
#include <sys/mman.h>

using namespace xfmr::runtime;

static constexpr uint64_t kAlignment = 64;
static constexpr uint64_t kHugePage = uint64_t(2) << 20;

KVCache::KVCache(uint64_t bytes) : bytes_(bytes) {
  if (bytes >= 2 * kHugePage && bytes < (uint64_t(1) << 62)) {
    // Whole 2 MiB pages, 2 MiB-aligned inside a mapping one page larger.
    size_t length =
        size_t((bytes + kHugePage - 1) / kHugePage * kHugePage + kHugePage);
    void *region = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region != MAP_FAILED) {
      auto start = reinterpret_cast<uintptr_t>(region);
      data_ = reinterpret_cast<uint8_t *>((start + kHugePage - 1) / kHugePage *
                                          kHugePage);
      madvise(data_, length - kHugePage, MADV_HUGEPAGE);
      mapping_ = region;
      mappingLength_ = length;
      return;
    }
  }
  // aligned_alloc wants a multiple of the alignment; never allocate 0 bytes so
  // that the code always gets a valid pointer.
  uint64_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0)
    rounded = kAlignment;
  if (rounded < bytes)
    throw Error("KV cache of " + std::to_string(bytes) + " bytes is too large");
  data_ = static_cast<uint8_t *>(std::aligned_alloc(kAlignment, rounded));
  if (!data_)
    throw Error("cannot allocate the KV cache (" + std::to_string(bytes) +
                " bytes)");
  std::memset(data_, 0, rounded);
}

KVCache::~KVCache() {
  if (mapping_)
    munmap(mapping_, mappingLength_);
  else
    std::free(data_);
}

void KVCache::clear() {
  // A mapping gives its pages back: they read as zeros again and are faulted
  // in as the next generation reaches them, instead of every byte being
  // written now (a server resets after every request, most of the cache
  // unused).
  if (mapping_ &&
      madvise(data_, mappingLength_ - kHugePage, MADV_DONTNEED) == 0)
    return;
  std::memset(data_, 0, bytes_);
}
