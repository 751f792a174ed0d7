//===- Importer.cpp - Hugging Face checkpoint -> xfmr IR --------*- C++ -*-===//
//
// One ModelBuilder emits one entry function (prefill over a dynamic number of
// tokens, or decode over one). Shapes come from the checkpoint, which
// checkTensors has already matched against the config, so the builder only
// translates; the verifier re-checks the result.
//
//===----------------------------------------------------------------------===//

#include "import/Importer.h"
#include "import/Checkpoint.h"
#include "import/ExpectedTensors.h"
#include "import/ModelConfig.h"

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/Twine.h"

#include <cmath>

using namespace mlir;
using namespace xfmr;

namespace {

/// The MLIR element type of a checkpoint dtype, or null if weights of that
/// dtype cannot be expressed.
Type elementTypeOf(DType dtype, MLIRContext *context) {
  Builder b(context);
  switch (dtype) {
  case DType::F32:
    return b.getF32Type();
  case DType::F16:
    return b.getF16Type();
  case DType::BF16:
    return b.getBF16Type();
  case DType::F8_E4M3:
    return b.getType<Float8E4M3FNType>();
  case DType::F8_E5M2:
    return b.getType<Float8E5M2Type>();
  default:
    return {};
  }
}

RopeAttr ropeAttr(MLIRContext *context, const ModelConfig &config,
                  RopeStyle style, int64_t rotaryDim, int64_t rotaryOffset) {
  const RopeScaling &s = config.ropeScaling;
  RopeScalingKind kind = RopeScalingKind::none;
  switch (s.kind) {
  case xfmr::RopeScaling::Kind::None:
    kind = RopeScalingKind::none;
    break;
  case xfmr::RopeScaling::Kind::Linear:
    kind = RopeScalingKind::linear;
    break;
  case xfmr::RopeScaling::Kind::Llama3:
    kind = RopeScalingKind::llama3;
    break;
  case xfmr::RopeScaling::Kind::Yarn:
    kind = RopeScalingKind::yarn;
    break;
  }
  bool none = kind == RopeScalingKind::none;
  auto f = [](double v) { return APFloat(v); };
  // Parameters a scaling kind does not use keep their defaults, so the IR
  // shows only what matters.
  bool llama3 = kind == RopeScalingKind::llama3,
       yarn = kind == RopeScalingKind::yarn;
  return RopeAttr::get(
      context, f(config.ropeTheta), style, rotaryDim, rotaryOffset, kind,
      f(none ? 1.0 : s.factor), llama3 || yarn ? s.originalMaxPositions : 0,
      f(llama3 ? s.lowFreqFactor : 1.0), f(llama3 ? s.highFreqFactor : 4.0),
      f(yarn ? s.betaFast : 32.0), f(yarn ? s.betaSlow : 1.0),
      f(yarn ? s.mscale : 1.0), f(yarn ? s.mscaleAllDim : 0.0));
}

class ModelBuilder {
public:
  ModelBuilder(MLIRContext *context, const Checkpoint &checkpoint,
               const ModelConfig &config, int64_t capacity)
      : b(context), checkpoint(checkpoint), c(config), capacity(capacity) {}

  /// Emits entry function `name` over `tokens` tokens (dynamic for prefill).
  llvm::Error buildEntry(ModuleOp module, StringRef name, int64_t tokens);

  /// Emits `mtp`, DeepSeek-V3's multi-token-prediction module `index`
  /// (layer numLayers + index): from the main model's last hidden states
  /// h_i (before the final norm) and the next tokens t_{i+1}, the logits of
  /// t_{i+2}: eh_proj([enorm(embed(t)); hnorm(h)]), one decoder layer with its
  /// own cache, shared_head.norm and shared_head.head.
  llvm::Error buildMTP(ModuleOp module, int64_t index);

private:
  // Types.
  RankedTensorType act(ArrayRef<int64_t> trailing) {
    SmallVector<int64_t> shape{tokens};
    shape.append(trailing.begin(), trailing.end());
    return RankedTensorType::get(shape, b.getF32Type());
  }
  Type cacheType(int64_t layer) const { return cacheTypes[layer]; }

