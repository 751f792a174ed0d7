//===- Session.cpp - one conversation with a loaded model -----------------===//

#include "xfmr/runtime/Session.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/PagedKVCache.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sys/resource.h>

using namespace xfmr::runtime;
using namespace xfmr::artifact;

static const Artifact &checked(const std::shared_ptr<Artifact> &artifact) {
  if (!artifact)
    throw Error("Session needs a loaded artifact, got null");
  return *artifact;
}

Session::Session(std::shared_ptr<Artifact> artifact,
                 const SessionOptions &options)
    : artifact_(std::move(artifact)) {
  const Artifact &model = checked(artifact_);
  threads_ = Artifact::effectiveThreads(options.threads);
  if (!options.blockPool) {
    cache_ = model.backend().allocateCache(model.kvCacheBytes());
    return;
  }
  if (&options.blockPool->artifact() != &model)
    throw Error("the KV block pool was made for another artifact (" +
                options.blockPool->artifact().path() + ") than " +
                model.path());
  auto paged = std::make_unique<PagedKVCache>(options.blockPool);
  paged_ = paged.get();
  cache_ = std::move(paged);
}

void Session::prepareCache(size_t count) {
  if (paged_)
    paged_->prepare(position_, position_ + int64_t(count));
}

void Session::recordTokens(const int32_t *ids, size_t count) {
  if (!paged_ || artifact_->model().kvWindow > 0)
    return;
  history_.insert(history_.end(), ids, ids + count);
  paged_->publish(history_.data(), int64_t(history_.size()));
}

int64_t Session::reusePrefix(const std::vector<int32_t> &prompt) {
  if (!paged_ || artifact_->model().kvWindow > 0 || position_ != 0 ||
      prompt.empty())
    return 0;
  // Blocks left by a run that failed before any token went in hold nothing.
  paged_->truncate(0);
  int64_t reused = paged_->adoptPrefix(prompt.data(), int64_t(prompt.size()),
                                       int64_t(prompt.size()) - 1);
  history_.assign(prompt.begin(), prompt.begin() + reused);
  position_ = reused;
  return reused;
}

