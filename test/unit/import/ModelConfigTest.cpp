//===- ModelConfigTest.cpp - Tests for config.json parsing ----------------===//

#include "import/ModelConfig.h"

#include "ConfigFixtures.h"
#include "ImportTestUtil.h"

using namespace xfmr;
using namespace xfmr::testing;

namespace {

#define EXPECT_HAS(message, fragment)                                          \
  EXPECT_NE((message).find(fragment), std::string::npos)                       \
      << "message: " << (message) << "\nexpected fragment: " << (fragment)

/// Parses `text` written to a temporary config.json.
llvm::Expected<ModelConfig> parseText(llvm::StringRef text) {
  TempDir dir;
  return parseModelConfig(dir.write("config.json", text));
}

/// Returns `base` with the top-level members of `patch` replacing its own; a
/// patch value of "__erase__" removes the member.
std::string patched(llvm::StringRef base, llvm::StringRef patch) {
  llvm::Expected<llvm::json::Value> baseValue = llvm::json::parse(base);
  llvm::Expected<llvm::json::Value> patchValue = llvm::json::parse(patch);
  if (!baseValue || !patchValue) {
    ADD_FAILURE() << "bad test JSON";
    llvm::consumeError(baseValue.takeError());
    llvm::consumeError(patchValue.takeError());
    return "";
  }
  llvm::json::Object &object = *baseValue->getAsObject();
  for (auto &[key, value] : *patchValue->getAsObject()) {
    if (value.getAsString() == std::optional<llvm::StringRef>("__erase__"))
      object.erase(key);
    else
      object[key] = value;
  }
  return toJsonText(*baseValue);
}

TEST(ModelConfigTest, Llama31) {
  auto cfg = parseText(kLlama31_8B);
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->arch, Architecture::Llama);
  EXPECT_EQ(cfg->archName, "LlamaForCausalLM");
  EXPECT_EQ(cfg->hiddenSize, 4096);
  EXPECT_EQ(cfg->intermediateSize, 14336);
  EXPECT_EQ(cfg->numLayers, 32);
  EXPECT_EQ(cfg->numHeads, 32);
  EXPECT_EQ(cfg->numKVHeads, 8);
  EXPECT_EQ(cfg->headDim, 128);
  EXPECT_EQ(cfg->vocabSize, 128256);
  EXPECT_EQ(cfg->maxPositions, 131072);
  EXPECT_DOUBLE_EQ(cfg->rmsNormEps, 1e-5);
  EXPECT_DOUBLE_EQ(cfg->ropeTheta, 500000);
  EXPECT_EQ(cfg->ropeScaling.kind, RopeScaling::Kind::Llama3);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.factor, 8);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.lowFreqFactor, 1);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.highFreqFactor, 4);
  EXPECT_EQ(cfg->ropeScaling.originalMaxPositions, 8192);
  EXPECT_FALSE(cfg->tieWordEmbeddings);
  EXPECT_FALSE(cfg->attentionBias);
  EXPECT_FALSE(cfg->slidingWindow);
  EXPECT_EQ(cfg->numExperts, 0);
  EXPECT_FALSE(cfg->fp8Weights);
  EXPECT_FALSE(cfg->isMoELayer(0));
  EXPECT_HAS(cfg->summary(), "LlamaForCausalLM: 32 layers, hidden 4096");
  EXPECT_HAS(cfg->summary(), "llama3 x8");
}

TEST(ModelConfigTest, Mistral) {
  auto cfg = parseText(kMistral7B);
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->arch, Architecture::Mistral);
  EXPECT_EQ(cfg->slidingWindow, 4096);
  EXPECT_EQ(cfg->ropeScaling.kind, RopeScaling::Kind::None);
  EXPECT_HAS(cfg->summary(), "sliding window 4096");

  // MistralConfig's default window is 4096; null disables it.
  auto absent =
      parseText(patched(kMistral7B, R"({"sliding_window":"__erase__"})"));
  ASSERT_TRUE(bool(absent)) << llvm::toString(absent.takeError());
  EXPECT_EQ(absent->slidingWindow, 4096);
  auto none = parseText(patched(kMistral7B, R"({"sliding_window":null})"));
  ASSERT_TRUE(bool(none)) << llvm::toString(none.takeError());
  EXPECT_FALSE(none->slidingWindow);
}

