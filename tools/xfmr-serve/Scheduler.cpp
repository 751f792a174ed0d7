//===- Scheduler.cpp - many generations over one artifact -----------------===//

#include "Scheduler.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/PagedKVCache.h"
#include "xfmr/runtime/TextStream.h"

#include <algorithm>

using namespace xfmr::serve;
using namespace xfmr::runtime;
using Clock = std::chrono::steady_clock;

const char *xfmr::serve::finishReasonName(FinishReason reason) {
  switch (reason) {
  case FinishReason::Stop:
    return "stop";
  case FinishReason::Length:
    return "length";
  case FinishReason::Cancelled:
    return "cancelled";
  case FinishReason::Error:
    return "error";
  }
  return "error";
}

std::optional<GenerationEvent>
Generation::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); }))
    return std::nullopt;
  GenerationEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void Generation::push(GenerationEvent event) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(event));
  }
  ready_.notify_all();
}

struct Scheduler::Sequence {
  GenerationRequest request;
  std::shared_ptr<Generation> generation;
  Clock::time_point submitted, lastToken;
  std::unique_ptr<Session> session;
  std::optional<Sampler> sampler;
  std::optional<TextStream> text;
  std::vector<int32_t> generated;
  /// Prompt tokens in the cache so far.
  size_t prefilled = 0;
  /// After a preemption: the prompt and the tokens generated so far, run
  /// again as the prompt.
  std::vector<int32_t> recompute;
  const std::vector<int32_t> &prompt() const {
    return recompute.empty() ? request.prompt : recompute;
  }
};

Scheduler::Scheduler(std::shared_ptr<Artifact> artifact,
                     const Tokenizer *tokenizer,
                     const SchedulerOptions &options)
    : artifact_(std::move(artifact)), tokenizer_(tokenizer), options_(options) {
  if (!artifact_)
    throw Error("the scheduler needs an artifact");
  if (options_.maxSequences < 1 || options_.maxQueue < 0 ||
      options_.prefillChunk < 1)
    throw Error("the scheduler needs at least one sequence, a "
                "non-negative queue and a prefill chunk of at least one "
                "token");
  // Paged caches where the back end and the artifact allow them.
  if (!options_.pagedCache)
    whyNotPaged_ = "paging is turned off";
  else
    whyNotPaged_ =
        KVBlockPool::whyNotPageable(*artifact_, options_.kvBlockTokens);
  if (whyNotPaged_.empty()) {
    KVBlockPoolOptions pool;
    pool.blockTokens = options_.kvBlockTokens;
    pool.blocks = options_.kvBlocks;
    pool.sequences = options_.maxSequences;
    pool_ = std::make_shared<KVBlockPool>(artifact_, pool);
    // The whole context, or an evicting cache's ring.
    int64_t perSequence = pool_->blocksPerSequence();
    if (pool_->blocks() < perSequence)
      throw Error("--kv-blocks " + std::to_string(pool_->blocks()) +
                  " holds less than one sequence of the full context (" +
                  std::to_string(perSequence) + " blocks of " +
                  std::to_string(pool_->blockTokens()) + " positions)");
    options_.session.blockPool = pool_;
  } else if (options_.kvBlocks > 0 || options_.kvBlockTokens > 0) {
    throw Error("--kv-blocks and --kv-block-tokens need a paged KV cache, "
                "and this one cannot be paged: " +
                whyNotPaged_);
  }
  // Every sequence's session up front (whole caches: as a server reserves
  // its KV memory; paged ones only reserve address space), and one token
  // through the model: the first run of a process takes about 0.3 s more on
  // the 500M model, and no request should pay for it.
  for (int i = 0; i < options_.maxSequences; ++i) {
    freeSessions_.push_back(
        {std::make_unique<Session>(artifact_, options_.session), {}});
    metrics_.sessions = ++sessionsMade_;
    if (!pool_)
      metrics_.kvCacheBytes += artifact_->kvCacheBytes();
  }
  freeSessions_.back().session->prefill({0});
  freeSessions_.back().session->reset();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Scheduler::validate(const GenerationRequest &request) const {
  if (request.prompt.empty())
    throw Error("the prompt is empty");
  int64_t vocab = artifact_->vocabSize();
  for (size_t i = 0; i < request.prompt.size(); ++i)
    if (request.prompt[i] < 0 || request.prompt[i] >= vocab)
      throw Error("prompt token " + std::to_string(i) + " is id " +
                  std::to_string(request.prompt[i]) +
                  ", outside the vocabulary [0, " + std::to_string(vocab) +
                  ")");
  if (request.maxTokens < 1)
    throw Error("max_tokens must be at least 1, got " +
                std::to_string(request.maxTokens));
  // The last token is sampled but never fed back: it needs no cache slot.
  int64_t context = artifact_->contextLength();
  int64_t needed = int64_t(request.prompt.size()) + request.maxTokens - 1;
  if (needed > context)
    throw Error(
        "the prompt (" + std::to_string(request.prompt.size()) +
        " tokens) and max_tokens (" + std::to_string(request.maxTokens) +
        ") need " + std::to_string(needed) +
        " positions, more than the context of " + std::to_string(context));
  request.sampling.validate();
  if (!request.stops.empty() && !tokenizer_)
    throw Error("stop strings need a tokenizer, and the artifact carries "
                "none");
  for (const std::string &stop : request.stops)
    if (stop.empty())
      throw Error("a stop string is empty");
}

Scheduler::Admission
Scheduler::submit(GenerationRequest request,
                  std::shared_ptr<Generation> &generation) {
  validate(request);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (draining_)
      return Admission::Draining;
    // Requests that would wait for a session, this one included.
    int64_t waiting =
        running_ + int64_t(queue_.size()) + 1 - int64_t(options_.maxSequences);
    if (waiting > options_.maxQueue) {
      ++metrics_.rejected;
      return Admission::QueueFull;
    }
    generation = std::make_shared<Generation>();
    generation->promptTokens_ = int64_t(request.prompt.size());
    ++metrics_.requests;
    metrics_.promptTokens += int64_t(request.prompt.size());
    queue_.push_back({std::move(request), generation, Clock::now()});
    metrics_.queued = int64_t(queue_.size());
  }
  wake_.notify_all();
  return Admission::Queued;
}

