/*===- xfmr.h - the runtime's C API -------------------------------*- C -*-===*
 *
 * Embeds xfmr in a C (or any FFI) program: open a compiled model.xfmr, create
 * sequences on it, run tokens through them and sample the next token. It
 * wraps the C++ runtime (the xfmr/runtime/ headers) and, like it, needs no MLIR or
 * LLVM: link the installed `xfmr::runtime` target (find_package(xfmr)).
 *
 * Conventions: every handle is opaque and freed by its `_free` function
 * (NULL is accepted); functions that can fail return an `xfmr_status` and set
 * a thread-local message, `xfmr_last_error()`; outputs go through pointer
 * arguments and are written only on success. Nothing here throws or aborts.
 * A sequence is used by one thread at a time; different sequences may run on
 * different threads.
 *
 *===----------------------------------------------------------------------===*/

#ifndef XFMR_XFMR_H
#define XFMR_XFMR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum xfmr_status {
  XFMR_OK = 0,
  /** A bad argument: a null pointer, an id outside the vocabulary, a
   *  context overflow, a bad sampling value. Nothing was changed. */
  XFMR_INVALID_ARGUMENT = 1,
  /** Any other failure: an unreadable or invalid artifact, a device error. */
  XFMR_ERROR = 2,
  /** Memory ran out, or a block pool has no free block (nothing ran: free
   *  or reset another sequence of the pool and retry). */
  XFMR_OUT_OF_MEMORY = 3
} xfmr_status;

/** The message of this thread's last failed call ("" when none failed). The
 *  pointer stays valid until the thread's next failed call. */
const char *xfmr_last_error(void);

/** The runtime's version, e.g. "xfmr 0.7.0 (commit abc1234)". */
const char *xfmr_version(void);

/* ---- Models ------------------------------------------------------------ */

typedef struct xfmr_model xfmr_model;

typedef struct xfmr_open_options {
  /** Verify the artifact's checksums on open (non-zero: yes, the default). */
  int verify_checksums;
  /** The target to run ("cpu", "cuda", "rocm", "vulkan"), or NULL for the
   *  first one this machine can run. */
  const char *device;
} xfmr_open_options;

/** Maps and checks the artifact at `path` (options may be NULL). */
xfmr_status xfmr_model_open(const char *path, const xfmr_open_options *options,
                            xfmr_model **model);
void xfmr_model_free(xfmr_model *model);
/** Token ids are in [0, vocab_size). */
int64_t xfmr_model_vocab_size(const xfmr_model *model);
/** The most tokens a sequence holds. */
int64_t xfmr_model_context_length(const xfmr_model *model);
/** The ids that end a generation (the config's eos_token_id and those of
 *  generation_config.json): writes up to `capacity` of them to `ids` and
 *  returns how many there are. */
size_t xfmr_model_end_of_sequence_ids(const xfmr_model *model, int32_t *ids,
                                      size_t capacity);

/* ---- Sequences --------------------------------------------------------- */

typedef struct xfmr_sequence xfmr_sequence;

/** A sequence (its own KV cache and position) on `model`, which must outlive
 *  it. `threads`: 0 for every core. */
xfmr_status xfmr_sequence_create(xfmr_model *model, int threads,
                                 xfmr_sequence **sequence);

/* ---- Paged KV caches (CPU) --------------------------------------------- */

typedef struct xfmr_block_pool xfmr_block_pool;

/** KV-cache memory in fixed-size blocks, shared by the sequences created with
 *  it: each takes blocks as it grows and gives them back when reset or freed,
 *  and a new sequence can map the blocks holding a prompt prefix another one
 *  computed (xfmr_sequence_reuse_prefix). `blocks`: the pool's size, or 0 for
 *  `sequences` full contexts; `block_tokens`: positions per block, or 0 for
 *  the default (16, or the smallest that keeps blocks whole pages). Fails
 *  with XFMR_ERROR, and the reason, when the model's cache cannot be paged
 *  (a GPU target, an artifact compiled before paging). The pool may be freed
 *  before its sequences: they keep it alive. */
xfmr_status xfmr_block_pool_create(xfmr_model *model, int64_t blocks,
                                   int64_t sequences, int64_t block_tokens,
                                   xfmr_block_pool **pool);
void xfmr_block_pool_free(xfmr_block_pool *pool);
/** Blocks that can be handed out now (free, or cached for their prefix). */
int64_t xfmr_block_pool_available(const xfmr_block_pool *pool);
/** Positions per block. */
int64_t xfmr_block_pool_block_tokens(const xfmr_block_pool *pool);
/** A sequence whose KV cache is blocks of `pool` (a pool of the same model). */
xfmr_status xfmr_sequence_create_paged(xfmr_model *model, xfmr_block_pool *pool,
                                       int threads, xfmr_sequence **sequence);
/** At position 0 of a paged sequence: maps the pool's blocks that hold the
 *  longest prefix of `ids` (whole blocks, at most count - 1 ids) and moves
 *  past them; `*reused` receives how many ids that is (0 without a pool).
 *  Run the rest of the prompt next. */
xfmr_status xfmr_sequence_reuse_prefix(xfmr_sequence *sequence,
                                       const int32_t *ids, size_t count,
                                       size_t *reused);
void xfmr_sequence_free(xfmr_sequence *sequence);
/** Tokens in the sequence's cache. */
int64_t xfmr_sequence_position(const xfmr_sequence *sequence);
/** Empties the cache; the position returns to 0. */
void xfmr_sequence_reset(xfmr_sequence *sequence);
/** Runs `count` >= 1 ids at the current position (a prompt, or the last
 *  sampled token) and, when `logits` is not NULL, writes the logits of the
 *  last one: vocab_size floats. The ids are checked first (range, context):
 *  on an error nothing ran. */
xfmr_status xfmr_sequence_step(xfmr_sequence *sequence, const int32_t *ids,
                               size_t count, float *logits);
/** xfmr_sequence_step for `n` >= 1 distinct sequences of one model in one
 *  call, which reads the weights once for all of them (a server's batched
 *  decode): sequence i runs `counts[i]` >= 1 ids from `ids[i]`. When
 *  `logits` is not NULL, row i (vocab_size floats) receives the logits of
 *  sequence i's last id. Everything is checked first: on an error nothing
 *  ran. */
xfmr_status xfmr_sequences_step(xfmr_sequence *const *sequences,
                                const int32_t *const *ids, const size_t *counts,
                                size_t n, float *logits);

/* ---- Sampling ---------------------------------------------------------- */

typedef struct xfmr_sampler xfmr_sampler;

typedef struct xfmr_sampling {
  /** 0: greedy (argmax, the lowest id on ties). */
  float temperature;
  /** Sample among the k most likely tokens; 0: all. */
  int top_k;
  /** Nucleus threshold in (0, 1]; 1: off. */
  float top_p;
  /** The same seed and logits give the same tokens. */
  uint64_t seed;
} xfmr_sampling;

xfmr_status xfmr_sampler_create(const xfmr_sampling *options,
                                xfmr_sampler **sampler);
void xfmr_sampler_free(xfmr_sampler *sampler);
/** Picks a token from `vocab` logits. */
xfmr_status xfmr_sampler_sample(xfmr_sampler *sampler, const float *logits,
                                int64_t vocab, int32_t *token);

#ifdef __cplusplus
}
#endif

#endif /* XFMR_XFMR_H */
