//===- Importer.h - Hugging Face checkpoint -> xfmr IR ----------*- C++ -*-===//
//
// Builds xfmr IR for a validated checkpoint: a module with a `prefill` and a
// `decode` entry function whose weights are `xfmr.weight` references to the
// checkpoint's tensors by name.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_IMPORT_IMPORTER_H
#define XFMR_IMPORT_IMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/Error.h"

namespace xfmr {

class Checkpoint;
struct ModelConfig;

/// The largest KV-cache capacity (context length) xfmr compiles: the
/// runtime's positions are int32.
inline constexpr int64_t kMaxContextLength = 2147483647;

struct ImportOptions {
  /// KV-cache capacity in tokens; 0 takes the model's
  /// max_position_embeddings.
  int64_t contextLength = 0;
  /// Also validate the DeepSeek-V3 multi-token-prediction layers.
  bool includeMTP = false;
};

/// Builds the module for `checkpoint`, whose tensors must already have passed
/// checkTensors(config, checkpoint). Fails with a message naming the tensor
/// or setting that cannot be expressed.
llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
importModel(mlir::MLIRContext &context, const Checkpoint &checkpoint,
            const ModelConfig &config, const ImportOptions &options);

/// Opens the checkpoint folder `dir`, parses and validates its config and
/// tensors, builds the module and verifies it.
llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
importCheckpoint(mlir::MLIRContext &context, llvm::StringRef dir,
                 const ImportOptions &options);

} // namespace xfmr

#endif // XFMR_IMPORT_IMPORTER_H
