//===- CApi.cpp - the C API (xfmr.h) over the C++ runtime ----------------===//
//
// Each entry point catches everything: C callers get a status and
// xfmr_last_error(), never an exception.
//
//===----------------------------------------------------------------------===//

#include "xfmr/xfmr.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/KVBlockPool.h"
#include "xfmr/runtime/Sampler.h"
#include "xfmr/runtime/Session.h"
#include "xfmr/runtime/Version.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <string>

using namespace xfmr::runtime;

struct xfmr_model {
  std::shared_ptr<Artifact> artifact;
};

struct xfmr_sequence {
  std::unique_ptr<Session> session;
  int64_t vocab;
};

struct xfmr_block_pool {
  std::shared_ptr<KVBlockPool> pool;
};

struct xfmr_sampler {
  Sampler sampler;
};

namespace {

thread_local std::string lastError;

xfmr_status fail(xfmr_status status, std::string message) {
  lastError = std::move(message);
  return status;
}

/// Runs `body`, turning exceptions into statuses: runtime errors are
/// XFMR_ERROR unless `errorStatus` says otherwise.
template <typename Body>
xfmr_status guarded(const char *function, Body body,
                    xfmr_status errorStatus = XFMR_ERROR) {
  try {
    return body();
  } catch (const std::bad_alloc &) {
    return fail(XFMR_OUT_OF_MEMORY, std::string(function) + ": out of memory");
  } catch (const OutOfKVBlocks &error) {
    return fail(XFMR_OUT_OF_MEMORY,
                std::string(function) + ": " + error.what());
  } catch (const std::exception &error) {
    return fail(errorStatus, std::string(function) + ": " + error.what());
  } catch (...) {
    return fail(XFMR_ERROR, std::string(function) + ": unknown error");
  }
}

xfmr_status nullArgument(const char *function, const char *name) {
  return fail(XFMR_INVALID_ARGUMENT,
              std::string(function) + ": " + name + " is NULL");
}

/// xfmr_sequence_create and xfmr_sequence_create_paged (`pool` non-null).
xfmr_status createSequence(const char *function, xfmr_model *model,
                           xfmr_block_pool *pool, int threads,
                           xfmr_sequence **sequence) {
  if (!model)
    return nullArgument(function, "model");
  if (!sequence)
    return nullArgument(function, "sequence");
  if (threads < 0 || threads > Artifact::kMaxThreads)
    return fail(XFMR_INVALID_ARGUMENT,
                std::string(function) + ": threads must be in [0, " +
                    std::to_string(Artifact::kMaxThreads) + "], got " +
                    std::to_string(threads));
  // Paged, the only runtime errors are the caller's: a pool of another
  // model.
  return guarded(
      function,
      [&] {
        SessionOptions options;
        options.threads = threads;
        if (pool)
          options.blockPool = pool->pool;
        auto handle = std::make_unique<xfmr_sequence>();
        handle->session = std::make_unique<Session>(model->artifact, options);
        handle->vocab = model->artifact->vocabSize();
        *sequence = handle.release();
        return XFMR_OK;
      },
      pool ? XFMR_INVALID_ARGUMENT : XFMR_ERROR);
}

} // namespace

