//===- Checksum.h - XXH3-64 checksums of artifact sections ------*- C++ -*-===//
//
// The artifact's integrity check (ArtifactFormat.h, FileTrailer): XXH3-64
// with seed 0 from Debian's libxxhash, inlined (no library to link). It
// hashes at memory speed, so verifying a 1 GB artifact costs about as much as
// reading it once.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_CHECKSUM_H
#define XFMR_RUNTIME_CHECKSUM_H

#include <cstddef>
#include <cstdint>
#include <memory>

namespace xfmr::runtime {

/// An XXH3-64 checksum fed in pieces.
class Checksum {
public:
  Checksum();
  ~Checksum();
  Checksum(const Checksum &) = delete;
  Checksum &operator=(const Checksum &) = delete;

  /// Starts over.
  void reset();
  void update(const void *data, size_t size);
  /// The checksum of everything since the last reset.
  uint64_t digest() const;

  /// The checksum of one buffer.
  static uint64_t of(const void *data, size_t size);

private:
  struct State;
  std::unique_ptr<State> state_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_CHECKSUM_H
