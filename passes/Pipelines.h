//===- Pipelines.h - named xfmr pass pipelines ------------------*- C++ -*-===//

#ifndef XFMR_PASSES_PIPELINES_H
#define XFMR_PASSES_PIPELINES_H

#include "mlir/Pass/PassManager.h"

namespace xfmr {

/// Graph-level clean-up and fusion on xfmr IR: canonicalize, fuse SwiGLU,
/// CSE, and record model statistics.
void buildGraphOptPipeline(mlir::OpPassManager &pm);

/// Registers every named xfmr pipeline (`xfmr-graph-opt`, ...) so that
/// `xfmr-opt --pass-pipeline` and `--help` know them.
void registerPipelines();

} // namespace xfmr

#endif // XFMR_PASSES_PIPELINES_H
