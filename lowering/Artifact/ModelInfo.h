//===- ModelInfo.h - the sizes the code is compiled for ---------*- C++ -*-===//
//
// An artifact's manifest describes the model for the runtime, but the code
// has the sizes baked in: a manifest that claims a larger vocabulary, cache
// or context than the code was compiled for makes the runtime hand the code
// buffers of the wrong size. So the code exports the sizes itself
// (`xfmr_model_info`, artifact::ModelInfo), the manifest is written from the
// same numbers, and the runtime refuses an artifact where they disagree.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_ARTIFACT_MODELINFO_H
#define XFMR_LOWERING_ARTIFACT_MODELINFO_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

#include <cstdint>

namespace xfmr {

/// The integer `name` of `dict` (0 when absent): the layout attributes'
/// fields.
int64_t intAttr(mlir::DictionaryAttr dict, llvm::StringRef name);

/// What the code is compiled for (see artifact::ModelInfo).
struct ModelSizes {
  int64_t vocabSize = 0;
  /// Positions a session may reach: the smallest cache capacity (INT32_MAX
  /// for an evicting cache, which bounds memory, not positions).
  int64_t contextLength = 0;
  int64_t kvCacheBytes = 0;
  int64_t weightsBytes = 0;
  int64_t kvWindow = 0;
  int64_t kvSinks = 0;
};

/// Reads the sizes from a module after xfmr-plan-memory (its xfmr.model and
/// xfmr.memory_plan attributes).
llvm::Expected<ModelSizes> readModelSizes(mlir::ModuleOp module);

/// Adds the constant `xfmr_model_info` (artifact::ModelInfo: ABI version,
/// `sizes`, pointers to the prefill and decode entry points, the target CPU
/// and features) to a module in the LLVM dialect. Fails when an entry point
/// is missing.
llvm::Error addModelInfo(mlir::ModuleOp module, const ModelSizes &sizes,
                         llvm::StringRef cpu, llvm::StringRef features);

} // namespace xfmr

#endif // XFMR_LOWERING_ARTIFACT_MODELINFO_H
