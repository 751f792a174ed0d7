//===- xfmr-import.cpp - Hugging Face checkpoint -> xfmr IR -----*- C++ -*-===//
//
// xfmr-import MODEL_DIR [-o model.mlir] [--context N] [--mtp]
//
// Validates the checkpoint (config, tensor names, shapes and dtypes) and
// writes the xfmr IR of its prefill and decode functions. The output file is
// written atomically: on any error nothing is left behind.
//
//===----------------------------------------------------------------------===//

#include "import/Importer.h"
#include "xfmr/runtime/OutputFile.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;

static cl::opt<std::string> modelDir(cl::Positional, cl::Required,
                                     cl::desc("<checkpoint folder>"));
static cl::opt<std::string> outputPath("o", cl::desc("Output .mlir file"),
                                       cl::value_desc("file"),
                                       cl::init("-"));
static cl::opt<int64_t>
    contextLength("context",
                  cl::desc("KV-cache capacity in tokens (default: the "
                           "model's max_position_embeddings)"),
                  cl::init(0));
static cl::opt<bool> includeMTP(
    "mtp", cl::desc("Also validate DeepSeek-V3 multi-token-prediction layers"),
    cl::init(false));

static int fail(const Twine &message) {
  WithColor::error(errs(), "xfmr-import") << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(
      argc, argv,
      "xfmr-import: Hugging Face checkpoint folder -> xfmr IR\n");
  if (contextLength < 0)
    return fail("--context must be positive, got " + Twine(contextLength));

  if (outputPath != "-") {
    if (std::string error = xfmr::runtime::checkOutputPath(outputPath);
        !error.empty())
      return fail(error);
    xfmr::runtime::removeOutputsOnSignals(/*onlyDefault=*/false);
  }

  mlir::MLIRContext context;
  xfmr::ImportOptions options;
  options.contextLength = contextLength;
  options.includeMTP = includeMTP;
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> module =
      xfmr::importCheckpoint(context, modelDir, options);
  if (!module)
    return fail(toString(module.takeError()));

  if (outputPath == "-") {
    (*module)->print(outs());
    return 0;
  }
  std::string text;
  {
    raw_string_ostream os(text);
    (*module)->print(os);
  }
  xfmr::runtime::OutputFile output;
  if (std::string error = output.open(outputPath); !error.empty())
    return fail(error);
  if (std::string error = output.write(text.data(), text.size());
      !error.empty())
    return fail(error);
  if (std::string error = output.commit(); !error.empty())
    return fail(error);
  errs() << "xfmr-import: wrote " << outputPath << "\n";
  return 0;
}
