//===- xfmr-compile.cpp - checkpoint or .mlir -> model.xfmr -----*- C++ -*-===//
//
// xfmr-compile MODEL -o FILE [options]
//
// MODEL is a Hugging Face checkpoint folder or an .mlir file of xfmr IR
// (whose weights come from --weights). Progress goes to stderr. The artifact
// is written through runtime::OutputFile (atomically; never through a
// symlink). Exit codes: 0 ok, 1 compile error, 2 bad command line.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compiler.h"
#include "tools/common/ToolSupport.h"
#include "xfmr/runtime/OutputFile.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace xfmr::tools;

static const char kTool[] = "xfmr-compile";

static cl::OptionCategory inputOutput("Input and output");
static cl::OptionCategory targetOptions("Target");
static cl::OptionCategory quantization("Quantization (FP8, DeepSeek-V3 recipe)");
static cl::OptionCategory kvCacheOptions("KV cache");
static cl::OptionCategory moeOptions("Mixture of experts");
static cl::OptionCategory debugging("Debugging");

// Both required; checked by hand so that the message has the common form.
static cl::opt<std::string> modelPath(cl::Positional,
                                      cl::desc("<checkpoint folder | model.mlir>"),
                                      cl::cat(inputOutput));
static cl::opt<std::string> outputPath("o",
                                       cl::desc("The artifact to write "
                                                "(required)"),
                                       cl::value_desc("file"),
                                       cl::cat(inputOutput));
static cl::opt<std::string>
    weightsDir("weights",
               cl::desc("Checkpoint folder with the weights of an .mlir model"),
               cl::value_desc("dir"), cl::init(""), cl::cat(inputOutput));
static cl::opt<std::string> tokenizerPath(
    "tokenizer",
    cl::desc("The tokenizer the artifact carries: a tokenizer.json or "
             "tokenizer.model, or a folder with one (default: the checkpoint "
             "folder's, with its tokenizer_config.json and "
             "generation_config.json)"),
    cl::value_desc("path"), cl::init(""), cl::cat(inputOutput));
static cl::opt<bool> stripWeights(
    "strip-weights",
    cl::desc("Write the code, manifest and packing plan without the weights "
             "(bind a checkpoint's weights later with xfmr-pack)"),
    cl::init(false), cl::cat(inputOutput));
static cl::opt<int64_t> contextLength(
    "context",
    cl::desc("KV-cache capacity in tokens, at most 2147483647 (default: the "
             "model's max_position_embeddings)"),
    cl::value_desc("N"), cl::init(0), cl::cat(inputOutput));

static cl::opt<bool> precise(
    "precise",
    cl::desc("Keep f32 activations in linear layers (by default CPU code "
             "multiplies bf16 weights by activations rounded to bf16, with "
             "the CPU's bf16 dot products)"),
    cl::init(false), cl::cat(targetOptions));

static cl::opt<std::string> targetName(
    "target",
    cl::desc("Target: cpu (default), cuda:sm_80|sm_89|sm_90|sm_90a, "
             "rocm:gfx90a|gfx942 or vulkan (docs/gpu.md)"),
    cl::value_desc("target"), cl::init("cpu"), cl::cat(targetOptions));
static cl::opt<std::string>
    cpuName("cpu",
            cl::desc("CPU to compile for: an LLVM CPU name (x86-64-v3, "
                     "znver4, sapphirerapids, ...) or 'native' for this "
                     "machine's CPU and features (the default); a comma "
                     "list, best first, builds one variant each and the "
                     "runtime runs the first the machine supports "
                     "(--cpu znver4,x86-64-v3,x86-64-v2). GPU targets' "
                     "host code takes the last entry (default x86-64-v2)"),
            cl::value_desc("names"), cl::init(""),
            cl::cat(targetOptions));
