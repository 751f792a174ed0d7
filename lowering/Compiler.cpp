//===- Compiler.cpp - the compiler's narrow API -----------------*- C++ -*-===//

#include "lowering/Compiler.h"

#include "dialects/Xfmr/XfmrOps.h"
#include "import/Checkpoint.h"
#include "import/ExpectedTensors.h"
#include "import/Importer.h"
#include "import/ModelConfig.h"
#include "lowering/Artifact/ArtifactWriter.h"
#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Passes.h"
#include "passes/Passes.h"
#include "passes/Pipelines.h"
#include "xfmr/runtime/OutputFile.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <chrono>
#include <mutex>

using namespace llvm;
using namespace xfmr;

namespace {

/// Registers dialects, passes and pipelines once per process.
void registerEverything() {
  static std::once_flag once;
  std::call_once(once, [] {
    mlir::registerAllPasses();
    registerXfmrPasses();
    registerXfmrLoweringPasses();
    registerPipelines();
    registerCPUPipelines();
  });
}

/// A context with every dialect xfmr IR and its lowering use.
std::unique_ptr<mlir::MLIRContext> makeContext() {
  registerEverything();
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<XfmrDialect>();
  auto context = std::make_unique<mlir::MLIRContext>(registry);
  context->loadAllAvailableDialects();
  return context;
}

/// Collects diagnostics (with locations) into a string for error messages.
class DiagnosticCollector {
public:
  explicit DiagnosticCollector(mlir::MLIRContext *context)
      : handler(context, [this](mlir::Diagnostic &diag) {
          llvm::raw_string_ostream os(text);
          os << diag.getLocation() << ": " << diag << "\n";
          // Notes that dump the whole failing op are too long to help.
          for (mlir::Diagnostic &note : diag.getNotes())
            if (!StringRef(note.str()).starts_with("see current operation"))
              os << "  note: " << note << "\n";
          return mlir::success();
        }) {}
  const std::string &str() const { return text; }

private:
  std::string text;
  mlir::ScopedDiagnosticHandler handler;
};

class Stopwatch {
public:
  double seconds() const {
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

Expected<mlir::OwningOpRef<mlir::ModuleOp>>
parseModule(mlir::MLIRContext &context, std::unique_ptr<MemoryBuffer> buffer,
            const DiagnosticCollector &diagnostics, StringRef name) {
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(buffer), SMLoc());
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(sourceMgr, &context);
  if (!module)
    return createStringError("cannot parse '" + name + "':\n" +
                             diagnostics.str());
  return std::move(module);
}

std::string print(mlir::ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os);
  return text;
}

} // namespace

