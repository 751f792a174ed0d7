//===- ArtifactWriter.cpp - pack code, weights and manifest -----*- C++ -*-===//

#include "lowering/Artifact/ArtifactWriter.h"
#include "lowering/Artifact/MLAFold.h"
#include "lowering/Common/MemoryPlan.h"

#include "dialects/Xfmr/XfmrOps.h"
#include "import/Checkpoint.h"
#include "import/Float8.h"
#include "xfmr/runtime/ArtifactFormat.h"
#include "xfmr/runtime/Checksum.h"
#include "xfmr/runtime/OutputFile.h"
#include "xfmr/runtime/Version.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <cstring>

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
  if (isa<Float8E5M2Type>(type))
    return "f8e5m2";
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

/// The checkpoint bytes of a weight; `*` names are the stacked tensors
/// `0, 1, ...` in order.
llvm::Expected<std::string> readWeightBytes(const Checkpoint &checkpoint,
                                        StringRef name) {
  auto pieces = name.split('*');
  SmallVector<std::string> names;
  if (!name.contains('*')) {
    names.push_back(name.str());
  } else {
    for (int64_t i = 0;; ++i) {
      std::string candidate =
          (pieces.first + std::to_string(i) + pieces.second).str();
      if (!checkpoint.find(candidate))
        break;
      names.push_back(candidate);
    }
  }
  std::string bytes;
  for (const std::string &tensor : names) {
    const TensorInfo *info = checkpoint.find(tensor);
    if (!info)
      return llvm::createStringError("weight '" + tensor +
                                     "' is not in the checkpoint " +
                                     checkpoint.dir().str());
    llvm::ArrayRef<uint8_t> data = checkpoint.bytes(*info);
    bytes.append(reinterpret_cast<const char *>(data.data()), data.size());
  }
  return bytes;
}

