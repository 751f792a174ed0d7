//===- xfmr-opt.cpp - the xfmr optimizer driver -----------------*- C++ -*-===//
//
// mlir-opt with the xfmr dialect, passes and pipelines, plus the upstream
// dialects and passes the lowering uses.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrDialect.h"
#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Passes.h"
#include "passes/Passes.h"
#include "passes/Pipelines.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<xfmr::XfmrDialect>();
  mlir::registerAllPasses();
  xfmr::registerXfmrPasses();
  xfmr::registerXfmrLoweringPasses();
  xfmr::registerCPUPipelines();
  xfmr::registerPipelines();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "xfmr optimizer driver: the xfmr dialect, its passes and "
                  "pipelines, and upstream MLIR\n",
      registry));
}
