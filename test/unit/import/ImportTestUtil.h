//===- ImportTestUtil.h - checkpoint reader test helpers --------*- C++ -*-===//
//
// Temporary folders, and writers for well-formed and deliberately malformed
// safetensors files, index files and configs.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TEST_UNIT_IMPORT_IMPORTTESTUTIL_H
#define XFMR_TEST_UNIT_IMPORT_IMPORTTESTUTIL_H

#include "import/Safetensors.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace xfmr::testing {

/// A fresh folder removed with everything in it on destruction.
class TempDir {
public:
  TempDir() {
    std::error_code ec =
        llvm::sys::fs::createUniqueDirectory("xfmr-import-test", dir);
    EXPECT_FALSE(ec) << ec.message();
  }
  ~TempDir() { llvm::sys::fs::remove_directories(dir); }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  std::string path() const { return dir.str().str(); }
  /// `path()/name`.
  std::string file(llvm::StringRef name) const {
    llvm::SmallString<256> result(dir);
    llvm::sys::path::append(result, name);
    return result.str().str();
  }
  /// Writes `contents` to `path()/name` and returns the full path.
  std::string write(llvm::StringRef name, llvm::StringRef contents) const {
    std::string full = file(name);
    std::error_code ec;
    llvm::raw_fd_ostream os(full, ec);
    EXPECT_FALSE(ec) << ec.message();
    os << contents;
    return full;
  }

private:
  llvm::SmallString<256> dir;
};

/// A tensor to write; `dtype` is a raw name so unsupported ones can be tested.
struct FakeTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
};

/// Encodes `header` with its 8-byte little-endian length, followed by `data`.
inline std::string rawSafetensors(llvm::StringRef header,
                                  llvm::StringRef data = "") {
  std::string result(8, '\0');
  uint64_t length = header.size();
  for (int i = 0; i < 8; ++i)
    result[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return result + header.str() + data.str();
}

/// Byte `i` of tensor number `tensor` in files from buildSafetensors.
inline uint8_t patternByte(size_t tensor, size_t i) {
  return static_cast<uint8_t>(i * 7 + tensor * 31 + 1);
}

inline std::string toJsonText(const llvm::json::Value &value) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << value;
  return os.str();
}

/// A well-formed safetensors file holding `tensors` in order, filled with
/// patternByte(), with an optional `__metadata__`.
inline std::string
buildSafetensors(const std::vector<FakeTensor> &tensors,
                 const std::map<std::string, std::string> &metadata = {}) {
  llvm::json::Object header;
  std::string data;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const FakeTensor &tensor = tensors[t];
    uint64_t elements = 1;
    for (int64_t dim : tensor.shape)
      elements *= static_cast<uint64_t>(dim);
    std::optional<DType> dtype = parseDType(tensor.dtype);
    uint64_t bytes = elements * (dtype ? dtypeSize(*dtype) : 8);
    uint64_t begin = data.size();
    for (uint64_t i = 0; i < bytes; ++i)
      data.push_back(static_cast<char>(patternByte(t, i)));
    llvm::json::Array shape;
    for (int64_t dim : tensor.shape)
      shape.push_back(dim);
    header[tensor.name] = llvm::json::Object{
        {"dtype", tensor.dtype},
        {"shape", std::move(shape)},
        {"data_offsets", llvm::json::Array{begin, begin + bytes}}};
  }
  if (!metadata.empty()) {
    llvm::json::Object meta;
    for (const auto &[key, value] : metadata)
      meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  return rawSafetensors(toJsonText(llvm::json::Value(std::move(header))), data);
}

/// The message of a failed Expected (consumed), or "" with a test failure
/// when it unexpectedly succeeded.
template <typename T> std::string errorOf(llvm::Expected<T> &&value) {
  if (value) {
    ADD_FAILURE() << "expected an error, got success";
    return "";
  }
  return llvm::toString(value.takeError());
}

inline std::string errorOf(llvm::Error &&err) {
  if (!err) {
    ADD_FAILURE() << "expected an error, got success";
    return "";
  }
  return llvm::toString(std::move(err));
}

} // namespace xfmr::testing

#endif // XFMR_TEST_UNIT_IMPORT_IMPORTTESTUTIL_H