extern "C" {

const char *xfmr_last_error(void) { return lastError.c_str(); }

const char *xfmr_version(void) { return versionString(); }

xfmr_status xfmr_model_open(const char *path, const xfmr_open_options *options,
                            xfmr_model **model) {
  if (!path)
    return nullArgument("xfmr_model_open", "path");
  if (!model)
    return nullArgument("xfmr_model_open", "model");
  return guarded("xfmr_model_open", [&] {
    OpenOptions open;
    if (options) {
      open.verifyChecksums = options->verify_checksums != 0;
      if (options->device)
        open.device = options->device;
    }
    auto handle = std::make_unique<xfmr_model>();
    handle->artifact = Artifact::open(path, open);
    *model = handle.release();
    return XFMR_OK;
  });
}

void xfmr_model_free(xfmr_model *model) { delete model; }

int64_t xfmr_model_vocab_size(const xfmr_model *model) {
  return model ? model->artifact->vocabSize() : 0;
}

int64_t xfmr_model_context_length(const xfmr_model *model) {
  return model ? model->artifact->contextLength() : 0;
}

size_t xfmr_model_end_of_sequence_ids(const xfmr_model *model, int32_t *ids,
                                      size_t capacity) {
  if (!model)
    return 0;
  std::vector<int32_t> eos = model->artifact->endOfSequenceIds();
  if (ids)
    std::copy_n(eos.begin(), std::min(capacity, eos.size()), ids);
  return eos.size();
}

xfmr_status xfmr_sequence_create(xfmr_model *model, int threads,
                                 xfmr_sequence **sequence) {
  return createSequence("xfmr_sequence_create", model, nullptr, threads,
                        sequence);
}

xfmr_status xfmr_block_pool_create(xfmr_model *model, int64_t blocks,
                                   int64_t sequences, int64_t block_tokens,
                                   xfmr_block_pool **pool) {
  if (!model)
    return nullArgument("xfmr_block_pool_create", "model");
  if (!pool)
    return nullArgument("xfmr_block_pool_create", "pool");
  if (blocks < 0 || block_tokens < 0 || (blocks == 0 && sequences < 1))
    return fail(XFMR_INVALID_ARGUMENT,
                "xfmr_block_pool_create: blocks and block_tokens must be >= 0, "
                "and sequences >= 1 when blocks is 0");
  return guarded("xfmr_block_pool_create", [&] {
    KVBlockPoolOptions options;
    options.blocks = blocks;
    options.sequences = sequences;
    options.blockTokens = block_tokens;
    auto handle = std::make_unique<xfmr_block_pool>();
    handle->pool = std::make_shared<KVBlockPool>(model->artifact, options);
    *pool = handle.release();
    return XFMR_OK;
  });
}

void xfmr_block_pool_free(xfmr_block_pool *pool) { delete pool; }

int64_t xfmr_block_pool_available(const xfmr_block_pool *pool) {
  return pool ? pool->pool->available() : 0;
}

int64_t xfmr_block_pool_block_tokens(const xfmr_block_pool *pool) {
  return pool ? pool->pool->blockTokens() : 0;
}

xfmr_status xfmr_sequence_create_paged(xfmr_model *model, xfmr_block_pool *pool,
                                       int threads, xfmr_sequence **sequence) {
  if (!pool)
    return nullArgument("xfmr_sequence_create_paged", "pool");
  return createSequence("xfmr_sequence_create_paged", model, pool, threads,
                        sequence);
}

xfmr_status xfmr_sequence_reuse_prefix(xfmr_sequence *sequence,
                                       const int32_t *ids, size_t count,
                                       size_t *reused) {
  if (!sequence)
    return nullArgument("xfmr_sequence_reuse_prefix", "sequence");
  if (!ids && count > 0)
    return nullArgument("xfmr_sequence_reuse_prefix", "ids");
  if (!reused)
    return nullArgument("xfmr_sequence_reuse_prefix", "reused");
  return guarded("xfmr_sequence_reuse_prefix", [&] {
    std::vector<int32_t> prompt(ids, ids + count);
    for (size_t i = 0; i < count; ++i)
      if (prompt[i] < 0 || prompt[i] >= sequence->vocab)
        return fail(XFMR_INVALID_ARGUMENT,
                    "xfmr_sequence_reuse_prefix: id " +
                        std::to_string(prompt[i]) + " at index " +
                        std::to_string(i) + " is outside the vocabulary");
    *reused = size_t(sequence->session->reusePrefix(prompt));
    return XFMR_OK;
  });
}

void xfmr_sequence_free(xfmr_sequence *sequence) { delete sequence; }

int64_t xfmr_sequence_position(const xfmr_sequence *sequence) {
  return sequence ? sequence->session->position() : 0;
}

void xfmr_sequence_reset(xfmr_sequence *sequence) {
  if (sequence)
    sequence->session->reset();
}

xfmr_status xfmr_sequence_step(xfmr_sequence *sequence, const int32_t *ids,
                               size_t count, float *logits) {
  if (!sequence)
    return nullArgument("xfmr_sequence_step", "sequence");
  if (!ids)
    return nullArgument("xfmr_sequence_step", "ids");
  // The caller's mistakes (ids, context) are told apart from failures of
  // the run by checking first, as the session itself does.
  try {
    sequence->session->checkIds(ids, count, 0);
  } catch (const std::exception &error) {
    return fail(XFMR_INVALID_ARGUMENT,
                std::string("xfmr_sequence_step: ") + error.what());
  }
  return guarded("xfmr_sequence_step", [&] {
    std::vector<int32_t> input(ids, ids + count);
    std::vector<float> all = count == 1 ? sequence->session->decode(input[0])
                                        : sequence->session->prefill(input);
    if (logits)
      std::memcpy(logits, all.data() + (count - 1) * size_t(sequence->vocab),
                  size_t(sequence->vocab) * sizeof(float));
    return XFMR_OK;
  });
}

xfmr_status xfmr_sequences_step(xfmr_sequence *const *sequences,
                                const int32_t *const *ids, const size_t *counts,
                                size_t n, float *logits) {
  const char *name = "xfmr_sequences_step";
  if (!sequences)
    return nullArgument(name, "sequences");
  if (!ids)
    return nullArgument(name, "ids");
  if (!counts)
    return nullArgument(name, "counts");
  std::vector<StepInput> inputs;
  try {
    if (n == 0)
      throw Error("no sequences given: need at least one");
    for (size_t i = 0; i < n; ++i) {
      std::string which = "sequence " + std::to_string(i);
      if (!sequences[i])
        throw Error(which + " is NULL");
      if (!ids[i])
        throw Error(which + "'s ids are NULL");
      inputs.push_back({sequences[i]->session.get(),
                        std::vector<int32_t>(ids[i], ids[i] + counts[i])});
    }
  } catch (const std::exception &error) {
    return fail(XFMR_INVALID_ARGUMENT, std::string(name) + ": " + error.what());
  }
  // Session::step checks everything before it runs anything: its errors
  // are the caller's until a position moved.
  std::vector<int64_t> before;
  for (const StepInput &input : inputs)
    before.push_back(input.session->position());
  try {
    std::vector<float> all = Session::step(inputs);
    if (logits)
      std::memcpy(logits, all.data(), all.size() * sizeof(float));
    return XFMR_OK;
  } catch (const std::bad_alloc &) {
    return fail(XFMR_OUT_OF_MEMORY, std::string(name) + ": out of memory");
  } catch (const OutOfKVBlocks &error) {
    // Nothing ran (blocks taken for some sequences stay theirs, empty).
    return fail(XFMR_OUT_OF_MEMORY, std::string(name) + ": " + error.what());
  } catch (const std::exception &error) {
    bool ran = false;
    for (size_t i = 0; i < n; ++i)
      ran |= inputs[i].session->position() != before[i];
    return fail(ran ? XFMR_ERROR : XFMR_INVALID_ARGUMENT,
                std::string(name) + ": " + error.what());
  }
}

xfmr_status xfmr_sampler_create(const xfmr_sampling *options,
                                xfmr_sampler **sampler) {
  if (!options)
    return nullArgument("xfmr_sampler_create", "options");
  if (!sampler)
    return nullArgument("xfmr_sampler_create", "sampler");
  return guarded(
      "xfmr_sampler_create",
      [&] {
        SamplingOptions sampling;
        sampling.temperature = options->temperature;
        sampling.topK = options->top_k;
        sampling.topP = options->top_p;
        sampling.seed = options->seed;
        *sampler = new xfmr_sampler{Sampler(sampling)};
        return XFMR_OK;
      },
      XFMR_INVALID_ARGUMENT);
}

void xfmr_sampler_free(xfmr_sampler *sampler) { delete sampler; }

xfmr_status xfmr_sampler_sample(xfmr_sampler *sampler, const float *logits,
                                int64_t vocab, int32_t *token) {
  if (!sampler)
    return nullArgument("xfmr_sampler_sample", "sampler");
  if (!logits)
    return nullArgument("xfmr_sampler_sample", "logits");
  if (!token)
    return nullArgument("xfmr_sampler_sample", "token");
  return guarded(
      "xfmr_sampler_sample",
      [&] {
        *token = sampler->sampler.sample(logits, vocab);
        return XFMR_OK;
      },
      XFMR_INVALID_ARGUMENT);
}

} // extern "C"
