//===- Compiler.cpp - the compiler's narrow API -----------------*- C++ -*-===//

#include "compiler/Compiler.h"
#include "compiler/TokenizerFiles.h"
#include "compiler/TargetBackend.h"

#include "dialects/Xfmr/XfmrOps.h"
#include "import/Checkpoint.h"
#include "import/ExpectedTensors.h"
#include "import/ImportUtil.h"
#include "import/Importer.h"
#include "import/ModelConfig.h"
#include "lowering/Artifact/ArtifactWriter.h"
#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Common/KernelTarget.h"
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
    registerKernelTargets();
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
  // Errors are reported by the config reader (this runs before it).
  Expected<json::Value> parsed = readJsonFile(configPath);
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
  // MLIR's parser recurses per nesting level: refuse what would exhaust the
  // stack instead of crashing.
  if (nestsDeeperThan(buffer->getBuffer(), kMaxIRDepth, "([{<", ")]}>"))
    return createStringError("cannot parse '" + name +
                             "': brackets nest deeper than " +
                             Twine(kMaxIRDepth) + " levels");
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

namespace {

/// A bad option: std::errc::invalid_argument marks it for the tools (exit
/// code 2) and Python (InvalidArgumentError).
Error invalidOption(const Twine &message) {
  return createStringError(std::make_error_code(std::errc::invalid_argument),
                           message);
}

/// `value` must be "" or one of `allowed`.
Error checkChoice(StringRef option, StringRef value,
                  ArrayRef<StringRef> allowed) {
  if (value.empty() || llvm::is_contained(allowed, value))
    return Error::success();
  return invalidOption("unknown " + option + " '" + value + "' (expected " +
                       llvm::join(allowed, ", ") + ")");
}

/// The pass names (flags) of a pipeline, from its textual form.
std::vector<std::string> passNames(mlir::OpPassManager &pm) {
  std::string text;
  raw_string_ostream os(text);
  pm.printAsTextualPipeline(os);
  std::vector<std::string> names;
  int braces = 0;
  std::string word;
  for (char c : text + ",") {
    if (c == '{')
      ++braces;
    if (braces == 0 && (isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                        c == '_' || c == '.')) {
      word += c;
      continue;
    }
    if (!word.empty() && word != "builtin.module" && word != "func.func" &&
        word != "any" && !llvm::is_contained(names, word))
      names.push_back(word);
    word.clear();
    if (c == '}')
      --braces;
  }
  return names;
}

} // namespace

/// The back ends of --target: one, or a comma list ("cpu,cuda:sm_90,vulkan")
/// for an artifact that holds code for each, each configured.
static Expected<std::vector<std::unique_ptr<TargetBackend>>>
createBackends(const CompileOptions &options) {
  SmallVector<StringRef> names;
  StringRef(options.target).split(names, ',');
  std::vector<std::unique_ptr<TargetBackend>> backends;
  std::vector<std::string> seen;
  bool cpuOnly = llvm::all_of(names, [](StringRef name) {
    return name.trim().split(':').first == "cpu";
  });
  for (StringRef name : names) {
    name = name.trim();
    if (name.empty())
      return createStringError(
          std::make_error_code(std::errc::invalid_argument),
          "--target '" + options.target + "' has an empty entry");
    std::string kind = name.split(':').first.str();
    if (llvm::is_contained(seen, kind))
      return createStringError(
          std::make_error_code(std::errc::invalid_argument),
          "--target '" + options.target + "' names '" + kind +
              "' twice (one artifact holds one code per target kind)");
    seen.push_back(kind);
    // CPU code comes in one variant per --cpu entry; other targets' host
    // code is built once, for the last (most widely runnable) entry.
    SmallVector<StringRef> cpus;
    StringRef(options.cpu).split(cpus, ',');
    std::vector<std::string> described;
    for (StringRef cpu : cpus) {
      cpu = cpu.trim();
      if (cpu.empty() && cpus.size() > 1)
        return createStringError(
            std::make_error_code(std::errc::invalid_argument),
            "--cpu '" + options.cpu + "' has an empty entry");
      if (kind != "cpu" && cpu != cpus.back().trim())
        continue;
      Expected<std::unique_ptr<TargetBackend>> backend =
          createTargetBackend(name);
      if (!backend)
        return backend.takeError();
      CompileOptions one = options;
      one.target = name.str();
      one.cpu = cpu.str();
      one.cpuOnly = cpuOnly;
      if (Error error = (*backend)->configure(one))
        return std::move(error);
      // "native" may be a CPU the list names too: one variant is enough.
      std::string description = (*backend)->describe();
      if (llvm::is_contained(described, description))
        continue;
      described.push_back(description);
      backends.push_back(std::move(*backend));
    }
  }
  return backends;
}