static cl::opt<int> sveBits(
    "sve-bits",
    cl::desc("AArch64 with SVE: the SVE vector length the code is "
             "specialized for, 256 or 512 (SVE kernels; the runtime sets "
             "that length or refuses the CPU), or 0 for none (NEON kernels, "
             "any length). Default: the CPU's own (256 for neoverse-v1, 512 "
             "for a64fx, else 0)"),
    cl::value_desc("bits"), cl::init(-1), cl::cat(targetOptions));
static cl::opt<unsigned> optLevel("O",
                                  cl::desc("LLVM optimization level, 0-3 "
                                           "(default 3)"),
                                  cl::value_desc("level"), cl::init(3),
                                  cl::Prefix, cl::cat(targetOptions));

static cl::opt<std::string>
    quantize("quantize",
             cl::desc("Quantize the linear layers: fp8 (E4M3 weights in "
                      "128x128 blocks, activations per token in groups of "
                      "128) or int8 (W8A8: int8 weights with a scale per "
                      "output channel, int8 activations with a scale per "
                      "token; for CPUs) or int4 (int4 weights with an f16 "
                      "scale per output channel and group of 32 inputs, "
                      "int8 activations with a scale per token; for CPUs). "
                      "Default: off"),
             cl::value_desc("fp8|int8|int4"), cl::init(""),
             cl::cat(quantization));
static cl::opt<unsigned> quantizeGroup(
    "quantize-group",
    cl::desc("int4: inputs per weight scale, a multiple of 8 (default 32; "
             "128 stores 3% fewer bytes, less accurately)"),
    cl::value_desc("N"), cl::init(0), cl::cat(quantization));
static cl::opt<std::string> quantizeHead(
    "quantize-head",
    cl::desc("int4: the LM head, int8 (W8A8, default), int4 or keep"),
    cl::value_desc("kind"), cl::init(""), cl::cat(quantization));
static cl::opt<std::string> quantizeExperts(
    "quantize-experts",
    cl::desc("int4: routed MoE experts, int4 (default; int8 when the group "
             "is no multiple of 16) or int8 (faster prefill, twice the "
             "bytes)"),
    cl::value_desc("kind"), cl::init(""), cl::cat(quantization));
static cl::opt<std::string> quantizeGranularity(
    "quantize-granularity",
    cl::desc("Weight scales: block (default), channel or tensor"),
    cl::value_desc("kind"), cl::init(""), cl::cat(quantization));
static cl::opt<std::string>
    quantizeBlock("quantize-block",
                  cl::desc("Weight scale block, N or RxC (default 128x128)"),
                  cl::value_desc("RxC"), cl::init(""), cl::cat(quantization));
static cl::opt<std::string> quantizeActivations(
    "quantize-activations",
    cl::desc("Also quantize activations dynamically: true (default) or "
             "false (weights only)"),
    cl::value_desc("bool"), cl::init(""), cl::cat(quantization));
static cl::opt<std::string> quantizeKeep(
    "quantize-keep",
    cl::desc("Comma-separated weight-name substrings kept in high precision "
             "(default: embed_tokens,lm_head; int4: embed_tokens)"),
    cl::value_desc("names"), cl::init(""), cl::cat(quantization));

static cl::opt<std::string> kvCache(
    "kv-cache",
    cl::desc("KV-cache element type: f32 (default), bf16, f16, fp8 (E4M3 "
             "with a scale per token and head), int8 (likewise); with "
             "--mla-cache latent, the latent's type (8-bit: a scale per 128 "
             "channels, k_pe in bf16)"),
    cl::value_desc("type"), cl::init(""), cl::cat(kvCacheOptions));
static cl::opt<int64_t> kvWindow(
    "kv-window",
    cl::desc("Evict: keep only the last N positions in the KV cache (with "
             "--kv-sinks, StreamingLLM); generation then runs past the "
             "context length in constant memory. 0 (default): no eviction"),
    cl::value_desc("N"), cl::init(0), cl::cat(kvCacheOptions));