  // Weights.
  Value weight(const std::string &name);
  Value stackedWeight(const std::string &prefix, const std::string &suffix,
                      int64_t count);
  bool isFP8(Value weight) const {
    return isa<Float8E4M3FNType, Float8E5M2Type>(
        cast<RankedTensorType>(weight.getType()).getElementType());
  }
  ScaleLayoutAttr blockLayout() {
    return ScaleLayoutAttr::get(b.getContext(), ScaleKind::block,
                                {c.weightBlockRows, c.weightBlockCols});
  }

  // Building blocks.
  Value linear(Value x, const std::string &name, bool bias = false);
  Value rmsNorm(Value x, const std::string &name);
  Value swigluMLP(Value x, const std::string &prefix);
  Value gqaAttention(Value x, const std::string &prefix, int64_t layer);
  Value mlaAttention(Value x, const std::string &prefix, int64_t layer);
  Value mixtralMoE(Value x, const std::string &prefix);
  Value deepseekMoE(Value x, const std::string &prefix);
  Value decoderLayer(Value h, int64_t layer);
  void setLoc(const Twine &name) {
    b.setInsertionPointToEnd(b.getInsertionBlock());
    loc = NameLoc::get(b.getStringAttr(name));
  }

  void fail(const Twine &message) {
    if (error.empty())
      error = message.str();
  }

