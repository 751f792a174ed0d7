//===- KVBlockPool.cpp - KV-cache memory shared by sessions, in blocks ----===//

#include "xfmr/runtime/KVBlockPool.h"

#include "xfmr/runtime/Checksum.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/mman.h>
#include <unistd.h>

using namespace xfmr::runtime;

static uint64_t pageBytes() { return uint64_t(sysconf(_SC_PAGESIZE)); }

/// Why blocks of `blockTokens` positions cannot be mapped ("" when they
/// can).
static std::string whyNotBlocks(const std::vector<KVCacheRegion> &regions,
                                int64_t blockTokens) {
  uint64_t page = pageBytes();
  auto tokens = uint64_t(blockTokens);
  for (const KVCacheRegion &region : regions) {
    std::string part = "the cache part at byte " +
                       std::to_string(region.offset) + " (rows of " +
                       std::to_string(region.rowBytes) + " bytes)";
    if (region.offset % page != 0)
      return part + " does not start at a page of " + std::to_string(page) +
             " bytes (the compiler page-aligns caches of 16 pages or more)";
    if (tokens * region.rowBytes % page != 0)
      return part + " needs a block size that makes whole pages; " +
             std::to_string(blockTokens) + " positions make " +
             std::to_string(tokens * region.rowBytes) + " bytes";
    if (region.rows % tokens != 0)
      return part + " has " + std::to_string(region.rows) +
             " rows, not a multiple of the block size " +
             std::to_string(blockTokens);
  }
  return "";
}

/// Why the artifact's cache cannot be paged at all ("" when it may be).
static std::string whyNotPaged(const Artifact &artifact) {
  const std::vector<KVCacheRegion> &regions = artifact.kvCacheRegions();
  if (artifact.backend().kind() != "cpu")
    return "a paged KV cache needs the CPU back end; this artifact runs on " +
           artifact.backend().kind() + ", whose caches are device memory";
  if (artifact.kvCacheBytes() == 0)
    return "the model has no KV cache";
  if (regions.empty())
    return "the artifact does not describe its cache's parts (compiled by an "
           "older xfmr): compile it again";
  for (const KVCacheRegion &region : regions)
    if (region.rows != regions.front().rows)
      return "its layers' caches hold different numbers of positions";
  return "";
}

/// Block sizes to try, in order: `requested`, or the powers of two from 16
/// up to the capacity.
static std::vector<int64_t> blockSizes(const Artifact &artifact,
                                       int64_t requested) {
  if (requested > 0)
    return {requested};
  std::vector<int64_t> sizes;
  auto rows = int64_t(artifact.kvCacheRegions().front().rows);
  for (int64_t tokens = 16; tokens <= std::max<int64_t>(rows, 16); tokens *= 2)
    sizes.push_back(tokens);
  return sizes;
}

std::string KVBlockPool::whyNotPageable(const Artifact &artifact,
                                        int64_t blockTokens) {
  std::string why = whyNotPaged(artifact);
  if (!why.empty())
    return why;
  for (int64_t tokens : blockSizes(artifact, blockTokens)) {
    why = whyNotBlocks(artifact.kvCacheRegions(), tokens);
    if (why.empty())
      return "";
  }
  return why;
}

/// The kernel's limit on mappings per process (vm.max_map_count).
static int64_t maxMappings() {
  std::ifstream file("/proc/sys/vm/max_map_count");
  int64_t limit = 0;
  if (file >> limit && limit > 0)
    return limit;
  return 65530;
}