Error xfmr::validateCompileOptions(const CompileOptions &options) {
  if (options.model.empty())
    return invalidOption("no model given (a checkpoint folder or an .mlir "
                         "file)");
  if (options.output.empty())
    return invalidOption("no output file given (-o FILE)");
  if (options.context < 0 || options.context > kMaxContextLength)
    return invalidOption("the context length must be in [0, " +
                         Twine(kMaxContextLength) +
                         "] (0: the model's max_position_embeddings), got " +
                         Twine(options.context));
  if (options.optLevel > 3)
    return invalidOption("the optimization level must be 0, 1, 2 or 3, got " +
                         Twine(options.optLevel));
  if (Error error = checkChoice("quantization", options.quantize,
                                {"fp8", "int8", "int4"}))
    return error;
  if (!options.quantizeOptions.empty() && options.quantize.empty())
    return invalidOption("quantization options need quantization fp8, int8 "
                         "or int4");
  // Int4 weights are stored in the CPU's panels only (see
  // xfmr-quantize-int4): an artifact with GPU code has none.
  if (options.quantize == "int4")
    for (StringRef name : llvm::split(options.target, ','))
      if (name.trim().split(':').first != "cpu")
        return invalidOption("--quantize int4 is for CPU targets only (the "
                             "CPU's kernels read int4 weights), but the "
                             "targets include '" +
                             name.trim() + "'; use int8 or fp8 there");
  if (Error error = checkChoice("KV-cache type", options.kvCache,
                                {"f32", "bf16", "f16", "fp8", "int8"}))
    return error;
  if (Error error =
          checkChoice("MLA cache", options.mlaCache, {"expanded", "latent"}))
    return error;
  if (Error error = checkChoice("MLA absorption", options.mlaAbsorb,
                                {"runtime", "compile-time"}))
    return error;
  if (options.mlaAbsorb == "compile-time" && options.mlaCache != "latent")
    return invalidOption("--mla-absorb compile-time needs --mla-cache "
                         "latent (absorption is what the latent cache "
                         "does)");
  if (Error error = checkChoice("MoE evaluation", options.moe,
                                {"sparse", "sparse-prefill", "dense"}))
    return error;
  if (options.kvWindow < 0 || options.kvWindow > INT32_MAX ||
      options.kvSinks < 0 || options.kvSinks > INT32_MAX ||
      (options.kvSinks > 0 && options.kvWindow == 0))
    return invalidOption(
        "--kv-window must be positive and --kv-sinks non-negative (sinks "
        "need a window), both at most 2147483647, got window " +
        Twine(options.kvWindow) + ", sinks " + Twine(options.kvSinks));
  if (!options.weights.empty() &&
      !StringRef(options.model).ends_with(".mlir"))
    return invalidOption("--weights is only used with an .mlir model (a "
                         "checkpoint folder holds its own weights)");
  // The targets' own options (the CPU name, without printing LLVM's own
  // warning).
  Expected<std::vector<std::unique_ptr<TargetBackend>>> backends =
      createBackends(options);
  return backends ? Error::success() : backends.takeError();
}

