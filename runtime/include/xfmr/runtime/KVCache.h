//===- KVCache.h - the KV cache blob of one session -------------*- C++ -*-===//
//
// The compiled code owns the cache layout (see the manifest's kv_cache
// entry); the runtime only provides one zeroed, 64-byte aligned blob of
// kv_cache.bytes and clears it on reset.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_KVCACHE_H
#define XFMR_RUNTIME_KVCACHE_H

#include <cstdint>
#include <memory>

namespace xfmr::runtime {

class KVCache {
public:
  /// Allocates `bytes` zeroed bytes, 64-byte aligned. Throws `Error` when the
  /// allocation fails.
  explicit KVCache(uint64_t bytes);

  uint8_t *data() { return data_.get(); }
  const uint8_t *data() const { return data_.get(); }
  uint64_t bytes() const { return bytes_; }
  /// Zeroes the blob (the ABI's "zero at reset").
  void clear();

private:
  struct Free {
    void operator()(uint8_t *p) const;
  };
  uint64_t bytes_;
  std::unique_ptr<uint8_t, Free> data_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_KVCACHE_H
