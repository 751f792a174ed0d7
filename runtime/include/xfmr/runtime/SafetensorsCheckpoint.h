//===- SafetensorsCheckpoint.h - checkpoint weights without LLVM -*- C++ -*-===//
//
// The tensors of a Hugging Face checkpoint folder (`model.safetensors`, or
// the shards `model.safetensors.index.json` names), memory-mapped, for
// xfmr-pack, which runs where the compiler does not. As strict as the
// compiler's reader (import/Safetensors.h): every header is validated
// (dtype, shape, offsets that tile the data exactly) and the index must
// agree with the shards; errors are `Error`s naming the file and tensor.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_SAFETENSORSCHECKPOINT_H
#define XFMR_RUNTIME_SAFETENSORSCHECKPOINT_H

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace xfmr::runtime {

/// One tensor: a view into a mapped file.
struct CheckpointTensor {
  std::string name;
  /// The safetensors spelling: "F32", "BF16", "F16", "F8_E4M3", ...
  std::string dtype;
  std::vector<int64_t> shape;
  const uint8_t *data = nullptr;
  uint64_t size = 0;
  /// The file it lives in.
  std::string file;
};

class SafetensorsCheckpoint {
public:
  /// Opens the checkpoint folder `dir`; throws `Error`.
  static std::unique_ptr<SafetensorsCheckpoint> open(const std::string &dir);
  ~SafetensorsCheckpoint();
  SafetensorsCheckpoint(const SafetensorsCheckpoint &) = delete;
  SafetensorsCheckpoint &operator=(const SafetensorsCheckpoint &) = delete;

  /// The tensor called `name`, or null.
  const CheckpointTensor *find(const std::string &name) const;
  const std::string &dir() const { return dir_; }
  size_t size() const { return tensors_.size(); }

  /// Bytes per element of a safetensors dtype, 0 for an unknown one.
  static unsigned dtypeSize(const std::string &dtype);
  /// "[a, b, c]", for messages.
  static std::string shapeText(const std::vector<int64_t> &shape);

private:
  SafetensorsCheckpoint() = default;
  /// Maps and validates one file, adding its tensors; returns their names.
  std::vector<std::string> addFile(const std::string &path);

  std::string dir_;
  struct Mapping {
    void *address;
    uint64_t size;
  };
  std::vector<Mapping> mappings_;
  std::map<std::string, CheckpointTensor> tensors_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_SAFETENSORSCHECKPOINT_H