void Scheduler::drain() {
  draining_ = true;
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
}

SchedulerMetrics Scheduler::metrics() const {
  SchedulerMetrics metrics;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    metrics = metrics_;
  }
  if (pool_) {
    KVBlockPoolStats pool = pool_->stats();
    metrics.kvBlocks = pool.blocks;
    metrics.kvBlocksUsed = pool.used;
    metrics.kvBlocksCached = pool.cached;
    metrics.kvBlockTokens = pool.blockTokens;
    metrics.kvCacheBytes = uint64_t(pool.used + pool.cached) * pool.blockBytes;
  }
  return metrics;
}

void Scheduler::finish(Sequence &sequence, FinishReason reason,
                       std::string error) {
  GenerationEvent event;
  event.finish = reason;
  event.error = std::move(error);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    countFinished(reason);
  }
  sequence.generation->push(std::move(event));
}

void Scheduler::countFinished(FinishReason reason) {
  // Before the client hears of it: a client that sends its next request
  // right away must find the sequence free.
  running_ = std::max<int64_t>(0, running_ - 1);
  metrics_.running = running_;
  switch (reason) {
  case FinishReason::Stop:
  case FinishReason::Length:
    ++metrics_.finished;
    break;
  case FinishReason::Cancelled:
    ++metrics_.cancelled;
    break;
  case FinishReason::Error:
    ++metrics_.failed;
    break;
  }
}

