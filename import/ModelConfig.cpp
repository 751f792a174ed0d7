//===- ModelConfig.cpp - Hugging Face config.json for supported LMs -------===//

#include "import/ModelConfig.h"
#include "import/ImportUtil.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <limits>
#include <vector>

using namespace llvm;

namespace xfmr {

namespace {

struct ArchEntry {
  Architecture arch;
  const char *className;
  const char *modelType;
};

constexpr ArchEntry kArchitectures[] = {
    {Architecture::Llama, "LlamaForCausalLM", "llama"},
    {Architecture::Mistral, "MistralForCausalLM", "mistral"},
    {Architecture::Qwen2, "Qwen2ForCausalLM", "qwen2"},
    {Architecture::Mixtral, "MixtralForCausalLM", "mixtral"},
    {Architecture::DeepseekV3, "DeepseekV3ForCausalLM", "deepseek_v3"},
};

/// Largest accepted size for any single dimension (hidden, vocab, heads, ...).
constexpr int64_t kMaxDim = int64_t(1) << 24;
/// Largest accepted number of transformer layers.
constexpr int64_t kMaxLayers = 1 << 16;
/// Bound on the number of tensors a config may imply, so a hostile config
/// cannot make expectedTensors() allocate without limit.
constexpr int64_t kMaxTensors = 2'000'000;

/// Renders a JSON value for a message, shortened if long.
std::string show(const json::Value &value) {
  std::string text;
  raw_string_ostream os(text);
  os << value;
  os.flush();
  if (text.size() > 60)
    text = text.substr(0, 57) + "...";
  return text;
}

std::string showNumber(double value) {
  std::string text;
  raw_string_ostream os(text);
  os << format("%g", value);
  return os.str();
}

/// Typed access to the members of one JSON object. Type errors are appended
/// to `problems` and the default is returned, so parsing continues and all
/// type errors are reported together.
class FieldReader {
public:
  FieldReader(const json::Object &object, std::vector<std::string> &problems,
              std::string prefix = "")
      : object(object), problems(problems), prefix(std::move(prefix)) {}

  std::string field(StringRef key) const { return prefix + key.str(); }

  /// The value of `key`; nullptr when absent or null (HF treats both alike).
  const json::Value *get(StringRef key) const {
    const json::Value *value = object.get(key);
    if (!value || value->kind() == json::Value::Null)
      return nullptr;
    return value;
  }
  bool has(StringRef key) const { return get(key) != nullptr; }

  std::optional<int64_t> optInt(StringRef key) {
    const json::Value *value = get(key);
    if (!value)
      return std::nullopt;
    if (std::optional<int64_t> result = value->getAsInteger())
      return result;
    typeError(key, "an integer", *value);
    return std::nullopt;
  }
  int64_t intOr(StringRef key, int64_t fallback) {
    return optInt(key).value_or(fallback);
  }
  int64_t requiredInt(StringRef key, StringRef hint = "") {
    if (!has(key)) {
      missing(key, hint);
      return 0;
    }
    return optInt(key).value_or(0);
  }

  std::optional<double> optDouble(StringRef key) {
    const json::Value *value = get(key);
    if (!value)
      return std::nullopt;
    if (std::optional<double> result = value->getAsNumber())
      return result;
    typeError(key, "a number", *value);
    return std::nullopt;
  }
  double doubleOr(StringRef key, double fallback) {
    return optDouble(key).value_or(fallback);
  }
  double requiredDouble(StringRef key) {
    if (!has(key)) {
      missing(key, "");
      return 0;
    }
    return optDouble(key).value_or(0);
  }

  bool boolOr(StringRef key, bool fallback) {
    const json::Value *value = get(key);
    if (!value)
      return fallback;
    if (std::optional<bool> result = value->getAsBoolean())
      return *result;
    typeError(key, "a boolean", *value);
    return fallback;
  }

  std::optional<std::string> optString(StringRef key) {
    const json::Value *value = get(key);
    if (!value)
      return std::nullopt;
    if (std::optional<StringRef> result = value->getAsString())
      return result->str();
    typeError(key, "a string", *value);
    return std::nullopt;
  }
  std::string stringOr(StringRef key, StringRef fallback) {
    return optString(key).value_or(fallback.str());
  }

  const json::Object *optObject(StringRef key) {
    const json::Value *value = get(key);
    if (!value)
      return nullptr;
    if (const json::Object *result = value->getAsObject())
      return result;
    typeError(key, "an object", *value);
    return nullptr;
  }

