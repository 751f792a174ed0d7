//===- KVBlockPool.h - KV-cache memory shared by sessions, in blocks -*- C++
//-*-===//
//
// A paged KV cache. The pool holds `blocks` fixed-size blocks; one block
// stores `blockTokens` consecutive positions of every layer's cache (each
// token-indexed part of the blob: codes, scales, k_pe). A session that uses
// the pool (SessionOptions::blockPool) gets blocks as its sequence grows and
// gives them back when it is reset or destroyed, so memory follows the
// tokens actually held, and a server can admit sequences by free blocks.
//
// The compiled code still sees one contiguous cache per session: each
// session reserves the blob's address range, and its block table maps
// block k of every part to the pool block that backs it (the blocks of a
// shared-memory file, mapped in place). This is paging by the MMU rather
// than by the attention kernels (as vAttention does, instead of vLLM's
// PagedAttention), so every cache format and kernel, of every layer, works
// on blocks unchanged.
//
// Prefix caching: a full block is published under a hash of its tokens and
// those of every block before it. A new sequence whose prompt starts with
// published blocks maps the same blocks (Session::reusePrefix) instead of
// computing them. Blocks are shared read-only; a session about to write
// into a block that another one also maps copies it first (copy on write).
// Published blocks no session holds stay cached until their memory is
// needed (least recently used first). Lookups compare the tokens and the
// chained hash, not the hash alone.
//
// Pages: the blob's parts must start at a page and a block of each part must
// be whole pages (the compiler aligns caches of 16 pages or more):
// whyNotPageable() says what stops an artifact, and a pool cannot be made
// for an artifact that runs on a GPU: its caches live in device memory.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_KVBLOCKPOOL_H
#define XFMR_RUNTIME_KVBLOCKPOOL_H

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace xfmr::runtime {

/// Thrown when a session needs a block and the pool has none to give (every
/// block is held by some session). A scheduler avoids it by admitting and
/// preempting sequences by KVBlockPool::available().
class OutOfKVBlocks : public Error {
public:
  using Error::Error;
};

struct KVBlockPoolOptions {
  /// Blocks in the pool; 0: enough for `sequences` sequences of the full
  /// context.
  int64_t blocks = 0;
  /// Sessions that use the pool at once. Each maps at most a whole cache of
  /// blocks (shared ones too), which bounds the memory mappings the pool
  /// checks against vm.max_map_count.
  int64_t sequences = 1;
  /// Positions per block; 0: the smallest power of two >= 16 that keeps
  /// every part of a block whole pages and (when `blocks` is 0) the pool's
  /// mappings well within the process's limit.
  int64_t blockTokens = 0;
};

struct KVBlockPoolStats {
  int64_t blocks = 0, blockTokens = 0;
  uint64_t blockBytes = 0;
  /// Blocks some session maps; published blocks no session maps (the prefix
  /// cache, reclaimed when needed); never-used or given-back blocks.
  int64_t used = 0, cached = 0, free = 0;
  /// Prompt tokens Session::reusePrefix looked up and found.
  int64_t prefixLookupTokens = 0, prefixHitTokens = 0;
  /// Blocks copied because a session wrote into a shared one.
  int64_t copies = 0;
};

class KVBlockPool {
public:
  /// Throws `Error` when the artifact's cache cannot be paged (the reason
  /// from whyNotPageable), for a bad size, or when every block of every
  /// part mapped on its own would pass 3/4 of vm.max_map_count.
  KVBlockPool(std::shared_ptr<Artifact> artifact,
              const KVBlockPoolOptions &options);
  ~KVBlockPool();
  KVBlockPool(const KVBlockPool &) = delete;
  KVBlockPool &operator=(const KVBlockPool &) = delete;

  /// Why `artifact`'s cache cannot be paged with `blockTokens` positions a
  /// block (0: the default size); "" when it can.
  static std::string whyNotPageable(const Artifact &artifact,
                                    int64_t blockTokens = 0);

  const Artifact &artifact() const { return *artifact_; }
  int64_t blockTokens() const { return blockTokens_; }
  /// Bytes of one block: every part's rows of blockTokens positions.
  uint64_t blockBytes() const { return blockBytes_; }
  int64_t blocks() const { return blocks_; }
  /// Blocks a sequence of `tokens` positions maps.
  int64_t blocksFor(int64_t tokens) const;
  /// Blocks of one whole cache (an evicting cache's ring, or the context).
  int64_t blocksPerSequence() const;
  /// Blocks that can be handed out now: free ones and cached ones.
  int64_t available() const;
  KVBlockPoolStats stats() const;

  // What PagedKVCache calls (one block table per session).

  /// The token-indexed parts of the blob, as the artifact describes them.
  const std::vector<KVCacheRegion> &regions() const { return regions_; }
  /// The pool's shared-memory file and where part `region` of `block` lies
  /// in it (blockTokens rows of that part).
  int fd() const { return fd_; }
  uint64_t fileOffset(int32_t block, size_t region) const;
  /// A zeroed block no one maps, taken from the free ones or else from the
  /// least recently used cached one. Throws OutOfKVBlocks.
  int32_t allocate();
  /// `block`, about to be written by a session that maps it: when another
  /// session maps it too, a new block holding a copy, which replaces the
  /// caller's reference (copy on write); else `block` itself, no longer
  /// published. One step under the pool's lock, so no lookup can share the
  /// block in between. Throws OutOfKVBlocks.
  int32_t writable(int32_t block);
  void retain(int32_t block);
  /// Drops one mapping of `block`: with no mapping left, it stays cached
  /// when published, else it is free and its memory goes back to the
  /// system.
  void release(int32_t block);
  /// Whether more than one session maps `block`.
  bool shared(int32_t block) const;
  /// Publishes the full `block`, holding `tokens` after the prefix whose
  /// chained hash is `parentHash` (0 for the first block); returns the
  /// block's chained hash. A block with the same tokens and parent already
  /// published keeps the entry.
  uint64_t publish(int32_t block, uint64_t parentHash, const int32_t *tokens);
  /// Forgets `block`'s publication (its session is about to change it).
  void unpublish(int32_t block);
  /// The published block holding `tokens` after `parentHash`, retained for
  /// the caller, and its chained hash; -1 when none.
  int32_t lookup(uint64_t parentHash, const int32_t *tokens, uint64_t &hash);
  void countLookup(int64_t tokens, int64_t hits);

private:
  struct Block {
    int32_t references = 0;
    bool published = false;
    uint64_t hash = 0, parentHash = 0;
    std::vector<int32_t> tokens;
    /// In cached_ while published with no references.
    std::list<int32_t>::iterator lru;
  };
  uint64_t chainHash(uint64_t parentHash, const int32_t *tokens) const;
  /// Gives `block`'s memory back to the system (it reads as zeros again).
  void discard(int32_t block);
  void unpublishLocked(int32_t block);
  int32_t allocateLocked();

  std::shared_ptr<Artifact> artifact_;
  std::vector<KVCacheRegion> regions_;
  int64_t blockTokens_ = 0, blocks_ = 0;
  uint64_t blockBytes_ = 0;
  /// Where each part's rows start inside a block.
  std::vector<uint64_t> regionOffsets_;
  int fd_ = -1;
  /// The whole file mapped, for copies.
  uint8_t *file_ = nullptr;

  mutable std::mutex mutex_;
  std::vector<Block> table_;
  std::vector<int32_t> free_;
  /// Published blocks no one maps, least recently released first.
  std::list<int32_t> cached_;
  std::unordered_map<uint64_t, int32_t> published_;
  int64_t used_ = 0, copies_ = 0, lookupTokens_ = 0, hitTokens_ = 0;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_KVBLOCKPOOL_H