TEST(ModelConfigTest, Qwen2) {
  auto cfg = parseText(kQwen2_05B);
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->arch, Architecture::Qwen2);
  EXPECT_TRUE(cfg->attentionBias);
  EXPECT_TRUE(cfg->tieWordEmbeddings);
  EXPECT_EQ(cfg->headDim, 64);
  EXPECT_EQ(cfg->numKVHeads, 2);
  // The window only applies with use_sliding_window.
  EXPECT_FALSE(cfg->slidingWindow);
  std::string message = llvm::toString(
      parseText(patched(kQwen2_05B, R"({"use_sliding_window":true})"))
          .takeError());
  EXPECT_HAS(message, "'use_sliding_window' is true, which is not supported");
}

TEST(ModelConfigTest, Mixtral) {
  auto cfg = parseText(kMixtral8x7B);
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->arch, Architecture::Mixtral);
  EXPECT_EQ(cfg->numExperts, 8);
  EXPECT_EQ(cfg->numExpertsPerTok, 2);
  EXPECT_EQ(cfg->moeIntermediateSize, 14336);
  EXPECT_EQ(cfg->scoringFunc, "softmax");
  EXPECT_TRUE(cfg->normTopkProb);
  EXPECT_FALSE(cfg->slidingWindow);
  EXPECT_DOUBLE_EQ(cfg->ropeTheta, 1e6);
  EXPECT_TRUE(cfg->isMoELayer(0));
  EXPECT_TRUE(cfg->isMoELayer(31));
  EXPECT_HAS(cfg->summary(), "MoE 8 experts, top-2");
}

TEST(ModelConfigTest, DeepseekV3) {
  auto cfg = parseText(kDeepseekV3);
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->arch, Architecture::DeepseekV3);
  EXPECT_EQ(cfg->numHeads, 128);
  EXPECT_EQ(cfg->numKVHeads, 128);
  EXPECT_EQ(cfg->qLoraRank, 1536);
  EXPECT_EQ(cfg->kvLoraRank, 512);
  EXPECT_EQ(cfg->qkNopeHeadDim, 128);
  EXPECT_EQ(cfg->qkRopeHeadDim, 64);
  EXPECT_EQ(cfg->vHeadDim, 128);
  EXPECT_EQ(cfg->headDim, 192);
  EXPECT_EQ(cfg->numExperts, 256);
  EXPECT_EQ(cfg->numSharedExperts, 1);
  EXPECT_EQ(cfg->numExpertsPerTok, 8);
  EXPECT_EQ(cfg->moeIntermediateSize, 2048);
  EXPECT_EQ(cfg->nGroup, 8);
  EXPECT_EQ(cfg->topkGroup, 4);
  EXPECT_EQ(cfg->scoringFunc, "sigmoid");
  EXPECT_EQ(cfg->topkMethod, "noaux_tc");
  EXPECT_TRUE(cfg->normTopkProb);
  EXPECT_DOUBLE_EQ(cfg->routedScalingFactor, 2.5);
  EXPECT_EQ(cfg->firstKDenseReplace, 3);
  EXPECT_EQ(cfg->moeLayerFreq, 1);
  EXPECT_EQ(cfg->numNextnPredictLayers, 1);
  EXPECT_EQ(cfg->ropeScaling.kind, RopeScaling::Kind::Yarn);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.factor, 40);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.betaFast, 32);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.betaSlow, 1);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.mscale, 1);
  EXPECT_DOUBLE_EQ(cfg->ropeScaling.mscaleAllDim, 1);
  EXPECT_EQ(cfg->ropeScaling.originalMaxPositions, 4096);
  EXPECT_TRUE(cfg->fp8Weights);
  EXPECT_EQ(cfg->weightBlockRows, 128);
  EXPECT_EQ(cfg->weightBlockCols, 128);
  EXPECT_FALSE(cfg->isMoELayer(2));
  EXPECT_TRUE(cfg->isMoELayer(3));
  EXPECT_TRUE(cfg->isMoELayer(61)); // The MTP layer.
  EXPECT_HAS(cfg->summary(), "FP8 E4M3 weights, blocks 128x128");
  EXPECT_HAS(cfg->summary(), "1 MTP layer");
}