Error xfmr::compileModel(const CompileOptions &options,
                         const ProgressFn &progress) {
  Stopwatch clock;
  auto step = [&](const Twine &what) {
    if (progress)
      progress(formatv("[{0,6:f2}s] {1}", clock.seconds(), what.str()).str());
  };
  if (options.target != "cpu")
    return createStringError("target '" + options.target +
                             "' is not supported yet (supported: cpu)");
  if (options.context < 0)
    return createStringError("the context length must be positive, got " +
                             std::to_string(options.context));
  if (options.kvWindow < 0 || options.kvSinks < 0 ||
      (options.kvSinks > 0 && options.kvWindow == 0))
    return createStringError(
        "--kv-window must be positive and --kv-sinks non-negative (sinks "
        "need a window), got window " +
        std::to_string(options.kvWindow) + ", sinks " +
        std::to_string(options.kvSinks));
  if (!options.moe.empty() && options.moe != "sparse" &&
      options.moe != "sparse-prefill" && options.moe != "dense")
    return createStringError("unknown MoE evaluation '" + options.moe +
                             "' (expected sparse, sparse-prefill or dense)");
  // Before the expensive work: the output must be writable.
  if (std::string error = runtime::checkOutputPath(options.output);
      !error.empty())
    return createStringError(error);
  std::unique_ptr<mlir::MLIRContext> context = makeContext();
  DiagnosticCollector diagnostics(context.get());

  std::unique_ptr<Checkpoint> checkpoint;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  json::Object modelExtras;
  bool isMLIR = StringRef(options.model).ends_with(".mlir");
  std::string checkpointDir = isMLIR ? options.weights : options.model;
  if (!checkpointDir.empty()) {
    step("reading checkpoint " + checkpointDir);
    Expected<std::unique_ptr<Checkpoint>> opened =
        Checkpoint::open(checkpointDir);
    if (!opened)
      return opened.takeError();
    checkpoint = std::move(*opened);
    modelExtras = tokenIds(checkpoint->configPath());
  }
  if (isMLIR) {
    step("parsing " + options.model);
    ErrorOr<std::unique_ptr<MemoryBuffer>> file =
        MemoryBuffer::getFile(options.model);
    if (!file)
      return createStringError("cannot read '" + options.model +
                               "': " + file.getError().message());
    Expected<mlir::OwningOpRef<mlir::ModuleOp>> parsed =
        parseModule(*context, std::move(*file), diagnostics, options.model);
    if (!parsed)
      return parsed.takeError();
    module = std::move(*parsed);
  } else {
    Expected<ModelConfig> config = parseModelConfig(checkpoint->configPath());
    if (!config)
      return config.takeError();
    if (Error error = checkTensors(*config, *checkpoint))
      return error;
    step("importing " + config->archName + " (" + Twine(config->numLayers) +
         " layers, hidden " + Twine(config->hiddenSize) + ")");
    ImportOptions importOptions;
    importOptions.contextLength = options.context;
    Expected<mlir::OwningOpRef<mlir::ModuleOp>> imported =
        importModel(*context, *checkpoint, *config, importOptions);
    if (!imported)
      return createStringError(options.model + ": " +
                               toString(imported.takeError()));
    module = std::move(*imported);
  }
  if (mlir::failed(mlir::verify(*module)))
    return createStringError("the model IR does not verify:\n" +
                             diagnostics.str());

  CPUTarget target;
  target.cpu = options.cpu;
  target.optLevel = options.optLevel;
  if (Error error = resolveCPUTarget(target))
    return error;
  if (!options.quantize.empty() && options.quantize != "fp8")
    return createStringError("unknown quantization '" + options.quantize +
                             "' (supported: fp8)");
  mlir::PassManager pm(context.get());
  buildGraphOptPipeline(pm);
  if (!options.quantize.empty()) {
    std::string parseErrors;
    raw_string_ostream errorStream(parseErrors);
    std::string pass = "xfmr-quantize-fp8{" + options.quantizeOptions + "}";
    if (mlir::failed(mlir::parsePassPipeline(pass, pm, errorStream)))
      return createStringError("invalid quantization options '" +
                               options.quantizeOptions + "': " + parseErrors);
  }
  if (!options.mlaCache.empty() && options.mlaCache != "expanded" &&
      options.mlaCache != "latent")
    return createStringError("unknown MLA cache '" + options.mlaCache +
                             "' (expected expanded or latent)");
  if (!options.mlaAbsorb.empty() && options.mlaAbsorb != "runtime" &&
      options.mlaAbsorb != "compile-time")
    return createStringError("unknown MLA absorption '" + options.mlaAbsorb +
                             "' (expected runtime or compile-time)");
  if (options.mlaAbsorb == "compile-time" && options.mlaCache != "latent")
    return createStringError("--mla-absorb compile-time needs --mla-cache "
                             "latent (absorption is what the latent cache "
                             "does)");
  if (options.mlaCache == "latent")
    pm.addPass(
        createAbsorbMLA(AbsorbMLAOptions{options.mlaAbsorb == "compile-time"}));
  if (!options.kvCache.empty() || options.kvWindow > 0) {
    std::string parseErrors;
    raw_string_ostream errorStream(parseErrors);
    std::string element =
        options.kvCache.empty() ? std::string("f32") : options.kvCache;
    if (mlir::failed(mlir::parsePassPipeline(
            "xfmr-compress-kv-cache{element=" + element +
                " window=" + std::to_string(options.kvWindow) +
                " sinks=" + std::to_string(options.kvSinks) + "}",
            pm, errorStream)))
      return createStringError("invalid KV-cache type '" + options.kvCache +
                               "': " + parseErrors);
  }
  // The dense form is the importer's, untouched, for comparison.
  if (options.moe != "dense") {
    pm.addPass(createFuseSharedExperts());
    pm.addPass(createSparsifyMoE(SparsifyMoEOptions{
        options.moe == "sparse-prefill" ? "sparse" : "grouped"}));
  }
  buildCPULoweringPipeline(pm);
  step(options.quantize.empty()
           ? "lowering to kernels and LLVM IR"
           : "quantizing to FP8 (" +
                 (options.quantizeOptions.empty() ? std::string("defaults")
                                                  : options.quantizeOptions) +
                 "), lowering to kernels and LLVM IR");
  if (!options.dumpIRAfter.empty()) {
    context->disableMultithreading();
    std::string wanted = options.dumpIRAfter;
    pm.enableIRPrinting(
        [](mlir::Pass *, mlir::Operation *) { return false; },
        [wanted](mlir::Pass *pass, mlir::Operation *) {
          return wanted == "all" || pass->getArgument() == wanted;
        },
        /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false,
        /*printAfterOnlyOnFailure=*/false, errs());
  }
  if (mlir::failed(pm.run(*module)))
    return createStringError("lowering failed:\n" + diagnostics.str());
  // The code carries the sizes it is compiled for; the manifest repeats them.
  for (StringRef kind : {"prefill", "decode"})
    if (!module->lookupSymbol(("_mlir_ciface_" + kind).str()))
      return createStringError(
          "the model has no '" + kind.str() +
          "' entry point; an artifact needs both prefill and decode");
  Expected<ModelSizes> sizes = readModelSizes(*module);
  if (!sizes)
    return sizes.takeError();
  if (Error error =
          addModelInfo(*module, *sizes, target.cpuName, target.features))
    return error;

  step("generating code for " + target.triple + ", cpu " + target.cpuName +
       " (LLVM -O" + Twine(options.optLevel) + ")");
  Expected<std::string> object = emitObject(*module, target);
  if (!object)
    return object.takeError();
  step("linking");
  Expected<std::string> code = linkSharedObject(*object);
  if (!code)
    return code.takeError();

  step("packing " + options.output);
  ArtifactContents contents;
  contents.module = *module;
  contents.checkpoint = checkpoint.get();
  contents.code = std::move(*code);
  contents.sizes = *sizes;
  contents.target = json::Object{{"kind", "cpu"},
                                 {"triple", target.triple},
                                 {"cpu", target.cpuName},
                                 {"features", target.features}};
  contents.compileOptions = json::Object{
      {"target", options.target},
      {"cpu", options.cpu},
      {"opt_level", int64_t(options.optLevel)},
      {"context", options.context},
      {"quantize", options.quantize},
      {"mla_cache",
       options.mlaCache.empty() ? std::string("expanded") : options.mlaCache},
      {"kv_cache",
       options.kvCache.empty() ? std::string("f32") : options.kvCache},
      {"mla_absorb",
       options.mlaAbsorb.empty() ? std::string("runtime") : options.mlaAbsorb},
      {"kv_window", options.kvWindow},
      {"kv_sinks", options.kvSinks},
      {"moe", options.moe.empty() ? std::string("sparse") : options.moe},
      {"quantize_options", options.quantizeOptions}};
  contents.modelExtras = std::move(modelExtras);
  uint64_t size = 0;
  if (Error error = writeArtifact(
          options.output, contents,
          [&](const std::string &line) { step(line); }, &size))
    return error;
  step("wrote " + options.output + " (" + Twine(size >> 10) + " KiB) in " +
       formatv("{0:f1}", clock.seconds()).str() + " s");
  return Error::success();
}