  OpBuilder b;
  const Checkpoint &checkpoint;
  const ModelConfig &c;
  int64_t capacity;
  int64_t tokens = ShapedType::kDynamic;
  Location loc = b.getUnknownLoc();
  Value start;
  SmallVector<Type> cacheTypes;
  SmallVector<Value> caches;
  std::string error;
};

Value ModelBuilder::weight(const std::string &name) {
  const TensorInfo *info = checkpoint.find(name);
  Type element = info ? elementTypeOf(info->dtype, b.getContext()) : Type();
  if (!info) {
    fail("tensor '" + name + "' is missing from " + checkpoint.dir());
    element = b.getF32Type();
  } else if (!element) {
    fail("tensor '" + name + "' has dtype " + dtypeName(info->dtype) +
         ", which xfmr cannot use as a weight (F32, F16, BF16, F8_E4M3, "
         "F8_E5M2 are supported)");
    element = b.getF32Type();
  }
  SmallVector<int64_t> shape = info ? info->shape : SmallVector<int64_t>{1};
  return WeightOp::create(b, loc, RankedTensorType::get(shape, element),
                            b.getStringAttr(name));
}

Value ModelBuilder::stackedWeight(const std::string &prefix,
                                  const std::string &suffix, int64_t count) {
  const TensorInfo *first = checkpoint.find(prefix + "0" + suffix);
  if (!first) {
    fail("tensor '" + prefix + "0" + suffix + "' is missing from " +
         checkpoint.dir());
    return weight(prefix + "0" + suffix);
  }
  // The stacked tensor needs one dtype and shape for all experts.
  for (int64_t e = 1; e < count; ++e) {
    std::string name = prefix + std::to_string(e) + suffix;
    const TensorInfo *info = checkpoint.find(name);
    if (!info || info->dtype != first->dtype || info->shape != first->shape)
      fail("tensor '" + name + "' differs in dtype or shape from '" + prefix +
           "0" + suffix + "'; experts must be alike to be stacked");
  }
  Type element = elementTypeOf(first->dtype, b.getContext());
  if (!element) {
    fail("tensor '" + prefix + "0" + suffix + "' has unsupported dtype " +
         dtypeName(first->dtype));
    element = b.getF32Type();
  }
  SmallVector<int64_t> shape{count};
  shape.append(first->shape.begin(), first->shape.end());
  return WeightOp::create(b, loc, RankedTensorType::get(shape, element),
                            b.getStringAttr(prefix + "*" + suffix));
}

Value ModelBuilder::linear(Value x, const std::string &name, bool bias) {
  Value w = weight(name + ".weight");
  auto wType = cast<RankedTensorType>(w.getType());
  auto xType = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> shape(xType.getShape());
  shape.back() = wType.getDimSize(0);
  auto resultType = RankedTensorType::get(shape, xType.getElementType());
  Value biasValue = bias ? weight(name + ".bias") : Value();
  Value scale;
  ScaleLayoutAttr layout;
  if (isFP8(w)) {
    scale = weight(name + ".weight_scale_inv");
    layout = blockLayout();
  }
  return LinearOp::create(b, loc, resultType, x, w, biasValue, scale, layout);
}

Value ModelBuilder::rmsNorm(Value x, const std::string &name) {
  return RMSNormOp::create(b, loc, x, weight(name + ".weight"),
                             b.getF64FloatAttr(c.rmsNormEps));
}

Value ModelBuilder::swigluMLP(Value x, const std::string &prefix) {
  Value gate = linear(x, prefix + "gate_proj");
  Value up = linear(x, prefix + "up_proj");
  Value act = SwiGLUOp::create(b, loc, gate, up);
  return linear(act, prefix + "down_proj");
}

Value ModelBuilder::gqaAttention(Value x, const std::string &prefix,
                                 int64_t layer) {
  int64_t d = c.headDim;
  Value q = linear(x, prefix + "q_proj", c.attentionBias);
  Value k = linear(x, prefix + "k_proj", c.attentionBias);
  Value v = linear(x, prefix + "v_proj", c.attentionBias);
  Value q3 = SplitHeadsOp::create(b, loc, act({c.numHeads, d}), q);
  Value k3 = SplitHeadsOp::create(b, loc, act({c.numKVHeads, d}), k);
  Value v3 = SplitHeadsOp::create(b, loc, act({c.numKVHeads, d}), v);
  RopeAttr rope = ropeAttr(b.getContext(), c, RopeStyle::rotate_half, 0, 0);
  Value qr = RopeOp::create(b, loc, q3, start, rope);
  Value kr = RopeOp::create(b, loc, k3, start, rope);
  IntegerAttr window;
  if (c.slidingWindow)
    window = b.getI64IntegerAttr(*c.slidingWindow);
  auto attn = AttentionOp::create(b, 
      loc, act({c.numHeads, d}), cacheType(layer), qr, kr, v3, caches[layer],
      start, b.getF64FloatAttr(1.0 / std::sqrt(double(d))), window,
      /*sinks=*/IntegerAttr());
  caches[layer] = attn.getNewCache();
  Value merged =
      MergeHeadsOp::create(b, loc, act({c.numHeads * d}), attn.getOutput());
  // Llama's attention_bias covers o_proj; Qwen2's biases stop at q/k/v.
  return linear(merged, prefix + "o_proj",
                c.attentionBias && c.arch == Architecture::Llama);
}

Value ModelBuilder::mlaAttention(Value x, const std::string &prefix,
                                 int64_t layer) {
  int64_t heads = c.numHeads, nope = c.qkNopeHeadDim, ropeDim = c.qkRopeHeadDim;
  int64_t rank = c.kvLoraRank;
  // Query: low-rank projection with its own norm, or one projection.
  Value q;
  if (c.qLoraRank > 0) {
    Value qa = linear(x, prefix + "q_a_proj");
    q = linear(rmsNorm(qa, prefix + "q_a_layernorm"), prefix + "q_b_proj");
  } else {
    q = linear(x, prefix + "q_proj");
  }
  Value q3 = SplitHeadsOp::create(b, loc, act({heads, nope + ropeDim}), q);
  // DeepSeek rotates interleaved pairs of the last qk_rope channels.
  Value qr = RopeOp::create(b, 
      loc, q3, start,
      ropeAttr(b.getContext(), c, RopeStyle::interleaved, ropeDim, nope));
  // Compressed KV: the normalized latent and the shared rotary key.
  Value kva = linear(x, prefix + "kv_a_proj_with_mqa");
  auto split =
      SplitOp::create(b, loc, TypeRange{act({rank}), act({ropeDim})}, kva);
  Value latent = rmsNorm(split.getResult(0), prefix + "kv_a_layernorm");
  Value kpe =
      SplitHeadsOp::create(b, loc, act({1, ropeDim}), split.getResult(1));
  Value kper = RopeOp::create(b, 
      loc, kpe, start,
      ropeAttr(b.getContext(), c, RopeStyle::interleaved, 0, 0));
  // Softmax scale, with YaRN's magnitude correction squared.
  double scale = 1.0 / std::sqrt(double(nope + ropeDim));
  if (c.ropeScaling.kind == xfmr::RopeScaling::Kind::Yarn) {
    double m =
        RopeAttr::yarnMscale(c.ropeScaling.factor, c.ropeScaling.mscaleAllDim);
    scale *= m * m;
  }
  Value kvB = weight(prefix + "kv_b_proj.weight");
  Value kvBScale;
  ScaleLayoutAttr layout;
  if (isFP8(kvB)) {
    kvBScale = weight(prefix + "kv_b_proj.weight_scale_inv");
    layout = blockLayout();
  }
  auto attn = MLAAttentionOp::create(b, 
      loc, act({heads, c.vHeadDim}), cacheType(layer), qr, latent, kper, kvB,
      kvBScale, caches[layer], start, b.getF64FloatAttr(scale), layout,
      /*sliding_window=*/IntegerAttr(), /*sinks=*/IntegerAttr());
  caches[layer] = attn.getNewCache();
  Value merged =
      MergeHeadsOp::create(b, loc, act({heads * c.vHeadDim}), attn.getOutput());
  return linear(merged, prefix + "o_proj");
}

Value ModelBuilder::mixtralMoE(Value x, const std::string &prefix) {
  int64_t k = c.numExpertsPerTok;
  auto gate = MoEGateOp::create(b, 
      loc, act({k}), RankedTensorType::get({tokens, k}, b.getI32Type()), x,
      weight(prefix + "gate.weight"), /*bias=*/Value(),
      ScoringFuncAttr::get(b.getContext(), ScoringFunc::softmax),
      b.getI64IntegerAttr(k), b.getI64IntegerAttr(1), b.getI64IntegerAttr(1),
      b.getBoolAttr(true), b.getF64FloatAttr(1.0));
  std::string experts = prefix + "experts.";
  Value w1 = stackedWeight(experts, ".w1.weight", c.numExperts);
  Value w3 = stackedWeight(experts, ".w3.weight", c.numExperts);
  Value w2 = stackedWeight(experts, ".w2.weight", c.numExperts);
  Value s1, s3, s2;
  ScaleLayoutAttr layout;
  if (isFP8(w1)) {
    s1 = stackedWeight(experts, ".w1.weight_scale_inv", c.numExperts);
    s3 = stackedWeight(experts, ".w3.weight_scale_inv", c.numExperts);
    s2 = stackedWeight(experts, ".w2.weight_scale_inv", c.numExperts);
    layout = blockLayout();
  }
  return MoEExpertsOp::create(b, loc, x.getType(), x, gate.getWeights(),
                              gate.getIndices(), w1, w3, w2, s1, s3, s2,
                              Value(), Value(), Value(), Value(), Value(),
                              Value(), layout, IntegerAttr());
}

Value ModelBuilder::deepseekMoE(Value x, const std::string &prefix) {
  int64_t k = c.numExpertsPerTok;
  // greedy: plain top-k; noaux_tc: group-limited top-k on biased scores.
  bool grouped = c.topkMethod == "noaux_tc";
  Value bias =
      grouped ? weight(prefix + "gate.e_score_correction_bias") : Value();
  auto scoring =
      c.scoringFunc == "sigmoid" ? ScoringFunc::sigmoid : ScoringFunc::softmax;
  auto gate = MoEGateOp::create(b, 
      loc, act({k}), RankedTensorType::get({tokens, k}, b.getI32Type()), x,
      weight(prefix + "gate.weight"), bias,
      ScoringFuncAttr::get(b.getContext(), scoring), b.getI64IntegerAttr(k),
      b.getI64IntegerAttr(grouped ? c.nGroup : 1),
      b.getI64IntegerAttr(grouped ? c.topkGroup : 1),
      b.getBoolAttr(c.normTopkProb), b.getF64FloatAttr(c.routedScalingFactor));
  std::string experts = prefix + "experts.";
  Value wg = stackedWeight(experts, ".gate_proj.weight", c.numExperts);
  Value wu = stackedWeight(experts, ".up_proj.weight", c.numExperts);
  Value wd = stackedWeight(experts, ".down_proj.weight", c.numExperts);
  Value sg, su, sd;
  ScaleLayoutAttr layout;
  if (isFP8(wg)) {
    sg = stackedWeight(experts, ".gate_proj.weight_scale_inv", c.numExperts);
    su = stackedWeight(experts, ".up_proj.weight_scale_inv", c.numExperts);
    sd = stackedWeight(experts, ".down_proj.weight_scale_inv", c.numExperts);
    layout = blockLayout();
  }
  Value routed = MoEExpertsOp::create(b, loc, x.getType(), x, gate.getWeights(),
                                      gate.getIndices(), wg, wu, wd, sg, su, sd,
                                      Value(), Value(), Value(), Value(),
                                      Value(), Value(), layout, IntegerAttr());
  if (c.numSharedExperts == 0)
    return routed;
  Value shared = swigluMLP(x, prefix + "shared_experts.");
  return AddOp::create(b, loc, routed, shared);
}

Value ModelBuilder::decoderLayer(Value h, int64_t layer) {
  std::string p = "model.layers." + std::to_string(layer) + ".";
  bool deepseek = c.arch == Architecture::DeepseekV3;

  setLoc(p + "self_attn");
  Value x = rmsNorm(h, p + "input_layernorm");
  Value attn = deepseek ? mlaAttention(x, p + "self_attn.", layer)
                        : gqaAttention(x, p + "self_attn.", layer);
  Value h1 = AddOp::create(b, loc, h, attn);

  setLoc(p + "mlp");
  Value y = rmsNorm(h1, p + "post_attention_layernorm");
  Value mlp;
  if (!c.isMoELayer(layer))
    mlp = swigluMLP(y, p + "mlp.");
  else if (deepseek)
    mlp = deepseekMoE(y, p + "mlp.");
  else
    mlp = mixtralMoE(y, p + "block_sparse_moe.");
  return AddOp::create(b, loc, h1, mlp);
}

llvm::Error ModelBuilder::buildEntry(ModuleOp module, StringRef name,
                                     int64_t numTokens) {
  tokens = numTokens;
  MLIRContext *context = b.getContext();
  cacheTypes.clear();
  for (int64_t layer = 0; layer < c.numLayers; ++layer) {
    if (c.arch == Architecture::DeepseekV3)
      cacheTypes.push_back(
          KVCacheType::get(context, b.getF32Type(), capacity, c.numHeads,
                           c.qkNopeHeadDim + c.qkRopeHeadDim, c.vHeadDim,
                           CacheLayout::token_major));
    else
      cacheTypes.push_back(KVCacheType::get(context, b.getF32Type(), capacity,
                                            c.numKVHeads, c.headDim, c.headDim,
                                            CacheLayout::token_major));
  }
  auto idsType = RankedTensorType::get({tokens}, b.getI32Type());
  SmallVector<Type> inputs{idsType, b.getIndexType()};
  inputs.append(cacheTypes.begin(), cacheTypes.end());
  SmallVector<Type> results{act({c.vocabSize})};
  results.append(cacheTypes.begin(), cacheTypes.end());

  b.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(b, NameLoc::get(b.getStringAttr(name)), name,
                                     b.getFunctionType(inputs, results));
  func->setAttr(kEntryAttrName, b.getStringAttr(name));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  Value ids = body->getArgument(0);
  start = body->getArgument(1);
  caches.assign(body->args_begin() + 2, body->args_end());

  setLoc("model.embed_tokens");
  Value table = weight("model.embed_tokens.weight");
  Value h = EmbeddingOp::create(b, loc, act({c.hiddenSize}), table, ids);
  for (int64_t layer = 0; layer < c.numLayers; ++layer)
    h = decoderLayer(h, layer);

  setLoc("lm_head");
  Value z = rmsNorm(h, "model.norm");
  Value logits;
  if (c.tieWordEmbeddings)
    logits = LinearOp::create(b, loc, act({c.vocabSize}), z, table, Value(),
                                Value(), ScaleLayoutAttr());
  else
    logits = linear(z, "lm_head");
  SmallVector<Value> returned{logits};
  returned.append(caches.begin(), caches.end());
  func::ReturnOp::create(b, loc, returned);
  if (!error.empty())
    return llvm::createStringError(error);
  return llvm::Error::success();
}

llvm::Error ModelBuilder::buildMTP(ModuleOp module, int64_t index) {
  tokens = ShapedType::kDynamic;
  MLIRContext *context = b.getContext();
  int64_t layer = c.numLayers + index;
  auto cacheType =
      KVCacheType::get(context, b.getF32Type(), capacity, c.numHeads,
                       c.qkNopeHeadDim + c.qkRopeHeadDim, c.vHeadDim,
                       CacheLayout::token_major);
  cacheTypes.assign(layer + 1, cacheType);
  auto idsType = RankedTensorType::get({tokens}, b.getI32Type());
  SmallVector<Type> inputs{idsType, act({c.hiddenSize}), b.getIndexType(),
                           cacheType};
  SmallVector<Type> results{act({c.vocabSize}), cacheType};
  b.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(b, NameLoc::get(b.getStringAttr("mtp")),
                                   "mtp", b.getFunctionType(inputs, results));
  func->setAttr(kEntryAttrName, b.getStringAttr("mtp"));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  Value ids = body->getArgument(0), hidden = body->getArgument(1);
  start = body->getArgument(2);
  caches.assign(layer + 1, Value());
  caches[layer] = body->getArgument(3);

  std::string p = "model.layers." + std::to_string(layer) + ".";
  setLoc(p + "eh_proj");
  Value table = weight(p + "embed_tokens.weight");
  Value embedded = EmbeddingOp::create(b, loc, act({c.hiddenSize}), table, ids);
  Value e = rmsNorm(embedded, p + "enorm");
  Value h = rmsNorm(hidden, p + "hnorm");
  // eh_proj reads [embedding; hidden]: its first hidden_size input columns
  // take the embedding, the rest the hidden state.
  Value ehProj = weight(p + "eh_proj.weight");
  auto half = RankedTensorType::get(
      {c.hiddenSize, c.hiddenSize},
      cast<RankedTensorType>(ehProj.getType()).getElementType());
  auto halves = SplitOp::create(b, loc, TypeRange{half, half}, ehProj);
  auto project = [&](Value x, Value w) -> Value {
    return LinearOp::create(b, loc, act({c.hiddenSize}), x, w, Value(), Value(),
                            ScaleLayoutAttr());
  };
  Value fromEmbedding = project(e, halves.getResult(0));
  Value fromHidden = project(h, halves.getResult(1));
  Value x = AddOp::create(b, loc, fromEmbedding, fromHidden);
  Value y = decoderLayer(x, layer);
  setLoc(p + "shared_head");
  Value z = rmsNorm(y, p + "shared_head.norm");
  Value logits = linear(z, p + "shared_head.head");
  func::ReturnOp::create(b, loc, ValueRange{logits, caches[layer]});
  if (!error.empty())
    return llvm::createStringError(error);
  return llvm::Error::success();
}

} // namespace

