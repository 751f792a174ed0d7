//===- KVCache.h - the KV cache blob of one session -------------*- C++ -*-===//
//
// The compiled code owns the cache layout (see the manifest's kv_cache
// entry); the runtime only provides one zeroed, 64-byte aligned blob of
// kv_cache.bytes and clears it on reset. Blobs of 4 MiB and more are mapped
// and asked for 2 MiB pages: attention reads the whole cache every decoded
// token, and like the weights (CpuBackend) it then takes fewer TLB misses;
// fresh mappings are zero already and a reset gives the pages back
// (MADV_DONTNEED), so neither creating nor resetting a session writes its
// whole cache.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_KVCACHE_H
#define XFMR_RUNTIME_KVCACHE_H

#include <cstddef>
#include <cstdint>

namespace xfmr::runtime {

class KVCache {
public:
  /// Allocates `bytes` zeroed bytes, 64-byte aligned. Throws `Error` when the
  /// allocation fails.
  explicit KVCache(uint64_t bytes);
  ~KVCache();
  KVCache(const KVCache &) = delete;
  KVCache &operator=(const KVCache &) = delete;

  uint8_t *data() { return data_; }
  const uint8_t *data() const { return data_; }
  uint64_t bytes() const { return bytes_; }
  /// Zeroes the blob (the ABI's "zero at reset").
  void clear();

private:
  uint64_t bytes_;
  uint8_t *data_ = nullptr;
  /// The mapping behind `data_` (null: `data_` came from the heap).
  void *mapping_ = nullptr;
  size_t mappingLength_ = 0;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_KVCACHE_H
