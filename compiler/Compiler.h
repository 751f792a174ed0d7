//===- Compiler.h - the compiler's narrow API -------------------*- C++ -*-===//
//
// What tools and the Python module call: compile a model into an artifact,
// import a checkpoint to IR text, run pass pipelines on IR text, list passes.
// Only strings and LLVM errors cross this boundary, so callers never see
// MLIR objects.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_COMPILER_COMPILER_H
#define XFMR_COMPILER_COMPILER_H

#include "llvm/Support/Error.h"

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace xfmr {

struct CompileOptions {
  /// A checkpoint folder or an .mlir file of xfmr IR.
  std::string model;
  /// The artifact to write.
  std::string output = "model.xfmr";
  /// The back end (TargetBackend.h): "cpu" today.
  std::string target = "cpu";
  /// The CPU code's variants, best first: LLVM CPU names or "native", comma
  /// separated ("znver4,x86-64-v3,x86-64-v2"); the runtime runs the first
  /// one the machine supports. "" is the default: "native" for CPU code;
  /// the host code of GPU targets takes the last entry, and x86-64-v2 by
  /// default (it must run on whatever machine holds the GPU).
  std::string cpu;
  /// AArch64: the SVE vector length (bits) to specialize the code for: 256
  /// or 512, 0 for none, -1 for the CPU's own (CPUTarget::sveBits).
  int sveBits = -1;
  /// KV-cache capacity in tokens; 0 takes max_position_embeddings.
  int64_t context = 0;
  /// For .mlir models: the checkpoint folder holding the weights.
  std::string weights;
  /// "" (none) or "fp8": run xfmr-quantize-fp8 with `quantizeOptions` (its
  /// pass options, e.g. "granularity=channel activations=false").
  std::string quantize;
  std::string quantizeOptions;
  /// "" (f32) or the KV-cache element type: bf16, f16, fp8, int8
  /// (xfmr-compress-kv-cache).
  std::string kvCache;
  /// Evicting KV cache (StreamingLLM): keep the last `kvWindow` positions
  /// and the first `kvSinks`; 0 keeps every position up to the context.
  int64_t kvWindow = 0;
  int64_t kvSinks = 0;
  /// "" or "expanded" (MLA caches per-head keys and values) or "latent"
  /// (xfmr-absorb-mla: only c_KV and k_pe, attention in latent space).
  std::string mlaCache;
  /// With a latent MLA cache: "" or "runtime" (W_UK/W_UV applied per token)
  /// or "compile-time" (folded into the query projection and o_proj).
  std::string mlaAbsorb;
  /// How MoE layers run: "" or "sparse" (xfmr-sparsify-moe: decode runs each
  /// token's top-k experts, prefill grouped expert GEMMs), "sparse-prefill"
  /// (token-by-token dispatch in prefill too) or "dense" (every expert on
  /// every token, weighted 0 where not routed; for comparison).
  std::string moe;
  /// Print the IR after this pass ("all": after every pass) to stderr.
  std::string dumpIRAfter;
  /// GPU targets: write the device code (PTX, cubin and ptxas' resource
  /// report; AMD code object; SPIR-V) into this directory.
  std::string dumpDeviceCode;
  /// Write code, manifest and packing plan without the weights; xfmr-pack
  /// binds a checkpoint's weights later.
  bool stripWeights = false;
  /// The tokenizer to carry: a tokenizer.json or tokenizer.model, or a
  /// folder with one. Default: the checkpoint folder's, if it has one.
  std::string tokenizer;
  /// Keep f32 activations in linear layers; by default CPU-only artifacts
  /// multiply bf16 weights by bf16-rounded activations (bf16 dot products).
  bool precise = false;
  /// Set by the driver for each back end: every target of the artifact is
  /// a CPU, so weights may take the CPU kernels' layouts (panels).
  bool cpuOnly = false;
  unsigned optLevel = 3;
};

using ProgressFn = std::function<void(const std::string &)>;

/// Checks every option without reading the model: values, combinations,
/// the CPU name. Errors carry std::errc::invalid_argument (a usage error).
llvm::Error validateCompileOptions(const CompileOptions &options);

/// Compiles `options.model` into `options.output` (through
/// runtime::OutputFile). Validates every option and the output path before
/// any work. `progress` receives one line per stage, `warning` each warning
/// (an option without effect on this model, a context past the model's).
/// Errors with std::errc::invalid_argument are bad options.
llvm::Error compileModel(const CompileOptions &options,
                         const ProgressFn &progress = {},
                         const ProgressFn &warning = {});

/// The xfmr IR of a checkpoint folder, as text.
llvm::Expected<std::string> importCheckpointToText(const std::string &dir,
                                                   int64_t context = 0);

/// Parses `ir`, runs `pipeline` (a pass pipeline string such as
/// "builtin.module(xfmr-graph-opt)" or a named pipeline such as
/// "xfmr-graph-opt") and returns the printed result. Diagnostics become the
/// error message.
llvm::Expected<std::string> runPipeline(const std::string &ir,
                                        const std::string &pipeline);

/// Parses and verifies `ir`; returns it printed in canonical form.
llvm::Expected<std::string> roundTrip(const std::string &ir);

/// The registered xfmr passes and pipelines: (flag, one-line description).
std::vector<std::pair<std::string, std::string>> listPasses();

} // namespace xfmr

#endif // XFMR_COMPILER_COMPILER_H