KVBlockPool::KVBlockPool(std::shared_ptr<Artifact> artifact,
                         const KVBlockPoolOptions &options)
    : artifact_(std::move(artifact)) {
  if (!artifact_)
    throw Error("a KV block pool needs an artifact");
  std::string why = whyNotPaged(*artifact_);
  if (!why.empty())
    throw Error(artifact_->path() + ": the KV cache cannot be paged: " + why);
  if (options.blocks < 0 || options.blocks > INT32_MAX ||
      (options.blocks == 0 && options.sequences < 1) || options.blockTokens < 0)
    throw Error("a KV block pool needs 1 to " + std::to_string(INT32_MAX) +
                " blocks (or 0 and at least one sequence), got " +
                std::to_string(options.blocks) + " blocks, " +
                std::to_string(options.sequences) + " sequences, blocks of " +
                std::to_string(options.blockTokens) + " positions");
  regions_ = artifact_->kvCacheRegions();
  auto rows = int64_t(regions_.front().rows);
  // Every block of every part may be a mapping of its own: stay well under
  // the process's limit.
  int64_t mappingLimit = maxMappings() * 3 / 4;
  for (int64_t tokens : blockSizes(*artifact_, options.blockTokens)) {
    std::string problem = whyNotBlocks(regions_, tokens);
    int64_t perSequence = (rows + tokens - 1) / tokens;
    int64_t blocks = options.blocks > 0 ? options.blocks
                     : options.sequences > INT32_MAX / perSequence
                         ? int64_t(INT32_MAX) + 1
                         : options.sequences * perSequence;
    if (problem.empty() && blocks > INT32_MAX)
      problem = std::to_string(blocks) + " blocks are too many";
    // Every session maps at most a whole cache of blocks, shared ones
    // included: `sequences` sessions may map more blocks than the pool has.
    int64_t mapped = std::max(
        blocks, std::min<int64_t>(options.sequences, INT32_MAX) * perSequence);
    int64_t mappings = mapped * int64_t(regions_.size());
    if (problem.empty() && mappings > mappingLimit)
      problem = std::to_string(std::max<int64_t>(options.sequences, 1)) +
                " sequences in " + std::to_string(blocks) + " blocks of " +
                std::to_string(tokens) + " positions may need " +
                std::to_string(mappings) +
                " memory mappings, more than 3/4 of vm.max_map_count (" +
                std::to_string(maxMappings()) +
                "): use fewer sequences or larger blocks";
    if (problem.empty()) {
      blockTokens_ = tokens;
      blocks_ = blocks;
      break;
    }
    why = problem;
    // With a given block count a larger block is a larger pool: no retry.
    if (options.blocks > 0 && problem.find("mappings") != std::string::npos)
      break;
  }
  if (blockTokens_ == 0)
    throw Error(artifact_->path() + ": the KV cache cannot be paged: " + why);
  for (const KVCacheRegion &region : regions_) {
    regionOffsets_.push_back(blockBytes_);
    blockBytes_ += uint64_t(blockTokens_) * region.rowBytes;
  }
  if (uint64_t(blocks_) > UINT64_MAX / blockBytes_)
    throw Error("a KV block pool of " + std::to_string(blocks_) +
                " blocks is too large");
  uint64_t bytes = uint64_t(blocks_) * blockBytes_;

  fd_ = memfd_create("xfmr-kv-blocks", MFD_CLOEXEC);
  if (fd_ < 0)
    throw Error(std::string("cannot create the KV block pool: ") +
                std::strerror(errno));
  if (ftruncate(fd_, off_t(bytes)) != 0) {
    int error = errno;
    close(fd_);
    throw Error("cannot size the KV block pool to " + std::to_string(bytes) +
                " bytes: " + std::strerror(error));
  }
  void *file =
      mmap(nullptr, size_t(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (file == MAP_FAILED) {
    int error = errno;
    close(fd_);
    throw Error("cannot map the KV block pool (" + std::to_string(bytes) +
                " bytes): " + std::strerror(error));
  }
  file_ = static_cast<uint8_t *>(file);
  table_.resize(size_t(blocks_));
  // Lowest first, so that a lone sequence's blocks are consecutive.
  for (int64_t b = blocks_ - 1; b >= 0; --b)
    free_.push_back(int32_t(b));
}

KVBlockPool::~KVBlockPool() {
  munmap(file_, size_t(uint64_t(blocks_) * blockBytes_));
  close(fd_);
}

int64_t KVBlockPool::blocksFor(int64_t tokens) const {
  return (tokens + blockTokens_ - 1) / blockTokens_;
}

int64_t KVBlockPool::blocksPerSequence() const {
  return blocksFor(int64_t(regions_.front().rows));
}

int64_t KVBlockPool::available() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return int64_t(free_.size() + cached_.size());
}

KVBlockPoolStats KVBlockPool::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  KVBlockPoolStats stats;
  stats.blocks = blocks_;
  stats.blockTokens = blockTokens_;
  stats.blockBytes = blockBytes_;
  stats.used = used_;
  stats.cached = int64_t(cached_.size());
  stats.free = int64_t(free_.size());
  stats.prefixLookupTokens = lookupTokens_;
  stats.prefixHitTokens = hitTokens_;
  stats.copies = copies_;
  return stats;
}

uint64_t KVBlockPool::fileOffset(int32_t block, size_t region) const {
  return uint64_t(block) * blockBytes_ + regionOffsets_[region];
}