Expected<std::string> xfmr::importCheckpointToText(const std::string &dir,
                                                   int64_t context) {
  std::unique_ptr<mlir::MLIRContext> mlirContext = makeContext();
  ImportOptions options;
  options.contextLength = context;
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> module =
      importCheckpoint(*mlirContext, dir, options);
  if (!module)
    return module.takeError();
  return print(**module);
}

Expected<std::string> xfmr::runPipeline(const std::string &ir,
                                        const std::string &pipeline) {
  std::unique_ptr<mlir::MLIRContext> context = makeContext();
  DiagnosticCollector diagnostics(context.get());
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> module = parseModule(
      *context, MemoryBuffer::getMemBufferCopy(ir, "<ir>"), diagnostics,
      "<ir>");
  if (!module)
    return module.takeError();
  // Accept "builtin.module(a,b)" as well as a bare "a,b".
  StringRef text = StringRef(pipeline).trim();
  if (text.consume_front("builtin.module(") && !text.consume_back(")"))
    return createStringError("unbalanced pass pipeline '" + pipeline + "'");
  mlir::PassManager pm(context.get());
  std::string parseErrors;
  raw_string_ostream errorStream(parseErrors);
  if (mlir::failed(mlir::parsePassPipeline(text, pm, errorStream)))
    return createStringError("invalid pass pipeline '" + pipeline +
                             "': " + parseErrors + diagnostics.str());
  if (mlir::failed(pm.run(**module)))
    return createStringError("pass pipeline '" + pipeline + "' failed:\n" +
                             diagnostics.str());
  return print(**module);
}

Expected<std::string> xfmr::roundTrip(const std::string &ir) {
  std::unique_ptr<mlir::MLIRContext> context = makeContext();
  DiagnosticCollector diagnostics(context.get());
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> module = parseModule(
      *context, MemoryBuffer::getMemBufferCopy(ir, "<ir>"), diagnostics,
      "<ir>");
  if (!module)
    return module.takeError();
  if (mlir::failed(mlir::verify(**module)))
    return createStringError("the IR does not verify:\n" + diagnostics.str());
  return print(**module);
}

std::vector<std::pair<std::string, std::string>> xfmr::listPasses() {
  std::vector<std::pair<std::string, std::string>> passes;
  std::unique_ptr<mlir::Pass> created[] = {
      createFuseSwiGLU(), createAnnotateModelStats(), createFuseSharedExperts(),
      createSparsifyMoE(), createLowerToKernels()};
  for (const std::unique_ptr<mlir::Pass> &pass : created)
    passes.emplace_back(pass->getArgument().str(),
                        pass->getDescription().str());
  passes.emplace_back("xfmr-graph-opt", kGraphOptDescription);
  passes.emplace_back("xfmr-lower-to-llvm", kLowerToLLVMDescription);
  passes.emplace_back("xfmr-cpu", kCPUPipelineDescription);
  return passes;
}
