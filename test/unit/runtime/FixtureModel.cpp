//===- FixtureModel.cpp - a toy "compiled model" for the runtime tests ----===//
//
// Implements the entry-point ABI of ArtifactFormat.h (with its exact types,
// so that UBSan's function-type check agrees) and exports the ModelInfo
// table, so the loader, the session and xfmr-run can be tested without the
// compiler. A descriptor that breaks the ABI contract turns the logits into
// NaN, which the tests see.
//
//===----------------------------------------------------------------------===//

#include "FixtureModel.h"

#include "xfmr/runtime/ArtifactFormat.h"

#include <cmath>

using MemRefI32 = xfmr::artifact::MemRef<int32_t, 1>;
using MemRefU8 = xfmr::artifact::MemRef<uint8_t, 1>;
using MemRefF32x2 = xfmr::artifact::MemRef<float, 2>;

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

extern "C" {

void _mlir_ciface_prefill(MemRefI32 *ids, int64_t start, MemRefU8 *weights,
                          MemRefU8 *cache, MemRefF32x2 *logits) {
  run(ids, start, weights, cache, logits, 0);
}

void _mlir_ciface_decode(MemRefI32 *ids, int64_t start, MemRefU8 *weights,
                         MemRefU8 *cache, MemRefF32x2 *logits) {
  run(ids, start, weights, cache, logits, 1);
}

/// The batched entry: each segment as prefill/decode would run it, on its
/// own cache inside `caches`; logits gets each segment's last row.
void _mlir_ciface_batch_step(MemRefI32 *ids,
                             xfmr::artifact::MemRef<int64_t, 2> *segments,
                             MemRefU8 *weights, MemRefU8 *caches,
                             MemRefF32x2 *logits) {
  int64_t vocab = logits->sizes[1];
  float rows[kFixtureContext * kFixtureVocab];
  for (int64_t s = 0; s < segments->sizes[0]; ++s) {
    const int64_t *row = segments->aligned + segments->offset + s * 4;
    int64_t first = row[0], count = row[1], start = row[2], offset = row[3];
    int valid = segments->sizes[1] == 4 && first >= 0 && count > 0 &&
                first + count <= ids->sizes[0] && offset >= 0 &&
                offset + kFixtureContext * 4 <= caches->sizes[0];
    MemRefI32 segmentIds = *ids;
    segmentIds.offset += valid ? first : 0;
    segmentIds.sizes[0] = valid ? count : 0;
    MemRefU8 cache = *caches;
    cache.offset += valid ? offset : 0;
    cache.sizes[0] = kFixtureContext * 4;
    valid = valid && count <= kFixtureContext && vocab == kFixtureVocab &&
            logits->sizes[0] == segments->sizes[0];
    MemRefF32x2 out = {rows, rows, 0, {valid ? count : 0, vocab}, {vocab, 1}};
    run(&segmentIds, start, weights, &cache, &out, 0);
    if (s >= logits->sizes[0])
      continue; // a broken descriptor: nothing to write into
    float *last = logits->aligned + logits->offset + s * vocab;
    for (int64_t v = 0; v < vocab; ++v)
      last[v] = valid ? rows[(count - 1) * vocab + v] : NAN;
  }
}

#ifndef FIXTURE_NO_INFO
/// What the fixture is "compiled for": the sizes FixtureArtifact writes
/// into its manifest by default.
extern const xfmr::artifact::ModelInfo xfmr_model_info;
const xfmr::artifact::ModelInfo xfmr_model_info = {
    xfmr::artifact::kModelAbiVersion,
    sizeof(xfmr::artifact::ModelInfo),
    kFixtureVocab,
    kFixtureContext,
    kFixtureContext * 4,
    kFixtureWeightsBytes,
    /*kvWindow=*/0,
    /*kvSinks=*/0,
    _mlir_ciface_prefill,
    _mlir_ciface_decode,
    kFixtureCpu,
    kFixtureFeatures,
    _mlir_ciface_batch_step};
#endif

/// Not an entry point: the tests name it in the manifest.
void fixture_other_function(MemRefI32 *, int64_t, MemRefU8 *, MemRefU8 *,
                            MemRefF32x2 *) {}

#ifndef FIXTURE_NO_OMP
/// Stands in for libomp's, so the tests see what the runtime sets.
static int fixtureThreads = -1;
void omp_set_num_threads(int threads) { fixtureThreads = threads; }
int fixture_get_threads(void) { return fixtureThreads; }
#endif

} // extern "C"
