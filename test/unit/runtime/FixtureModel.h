//===- FixtureModel.h - the toy model behind the runtime tests ------------===//
//
// Shared by FixtureModel.cpp (built as the "compiled model" shared object)
// and the tests (which compute the expected logits). The weight blob is
// float bias[vocab]; the cache holds token id + 1 per position (0: empty),
// so logits depend on everything prefilled before, as in a real model.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TEST_UNIT_RUNTIME_FIXTUREMODEL_H
#define XFMR_TEST_UNIT_RUNTIME_FIXTUREMODEL_H

#include <stdint.h>

/* What the fixture code is compiled for (its ModelInfo). */
enum { kFixtureVocab = 16, kFixtureContext = 32 };
/* bias[vocab] padded to 64 bytes, like a real weight blob. */
enum { kFixtureWeightsBytes = (kFixtureVocab * 4 + 63) / 64 * 64 };
#define kFixtureCpu "x86-64"
#define kFixtureFeatures "+cx8,+sse2"

/* Hash of the cached history [0, length): ids and positions both count. */
static inline uint32_t fixtureHistoryHash(const int32_t *cache,
                                          int64_t length) {
  uint32_t h = 2166136261u;
  for (int64_t i = 0; i < length; ++i) {
    h ^= (uint32_t)cache[i] * 2654435761u + (uint32_t)i;
    h *= 16777619u;
  }
  return h;
}

/* The logit of token `v` after the history hashing to `h`. */
static inline float fixtureLogit(const float *bias, uint32_t h, int64_t v) {
  uint32_t mixed = (h ^ ((uint32_t)v * 2246822519u)) * 3266489917u;
  return bias[v] + (float)((mixed >> 8) % 1000u) / 100.0f;
}

#endif /* XFMR_TEST_UNIT_RUNTIME_FIXTUREMODEL_H */