TEST(ModelConfigTest, DeepseekWithoutQueryCompression) {
  auto cfg = parseText(patched(kDeepseekV3, R"({"q_lora_rank":null})"));
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->qLoraRank, 0);
  EXPECT_HAS(cfg->summary(), "q_lora none");
}

TEST(ModelConfigTest, DeepseekMoELayerFrequency) {
  auto cfg = parseText(patched(
      kDeepseekV3, R"({"first_k_dense_replace":1,"moe_layer_freq":2})"));
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_FALSE(cfg->isMoELayer(0));
  EXPECT_FALSE(cfg->isMoELayer(1));
  EXPECT_TRUE(cfg->isMoELayer(2));
  EXPECT_FALSE(cfg->isMoELayer(3));
  EXPECT_TRUE(cfg->isMoELayer(4));
}

TEST(ModelConfigTest, FallsBackToModelType) {
  auto cfg = parseText(R"({"model_type":"qwen2","hidden_size":64,
      "intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,
      "vocab_size":10})");
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->arch, Architecture::Qwen2);
  EXPECT_EQ(cfg->archName, "Qwen2ForCausalLM");
  auto empty = parseText(patched(kTinyLlama,
                                 R"({"architectures":[],"model_type":"mixtral",
                                     "num_local_experts":2})"));
  ASSERT_TRUE(bool(empty)) << llvm::toString(empty.takeError());
  EXPECT_EQ(empty->arch, Architecture::Mixtral);
}

TEST(ModelConfigTest, HuggingFaceDefaults) {
  auto cfg = parseText(R"({"architectures":["LlamaForCausalLM"],
      "hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,
      "num_attention_heads":4,"vocab_size":10})");
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->numKVHeads, 4);
  EXPECT_EQ(cfg->headDim, 16);
  EXPECT_DOUBLE_EQ(cfg->rmsNormEps, 1e-6);
  EXPECT_DOUBLE_EQ(cfg->ropeTheta, 10000);
  EXPECT_FALSE(cfg->tieWordEmbeddings);
  EXPECT_EQ(cfg->maxPositions, 2048);
  EXPECT_EQ(cfg->ropeScaling.kind, RopeScaling::Kind::None);

  auto mixtral = parseText(kTinyMixtral);
  ASSERT_TRUE(bool(mixtral)) << llvm::toString(mixtral.takeError());
  EXPECT_DOUBLE_EQ(mixtral->rmsNormEps, 1e-5);
  EXPECT_DOUBLE_EQ(mixtral->ropeTheta, 1e6);
}

TEST(ModelConfigTest, ExplicitHeadDim) {
  auto cfg = parseText(patched(kTinyLlama, R"({"head_dim":32})"));
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->headDim, 32);
  // hidden need not be divisible by heads when head_dim is given.
  auto odd =
      parseText(patched(kTinyLlama, R"({"hidden_size":66,"head_dim":16})"));
  ASSERT_TRUE(bool(odd)) << llvm::toString(odd.takeError());
  // A null head_dim means "derive it".
  auto null = parseText(patched(kTinyLlama, R"({"head_dim":null})"));
  ASSERT_TRUE(bool(null)) << llvm::toString(null.takeError());
  EXPECT_EQ(null->headDim, 16);
}