void Session::checkIds(const int32_t *ids, size_t count, size_t extra) const {
  if (count == 0)
    throw Error("no token ids given: need at least one");
  int64_t vocab = artifact_->vocabSize();
  for (size_t i = 0; i < count; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw Error("token id " + std::to_string(ids[i]) + " at index " +
                  std::to_string(i) + " is out of range [0, " +
                  std::to_string(vocab) + ")");
  int64_t context = artifact_->contextLength();
  // Compared in unsigned 64-bit: count and extra are at most SIZE_MAX / 2.
  uint64_t needed = static_cast<uint64_t>(position_) + count + extra;
  if (needed > static_cast<uint64_t>(context)) {
    std::string what = std::to_string(count) + " token(s)";
    if (extra)
      what += " + " + std::to_string(extra) + " generated token(s) fed back";
    throw Error("context overflow: position " + std::to_string(position_) +
                " + " + what + " = " + std::to_string(needed) +
                " exceeds the context length " + std::to_string(context));
  }
}

void Session::run(bool isDecode, const int32_t *ids, size_t count,
                  float *logits, std::optional<bool> countAsDecode) {
  int64_t n = static_cast<int64_t>(count);
  RunArgs args;
  args.ids = ids;
  args.count = n;
  args.start = position_;
  args.cache = cache_.get();
  args.logits = logits;
  args.vocab = artifact_->vocabSize();
  // OpenMP keeps the thread count per calling thread: applied per call.
  args.threads = threads_;
  Backend &backend = artifact_->backend();
  prepareCache(count);
  auto start = std::chrono::steady_clock::now();
  backend.run(isDecode ? EntryPoint::Decode : EntryPoint::Prefill, args);
  backend.synchronize();
  recordTokens(ids, count);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (countAsDecode.value_or(isDecode)) {
    stats_.decodeTokens += n;
    stats_.decodeSeconds += seconds;
  } else {
    stats_.prefillTokens += n;
    stats_.prefillSeconds += seconds;
  }
  position_ += n;
}

std::vector<float> Session::prefill(const std::vector<int32_t> &ids) {
  checkIds(ids.data(), ids.size(), 0);
  int64_t vocab = artifact_->vocabSize();
  std::vector<float> logits(ids.size() * vocab);
  // An evicting cache is a ring: a multi-token call may only fill slots no
  // earlier token of the same call still needs, so the tokens past the ring
  // go one at a time (through the decode entry, counted as prefill).
  size_t whole = ids.size();
  const ModelConfig &model = artifact_->model();
  if (model.kvWindow > 0) {
    int64_t room = model.kvWindow + model.kvSinks - position_;
    whole = std::min<size_t>(ids.size(), static_cast<size_t>(
                                             std::max<int64_t>(room, 1)));
  }
  run(/*isDecode=*/false, ids.data(), whole, logits.data());
  for (size_t i = whole; i < ids.size(); ++i)
    run(/*isDecode=*/true, &ids[i], 1, logits.data() + i * vocab,
        /*countAsDecode=*/false);
  return logits;
}

std::vector<float> Session::decode(int32_t id) {
  checkIds(&id, 1, 0);
  std::vector<float> logits(artifact_->vocabSize());
  run(/*isDecode=*/true, &id, 1, logits.data());
  return logits;
}

std::vector<float> Session::step(const std::vector<StepInput> &inputs) {
  if (inputs.empty())
    throw Error("a step needs at least one session");
  const Artifact *artifact = nullptr;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const StepInput &input = inputs[i];
    std::string which = "step input " + std::to_string(i);
    if (!input.session)
      throw Error(which + " has no session");
    if (!artifact)
      artifact = input.session->artifact_.get();
    if (input.session->artifact_.get() != artifact)
      throw Error(which + "'s session belongs to another artifact than "
                          "input 0's: a step runs one model");
    for (size_t j = 0; j < i; ++j)
      if (inputs[j].session == input.session)
        throw Error(which + " repeats the session of step input " +
                    std::to_string(j));
    try {
      input.session->checkIds(input.ids.data(), input.ids.size(), 0);
    } catch (const Error &error) {
      throw Error(which + ": " + error.what());
    }
    // An evicting cache is a ring: a segment may only fill slots no earlier
    // token of it still needs (prefill splits such inputs; a step cannot).
    const ModelConfig &model = artifact->model();
    int64_t room = model.kvWindow + model.kvSinks - input.session->position_;
    if (model.kvWindow > 0 && input.ids.size() > 1 &&
        static_cast<int64_t>(input.ids.size()) > room)
      throw Error(which + ": " + std::to_string(input.ids.size()) +
                  " ids would wrap the evicting cache's ring (room for " +
                  std::to_string(std::max<int64_t>(room, 0)) +
                  "); run them through prefill");
  }

  int64_t vocab = artifact->vocabSize();
  size_t total = 0;
  for (const StepInput &input : inputs)
    total += input.ids.size();
  std::vector<float> logits(inputs.size() * vocab);
  Backend &backend = artifact->backend();
  if (!backend.hasStep()) {
    std::vector<float> rows;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const StepInput &input = inputs[i];
      rows.resize(input.ids.size() * vocab);
      input.session->run(input.ids.size() == 1, input.ids.data(),
                         input.ids.size(), rows.data());
      std::copy(rows.end() - vocab, rows.end(), logits.begin() + i * vocab);
    }
    return logits;
  }

  StepArgs args;
  std::vector<int32_t> ids;
  ids.reserve(total);
  for (const StepInput &input : inputs) {
    StepSegment segment;
    segment.firstRow = static_cast<int64_t>(ids.size());
    segment.count = static_cast<int64_t>(input.ids.size());
    segment.start = input.session->position_;
    segment.cache = input.session->cache_.get();
    args.segments.push_back(segment);
    ids.insert(ids.end(), input.ids.begin(), input.ids.end());
  }
  args.ids = ids.data();
  args.count = static_cast<int64_t>(total);
  args.logits = logits.data();
  args.vocab = vocab;
  args.threads = inputs.front().session->threads_;
  for (const StepInput &input : inputs)
    input.session->prepareCache(input.ids.size());
  auto start = std::chrono::steady_clock::now();
  backend.runStep(args);
  backend.synchronize();
  for (const StepInput &input : inputs)
    input.session->recordTokens(input.ids.data(), input.ids.size());
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  for (const StepInput &input : inputs) {
    Session &session = *input.session;
    auto n = static_cast<int64_t>(input.ids.size());
    if (n == 1) {
      session.stats_.decodeTokens += n;
      session.stats_.decodeSeconds += seconds;
    } else {
      session.stats_.prefillTokens += n;
      session.stats_.prefillSeconds += seconds;
    }
    session.position_ += n;
  }
  return logits;
}

