//===- Safetensors.cpp - Strict safetensors file reader -------------------===//

#include "import/Safetensors.h"
#include "import/ImportUtil.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/MemoryBuffer.h"

#include <algorithm>

using namespace llvm;

namespace xfmr {

namespace {
/// Same limit as the reference implementation (safetensors' MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderLength = 100'000'000;

struct DTypeEntry {
  DType dtype;
  const char *name;
  unsigned size;
  bool isFloat;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4, true},         {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true},       {DType::F8_E4M3, "F8_E4M3", 1, true},
    {DType::F8_E5M2, "F8_E5M2", 1, true}, {DType::I8, "I8", 1, false},
    {DType::U8, "U8", 1, false},          {DType::I32, "I32", 4, false},
    {DType::I64, "I64", 8, false},
};

const DTypeEntry &entryFor(DType dtype) {
  for (const DTypeEntry &entry : kDTypes)
    if (entry.dtype == dtype)
      return entry;
  return kDTypes[0]; // Unreachable for valid enumerators.
}

Error makeError(const Twine &message) {
  return createStringError(inconvertibleErrorCode(), message);
}
} // namespace

StringRef dtypeName(DType dtype) { return entryFor(dtype).name; }
unsigned dtypeSize(DType dtype) { return entryFor(dtype).size; }
bool isFloatDType(DType dtype) { return entryFor(dtype).isFloat; }

std::optional<DType> parseDType(StringRef name) {
  for (const DTypeEntry &entry : kDTypes)
    if (name == entry.name)
      return entry.dtype;
  return std::nullopt;
}

std::string supportedDTypeNames() {
  std::string result;
  for (const DTypeEntry &entry : kDTypes) {
    if (!result.empty())
      result += ", ";
    result += entry.name;
  }
  return result;
}

std::string formatShape(ArrayRef<int64_t> shape) {
  std::string result = "[";
  for (auto [i, dim] : enumerate(shape)) {
    if (i)
      result += ", ";
    result += std::to_string(dim);
  }
  return result + "]";
}

int64_t TensorInfo::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

SafetensorsFile::~SafetensorsFile() = default;

Expected<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::open(StringRef path, unsigned shard) {
  // A FIFO or device would block the reader or never end.
  llvm::sys::fs::file_status status;
  if (!llvm::sys::fs::status(path, status) &&
      status.type() != llvm::sys::fs::file_type::regular_file)
    return makeError("cannot open safetensors file '" + path +
                     "': not a regular file");
  // No null terminator, so large files are mmapped rather than read.
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/false,
                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return makeError("cannot open safetensors file '" + path +
                     "': " + buffer.getError().message());
  return fromBuffer(std::move(*buffer), shard);
}

Expected<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::fromBuffer(std::unique_ptr<MemoryBuffer> buffer,
                            unsigned shard) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->filePath = buffer->getBufferIdentifier().str();
  file->buffer = std::move(buffer);
  file->shardIndex = shard;
  if (Error err = file->parse())
    return err;
  return file;
}

const TensorInfo *SafetensorsFile::find(StringRef name) const {
  auto it = byName.find(name);
  return it == byName.end() ? nullptr : &tensorList[it->second];
}

ArrayRef<uint8_t> SafetensorsFile::bytes(const TensorInfo &info) const {
  if (info.dataBegin > info.dataEnd || info.dataEnd > dataLength)
    return {};
  return ArrayRef<uint8_t>(data + info.dataBegin,
                           info.dataEnd - info.dataBegin);
}

