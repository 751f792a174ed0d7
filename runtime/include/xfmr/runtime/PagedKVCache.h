//===- PagedKVCache.h - one session's cache, in blocks of a pool -*- C++
//-*-===//
//
// The cache blob of one session, paged (see KVBlockPool.h). The session's
// address range is reserved whole; positions [k * B, (k + 1) * B) of every
// part are block k of its block table, mapped from the pool's file. Rows of
// blocks not mapped read as zeros and cannot be written (a write there is a
// fault, not a silent corruption). The bytes outside the parts (the MoE
// expert counters) are the session's own memory.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_PAGEDKVCACHE_H
#define XFMR_RUNTIME_PAGEDKVCACHE_H

#include "xfmr/runtime/Backend.h"
#include "xfmr/runtime/KVBlockPool.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace xfmr::runtime {

class PagedKVCache : public DeviceBuffer {
public:
  explicit PagedKVCache(std::shared_ptr<KVBlockPool> pool);
  ~PagedKVCache() override;

  uint64_t bytes() const override { return bytes_; }
  /// Gives every block back and zeroes the rest (the ABI's zero at reset).
  void clear() override;
  void read(uint64_t offset, void *out, uint64_t size) const override;
  uint8_t *data() { return data_; }
  KVBlockPool &pool() { return *pool_; }

  /// Before the code writes rows [first, end): maps a block for every
  /// position below `end` and gives the blocks of [first, end) that another
  /// session shares a copy of their own. Throws OutOfKVBlocks (blocks taken
  /// before the throw stay mapped: they hold nothing yet).
  void prepare(int64_t first, int64_t end);
  /// Keeps the blocks of rows [0, rows) and gives the rest back.
  void truncate(int64_t rows);
  /// Blocks mapped now.
  int64_t blocksHeld() const;
  /// Blocks prepare(first, end) would take from the pool.
  int64_t blocksNeeded(int64_t first, int64_t end) const;

  /// Publishes every full block of the first `count` positions that is not
  /// yet (`tokens`: the ids at those positions).
  void publish(const int32_t *tokens, int64_t count);
  /// With no block mapped: maps the published blocks that hold the longest
  /// prefix of `tokens`, whole blocks of at most `limit` positions, and
  /// returns how many positions they hold.
  int64_t adoptPrefix(const int32_t *tokens, int64_t count, int64_t limit);

private:
  /// Maps pool block `block` (or the zero pages, for -1) as block `index`.
  void map(int64_t index, int32_t block);
  /// Maps `block`, which the caller holds a reference to, as block `index`
  /// and records it (releasing the reference if the mapping fails).
  void install(int64_t index, int32_t block);

  std::shared_ptr<KVBlockPool> pool_;
  uint64_t bytes_ = 0, reserved_ = 0;
  uint8_t *data_ = nullptr;
  /// Pool block of each block index (-1: not mapped).
  std::vector<int32_t> table_;
  /// Chained hash of each published block of the table, in order.
  std::vector<uint64_t> hashes_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_PAGEDKVCACHE_H
