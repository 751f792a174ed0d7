//===- Session.h - one conversation with a loaded model ---------*- C++ -*-===//
//
// A session owns a KV cache (allocated by the artifact's backend) and a
// position. Inputs are validated before any
// compute, so an `Error` never leaves the cache half-written. One session is
// used by one thread at a time; sessions sharing an artifact may run on
// different threads.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_SESSION_H
#define XFMR_RUNTIME_SESSION_H

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Backend.h"
#include "xfmr/runtime/KVBlockPool.h"
#include "xfmr/runtime/Sampler.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace xfmr::runtime {

struct SessionOptions {
  /// Threads for the model code; 0: hardware concurrency.
  int threads = 0;
  /// Take the KV cache from this pool, block by block as the sequence grows
  /// (a paged cache, CPU backend only); null: one whole cache of its own.
  std::shared_ptr<KVBlockPool> blockPool;
};

/// Tokens routed to each expert of one MoE layer.
struct ExpertTokens {
  std::string layer;
  std::vector<int64_t> counts;
};

/// What a session did. Per generation (since the session was created or
/// last reset()): the prefill and decode counters and their rates.
/// Cumulative over the session's life: `generations` and `expertTokens`.
/// Per process: peakRssBytes. The rest describes the artifact.
struct Stats {
  int64_t prefillTokens = 0;
  double prefillSeconds = 0;
  int64_t decodeTokens = 0;
  double decodeSeconds = 0;
  /// 1 + the number of reset() calls: which generation the counters above
  /// describe.
  int64_t generations = 1;
  uint64_t weightsBytes = 0;
  uint64_t kvCacheBytes = 0;
  uint64_t kvCacheBytesPerToken = 0;
  uint64_t parameterCount = 0;
  /// Peak resident set of the whole process (getrusage).
  uint64_t peakRssBytes = 0;
  int threads = 0;
  /// Where the code runs: "cpu", or the GPU's name; the device memory the
  /// backend holds (weights, caches, buffers; 0 on the CPU) and how long
  /// the weights took to upload (0 on the CPU, which reads them in place).
  /// With a paged cache: the blocks the session maps now.
  std::string device;
  uint64_t deviceMemoryBytes = 0;
  double weightsUploadSeconds = 0;
  int64_t kvBlocks = 0;
  /// Per MoE layer, the (token, expert) assignments the router made over
  /// every token run, prefill and decode: what an expert-placement balancer
  /// needs. Empty for dense models.
  std::vector<ExpertTokens> expertTokens;

  /// 0 when nothing was timed.
  double prefillTokensPerSecond() const {
    return prefillSeconds > 0 ? prefillTokens / prefillSeconds : 0;
  }
  double decodeTokensPerSecond() const {
    return decodeSeconds > 0 ? decodeTokens / decodeSeconds : 0;
  }
};

class Session;
class PagedKVCache;

/// One session's tokens in a batched step (Session::step).
struct StepInput {
  Session *session = nullptr;
  std::vector<int32_t> ids;
};

class Session {
public:
  /// Called with each generated token and the logits row it was sampled
  /// from; returning false stops generation after that token.
  using TokenCallback = std::function<bool(int32_t token, const float *logits)>;

  /// Allocates the zeroed KV cache. Throws `Error` for a null artifact or a
  /// negative thread count.
  explicit Session(std::shared_ptr<Artifact> artifact,
                   const SessionOptions &options = {});

  /// Runs `ids` at the current position and returns their logits, row-major
  /// [ids.size(), vocab]. Throws `Error` (before any compute) for an empty
  /// input, an id outside [0, vocab) or a context overflow.
  std::vector<float> prefill(const std::vector<int32_t> &ids);
  /// Runs one token; returns its [vocab] logits. Same checks as prefill.
  std::vector<float> decode(int32_t id);

  /// Runs several sessions of one artifact in one call: each input's ids at
  /// its session's position, as prefill/decode would, but with the weights
  /// read once for all of them (the artifact's step entry; artifacts
  /// without one run the inputs one after another). Returns the logits of
  /// each input's last id, row-major [inputs, vocab] (the LM head runs on
  /// those rows only, which is what sampling needs). Throws
  /// `Error` before any compute for no inputs, a null or repeated session,
  /// sessions of different artifacts, or what prefill would reject. Each
  /// session counts its ids as decode (one id) or prefill (several), timed
  /// by the whole step.
  static std::vector<float> step(const std::vector<StepInput> &inputs);

  /// Prefills `prompt`, then samples up to `maxNewTokens` tokens, feeding
  /// each one back except the last (which is returned but not yet in the
  /// cache: feed it first when continuing). Validates everything before any
  /// compute, including position + prompt + maxNewTokens - 1 <= context
  /// length (the last token needs no cache slot).
  std::vector<int32_t> generate(const std::vector<int32_t> &prompt,
                                int maxNewTokens,
                                const SamplingOptions &sampling = {},
                                const TokenCallback &onToken = {});

  /// Zeroes the cache, returns to position 0 and starts a new generation:
  /// the prefill/decode counters of stats() start over (expert counts and
  /// the generation count do not).
  void reset();
  /// Keeps the first `position` tokens in the cache and forgets the rest, so
  /// that a new input continues that prefix without running it again (a
  /// server's prefix cache). Throws `Error` for a position outside [0,
  /// position()], or when an evicting cache has wrapped (its ring no longer
  /// holds the prefix in place).
  void truncate(int64_t position);
  /// With a paged cache at position 0: maps the pool's published blocks
  /// that hold the longest prefix of `prompt` (whole blocks, at most
  /// prompt.size() - 1 positions: the last token must run for its logits)
  /// and moves to the end of that prefix; returns its length. 0 without a
  /// paged cache, for an evicting cache (a ring's blocks are never shared)
  /// or away from position 0.
  int64_t reusePrefix(const std::vector<int32_t> &prompt);
  /// The paged cache (null: a whole cache of its own).
  const PagedKVCache *pagedCache() const { return paged_; }
  /// Tokens currently in the cache.
  int64_t position() const { return position_; }
  const Artifact &artifact() const { return *artifact_; }
  Stats stats() const;

  /// The checks prefill/decode/generate make before any compute: at least
  /// one id, every id in [0, vocab), position + count + extra <= context
  /// (`extra`: generated tokens to be fed back). Throws `Error`.
  void checkIds(const int32_t *ids, size_t count, size_t extra) const;

private:
  /// Calls the decode or prefill entry; its time counts as decode or
  /// prefill per `countAsDecode` (default: the entry's kind).
  void run(bool isDecode, const int32_t *ids, size_t count, float *logits,
           std::optional<bool> countAsDecode = std::nullopt);
  /// Gives a paged cache the blocks `count` more tokens write (throws
  /// OutOfKVBlocks), and afterwards publishes the blocks they filled.
  void prepareCache(size_t count);
  void recordTokens(const int32_t *ids, size_t count);

  std::shared_ptr<Artifact> artifact_;
  /// The KV cache, in the backend's memory.
  std::unique_ptr<DeviceBuffer> cache_;
  /// cache_ when it is paged.
  PagedKVCache *paged_ = nullptr;
  /// With a paged cache (and no evicting ring): the ids at each position,
  /// which key the blocks the session publishes.
  std::vector<int32_t> history_;
  int threads_;
  int64_t position_ = 0;
  Stats stats_;
  /// Expert counts of caches cleared by reset(), added to the live ones.
  std::vector<std::vector<int64_t>> clearedExpertCounts_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_SESSION_H
