//===- Pipelines.h - named xfmr pass pipelines ------------------*- C++ -*-===//

#ifndef XFMR_PASSES_PIPELINES_H
#define XFMR_PASSES_PIPELINES_H

#include "mlir/Pass/PassManager.h"

namespace xfmr {

/// One-line descriptions of the named pipelines (for --help and listings).
inline constexpr const char *kGraphOptDescription =
    "Graph-level clean-up and fusion of xfmr IR (canonicalize, "
    "xfmr-fuse-swiglu, cse, xfmr-annotate-model-stats)";

/// Graph-level clean-up and fusion on xfmr IR: canonicalize, fuse SwiGLU,
/// CSE, and record model statistics.
void buildGraphOptPipeline(mlir::OpPassManager &pm);

/// A named pipeline: what `xfmr-opt --NAME` and `--pass-pipeline` run.
struct NamedPipeline {
  const char *name;
  const char *description;
  void (*build)(mlir::OpPassManager &);
};

/// The graph-level named pipelines (`xfmr-graph-opt`).
llvm::ArrayRef<NamedPipeline> graphPipelines();

/// Registers `pipelines` with MLIR's pass registry.
void registerNamedPipelines(llvm::ArrayRef<NamedPipeline> pipelines);

/// Registers the graph-level pipelines (graphPipelines()) so that
/// `xfmr-opt --pass-pipeline` and `--help` know them.
void registerPipelines();

} // namespace xfmr

#endif // XFMR_PASSES_PIPELINES_H