static cl::opt<int64_t> kvSinks(
    "kv-sinks",
    cl::desc("With --kv-window: also keep the first N positions (attention "
             "sinks), default 0"),
    cl::value_desc("N"), cl::init(0), cl::cat(kvCacheOptions));
static cl::opt<std::string> mlaCache(
    "mla-cache",
    cl::desc("What MLA models (DeepSeek-V2/V3) cache: expanded (per-head "
             "keys and values, default) or latent (the compressed c_KV and "
             "k_pe; attention runs in latent space)"),
    cl::value_desc("kind"), cl::init(""), cl::cat(kvCacheOptions));
static cl::opt<std::string> mlaAbsorb(
    "mla-absorb",
    cl::desc("With --mla-cache latent, where W_UK and W_UV are applied: "
             "runtime (default: per token, the smallest weights) or "
             "compile-time (folded into the query projection and o_proj; "
             "needs high-precision MLA weights)"),
    cl::value_desc("when"), cl::init(""), cl::cat(kvCacheOptions));

static cl::opt<std::string> moe(
    "moe",
    cl::desc("How MoE layers run: sparse (default: decode runs each token's "
             "top-k experts, prefill one grouped GEMM per selected expert), "
             "sparse-prefill (token-by-token dispatch in prefill too) or "
             "dense (every expert on every token, for comparison)"),
    cl::value_desc("form"), cl::init(""), cl::cat(moeOptions));

static cl::opt<std::string> dumpIRAfter(
    "dump-ir-after",
    cl::desc("Print the IR to stderr after the named pass of this "
             "compilation (or 'all')"),
    cl::value_desc("pass"), cl::init(""), cl::cat(debugging));

static cl::opt<std::string> dumpDeviceCode(
    "dump-device-code",
    cl::desc("GPU targets: write the device code (kernels.ptx, "
             "kernels.cubin, ptxas.txt; kernels.hsaco; kernels.spv) into DIR"),
    cl::value_desc("DIR"), cl::init(""), cl::cat(debugging));