Error SafetensorsFile::parse() {
  std::string where = "safetensors file '" + filePath + "'";
  auto fail = [&](const Twine &message) {
    return makeError(where + ": " + message);
  };

  StringRef contents = buffer->getBuffer();
  uint64_t fileSize = contents.size();
  if (fileSize < 8)
    return fail("file is " + Twine(fileSize) +
                " bytes long, too short for the 8-byte header length");
  uint64_t headerLength = support::endian::read64le(
      reinterpret_cast<const uint8_t *>(contents.data()));
  if (headerLength == 0)
    return fail("header length is 0");
  if (headerLength > kMaxHeaderLength)
    return fail("header length " + Twine(headerLength) +
                " exceeds the limit of " + Twine(kMaxHeaderLength) + " bytes");
  if (headerLength > fileSize - 8)
    return fail("header length " + Twine(headerLength) +
                " runs past the end of the file (" + Twine(fileSize) +
                " bytes)");
  StringRef headerText = contents.substr(8, headerLength);
  data = reinterpret_cast<const uint8_t *>(contents.data()) + 8 + headerLength;
  dataLength = fileSize - 8 - headerLength;

  Expected<json::Value> header = parseJsonStrict(headerText, "header");
  if (!header)
    return fail(toString(header.takeError()));
  const json::Object *object = header->getAsObject();
  if (!object)
    return fail("header is a JSON " + jsonKindName(*header) +
                ", expected an object");

  // Visit entries in name order so the first reported error is deterministic.
  std::vector<StringRef> keys;
  keys.reserve(object->size());
  for (const auto &member : *object)
    keys.push_back(member.first);
  llvm::sort(keys);

  for (StringRef key : keys) {
    const json::Value &value = *object->get(key);
    if (key == "__metadata__") {
      const json::Object *meta = value.getAsObject();
      if (!meta)
        return fail("'__metadata__' is a JSON " + jsonKindName(value) +
                    ", expected an object of strings");
      for (const auto &[metaKey, metaValue] : *meta) {
        std::optional<StringRef> str = metaValue.getAsString();
        if (!str)
          return fail("'__metadata__' entry '" + StringRef(metaKey) +
                      "' is a JSON " + jsonKindName(metaValue) +
                      ", expected a string");
        metadataMap[metaKey.str()] = str->str();
      }
      continue;
    }

    std::string tensor = ("tensor '" + key + "'").str();
    const json::Object *entry = value.getAsObject();
    if (!entry)
      return fail("entry for " + tensor + " is a JSON " + jsonKindName(value) +
                  ", expected an object");
    TensorInfo info;
    info.name = key.str();
    info.shard = shardIndex;

    // dtype
    const json::Value *dtypeValue = entry->get("dtype");
    if (!dtypeValue)
      return fail(tensor + " has no 'dtype'");
    std::optional<StringRef> dtypeText = dtypeValue->getAsString();
    if (!dtypeText)
      return fail("'dtype' of " + tensor + " is a JSON " +
                  jsonKindName(*dtypeValue) + ", expected a string");
    std::optional<DType> dtype = parseDType(*dtypeText);
    if (!dtype)
      return fail("unsupported dtype '" + *dtypeText + "' for " + tensor +
                  " (supported: " + supportedDTypeNames() + ")");
    info.dtype = *dtype;

    // shape
    const json::Value *shapeValue = entry->get("shape");
    if (!shapeValue)
      return fail(tensor + " has no 'shape'");
    const json::Array *shapeArray = shapeValue->getAsArray();
    if (!shapeArray)
      return fail("'shape' of " + tensor + " is a JSON " +
                  jsonKindName(*shapeValue) + ", expected an array");
    int64_t elements = 1;
    bool overflow = false;
    for (const json::Value &dimValue : *shapeArray) {
      std::optional<int64_t> dim = dimValue.getAsInteger();
      if (!dim) {
        if (dimValue.getAsUINT64())
          return fail("dimension " + Twine(*dimValue.getAsUINT64()) +
                      " in 'shape' of " + tensor + " is too large");
        return fail("'shape' of " + tensor + " contains a JSON " +
                    jsonKindName(dimValue) + ", expected integers");
      }
      if (*dim < 0)
        return fail(tensor + " has negative dimension " + Twine(*dim) +
                    " in 'shape'");
      info.shape.push_back(*dim);
      int64_t product;
      if (!overflow && MulOverflow(elements, *dim, product))
        overflow = true;
      else if (!overflow)
        elements = product;
    }
    int64_t byteCount = 0;
    if (overflow ||
        MulOverflow<int64_t>(elements, dtypeSize(info.dtype), byteCount))
      return fail("shape " + formatShape(info.shape) + " of " + tensor +
                  " overflows a 64-bit byte count");

    // data_offsets
    const json::Value *offsetsValue = entry->get("data_offsets");
    if (!offsetsValue)
      return fail(tensor + " has no 'data_offsets'");
    const json::Array *offsets = offsetsValue->getAsArray();
    if (!offsets || offsets->size() != 2)
      return fail("'data_offsets' of " + tensor +
                  " must be an array of two integers");
    uint64_t bounds[2];
    for (int i = 0; i < 2; ++i) {
      const json::Value &offset = (*offsets)[i];
      std::optional<uint64_t> bound = offset.getAsUINT64();
      if (!bound) {
        std::optional<int64_t> signedBound = offset.getAsInteger();
        if (signedBound)
          return fail("'data_offsets' of " + tensor + " has negative offset " +
                      Twine(*signedBound));
        return fail("'data_offsets' of " + tensor + " contains a JSON " +
                    jsonKindName(offset) + ", expected integers");
      }
      bounds[i] = *bound;
    }
    info.dataBegin = bounds[0];
    info.dataEnd = bounds[1];
    std::string range = "[" + std::to_string(info.dataBegin) + ", " +
                        std::to_string(info.dataEnd) + "]";
    if (info.dataBegin > info.dataEnd)
      return fail("'data_offsets' " + range + " of " + tensor +
                  " begin after they end");
    uint64_t expectedBytes = static_cast<uint64_t>(byteCount);
    if (info.dataEnd - info.dataBegin != expectedBytes)
      return fail("'data_offsets' " + range + " of " + tensor + " span " +
                  Twine(info.dataEnd - info.dataBegin) + " bytes, but shape " +
                  formatShape(info.shape) + " of " + dtypeName(info.dtype) +
                  " needs " + Twine(expectedBytes));
    if (info.dataEnd > dataLength)
      return fail("'data_offsets' " + range + " of " + tensor +
                  " run past the end of the data (" + Twine(dataLength) +
                  " bytes)");
    tensorList.push_back(std::move(info));
  }

  // The data buffer must be tiled exactly: no overlap, no gap, no tail.
  llvm::sort(tensorList, [](const TensorInfo &a, const TensorInfo &b) {
    return std::tie(a.dataBegin, a.dataEnd, a.name) <
           std::tie(b.dataBegin, b.dataEnd, b.name);
  });
  uint64_t expectedBegin = 0;
  const TensorInfo *previous = nullptr;
  for (const TensorInfo &info : tensorList) {
    if (info.dataBegin < expectedBegin)
      return fail("tensor '" + info.name + "' (bytes [" +
                  Twine(info.dataBegin) + ", " + Twine(info.dataEnd) +
                  ")) overlaps tensor '" + previous->name + "' (bytes [" +
                  Twine(previous->dataBegin) + ", " + Twine(previous->dataEnd) +
                  "))");
    if (info.dataBegin > expectedBegin)
      return fail("gap of " + Twine(info.dataBegin - expectedBegin) +
                  " unused bytes before tensor '" + info.name + "' (bytes [" +
                  Twine(expectedBegin) + ", " + Twine(info.dataBegin) +
                  ") belong to no tensor)");
    expectedBegin = info.dataEnd;
    previous = &info;
  }
  if (expectedBegin != dataLength)
    return fail(Twine(dataLength - expectedBegin) +
                " trailing bytes after the last tensor (data is " +
                Twine(dataLength) + " bytes, tensors end at " +
                Twine(expectedBegin) + ")");

  for (auto [i, info] : enumerate(tensorList))
    byName[info.name] = i;
  return Error::success();
}

} // namespace xfmr