llvm::Expected<OwningOpRef<ModuleOp>>
xfmr::importModel(MLIRContext &context, const Checkpoint &checkpoint,
                  const ModelConfig &config, const ImportOptions &options) {
  context.loadDialect<XfmrDialect, func::FuncDialect>();
  if (config.arch == Architecture::DeepseekV3 && config.numExperts > 0 &&
      config.topkMethod == "group_limited_greedy")
    return llvm::createStringError(
        "topk_method 'group_limited_greedy' (DeepSeek-V2 group ranking by the "
        "best expert) is not supported; xfmr.moe_gate implements 'noaux_tc' "
        "(DeepSeek-V3) and 'greedy'");
  int64_t capacity =
      options.contextLength > 0 ? options.contextLength : config.maxPositions;
  if (capacity <= 0)
    return llvm::createStringError(
        "the context length is unknown: the config has no "
        "max_position_embeddings; pass a context length");
  // Positions are int32 in the runtime, and larger caches overflow sizes.
  if (capacity > kMaxContextLength)
    return llvm::createStringError(
        "the context length " + std::to_string(capacity) + " (" +
        (options.contextLength > 0 ? "--context"
                                   : "max_position_embeddings in the config") +
        ") exceeds " + std::to_string(kMaxContextLength) +
        ", the most the runtime supports; pass a smaller context length");

  OpBuilder b(&context);
  OwningOpRef<ModuleOp> module =
      ModuleOp::create(NameLoc::get(b.getStringAttr(checkpoint.dir())));
  SmallVector<NamedAttribute> info{
      b.getNamedAttr("architecture", b.getStringAttr(config.archName)),
      b.getNamedAttr("vocab_size", b.getI64IntegerAttr(config.vocabSize)),
      b.getNamedAttr("hidden_size", b.getI64IntegerAttr(config.hiddenSize)),
      b.getNamedAttr("num_layers", b.getI64IntegerAttr(config.numLayers)),
      b.getNamedAttr("context_length", b.getI64IntegerAttr(capacity)),
  };
  (*module)->setAttr("xfmr.model", b.getDictionaryAttr(info));

  ModelBuilder builder(&context, checkpoint, config, capacity);
  if (llvm::Error error =
          builder.buildEntry(*module, "prefill", ShapedType::kDynamic))
    return std::move(error);
  if (llvm::Error error = builder.buildEntry(*module, "decode", 1))
    return std::move(error);
  if (options.includeMTP && config.arch == Architecture::DeepseekV3)
    for (int64_t i = 0; i < config.numNextnPredictLayers; ++i)
      if (llvm::Error error = builder.buildMTP(*module, i))
        return std::move(error);
  return std::move(module);
}

llvm::Expected<OwningOpRef<ModuleOp>>
xfmr::importCheckpoint(MLIRContext &context, StringRef dir,
                       const ImportOptions &options) {
  llvm::Expected<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  if (!checkpoint)
    return checkpoint.takeError();
  llvm::Expected<ModelConfig> config =
      parseModelConfig((*checkpoint)->configPath());
  if (!config)
    return config.takeError();
  if (llvm::Error error =
          checkTensors(*config, **checkpoint, options.includeMTP))
    return std::move(error);
  llvm::Expected<OwningOpRef<ModuleOp>> module =
      importModel(context, **checkpoint, *config, options);
  if (!module)
    return llvm::createStringError(dir + ": " +
                                   llvm::toString(module.takeError()));
  // The verifier reports through diagnostics; collect them into the error.
  std::string diagnostics;
  {
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
      diagnostics += diag.str() + "\n";
      return success();
    });
    if (failed(verify(**module)))
      return llvm::createStringError(
          dir + ": the imported IR does not verify (a bug in xfmr-import): " +
          diagnostics);
  }
  return std::move(*module);
}