Error xfmr::compileModel(const CompileOptions &options,
                         const ProgressFn &progress,
                         const ProgressFn &warning) {
  Stopwatch clock;
  auto step = [&](const Twine &what) {
    if (progress)
      progress(formatv("[{0,6:f2}s] {1}", clock.seconds(), what.str()).str());
  };
  auto warn = [&](const Twine &what) {
    if (warning)
      warning(what.str());
  };
  // Every option, then the output, before any expensive work.
  if (Error error = validateCompileOptions(options))
    return error;
  if (std::string error = runtime::checkOutputPath(options.output);
      !error.empty())
    return createStringError(error);
  std::unique_ptr<mlir::MLIRContext> context = makeContext();
  DiagnosticCollector diagnostics(context.get());

  Expected<std::vector<std::unique_ptr<TargetBackend>>> created =
      createBackends(options);
  if (!created)
    return created.takeError();
  std::vector<std::unique_ptr<TargetBackend>> backends = std::move(*created);
  mlir::PassManager pm(context.get());
  buildGraphOptPipeline(pm);
  if (!options.quantize.empty()) {
    std::string parseErrors;
    raw_string_ostream errorStream(parseErrors);
    std::string pass = "xfmr-quantize-" + options.quantize + "{" +
                       options.quantizeOptions + "}";
    if (mlir::failed(mlir::parsePassPipeline(pass, pm, errorStream)))
      return invalidOption("invalid quantization options '" +
                           options.quantizeOptions + "': " + parseErrors);
  }
  if (options.mlaCache == "latent")
    pm.addPass(
        createAbsorbMLA(AbsorbMLAOptions{options.mlaAbsorb == "compile-time"}));
  std::string kvCache = options.kvCache == "f32" ? "" : options.kvCache;
  if (!kvCache.empty() || options.kvWindow > 0) {
    std::string parseErrors;
    raw_string_ostream errorStream(parseErrors);
    std::string element = kvCache.empty() ? std::string("f32") : kvCache;
    if (mlir::failed(mlir::parsePassPipeline(
            "xfmr-compress-kv-cache{element=" + element +
                " window=" + std::to_string(options.kvWindow) +
                " sinks=" + std::to_string(options.kvSinks) + "}",
            pm, errorStream)))
      return invalidOption("invalid KV-cache options: " + parseErrors);
  }
  // The dense form is the importer's, untouched, for comparison.
  if (options.moe != "dense") {
    pm.addPass(createFuseSharedExperts());
    pm.addPass(createSparsifyMoE(SparsifyMoEOptions{
        options.moe == "sparse-prefill" ? "sparse" : "grouped"}));
  }
  // Everything above is target-neutral and runs once; each target lowers
  // its own copy of the result.
  std::vector<std::unique_ptr<mlir::PassManager>> lowering;
  for (const std::unique_ptr<TargetBackend> &backend : backends) {
    lowering.push_back(std::make_unique<mlir::PassManager>(context.get()));
    backend->buildLoweringPipeline(*lowering.back());
  }
  if (!options.dumpIRAfter.empty() && options.dumpIRAfter != "all") {
    std::vector<std::string> names = passNames(pm);
    for (const std::unique_ptr<mlir::PassManager> &target : lowering)
      for (std::string &name : passNames(*target))
        if (!llvm::is_contained(names, name))
          names.push_back(std::move(name));
    if (!llvm::is_contained(names, options.dumpIRAfter))
      return invalidOption("--dump-ir-after: '" + options.dumpIRAfter +
                           "' is not a pass of this compilation; use 'all' "
                           "or one of: " +
                           llvm::join(names, ", "));
  }

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
  // The tokenizer travels in the artifact: --tokenizer's, or the checkpoint
  // folder's when it has one.
  TokenizerFiles tokenizerFiles;
  std::string tokenizerPath =
      options.tokenizer.empty() ? checkpointDir : options.tokenizer;
  if (!tokenizerPath.empty()) {
    Expected<TokenizerFiles> read =
        readTokenizerFiles(tokenizerPath, !options.tokenizer.empty());
    if (!read)
      return read.takeError();
    tokenizerFiles = std::move(*read);
    if (tokenizerFiles.vocabSize > 0)
      step("tokenizer " + tokenizerFiles.description);
  }
  if (isMLIR) {
    step("parsing " + options.model);
    if (Error error = checkRegularFile(options.model))
      return error;
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
    if (config->maxPositions > 0 && options.context > config->maxPositions)
      warn("--context " + Twine(options.context) +
           " exceeds the model's max_position_embeddings (" +
           Twine(config->maxPositions) +
           "): positions past it were never trained and its RoPE may not "
           "extrapolate");
    ImportOptions importOptions;
    importOptions.contextLength = options.context;
    Expected<mlir::OwningOpRef<mlir::ModuleOp>> imported =
        importModel(*context, *checkpoint, *config, importOptions);
    if (!imported)
      return createStringError(options.model + ": " +
                               toString(imported.takeError()));
    module = std::move(*imported);
  }
  // What the code is compiled for, for the passes that pick kernels.
  (*module)->setAttr(kTargetAttrName, backends.front()->getTarget(context.get()));
  if (mlir::failed(mlir::verify(*module)))
    return createStringError("the model IR does not verify:\n" +
                             diagnostics.str());
  // Options that only some models have a use for: an error (MLA, which the
  // user chose for its memory) or a warning, never silently nothing.
  bool hasMLA = false, hasMoE = false;
  module->walk([&](mlir::Operation *op) {
    hasMLA |= isa<MLAAttentionOp, MLALatentAttentionOp>(op);
    hasMoE |= isa<MoEExpertsOp>(op);
  });
  if (!options.mlaCache.empty() && options.mlaCache != "expanded" && !hasMLA)
    return invalidOption("--mla-cache " + options.mlaCache +
                         ": the model has no multi-head latent attention "
                         "(MLA, as in DeepSeek-V2/V3); its KV cache is set "
                         "with --kv-cache");
  if (!options.moe.empty() && !hasMoE)
    warn("--moe " + options.moe +
         ": the model has no Mixture-of-Experts layers; the option has no "
         "effect");

  step(options.quantize.empty()
           ? "lowering to kernels and LLVM IR"
           : "quantizing to " +
                 std::string(options.quantize == "fp8" ? "FP8"
                                                       : options.quantize) +
                 " (" +
                 (options.quantizeOptions.empty() ? std::string("defaults")
                                                  : options.quantizeOptions) +
                 "), lowering to kernels and LLVM IR");
  if (!options.dumpIRAfter.empty()) {
    context->disableMultithreading();
    std::string wanted = options.dumpIRAfter;
    for (mlir::PassManager *manager : [&] {
           std::vector<mlir::PassManager *> all{&pm};
           for (auto &target : lowering)
             all.push_back(target.get());
           return all;
         }())
      manager->enableIRPrinting(
          [](mlir::Pass *, mlir::Operation *) { return false; },
          [wanted](mlir::Pass *pass, mlir::Operation *) {
            return wanted == "all" || pass->getArgument() == wanted;
          },
          /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false,
          /*printAfterOnlyOnFailure=*/false, errs());
  }
  if (mlir::failed(pm.run(*module)))
    return createStringError("lowering failed:\n" + diagnostics.str());
  // Each target lowers its own copy (the last one the module itself); the
  // memory plan, and so the weights and caches, is the same for all.
  std::vector<mlir::OwningOpRef<mlir::ModuleOp>> lowered;
  std::string code;
  json::Array targets;
  json::Object firstTarget;
  std::optional<ModelSizes> sizes;
  bool several = backends.size() > 1;
  for (size_t i = 0; i < backends.size(); ++i) {
    mlir::OwningOpRef<mlir::ModuleOp> copy =
        i + 1 == backends.size() ? std::move(module)
                                 : mlir::OwningOpRef<mlir::ModuleOp>(
                                       module->clone());
    (*copy)->setAttr(kTargetAttrName, backends[i]->getTarget(context.get()));
    if (mlir::failed(lowering[i]->run(*copy)))
      return createStringError("lowering failed:\n" + diagnostics.str());
    Expected<ModelSizes> targetSizes = readModelSizes(*copy);
    if (!targetSizes)
      return targetSizes.takeError();
    if (!sizes)
      sizes = *targetSizes;
    step("generating " + backends[i]->describe());
    Expected<TargetCode> targetCode = backends[i]->generateCode(
        *copy, *targetSizes, [&](const std::string &line) { step(line); });
    if (!targetCode)
      return targetCode.takeError();
    if (several) {
      targetCode->manifest["code_offset"] = uint64_t(code.size());
      targetCode->manifest["code_size"] = uint64_t(targetCode->code.size());
    }
    code += targetCode->code;
    if (i == 0)
      firstTarget = targetCode->manifest;
    if (several)
      targets.push_back(std::move(targetCode->manifest));
    lowered.push_back(std::move(copy));
  }

  if (tokenizerFiles.vocabSize > sizes->vocabSize)
    return createStringError(
        "the tokenizer has " + Twine(tokenizerFiles.vocabSize) +
        " tokens, more than the model's vocabulary of " +
        Twine(sizes->vocabSize) + " (" + tokenizerFiles.description + ")");

  step("packing " + options.output);
  ArtifactContents contents;
  contents.tokenizer = std::move(tokenizerFiles.tokenizer);
  contents.generationConfig = std::move(tokenizerFiles.generationConfig);
  contents.module = *lowered.front();
  contents.checkpoint = checkpoint.get();
  contents.code = std::move(code);
  contents.sizes = *sizes;
  contents.target = std::move(firstTarget);
  contents.targets = std::move(targets);
  contents.compileOptions = json::Object{
      {"target", options.target},
      {"cpu", options.cpu.empty() ? std::string("native") : options.cpu},
      {"opt_level", int64_t(options.optLevel)},
      {"precise", options.precise},
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
  if (options.sveBits >= 0)
    contents.compileOptions["sve_bits"] = int64_t(options.sveBits);
  contents.modelExtras = std::move(modelExtras);
  contents.stripWeights = options.stripWeights;
  uint64_t size = 0;
  if (Error error = writeArtifact(
          options.output, contents,
          [&](const std::string &line) { step(line); }, &size))
    return error;
  step("wrote " + options.output + " (" + Twine(size >> 10) + " KiB" +
       (options.stripWeights ? ", weights stripped: bind them with xfmr-pack"
                             : "") +
       ") in " + formatv("{0:f1}", clock.seconds()).str() + " s");
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
  registerEverything();
  std::vector<std::pair<std::string, std::string>> passes;
  // Every `def ... : Pass<"xfmr-...">` of the Passes.td files (generated at
  // configure time), described by the registry.
  static const char *const kPassNames[] = {
#include "XfmrPassNames.inc"
  };
  for (const char *name : kPassNames)
    if (const mlir::PassInfo *info = mlir::PassInfo::lookup(name))
      passes.emplace_back(name, info->getPassDescription().str());
  for (llvm::ArrayRef<NamedPipeline> pipelines :
       {graphPipelines(), cpuPipelines()})
    for (const NamedPipeline &pipeline : pipelines)
      passes.emplace_back(pipeline.name, pipeline.description);
  return passes;
}
