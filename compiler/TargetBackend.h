//===- TargetBackend.h - one compile target of the driver -------*- C++ -*-===//
//
// The compile driver runs the target-neutral part (import, graph passes,
// quantization, KV-cache and MoE rewrites) and hands the module to the back
// end named by --target: it sets the module's #xfmr.target, owns the passes
// from there to code (xfmr-plan-memory, xfmr-lower-to-kernels and its own
// lowering), generates the code and describes it in the artifact's
// manifest. Back ends register by name, so an unknown --target is reported
// in one place.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_COMPILER_TARGETBACKEND_H
#define XFMR_COMPILER_TARGETBACKEND_H

#include "compiler/Compiler.h"
#include "dialects/Xfmr/XfmrOps.h"
#include "lowering/Artifact/ModelInfo.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace xfmr {

/// What a back end produced for the artifact.
struct TargetCode {
  /// The code section (the CPU: a shared object).
  std::string code;
  /// The manifest's "target" object (kind, triple, chip, features, ...).
  llvm::json::Object manifest;
};

class TargetBackend {
public:
  virtual ~TargetBackend();

  /// Checks and resolves the options this target reads (the CPU: --cpu,
  /// --opt-level), without reading the model. Errors are usage errors
  /// (std::errc::invalid_argument).
  virtual llvm::Error configure(const CompileOptions &options) = 0;

  /// The module's #xfmr.target, after configure().
  virtual TargetAttr getTarget(mlir::MLIRContext *context) const = 0;

  /// Appends the passes from optimized xfmr IR to what generateCode takes.
  virtual void buildLoweringPipeline(mlir::OpPassManager &pm) const = 0;

  /// One line for the progress output ("code for x86_64-..., cpu znver4").
  virtual std::string describe() const = 0;

  /// Generates the code of a lowered module. `step` reports progress.
  virtual llvm::Expected<TargetCode>
  generateCode(mlir::ModuleOp module, const ModelSizes &sizes,
               const ProgressFn &step) = 0;
};

/// The back end of a --target value ("cpu"; later "cuda:sm_90a", ...: the
/// name before ':' picks the back end, the rest is its to read). An unknown
/// name is an invalid_argument error listing the supported ones.
llvm::Expected<std::unique_ptr<TargetBackend>>
createTargetBackend(llvm::StringRef target);

/// The registered back-end names, sorted.
std::vector<std::string> targetBackendNames();

using TargetBackendFactory =
    std::function<std::unique_ptr<TargetBackend>(llvm::StringRef target)>;
/// Registers a back end under `name`.
void registerTargetBackend(llvm::StringRef name, TargetBackendFactory factory);

/// Registers every back end of this build. Idempotent.
void registerTargetBackends();

/// The CPU back end (compiler/CPUBackend.cpp).
void registerCPUBackend();
/// The GPU back ends: cuda, rocm, vulkan (compiler/GPUBackend.cpp).
void registerGPUBackends();

} // namespace xfmr

#endif // XFMR_COMPILER_TARGETBACKEND_H
