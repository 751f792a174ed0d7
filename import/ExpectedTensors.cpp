//===- ExpectedTensors.cpp - Tensors a config implies ---------------------===//

#include "import/ExpectedTensors.h"
#include "import/Checkpoint.h"
#include "import/ImportUtil.h"
#include "import/ModelConfig.h"
#include "llvm/Support/MathExtras.h"

using namespace llvm;

namespace xfmr {

namespace {

/// Appends the specs of one model, keeping naming in one place.
class SpecBuilder {
public:
  SpecBuilder(const ModelConfig &config, std::vector<TensorSpec> &specs)
      : c(config), specs(specs) {}

  void add(std::string name, SmallVector<int64_t> shape,
           std::optional<DType> dtype = std::nullopt) {
    specs.push_back({std::move(name), std::move(shape), false, dtype});
  }
  /// A linear weight [out, in]; FP8 in FP8 checkpoints unless `neverFP8`.
  void linear(std::string name, int64_t out, int64_t in,
              bool neverFP8 = false) {
    specs.push_back(
        {std::move(name), {out, in}, c.fp8Weights && !neverFP8, std::nullopt});
  }
  /// gate/up/down projections of a SwiGLU MLP of width `width`.
  void swiglu(const std::string &prefix, int64_t width) {
    linear(prefix + "gate_proj.weight", width, c.hiddenSize);
    linear(prefix + "up_proj.weight", width, c.hiddenSize);
    linear(prefix + "down_proj.weight", c.hiddenSize, width);
  }

  void gqaAttention(const std::string &p) {
    int64_t q = c.numHeads * c.headDim, kv = c.numKVHeads * c.headDim;
    linear(p + "q_proj.weight", q, c.hiddenSize);
    linear(p + "k_proj.weight", kv, c.hiddenSize);
    linear(p + "v_proj.weight", kv, c.hiddenSize);
    linear(p + "o_proj.weight", c.hiddenSize, q);
    if (!c.attentionBias)
      return;
    add(p + "q_proj.bias", {q});
    add(p + "k_proj.bias", {kv});
    add(p + "v_proj.bias", {kv});
    // Llama's attention_bias also covers o_proj; Qwen2 has q/k/v biases only.
    if (c.arch == Architecture::Llama)
      add(p + "o_proj.bias", {c.hiddenSize});
  }

  void mlaAttention(const std::string &p) {
    int64_t qkHead = c.qkNopeHeadDim + c.qkRopeHeadDim;
    if (c.qLoraRank > 0) {
      linear(p + "q_a_proj.weight", c.qLoraRank, c.hiddenSize);
      add(p + "q_a_layernorm.weight", {c.qLoraRank});
      linear(p + "q_b_proj.weight", c.numHeads * qkHead, c.qLoraRank);
    } else {
      linear(p + "q_proj.weight", c.numHeads * qkHead, c.hiddenSize);
    }
    linear(p + "kv_a_proj_with_mqa.weight", c.kvLoraRank + c.qkRopeHeadDim,
           c.hiddenSize);
    add(p + "kv_a_layernorm.weight", {c.kvLoraRank});
    linear(p + "kv_b_proj.weight", c.numHeads * (c.qkNopeHeadDim + c.vHeadDim),
           c.kvLoraRank);
    linear(p + "o_proj.weight", c.hiddenSize, c.numHeads * c.vHeadDim);
  }

  void mixtralMoE(const std::string &p) {
    linear(p + "gate.weight", c.numExperts, c.hiddenSize, /*neverFP8=*/true);
    for (int64_t e = 0; e < c.numExperts; ++e) {
      std::string expert = p + "experts." + std::to_string(e) + ".";
      linear(expert + "w1.weight", c.moeIntermediateSize, c.hiddenSize);
      linear(expert + "w2.weight", c.hiddenSize, c.moeIntermediateSize);
      linear(expert + "w3.weight", c.moeIntermediateSize, c.hiddenSize);
    }
  }

  void deepseekMoE(const std::string &p) {
    linear(p + "gate.weight", c.numExperts, c.hiddenSize, /*neverFP8=*/true);
    // The correction bias only exists for (and is only used by) noaux_tc.
    if (c.topkMethod == "noaux_tc")
      add(p + "gate.e_score_correction_bias", {c.numExperts}, DType::F32);
    for (int64_t e = 0; e < c.numExperts; ++e)
      swiglu(p + "experts." + std::to_string(e) + ".", c.moeIntermediateSize);
    if (c.numSharedExperts > 0)
      swiglu(p + "shared_experts.", c.numSharedExperts * c.moeIntermediateSize);
  }

  /// The extra tensors of a DeepSeek-V3 multi-token-prediction layer.
  void mtpExtras(const std::string &p) {
    add(p + "embed_tokens.weight", {c.vocabSize, c.hiddenSize});
    add(p + "enorm.weight", {c.hiddenSize});
    add(p + "hnorm.weight", {c.hiddenSize});
    // eh_proj stays bfloat16 in DeepSeek's FP8 release.
    linear(p + "eh_proj.weight", c.hiddenSize, 2 * c.hiddenSize,
           /*neverFP8=*/true);
    add(p + "shared_head.norm.weight", {c.hiddenSize});
    linear(p + "shared_head.head.weight", c.vocabSize, c.hiddenSize,
           /*neverFP8=*/true);
  }

