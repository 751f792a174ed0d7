//===- PagedKVCache.cpp - one session's cache, in blocks of a pool --------===//

#include "xfmr/runtime/PagedKVCache.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

using namespace xfmr::runtime;

PagedKVCache::PagedKVCache(std::shared_ptr<KVBlockPool> pool)
    : pool_(std::move(pool)) {
  if (!pool_)
    throw Error("a paged KV cache needs a block pool");
  bytes_ = pool_->artifact().kvCacheBytes();
  auto page = uint64_t(sysconf(_SC_PAGESIZE));
  reserved_ = std::max<uint64_t>(page, (bytes_ + page - 1) / page * page);
  // The whole range is the session's own zeroed memory (the counters live
  // there); the parts' rows are read-only zeros until a block is mapped.
  void *range = mmap(nullptr, size_t(reserved_), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (range == MAP_FAILED)
    throw Error(
        "cannot reserve " + std::to_string(reserved_) +
        " bytes of address space for a KV cache: " + std::strerror(errno));
  data_ = static_cast<uint8_t *>(range);
  const std::vector<KVCacheRegion> &regions = pool_->regions();
  for (const KVCacheRegion &region : regions)
    mprotect(data_ + region.offset, size_t(region.rows * region.rowBytes),
             PROT_READ);
  table_.assign(size_t(pool_->blocksFor(int64_t(regions.front().rows))), -1);
}

PagedKVCache::~PagedKVCache() {
  for (int32_t block : table_)
    if (block >= 0)
      pool_->release(block);
  munmap(data_, size_t(reserved_));
}

void PagedKVCache::map(int64_t index, int32_t block) {
  const std::vector<KVCacheRegion> &regions = pool_->regions();
  auto tokens = uint64_t(pool_->blockTokens());
  for (size_t r = 0; r < regions.size(); ++r) {
    const KVCacheRegion &region = regions[r];
    uint8_t *at =
        data_ + region.offset + uint64_t(index) * tokens * region.rowBytes;
    size_t length = size_t(tokens * region.rowBytes);
    void *mapped =
        block >= 0
            ? mmap(at, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                   pool_->fd(), off_t(pool_->fileOffset(block, r)))
            : mmap(at, length, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
                   0);
    if (mapped == MAP_FAILED) {
      int error = errno;
      // Leave no part of the index mapped to a block the table does not
      // record.
      if (block >= 0)
        map(index, -1);
      throw Error("cannot map KV block " + std::to_string(index) + ": " +
                  std::strerror(error) +
                  (error == ENOMEM ? std::string(" (the process may have run "
                                                 "out of memory mappings: "
                                                 "vm.max_map_count; use "
                                                 "larger blocks)")
                                   : std::string()));
    }
  }
}

void PagedKVCache::install(int64_t index, int32_t block) {
  try {
    map(index, block);
  } catch (...) {
    pool_->release(block);
    throw;
  }
  table_[size_t(index)] = block;
}

void PagedKVCache::prepare(int64_t first, int64_t end) {
  auto rows = int64_t(table_.size()) * pool_->blockTokens();
  end = std::min(end, rows);
  first = std::min(first, end);
  int64_t blocks = pool_->blocksFor(end);
  for (int64_t k = 0; k < blocks; ++k) {
    if (table_[size_t(k)] >= 0)
      continue;
    install(k, pool_->allocate());
  }
  // The blocks written: none stays published, and shared ones are copied.
  int64_t written = first / pool_->blockTokens();
  hashes_.resize(std::min(hashes_.size(), size_t(written)));
  for (int64_t k = written; k < blocks; ++k) {
    int32_t block = table_[size_t(k)];
    int32_t own = pool_->writable(block);
    if (own == block)
      continue;
    // Copy on write: the others keep the block as it is; this session maps
    // the copy (or, when that fails, nothing: the table says so).
    table_[size_t(k)] = -1;
    try {
      map(k, own);
    } catch (...) {
      pool_->release(own);
      throw;
    }
    table_[size_t(k)] = own;
  }
}

int64_t PagedKVCache::blocksNeeded(int64_t first, int64_t end) const {
  auto rows = int64_t(table_.size()) * pool_->blockTokens();
  end = std::min(end, rows);
  first = std::min(first, end);
  int64_t needed = 0;
  for (int64_t k = 0; k < pool_->blocksFor(end); ++k) {
    int32_t block = table_[size_t(k)];
    if (block < 0 ||
        (k >= first / pool_->blockTokens() && pool_->shared(block)))
      ++needed;
  }
  return needed;
}

void PagedKVCache::truncate(int64_t rows) {
  int64_t keep = pool_->blocksFor(rows);
  for (auto k = size_t(keep); k < table_.size(); ++k) {
    if (table_[k] < 0)
      continue;
    map(int64_t(k), -1);
    pool_->release(table_[k]);
    table_[k] = -1;
  }
  hashes_.resize(std::min(hashes_.size(), size_t(keep)));
}

void PagedKVCache::clear() {
  truncate(0);
  // The session's own bytes (the expert counters) back to zeros.
  madvise(data_, size_t(reserved_), MADV_DONTNEED);
}

void PagedKVCache::read(uint64_t offset, void *out, uint64_t size) const {
  std::memcpy(out, data_ + offset, size);
}

int64_t PagedKVCache::blocksHeld() const {
  return int64_t(std::count_if(table_.begin(), table_.end(),
                               [](int32_t block) { return block >= 0; }));
}

void PagedKVCache::publish(const int32_t *tokens, int64_t count) {
  int64_t tokensPerBlock = pool_->blockTokens();
  int64_t full = std::min<int64_t>(count / tokensPerBlock, table_.size());
  for (auto k = int64_t(hashes_.size()); k < full; ++k) {
    if (table_[size_t(k)] < 0)
      return;
    uint64_t parent = k == 0 ? 0 : hashes_[size_t(k) - 1];
    hashes_.push_back(
        pool_->publish(table_[size_t(k)], parent, tokens + k * tokensPerBlock));
  }
}

int64_t PagedKVCache::adoptPrefix(const int32_t *tokens, int64_t count,
                                  int64_t limit) {
  if (blocksHeld() != 0)
    throw Error("a KV cache can take a shared prefix only when empty");
  int64_t tokensPerBlock = pool_->blockTokens();
  int64_t full =
      std::min<int64_t>(std::min(count, limit) / tokensPerBlock, table_.size());
  int64_t k = 0;
  for (; k < full; ++k) {
    uint64_t parent = k == 0 ? 0 : hashes_[size_t(k) - 1], hash = 0;
    int32_t block = pool_->lookup(parent, tokens + k * tokensPerBlock, hash);
    if (block < 0)
      break;
    try {
      install(k, block);
    } catch (...) {
      // Nothing half-adopted: the session stays empty.
      truncate(0);
      throw;
    }
    hashes_.push_back(hash);
  }
  pool_->countLookup(count, k * tokensPerBlock);
  return k * tokensPerBlock;
}
