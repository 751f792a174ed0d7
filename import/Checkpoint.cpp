//===- Checkpoint.cpp - Hugging Face checkpoint folder --------------------===//

#include "import/Checkpoint.h"
#include "import/ImportUtil.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <map>

using namespace llvm;

namespace xfmr {

namespace {
constexpr const char *kConfigName = "config.json";
constexpr const char *kSingleName = "model.safetensors";
constexpr const char *kIndexName = "model.safetensors.index.json";

Error makeError(const Twine &message) {
  return createStringError(inconvertibleErrorCode(), message);
}

std::string joinPath(StringRef dir, StringRef name) {
  SmallString<256> path(dir);
  sys::path::append(path, name);
  return path.str().str();
}

/// Checks that a shard path from the index stays inside the checkpoint
/// folder, and returns it without "." components.
Expected<std::string> normalizeShardPath(StringRef shard, StringRef tensor) {
  auto fail = [&](const Twine &why) {
    return makeError("shard path '" + shard + "' for tensor '" + tensor + "' " +
                     why);
  };
  if (shard.empty())
    return fail("is empty");
  if (sys::path::is_absolute(shard, sys::path::Style::posix) ||
      sys::path::is_absolute(shard, sys::path::Style::windows))
    return fail("is absolute; shards must be relative to the checkpoint "
                "folder");
  // Split on both separators so "..\\x" is caught as well.
  SmallVector<StringRef> parts;
  shard.split(parts, '/');
  for (StringRef part : parts) {
    SmallVector<StringRef> subparts;
    part.split(subparts, '\\');
    if (is_contained(subparts, ".."))
      return fail("contains '..'; shards must stay inside the checkpoint "
                  "folder");
  }
  SmallString<256> normalized(shard);
  sys::path::remove_dots(normalized, /*remove_dot_dot=*/false,
                         sys::path::Style::posix);
  return normalized.str().str();
}
} // namespace

Expected<std::unique_ptr<Checkpoint>> Checkpoint::open(StringRef dir) {
  if (!sys::fs::is_directory(dir))
    return makeError("checkpoint folder '" + dir +
                     "' does not exist or is not a folder");
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->directory = dir.str();
  if (!sys::fs::exists(checkpoint->configPath()))
    return makeError("checkpoint folder '" + dir + "' has no " + kConfigName);
  if (Error error = checkRegularFile(checkpoint->configPath()))
    return error;

  std::string single = joinPath(dir, kSingleName);
  std::string index = joinPath(dir, kIndexName);
  if (sys::fs::exists(single)) {
    if (Error err = checkpoint->openSingle(single))
      return err;
  } else if (sys::fs::exists(index)) {
    if (Error err = checkpoint->openSharded(index))
      return err;
  } else {
    return makeError("checkpoint folder '" + dir +
                     "' has no weights: expected " + kSingleName + " or " +
                     kIndexName);
  }
  return checkpoint;
}

Error Checkpoint::openSingle(StringRef path) {
  Expected<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::open(path, /*shard=*/0);
  if (!file)
    return file.takeError();
  shards.push_back(std::move(*file));
  for (const TensorInfo &info : shards.front()->tensors())
    byName[info.name] = &info;
  return Error::success();
}

Error Checkpoint::openSharded(StringRef indexPath) {
  sharded = true;
  std::string where = "checkpoint index '" + indexPath.str() + "'";
  auto fail = [&](const Twine &message) {
    return makeError(where + ": " + message);
  };

  if (Error error = checkRegularFile(indexPath))
    return error;
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(
      indexPath, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!buffer)
    return fail("cannot read: " + buffer.getError().message());
  StringRef text = (*buffer)->getBuffer();
  Expected<json::Value> json = parseJsonStrict(text, where);
  if (!json)
    return json.takeError();
  const json::Object *root = json->getAsObject();
  if (!root)
    return fail("top level is a JSON " + jsonKindName(*json) +
                ", expected an object");
  const json::Value *mapValue = root->get("weight_map");
  if (!mapValue)
    return fail("has no 'weight_map'");
  const json::Object *weightMap = mapValue->getAsObject();
  if (!weightMap)
    return fail("'weight_map' is a JSON " + jsonKindName(*mapValue) +
                ", expected an object");
  if (weightMap->empty())
    return fail("'weight_map' is empty");
  // llvm::json keeps only the last of duplicate keys; look at the raw text.
  if (std::optional<StringRef> mapText = findMemberText(text, "weight_map"))
    if (std::optional<std::string> dup = findDuplicateKey(*mapText))
      return fail("'weight_map' names tensor '" + *dup + "' more than once");

  // Tensor -> normalized shard path, in name order for deterministic errors.
  std::map<std::string, std::string> assigned;
  std::map<std::string, std::string> exampleTensor; // shard -> a tensor in it
  for (const auto &[key, value] : *weightMap) {
    std::optional<StringRef> shard = value.getAsString();
    if (!shard)
      return fail("'weight_map' entry for tensor '" + StringRef(key) +
                  "' is a JSON " + jsonKindName(value) + ", expected a string");
    Expected<std::string> normalized = normalizeShardPath(*shard, key);
    if (!normalized)
      return fail(toString(normalized.takeError()));
    exampleTensor.emplace(*normalized, key.str());
    assigned[key.str()] = std::move(*normalized);
  }

  std::vector<std::string> problems;
  for (const auto &[shard, tensor] : exampleTensor)
    if (!sys::fs::is_regular_file(joinPath(directory, shard)))
      problems.push_back("shard '" + shard + "' (holding e.g. tensor '" +
                         tensor + "') does not exist in '" + directory + "'");
  if (!problems.empty())
    return joinProblems(where, problems);

  StringMap<unsigned> shardIndex;
  for (const auto &entry : exampleTensor) {
    const std::string &shard = entry.first;
    Expected<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::open(joinPath(directory, shard), shards.size());
    if (!file)
      return file.takeError();
    shardIndex[shard] = shards.size();
    shards.push_back(std::move(*file));
  }

  for (const auto &[tensor, shard] : assigned) {
    const TensorInfo *info = shards[shardIndex[shard]]->find(tensor);
    if (!info) {
      problems.push_back("tensor '" + tensor + "' is missing from shard '" +
                         shard + "' named by the index");
      continue;
    }
    byName[tensor] = info;
  }
  for (const auto &entry : exampleTensor) {
    StringRef shard = entry.first;
    for (const TensorInfo &info : shards[shardIndex[shard]]->tensors()) {
      auto it = assigned.find(info.name);
      if (it == assigned.end())
        problems.push_back("tensor '" + info.name + "' in shard '" +
                           shard.str() + "' is not listed in the index");
      else if (it->second != shard)
        problems.push_back("tensor '" + info.name + "' is present in shard '" +
                           shard.str() + "' but the index assigns it to '" +
                           it->second + "'");
    }
  }
  return joinProblems(where, problems);
}

std::string Checkpoint::configPath() const {
  return joinPath(directory, kConfigName);
}

const TensorInfo *Checkpoint::find(StringRef name) const {
  auto it = byName.find(name);
  return it == byName.end() ? nullptr : it->second;
}

ArrayRef<uint8_t> Checkpoint::bytes(const TensorInfo &info) const {
  if (info.shard >= shards.size())
    return {};
  return shards[info.shard]->bytes(info);
}

std::vector<StringRef> Checkpoint::names() const {
  std::vector<StringRef> result;
  result.reserve(byName.size());
  for (const auto &entry : byName)
    result.push_back(entry.first());
  llvm::sort(result);
  return result;
}

std::string Checkpoint::fileOf(const TensorInfo &info) const {
  if (info.shard >= shards.size())
    return "";
  return shards[info.shard]->path().str();
}

} // namespace xfmr