size_t Scheduler::takeFreeSession(Sequence &sequence) {
  const std::vector<int32_t> &prompt = sequence.prompt();
  if (pool_) {
    // Any free session (all are empty): the pool has the prefix blocks.
    sequence.session = std::move(freeSessions_.back().session);
    freeSessions_.pop_back();
    auto reused = size_t(
        options_.prefixCache ? sequence.session->reusePrefix(prompt) : 0);
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.prefixCacheTokens += int64_t(reused);
    metrics_.prefixLookupTokens += int64_t(prompt.size());
    return reused;
  }
  // The free session whose cache shares the longest prefix with the prompt;
  // at least the prompt's last token runs again, for its logits.
  size_t best = freeSessions_.size() - 1, bestShared = 0;
  for (size_t i = 0; i < freeSessions_.size(); ++i) {
    const std::vector<int32_t> &history = freeSessions_[i].history;
    size_t limit = std::min(history.size(), prompt.size() - 1), shared = 0;
    while (shared < limit && history[shared] == prompt[shared])
      ++shared;
    if (shared > bestShared) {
      best = i;
      bestShared = shared;
    }
  }
  FreeSession free = std::move(freeSessions_[best]);
  freeSessions_.erase(freeSessions_.begin() + std::ptrdiff_t(best));
  sequence.session = std::move(free.session);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.prefixLookupTokens += int64_t(prompt.size());
  }
  if (bestShared == 0) {
    if (sequence.session->position() != 0)
      sequence.session->reset();
    return 0;
  }
  try {
    sequence.session->truncate(int64_t(bestShared));
  } catch (const Error &) {
    // An evicting cache that wrapped: start over.
    sequence.session->reset();
    return 0;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  metrics_.prefixCacheTokens += int64_t(bestShared);
  return bestShared;
}

bool Scheduler::emit(Sequence &sequence, const float *row) {
  try {
    int32_t token = sequence.sampler->sample(row, artifact_->vocabSize());
    sequence.generated.push_back(token);
    Clock::time_point now = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++metrics_.generatedTokens;
      if (sequence.generated.size() == 1)
        metrics_.timeToFirstToken.observe(
            std::chrono::duration<double>(now - sequence.submitted).count());
      else
        metrics_.interTokenLatency.observe(
            std::chrono::duration<double>(now - sequence.lastToken).count());
    }
    sequence.lastToken = now;

    GenerationEvent event;
    event.ids = {token};
    const std::vector<int32_t> &endIds = sequence.request.endIds;
    bool ended = std::find(endIds.begin(), endIds.end(), token) != endIds.end();
    if (!ended && sequence.text) {
      event.text = sequence.text->push(token);
      ended = sequence.text->stopped();
    }
    bool full = int(sequence.generated.size()) >= sequence.request.maxTokens;
    if (!ended && full && sequence.text)
      event.text += sequence.text->finish();
    if (ended || full)
      event.finish = ended ? FinishReason::Stop : FinishReason::Length;
    std::optional<FinishReason> reason = event.finish;
    if (reason) {
      std::lock_guard<std::mutex> lock(mutex_);
      countFinished(*reason);
    }
    sequence.generation->push(std::move(event));
    return !reason;
  } catch (const std::exception &error) {
    finish(sequence, FinishReason::Error, error.what());
    return false;
  }
}

std::vector<int32_t> Scheduler::nextIds(const Sequence &sequence,
                                        int64_t &prefillBudget) const {
  const std::vector<int32_t> &prompt = sequence.prompt();
  if (sequence.prefilled >= prompt.size())
    return {sequence.generated.back()};
  // The next chunk of the prompt, within the round's prefill budget (at
  // least one token, so every prompt advances).
  size_t left = prompt.size() - sequence.prefilled;
  int64_t chunk =
      std::max<int64_t>(1, std::min<int64_t>(prefillBudget, int64_t(left)));
  // An evicting cache is a ring: a multi-token segment must not wrap it.
  const ModelConfig &model = artifact_->model();
  if (model.kvWindow > 0)
    chunk = std::min<int64_t>(
        chunk, std::max<int64_t>(1, model.kvWindow + model.kvSinks -
                                        sequence.session->position()));
  prefillBudget -= chunk;
  auto first = prompt.begin() + std::ptrdiff_t(sequence.prefilled);
  return std::vector<int32_t>(first, first + chunk);
}

bool Scheduler::admissible(size_t promptTokens, size_t running,
                           int64_t &reserved) const {
  if (!pool_)
    return true;
  // Its prompt's blocks (prefix hits would need fewer) and a spare block for
  // each running sequence's next tokens, beyond what the sequences admitted
  // earlier this round will take.
  int64_t prompt = std::min(pool_->blocksFor(int64_t(promptTokens)),
                            pool_->blocksPerSequence());
  if (running > 0 && pool_->available() - reserved < prompt + int64_t(running))
    return false;
  reserved += prompt;
  return true;
}