std::vector<int32_t> Session::generate(const std::vector<int32_t> &prompt,
                                       int maxNewTokens,
                                       const SamplingOptions &sampling,
                                       const TokenCallback &onToken) {
  if (maxNewTokens < 0)
    throw Error("the number of tokens to generate must be >= 0, got " +
                std::to_string(maxNewTokens));
  Sampler sampler(sampling);
  // The last generated token is returned, not fed back: it needs no slot.
  checkIds(prompt.data(), prompt.size(),
           maxNewTokens > 0 ? static_cast<size_t>(maxNewTokens) - 1 : 0);

  int64_t vocab = artifact_->vocabSize();
  std::vector<float> logits = prefill(prompt);
  const float *row = logits.data() + (prompt.size() - 1) * vocab;
  std::vector<int32_t> tokens;
  tokens.reserve(maxNewTokens);
  for (int i = 0; i < maxNewTokens; ++i) {
    if (i > 0) {
      logits = decode(tokens.back());
      row = logits.data();
    }
    int32_t token = sampler.sample(row, vocab);
    tokens.push_back(token);
    if (onToken && !onToken(token, row))
      break;
  }
  return tokens;
}

void Session::reset() {
  // The expert counters live in the cache buffer: keep what they counted
  // (stats() already adds the counts of earlier resets).
  std::vector<ExpertTokens> totals = stats().expertTokens;
  clearedExpertCounts_.clear();
  for (ExpertTokens &layer : totals)
    clearedExpertCounts_.push_back(std::move(layer.counts));
  cache_->clear();
  history_.clear();
  position_ = 0;
  int64_t generations = stats_.generations + 1;
  stats_ = Stats();
  stats_.generations = generations;
}

void Session::truncate(int64_t position) {
  if (position < 0 || position > position_)
    throw Error("cannot keep " + std::to_string(position) +
                " tokens: the cache holds " + std::to_string(position_));
  const ModelConfig &model = artifact_->model();
  if (model.kvWindow > 0 && position_ > model.kvWindow + model.kvSinks &&
      position < position_)
    throw Error("cannot keep the first " + std::to_string(position) +
                " tokens: the evicting cache has wrapped past them");
  // Entries past the position are stale, never read: attention reads the
  // cache up to the position of the token it runs, and the next tokens
  // overwrite them. A paged cache gives back the blocks past them.
  if (paged_) {
    paged_->truncate(position);
    history_.resize(std::min(history_.size(), size_t(position)));
  }
  position_ = position;
}

Stats Session::stats() const {
  Stats s = stats_;
  s.weightsBytes = artifact_->weightsBytes();
  s.kvCacheBytes = artifact_->kvCacheBytes();
  s.kvCacheBytesPerToken = artifact_->kvCacheBytesPerToken();
  s.parameterCount = artifact_->parameterCount();
  s.threads = threads_;
  s.device = artifact_->backend().deviceName();
  s.kvBlocks = paged_ ? paged_->blocksHeld() : 0;
  s.deviceMemoryBytes = artifact_->backend().deviceMemoryBytes();
  s.weightsUploadSeconds = artifact_->backend().uploadSeconds();
  const auto &slots = artifact_->expertCounters();
  for (size_t i = 0; i < slots.size(); ++i) {
    ExpertTokens layer{slots[i].name, std::vector<int64_t>(slots[i].experts)};
    cache_->read(slots[i].offset, layer.counts.data(),
                 slots[i].experts * sizeof(int64_t));
    if (i < clearedExpertCounts_.size())
      for (int64_t e = 0; e < slots[i].experts; ++e)
        layer.counts[e] += clearedExpertCounts_[i][e];
    s.expertTokens.push_back(std::move(layer));
  }
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) == 0)
    s.peakRssBytes = static_cast<uint64_t>(usage.ru_maxrss) * 1024;
  return s;
}