/// The xfmr-quantize-fp8 pass options of the --quantize-* flags, or a usage
/// error.
static Expected<std::string> quantizeOptions() {
  std::string options;
  auto add = [&](const std::string &option) {
    options += (options.empty() ? "" : " ") + option;
  };
  auto invalid = [](const Twine &message) {
    return createStringError(std::make_error_code(std::errc::invalid_argument),
                             message);
  };
  if (!quantizeGranularity.empty()) {
    if (quantizeGranularity != "block" && quantizeGranularity != "channel" &&
        quantizeGranularity != "tensor")
      return invalid("--quantize-granularity: expected block, channel or "
                     "tensor, got '" +
                     quantizeGranularity + "'");
    add("granularity=" + quantizeGranularity);
  }
  if (!quantizeBlock.empty()) {
    auto [rows, cols] = StringRef(quantizeBlock).split('x');
    if (cols.empty())
      cols = rows;
    unsigned r = 0, c = 0;
    if (rows.getAsInteger(10, r) || cols.getAsInteger(10, c) || r == 0 ||
        c == 0)
      return invalid("--quantize-block: expected N or RxC with positive "
                     "integers, got '" +
                     quantizeBlock + "'");
    add("block-rows=" + std::to_string(r));
    add("block-cols=" + std::to_string(c));
  }
  if (!quantizeActivations.empty()) {
    if (quantizeActivations != "true" && quantizeActivations != "false")
      return invalid("--quantize-activations: expected true or false, got '" +
                     quantizeActivations + "'");
    add("activations=" + quantizeActivations);
  }
  if (quantizeGroup.getNumOccurrences()) {
    if (quantize != "int4")
      return invalid("--quantize-group is an int4 option (--quantize int4)");
    if (quantizeGroup < 8 || quantizeGroup % 8 != 0 || quantizeGroup > 65536)
      return invalid("--quantize-group: expected a multiple of 8 in [8, "
                     "65536], got " +
                     Twine(unsigned(quantizeGroup)));
    add("group=" + std::to_string(quantizeGroup));
  }
  if (!quantizeExperts.empty()) {
    if (quantize != "int4")
      return invalid("--quantize-experts is an int4 option (--quantize int4)");
    if (quantizeExperts != "int4" && quantizeExperts != "int8")
      return invalid("--quantize-experts: expected int4 or int8, got '" +
                     quantizeExperts + "'");
    add("experts=" + quantizeExperts);
  }
  if (!quantizeHead.empty()) {
    if (quantize != "int4")
      return invalid("--quantize-head is an int4 option (--quantize int4)");
    if (quantizeHead != "int8" && quantizeHead != "int4" &&
        quantizeHead != "keep")
      return invalid("--quantize-head: expected int8, int4 or keep, got '" +
                     quantizeHead + "'");
    add("head=" + quantizeHead);
  }
  if (!quantizeKeep.empty())
    add("keep=" + quantizeKeep);
  if (!options.empty() && quantize.empty())
    return invalid("--quantize-* options need --quantize fp8, int8 or int4");
  if (quantize == "int4" &&
      (!quantizeGranularity.empty() || !quantizeBlock.empty() ||
       !quantizeActivations.empty()))
    return invalid("--quantize int4 takes only --quantize-group, "
                   "--quantize-head, --quantize-experts and --quantize-keep "
                   "(its scales are per output channel and group, and per "
                   "token)");
  // int8's scales are fixed (per output channel, per token); only the kept
  // names can change.
  if (quantize == "int8" &&
      (!quantizeGranularity.empty() || !quantizeBlock.empty() ||
       !quantizeActivations.empty()))
    return invalid("--quantize int8 takes only --quantize-keep (its scales "
                   "are per output channel and per token)");
  return options;
}

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  if (int exit = parseCommandLine(
          argc, argv,
          "xfmr-compile: compile a model (a Hugging Face checkpoint folder or "
          "an .mlir file of xfmr IR) into one artifact\n",
          {&inputOutput, &targetOptions, &quantization, &kvCacheOptions,
           &moeOptions, &debugging}))
    return exit;
  if (modelPath.empty())
    return usageError(kTool, "no model given: xfmr-compile MODEL -o FILE");
  if (outputPath.empty())
    return usageError(kTool, "no output file given: -o FILE is required");
  if (sveBits.getNumOccurrences() && sveBits < 0)
    return usageError(kTool, "--sve-bits: expected 256, 512 or 0, got " +
                                 std::to_string(sveBits));
  xfmr::CompileOptions options;
  options.model = modelPath;
  options.output = outputPath;
  options.target = targetName;
  options.cpu = cpuName;
  options.context = contextLength;
  options.weights = weightsDir;
  options.dumpIRAfter = dumpIRAfter;
  options.dumpDeviceCode = dumpDeviceCode;
  options.stripWeights = stripWeights;
  options.tokenizer = tokenizerPath;
  options.precise = precise;
  options.optLevel = optLevel;
  options.sveBits = sveBits;
  options.quantize = quantize;
  options.mlaCache = mlaCache;
  options.kvCache = kvCache;
  options.kvWindow = kvWindow;
  options.kvSinks = kvSinks;
  options.moe = moe;
  options.mlaAbsorb = mlaAbsorb;
  Expected<std::string> passOptions = quantizeOptions();
  if (!passOptions)
    return reportError(kTool, passOptions.takeError());
  options.quantizeOptions = *passOptions;
  // Ctrl-C or a kill leaves no temporary files behind.
  xfmr::runtime::removeOutputsOnSignals(/*onlyDefault=*/false);
  if (Error error = xfmr::compileModel(
          options,
          [](const std::string &line) { errs() << kTool << ": " << line << "\n"; },
          [](const std::string &line) { reportWarning(kTool, line); }))
    return reportError(kTool, std::move(error));
  return 0;
}