void Scheduler::freeSession(Sequence &sequence) {
  FreeSession free{std::move(sequence.session), {}};
  if (pool_) {
    // Its published blocks stay in the pool's prefix cache.
    free.session->reset();
    freeSessions_.push_back(std::move(free));
    return;
  }
  // What the cache holds: the prompt and every generated token but the last
  // (sampled, never fed back), unless the sequence ended before its prompt
  // was in. (Whole caches are never preempted: the prompt is the request's.)
  const std::vector<int32_t> &prompt = sequence.request.prompt;
  if (options_.prefixCache && sequence.prefilled >= prompt.size()) {
    free.history = prompt;
    if (!sequence.generated.empty())
      free.history.insert(free.history.end(), sequence.generated.begin(),
                          sequence.generated.end() - 1);
  }
  if (int64_t(free.history.size()) != free.session->position())
    free.history.clear();
  if (free.history.empty())
    free.session->reset();
  freeSessions_.push_back(std::move(free));
}

void Scheduler::preempt(std::vector<std::unique_ptr<Sequence>> &running,
                        std::deque<std::unique_ptr<Sequence>> &preempted,
                        std::vector<StepInput> &inputs,
                        std::vector<Sequence *> &stepped) {
  Sequence *victim = stepped.back();
  stepped.pop_back();
  inputs.pop_back();
  // Recomputed from the start: the prompt and every token generated so far
  // (the last one was never fed back; its logits sample the next).
  std::vector<int32_t> recompute = victim->request.prompt;
  recompute.insert(recompute.end(), victim->generated.begin(),
                   victim->generated.end());
  victim->session->reset();
  freeSessions_.push_back({std::move(victim->session), {}});
  victim->recompute = std::move(recompute);
  victim->prefilled = 0;
  auto it = std::find_if(running.begin(), running.end(),
                         [&](const auto &s) { return s.get() == victim; });
  preempted.push_front(std::move(*it));
  running.erase(it);
  std::lock_guard<std::mutex> lock(mutex_);
  ++metrics_.preemptions;
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Sequence>> running;
  // Preempted sequences, first to run again.
  std::deque<std::unique_ptr<Sequence>> preempted;
  for (;;) {
    // A preempted sequence whose client went away ends now.
    for (auto it = preempted.begin(); it != preempted.end();) {
      if (!(*it)->generation->cancelled()) {
        ++it;
        continue;
      }
      finish(**it, FinishReason::Cancelled);
      it = preempted.erase(it);
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return stopping_ || !queue_.empty() || !running.empty() ||
               !preempted.empty();
      });
      if (stopping_) {
        // The server is going away: nothing more runs.
        for (Pending &pending : queue_)
          pending.generation->push({{}, {}, FinishReason::Cancelled, {}});
        queue_.clear();
        lock.unlock();
        for (auto &sequence : running)
          finish(*sequence, FinishReason::Cancelled);
        for (auto &sequence : preempted)
          finish(*sequence, FinishReason::Cancelled);
        return;
      }
      // Oldest first, while the KV blocks allow: a request that does not
      // fit waits, and so do the ones behind it.
      int64_t reserved = 0;
      while (int64_t(running.size()) < options_.maxSequences &&
             !preempted.empty() &&
             admissible(preempted.front()->prompt().size(), running.size(),
                        reserved)) {
        running.push_back(std::move(preempted.front()));
        preempted.pop_front();
      }
      while (int64_t(running.size()) < options_.maxSequences &&
             preempted.empty() && !queue_.empty() &&
             admissible(queue_.front().request.prompt.size(), running.size(),
                        reserved)) {
        auto sequence = std::make_unique<Sequence>();
        sequence->request = std::move(queue_.front().request);
        sequence->generation = std::move(queue_.front().generation);
        sequence->submitted = queue_.front().submitted;
        queue_.pop_front();
        running.push_back(std::move(sequence));
      }
      running_ = int64_t(running.size() + preempted.size());
      metrics_.queued = int64_t(queue_.size());
      metrics_.running = running_;
    }
    // New sequences get a session (one made on first need, then reused),
    // a sampler and a text stream.
    for (auto &sequence : running) {
      if (sequence->session)
        continue;
      try {
        if (!freeSessions_.empty()) {
          sequence->prefilled = takeFreeSession(*sequence);
        } else {
          sequence->session =
              std::make_unique<Session>(artifact_, options_.session);
          std::lock_guard<std::mutex> lock(mutex_);
          metrics_.sessions = ++sessionsMade_;
          if (!pool_)
            metrics_.kvCacheBytes += artifact_->kvCacheBytes();
        }
        // A preempted sequence keeps its sampler and text.
        if (!sequence->sampler) {
          sequence->sampler.emplace(sequence->request.sampling);
          if (tokenizer_)
            sequence->text.emplace(*tokenizer_, sequence->request.stops);
        }
      } catch (const std::exception &error) {
        finish(*sequence, FinishReason::Error, error.what());
        sequence->generation.reset();
        if (sequence->session)
          freeSession(*sequence);
      }
    }
    // One step for every running sequence: a chunk of its prompt or its
    // next token. Cancelled ones end first.
    std::vector<StepInput> inputs;
    std::vector<Sequence *> stepped;
    int64_t prefillBudget = options_.prefillChunk;
    for (auto &sequence : running) {
      if (!sequence->generation || !sequence->session)
        continue;
      if (sequence->generation->cancelled()) {
        finish(*sequence, FinishReason::Cancelled);
        sequence->generation.reset();
        // Its blocks go back before this step counts what it needs.
        freeSession(*sequence);
        continue;
      }
      inputs.push_back(
          {sequence->session.get(), nextIds(*sequence, prefillBudget)});
      stepped.push_back(sequence.get());
    }
    // Paged caches: when the step needs more blocks than the pool has,
    // the sequences admitted last wait for recompute.
    while (pool_ && inputs.size() > 1) {
      int64_t needed = 0;
      for (const StepInput &input : inputs) {
        int64_t at = input.session->position();
        needed += input.session->pagedCache()->blocksNeeded(
            at, at + int64_t(input.ids.size()));
      }
      if (needed <= pool_->available())
        break;
      preempt(running, preempted, inputs, stepped);
    }
    if (!inputs.empty()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.roundSize.observe(double(inputs.size()));
      }
      try {
        std::vector<float> logits = Session::step(inputs);
        int64_t vocab = artifact_->vocabSize();
        for (size_t i = 0; i < stepped.size(); ++i) {
          Sequence &sequence = *stepped[i];
          size_t count = inputs[i].ids.size();
          bool prompt = sequence.prefilled < sequence.prompt().size();
          if (prompt)
            sequence.prefilled += count;
          // A prompt's chunks sample nothing until its last one.
          if (prompt && sequence.prefilled < sequence.prompt().size())
            continue;
          if (!emit(sequence, logits.data() + i * size_t(vocab)))
            sequence.generation.reset();
        }
      } catch (const OutOfKVBlocks &) {
        // Blocks ran out after all (a copy on write the count above could
        // not foresee): nothing ran; the sequence admitted last waits, the
        // others go on next round.
        if (stepped.size() > 1)
          preempt(running, preempted, inputs, stepped);
      } catch (const std::exception &error) {
        // Requests were validated: a failing step is the runtime's fault,
        // and every sequence in it ends with the message.
        for (Sequence *sequence : stepped) {
          finish(*sequence, FinishReason::Error, error.what());
          sequence->generation.reset();
        }
      }
    }
    for (auto it = running.begin(); it != running.end();) {
      Sequence &sequence = **it;
      if (sequence.generation && sequence.session) {
        ++it;
        continue;
      }
      if (sequence.session)
        freeSession(sequence);
      it = running.erase(it);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = int64_t(running.size() + preempted.size());
      metrics_.running = running_;
      if (queue_.empty() && running.empty() && preempted.empty())
        idle_.notify_all();
    }
  }
}
