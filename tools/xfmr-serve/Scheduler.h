//===- Scheduler.h - many generations over one artifact ---------*- C++ -*-===//
//
// The scheduler of xfmr-serve. Requests wait in a bounded queue; up to
// `maxSequences` run at once, each in a session of its own (its own KV
// cache, allocated once and reused). One thread runs the model: every round
// it admits waiting requests into free sessions (allocated when the
// scheduler starts, oldest request first), then moves every running
// sequence forward in one batched step (Session::step, which reads the
// weights once for all of them): one decoded token each, and for new
// sequences the next chunk of their prompt (at most `prefillChunk` prompt
// tokens per step, so a long prompt does not stall the others' tokens).
// Concurrent requests thus share the model fairly and stream at the same
// pace. A sequence ends at its token budget, an end-of-sequence id, a stop
// string or when its client goes away; its session is then free for the
// next request, and keeps what its cache holds: a new request takes the free
// session that shares the longest prefix with its prompt and runs only the
// rest (prefix caching, e.g. the earlier turns of a chat).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TOOLS_XFMR_SERVE_SCHEDULER_H
#define XFMR_TOOLS_XFMR_SERVE_SCHEDULER_H

#include "Histogram.h"

#include "xfmr/runtime/Artifact.h"
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
  /// Prompt tokens a finished sequence's cache already held (not run again).
  int64_t prefixCacheTokens = 0;
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
  /// Keep finished sequences' caches and continue the longest shared
  /// prefix of a new prompt from them.
  bool prefixCache = true;
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

  std::shared_ptr<runtime::Artifact> artifact_;
  const runtime::Tokenizer *tokenizer_;
  SchedulerOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_, idle_;
  struct Pending {
    GenerationRequest request;
    std::shared_ptr<Generation> generation;
    std::chrono::steady_clock::time_point submitted;
  };
  std::deque<Pending> queue_;
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
