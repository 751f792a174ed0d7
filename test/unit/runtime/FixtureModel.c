/*===- FixtureModel.c - a toy "compiled model" for the runtime tests ------===*
 *
 * Implements the entry-point ABI of ArtifactFormat.h so the loader, the
 * session and xfmr-run can be tested without the compiler. A descriptor that
 * breaks the ABI contract turns the logits into NaN, which the tests see.
 *
 *===----------------------------------------------------------------------===*/

#include "FixtureModel.h"

#include <math.h>

typedef struct {
  int32_t *allocated, *aligned;
  int64_t offset, sizes[1], strides[1];
} MemRefI32;
typedef struct {
  uint8_t *allocated, *aligned;
  int64_t offset, sizes[1], strides[1];
} MemRefU8;
typedef struct {
  float *allocated, *aligned;
  int64_t offset, sizes[2], strides[2];
} MemRefF32x2;

static void run(MemRefI32 *ids, int64_t start, MemRefU8 *weights,
                MemRefU8 *cache, MemRefF32x2 *logits, int isDecode) {
  int64_t n = ids->sizes[0], vocab = logits->sizes[1];
  float *out = logits->aligned + logits->offset;
  int32_t *history = (int32_t *)(cache->aligned + cache->offset);
  const float *bias = (const float *)(weights->aligned + weights->offset);
  int valid = n > 0 && logits->sizes[0] == n && ids->strides[0] == 1 &&
              logits->strides[0] == vocab && logits->strides[1] == 1 &&
              weights->sizes[0] >= vocab * (int64_t)sizeof(float) &&
              cache->sizes[0] >= (start + n) * (int64_t)sizeof(int32_t) &&
              (!isDecode || n == 1);
  for (int64_t i = 0; valid && i < start; ++i)
    valid = history[i] != 0; /* earlier positions were written */
  for (int64_t t = 0; t < n; ++t) {
    if (valid)
      history[start + t] = ids->aligned[ids->offset + t] + 1;
    uint32_t h = valid ? fixtureHistoryHash(history, start + t + 1) : 0;
    for (int64_t v = 0; v < vocab; ++v)
      out[t * vocab + v] = valid ? fixtureLogit(bias, h, v) : NAN;
  }
}

void _mlir_ciface_prefill(MemRefI32 *ids, int64_t start, MemRefU8 *weights,
                          MemRefU8 *cache, MemRefF32x2 *logits) {
  run(ids, start, weights, cache, logits, 0);
}

void _mlir_ciface_decode(MemRefI32 *ids, int64_t start, MemRefU8 *weights,
                         MemRefU8 *cache, MemRefF32x2 *logits) {
  run(ids, start, weights, cache, logits, 1);
}

#ifndef FIXTURE_NO_OMP
/* Stands in for libomp's, so the tests see what the runtime sets. */
static int fixtureThreads = -1;
void omp_set_num_threads(int threads) { fixtureThreads = threads; }
int fixture_get_threads(void) { return fixtureThreads; }
#endif
