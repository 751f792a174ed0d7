//===- xfmr-compile.cpp - checkpoint or .mlir -> model.xfmr -----*- C++ -*-===//
//
// xfmr-compile MODEL -o model.xfmr [--target cpu] [--cpu NAME|native]
//              [--context N] [--weights DIR] [--dump-ir-after=PASS|all]
//
// MODEL is a Hugging Face checkpoint folder or an .mlir file of xfmr IR
// (whose weights come from --weights). Progress goes to stderr; the artifact
// is written atomically.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "import/Checkpoint.h"
#include "import/ExpectedTensors.h"
#include "import/Importer.h"
#include "import/ModelConfig.h"
#include "lowering/Artifact/ArtifactWriter.h"
#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Passes.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/WithColor.h"

#include <chrono>

using namespace llvm;

static cl::opt<std::string> modelPath(cl::Positional, cl::Required,
                                      cl::desc("<checkpoint folder | model.mlir>"));
static cl::opt<std::string> outputPath("o", cl::desc("Output artifact"),
                                       cl::value_desc("file"),
                                       cl::init("model.xfmr"));
static cl::opt<std::string> targetName("target",
                                       cl::desc("Target: cpu (default)"),
                                       cl::init("cpu"));
static cl::opt<std::string>
    cpuName("cpu",
            cl::desc("CPU to tune for: an LLVM CPU name, or 'native' for "
                     "this machine's CPU and features (default x86-64-v2)"),
            cl::init("x86-64-v2"));
static cl::opt<int64_t> contextLength(
    "context",
    cl::desc("KV-cache capacity in tokens (default: the model's "
             "max_position_embeddings)"),
    cl::init(0));
static cl::opt<std::string>
    weightsDir("weights",
               cl::desc("Checkpoint folder with the weights of an .mlir model"),
               cl::init(""));
static cl::opt<std::string> dumpIRAfter(
    "dump-ir-after",
    cl::desc("Print the IR to stderr after the named pass (or 'all')"),
    cl::init(""));
static cl::opt<unsigned> optLevel("O", cl::desc("LLVM optimization level"),
                                  cl::init(3), cl::Prefix);

namespace {

int fail(const Twine &message) {
  WithColor::error(errs(), "xfmr-compile") << message << "\n";
  return 1;
}

class Progress {
public:
  void step(const Twine &what) {
    double seconds = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - begin)
                         .count();
    errs() << format("xfmr-compile: [%6.2fs] ", seconds) << what << "\n";
  }
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         begin)
        .count();
  }

private:
  std::chrono::steady_clock::time_point begin =
      std::chrono::steady_clock::now();
};

