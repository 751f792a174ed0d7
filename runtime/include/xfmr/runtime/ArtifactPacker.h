//===- ArtifactPacker.h - bind checkpoint weights to compiled code -*- C++ -*-===//
//
// What xfmr-pack does: an artifact's code and manifest (a weights-stripped
// one from `xfmr-compile --strip-weights`, or a full one whose weights are to
// be replaced) plus a checkpoint folder of the same architecture give a full
// artifact. The manifest's packing plan (WeightPacking.h) says how each
// tensor is made; the result is byte for byte what xfmr-compile writes from
// that checkpoint. No MLIR or LLVM: this runs where only the runtime is.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_ARTIFACTPACKER_H
#define XFMR_RUNTIME_ARTIFACTPACKER_H

#include "xfmr/runtime/WeightPacking.h"

#include <cstdint>
#include <functional>
#include <string>

namespace xfmr::runtime {

struct PackResult {
  uint64_t bytesWritten = 0;
  uint64_t weightsBytes = 0;
  size_t tensors = 0;
  PackingSummary summary;
};

/// Writes `outputPath` (atomically through runtime::OutputFile: nothing is
/// left on failure) from `artifactPath`'s code and manifest and the weights
/// of the checkpoint folder `checkpointDir`. `progress` gets a line now and
/// then. Throws `Error` naming the file, tensor or field at fault.
PackResult packArtifact(const std::string &artifactPath,
                        const std::string &checkpointDir,
                        const std::string &outputPath,
                        const std::function<void(const std::string &)>
                            &progress = {});

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_ARTIFACTPACKER_H
