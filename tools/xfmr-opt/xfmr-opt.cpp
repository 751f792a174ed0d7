//===- xfmr-opt.cpp - the xfmr optimizer driver -----------------*- C++ -*-===//
//
// mlir-opt with the xfmr dialect, passes and pipelines, plus the upstream
// dialects and passes the lowering uses. Unlike mlir-opt it follows the xfmr
// tools' rules: "xfmr-opt: error:" messages, exit code 2 for a bad command
// line and 1 for a failure, `--version` with xfmr's version, and -o written
// through runtime::OutputFile (atomically, never through a symlink).
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrDialect.h"
#include "import/ImportUtil.h"
#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Common/KernelTarget.h"
#include "lowering/Passes.h"
#include "passes/Passes.h"
#include "passes/Pipelines.h"
#include "tools/common/ToolSupport.h"
#include "xfmr/runtime/OutputFile.h"

#include "mlir/Debug/Counter.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace xfmr::tools;

static const char kTool[] = "xfmr-opt";

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<xfmr::XfmrDialect>();
  mlir::registerAllPasses();
  xfmr::registerXfmrPasses();
  xfmr::registerXfmrLoweringPasses();
  xfmr::registerKernelTargets();
  xfmr::registerCPUPipelines();
  xfmr::registerPipelines();

  // The options mlir-opt registers (mlir::registerAndParseCLIOptions), parsed
  // here so that a bad command line exits with 2.
  static cl::opt<std::string> inputFilename(
      cl::Positional, cl::desc("<input file>"), cl::init("-"));
  static cl::opt<std::string> outputFilename("o", cl::desc("Output filename"),
                                             cl::value_desc("filename"),
                                             cl::init("-"));
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();
  mlir::registerPassManagerCLOptions();
  mlir::registerDefaultTimingManagerCLOptions();
  mlir::tracing::DebugCounter::registerCLOptions();
  mlir::MlirOptMainConfig::registerCLOptions(registry);
  if (int exit = parseCommandLine(
          argc, argv,
          "xfmr optimizer driver: the xfmr dialect, its passes and "
          "pipelines, and upstream MLIR\n"))
    return exit;

  mlir::MlirOptMainConfig config =
      mlir::MlirOptMainConfig::createFromCLOptions();
  if (config.shouldShowDialects() || config.shouldListPasses())
    return mlir::asMainReturnCode(
        mlir::MlirOptMain(argc, argv, inputFilename, "-", registry));
  if (outputFilename != "-")
    if (std::string error = xfmr::runtime::checkOutputPath(outputFilename);
        !error.empty())
      return reportError(kTool, error);

  std::string message;
  std::unique_ptr<MemoryBuffer> input =
      mlir::openInputFile(inputFilename, &message);
  if (!input)
    return reportError(kTool, message);
  // MLIR's parser recurses per nesting level; refuse before the stack ends.
  if (xfmr::nestsDeeperThan(input->getBuffer(), xfmr::kMaxIRDepth, "([{<",
                            ")]}>"))
    return reportError(kTool, inputFilename + ": brackets nest deeper than " +
                                  Twine(xfmr::kMaxIRDepth) + " levels");
  std::string text;
  raw_string_ostream os(text);
  if (mlir::failed(mlir::MlirOptMain(os, std::move(input), registry, config)))
    return kExitFailure;
  if (outputFilename == "-") {
    outs() << text;
    return 0;
  }
  if (std::string error = xfmr::runtime::writeOutputFile(
          outputFilename, text.data(), text.size());
      !error.empty())
    return reportError(kTool, error);
  return 0;
}