TEST(ModelConfigTest, RopeScalingKinds) {
  auto linear = parseText(patched(
      kTinyLlama, R"({"rope_scaling":{"type":"linear","factor":2.0}})"));
  ASSERT_TRUE(bool(linear)) << llvm::toString(linear.takeError());
  EXPECT_EQ(linear->ropeScaling.kind, RopeScaling::Kind::Linear);
  EXPECT_DOUBLE_EQ(linear->ropeScaling.factor, 2);

  auto dflt = parseText(
      patched(kTinyLlama, R"({"rope_scaling":{"rope_type":"default"}})"));
  ASSERT_TRUE(bool(dflt)) << llvm::toString(dflt.takeError());
  EXPECT_EQ(dflt->ropeScaling.kind, RopeScaling::Kind::None);

  // YaRN defaults: betas 32/1, original length = max_position_embeddings.
  auto yarn = parseText(patched(
      kTinyLlama,
      R"({"rope_scaling":{"rope_type":"yarn","factor":4,"attention_factor":0.8}})"));
  ASSERT_TRUE(bool(yarn)) << llvm::toString(yarn.takeError());
  EXPECT_EQ(yarn->ropeScaling.kind, RopeScaling::Kind::Yarn);
  EXPECT_DOUBLE_EQ(yarn->ropeScaling.betaFast, 32);
  EXPECT_DOUBLE_EQ(yarn->ropeScaling.betaSlow, 1);
  EXPECT_DOUBLE_EQ(yarn->ropeScaling.attentionFactor, 0.8);
  EXPECT_EQ(yarn->ropeScaling.originalMaxPositions, 2048);

  // transformers v5 moves rope_theta and the scaling into rope_parameters.
  auto v5 = parseText(patched(
      kTinyLlama, R"({"rope_parameters":{"rope_type":"linear","factor":3,
                      "rope_theta":123.0}})"));
  ASSERT_TRUE(bool(v5)) << llvm::toString(v5.takeError());
  EXPECT_EQ(v5->ropeScaling.kind, RopeScaling::Kind::Linear);
  EXPECT_DOUBLE_EQ(v5->ropeTheta, 123);
}

TEST(ModelConfigTest, TinyDeepseekParses) {
  auto cfg = parseText(kTinyDeepseekV3);
  ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
  EXPECT_EQ(cfg->weightBlockRows, 32);
  EXPECT_EQ(cfg->headDim, 24);
}

TEST(ModelConfigTest, NotJsonOrNotObject) {
  EXPECT_HAS(llvm::toString(parseText("{").takeError()), "is not valid JSON");
  EXPECT_HAS(llvm::toString(parseText("[1]").takeError()),
             "top level is a JSON array, expected an object");
  EXPECT_HAS(llvm::toString(
                 parseModelConfig("/nonexistent/xfmr/config.json").takeError()),
             "cannot read '/nonexistent/xfmr/config.json'");
}

TEST(ModelConfigTest, DuplicateKey) {
  std::string text = kTinyLlama;
  text.insert(1, R"("hidden_size": 32,)");
  EXPECT_HAS(llvm::toString(parseText(text).takeError()),
             "has duplicate key 'hidden_size'");
}

TEST(ModelConfigTest, InfiniteTheta) {
  // Written as text: re-serializing an infinite double is not valid JSON.
  std::string text = kTinyLlama;
  text.insert(1, R"("rope_theta": 1e999,)");
  EXPECT_HAS(llvm::toString(parseText(text).takeError()),
             "field 'rope_theta' must be a positive finite number, got inf");
}

TEST(ModelConfigTest, ErrorNamesFile) {
  TempDir dir;
  std::string path =
      dir.write("config.json", patched(kTinyLlama, R"({"hidden_size":0})"));
  std::string message = llvm::toString(parseModelConfig(path).takeError());
  EXPECT_HAS(message, "config '" + path + "'");
}

