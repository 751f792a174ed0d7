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

#include "lowering/Compiler.h"
#include "xfmr/runtime/OutputFile.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

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
static cl::opt<std::string>
    quantize("quantize",
             cl::desc("Quantize the linear layers: fp8 (DeepSeek-V3 recipe: "
                      "E4M3 weights in 128x128 blocks, activations per token "
                      "in groups of 128). Default: off"),
             cl::init(""));
static cl::opt<std::string> quantizeGranularity(
    "quantize-granularity",
    cl::desc("Weight scales: block (default), channel or tensor"),
    cl::init(""));
static cl::opt<std::string>
    quantizeBlock("quantize-block",
                  cl::desc("Weight scale block, N or RxC (default 128x128)"),
                  cl::init(""));
static cl::opt<std::string> quantizeActivations(
    "quantize-activations",
    cl::desc("Also quantize activations dynamically: true (default) or "
             "false (weights only)"),
    cl::init(""));
static cl::opt<std::string> quantizeKeep(
    "quantize-keep",
    cl::desc("Comma-separated weight-name substrings kept in high precision "
             "(default: embed_tokens,lm_head)"),
    cl::init(""));
static cl::opt<std::string> kvCache(
    "kv-cache",
    cl::desc("KV-cache element type: f32 (default), bf16, f16, fp8 (E4M3 "
             "with a scale per token and head), int8 (likewise); with "
             "--mla-cache latent, the latent's type (8-bit: a scale per 128 "
             "channels, k_pe in bf16)"),
    cl::init(""));
static cl::opt<int64_t> kvWindow(
    "kv-window",
    cl::desc("Evict: keep only the last N positions in the KV cache (with "
             "--kv-sinks, StreamingLLM); generation then runs past the "
             "context length in constant memory. 0 (default): no eviction"),
    cl::init(0));
static cl::opt<int64_t> kvSinks(
    "kv-sinks",
    cl::desc("With --kv-window: also keep the first N positions (attention "
             "sinks), default 0"),
    cl::init(0));
static cl::opt<std::string> mlaCache(
    "mla-cache",
    cl::desc("What MLA (DeepSeek) caches: expanded (per-head keys and "
             "values, default) or latent (the compressed c_KV and k_pe; "
             "attention runs in latent space)"),
    cl::init(""));
static cl::opt<std::string> mlaAbsorb(
    "mla-absorb",
    cl::desc("With --mla-cache latent, where W_UK and W_UV are applied: "
             "runtime (default: per token, the smallest weights) or "
             "compile-time (folded into the query projection and o_proj; "
             "needs high-precision MLA weights)"),
    cl::init(""));
static cl::opt<std::string> moe(
    "moe",
    cl::desc("How MoE layers run: sparse (default: decode runs each token's "
             "top-k experts, prefill one grouped GEMM per selected expert), "
             "sparse-prefill (token-by-token dispatch in prefill too) or "
             "dense (every expert on every token, for comparison)"),
    cl::init(""));
static cl::opt<unsigned> optLevel("O", cl::desc("LLVM optimization level"),
                                  cl::init(3), cl::Prefix);

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(
      argc, argv, "xfmr-compile: compile a model into one artifact\n");
  xfmr::CompileOptions options;
  options.model = modelPath;
  options.output = outputPath;
  options.target = targetName;
  options.cpu = cpuName;
  options.context = contextLength;
  options.weights = weightsDir;
  options.dumpIRAfter = dumpIRAfter;
  options.optLevel = optLevel;
  options.quantize = quantize;
  options.mlaCache = mlaCache;
  options.kvCache = kvCache == "f32" ? std::string() : std::string(kvCache);
  options.kvWindow = kvWindow;
  options.kvSinks = kvSinks;
  options.moe = moe;
  options.mlaAbsorb = mlaAbsorb;
  std::string passOptions;
  auto add = [&](const std::string &option) {
    passOptions += (passOptions.empty() ? "" : " ") + option;
  };
  if (!quantizeGranularity.empty())
    add("granularity=" + quantizeGranularity);
  if (!quantizeBlock.empty()) {
    StringRef block = quantizeBlock;
    auto [rows, cols] = block.split('x');
    add("block-rows=" + rows.str());
    add("block-cols=" + (cols.empty() ? rows : cols).str());
  }
  if (!quantizeActivations.empty())
    add("activations=" + quantizeActivations);
  if (!quantizeKeep.empty())
    add("keep=" + quantizeKeep);
  if (!passOptions.empty() && quantize.empty()) {
    WithColor::error(errs(), "xfmr-compile")
        << "--quantize-* options need --quantize fp8\n";
    return 1;
  }
  options.quantizeOptions = passOptions;
  // Ctrl-C or a kill leaves no temporary files behind.
  xfmr::runtime::removeOutputsOnSignals(/*onlyDefault=*/false);
  if (Error error = xfmr::compileModel(options, [](const std::string &line) {
        errs() << "xfmr-compile: " << line << "\n";
      })) {
    WithColor::error(errs(), "xfmr-compile") << toString(std::move(error))
                                             << "\n";
    return 1;
  }
  return 0;
}