  void typeError(StringRef key, StringRef expected, const json::Value &value) {
    problems.push_back("field '" + field(key) + "' must be " + expected.str() +
                       ", got " + jsonKindName(value).str() + " " +
                       show(value));
  }

private:
  void missing(StringRef key, StringRef hint) {
    problems.push_back("missing required field '" + field(key) + "'" +
                       hint.str());
  }

  const json::Object &object;
  std::vector<std::string> &problems;
  std::string prefix;
};

std::string supportedList(bool classNames) {
  std::string result;
  for (const ArchEntry &entry : kArchitectures) {
    if (!result.empty())
      result += ", ";
    result += classNames ? entry.className : entry.modelType;
  }
  return result;
}

/// Picks the architecture from architectures[0], else model_type.
Expected<const ArchEntry *> resolveArchitecture(const json::Object &root,
                                                StringRef where) {
  auto fail = [&](const Twine &message) -> Error {
    return createStringError(inconvertibleErrorCode(), where + ": " + message);
  };
  if (const json::Value *archs = root.get("architectures");
      archs && archs->kind() != json::Value::Null) {
    const json::Array *list = archs->getAsArray();
    if (!list)
      return fail("field 'architectures' must be an array of strings, got " +
                  jsonKindName(*archs) + " " + show(*archs));
    if (!list->empty()) {
      std::optional<StringRef> name = list->front().getAsString();
      if (!name)
        return fail("field 'architectures' must be an array of strings, got " +
                    show(*archs));
      for (const ArchEntry &entry : kArchitectures)
        if (*name == entry.className)
          return &entry;
      return fail("unsupported architecture '" + *name +
                  "' (supported: " + supportedList(true) + ")");
    }
  }
  const json::Value *modelType = root.get("model_type");
  if (!modelType || modelType->kind() == json::Value::Null)
    return fail("neither 'architectures' nor 'model_type' names the "
                "architecture (supported: " +
                supportedList(true) + ")");
  std::optional<StringRef> name = modelType->getAsString();
  if (!name)
    return fail("field 'model_type' must be a string, got " +
                jsonKindName(*modelType) + " " + show(*modelType));
  for (const ArchEntry &entry : kArchitectures)
    if (*name == entry.modelType)
      return &entry;
  return fail("unsupported model_type '" + *name +
              "' (supported: " + supportedList(false) + "; architectures " +
              supportedList(true) + ")");
}

/// Reads `rope_scaling` (or transformers v5 `rope_parameters`).
void readRopeScaling(const json::Object &rope, StringRef fieldName,
                     int64_t maxPositions, RopeScaling &out,
                     std::vector<std::string> &problems) {
  FieldReader reader(rope, problems, fieldName.str() + ".");
  std::optional<std::string> type = reader.optString("rope_type");
  if (!type && !reader.has("rope_type"))
    type = reader.optString("type");
  if (!type) {
    if (!reader.has("rope_type") && !reader.has("type") &&
        fieldName == "rope_scaling")
      problems.push_back("field 'rope_scaling' has neither 'rope_type' nor "
                         "'type'");
    return;
  }
  if (*type == "default")
    return;
  if (*type == "linear") {
    out.kind = RopeScaling::Kind::Linear;
    out.factor = reader.requiredDouble("factor");
  } else if (*type == "llama3") {
    out.kind = RopeScaling::Kind::Llama3;
    out.factor = reader.requiredDouble("factor");
    out.lowFreqFactor = reader.requiredDouble("low_freq_factor");
    out.highFreqFactor = reader.requiredDouble("high_freq_factor");
    out.originalMaxPositions =
        reader.requiredInt("original_max_position_embeddings");
  } else if (*type == "yarn") {
    out.kind = RopeScaling::Kind::Yarn;
    out.factor = reader.requiredDouble("factor");
    out.betaFast = reader.doubleOr("beta_fast", 32);
    out.betaSlow = reader.doubleOr("beta_slow", 1);
    out.mscale = reader.doubleOr("mscale", 1);
    out.mscaleAllDim = reader.doubleOr("mscale_all_dim", 0);
    out.attentionFactor = reader.doubleOr("attention_factor", 0);
    out.originalMaxPositions =
        reader.intOr("original_max_position_embeddings", maxPositions);
  } else {
    problems.push_back("field '" + fieldName.str() +
                       "' has unsupported type '" + *type +
                       "' (supported: default, linear, llama3, yarn)");
  }
}

/// Validation after all fields were read; appends to `problems`.
class Validator {
public:
  explicit Validator(std::vector<std::string> &problems) : problems(problems) {}

