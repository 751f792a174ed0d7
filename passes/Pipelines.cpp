//===- Pipelines.cpp - named xfmr pass pipelines ----------------*- C++ -*-===//

#include "passes/Pipelines.h"
#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void xfmr::buildGraphOptPipeline(OpPassManager &pm) {
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createFuseSwiGLU());
  pm.addPass(createCSEPass());
  pm.addPass(createAnnotateModelStats());
}

void xfmr::registerPipelines() {
  PassPipelineRegistration<>(
      "xfmr-graph-opt", kGraphOptDescription, buildGraphOptPipeline);
}
