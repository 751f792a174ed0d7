//===- Checkpoint.h - Hugging Face checkpoint folder ------------*- C++ -*-===//
//
// Opens a Hugging Face model folder: `config.json` plus either
// `model.safetensors` or the shards named by `model.safetensors.index.json`
// (`{"metadata": {...}, "weight_map": {tensor: file}}`). All shards are
// memory-mapped and validated up front, and the index must agree exactly with
// the shards' contents.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_IMPORT_CHECKPOINT_H
#define XFMR_IMPORT_CHECKPOINT_H

#include "import/Safetensors.h"

#include "llvm/ADT/StringMap.h"

#include <memory>
#include <string>
#include <vector>

namespace xfmr {

/// A validated checkpoint folder with every tensor indexed by name.
class Checkpoint {
public:
  /// Opens the checkpoint folder `dir`. Prefers `model.safetensors` (as
  /// Hugging Face does) and otherwise reads `model.safetensors.index.json`.
  /// Fails when config.json or the weights are missing, when a shard path is
  /// absolute or contains "..", when a named shard is missing or invalid, and
  /// when the index and the shards disagree (a tensor missing from the shard
  /// the index names, present in a shard the index does not assign it to, or
  /// absent from the index).
  static llvm::Expected<std::unique_ptr<Checkpoint>> open(llvm::StringRef dir);

  /// The folder this checkpoint was opened from.
  llvm::StringRef dir() const { return directory; }
  /// Path of `config.json` (it exists; parse it with parseModelConfig).
  std::string configPath() const;
  /// True when the weights come from an index and shards.
  bool isSharded() const { return sharded; }

  /// Returns the tensor called `name`, or nullptr.
  const TensorInfo *find(llvm::StringRef name) const;
  /// The bytes of `info` (from find()), a zero-copy view valid as long as this
  /// Checkpoint. Empty if `info` does not belong to this checkpoint.
  llvm::ArrayRef<uint8_t> bytes(const TensorInfo &info) const;
  /// All tensor names, sorted.
  std::vector<llvm::StringRef> names() const;
  /// Number of tensors.
  size_t size() const { return byName.size(); }
  /// Path of the file holding `info`.
  std::string fileOf(const TensorInfo &info) const;

  /// The safetensors files, in TensorInfo::shard order (sorted by name).
  llvm::ArrayRef<std::unique_ptr<SafetensorsFile>> files() const {
    return shards;
  }

private:
  Checkpoint() = default;
  llvm::Error openSingle(llvm::StringRef path);
  llvm::Error openSharded(llvm::StringRef indexPath);

  std::string directory;
  bool sharded = false;
  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  llvm::StringMap<const TensorInfo *> byName;
};

} // namespace xfmr

#endif // XFMR_IMPORT_CHECKPOINT_H
