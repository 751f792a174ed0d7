//===- ArtifactWriter.h - pack code, weights and manifest -------*- C++ -*-===//

#ifndef XFMR_LOWERING_ARTIFACT_ARTIFACTWRITER_H
#define XFMR_LOWERING_ARTIFACT_ARTIFACTWRITER_H

#include "lowering/Artifact/ModelInfo.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <functional>
#include <optional>
#include <string>

namespace xfmr {

class Checkpoint;

struct ArtifactContents {
  /// The module after xfmr-lower-to-kernels: its xfmr.model,
  /// xfmr.weight_layout and xfmr.cache_layout attributes describe the model
  /// and the two blobs.
  mlir::ModuleOp module;
  /// Where the weights' bytes come from (null if the model has none).
  const Checkpoint *checkpoint = nullptr;
  /// The linked shared object, which exports `xfmr_model_info` with `sizes`.
  std::string code;
  ModelSizes sizes;
  /// The manifest's "target" and "compile_options" objects.
  llvm::json::Object target, compileOptions;
  /// An artifact for several targets: each one's object (with its
  /// code_offset and code_size in the code section), as "targets".
  llvm::json::Array targets;
  /// Leave the weights out (xfmr-compile --strip-weights): the header says
  /// so, the manifest keeps the packing plan, xfmr-pack binds a checkpoint.
  bool stripWeights = false;
  /// Optional extra "model" fields (bos_token_id, eos_token_id, ...).
  llvm::json::Object modelExtras;
  /// The manifest's "tokenizer" (none when empty) and "generation_config"
  /// (compiler/TokenizerFiles.h).
  llvm::json::Object tokenizer;
  std::optional<llvm::json::Object> generationConfig;
};

/// Writes `model.xfmr` (see runtime/include/xfmr/runtime/ArtifactFormat.h)
/// to `path` through runtime::OutputFile: atomically through a unique
/// temporary file renamed at the end (nothing is left behind on failure), or
/// in place for a device or FIFO. `progress` receives a line now and then
/// while weights are copied; `bytesWritten` the artifact's size.
llvm::Error writeArtifact(llvm::StringRef path, const ArtifactContents &contents,
                          const std::function<void(const std::string &)>
                              &progress = {},
                          uint64_t *bytesWritten = nullptr);

} // namespace xfmr

#endif // XFMR_LOWERING_ARTIFACT_ARTIFACTWRITER_H
