//===- ModelConfig.h - Hugging Face config.json -----------------*- C++ -*-===//
//
// Parses and validates a Hugging Face `config.json` for the architectures xfmr
// compiles. Missing optional fields take the Hugging Face defaults of the
// architecture; fields that determine tensor shapes (hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads, vocab_size, expert
// counts and MLA ranks) are required. Every problem is an llvm::Error naming
// the file, the field and the offending value.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_IMPORT_MODELCONFIG_H
#define XFMR_IMPORT_MODELCONFIG_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>
#include <string>

namespace llvm {
namespace json {
class Value;
} // namespace json
} // namespace llvm

namespace xfmr {

/// The model families xfmr supports.
enum class Architecture { Llama, Mistral, Qwen2, Mixtral, DeepseekV3 };

/// Returns the Hugging Face class name, e.g. "LlamaForCausalLM".
llvm::StringRef architectureName(Architecture arch);

/// RoPE frequency scaling (`rope_scaling`). Fields not used by `kind` keep
/// their defaults.
struct RopeScaling {
  enum class Kind { None, Linear, Llama3, Yarn };
  Kind kind = Kind::None;
  double factor = 1;
  /// Llama 3.
  double lowFreqFactor = 1, highFreqFactor = 4;
  /// YaRN.
  double betaFast = 32, betaSlow = 1, mscale = 1, mscaleAllDim = 0;
  /// YaRN `attention_factor`; 0 when absent (derive it from factor/mscale).
  double attentionFactor = 0;
  /// Llama 3 and YaRN: the pre-scaling context length. For YaRN it defaults
  /// to max_position_embeddings; 0 for None and Linear.
  int64_t originalMaxPositions = 0;
};

/// Returns "none", "linear", "llama3" or "yarn".
llvm::StringRef ropeScalingKindName(RopeScaling::Kind kind);

/// A validated model configuration.
struct ModelConfig {
  Architecture arch = Architecture::Llama;
  /// `architectures[0]` (or the class name implied by `model_type`).
  std::string archName;

  int64_t hiddenSize = 0, intermediateSize = 0, numLayers = 0, numHeads = 0,
          numKVHeads = 0, vocabSize = 0, maxPositions = 0;
  /// Per-head dimension of queries and keys: `head_dim`, else hidden/heads.
  /// For DeepSeek-V3 this is qk_nope_head_dim + qk_rope_head_dim.
  int64_t headDim = 0;
  double rmsNormEps = 1e-6, ropeTheta = 10000;
  RopeScaling ropeScaling;
  bool tieWordEmbeddings = false;
  /// Biases on the attention projections: q/k/v/o for Llama with
  /// `attention_bias`, q/k/v only for Qwen2 (always set there).
  bool attentionBias = false;
  /// Mistral/Mixtral sliding-window attention size; unset means full attention.
  std::optional<int64_t> slidingWindow;

  /// Mixture of experts (Mixtral: num_local_experts and intermediate_size;
  /// DeepSeek-V3: n_routed_experts and moe_intermediate_size). 0 = dense.
  int64_t numExperts = 0, numExpertsPerTok = 0, moeIntermediateSize = 0,
          numSharedExperts = 0, nGroup = 1, topkGroup = 1,
          firstKDenseReplace = 0, moeLayerFreq = 1, numNextnPredictLayers = 0;
  /// Router: "softmax" (Mixtral) or "sigmoid"; "greedy" (Mixtral),
  /// "group_limited_greedy" or "noaux_tc".
  std::string scoringFunc, topkMethod;
  bool normTopkProb = false;
  double routedScalingFactor = 1;

  /// DeepSeek-V3 multi-head latent attention. qLoraRank 0 = no query
  /// compression (`q_lora_rank: null`, plain q_proj).
  int64_t qLoraRank = 0, kvLoraRank = 0, qkNopeHeadDim = 0, qkRopeHeadDim = 0,
          vHeadDim = 0;

  /// Block-wise FP8 (E4M3) weights with float32 `_scale_inv` per block of
  /// weightBlockRows x weightBlockCols.
  bool fp8Weights = false;
  int64_t weightBlockRows = 128, weightBlockCols = 128;

  /// True when `layer` uses a mixture of experts instead of a dense MLP
  /// (all Mixtral layers; DeepSeek-V3 layers >= first_k_dense_replace that are
  /// multiples of moe_layer_freq, MTP layers included).
  bool isMoELayer(int64_t layer) const;

  /// A one-paragraph human-readable description.
  std::string summary() const;
};

/// Reads, parses and validates the config.json at `configJsonPath`.
llvm::Expected<ModelConfig> parseModelConfig(llvm::StringRef configJsonPath);

/// Parses and validates an already-parsed config; `source` names it in
/// messages (usually the file path).
llvm::Expected<ModelConfig> parseModelConfig(const llvm::json::Value &json,
                                             llvm::StringRef source);

} // namespace xfmr

#endif // XFMR_IMPORT_MODELCONFIG_H
