//===- KVCache.cpp - the KV cache blob of one session ---------------------===//

#include "xfmr/runtime/KVCache.h"

#include "xfmr/runtime/Error.h"

#include <cstdlib>
#include <cstring>

using namespace xfmr::runtime;

static constexpr uint64_t kAlignment = 64;

void KVCache::Free::operator()(uint8_t *p) const { std::free(p); }

KVCache::KVCache(uint64_t bytes) : bytes_(bytes) {
  // aligned_alloc wants a multiple of the alignment; never allocate 0 bytes so
  // that the code always gets a valid pointer.
  uint64_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0)
    rounded = kAlignment;
  if (rounded < bytes)
    throw Error("KV cache of " + std::to_string(bytes) + " bytes is too large");
  data_.reset(static_cast<uint8_t *>(std::aligned_alloc(kAlignment, rounded)));
  if (!data_)
    throw Error("cannot allocate the KV cache (" + std::to_string(bytes) +
                " bytes)");
  std::memset(data_.get(), 0, rounded);
}

void KVCache::clear() { std::memset(data_.get(), 0, bytes_); }