/// IEEE half to double.
double halfToDouble(uint16_t bits) {
  int exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
  double sign = bits & 0x8000 ? -1.0 : 1.0;
  if (exponent == 0)
    return sign * std::ldexp(mantissa, -24);
  if (exponent == 31)
    return mantissa ? std::nan("") : sign * HUGE_VAL;
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

/// Decodes f32/bf16/f16 bytes to doubles.
std::vector<double> toDoubles(StringRef bytes, Type element) {
  std::vector<double> values;
  if (element.isF32()) {
    values.resize(bytes.size() / 4);
    for (size_t i = 0; i < values.size(); ++i) {
      float v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      values[i] = v;
    }
  } else {
    values.resize(bytes.size() / 2);
    for (size_t i = 0; i < values.size(); ++i) {
      uint16_t v;
      std::memcpy(&v, bytes.data() + 2 * i, 2);
      if (element.isBF16()) {
        uint32_t widened = uint32_t(v) << 16;
        float f;
        std::memcpy(&f, &widened, 4);
        values[i] = f;
      } else {
        values[i] = halfToDouble(v);
      }
    }
  }
  return values;
}

/// Reads a high-precision checkpoint weight as doubles, checking its size.
llvm::Expected<std::vector<double>> readDoubles(const Checkpoint &checkpoint,
                                                StringRef name,
                                                RankedTensorType type) {
  llvm::Expected<std::string> bytes = readWeightBytes(checkpoint, name);
  if (!bytes)
    return bytes.takeError();
  std::vector<double> values = toDoubles(*bytes, type.getElementType());
  if (int64_t(values.size()) != type.getNumElements())
    return llvm::createStringError(
        "weight '" + name.str() + "' has " + std::to_string(values.size()) +
        " elements, expected " + std::to_string(type.getNumElements()));
  return values;
}

/// The FP8 codes and scales of a weight quantized at compile time, per
/// leading (expert) index when the weight is stacked.
llvm::Error quantizeWeight(const Checkpoint &checkpoint, WeightSlotAttr slot,
                           QuantizedWeightAttr quantized, std::string &codes,
                           std::string &scales) {
  StringRef name = slot.getSource().getValue();
  auto source = cast<RankedTensorType>(quantized.getSourceType());
  ScaleLayoutAttr layout = quantized.getLayout();
  auto type = cast<RankedTensorType>(slot.getType());
  llvm::Expected<std::vector<double>> read =
      readDoubles(checkpoint, name, source);
  if (!read)
    return read.takeError();
  std::vector<double> &values = *read;
  ArrayRef<int64_t> shape = source.getShape();
  int64_t rows = shape[shape.size() - 2], cols = shape.back();
  int64_t matrices = source.getNumElements() / (rows * cols);
  fp8::Format format = isa<Float8E4M3FNUZType>(type.getElementType())
                           ? fp8::Format::E4M3FNUZ
                           : fp8::Format::E4M3FN;
  int64_t scaleCount = llvm::divideCeilSigned(rows, layout.getBlock()[0]) *
                       llvm::divideCeilSigned(cols, layout.getBlock()[1]);
  codes.resize(values.size());
  std::vector<float> scaleValues(matrices * scaleCount);
  for (int64_t m = 0; m < matrices; ++m) {
    std::string error;
    if (!fp8::quantize(format, values.data() + m * rows * cols, rows, cols,
                       {layout.getBlock()[0], layout.getBlock()[1]},
                       reinterpret_cast<uint8_t *>(codes.data()) + m * rows * cols,
                       scaleValues.data() + m * scaleCount, error))
      return llvm::createStringError("cannot quantize weight '" + name.str() +
                                     "': " + error);
  }
  scales.assign(reinterpret_cast<const char *>(scaleValues.data()),
                scaleValues.size() * sizeof(float));
  return llvm::Error::success();
}

/// A folded MLA weight (xfmr.fold_mla_weight): W_UK/W_UV multiplied into
/// the query projection or o_proj, in double precision, stored in the
/// result's element type (f32, or bf16/f16 rounded once).
llvm::Error foldWeight(const Checkpoint &checkpoint, WeightSlotAttr slot,
                       FoldedWeightAttr fold, std::string &data) {
  StringRef name = slot.getSource().getValue();
  auto source = cast<RankedTensorType>(fold.getSourceType());
  llvm::Expected<std::vector<double>> weight =
      readDoubles(checkpoint, name, source);
  if (!weight)
    return weight.takeError();
  std::vector<double> kvB;
  MLAFoldShape shape{fold.getHeads(), fold.getNope(), fold.getRope(),
                     fold.getValueDim(), 0};
  if (StringAttr kvBName = fold.getKvB()) {
    auto kvBType = cast<RankedTensorType>(fold.getKvBType());
    llvm::Expected<std::vector<double>> values =
        readDoubles(checkpoint, kvBName.getValue(), kvBType);
    if (!values)
      return values.takeError();
    kvB = std::move(*values);
    shape.rank = kvBType.getDimSize(1);
  }
  std::vector<double> folded =
      foldMLAWeight(stringifyMLAFold(fold.getKind()), *weight,
                    source.getDimSize(0), source.getDimSize(1), kvB, shape);
  Type stored = cast<RankedTensorType>(slot.getType()).getElementType();
  if (stored.isF32()) {
    std::vector<float> values(folded.begin(), folded.end());
    data.assign(reinterpret_cast<const char *>(values.data()),
                values.size() * sizeof(float));
    return llvm::Error::success();
  }
  // bf16/f16: the double rounded once to nearest even, two bytes each
  // (little endian).
  const llvm::fltSemantics &semantics =
      cast<FloatType>(stored).getFloatSemantics();
  data.resize(folded.size() * 2);
  for (size_t i = 0; i < folded.size(); ++i) {
    llvm::APFloat value(folded[i]);
    bool lost;
    value.convert(semantics, llvm::APFloat::rmNearestTiesToEven, &lost);
    auto bits = static_cast<uint16_t>(value.bitcastToAPInt().getZExtValue());
    data[2 * i] = static_cast<char>(bits & 0xff);
    data[2 * i + 1] = static_cast<char>(bits >> 8);
  }
  return llvm::Error::success();
}

/// FP8 NaN codes would decode to garbage in the kernels' fast path (and are
/// meaningless in weights): reject them.
llvm::Error checkNoNaNCodes(StringRef name, StringRef bytes, Type element) {
  bool fnuz = isa<Float8E4M3FNUZType>(element);
  bool e5m2 = isa<Float8E5M2Type>(element);
  for (size_t i = 0; i < bytes.size(); ++i) {
    uint8_t code = bytes[i];
    bool nan = fnuz ? code == 0x80
               : e5m2 ? (code & 0x7C) == 0x7C && (code & 0x03)
                      : (code & 0x7F) == 0x7F;
    if (nan)
      return llvm::createStringError(
          "FP8 weight '" + name.str() + "' holds a NaN code at element " +
          std::to_string(i));
  }
  return llvm::Error::success();
}

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

  llvm::json::Array tensors;
  int64_t parameters = 0;
  for (WeightSlotAttr slot : plan.getWeightSlots()) {
    auto type = cast<RankedTensorType>(slot.getType());
    llvm::json::Array shape;
    for (int64_t size : type.getShape())
      shape.push_back(size);
    llvm::json::Object tensor{{"name", slot.getSource().getValue().str()},
                              {"offset", slot.getOffset()},
                              {"bytes", slot.getBytes()},
                              {"dtype", dtypeOf(type.getElementType())},
                              {"shape", std::move(shape)}};
    // Derived at compile time from the named checkpoint tensor(s).
    if (auto quantized = dyn_cast_or_null<QuantizedWeightAttr>(slot.getTransform()))
      tensor["transform"] =
          ("fp8_" + stringifyQuantizedPart(quantized.getPart())).str();
    if (auto fold = dyn_cast_or_null<FoldedWeightAttr>(slot.getTransform())) {
      tensor["transform"] = ("mla_" + stringifyMLAFold(fold.getKind())).str();
      if (fold.getKvB())
        tensor["kv_b"] = fold.getKvB().getValue().str();
    }
    tensors.push_back(std::move(tensor));
    parameters += type.getNumElements();
  }
  llvm::json::Array layers;
  int64_t bytesPerToken = 0;
  for (CacheSlotAttr slot : plan.getCacheSlots()) {
    Type type = slot.getType();
    if (auto latent = dyn_cast<LatentCacheType>(type)) {
      bytesPerToken += latent.bytesPerToken();
      layers.push_back(llvm::json::Object{
          {"kind", "latent"},
          {"offset", slot.getOffset()},
          {"bytes", slot.getBytes()},
          {"element_type", dtypeOf(latent.getElementType())},
          {"capacity", latent.getCapacity()},
          {"latent_dim", latent.getLatentDim()},
          {"rope_dim", latent.getRopeDim()}});
      continue;
    }
    auto cache = cast<KVCacheType>(type);
    bytesPerToken += cache.bytesPerToken();
    layers.push_back(llvm::json::Object{
        {"kind", "kv"},
        {"offset", slot.getOffset()},
        {"bytes", slot.getBytes()},
        {"element_type", dtypeOf(cache.getElementType())},
        {"capacity", cache.getCapacity()},
        {"heads", cache.getHeads()},
        {"key_dim", cache.getKeyDim()},
        {"value_dim", cache.getValueDim()}});
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
                                          {"decode", "_mlir_ciface_decode"}}},
      {"kv_cache",
       llvm::json::Object{{"bytes", sizes.kvCacheBytes},
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
  std::string manifestText;
  {
    llvm::raw_string_ostream os(manifestText);
    os << llvm::json::Value(std::move(manifest));
  }

  // Layout.
  artifact::FileHeader header{};
  std::memcpy(header.magic, artifact::kMagic, sizeof(header.magic));
  header.version = artifact::kFormatVersion;
  header.manifestOffset = artifact::kSectionAlignment;
  header.manifestSize = manifestText.size();
  header.weightsOffset =
      llvm::alignTo(header.manifestOffset + header.manifestSize,
              artifact::kSectionAlignment);
  header.weightsSize = weightBytes;
  header.codeOffset = llvm::alignTo(header.weightsOffset + header.weightsSize,
                              artifact::kSectionAlignment);
  header.codeSize = contents.code.size();
  header.fileSize =
      header.codeOffset + header.codeSize + sizeof(artifact::FileTrailer);
  artifact::FileTrailer trailer{};
  std::memcpy(trailer.magic, artifact::kTrailerMagic, sizeof(trailer.magic));
  trailer.headerHash = runtime::Checksum::of(&header, sizeof(header));
  trailer.manifestHash =
      runtime::Checksum::of(manifestText.data(), manifestText.size());
  trailer.codeHash =
      runtime::Checksum::of(contents.code.data(), contents.code.size());

  if (weightBytes > 0 && !contents.checkpoint)
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
    // The weights are hashed as they stream out.
    os.startHash();
    uint64_t position = header.weightsOffset;
    int64_t done = 0, reported = 0;
    // Codes and scales of one quantized weight are computed together; the
    // plan puts the codes first.
    llvm::DenseMap<std::pair<StringRef, Attribute>, std::string> pendingScales;
    for (WeightSlotAttr slot : plan.getWeightSlots()) {
      uint64_t target = header.weightsOffset + slot.getOffset();
      pad(os, position, target);
      int64_t bytes = slot.getBytes();
      StringRef name = slot.getSource().getValue();
      Attribute transform = slot.getTransform();
      auto type = cast<RankedTensorType>(slot.getType());
      std::string data;
      llvm::Error error = llvm::Error::success();
      if (!transform) {
        llvm::Expected<std::string> raw =
            readWeightBytes(*contents.checkpoint, name);
        if (!raw)
          error = raw.takeError();
        else if (isa<FloatType>(type.getElementType()) &&
                 type.getElementType().getIntOrFloatBitWidth() == 8)
          error = checkNoNaNCodes(name, *raw, type.getElementType());
        data = raw ? std::move(*raw) : std::string();
      } else if (auto fold = dyn_cast<FoldedWeightAttr>(transform)) {
        error = foldWeight(*contents.checkpoint, slot, fold, data);
      } else {
        auto quantized = cast<QuantizedWeightAttr>(transform);
        std::pair<StringRef, Attribute> key{name, quantized.getLayout()};
        if (quantized.getPart() == QuantizedPart::codes) {
          std::string scales;
          error = quantizeWeight(*contents.checkpoint, slot, quantized, data,
                                 scales);
          pendingScales[key] = std::move(scales);
        } else {
          auto it = pendingScales.find(key);
          if (it == pendingScales.end())
            error = llvm::createStringError("scales of '" + name.str() +
                                            "' come before its codes");
          else
            data = std::move(it->second);
        }
      }
      if (!error && int64_t(data.size()) != bytes)
        error = llvm::createStringError(
            "weight '" + name.str() + "' has " + std::to_string(data.size()) +
            " bytes but the compiled code expects " + std::to_string(bytes));
      if (error)
        return error;
      os << data;
      position = target + bytes;
      done += bytes;
      if (progress && done - reported > (int64_t(256) << 20)) {
        reported = done;
        progress("packed " + std::to_string(done >> 20) + " of " +
                 std::to_string(weightBytes >> 20) + " MiB of weights");
      }
    }
    pad(os, position, header.weightsOffset + header.weightsSize);
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
