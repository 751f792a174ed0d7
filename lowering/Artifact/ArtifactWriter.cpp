//===- ArtifactWriter.cpp - pack code, weights and manifest -----*- C++ -*-===//

#include "lowering/Artifact/ArtifactWriter.h"

#include "dialects/Xfmr/XfmrOps.h"
#include "import/Checkpoint.h"
#include "xfmr/runtime/ArtifactFormat.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>

using namespace mlir;
using namespace xfmr;

namespace {

uint64_t alignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

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

int64_t intAttr(DictionaryAttr dict, StringRef name) {
  auto attr = dict ? dict.getAs<IntegerAttr>(name) : IntegerAttr();
  return attr ? attr.getInt() : 0;
}

/// The checkpoint bytes of a weight; `*` names are the stacked tensors
/// `0, 1, ...` in order.
llvm::Error appendWeightBytes(const Checkpoint &checkpoint, StringRef name,
                              int64_t expectedBytes, raw_ostream &os) {
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
  int64_t written = 0;
  for (const std::string &tensor : names) {
    const TensorInfo *info = checkpoint.find(tensor);
    if (!info)
      return llvm::createStringError("weight '" + tensor +
                                     "' is not in the checkpoint " +
                                     checkpoint.dir().str());
    llvm::ArrayRef<uint8_t> bytes = checkpoint.bytes(*info);
    os.write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    written += bytes.size();
  }
  if (written != expectedBytes)
    return llvm::createStringError(
        "weight '" + name.str() + "' has " + std::to_string(written) +
        " bytes in the checkpoint but the compiled code expects " +
        std::to_string(expectedBytes));
  return llvm::Error::success();
}

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
    const std::function<void(const std::string &)> &progress) {
  ModuleOp module = contents.module;
  auto model = module->getAttrOfType<DictionaryAttr>("xfmr.model");
  auto weightLayout = module->getAttrOfType<ArrayAttr>("xfmr.weight_layout");
  auto cacheLayout = module->getAttrOfType<ArrayAttr>("xfmr.cache_layout");
  if (!weightLayout || !cacheLayout)
    return llvm::createStringError(
        "the module has no buffer layout (run xfmr-lower-to-kernels first)");

  // Manifest.
  llvm::json::Object modelJson{
      {"architecture",
       model && model.getAs<StringAttr>("architecture")
           ? model.getAs<StringAttr>("architecture").getValue().str()
           : std::string("unknown")},
      {"vocab_size", intAttr(model, "vocab_size")},
      {"hidden_size", intAttr(model, "hidden_size")},
      {"num_layers", intAttr(model, "num_layers")},
      {"context_length", intAttr(model, "context_length")}};
  for (const auto &[key, value] : contents.modelExtras)
    modelJson[key] = value;

  llvm::json::Array tensors;
  int64_t parameters = 0, weightBytes = 0;
  for (Attribute entry : weightLayout) {
    auto dict = cast<DictionaryAttr>(entry);
    auto type = cast<RankedTensorType>(dict.getAs<TypeAttr>("type").getValue());
    llvm::json::Array shape;
    for (int64_t size : type.getShape())
      shape.push_back(size);
    int64_t offset = intAttr(dict, "offset"), bytes = intAttr(dict, "bytes");
    tensors.push_back(llvm::json::Object{
        {"name", dict.getAs<StringAttr>("name").getValue().str()},
        {"offset", offset},
        {"bytes", bytes},
        {"dtype", dtypeOf(type.getElementType())},
        {"shape", std::move(shape)}});
    parameters += type.getNumElements();
    weightBytes = std::max(weightBytes, offset + bytes);
  }
  llvm::json::Array layers;
  int64_t bytesPerToken = 0;
  for (Attribute entry : cacheLayout) {
    auto dict = cast<DictionaryAttr>(entry);
    auto cache = cast<KVCacheType>(dict.getAs<TypeAttr>("type").getValue());
    bytesPerToken += cache.bytesPerToken();
    layers.push_back(llvm::json::Object{
        {"kind", "kv"},
        {"offset", intAttr(dict, "offset")},
        {"bytes", intAttr(dict, "bytes")},
        {"element_type", dtypeOf(cache.getElementType())},
        {"capacity", cache.getCapacity()},
        {"heads", cache.getHeads()},
        {"key_dim", cache.getKeyDim()},
        {"value_dim", cache.getValueDim()}});
  }
  auto cacheBytes = module->getAttrOfType<IntegerAttr>("xfmr.cache_bytes");
  llvm::json::Object manifest{
      {"format_version", int64_t(artifact::kFormatVersion)},
      {"target", llvm::json::Object(contents.target)},
      {"model", std::move(modelJson)},
      {"entry_points",
       llvm::json::Object{{"prefill", "_mlir_ciface_prefill"},
                          {"decode", "_mlir_ciface_decode"}}},
      {"kv_cache",
       llvm::json::Object{{"bytes", cacheBytes ? cacheBytes.getInt() : 0},
                          {"bytes_per_token", bytesPerToken},
                          {"layers", std::move(layers)}}},
      {"weights", llvm::json::Object{{"bytes", weightBytes},
                                     {"parameter_count", parameters},
                                     {"tensors", std::move(tensors)}}},
      {"compile_options", llvm::json::Object(contents.compileOptions)},
      {"compiler", "xfmr 0.1.0"}};
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
      alignUp(header.manifestOffset + header.manifestSize,
              artifact::kSectionAlignment);
  header.weightsSize = weightBytes;
  header.codeOffset = alignUp(header.weightsOffset + header.weightsSize,
                              artifact::kSectionAlignment);
  header.codeSize = contents.code.size();
  header.fileSize = header.codeOffset + header.codeSize;

  if (weightBytes > 0 && !contents.checkpoint)
    return llvm::createStringError(
        "the model reads weights but no checkpoint provides them");

  std::string tempPath = (path + ".tmp").str();
  std::error_code ec;
  auto fail = [&](llvm::Error error) {
    llvm::sys::fs::remove(tempPath);
    return error;
  };
  {
    llvm::raw_fd_ostream os(tempPath, ec);
    if (ec)
      return llvm::createStringError("cannot write '" + tempPath +
                                     "': " + ec.message());
    os.write(reinterpret_cast<const char *>(&header), sizeof(header));
    pad(os, sizeof(header), header.manifestOffset);
    os << manifestText;
    pad(os, header.manifestOffset + header.manifestSize, header.weightsOffset);
    uint64_t position = header.weightsOffset;
    int64_t done = 0, reported = 0;
    for (Attribute entry : weightLayout) {
      auto dict = cast<DictionaryAttr>(entry);
      uint64_t target = header.weightsOffset + intAttr(dict, "offset");
      pad(os, position, target);
      int64_t bytes = intAttr(dict, "bytes");
      if (llvm::Error error = appendWeightBytes(
              *contents.checkpoint, dict.getAs<StringAttr>("name").getValue(),
              bytes, os)) {
        os.close();
        return fail(std::move(error));
      }
      position = target + bytes;
      done += bytes;
      if (progress && done - reported > (int64_t(256) << 20)) {
        reported = done;
        progress("packed " + std::to_string(done >> 20) + " of " +
                 std::to_string(weightBytes >> 20) + " MiB of weights");
      }
    }
    pad(os, position, header.codeOffset);
    os << contents.code;
    os.close();
    if (os.has_error()) {
      os.clear_error();
      return fail(llvm::createStringError("error writing '" + tempPath + "'"));
    }
  }
  if ((ec = llvm::sys::fs::rename(tempPath, path)))
    return fail(llvm::createStringError("cannot write '" + path.str() +
                                        "': " + ec.message()));
  return llvm::Error::success();
}
