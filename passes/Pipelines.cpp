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

llvm::ArrayRef<xfmr::NamedPipeline> xfmr::graphPipelines() {
  static const NamedPipeline pipelines[] = {
      {"xfmr-graph-opt", kGraphOptDescription, buildGraphOptPipeline}};
  return pipelines;
}

void xfmr::registerNamedPipelines(llvm::ArrayRef<NamedPipeline> pipelines) {
  for (const NamedPipeline &pipeline : pipelines)
    PassPipelineRegistration<>(pipeline.name, pipeline.description,
                               pipeline.build);
}

void xfmr::registerPipelines() { registerNamedPipelines(graphPipelines()); }
