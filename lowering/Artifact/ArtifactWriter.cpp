//===- ArtifactWriter.cpp - pack code, weights and manifest -----*- C++ -*-===//

#include "lowering/Artifact/ArtifactWriter.h"
#include "lowering/Common/MemoryPlan.h"

#include "dialects/Xfmr/XfmrOps.h"
#include "import/Checkpoint.h"
#include "xfmr/runtime/ArtifactFormat.h"
#include "xfmr/runtime/Checksum.h"
#include "xfmr/runtime/OutputFile.h"
#include "xfmr/runtime/Version.h"
#include "xfmr/runtime/WeightPacking.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>
#include <map>
#include <set>
#include <tuple>

using namespace mlir;
using namespace xfmr;

namespace {

std::string dtypeOf(Type type) {
  if (type.isF32())
    return "f32";
  if (type.isBF16())
    return "bf16";
  if (type.isF16())
    return "f16";
  if (isa<Float8E4M3FNType>(type))
    return "f8e4m3fn";
  if (isa<Float8E4M3FNUZType>(type))
    return "f8e4m3fnuz";
  if (isa<Float8E5M2Type>(type))
    return "f8e5m2";
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

/// The packing plan entry of a weight slot (see WeightPacking.h).
runtime::PackedTensor packedTensorOf(WeightSlotAttr slot) {
  auto type = cast<RankedTensorType>(slot.getType());
  runtime::PackedTensor t;
  t.name = slot.getSource().getValue().str();
  t.offset = slot.getOffset();
  t.bytes = slot.getBytes();
  t.dtype = dtypeOf(type.getElementType());
  t.shape.assign(type.getShape().begin(), type.getShape().end());
  t.panel = slot.getPanel();
  auto setSource = [&](Type sourceType) {
    auto source = cast<RankedTensorType>(sourceType);
    t.sourceDtype = dtypeOf(source.getElementType());
    t.sourceShape.assign(source.getShape().begin(), source.getShape().end());
  };
  if (auto quantized =
          dyn_cast_or_null<QuantizedWeightAttr>(slot.getTransform())) {
    t.transform = ("fp8_" + stringifyQuantizedPart(quantized.getPart())).str();
    setSource(quantized.getSourceType());
    t.blockRows = quantized.getLayout().getBlock()[0];
    t.blockCols = quantized.getLayout().getBlock()[1];
  }
  if (auto fold = dyn_cast_or_null<FoldedWeightAttr>(slot.getTransform())) {
    t.transform = ("mla_" + stringifyMLAFold(fold.getKind())).str();
    setSource(fold.getSourceType());
    t.heads = fold.getHeads();
    t.nope = fold.getNope();
    t.rope = fold.getRope();
    t.valueDim = fold.getValueDim();
    if (StringAttr kvB = fold.getKvB()) {
      auto kvBType = cast<RankedTensorType>(fold.getKvBType());
      t.kvB = kvB.getValue().str();
      t.kvBDtype = dtypeOf(kvBType.getElementType());
      t.kvBShape.assign(kvBType.getShape().begin(), kvBType.getShape().end());
    }
  }
  return t;
}

llvm::json::Array jsonShape(const std::vector<int64_t> &shape) {
  llvm::json::Array array;
  for (int64_t size : shape)
    array.push_back(size);
  return array;
}

/// The manifest entry of a tensor: where it lies and how xfmr-pack makes it.
llvm::json::Object tensorJson(const runtime::PackedTensor &t) {
  llvm::json::Object tensor{{"name", t.name},
                            {"offset", int64_t(t.offset)},
                            {"bytes", int64_t(t.bytes)},
                            {"dtype", t.dtype},
                            {"shape", jsonShape(t.shape)}};
  if (t.panel)
    tensor["panel"] = t.panel;
  if (t.transform.empty())
    return tensor;
  tensor["transform"] = t.transform;
  tensor["source_dtype"] = t.sourceDtype;
  tensor["source_shape"] = jsonShape(t.sourceShape);
  if (t.blockRows) {
    tensor["block"] = llvm::json::Array{t.blockRows, t.blockCols};
    return tensor;
  }
  tensor["heads"] = t.heads;
  tensor["nope"] = t.nope;
  tensor["rope"] = t.rope;
  tensor["value_dim"] = t.valueDim;
  if (!t.kvB.empty()) {
    tensor["kv_b"] = t.kvB;
    tensor["kv_b_dtype"] = t.kvBDtype;
    tensor["kv_b_shape"] = jsonShape(t.kvBShape);
  }
  return tensor;
}

/// The compiler's checkpoint as the packer's tensor source.
class CheckpointSource : public runtime::TensorSource {
public:
  explicit CheckpointSource(const Checkpoint &checkpoint)
      : checkpoint(checkpoint) {}
  bool find(const std::string &name, Tensor &tensor) const override {
    const TensorInfo *info = checkpoint.find(name);
    if (!info)
      return false;
    llvm::ArrayRef<uint8_t> data = checkpoint.bytes(*info);
    tensor = {dtypeName(info->dtype).str(),
              std::vector<int64_t>(info->shape.begin(), info->shape.end()),
              data.data(), data.size()};
    return true;
  }
  std::string describe() const override {
    return "the checkpoint " + checkpoint.dir().str();
  }

private:
  const Checkpoint &checkpoint;
};

/// A raw_ostream into an OutputFile that keeps the first write error.
class OutputFileStream : public llvm::raw_ostream {
public:
  explicit OutputFileStream(runtime::OutputFile &file) : file(file) {
    SetBufferSize(1 << 20);
  }
  ~OutputFileStream() override { flush(); }
  /// "" or the first write error.
  const std::string &error() const { return firstError; }
  /// Hashes what is written from now on, until takeHash().
  void startHash() {
    flush();
    checksum.reset();
    hashing = true;
  }
  uint64_t takeHash() {
    flush();
    hashing = false;
    return checksum.digest();
  }

private:
  void write_impl(const char *data, size_t size) override {
    if (firstError.empty())
      firstError = file.write(data, size);
    if (hashing)
      checksum.update(data, size);
    position += size;
  }
  uint64_t current_pos() const override { return position; }

  runtime::OutputFile &file;
  std::string firstError;
  uint64_t position = 0;
  runtime::Checksum checksum;
  bool hashing = false;
};

void pad(raw_ostream &os, uint64_t from, uint64_t to) {
  static const char zeros[4096] = {};
  while (from < to) {
    uint64_t n = std::min<uint64_t>(sizeof(zeros), to - from);
    os.write(zeros, n);
    from += n;
  }
}

} // namespace

llvm::Error xfmr::writeArtifact(
    StringRef path, const ArtifactContents &contents,
    const std::function<void(const std::string &)> &progress,
    uint64_t *bytesWritten) {
  ModuleOp module = contents.module;
  auto model = module->getAttrOfType<DictionaryAttr>("xfmr.model");
  MemoryPlanAttr plan = getMemoryPlan(module);
  if (!plan)
    return llvm::createStringError(
        "the module has no memory plan (run xfmr-plan-memory first)");

  // Manifest, from the same sizes the code carries (ModelInfo).
  const ModelSizes &sizes = contents.sizes;
  int64_t weightBytes = sizes.weightsBytes;
  llvm::json::Object modelJson{
      {"architecture",
       model && model.getAs<StringAttr>("architecture")
           ? model.getAs<StringAttr>("architecture").getValue().str()
           : std::string("unknown")},
      {"vocab_size", sizes.vocabSize},
      {"hidden_size", intAttr(model, "hidden_size")},
      {"num_layers", intAttr(model, "num_layers")},
      {"context_length", sizes.contextLength}};
  if (sizes.kvWindow > 0) {
    modelJson["kv_window"] = sizes.kvWindow;
    modelJson["kv_sinks"] = sizes.kvSinks;
  }
  for (const auto &[key, value] : contents.modelExtras)
    modelJson[key] = value;

  std::vector<runtime::PackedTensor> packing;
  llvm::json::Array tensors;
  // Parameters: each checkpoint tensor once, at its own size. Quantized
  // codes and their scales, a tied head's codes and folded MLA weights are
  // stored forms of tensors counted already.
  llvm::StringMap<int64_t> sourceElements;
  auto count = [&](StringRef name, Type type) {
    sourceElements.try_emplace(name,
                               cast<RankedTensorType>(type).getNumElements());
  };
  for (WeightSlotAttr slot : plan.getWeightSlots()) {
    packing.push_back(packedTensorOf(slot));
    Attribute transform = slot.getTransform();
    if (auto quantized = dyn_cast_or_null<QuantizedWeightAttr>(transform)) {
      count(slot.getSource().getValue(), quantized.getSourceType());
    } else if (auto fold = dyn_cast_or_null<FoldedWeightAttr>(transform)) {
      count(slot.getSource().getValue(), fold.getSourceType());
      if (fold.getKvB())
        count(fold.getKvB().getValue(), fold.getKvBType());
    } else {
      count(slot.getSource().getValue(), slot.getType());
    }
  }
  int64_t parameters = 0;
  for (const auto &entry : sourceElements)
    parameters += entry.getValue();
  // Int8 and int4 codes (and the scales computed with them) have transforms
  // of their own: the packer quantizes them differently.
  std::map<std::tuple<std::string, int64_t, int64_t>, std::string>
      integerWeights;
  for (runtime::PackedTensor &t : packing)
    if (t.transform == "fp8_codes" && (t.dtype == "i8" || t.dtype == "i4")) {
      std::string kind = t.dtype == "i8" ? "int8" : "int4";
      t.transform = kind + "_codes";
      integerWeights[{t.name, t.blockRows, t.blockCols}] = kind;
    }
  for (runtime::PackedTensor &t : packing)
    if (t.transform == "fp8_scales")
      if (auto it = integerWeights.find({t.name, t.blockRows, t.blockCols});
          it != integerWeights.end())
        t.transform = it->second + "_scales";
  for (const runtime::PackedTensor &t : packing)
    tensors.push_back(tensorJson(t));
  llvm::json::Array layers;
  int64_t bytesPerToken = 0;
  for (CacheSlotAttr slot : plan.getCacheSlots()) {
    Type type = slot.getType();
    // Where each token-indexed part of the slot lies in the blob: what a
    // runtime that pages the cache maps block by block.
    llvm::json::Array regions;
    for (const CacheRegion &region : cacheRegions(type))
      regions.push_back(
          llvm::json::Object{{"offset", slot.getOffset() + region.offset},
                             {"row_bytes", region.rowBytes}});
    if (auto latent = dyn_cast<LatentCacheType>(type)) {
      bytesPerToken += latent.bytesPerToken();
      layers.push_back(
          llvm::json::Object{{"kind", "latent"},
                             {"offset", slot.getOffset()},
                             {"bytes", slot.getBytes()},
                             {"element_type", dtypeOf(latent.getElementType())},
                             {"capacity", latent.getCapacity()},
                             {"latent_dim", latent.getLatentDim()},
                             {"rope_dim", latent.getRopeDim()},
                             {"regions", std::move(regions)}});
      continue;
    }
    auto cache = cast<KVCacheType>(type);
    bytesPerToken += cache.bytesPerToken();
    layers.push_back(
        llvm::json::Object{{"kind", "kv"},
                           {"offset", slot.getOffset()},
                           {"bytes", slot.getBytes()},
                           {"element_type", dtypeOf(cache.getElementType())},
                           {"capacity", cache.getCapacity()},
                           {"heads", cache.getHeads()},
                           {"key_dim", cache.getKeyDim()},
                           {"value_dim", cache.getValueDim()},
                           {"regions", std::move(regions)}});
  }
  // Per-expert token counters of each MoE layer, inside the cache blob.
  llvm::json::Array expertCounts;
  for (CounterSlotAttr counter : plan.getCounterSlots())
    expertCounts.push_back(llvm::json::Object{
        {"name", counter.getName().getValue()},
        {"offset", counter.getOffset()},
        {"experts", counter.getExperts()}});
  llvm::json::Object manifest{
      {"format_version", int64_t(artifact::kFormatVersion)},
      {"target", llvm::json::Object(contents.target)},
      {"model", std::move(modelJson)},
      {"entry_points", llvm::json::Object{{"prefill", "_mlir_ciface_prefill"},
                                          {"decode", "_mlir_ciface_decode"},
                                          {"step", "_mlir_ciface_batch_step"}}},
      {"kv_cache", llvm::json::Object{{"bytes", sizes.kvCacheBytes},
                                      {"bytes_per_token", bytesPerToken},
                                      {"layers", std::move(layers)}}},
      {"weights", llvm::json::Object{{"bytes", weightBytes},
                                     {"parameter_count", parameters},
                                     {"tensors", std::move(tensors)}}},
      {"expert_counts", std::move(expertCounts)},
      {"compile_options", llvm::json::Object(contents.compileOptions)},
      {"compiler", runtime::versionString()}};
  if (!contents.targets.empty())
    manifest["targets"] = llvm::json::Array(contents.targets);
  if (!contents.tokenizer.empty())
    manifest["tokenizer"] = llvm::json::Object(contents.tokenizer);
  if (contents.generationConfig)
    manifest["generation_config"] =
        llvm::json::Object(*contents.generationConfig);
  std::string manifestText;
  {
    llvm::raw_string_ostream os(manifestText);
    os << llvm::json::Value(std::move(manifest));
  }

  // Layout: a stripped artifact has an empty weights section and says so
  // in the header; its manifest is the full artifact's.
  bool stripped = contents.stripWeights;
  artifact::FileHeader header = artifact::layoutArtifact(
      manifestText.size(), stripped ? 0 : weightBytes, contents.code.size(),
      stripped ? artifact::kFlagWeightsStripped : 0);
  artifact::FileTrailer trailer{};
  std::memcpy(trailer.magic, artifact::kTrailerMagic, sizeof(trailer.magic));
  trailer.headerHash = runtime::Checksum::of(&header, sizeof(header));
  trailer.manifestHash =
      runtime::Checksum::of(manifestText.data(), manifestText.size());
  trailer.codeHash =
      runtime::Checksum::of(contents.code.data(), contents.code.size());

  if (!stripped && weightBytes > 0 && !contents.checkpoint)
    return llvm::createStringError(
        "the model reads weights but no checkpoint provides them");

  // A unique temporary file beside `path`, renamed over it at the end; the
  // destructor removes it on any error.
  runtime::OutputFile file;
  if (std::string error = file.open(path.str()); !error.empty())
    return llvm::createStringError(error);
  {
    OutputFileStream os(file);
    os.write(reinterpret_cast<const char *>(&header), sizeof(header));
    pad(os, sizeof(header), header.manifestOffset);
    os << manifestText;
    pad(os, header.manifestOffset + header.manifestSize, header.weightsOffset);
    // The weights are hashed as they stream out, packed by the runtime's
    // packer (the one xfmr-pack runs).
    os.startHash();
    if (!stripped && weightBytes > 0) {
      CheckpointSource source(*contents.checkpoint);
      std::string error = runtime::packWeights(
          packing, weightBytes, source,
          [&](const void *data, size_t size) {
            os.write(static_cast<const char *>(data), size);
            return std::string();
          },
          progress);
      if (!error.empty())
        return llvm::createStringError(error);
    }
    trailer.weightsHash = os.takeHash();
    pad(os, header.weightsOffset + header.weightsSize, header.codeOffset);
    os << contents.code;
    os.write(reinterpret_cast<const char *>(&trailer), sizeof(trailer));
    os.flush();
    if (!os.error().empty())
      return llvm::createStringError(os.error());
  }
  if (std::string error = file.commit(); !error.empty())
    return llvm::createStringError(error);
  if (bytesWritten)
    *bytesWritten = header.fileSize;
  return llvm::Error::success();
}
