//===- Scheduler.h - many generations over one artifact ---------*- C++ -*-===//
//
// The scheduler of xfmr-serve. Requests wait in a bounded queue; up to
// `maxSequences` run at once, each in a session of its own. One thread runs
// the model: every round it admits waiting requests (oldest first), then
// moves every running sequence forward in one batched step (Session::step,
// which reads the weights once for all of them): one decoded token each, and
// for new sequences the next chunk of their prompt (at most `prefillChunk`
// prompt tokens per step, so a long prompt does not stall the others'
// tokens). Concurrent requests thus share the model fairly and stream at the
// same pace. A sequence ends at its token budget, an end-of-sequence id, a
// stop string or when its client goes away.
//
// KV memory (CPU back end): the sessions take their caches from one
// KVBlockPool, block by block as they grow. A request is admitted when the
// pool has the blocks its prompt needs, beside one spare block per running
// sequence. When a step needs more blocks than are free, the sequence
// admitted last is preempted: its blocks go back to the pool and it waits at
// the head of the queue, to be recomputed (prompt and tokens so far) when
// blocks free up; its client sees only a pause. Prefix caching: full blocks
// are published by their tokens, so a new prompt that starts like an earlier
// or a running one maps those blocks and runs only the rest (the earlier
// turns of a chat, a shared system prompt).
//
// Back ends whose caches cannot be paged (GPUs) give each session one whole
// cache, allocated up front and reused; a new request then takes the free
// session whose cache shares the longest prefix with its prompt.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TOOLS_XFMR_SERVE_SCHEDULER_H
#define XFMR_TOOLS_XFMR_SERVE_SCHEDULER_H

#include "Histogram.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/KVBlockPool.h"
#include "xfmr/runtime/Sampler.h"
#include "xfmr/runtime/Session.h"
#include "xfmr/runtime/Tokenizer.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace xfmr::serve {

/// One generation to run.
struct GenerationRequest {
  std::vector<int32_t> prompt;
  /// Tokens to generate at most (>= 1).
  int maxTokens = 16;
  runtime::SamplingOptions sampling;
  /// Strings that end the text (needs the tokenizer).
  std::vector<std::string> stops;
  /// Ids that end the generation (not part of the text).
  std::vector<int32_t> endIds;
};

/// Why a generation ended, as the OpenAI API names it.
enum class FinishReason { Stop, Length, Cancelled, Error };
const char *finishReasonName(FinishReason reason);

/// What the scheduler reports to the request's owner, in order.
struct GenerationEvent {
  /// New text (may be empty while bytes are held back) and the ids sampled.
  std::string text;
  std::vector<int32_t> ids;
  /// Set on the last event.
  std::optional<FinishReason> finish;
  /// With FinishReason::Error: what went wrong.
  std::string error;
};

/// The link between a request's owner (an HTTP handler) and the scheduler.
class Generation {
public:
  /// The next event, waiting up to `timeout`; none on a timeout.
  std::optional<GenerationEvent> next(std::chrono::milliseconds timeout);
  /// Asks the scheduler to end the generation (the client went away).
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  int64_t promptTokens() const { return promptTokens_; }

private:
  friend class Scheduler;
  void push(GenerationEvent event);

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<GenerationEvent> events_;
  std::atomic<bool> cancelled_{false};
  int64_t promptTokens_ = 0;
};

/// Counters for /metrics (cumulative since start, except the gauges).
struct SchedulerMetrics {
  int64_t requests = 0, rejected = 0, finished = 0, cancelled = 0, failed = 0;
  int64_t promptTokens = 0, generatedTokens = 0;
  /// Prompt tokens a cache already held (not run again), of those looked up.
  int64_t prefixCacheTokens = 0, prefixLookupTokens = 0;
  /// Sequences preempted for want of KV blocks (recomputed later).
  int64_t preemptions = 0;
  /// Paged caches: the pool's blocks, those sessions map and those cached
  /// (published, no session maps them); 0 with whole caches.
  int64_t kvBlocks = 0, kvBlocksUsed = 0, kvBlocksCached = 0, kvBlockTokens = 0;
  /// Gauges: requests waiting and running now, sessions allocated, KV-cache
  /// bytes those sessions hold.
  int64_t queued = 0, running = 0, sessions = 0;
  uint64_t kvCacheBytes = 0;
  /// Seconds from submission to the first token, and between tokens.
  Histogram timeToFirstToken{latencyBuckets()},
      interTokenLatency{latencyBuckets()};
  /// Sequences per step (how many shared one read of the weights).
  Histogram roundSize{{1, 2, 4, 8, 16, 32, 64}};
};