void KVBlockPool::discard(int32_t block) {
  // Punching the range out of the file frees its memory; it reads as zeros.
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                off_t(uint64_t(block) * blockBytes_), off_t(blockBytes_)) != 0)
    std::memset(file_ + uint64_t(block) * blockBytes_, 0, blockBytes_);
}

int32_t KVBlockPool::allocate() {
  std::lock_guard<std::mutex> lock(mutex_);
  return allocateLocked();
}

int32_t KVBlockPool::allocateLocked() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (!cached_.empty()) {
    block = cached_.front();
    unpublishLocked(block);
    discard(block);
  } else {
    throw OutOfKVBlocks("the KV cache is full: all " + std::to_string(blocks_) +
                        " blocks of " + std::to_string(blockTokens_) +
                        " positions are in use");
  }
  table_[size_t(block)].references = 1;
  ++used_;
  return block;
}

int32_t KVBlockPool::writable(int32_t block) {
  std::lock_guard<std::mutex> lock(mutex_);
  Block &entry = table_[size_t(block)];
  if (entry.references <= 1) {
    unpublishLocked(block);
    return block;
  }
  int32_t copy = allocateLocked();
  std::memcpy(file_ + uint64_t(copy) * blockBytes_,
              file_ + uint64_t(block) * blockBytes_, blockBytes_);
  --table_[size_t(block)].references;
  ++copies_;
  return copy;
}

void KVBlockPool::retain(int32_t block) {
  std::lock_guard<std::mutex> lock(mutex_);
  Block &entry = table_[size_t(block)];
  if (entry.references++ == 0) {
    // A cached block in use again.
    cached_.erase(entry.lru);
    ++used_;
  }
}

void KVBlockPool::release(int32_t block) {
  std::lock_guard<std::mutex> lock(mutex_);
  Block &entry = table_[size_t(block)];
  if (--entry.references > 0)
    return;
  --used_;
  if (entry.published) {
    entry.lru = cached_.insert(cached_.end(), block);
    return;
  }
  discard(block);
  free_.push_back(block);
}

bool KVBlockPool::shared(int32_t block) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return table_[size_t(block)].references > 1;
}

uint64_t KVBlockPool::chainHash(uint64_t parentHash,
                                const int32_t *tokens) const {
  std::vector<uint8_t> bytes(sizeof(parentHash) +
                             size_t(blockTokens_) * sizeof(int32_t));
  std::memcpy(bytes.data(), &parentHash, sizeof(parentHash));
  std::memcpy(bytes.data() + sizeof(parentHash), tokens,
              size_t(blockTokens_) * sizeof(int32_t));
  return Checksum::of(bytes.data(), bytes.size());
}

uint64_t KVBlockPool::publish(int32_t block, uint64_t parentHash,
                              const int32_t *tokens) {
  uint64_t hash = chainHash(parentHash, tokens);
  std::lock_guard<std::mutex> lock(mutex_);
  Block &entry = table_[size_t(block)];
  if (entry.published || published_.count(hash))
    return hash;
  entry.published = true;
  entry.hash = hash;
  entry.parentHash = parentHash;
  entry.tokens.assign(tokens, tokens + blockTokens_);
  published_[hash] = block;
  return hash;
}

void KVBlockPool::unpublishLocked(int32_t block) {
  Block &entry = table_[size_t(block)];
  if (!entry.published)
    return;
  auto it = published_.find(entry.hash);
  if (it != published_.end() && it->second == block)
    published_.erase(it);
  if (entry.references == 0)
    cached_.erase(entry.lru);
  entry.published = false;
  entry.tokens.clear();
}

void KVBlockPool::unpublish(int32_t block) {
  std::lock_guard<std::mutex> lock(mutex_);
  unpublishLocked(block);
}

int32_t KVBlockPool::lookup(uint64_t parentHash, const int32_t *tokens,
                            uint64_t &hash) {
  hash = chainHash(parentHash, tokens);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = published_.find(hash);
  if (it == published_.end())
    return -1;
  int32_t block = it->second;
  Block &entry = table_[size_t(block)];
  if (entry.parentHash != parentHash ||
      !std::equal(entry.tokens.begin(), entry.tokens.end(), tokens))
    return -1;
  if (entry.references++ == 0) {
    cached_.erase(entry.lru);
    ++used_;
  }
  return block;
}

void KVBlockPool::countLookup(int64_t tokens, int64_t hits) {
  std::lock_guard<std::mutex> lock(mutex_);
  lookupTokens_ += tokens;
  hitTokens_ += hits;
}
