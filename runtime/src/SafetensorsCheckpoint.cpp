//===- SafetensorsCheckpoint.cpp - checkpoint weights without LLVM --------===//

#include "xfmr/runtime/SafetensorsCheckpoint.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>

using namespace xfmr::runtime;

namespace {

/// As the compiler's reader: larger headers are malformed, not models.
constexpr uint64_t kMaxHeaderLength = 100'000'000;
constexpr const char *kSingleName = "model.safetensors";
constexpr const char *kIndexName = "model.safetensors.index.json";

bool isRegularFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

} // namespace

std::string
SafetensorsCheckpoint::shapeText(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

unsigned SafetensorsCheckpoint::dtypeSize(const std::string &dtype) {
  static const std::map<std::string, unsigned> sizes = {
      {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I8", 1},  {"U8", 1},  {"I32", 4},  {"I64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsCheckpoint::~SafetensorsCheckpoint() {
  for (const Mapping &m : mappings_)
    munmap(m.address, m.size);
}

const CheckpointTensor *
SafetensorsCheckpoint::find(const std::string &name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string>
SafetensorsCheckpoint::addFile(const std::string &path) {
  std::string where = "safetensors file '" + path + "'";
  auto fail = [&](const std::string &message) -> Error {
    return Error(where + ": " + message);
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    throw Error("cannot open " + where + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("cannot open " + where + ": not a regular file");
  }
  uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  if (fileSize < 8) {
    ::close(fd);
    throw fail("file is " + std::to_string(fileSize) +
               " bytes long, too short for the 8-byte header length");
  }
  void *address = mmap(nullptr, fileSize, PROT_READ, MAP_PRIVATE, fd, 0);
  int mapErrno = errno;
  ::close(fd);
  if (address == MAP_FAILED)
    throw Error("cannot map " + where + ": " + std::strerror(mapErrno));
  mappings_.push_back({address, fileSize});
  const auto *bytes = static_cast<const uint8_t *>(address);

  uint64_t headerLength = 0;
  for (int i = 7; i >= 0; --i)
    headerLength = headerLength << 8 | bytes[i];
  if (headerLength == 0)
    throw fail("header length is 0");
  if (headerLength > kMaxHeaderLength)
    throw fail("header length " + std::to_string(headerLength) +
               " exceeds the limit of " + std::to_string(kMaxHeaderLength) +
               " bytes");
  if (headerLength > fileSize - 8)
    throw fail("header length " + std::to_string(headerLength) +
               " runs past the end of the file (" + std::to_string(fileSize) +
               " bytes)");
  const uint8_t *data = bytes + 8 + headerLength;
  uint64_t dataLength = fileSize - 8 - headerLength;
  JsonValue header = parseJson(
      std::string_view(reinterpret_cast<const char *>(bytes + 8), headerLength),
      where + ": header");
  if (!header.isObject())
    throw fail("header is " + std::string(JsonValue::kindName(header.kind())) +
               ", expected an object");

  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  std::vector<std::string> names;
  for (const auto &[key, value] : header.asObject()) {
    if (key == "__metadata__")
      continue;
    std::string tensor = "tensor '" + key + "'";
    if (!value.isObject())
      throw fail("entry for " + tensor + " is " +
                 JsonValue::kindName(value.kind()) + ", expected an object");
    CheckpointTensor info;
    info.name = key;
    info.file = path;
    const JsonValue *dtype = value.find("dtype");
    if (!dtype || !dtype->isString())
      throw fail(tensor + " has no string 'dtype'");
    info.dtype = dtype->asString();
    unsigned elementSize = dtypeSize(info.dtype);
    if (!elementSize)
      throw fail("unsupported dtype '" + info.dtype + "' for " + tensor);
    const JsonValue *shape = value.find("shape");
    if (!shape || !shape->isArray())
      throw fail(tensor + " has no 'shape' array");
    uint64_t elements = 1;
    for (const JsonValue &dim : shape->asArray()) {
      if (!dim.isInteger() || dim.asInt() < 0)
        throw fail("'shape' of " + tensor + " must hold non-negative integers");
      info.shape.push_back(dim.asInt());
      uint64_t d = static_cast<uint64_t>(dim.asInt());
      if (d && elements > UINT64_MAX / d / elementSize)
        throw fail("shape of " + tensor + " overflows a 64-bit byte count");
      elements *= d;
    }
    const JsonValue *offsets = value.find("data_offsets");
    if (!offsets || !offsets->isArray() || offsets->asArray().size() != 2 ||
        !offsets->asArray()[0].isInteger() ||
        !offsets->asArray()[1].isInteger() ||
        offsets->asArray()[0].asInt() < 0 || offsets->asArray()[1].asInt() < 0)
      throw fail("'data_offsets' of " + tensor +
                 " must be an array of two non-negative integers");
    uint64_t begin = offsets->asArray()[0].asInt();
    uint64_t end = offsets->asArray()[1].asInt();
    std::string range =
        "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end)
      throw fail("'data_offsets' " + range + " of " + tensor +
                 " begin after they end");
    if (end - begin != elements * elementSize)
      throw fail("'data_offsets' " + range + " of " + tensor + " span " +
                 std::to_string(end - begin) + " bytes, but shape " +
                 shapeText(info.shape) + " of " + info.dtype + " needs " +
                 std::to_string(elements * elementSize));
    if (end > dataLength)
      throw fail("'data_offsets' " + range + " of " + tensor +
                 " run past the end of the data (" +
                 std::to_string(dataLength) + " bytes)");
    info.data = data + begin;
    info.size = end - begin;
    ranges.push_back({begin, end, key});
    names.push_back(key);
    if (!tensors_.emplace(key, std::move(info)).second)
      throw fail(tensor + " is also in another file of the checkpoint");
  }
  // The data must be tiled exactly: no overlap, no gap, no tail.
  std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t expected = 0;
  for (const Range &r : ranges) {
    if (r.begin < expected)
      throw fail("tensor '" + r.name + "' overlaps the tensor before it");
    if (r.begin > expected)
      throw fail("gap of " + std::to_string(r.begin - expected) +
                 " unused bytes before tensor '" + r.name + "'");
    expected = r.end;
  }
  if (expected != dataLength)
    throw fail(std::to_string(dataLength - expected) +
               " trailing bytes after the last tensor");
  return names;
}

std::unique_ptr<SafetensorsCheckpoint>
SafetensorsCheckpoint::open(const std::string &dir) {
  std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint);
  checkpoint->dir_ = dir;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error("checkpoint folder '" + dir +
                "' does not exist or is not a "
                "folder");
  std::string single = dir + "/" + kSingleName;
  std::string index = dir + "/" + kIndexName;
  if (isRegularFile(single)) {
    checkpoint->addFile(single);
    return checkpoint;
  }
  if (!isRegularFile(index))
    throw Error("checkpoint folder '" + dir + "' has no weights: expected " +
                kSingleName + " or " + kIndexName);

  std::string where = "checkpoint index '" + index + "'";
  std::ifstream in(index, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in)
    throw Error(where + ": cannot read");
  JsonValue root = parseJson(text.str(), where);
  const JsonValue *map = root.isObject() ? root.find("weight_map") : nullptr;
  if (!map || !map->isObject() || map->asObject().empty())
    throw Error(where + ": has no non-empty 'weight_map' object");
  std::map<std::string, std::string> assigned; // tensor -> shard
  std::set<std::string> shards;
  for (const auto &[tensor, shard] : map->asObject()) {
    if (!shard.isString())
      throw Error(where + ": 'weight_map' entry for tensor '" + tensor +
                  "' is not a string");
    const std::string &file = shard.asString();
    // Shards live in the folder: no absolute paths, no way out of it.
    if (file.empty() || file[0] == '/' || file.find("..") != std::string::npos)
      throw Error(where + ": shard '" + file + "' of tensor '" + tensor +
                  "' must be a file name inside the checkpoint folder");
    assigned[tensor] = file;
    shards.insert(file);
  }
  for (const std::string &shard : shards)
    for (const std::string &tensor : checkpoint->addFile(dir + "/" + shard)) {
      auto it = assigned.find(tensor);
      if (it == assigned.end())
        throw Error(where + ": tensor '" + tensor + "' of shard '" + shard +
                    "' is not in the index");
      if (it->second != shard)
        throw Error(where + ": tensor '" + tensor + "' is in shard '" + shard +
                    "', the index says '" + it->second + "'");
    }
  for (const auto &[tensor, shard] : assigned)
    if (!checkpoint->find(tensor))
      throw Error(where + ": tensor '" + tensor + "' is missing from shard '" +
                  shard + "' named by the index");
  return checkpoint;
}
