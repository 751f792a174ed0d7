//===- xfmr-import.cpp - Hugging Face checkpoint -> xfmr IR -----*- C++ -*-===//
//
// xfmr-import MODEL_DIR [-o model.mlir] [--context N] [--mtp]
//
// Validates the checkpoint (config, tensor names, shapes and dtypes) and
// writes the xfmr IR of its prefill and decode functions to stdout, or to
// -o FILE through runtime::OutputFile (atomically; on any error nothing is
// left behind). Exit codes: 0 ok, 1 bad checkpoint, 2 bad command line.
//
//===----------------------------------------------------------------------===//

#include "import/Importer.h"
#include "tools/common/ToolSupport.h"
#include "xfmr/runtime/OutputFile.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace xfmr::tools;

static const char kTool[] = "xfmr-import";

static cl::OptionCategory importOptions("xfmr-import options");

static cl::opt<std::string> modelDir(cl::Positional,
                                     cl::desc("<checkpoint folder>"),
                                     cl::cat(importOptions));
static cl::opt<std::string>
    outputPath("o", cl::desc("Output .mlir file (default: stdout)"),
               cl::value_desc("file"), cl::init("-"), cl::cat(importOptions));
static cl::opt<int64_t> contextLength(
    "context",
    cl::desc("KV-cache capacity in tokens, at most 2147483647 (default: the "
             "model's max_position_embeddings)"),
    cl::value_desc("N"), cl::init(0), cl::cat(importOptions));
static cl::opt<bool> includeMTP(
    "mtp", cl::desc("Also import DeepSeek-V3 multi-token-prediction layers"),
    cl::init(false), cl::cat(importOptions));

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  if (int exit = parseCommandLine(
          argc, argv,
          "xfmr-import: Hugging Face checkpoint folder -> xfmr IR\n",
          {&importOptions}))
    return exit;
  if (modelDir.empty())
    return usageError(kTool, "no checkpoint folder given");
  if (contextLength < 0 || contextLength > xfmr::kMaxContextLength)
    return usageError(kTool, "--context must be in [0, " +
                                 Twine(xfmr::kMaxContextLength) + "], got " +
                                 Twine(contextLength));
  if (outputPath != "-") {
    if (std::string error = xfmr::runtime::checkOutputPath(outputPath);
        !error.empty())
      return reportError(kTool, error);
    xfmr::runtime::removeOutputsOnSignals(/*onlyDefault=*/false);
  }

  mlir::MLIRContext context;
  xfmr::ImportOptions options;
  options.contextLength = contextLength;
  options.includeMTP = includeMTP;
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> module =
      xfmr::importCheckpoint(context, modelDir, options);
  if (!module)
    return reportError(kTool, module.takeError());

  if (outputPath == "-") {
    (*module)->print(outs());
    return 0;
  }
  std::string text;
  {
    raw_string_ostream os(text);
    (*module)->print(os);
  }
  if (std::string error =
          xfmr::runtime::writeOutputFile(outputPath, text.data(), text.size());
      !error.empty())
    return reportError(kTool, error);
  errs() << kTool << ": wrote " << outputPath << "\n";
  return 0;
}
