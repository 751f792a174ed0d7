//===- ExpectedTensors.h - Tensors a config implies -------------*- C++ -*-===//
//
// Lists the tensors (names and shapes) a checkpoint must hold for a given
// ModelConfig, exactly as documented in docs/checkpoints.md, and checks a
// Checkpoint against that list.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_IMPORT_EXPECTEDTENSORS_H
#define XFMR_IMPORT_EXPECTEDTENSORS_H

#include "import/Safetensors.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Error.h"

#include <optional>
#include <string>
#include <vector>

namespace xfmr {

class Checkpoint;
struct ModelConfig;

/// One tensor the checkpoint must contain.
struct TensorSpec {
  std::string name;
  llvm::SmallVector<int64_t> shape;
  /// The weight is expected as F8_E4M3 with a float32 `<name>_scale_inv`
  /// sibling of shape [ceil(out/rows), ceil(in/cols)] (ModelConfig's
  /// weightBlockRows/Cols). Siblings are not listed separately.
  bool fp8 = false;
  /// A required dtype (e.g. F32 for `e_score_correction_bias`); when unset,
  /// any of F32/F16/BF16 is accepted for non-FP8 tensors.
  std::optional<DType> dtype;
};

/// The tensors `config` requires, in model order (embedding, layers, final
/// norm, head). With `includeMTP`, DeepSeek-V3's multi-token-prediction layers
/// (indices numLayers ... numLayers + numNextnPredictLayers - 1) are added.
std::vector<TensorSpec> expectedTensors(const ModelConfig &config,
                                        bool includeMTP = false);

/// Checks that `checkpoint` holds every tensor of expectedTensors() with the
/// expected shape and a suitable dtype (FP8 weights with a correctly shaped
/// float32 scale_inv sibling; floating point otherwise). Extra tensors are
/// allowed. Reports up to 10 problems in one error, then "... and N more".
llvm::Error checkTensors(const ModelConfig &config,
                         const Checkpoint &checkpoint, bool includeMTP = false);

} // namespace xfmr

#endif // XFMR_IMPORT_EXPECTEDTENSORS_H
