//===- ExpectedTensorsTest.cpp - Tests for expected tensor lists ----------===//

#include "import/ExpectedTensors.h"
#include "import/Checkpoint.h"
#include "import/ModelConfig.h"

#include "ConfigFixtures.h"
#include "ImportTestUtil.h"

#include "llvm/ADT/STLExtras.h"

#include <cstdlib>

using namespace xfmr;
using namespace xfmr::testing;

namespace {

#define EXPECT_HAS(message, fragment)                                          \
  EXPECT_NE((message).find(fragment), std::string::npos)                       \
      << "message: " << (message) << "\nexpected fragment: " << (fragment)

ModelConfig parseOrDie(llvm::StringRef text) {
  TempDir dir;
  llvm::Expected<ModelConfig> cfg =
      parseModelConfig(dir.write("config.json", text));
  if (!cfg) {
    ADD_FAILURE() << llvm::toString(cfg.takeError());
    return ModelConfig();
  }
  return *cfg;
}

const TensorSpec *findSpec(const std::vector<TensorSpec> &specs,
                           llvm::StringRef name) {
  for (const TensorSpec &spec : specs)
    if (spec.name == name)
      return &spec;
  return nullptr;
}

std::vector<int64_t> shapeOf(const std::vector<TensorSpec> &specs,
                             llvm::StringRef name) {
  const TensorSpec *spec = findSpec(specs, name);
  if (!spec)
    return {};
  return std::vector<int64_t>(spec->shape.begin(), spec->shape.end());
}

size_t countFP8(const std::vector<TensorSpec> &specs) {
  return llvm::count_if(specs, [](const TensorSpec &s) { return s.fp8; });
}

/// The tensors of a checkpoint that satisfies `cfg`: BF16 by default, FP8
/// weights with F32 scale_inv siblings.
std::vector<FakeTensor> tensorsFor(const ModelConfig &cfg,
                                   bool includeMTP = false) {
  std::vector<FakeTensor> tensors;
  for (const TensorSpec &spec : expectedTensors(cfg, includeMTP)) {
    std::vector<int64_t> shape(spec.shape.begin(), spec.shape.end());
    std::string dtype = spec.fp8     ? "F8_E4M3"
                        : spec.dtype ? dtypeName(*spec.dtype).str()
                                     : "BF16";
    tensors.push_back({spec.name, dtype, shape});
    if (spec.fp8)
      tensors.push_back(
          {spec.name + "_scale_inv",
           "F32",
           {(shape[0] + cfg.weightBlockRows - 1) / cfg.weightBlockRows,
            (shape[1] + cfg.weightBlockCols - 1) / cfg.weightBlockCols}});
  }
  return tensors;
}

FakeTensor &tensorNamed(std::vector<FakeTensor> &tensors,
                        llvm::StringRef name) {
  for (FakeTensor &tensor : tensors)
    if (tensor.name == name)
      return tensor;
  ADD_FAILURE() << "no tensor " << name.str();
  static FakeTensor dummy;
  return dummy;
}

void eraseNamed(std::vector<FakeTensor> &tensors, llvm::StringRef name) {
  size_t before = tensors.size();
  llvm::erase_if(tensors, [&](const FakeTensor &t) { return t.name == name; });
  EXPECT_EQ(tensors.size() + 1, before) << "no tensor " << name.str();
}

/// Writes a single-file checkpoint and runs checkTensors on it.
llvm::Error check(llvm::StringRef configText,
                  const std::vector<FakeTensor> &tensors,
                  bool includeMTP = false) {
  TempDir dir;
  dir.write("config.json", configText);
  dir.write("model.safetensors", buildSafetensors(tensors));
  llvm::Expected<std::unique_ptr<Checkpoint>> ckpt =
      Checkpoint::open(dir.path());
  if (!ckpt)
    return ckpt.takeError();
  llvm::Expected<ModelConfig> cfg = parseModelConfig((*ckpt)->configPath());
  if (!cfg)
    return cfg.takeError();
  return checkTensors(*cfg, **ckpt, includeMTP);
}

TEST(ExpectedTensorsTest, TinyLlama) {
  ModelConfig cfg = parseOrDie(kTinyLlama);
  std::vector<TensorSpec> specs = expectedTensors(cfg);
  ASSERT_EQ(specs.size(), 21u);
  EXPECT_EQ(specs.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  EXPECT_EQ(shapeOf(specs, "model.embed_tokens.weight"),
            (std::vector<int64_t>{100, 64}));
  EXPECT_EQ(shapeOf(specs, "model.layers.1.self_attn.q_proj.weight"),
            (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(shapeOf(specs, "model.layers.1.self_attn.k_proj.weight"),
            (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(shapeOf(specs, "model.layers.1.self_attn.o_proj.weight"),
            (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(shapeOf(specs, "model.layers.0.mlp.down_proj.weight"),
            (std::vector<int64_t>{64, 96}));
  EXPECT_EQ(shapeOf(specs, "model.layers.0.post_attention_layernorm.weight"),
            (std::vector<int64_t>{64}));
  EXPECT_EQ(countFP8(specs), 0u);

  ModelConfig tied = parseOrDie(
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,
          "intermediate_size":96,"num_hidden_layers":2,
          "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,
          "tie_word_embeddings":true})");
  std::vector<TensorSpec> tiedSpecs = expectedTensors(tied);
  EXPECT_EQ(tiedSpecs.size(), 20u);
  EXPECT_EQ(findSpec(tiedSpecs, "lm_head.weight"), nullptr);
}

TEST(ExpectedTensorsTest, LlamaAttentionBiasCoversOutput) {
  ModelConfig cfg = parseOrDie(
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,
          "intermediate_size":96,"num_hidden_layers":1,
          "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,
          "attention_bias":true})");
  std::vector<TensorSpec> specs = expectedTensors(cfg);
  EXPECT_EQ(shapeOf(specs, "model.layers.0.self_attn.k_proj.bias"),
            (std::vector<int64_t>{32}));
  EXPECT_EQ(shapeOf(specs, "model.layers.0.self_attn.o_proj.bias"),
            (std::vector<int64_t>{64}));
}

TEST(ExpectedTensorsTest, PublishedCheckpointCounts) {
  // Tensor counts of the published checkpoints.
  EXPECT_EQ(expectedTensors(parseOrDie(kLlama31_8B)).size(), 291u);
  EXPECT_EQ(expectedTensors(parseOrDie(kMistral7B)).size(), 291u);
  std::vector<TensorSpec> qwen = expectedTensors(parseOrDie(kQwen2_05B));
  EXPECT_EQ(qwen.size(), 290u);
  EXPECT_EQ(shapeOf(qwen, "model.layers.3.self_attn.v_proj.bias"),
            (std::vector<int64_t>{128}));
  EXPECT_EQ(findSpec(qwen, "model.layers.3.self_attn.o_proj.bias"), nullptr);
  std::vector<TensorSpec> mixtral = expectedTensors(parseOrDie(kMixtral8x7B));
  EXPECT_EQ(mixtral.size(), 995u);
  EXPECT_EQ(shapeOf(mixtral, "model.layers.5.block_sparse_moe.gate.weight"),
            (std::vector<int64_t>{8, 4096}));
  EXPECT_EQ(
      shapeOf(mixtral, "model.layers.5.block_sparse_moe.experts.7.w2.weight"),
      (std::vector<int64_t>{4096, 14336}));
  EXPECT_EQ(
      shapeOf(mixtral, "model.layers.5.block_sparse_moe.experts.7.w3.weight"),
      (std::vector<int64_t>{14336, 4096}));
}

TEST(ExpectedTensorsTest, DeepseekV3MatchesPublishedCheckpoint) {
  ModelConfig cfg = parseOrDie(kDeepseekV3);
  // The FP8 release holds 91,991 tensors, scale_inv siblings and the MTP
  // layer 61 included.
  std::vector<TensorSpec> all = expectedTensors(cfg, /*includeMTP=*/true);
  EXPECT_EQ(all.size() + countFP8(all), 91991u);
  std::vector<TensorSpec> main = expectedTensors(cfg);
  EXPECT_EQ(main.size() + countFP8(main), 90427u);
  EXPECT_EQ(findSpec(main, "model.layers.61.enorm.weight"), nullptr);

  auto expectShape = [&](const char *name, std::vector<int64_t> shape,
                         bool fp8) {
    const TensorSpec *spec = findSpec(all, name);
    ASSERT_NE(spec, nullptr) << name;
    EXPECT_EQ(std::vector<int64_t>(spec->shape.begin(), spec->shape.end()),
              shape)
        << name;
    EXPECT_EQ(spec->fp8, fp8) << name;
  };
  expectShape("model.embed_tokens.weight", {129280, 7168}, false);
  expectShape("lm_head.weight", {129280, 7168}, false);
  expectShape("model.layers.0.self_attn.q_a_proj.weight", {1536, 7168}, true);
  expectShape("model.layers.0.self_attn.q_a_layernorm.weight", {1536}, false);
  expectShape("model.layers.0.self_attn.q_b_proj.weight", {24576, 1536}, true);
  expectShape("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", {576, 7168},
              true);
  expectShape("model.layers.0.self_attn.kv_a_layernorm.weight", {512}, false);
  expectShape("model.layers.0.self_attn.kv_b_proj.weight", {32768, 512}, true);
  expectShape("model.layers.0.self_attn.o_proj.weight", {7168, 16384}, true);
  expectShape("model.layers.2.mlp.down_proj.weight", {7168, 18432}, true);
  expectShape("model.layers.3.mlp.gate.weight", {256, 7168}, false);
  expectShape("model.layers.3.mlp.gate.e_score_correction_bias", {256}, false);
  expectShape("model.layers.3.mlp.experts.255.gate_proj.weight", {2048, 7168},
              true);
  expectShape("model.layers.60.mlp.shared_experts.down_proj.weight",
              {7168, 2048}, true);
  expectShape("model.layers.61.eh_proj.weight", {7168, 14336}, false);
  expectShape("model.layers.61.shared_head.head.weight", {129280, 7168}, false);
  expectShape("model.layers.61.embed_tokens.weight", {129280, 7168}, false);
  expectShape("model.layers.61.mlp.experts.0.up_proj.weight", {2048, 7168},
              true);
  EXPECT_EQ(findSpec(all, "model.layers.2.mlp.gate.weight"), nullptr);
  EXPECT_EQ(findSpec(all, "model.layers.3.mlp.gate_proj.weight"), nullptr);
  EXPECT_EQ(findSpec(all, "model.layers.62.input_layernorm.weight"), nullptr);
  EXPECT_EQ(
      findSpec(all, "model.layers.3.mlp.gate.e_score_correction_bias")->dtype,
      DType::F32);
}

TEST(ExpectedTensorsTest, DeepseekWithoutQueryCompression) {
  ModelConfig cfg = parseOrDie(kTinyDeepseekV3);
  cfg.qLoraRank = 0;
  std::vector<TensorSpec> specs = expectedTensors(cfg);
  EXPECT_EQ(shapeOf(specs, "model.layers.0.self_attn.q_proj.weight"),
            (std::vector<int64_t>{4 * 24, 64}));
  EXPECT_EQ(findSpec(specs, "model.layers.0.self_attn.q_a_proj.weight"),
            nullptr);
  EXPECT_EQ(findSpec(specs, "model.layers.0.self_attn.q_a_layernorm.weight"),
            nullptr);
}

TEST(ExpectedTensorsTest, ValidCheckpointsPass) {
  for (const char *text : {kTinyLlama, kTinyMixtral, kTinyDeepseekV3}) {
    ModelConfig cfg = parseOrDie(text);
    std::vector<FakeTensor> tensors = tensorsFor(cfg);
    // Extra tensors (e.g. rotary buffers) are allowed.
    tensors.push_back(
        {"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {8}});
    llvm::Error err = check(text, tensors);
    EXPECT_FALSE(bool(err))
        << cfg.archName << ": " << llvm::toString(std::move(err));
  }
  ModelConfig cfg = parseOrDie(kTinyDeepseekV3);
  llvm::Error err = check(kTinyDeepseekV3, tensorsFor(cfg, true), true);
  EXPECT_FALSE(bool(err)) << llvm::toString(std::move(err));
}

TEST(ExpectedTensorsTest, MTPOnlyCheckedOnRequest) {
  ModelConfig cfg = parseOrDie(kTinyDeepseekV3);
  std::vector<FakeTensor> tensors = tensorsFor(cfg);
  llvm::Error err = check(kTinyDeepseekV3, tensors);
  EXPECT_FALSE(bool(err)) << llvm::toString(std::move(err));
  std::string message =
      errorOf(check(kTinyDeepseekV3, tensors, /*includeMTP=*/true));
  EXPECT_HAS(message, "missing tensor 'model.layers.3.eh_proj.weight' "
                      "(expected shape [64, 128])");
}

TEST(ExpectedTensorsTest, MissingTensor) {
  ModelConfig cfg = parseOrDie(kTinyDeepseekV3);
  std::vector<FakeTensor> tensors = tensorsFor(cfg);
  eraseNamed(tensors, "model.layers.1.mlp.experts.3.up_proj.weight");
  std::string message = errorOf(check(kTinyDeepseekV3, tensors));
  EXPECT_HAS(message, "does not match its config (DeepseekV3ForCausalLM): "
                      "missing tensor "
                      "'model.layers.1.mlp.experts.3.up_proj.weight' "
                      "(expected shape [24, 64])");
}

TEST(ExpectedTensorsTest, WrongShape) {
  ModelConfig cfg = parseOrDie(kTinyLlama);
  std::vector<FakeTensor> tensors = tensorsFor(cfg);
  tensorNamed(tensors, "model.layers.0.self_attn.k_proj.weight").shape = {64,
                                                                          64};
  std::string message = errorOf(check(kTinyLlama, tensors));
  EXPECT_HAS(message, "tensor 'model.layers.0.self_attn.k_proj.weight' has "
                      "shape [64, 64], expected [32, 64]");
}

TEST(ExpectedTensorsTest, FP8Problems) {
  ModelConfig cfg = parseOrDie(kTinyDeepseekV3);
  const std::string qa = "model.layers.0.self_attn.q_a_proj.weight";
  const std::string kvb = "model.layers.1.self_attn.kv_b_proj.weight";
  const std::string down = "model.layers.2.mlp.experts.0.down_proj.weight";
  const std::string up = "model.layers.2.mlp.shared_experts.up_proj.weight";
  const std::string bias = "model.layers.1.mlp.gate.e_score_correction_bias";
  const std::string gate = "model.layers.1.mlp.gate.weight";
  std::vector<FakeTensor> tensors = tensorsFor(cfg);
  tensorNamed(tensors, qa + "_scale_inv").shape = {1, 2};
  eraseNamed(tensors, kvb + "_scale_inv");
  tensorNamed(tensors, down).dtype = "BF16";
  tensorNamed(tensors, up + "_scale_inv").dtype = "BF16";
  tensorNamed(tensors, bias).dtype = "BF16";
  tensorNamed(tensors, gate).dtype = "F8_E4M3";
  std::string message = errorOf(check(kTinyDeepseekV3, tensors));
  EXPECT_HAS(message, "6 problems:");
  EXPECT_HAS(message, "scale tensor '" + qa +
                          "_scale_inv' has shape [1, 2], expected [2, 2] for "
                          "weight [48, 64] in 32x32 blocks");
  EXPECT_HAS(message, "FP8 tensor '" + kvb + "' has no scale tensor '" + kvb +
                          "_scale_inv'");
  EXPECT_HAS(message, "tensor '" + down + "' has dtype BF16, expected F8_E4M3");
  EXPECT_HAS(message, "scale tensor '" + up +
                          "_scale_inv' has dtype BF16, expected F32");
  EXPECT_HAS(message, "tensor '" + bias + "' has dtype BF16, expected F32");
  EXPECT_HAS(message, "tensor '" + gate +
                          "' has dtype F8_E4M3, but this tensor is never "
                          "quantized");
}

TEST(ExpectedTensorsTest, PartialEdgeBlocks) {
  // kv_b_proj is [4 * (16 + 12), 32] = [112, 32]: ceil(112 / 32) = 4 rows.
  ModelConfig cfg = parseOrDie(kTinyDeepseekV3);
  std::vector<FakeTensor> tensors = tensorsFor(cfg);
  EXPECT_EQ(tensorNamed(tensors,
                        "model.layers.0.self_attn.kv_b_proj.weight_scale_inv")
                .shape,
            (std::vector<int64_t>{4, 1}));
}

TEST(ExpectedTensorsTest, DTypeProblemsWithoutQuantization) {
  ModelConfig cfg = parseOrDie(kTinyLlama);
  std::vector<FakeTensor> tensors = tensorsFor(cfg);
  tensorNamed(tensors, "model.layers.0.mlp.up_proj.weight").dtype = "F8_E4M3";
  tensorNamed(tensors, "model.norm.weight").dtype = "I32";
  std::string message = errorOf(check(kTinyLlama, tensors));
  EXPECT_HAS(message, "tensor 'model.layers.0.mlp.up_proj.weight' has dtype "
                      "F8_E4M3, but config.json has no fp8 "
                      "quantization_config");
  EXPECT_HAS(message, "tensor 'model.norm.weight' has dtype I32, expected a "
                      "floating-point type");
}

TEST(ExpectedTensorsTest, ManyProblemsAreTruncated) {
  std::string message = errorOf(check(kTinyLlama, {{"unrelated", "F32", {1}}}));
  EXPECT_HAS(message, "21 problems:");
  EXPECT_HAS(message, "missing tensor 'model.embed_tokens.weight' (expected "
                      "shape [100, 64])");
  EXPECT_HAS(message, "... and 11 more");
  EXPECT_EQ(message.find("lm_head"), std::string::npos) << message;
}

/// Checks real checkpoints named by XFMR_TEST_CHECKPOINTS (folders separated
/// by ':'), e.g. downloaded Hugging Face models; skipped when unset.
TEST(ExpectedTensorsTest, RealCheckpoints) {
  const char *corpus = std::getenv("XFMR_TEST_CHECKPOINTS");
  if (!corpus || !*corpus)
    GTEST_SKIP() << "set XFMR_TEST_CHECKPOINTS=dir[:dir...] to check real "
                    "checkpoints";
  llvm::SmallVector<llvm::StringRef> dirs;
  llvm::StringRef(corpus).split(dirs, ':', -1, /*KeepEmpty=*/false);
  for (llvm::StringRef dir : dirs) {
    SCOPED_TRACE(dir.str());
    auto ckpt = Checkpoint::open(dir);
    ASSERT_TRUE(bool(ckpt)) << llvm::toString(ckpt.takeError());
    auto cfg = parseModelConfig((*ckpt)->configPath());
    ASSERT_TRUE(bool(cfg)) << llvm::toString(cfg.takeError());
    llvm::Error err = checkTensors(*cfg, **ckpt);
    EXPECT_FALSE(bool(err)) << llvm::toString(std::move(err));
  }
}

} // namespace
