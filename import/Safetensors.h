//===- Safetensors.h - Strict safetensors file reader -----------*- C++ -*-===//
//
// Reads one `.safetensors` file: an 8-byte little-endian header length N, N
// bytes of JSON header, then the tensor data. The file is memory-mapped and
// tensor bytes are handed out as views into the mapping (zero copy).
//
// Validation is strict: every malformed header, unsupported dtype, bad shape
// or inconsistent data offset is an llvm::Error naming the file and the
// tensor; nothing asserts on file contents.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_IMPORT_SAFETENSORS_H
#define XFMR_IMPORT_SAFETENSORS_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace llvm {
class MemoryBuffer;
} // namespace llvm

namespace xfmr {

/// Element types we accept in safetensors files (a subset of the format's).
enum class DType { F32, F16, BF16, F8_E4M3, F8_E5M2, I8, U8, I32, I64 };

/// Returns the safetensors spelling of `dtype`, e.g. "BF16" or "F8_E4M3".
llvm::StringRef dtypeName(DType dtype);

/// Returns the size of one element of `dtype` in bytes.
unsigned dtypeSize(DType dtype);

/// Parses a safetensors dtype name; std::nullopt for unknown or unsupported
/// names (e.g. "F64", "BOOL").
std::optional<DType> parseDType(llvm::StringRef name);

/// Returns true for the floating-point dtypes (F32, F16, BF16, F8_*).
bool isFloatDType(DType dtype);

/// Comma-separated list of the supported dtype names, for error messages.
std::string supportedDTypeNames();

/// Formats a shape as "[a, b, c]".
std::string formatShape(llvm::ArrayRef<int64_t> shape);

/// One tensor described by a safetensors header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  llvm::SmallVector<int64_t> shape;
  /// Byte range [dataBegin, dataEnd) relative to the start of the data buffer
  /// (the byte after the header), as stored in `data_offsets`.
  uint64_t dataBegin = 0, dataEnd = 0;
  /// Index of the file holding the tensor within its Checkpoint (0 for a
  /// standalone SafetensorsFile).
  unsigned shard = 0;

  /// Number of elements (1 for a scalar). Validated not to overflow.
  int64_t numElements() const;
  /// Number of data bytes.
  uint64_t numBytes() const { return dataEnd - dataBegin; }
};

/// A memory-mapped, validated safetensors file.
class SafetensorsFile {
public:
  /// Maps and validates the file at `path`. `shard` is stored in every
  /// TensorInfo of the file (see TensorInfo::shard).
  static llvm::Expected<std::unique_ptr<SafetensorsFile>>
  open(llvm::StringRef path, unsigned shard = 0);

  /// Validates an in-memory file (e.g. for fuzzing); the buffer identifier is
  /// used as the file name in messages.
  static llvm::Expected<std::unique_ptr<SafetensorsFile>>
  fromBuffer(std::unique_ptr<llvm::MemoryBuffer> buffer, unsigned shard = 0);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;

  /// The path the file was opened from.
  llvm::StringRef path() const { return filePath; }

  /// Returns the tensor called `name`, or nullptr.
  const TensorInfo *find(llvm::StringRef name) const;

  /// All tensors, in data order (by dataBegin).
  llvm::ArrayRef<TensorInfo> tensors() const { return tensorList; }

  /// The bytes of `info`, a view into the mapped file that lives as long as
  /// this object. Returns an empty view if `info` does not fit this file.
  llvm::ArrayRef<uint8_t> bytes(const TensorInfo &info) const;

  /// The optional `__metadata__` string map of the header.
  const std::map<std::string, std::string> &metadata() const {
    return metadataMap;
  }

  /// Size of the data buffer (file size minus 8 minus the header length).
  uint64_t dataSize() const { return dataLength; }

private:
  SafetensorsFile() = default;
  llvm::Error parse();

  std::string filePath;
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  const uint8_t *data = nullptr;
  uint64_t dataLength = 0;
  unsigned shardIndex = 0;
  std::vector<TensorInfo> tensorList;
  llvm::StringMap<size_t> byName;
  std::map<std::string, std::string> metadataMap;
};

} // namespace xfmr

#endif // XFMR_IMPORT_SAFETENSORS_H