  void positive(StringRef field, int64_t value, int64_t limit = kMaxDim) {
    if (value <= 0)
      add("field '" + field.str() + "' must be positive, got " +
          std::to_string(value));
    else if (value > limit)
      add("field '" + field.str() + "' is " + std::to_string(value) +
          ", above the supported limit of " + std::to_string(limit));
  }
  void nonNegative(StringRef field, int64_t value, int64_t limit = kMaxDim) {
    if (value < 0)
      add("field '" + field.str() + "' must not be negative, got " +
          std::to_string(value));
    else if (value > limit)
      add("field '" + field.str() + "' is " + std::to_string(value) +
          ", above the supported limit of " + std::to_string(limit));
  }
  void positiveFinite(StringRef field, double value) {
    if (!(value > 0) || !std::isfinite(value))
      add("field '" + field.str() + "' must be a positive finite number, got " +
          showNumber(value));
  }
  void nonNegativeFinite(StringRef field, double value) {
    if (!(value >= 0) || !std::isfinite(value))
      add("field '" + field.str() +
          "' must be a non-negative finite number, got " + showNumber(value));
  }
  void even(StringRef field, int64_t value) {
    if (value > 0 && value % 2 != 0)
      add("field '" + field.str() +
          "' must be even for rotary embeddings, "
          "got " +
          std::to_string(value));
  }
  void oneOf(StringRef field, StringRef value, ArrayRef<StringRef> allowed) {
    if (is_contained(allowed, value))
      return;
    std::string list;
    for (StringRef option : allowed)
      list += (list.empty() ? "" : ", ") + option.str();
    add("field '" + field.str() + "' has unsupported value '" + value.str() +
        "' (supported: " + list + ")");
  }
  void add(std::string problem) { problems.push_back(std::move(problem)); }

private:
  std::vector<std::string> &problems;
};

} // namespace

StringRef architectureName(Architecture arch) {
  for (const ArchEntry &entry : kArchitectures)
    if (entry.arch == arch)
      return entry.className;
  return "unknown";
}

StringRef ropeScalingKindName(RopeScaling::Kind kind) {
  switch (kind) {
  case RopeScaling::Kind::None:
    return "none";
  case RopeScaling::Kind::Linear:
    return "linear";
  case RopeScaling::Kind::Llama3:
    return "llama3";
  case RopeScaling::Kind::Yarn:
    return "yarn";
  }
  return "unknown";
}

bool ModelConfig::isMoELayer(int64_t layer) const {
  if (numExperts <= 0 || layer < 0)
    return false;
  if (arch == Architecture::Mixtral)
    return true;
  if (arch != Architecture::DeepseekV3)
    return false;
  return layer >= firstKDenseReplace && moeLayerFreq > 0 &&
         layer % moeLayerFreq == 0;
}

std::string ModelConfig::summary() const {
  std::string text;
  raw_string_ostream os(text);
  os << archName << ": " << numLayers << " layers, hidden " << hiddenSize
     << ", vocab " << vocabSize << ", max positions " << maxPositions << "; ";
  if (arch == Architecture::DeepseekV3) {
    os << numHeads << " MLA heads (q_lora ";
    if (qLoraRank)
      os << qLoraRank;
    else
      os << "none";
    os << ", kv_lora " << kvLoraRank << ", nope " << qkNopeHeadDim << ", rope "
       << qkRopeHeadDim << ", v " << vHeadDim << ")";
  } else {
    os << numHeads << " heads (" << numKVHeads << " kv, head_dim " << headDim
       << ")";
    if (attentionBias)
      os << " with bias";
  }
  if (slidingWindow)
    os << ", sliding window " << *slidingWindow;
  os << "; ";
  if (numExperts > 0) {
    os << "MoE " << numExperts << " experts, top-" << numExpertsPerTok
       << ", width " << moeIntermediateSize;
    if (numSharedExperts)
      os << ", " << numSharedExperts << " shared";
    if (arch == Architecture::DeepseekV3)
      os << ", top-" << topkGroup << " of " << nGroup << " groups, "
         << scoringFunc << "/" << topkMethod << ", scale "
         << format("%g", routedScalingFactor) << ", dense below layer "
         << firstKDenseReplace << ", every " << moeLayerFreq << ", dense width "
         << intermediateSize;
  } else {
    os << "MLP width " << intermediateSize;
  }
  os << "; rope theta " << format("%g", ropeTheta);
  if (ropeScaling.kind != RopeScaling::Kind::None)
    os << " " << ropeScalingKindName(ropeScaling.kind) << " x"
       << format("%g", ropeScaling.factor);
  if (ropeScaling.originalMaxPositions)
    os << " (original " << ropeScaling.originalMaxPositions << ")";
  os << "; rms eps " << format("%g", rmsNormEps);
  if (tieWordEmbeddings)
    os << "; tied embeddings";
  if (fp8Weights)
    os << "; FP8 E4M3 weights, blocks " << weightBlockRows << "x"
       << weightBlockCols;
  if (numNextnPredictLayers)
    os << "; " << numNextnPredictLayers << " MTP layer(s)";
  return os.str();
}

Expected<ModelConfig> parseModelConfig(StringRef configJsonPath) {
  Expected<json::Value> json = readJsonFile(configJsonPath);
  if (!json)
    return json.takeError();
  return parseModelConfig(*json, configJsonPath);
}

Expected<ModelConfig> parseModelConfig(const json::Value &json,
                                       StringRef source) {
  std::string where = "config '" + source.str() + "'";
  const json::Object *root = json.getAsObject();
  if (!root)
    return createStringError(inconvertibleErrorCode(),
                             where + ": top level is a JSON " +
                                 jsonKindName(json) + ", expected an object");
  Expected<const ArchEntry *> entry = resolveArchitecture(*root, where);
  if (!entry)
    return entry.takeError();

  ModelConfig cfg;
  cfg.arch = (*entry)->arch;
  cfg.archName = (*entry)->className;
  const Architecture arch = cfg.arch;
  const bool isDeepseek = arch == Architecture::DeepseekV3;

  std::vector<std::string> problems;
  FieldReader reader(*root, problems);

  // Sizes shared by all architectures.
  cfg.hiddenSize = reader.requiredInt("hidden_size");
  cfg.intermediateSize = reader.requiredInt("intermediate_size");
  cfg.numLayers = reader.requiredInt("num_hidden_layers");
  cfg.numHeads = reader.requiredInt("num_attention_heads");
  cfg.vocabSize = reader.requiredInt("vocab_size");
  cfg.numKVHeads = reader.intOr("num_key_value_heads", cfg.numHeads);
  std::optional<int64_t> headDim = reader.optInt("head_dim");

  int64_t defaultMaxPositions = 2048;
  double defaultEps = 1e-6, defaultTheta = 10000;
  switch (arch) {
  case Architecture::Llama:
    break;
  case Architecture::Mistral:
    defaultMaxPositions = 4096 * 32;
    break;
  case Architecture::Qwen2:
    defaultMaxPositions = 32768;
    break;
  case Architecture::Mixtral:
    defaultMaxPositions = 4096 * 32;
    defaultEps = 1e-5;
    defaultTheta = 1e6;
    break;
  case Architecture::DeepseekV3:
    defaultMaxPositions = 4096;
    break;
  }
  cfg.maxPositions =
      reader.intOr("max_position_embeddings", defaultMaxPositions);
  cfg.rmsNormEps = reader.doubleOr("rms_norm_eps", defaultEps);
  cfg.tieWordEmbeddings = reader.boolOr("tie_word_embeddings", false);

  // RoPE: `rope_theta`/`rope_scaling`, or transformers v5 `rope_parameters`.
  const json::Object *ropeParameters = reader.optObject("rope_parameters");
  std::optional<double> theta = reader.optDouble("rope_theta");
  if (!theta && ropeParameters)
    theta = FieldReader(*ropeParameters, problems, "rope_parameters.")
                .optDouble("rope_theta");
  cfg.ropeTheta = theta.value_or(defaultTheta);
  if (const json::Object *rope = reader.optObject("rope_scaling"))
    readRopeScaling(*rope, "rope_scaling", cfg.maxPositions, cfg.ropeScaling,
                    problems);
  else if (ropeParameters)
    readRopeScaling(*ropeParameters, "rope_parameters", cfg.maxPositions,
                    cfg.ropeScaling, problems);

  if (std::optional<std::string> act = reader.optString("hidden_act");
      act && *act != "silu")
    problems.push_back("field 'hidden_act' has unsupported value '" + *act +
                       "' (supported: silu)");
  if (std::optional<std::string> act = reader.optString("hidden_activation");
      act && *act != "silu")
    problems.push_back("field 'hidden_activation' has unsupported value '" +
                       *act + "' (supported: silu)");

  // Architecture-specific fields.
  bool attentionBiasField = reader.boolOr("attention_bias", false);
  switch (arch) {
  case Architecture::Llama:
    cfg.attentionBias = attentionBiasField;
    if (reader.boolOr("mlp_bias", false))
      problems.push_back("field 'mlp_bias' is true, which is not supported");
    break;
  case Architecture::Mistral:
    // MistralConfig defaults to a 4096 window; null disables it.
    if (!root->get("sliding_window"))
      cfg.slidingWindow = 4096;
    else
      cfg.slidingWindow = reader.optInt("sliding_window");
    break;
  case Architecture::Qwen2:
    cfg.attentionBias = true;
    if (reader.boolOr("use_sliding_window", false))
      problems.push_back("field 'use_sliding_window' is true, which is not "
                         "supported for Qwen2ForCausalLM");
    break;
  case Architecture::Mixtral:
    cfg.slidingWindow = reader.optInt("sliding_window");
    cfg.numExperts = reader.requiredInt("num_local_experts");
    cfg.numExpertsPerTok = reader.intOr("num_experts_per_tok", 2);
    cfg.moeIntermediateSize = cfg.intermediateSize;
    cfg.scoringFunc = "softmax";
    cfg.topkMethod = "greedy";
    cfg.normTopkProb = true;
    break;
  case Architecture::DeepseekV3:
    if (attentionBiasField)
      problems.push_back("field 'attention_bias' is true, which is not "
                         "supported for DeepseekV3ForCausalLM");
    if (!root->get("q_lora_rank"))
      problems.push_back("missing required field 'q_lora_rank' (use null for "
                         "no query compression)");
    cfg.qLoraRank = reader.intOr("q_lora_rank", 0);
    cfg.kvLoraRank = reader.requiredInt("kv_lora_rank");
    cfg.qkNopeHeadDim = reader.requiredInt("qk_nope_head_dim");
    cfg.qkRopeHeadDim = reader.requiredInt("qk_rope_head_dim");
    cfg.vHeadDim = reader.requiredInt("v_head_dim");
    cfg.numExperts = reader.requiredInt("n_routed_experts");
    cfg.moeIntermediateSize = reader.requiredInt("moe_intermediate_size");
    cfg.numSharedExperts = reader.intOr("n_shared_experts", 0);
    cfg.numExpertsPerTok = reader.intOr("num_experts_per_tok", 8);
    cfg.nGroup = reader.intOr("n_group", 8);
    cfg.topkGroup = reader.intOr("topk_group", 4);
    cfg.scoringFunc = reader.stringOr("scoring_func", "sigmoid");
    cfg.topkMethod = reader.stringOr("topk_method", "noaux_tc");
    cfg.normTopkProb = reader.boolOr("norm_topk_prob", true);
    cfg.routedScalingFactor = reader.doubleOr("routed_scaling_factor", 2.5);
    cfg.firstKDenseReplace = reader.intOr("first_k_dense_replace", 0);
    cfg.moeLayerFreq = reader.intOr("moe_layer_freq", 1);
    cfg.numNextnPredictLayers = reader.intOr("num_nextn_predict_layers", 0);
    // MLA: every head has its own keys and values after decompression.
    cfg.numKVHeads = cfg.numHeads;
    cfg.headDim = cfg.qkNopeHeadDim + cfg.qkRopeHeadDim;
    break;
  }

  // FP8 block quantization.
  if (const json::Object *quant = reader.optObject("quantization_config")) {
    FieldReader q(*quant, problems, "quantization_config.");
    std::optional<std::string> method = q.optString("quant_method");
    if (!method)
      problems.push_back("field 'quantization_config' has no 'quant_method'");
    else if (*method != "fp8")
      problems.push_back("field 'quantization_config.quant_method' has "
                         "unsupported value '" +
                         *method + "' (supported: fp8)");
    std::string fmt = q.stringOr("fmt", "e4m3");
    if (fmt != "e4m3")
      problems.push_back("field 'quantization_config.fmt' has unsupported "
                         "value '" +
                         fmt + "' (supported: e4m3)");
    std::string scheme = q.stringOr("activation_scheme", "dynamic");
    if (scheme != "dynamic")
      problems.push_back("field 'quantization_config.activation_scheme' has "
                         "unsupported value '" +
                         scheme + "' (supported: dynamic)");
    if (const json::Value *block = q.get("weight_block_size")) {
      const json::Array *dims = block->getAsArray();
      std::optional<int64_t> rows, cols;
      if (dims && dims->size() == 2) {
        rows = (*dims)[0].getAsInteger();
        cols = (*dims)[1].getAsInteger();
      }
      if (!rows || !cols)
        problems.push_back("field 'quantization_config.weight_block_size' "
                           "must be an array of two integers, got " +
                           show(*block));
      else if (*rows <= 0 || *cols <= 0 || *rows > kMaxDim || *cols > kMaxDim)
        problems.push_back("field 'quantization_config.weight_block_size' "
                           "must hold two positive sizes, got " +
                           show(*block));
      else {
        cfg.weightBlockRows = *rows;
        cfg.weightBlockCols = *cols;
      }
    } else {
      problems.push_back("field 'quantization_config' has no "
                         "'weight_block_size' (per-tensor FP8 is not "
                         "supported)");
    }
    cfg.fp8Weights = true;
  }

  // Report type errors before range checks, which would only repeat them.
  if (!problems.empty())
    return joinProblems(where, problems);

  Validator check(problems);
  check.positive("hidden_size", cfg.hiddenSize);
  check.positive("intermediate_size", cfg.intermediateSize);
  check.positive("num_hidden_layers", cfg.numLayers, kMaxLayers);
  check.positive("num_attention_heads", cfg.numHeads);
  check.positive("vocab_size", cfg.vocabSize);
  check.positive("max_position_embeddings", cfg.maxPositions,
                 std::numeric_limits<int64_t>::max());
  check.positiveFinite("rms_norm_eps", cfg.rmsNormEps);
  check.positiveFinite("rope_theta", cfg.ropeTheta);

  if (!isDeepseek) {
    check.positive("num_key_value_heads", cfg.numKVHeads);
    if (headDim) {
      check.positive("head_dim", *headDim);
      cfg.headDim = *headDim;
    } else if (cfg.numHeads > 0 && cfg.hiddenSize > 0) {
      if (cfg.hiddenSize % cfg.numHeads != 0)
        check.add("field 'hidden_size' (" + std::to_string(cfg.hiddenSize) +
                  ") is not divisible by 'num_attention_heads' (" +
                  std::to_string(cfg.numHeads) + ") and 'head_dim' is absent");
      else
        cfg.headDim = cfg.hiddenSize / cfg.numHeads;
    }
    check.even("head_dim", cfg.headDim);
    if (cfg.numHeads > 0 && cfg.numKVHeads > 0 &&
        cfg.numHeads % cfg.numKVHeads != 0)
      check.add("field 'num_key_value_heads' (" +
                std::to_string(cfg.numKVHeads) +
                ") does not divide 'num_attention_heads' (" +
                std::to_string(cfg.numHeads) + ")");
  }
  if (cfg.slidingWindow)
    check.positive("sliding_window", *cfg.slidingWindow,
                   std::numeric_limits<int64_t>::max());

  const RopeScaling &rope = cfg.ropeScaling;
  if (rope.kind != RopeScaling::Kind::None) {
    if (!(rope.factor >= 1) || !std::isfinite(rope.factor))
      check.add("field 'rope_scaling.factor' must be a finite number >= 1, "
                "got " +
                showNumber(rope.factor));
    if (rope.kind != RopeScaling::Kind::Linear)
      check.positive("rope_scaling.original_max_position_embeddings",
                     rope.originalMaxPositions,
                     std::numeric_limits<int64_t>::max());
  }
  if (rope.kind == RopeScaling::Kind::Llama3) {
    check.positiveFinite("rope_scaling.low_freq_factor", rope.lowFreqFactor);
    check.positiveFinite("rope_scaling.high_freq_factor", rope.highFreqFactor);
    if (rope.highFreqFactor <= rope.lowFreqFactor)
      check.add("field 'rope_scaling.high_freq_factor' (" +
                showNumber(rope.highFreqFactor) +
                ") must exceed 'rope_scaling.low_freq_factor' (" +
                showNumber(rope.lowFreqFactor) + ")");
  }
  if (rope.kind == RopeScaling::Kind::Yarn) {
    check.positiveFinite("rope_scaling.beta_fast", rope.betaFast);
    check.positiveFinite("rope_scaling.beta_slow", rope.betaSlow);
    check.nonNegativeFinite("rope_scaling.mscale", rope.mscale);
    check.nonNegativeFinite("rope_scaling.mscale_all_dim", rope.mscaleAllDim);
    check.nonNegativeFinite("rope_scaling.attention_factor",
                            rope.attentionFactor);
  }

  const char *expertsField =
      isDeepseek ? "n_routed_experts" : "num_local_experts";
  if (arch == Architecture::Mixtral || isDeepseek) {
    check.positive(expertsField, cfg.numExperts);
    check.positive("num_experts_per_tok", cfg.numExpertsPerTok);
    if (cfg.numExperts > 0 && cfg.numExpertsPerTok > cfg.numExperts)
      check.add("field 'num_experts_per_tok' (" +
                std::to_string(cfg.numExpertsPerTok) + ") exceeds '" +
                expertsField + "' (" + std::to_string(cfg.numExperts) + ")");
  }
  if (isDeepseek) {
    check.nonNegative("q_lora_rank", cfg.qLoraRank);
    check.positive("kv_lora_rank", cfg.kvLoraRank);
    check.positive("qk_nope_head_dim", cfg.qkNopeHeadDim);
    check.positive("qk_rope_head_dim", cfg.qkRopeHeadDim);
    check.even("qk_rope_head_dim", cfg.qkRopeHeadDim);
    check.positive("v_head_dim", cfg.vHeadDim);
    check.positive("moe_intermediate_size", cfg.moeIntermediateSize);
    check.nonNegative("n_shared_experts", cfg.numSharedExperts);
    check.positive("n_group", cfg.nGroup);
    check.positive("topk_group", cfg.topkGroup);
    check.nonNegative("first_k_dense_replace", cfg.firstKDenseReplace,
                      kMaxLayers);
    check.positive("moe_layer_freq", cfg.moeLayerFreq, kMaxLayers);
    check.nonNegative("num_nextn_predict_layers", cfg.numNextnPredictLayers,
                      kMaxLayers);
    check.positiveFinite("routed_scaling_factor", cfg.routedScalingFactor);
    check.oneOf("scoring_func", cfg.scoringFunc, {"sigmoid", "softmax"});
    check.oneOf("topk_method", cfg.topkMethod,
                {"noaux_tc", "greedy", "group_limited_greedy"});
    if (cfg.numExperts > 0 && cfg.nGroup > 0) {
      if (cfg.numExperts % cfg.nGroup != 0)
        check.add("field 'n_group' (" + std::to_string(cfg.nGroup) +
                  ") does not divide 'n_routed_experts' (" +
                  std::to_string(cfg.numExperts) + ")");
      else if (cfg.topkGroup > cfg.nGroup)
        check.add("field 'topk_group' (" + std::to_string(cfg.topkGroup) +
                  ") exceeds 'n_group' (" + std::to_string(cfg.nGroup) + ")");
      else if (cfg.topkGroup > 0 && cfg.topkMethod != "greedy" &&
               cfg.numExpertsPerTok >
                   cfg.topkGroup * (cfg.numExperts / cfg.nGroup))
        check.add(
            "field 'num_experts_per_tok' (" +
            std::to_string(cfg.numExpertsPerTok) + ") exceeds the " +
            std::to_string(cfg.topkGroup * (cfg.numExperts / cfg.nGroup)) +
            " experts in 'topk_group' (" + std::to_string(cfg.topkGroup) +
            ") groups");
    }
  }

  // Bound the total tensor count (sizes are already capped individually).
  if (problems.empty()) {
    int64_t layers = cfg.numLayers + cfg.numNextnPredictLayers;
    int64_t perLayer = 24 + 3 * cfg.numExperts;
    if (layers * perLayer > kMaxTensors)
      check.add("configuration implies about " +
                std::to_string(layers * perLayer) +
                " tensors, above the supported limit of " +
                std::to_string(kMaxTensors));
  }

  if (!problems.empty())
    return joinProblems(where, problems);
  return cfg;
}

} // namespace xfmr