/// bos/eos token ids from a checkpoint's config.json, when present.
json::Object tokenIds(StringRef configPath) {
  json::Object extras;
  ErrorOr<std::unique_ptr<MemoryBuffer>> file =
      MemoryBuffer::getFile(configPath);
  if (!file)
    return extras;
  Expected<json::Value> parsed = json::parse((*file)->getBuffer());
  if (!parsed) {
    consumeError(parsed.takeError());
    return extras;
  }
  if (const json::Object *object = parsed->getAsObject())
    for (StringRef key : {"bos_token_id", "eos_token_id"})
      if (std::optional<int64_t> id = object->getInteger(key))
        extras[key] = *id;
  return extras;
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(
      argc, argv, "xfmr-compile: compile a model into one artifact\n");
  if (targetName != "cpu")
    return fail("target '" + targetName +
                "' is not supported yet (supported: cpu)");
  if (contextLength < 0)
    return fail("--context must be positive, got " + Twine(contextLength));
  Progress progress;

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<xfmr::XfmrDialect>();
  mlir::MLIRContext context(registry);
  context.loadAllAvailableDialects();

  // Diagnostics become the error message (with the op's location).
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &diag) {
    llvm::raw_string_ostream os(diagnostics);
    os << diag.getLocation() << ": " << diag << "\n";
    // Notes that dump the whole failing op are too long to be useful here.
    for (mlir::Diagnostic &note : diag.getNotes())
      if (!StringRef(note.str()).starts_with("see current operation"))
        os << "  note: " << note << "\n";
    return mlir::success();
  });

  std::unique_ptr<xfmr::Checkpoint> checkpoint;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  json::Object modelExtras;
  bool isMLIR = StringRef(modelPath).ends_with(".mlir");
  std::string checkpointDir = isMLIR ? weightsDir : modelPath;
  if (!checkpointDir.empty()) {
    progress.step("reading checkpoint " + checkpointDir);
    Expected<std::unique_ptr<xfmr::Checkpoint>> opened =
        xfmr::Checkpoint::open(checkpointDir);
    if (!opened)
      return fail(toString(opened.takeError()));
    checkpoint = std::move(*opened);
    modelExtras = tokenIds(checkpoint->configPath());
  }
  if (isMLIR) {
    progress.step("parsing " + modelPath);
    llvm::SourceMgr sourceMgr;
    std::string includeError;
    ErrorOr<std::unique_ptr<MemoryBuffer>> file =
        MemoryBuffer::getFile(modelPath);
    if (!file)
      return fail("cannot read '" + modelPath + "': " +
                  file.getError().message());
    sourceMgr.AddNewSourceBuffer(std::move(*file), SMLoc());
    module = mlir::parseSourceFile<mlir::ModuleOp>(sourceMgr, &context);
    if (!module)
      return fail("cannot parse '" + modelPath + "':\n" + diagnostics);
  } else {
    Expected<xfmr::ModelConfig> config =
        xfmr::parseModelConfig(checkpoint->configPath());
    if (!config)
      return fail(toString(config.takeError()));
    if (Error error = xfmr::checkTensors(*config, *checkpoint))
      return fail(toString(std::move(error)));
    progress.step("importing " + config->archName + " (" +
                  Twine(config->numLayers) + " layers, hidden " +
                  Twine(config->hiddenSize) + ")");
    xfmr::ImportOptions options;
    options.contextLength = contextLength;
    Expected<mlir::OwningOpRef<mlir::ModuleOp>> imported =
        xfmr::importModel(context, *checkpoint, *config, options);
    if (!imported)
      return fail(modelPath + ": " + toString(imported.takeError()));
    module = std::move(*imported);
  }
  if (mlir::failed(mlir::verify(*module)))
    return fail("the model IR does not verify:\n" + diagnostics);

  // xfmr IR -> LLVM dialect.
  xfmr::CPUTarget target;
  target.cpu = cpuName;
  target.optLevel = optLevel;
  if (Error error = xfmr::resolveCPUTarget(target))
    return fail(toString(std::move(error)));
  progress.step("lowering to kernels and LLVM IR");
  mlir::PassManager pm(&context);
  xfmr::buildCPUPipeline(pm);
  if (!dumpIRAfter.empty()) {
    context.disableMultithreading();
    std::string wanted = dumpIRAfter;
    pm.enableIRPrinting(
        [](mlir::Pass *, mlir::Operation *) { return false; },
        [wanted](mlir::Pass *pass, mlir::Operation *) {
          return wanted == "all" || pass->getArgument() == wanted;
        },
        /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false,
        /*printAfterOnlyOnFailure=*/false, errs());
  }
  // Keep the layouts: the LLVM lowering leaves module attributes alone.
  if (mlir::failed(pm.run(*module)))
    return fail("lowering failed:\n" + diagnostics);

  progress.step("generating code for " + target.triple + ", cpu " +
                target.cpuName + " (LLVM -O" + Twine(optLevel) + ")");
  Expected<std::string> object = xfmr::emitObject(*module, target);
  if (!object)
    return fail(toString(object.takeError()));
  progress.step("linking");
  Expected<std::string> code = xfmr::linkSharedObject(*object);
  if (!code)
    return fail(toString(code.takeError()));

  progress.step("packing " + outputPath);
  xfmr::ArtifactContents contents;
  contents.module = *module;
  contents.checkpoint = checkpoint.get();
  contents.code = std::move(*code);
  contents.target = json::Object{{"kind", "cpu"},
                                 {"triple", target.triple},
                                 {"cpu", target.cpuName},
                                 {"features", target.features}};
  contents.compileOptions =
      json::Object{{"target", std::string(targetName)},
                   {"cpu", std::string(cpuName)},
                   {"opt_level", int64_t(optLevel)},
                   {"context", int64_t(contextLength)}};
  contents.modelExtras = std::move(modelExtras);
  if (Error error = xfmr::writeArtifact(
          outputPath, contents,
          [&](const std::string &line) { progress.step(line); }))
    return fail(toString(std::move(error)));
  uint64_t size = 0;
  sys::fs::file_size(outputPath, size);
  char seconds[32];
  snprintf(seconds, sizeof(seconds), "%.1f", progress.elapsed());
  progress.step("wrote " + outputPath + " (" + Twine(size >> 10) +
                " KiB) in " + seconds + " s");
  return 0;
}
