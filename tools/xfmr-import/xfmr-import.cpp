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
  // ToolOutputFile deletes the file unless keep() is called; write to a
  // temporary name and rename so a reader never sees half a file.
  std::string tempPath = outputPath + ".tmp";
  std::error_code ec;
  {
    ToolOutputFile output(tempPath, ec, sys::fs::OF_Text);
    if (ec)
      return fail("cannot write '" + tempPath + "': " + ec.message());
    (*module)->print(output.os());
    output.os().flush();
    if (output.os().has_error())
      return fail("error writing '" + tempPath + "'");
    output.keep();
  }
  if ((ec = sys::fs::rename(tempPath, outputPath))) {
    sys::fs::remove(tempPath);
    return fail("cannot write '" + outputPath + "': " + ec.message());
  }
  errs() << "xfmr-import: wrote " << outputPath << "\n";
  return 0;
}