struct SchedulerOptions {
  int maxSequences = 4;
  /// Requests that may wait for a free session; more are rejected.
  int maxQueue = 64;
  /// Prompt tokens run per step, over all new sequences (chunked prefill).
  int prefillChunk = 256;
  /// Reuse the blocks (or free caches) holding a new prompt's prefix.
  bool prefixCache = true;
  /// Page the KV caches when the back end can (a KVBlockPool).
  bool pagedCache = true;
  /// The pool's blocks; 0: maxSequences full contexts. At least one full
  /// context.
  int64_t kvBlocks = 0;
  /// Positions per block; 0: the pool's default.
  int64_t kvBlockTokens = 0;
  runtime::SessionOptions session;
};

class Scheduler {
public:
  /// Allocates every sequence's session and runs one token through the
  /// model (throws `Error`, e.g. when the KV caches do not fit in memory).
  /// `tokenizer` may be null (then requests cannot have stop strings and
  /// events carry no text).
  Scheduler(std::shared_ptr<runtime::Artifact> artifact,
            const runtime::Tokenizer *tokenizer,
            const SchedulerOptions &options);
  ~Scheduler();
  Scheduler(const Scheduler &) = delete;
  Scheduler &operator=(const Scheduler &) = delete;

  /// The checks submit() makes, without submitting: throws `Error` with a
  /// message for the client (ids out of range, too long for the context,
  /// bad sampling settings, stop strings without a tokenizer).
  void validate(const GenerationRequest &request) const;

  enum class Admission { Queued, QueueFull, Draining };
  /// Validates (throws `Error`) and queues `request`; `generation` is set
  /// when queued.
  Admission submit(GenerationRequest request,
                   std::shared_ptr<Generation> &generation);

  /// Stops admitting new requests and waits until every queued and running
  /// one has finished.
  void drain();
  bool draining() const { return draining_; }

  SchedulerMetrics metrics() const;
  /// The KV block pool (null: whole caches), and why there is none.
  const runtime::KVBlockPool *blockPool() const { return pool_.get(); }
  const std::string &whyNotPaged() const { return whyNotPaged_; }

private:
  struct Sequence;
  void loop();
  /// Samples `sequence`'s next token from `row` and reports it: false when
  /// the sequence has ended.
  bool emit(Sequence &sequence, const float *row);
  /// The ids `sequence` runs in the next step: its last token, or the next
  /// chunk of its prompt (taken from `prefillBudget`).
  std::vector<int32_t> nextIds(const Sequence &sequence,
                               int64_t &prefillBudget) const;
  /// Ends `sequence` without a token (cancelled, or an error).
  void finish(Sequence &sequence, FinishReason reason, std::string error = {});
  /// Counts a generation that ended (mutex_ held).
  void countFinished(FinishReason reason);
  /// Gives a sequence's session back to the free ones (whole caches keep
  /// what they hold for prefix caching; paged ones give their blocks back).
  void freeSession(Sequence &sequence);
  /// Whether the pool can take a prompt of `promptTokens` beside `running`
  /// sequences and the `reserved` blocks of those admitted earlier in the
  /// round; if so, adds the prompt's blocks to `reserved`.
  bool admissible(size_t promptTokens, size_t running, int64_t &reserved) const;
  /// Moves the last of `stepped` (and its input) out of the step and back
  /// to the head of `preempted`, its blocks back to the pool.
  void preempt(std::vector<std::unique_ptr<Sequence>> &running,
               std::deque<std::unique_ptr<Sequence>> &preempted,
               std::vector<runtime::StepInput> &inputs,
               std::vector<Sequence *> &stepped);

  std::shared_ptr<runtime::Artifact> artifact_;
  const runtime::Tokenizer *tokenizer_;
  SchedulerOptions options_;
  std::shared_ptr<runtime::KVBlockPool> pool_;
  std::string whyNotPaged_;

  mutable std::mutex mutex_;
  std::condition_variable wake_, idle_;
  struct Pending {
    GenerationRequest request;
    std::shared_ptr<Generation> generation;
    std::chrono::steady_clock::time_point submitted;
  };
  std::deque<Pending> queue_;
  /// Sequences admitted and not yet ended (preempted ones included).
  int64_t running_ = 0;
  bool stopping_ = false;
  std::atomic<bool> draining_{false};
  SchedulerMetrics metrics_;

  /// A session not in use and the tokens its cache holds (empty: reset).
  struct FreeSession {
    std::unique_ptr<runtime::Session> session;
    std::vector<int32_t> history;
  };
  /// Gives `sequence` the free session whose cache shares the longest
  /// prefix with its prompt, truncated to that prefix (prefix caching);
  /// returns the prompt tokens it holds.
  size_t takeFreeSession(Sequence &sequence);

  /// Sessions not in use (the scheduler thread's own).
  std::vector<FreeSession> freeSessions_;
  int64_t sessionsMade_ = 0;
  std::thread thread_;
};

} // namespace xfmr::serve

#endif // XFMR_TOOLS_XFMR_SERVE_SCHEDULER_H