  void layer(int64_t index) {
    std::string p = "model.layers." + std::to_string(index) + ".";
    bool deepseek = c.arch == Architecture::DeepseekV3;
    if (deepseek && index >= c.numLayers)
      mtpExtras(p);
    add(p + "input_layernorm.weight", {c.hiddenSize});
    if (deepseek)
      mlaAttention(p + "self_attn.");
    else
      gqaAttention(p + "self_attn.");
    add(p + "post_attention_layernorm.weight", {c.hiddenSize});
    if (!c.isMoELayer(index))
      swiglu(p + "mlp.", c.intermediateSize);
    else if (deepseek)
      deepseekMoE(p + "mlp.");
    else
      mixtralMoE(p + "block_sparse_moe.");
  }

private:
  const ModelConfig &c;
  std::vector<TensorSpec> &specs;
};

/// True for the dtypes a non-quantized weight may have.
bool isPlainFloat(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

} // namespace

std::vector<TensorSpec> expectedTensors(const ModelConfig &config,
                                        bool includeMTP) {
  std::vector<TensorSpec> specs;
  SpecBuilder builder(config, specs);
  builder.add("model.embed_tokens.weight",
              {config.vocabSize, config.hiddenSize});
  int64_t layers = config.numLayers;
  if (includeMTP && config.arch == Architecture::DeepseekV3)
    layers += config.numNextnPredictLayers;
  for (int64_t layer = 0; layer < layers; ++layer)
    builder.layer(layer);
  builder.add("model.norm.weight", {config.hiddenSize});
  if (!config.tieWordEmbeddings)
    builder.linear("lm_head.weight", config.vocabSize, config.hiddenSize,
                   /*neverFP8=*/true);
  return specs;
}

Error checkTensors(const ModelConfig &config, const Checkpoint &checkpoint,
                   bool includeMTP) {
  std::vector<std::string> problems;
  for (const TensorSpec &spec : expectedTensors(config, includeMTP)) {
    const TensorInfo *info = checkpoint.find(spec.name);
    if (!info) {
      problems.push_back("missing tensor '" + spec.name + "' (expected shape " +
                         formatShape(spec.shape) + ")");
      continue;
    }
    if (ArrayRef<int64_t>(info->shape) != ArrayRef<int64_t>(spec.shape)) {
      problems.push_back("tensor '" + spec.name + "' has shape " +
                         formatShape(info->shape) + ", expected " +
                         formatShape(spec.shape));
      continue;
    }
    std::string dtype = dtypeName(info->dtype).str();
    if (spec.fp8) {
      if (info->dtype != DType::F8_E4M3) {
        problems.push_back("tensor '" + spec.name + "' has dtype " + dtype +
                           ", expected F8_E4M3 (config.json has an fp8 "
                           "quantization_config)");
        continue;
      }
      std::string scaleName = spec.name + "_scale_inv";
      const TensorInfo *scale = checkpoint.find(scaleName);
      if (!scale) {
        problems.push_back("FP8 tensor '" + spec.name +
                           "' has no scale tensor '" + scaleName + "'");
        continue;
      }
      SmallVector<int64_t> scaleShape = {
          llvm::divideCeilSigned(spec.shape[0], config.weightBlockRows),
          llvm::divideCeilSigned(spec.shape[1], config.weightBlockCols)};
      if (ArrayRef<int64_t>(scale->shape) != ArrayRef<int64_t>(scaleShape))
        problems.push_back("scale tensor '" + scaleName + "' has shape " +
                           formatShape(scale->shape) + ", expected " +
                           formatShape(scaleShape) + " for weight " +
                           formatShape(spec.shape) + " in " +
                           std::to_string(config.weightBlockRows) + "x" +
                           std::to_string(config.weightBlockCols) + " blocks");
      else if (scale->dtype != DType::F32)
        problems.push_back("scale tensor '" + scaleName + "' has dtype " +
                           dtypeName(scale->dtype).str() + ", expected F32");
      continue;
    }
    if (spec.dtype) {
      if (info->dtype != *spec.dtype)
        problems.push_back("tensor '" + spec.name + "' has dtype " + dtype +
                           ", expected " + dtypeName(*spec.dtype).str());
      continue;
    }
    if (isPlainFloat(info->dtype))
      continue;
    if (info->dtype == DType::F8_E4M3 || info->dtype == DType::F8_E5M2)
      problems.push_back(
          "tensor '" + spec.name + "' has dtype " + dtype +
          (config.fp8Weights
               ? ", but this tensor is never quantized (expected F32, F16 or "
                 "BF16)"
               : ", but config.json has no fp8 quantization_config"));
    else
      problems.push_back("tensor '" + spec.name + "' has dtype " + dtype +
                         ", expected a floating-point type (F32, F16 or BF16)");
  }
  return joinProblems("checkpoint '" + checkpoint.dir().str() +
                          "' does not match its config (" + config.archName +
                          ")",
                      problems);
}

} // namespace xfmr