TEST(ModelConfigTest, SeveralProblemsTogether) {
  std::string message =
      llvm::toString(parseText(patched(kTinyLlama,
                                       R"({"hidden_size":"64","vocab_size":true,
                            "rope_theta":"big"})"))
                         .takeError());
  EXPECT_HAS(message, "3 problems:");
  EXPECT_HAS(message, "field 'hidden_size' must be an integer, got string");
  EXPECT_HAS(message, "field 'vocab_size' must be an integer, got boolean");
  EXPECT_HAS(message, "field 'rope_theta' must be a number, got string");
}

/// One invalid config: a base, a patch, and a fragment the error must hold.
struct BadConfigCase {
  const char *label;
  const char *base;
  const char *patch;
  const char *expected;
};

const BadConfigCase kBadConfigs[] = {
    {"UnknownArchitecture", kTinyLlama,
     R"({"architectures":["GPT2LMHeadModel"]})",
     "unsupported architecture 'GPT2LMHeadModel' (supported: "
     "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
     "MixtralForCausalLM, DeepseekV3ForCausalLM)"},
    {"UnknownModelType", kTinyLlama,
     R"({"architectures":"__erase__","model_type":"gpt2"})",
     "unsupported model_type 'gpt2' (supported: llama, mistral"},
    {"NoArchitecture", kTinyLlama, R"({"architectures":"__erase__"})",
     "neither 'architectures' nor 'model_type' names the architecture"},
    {"ArchitecturesNotArray", kTinyLlama,
     R"({"architectures":"LlamaForCausalLM"})",
     "field 'architectures' must be an array of strings, got string"},
    {"ModelTypeNotString", kTinyLlama,
     R"({"architectures":"__erase__","model_type":3})",
     "field 'model_type' must be a string, got integer 3"},
    {"MissingHidden", kTinyLlama, R"({"hidden_size":"__erase__"})",
     "missing required field 'hidden_size'"},
    {"MissingVocab", kTinyLlama, R"({"vocab_size":null})",
     "missing required field 'vocab_size'"},
    {"HiddenNotInteger", kTinyLlama, R"({"hidden_size":64.5})",
     "field 'hidden_size' must be an integer, got number 64.5"},
    {"ZeroHidden", kTinyLlama, R"({"hidden_size":0})",
     "field 'hidden_size' must be positive, got 0"},
    {"NegativeHeads", kTinyLlama, R"({"num_attention_heads":-4})",
     "field 'num_attention_heads' must be positive, got -4"},
    {"ZeroKVHeads", kTinyLlama, R"({"num_key_value_heads":0})",
     "field 'num_key_value_heads' must be positive, got 0"},
    {"ZeroLayers", kTinyLlama, R"({"num_hidden_layers":0})",
     "field 'num_hidden_layers' must be positive, got 0"},
    {"NegativeIntermediate", kTinyLlama, R"({"intermediate_size":-1})",
     "field 'intermediate_size' must be positive, got -1"},
    {"HugeHidden", kTinyLlama, R"({"hidden_size":1099511627776})",
     "field 'hidden_size' is 1099511627776, above the supported limit"},
    {"HiddenNotDivisible", kTinyLlama,
     R"({"hidden_size":66,"num_key_value_heads":4})",
     "field 'hidden_size' (66) is not divisible by 'num_attention_heads' (4) "
     "and 'head_dim' is absent"},
    {"KVHeadsNotDividing", kTinyLlama, R"({"num_key_value_heads":3})",
     "field 'num_key_value_heads' (3) does not divide 'num_attention_heads' "
     "(4)"},
    {"OddHeadDim", kTinyLlama, R"({"head_dim":15})",
     "field 'head_dim' must be even for rotary embeddings, got 15"},
    {"ZeroHeadDim", kTinyLlama, R"({"head_dim":0})",
     "field 'head_dim' must be positive, got 0"},
    {"ZeroTheta", kTinyLlama, R"({"rope_theta":0})",
     "field 'rope_theta' must be a positive finite number, got 0"},
    {"NegativeEps", kTinyLlama, R"({"rms_norm_eps":-1e-6})",
     "field 'rms_norm_eps' must be a positive finite number, got -1e-06"},
    {"EpsNotNumber", kTinyLlama, R"({"rms_norm_eps":"1e-6"})",
     "field 'rms_norm_eps' must be a number, got string \"1e-6\""},
    {"TieNotBool", kTinyLlama, R"({"tie_word_embeddings":"yes"})",
     "field 'tie_word_embeddings' must be a boolean, got string"},
    {"GeluActivation", kTinyLlama, R"({"hidden_act":"gelu"})",
     "field 'hidden_act' has unsupported value 'gelu' (supported: silu)"},
    {"MlpBias", kTinyLlama, R"({"mlp_bias":true})",
     "field 'mlp_bias' is true, which is not supported"},
    {"RopeScalingNotObject", kTinyLlama, R"({"rope_scaling":"linear"})",
     "field 'rope_scaling' must be an object, got string"},
    {"RopeScalingNoType", kTinyLlama, R"({"rope_scaling":{"factor":2}})",
     "field 'rope_scaling' has neither 'rope_type' nor 'type'"},
    {"RopeScalingDynamic", kTinyLlama,
     R"({"rope_scaling":{"type":"dynamic","factor":2}})",
     "field 'rope_scaling' has unsupported type 'dynamic' (supported: "
     "default, linear, llama3, yarn)"},
    {"RopeFactorMissing", kTinyLlama,
     R"({"rope_scaling":{"rope_type":"linear"}})",
     "missing required field 'rope_scaling.factor'"},
    {"RopeFactorBelowOne", kTinyLlama,
     R"({"rope_scaling":{"rope_type":"linear","factor":0.5}})",
     "field 'rope_scaling.factor' must be a finite number >= 1, got 0.5"},
    {"Llama3MissingLowFreq", kTinyLlama,
     R"({"rope_scaling":{"rope_type":"llama3","factor":8,
         "high_freq_factor":4,"original_max_position_embeddings":8192}})",
     "missing required field 'rope_scaling.low_freq_factor'"},
    {"Llama3FreqOrder", kTinyLlama,
     R"({"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":4,
         "high_freq_factor":1,"original_max_position_embeddings":8192}})",
     "field 'rope_scaling.high_freq_factor' (1) must exceed "
     "'rope_scaling.low_freq_factor' (4)"},
    {"YarnNegativeBeta", kTinyLlama,
     R"({"rope_scaling":{"rope_type":"yarn","factor":4,"beta_fast":-1}})",
     "field 'rope_scaling.beta_fast' must be a positive finite number, got -1"},
    {"MistralZeroWindow", kMistral7B, R"({"sliding_window":0})",
     "field 'sliding_window' must be positive, got 0"},
    {"MixtralMissingExperts", kTinyMixtral,
     R"({"num_local_experts":"__erase__"})",
     "missing required field 'num_local_experts'"},
    {"MixtralTopKAboveExperts", kTinyMixtral, R"({"num_experts_per_tok":5})",
     "field 'num_experts_per_tok' (5) exceeds 'num_local_experts' (4)"},
    {"MixtralZeroTopK", kTinyMixtral, R"({"num_experts_per_tok":0})",
     "field 'num_experts_per_tok' must be positive, got 0"},
    {"DeepseekMissingQLora", kTinyDeepseekV3, R"({"q_lora_rank":"__erase__"})",
     "missing required field 'q_lora_rank' (use null for no query "
     "compression)"},
    {"DeepseekMissingKVLora", kTinyDeepseekV3,
     R"({"kv_lora_rank":"__erase__"})",
     "missing required field 'kv_lora_rank'"},
    {"DeepseekOddRope", kTinyDeepseekV3, R"({"qk_rope_head_dim":7})",
     "field 'qk_rope_head_dim' must be even for rotary embeddings, got 7"},
    {"DeepseekZeroVHead", kTinyDeepseekV3, R"({"v_head_dim":0})",
     "field 'v_head_dim' must be positive, got 0"},
    {"DeepseekTopKAboveExperts", kTinyDeepseekV3,
     R"({"num_experts_per_tok":9})",
     "field 'num_experts_per_tok' (9) exceeds 'n_routed_experts' (8)"},
    {"DeepseekGroupNotDividing", kTinyDeepseekV3, R"({"n_group":3})",
     "field 'n_group' (3) does not divide 'n_routed_experts' (8)"},
    {"DeepseekTopkGroupAboveGroups", kTinyDeepseekV3, R"({"topk_group":5})",
     "field 'topk_group' (5) exceeds 'n_group' (4)"},
    {"DeepseekTopKAboveGroupedExperts", kTinyDeepseekV3,
     R"({"num_experts_per_tok":5})",
     "field 'num_experts_per_tok' (5) exceeds the 4 experts in 'topk_group' "
     "(2) groups"},
    {"DeepseekZeroLayerFreq", kTinyDeepseekV3, R"({"moe_layer_freq":0})",
     "field 'moe_layer_freq' must be positive, got 0"},
    {"DeepseekNegativeDense", kTinyDeepseekV3,
     R"({"first_k_dense_replace":-1})",
     "field 'first_k_dense_replace' must not be negative, got -1"},
    {"DeepseekScoringFunc", kTinyDeepseekV3, R"({"scoring_func":"relu"})",
     "field 'scoring_func' has unsupported value 'relu' (supported: sigmoid, "
     "softmax)"},
    {"DeepseekTopkMethod", kTinyDeepseekV3, R"({"topk_method":"random"})",
     "field 'topk_method' has unsupported value 'random'"},
    {"DeepseekAttentionBias", kTinyDeepseekV3, R"({"attention_bias":true})",
     "field 'attention_bias' is true, which is not supported for "
     "DeepseekV3ForCausalLM"},
    {"DeepseekScalingFactor", kTinyDeepseekV3, R"({"routed_scaling_factor":0})",
     "field 'routed_scaling_factor' must be a positive finite number, got 0"},
    {"QuantMethod", kTinyDeepseekV3,
     R"({"quantization_config":{"quant_method":"awq"}})",
     "field 'quantization_config.quant_method' has unsupported value 'awq' "
     "(supported: fp8)"},
    {"QuantFormat", kTinyDeepseekV3,
     R"({"quantization_config":{"quant_method":"fp8","fmt":"e5m2",
         "weight_block_size":[128,128]}})",
     "field 'quantization_config.fmt' has unsupported value 'e5m2'"},
    {"QuantBlockSize", kTinyDeepseekV3,
     R"({"quantization_config":{"quant_method":"fp8",
         "weight_block_size":[128]}})",
     "field 'quantization_config.weight_block_size' must be an array of two "
     "integers, got [128]"},
    {"QuantZeroBlock", kTinyDeepseekV3,
     R"({"quantization_config":{"quant_method":"fp8",
         "weight_block_size":[0,128]}})",
     "must hold two positive sizes, got [0,128]"},
    {"QuantNoBlock", kTinyDeepseekV3,
     R"({"quantization_config":{"quant_method":"fp8"}})",
     "has no 'weight_block_size' (per-tensor FP8 is not supported)"},
    {"QuantStaticActivations", kTinyDeepseekV3,
     R"({"quantization_config":{"quant_method":"fp8",
         "activation_scheme":"static","weight_block_size":[128,128]}})",
     "unsupported value 'static' (supported: dynamic)"},
    {"TooManyTensors", kTinyMixtral,
     R"({"num_hidden_layers":60000,"num_local_experts":60000,
         "num_experts_per_tok":2})",
     "tensors, above the supported limit of 2000000"},
};

class BadConfigTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfigTest, ReportsError) {
  const BadConfigCase &param = GetParam();
  std::string message =
      llvm::toString(parseText(patched(param.base, param.patch)).takeError());
  EXPECT_HAS(message, param.expected);
}

INSTANTIATE_TEST_SUITE_P(Corpus, BadConfigTest,
                         ::testing::ValuesIn(kBadConfigs),
                         [](const auto &info) {
                           return std::string(info.param.label);
                         });

} // namespace
