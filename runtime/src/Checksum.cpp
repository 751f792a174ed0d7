//===- Checksum.cpp - XXH3-64 checksums of artifact sections --------------===//

#include "xfmr/runtime/Checksum.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

using namespace xfmr::runtime;

struct Checksum::State {
  XXH3_state_t xxh;
};

Checksum::Checksum() : state_(new State) { reset(); }

Checksum::~Checksum() = default;

void Checksum::reset() { XXH3_64bits_reset(&state_->xxh); }

void Checksum::update(const void *data, size_t size) {
  XXH3_64bits_update(&state_->xxh, data, size);
}

uint64_t Checksum::digest() const { return XXH3_64bits_digest(&state_->xxh); }

uint64_t Checksum::of(const void *data, size_t size) {
  return XXH3_64bits(data, size);
}
