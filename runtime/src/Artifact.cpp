//===- Artifact.cpp - a loaded model.xfmr ---------------------------------===//

#include "xfmr/runtime/Artifact.h"

#include "xfmr/runtime/Checksum.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Host.h"
#include "xfmr/runtime/OutputFile.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace xfmr::runtime;
using namespace xfmr::artifact;

Artifact::Artifact(std::string path) : path_(std::move(path)) {}

Artifact::~Artifact() {
  // The code goes before the mapping its weights point into.
  backend_.reset();
  if (mapping_ && ownsMapping_)
    munmap(mapping_, mappingSize_);
}

void Artifact::checkImage(const uint8_t *data, uint64_t size,
                          const std::string &name,
                          const OpenOptions &options) {
  Artifact image(name);
  // Read only: the checks never write through mapping_.
  image.mapping_ = const_cast<uint8_t *>(data);
  image.mappingSize_ = size;
  if (size < sizeof(kMagic))
    throw Error(name + ": not an xfmr artifact (" + std::to_string(size) +
                " bytes, too short for the magic)");
  image.checkHeader();
  image.refuseStripped();
  if (options.verifyChecksums)
    image.verifyChecksums();
  image.readManifest(options);
}

bool Artifact::isArtifactFile(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  char magic[sizeof(kMagic)] = {};
  file.read(magic, sizeof(magic));
  return file.gcount() == sizeof(magic) &&
         std::equal(magic, magic + sizeof(magic), kMagic);
}

std::shared_ptr<Artifact> Artifact::open(const std::string &path,
                                         const OpenOptions &options) {
  std::shared_ptr<Artifact> artifact(new Artifact(path));
  artifact->mapFile();
  artifact->checkHeader();
  artifact->refuseStripped();
  if (options.verifyChecksums)
    artifact->verifyChecksums();
  artifact->readManifest(options);
  artifact->loadCode(options);
  artifact->setThreads(0);
  return artifact;
}

std::shared_ptr<Artifact> Artifact::inspect(const std::string &path) {
  std::shared_ptr<Artifact> artifact(new Artifact(path));
  artifact->mapFile();
  artifact->checkHeader();
  artifact->verifyChecksums(/*weights=*/false);
  artifact->parseManifest();
  return artifact;
}

void Artifact::refuseStripped() const {
  if (header_.flags & kFlagWeightsStripped)
    throw Error(path_ + ": has no weights (it was compiled with "
                        "--strip-weights); bind a checkpoint's weights "
                        "first: xfmr-pack " +
                path_ + " CHECKPOINT_DIR -o FULL.xfmr");
}

void Artifact::save(const std::string &path) const {
  if (std::string error = writeOutputFile(path, mapping_, mappingSize_);
      !error.empty())
    throw Error(error);
}

void *Artifact::symbol(const std::string &name) const {
  return backend_ ? backend_->symbol(name) : nullptr;
}

int Artifact::effectiveThreads(int threads) {
  if (threads < 0 || threads > kMaxThreads)
    throw Error("thread count must be in [0, " + std::to_string(kMaxThreads) +
                "] (0: all cores), got " + std::to_string(threads));
  if (threads == 0)
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return threads;
}

void Artifact::setThreads(int threads) {
  threads_ = effectiveThreads(threads);
  applyThreads(threads_);
}

void Artifact::applyThreads(int threads) const {
  if (backend_)
    backend_->applyThreads(threads);
}

//===----------------------------------------------------------------------===//
// File and header
//===----------------------------------------------------------------------===//

void Artifact::mapFile() {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then
  // refuses anything but a regular file.
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    throw Error(path_ + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path_ + ": not a regular file (an artifact is a model.xfmr "
                        "file written by xfmr-compile)");
  }
  mappingSize_ = static_cast<uint64_t>(st.st_size);
  if (mappingSize_ < sizeof(kMagic)) {
    ::close(fd);
    throw Error(path_ + ": not an xfmr artifact (" +
                std::to_string(mappingSize_) +
                " bytes, too short for the magic)");
  }
  void *p = mmap(nullptr, mappingSize_, PROT_READ, MAP_PRIVATE, fd, 0);
  int mapErrno = errno;
  // The mapping keeps the file alive; the descriptor is not needed.
  ::close(fd);
  if (p == MAP_FAILED)
    throw Error(path_ + ": cannot map: " + std::strerror(mapErrno));
  mapping_ = static_cast<uint8_t *>(p);
  ownsMapping_ = true;
}

/// Checks that [offset, offset + size) lies in the file, after the header.
static void checkSection(const std::string &path, const char *name,
                         uint64_t offset, uint64_t size, uint64_t fileSize,
                         uint64_t alignment) {
  std::string where = path + ": " + name + " section [offset " +
                      std::to_string(offset) + ", size " +
                      std::to_string(size) + "]";
  if (offset < kSectionAlignment)
    throw Error(where + " overlaps the header (must start at or after " +
                std::to_string(kSectionAlignment) + ")");
  if (offset > fileSize || size > fileSize - offset)
    throw Error(where + " runs past the end of the file (" +
                std::to_string(fileSize) + " bytes)");
  if (offset % alignment != 0)
    throw Error(where + " is not " + std::to_string(alignment) +
                "-byte aligned");
}

void Artifact::checkHeader() {
  if (std::memcmp(mapping_, kMagic, sizeof(kMagic)) != 0)
    throw Error(path_ + ": not an xfmr artifact (the file does not start with "
                        "the magic \"XFMRART\")");
  if (mappingSize_ < sizeof(FileHeader))
    throw Error(path_ + ": truncated: " + std::to_string(mappingSize_) +
                " bytes, shorter than the " +
                std::to_string(sizeof(FileHeader)) + "-byte header");
  std::memcpy(&header_, mapping_, sizeof(FileHeader));
  if (header_.version != kFormatVersion)
    throw Error(path_ + ": artifact format version " +
                std::to_string(header_.version) +
                " is not supported (this runtime supports version " +
                std::to_string(kFormatVersion) + "); recompile the model");
  if (header_.fileSize > mappingSize_)
    throw Error(path_ + ": truncated: the header says " +
                std::to_string(header_.fileSize) + " bytes, the file has " +
                std::to_string(mappingSize_));
  if (header_.fileSize < mappingSize_)
    throw Error(path_ + ": the file has " + std::to_string(mappingSize_) +
                " bytes but the header says " +
                std::to_string(header_.fileSize) + " (trailing data)");
  if (header_.flags & ~kKnownFlags)
    throw Error(path_ + ": header field 'flags' is " +
                std::to_string(header_.flags) +
                ", which has unknown bits (known: " +
                std::to_string(kKnownFlags) + "); a newer xfmr wrote it?");
  if ((header_.flags & kFlagWeightsStripped) && header_.weightsSize != 0)
    throw Error(path_ + ": the header says the weights were stripped but "
                        "the weights section has " +
                std::to_string(header_.weightsSize) + " bytes");
  // The checksum trailer ends the file; the sections lie before it.
  if (header_.fileSize < kSectionAlignment + sizeof(FileTrailer))
    throw Error(path_ + ": truncated: " + std::to_string(header_.fileSize) +
                " bytes, too short for the header and the checksum trailer");
  uint64_t size = header_.fileSize - sizeof(FileTrailer);
  std::memcpy(&trailer_, mapping_ + size, sizeof(FileTrailer));
  if (std::memcmp(trailer_.magic, kTrailerMagic, sizeof(kTrailerMagic)) != 0)
    throw Error(path_ + ": the checksum trailer is missing (the file does not "
                        "end with \"XFMRSUM\"): truncated or not written by "
                        "xfmr-compile");
  checkSection(path_, "manifest", header_.manifestOffset, header_.manifestSize,
               size, 1);
  checkSection(path_, "weights", header_.weightsOffset, header_.weightsSize,
               size, kSectionAlignment);
  checkSection(path_, "code", header_.codeOffset, header_.codeSize, size,
               kSectionAlignment);
  if (header_.manifestSize == 0)
    throw Error(path_ + ": the manifest section is empty");
  if (header_.codeSize == 0)
    throw Error(path_ + ": the code section is empty");
  struct Range {
    const char *name;
    uint64_t begin, end;
  } ranges[] = {
      {"manifest", header_.manifestOffset,
       header_.manifestOffset + header_.manifestSize},
      {"weights", header_.weightsOffset,
       header_.weightsOffset + header_.weightsSize},
      {"code", header_.codeOffset, header_.codeOffset + header_.codeSize}};
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j)
      if (ranges[i].begin < ranges[j].end && ranges[j].begin < ranges[i].end)
        throw Error(path_ + ": the " + ranges[i].name + " and " +
                    ranges[j].name + " sections overlap");
}

void Artifact::verifyChecksums(bool weights) {
  auto start = std::chrono::steady_clock::now();
  struct Part {
    const char *name;
    uint64_t offset, size, expected;
  } parts[] = {
      {"header", 0, sizeof(FileHeader), trailer_.headerHash},
      {"manifest", header_.manifestOffset, header_.manifestSize,
       trailer_.manifestHash},
      {"weights", header_.weightsOffset, header_.weightsSize,
       trailer_.weightsHash},
      {"code", header_.codeOffset, header_.codeSize, trailer_.codeHash}};
  for (const Part &part : parts) {
    if (!weights && std::strcmp(part.name, "weights") == 0)
      continue;
    uint64_t actual = Checksum::of(mapping_ + part.offset, part.size);
    if (actual != part.expected) {
      char text[64];
      std::snprintf(text, sizeof(text), "%016llx, expected %016llx",
                    static_cast<unsigned long long>(actual),
                    static_cast<unsigned long long>(part.expected));
      throw Error(path_ + ": the " + part.name +
                  " section is corrupt: its XXH3 checksum is " + text +
                  " (the file was modified or damaged after it was written; "
                  "recompile or copy it again)");
    }
  }
  verifySeconds_ = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
}

//===----------------------------------------------------------------------===//
// Manifest
//===----------------------------------------------------------------------===//

namespace {
/// Reads manifest fields with messages that name the file and the field.
class FieldReader {
public:
  explicit FieldReader(const std::string &path) : path_(path) {}

  [[noreturn]] void fail(const std::string &field,
                         const std::string &message) const {
    throw Error(path_ + ": manifest field '" + field + "' " + message);
  }

  /// A member that is present and not null, or null.
  static const JsonValue *optional(const JsonValue &parent, const char *key) {
    const JsonValue *v = parent.find(key);
    return v && !v->isNull() ? v : nullptr;
  }

  const JsonValue &require(const JsonValue &parent,
                           const std::string &parentName, const char *key,
                           JsonValue::Kind kind) const {
    std::string field = join(parentName, key);
    const JsonValue *v = parent.find(key);
    if (!v)
      fail(field, "is missing");
    if (v->kind() != kind)
      fail(field, std::string("must be ") + JsonValue::kindName(kind) +
                      ", found " + JsonValue::kindName(v->kind()));
    return *v;
  }

  const JsonValue &object(const JsonValue &parent,
                          const std::string &parentName,
                          const char *key) const {
    return require(parent, parentName, key, JsonValue::Kind::Object);
  }

  std::string string(const JsonValue &parent, const std::string &parentName,
                     const char *key) const {
    return require(parent, parentName, key, JsonValue::Kind::String).asString();
  }

  std::string optionalString(const JsonValue &parent,
                             const std::string &parentName,
                             const char *key) const {
    if (!optional(parent, key))
      return "";
    return string(parent, parentName, key);
  }

  int64_t integer(const JsonValue &parent, const std::string &parentName,
                  const char *key, int64_t min, int64_t max = INT64_MAX) const {
    const JsonValue &v =
        require(parent, parentName, key, JsonValue::Kind::Number);
    return checkInteger(v, join(parentName, key), min, max);
  }

  int64_t checkInteger(const JsonValue &v, const std::string &field,
                       int64_t min, int64_t max) const {
    if (!v.isInteger())
      fail(field, "must be an integer, found " + std::to_string(v.asDouble()));
    int64_t value = v.asInt();
    if (value < min || value > max)
      fail(field, "is " + std::to_string(value) + ", must be in [" +
                      std::to_string(min) + ", " + std::to_string(max) + "]");
    return value;
  }

  static std::string join(const std::string &parent, const char *key) {
    return parent.empty() ? key : parent + "." + key;
  }

private:
  const std::string &path_;
};
} // namespace

void Artifact::parseManifest() {
  std::string_view text(
      reinterpret_cast<const char *>(mapping_ + header_.manifestOffset),
      header_.manifestSize);
  manifest_ = parseJson(text, path_ + ": manifest");
  if (!manifest_.isObject())
    throw Error(path_ + ": the manifest is not a JSON object");
}

void Artifact::readManifest(const OpenOptions &options) {
  parseManifest();
  FieldReader r(path_);
  const JsonValue &m = manifest_;

  int64_t version = r.integer(m, "", "format_version", 0);
  if (version != kFormatVersion)
    throw Error(path_ + ": manifest format_version " + std::to_string(version) +
                " is not supported (this runtime supports version " +
                std::to_string(kFormatVersion) + ")");

  // The targets: "target", or, in an artifact for several, "targets" (each
  // with its part of the code section; "target" is the first).
  std::vector<Candidate> all;
  auto readTarget = [&](const JsonValue &target, const std::string &where) {
    Candidate c;
    c.json = &target;
    c.info.kind = r.string(target, where, "kind");
    c.info.triple = r.string(target, where, "triple");
    c.info.cpu = r.optionalString(target, where, "cpu");
    c.info.features = r.optionalString(target, where, "features");
    c.info.chip = r.optionalString(target, where, "chip");
    if (r.optional(target, "sve_bits"))
      c.info.sveBits = r.integer(target, where, "sve_bits", 128, 2048);
    c.codeSize = header_.codeSize;
    if (r.optional(target, "code_offset")) {
      c.codeOffset = static_cast<uint64_t>(
          r.integer(target, where, "code_offset", 0));
      c.codeSize =
          static_cast<uint64_t>(r.integer(target, where, "code_size", 1));
      if (c.codeOffset > header_.codeSize ||
          c.codeSize > header_.codeSize - c.codeOffset)
        throw Error(path_ + ": " + where +
                    "'s code lies outside the code section");
    }
    all.push_back(std::move(c));
  };
  if (const JsonValue *targets = m.find("targets")) {
    if (!targets->isArray() || targets->asArray().empty())
      throw Error(path_ + ": 'targets' must be a non-empty array");
    for (size_t i = 0; i < targets->asArray().size(); ++i) {
      const JsonValue &target = targets->asArray()[i];
      if (!target.isObject())
        throw Error(path_ + ": 'targets[" + std::to_string(i) +
                    "]' must be an object");
      readTarget(target, "targets[" + std::to_string(i) + "]");
    }
  } else {
    readTarget(r.object(m, "", "target"), "target");
  }
  // Each target's backend says whether its code can run here.
  std::vector<std::string> kinds;
  for (Candidate &c : all) {
    kinds.push_back(c.info.kind);
    if (!options.device.empty() && c.info.kind != options.device)
      continue;
    std::string why;
    try {
      why = createBackend(c.info.kind)->checkTarget(c.info);
    } catch (const Error &error) {
      why = error.what();
    }
    if (why.empty())
      candidates_.push_back(std::move(c));
    else
      refused_.push_back(why);
  }
  if (candidates_.empty()) {
    if (!options.device.empty() && refused_.empty()) {
      std::string list;
      for (const std::string &kind : kinds)
        list += (list.empty() ? "" : ", ") + kind;
      throw Error(path_ + ": has no code for device '" + options.device +
                  "' (it has: " + list + ")");
    }
    std::string reasons;
    for (const std::string &why : refused_)
      reasons += (reasons.empty() ? "" : "; ") + why;
    throw Error(path_ + ": " + reasons);
  }
  target_ = candidates_.front().info;

  const JsonValue &model = r.object(m, "", "model");
  model_.architecture = r.string(model, "model", "architecture");
  // Token ids are int32 in the entry-point ABI.
  model_.vocabSize = r.integer(model, "model", "vocab_size", 1, INT32_MAX);
  // Informational for the runtime (the code has them baked in).
  model_.hiddenSize = r.integer(model, "model", "hidden_size", 0);
  model_.numLayers = r.integer(model, "model", "num_layers", 0);
  model_.contextLength =
      r.integer(model, "model", "context_length", 1, INT32_MAX);
  if (r.optional(model, "kv_window")) {
    model_.kvWindow = r.integer(model, "model", "kv_window", 1, INT32_MAX);
    model_.kvSinks = r.integer(model, "model", "kv_sinks", 0, INT32_MAX);
  }
  for (auto [key, slot] : {std::pair{"bos_token_id", &model_.bosTokenId},
                           std::pair{"eos_token_id", &model_.eosTokenId}})
    if (r.optional(model, key))
      *slot = static_cast<int32_t>(
          r.integer(model, "model", key, 0, model_.vocabSize - 1));
  // Generation ends at the model's end-of-sequence id and at those of
  // generation_config (an id or a list).
  if (model_.eosTokenId)
    endOfSequenceIds_.push_back(*model_.eosTokenId);
  if (const JsonValue *generation = m.find("generation_config");
      generation && generation->isObject())
    if (const JsonValue *eos = generation->find("eos_token_id");
        eos && !eos->isNull()) {
      std::vector<const JsonValue *> ids;
      if (eos->isArray())
        for (const JsonValue &id : eos->asArray())
          ids.push_back(&id);
      else
        ids.push_back(eos);
      for (const JsonValue *id : ids) {
        if (!id->isInteger() || id->asInt() < 0 ||
            id->asInt() >= model_.vocabSize)
          r.fail("generation_config.eos_token_id",
                 "must be token ids below the vocabulary size");
        auto value = static_cast<int32_t>(id->asInt());
        if (std::find(endOfSequenceIds_.begin(), endOfSequenceIds_.end(),
                      value) == endOfSequenceIds_.end())
          endOfSequenceIds_.push_back(value);
      }
    }

  const JsonValue &entries = r.object(m, "", "entry_points");
  prefillName_ = r.string(entries, "entry_points", "prefill");
  decodeName_ = r.string(entries, "entry_points", "decode");
  stepName_ = r.optionalString(entries, "entry_points", "step");

  const JsonValue &kv = r.object(m, "", "kv_cache");
  kvCacheBytes_ = r.integer(kv, "kv_cache", "bytes", 0);
  kvCacheBytesPerToken_ = r.integer(kv, "kv_cache", "bytes_per_token", 0);
  if (r.optional(kv, "layers")) {
    const auto &layers =
        r.require(kv, "kv_cache", "layers", JsonValue::Kind::Array).asArray();
    for (size_t i = 0; i < layers.size(); ++i) {
      std::string name = "kv_cache.layers[" + std::to_string(i) + "]";
      if (!layers[i].isObject())
        r.fail(name, "must be an object");
      int64_t offset = r.integer(layers[i], name, "offset", 0,
                                 static_cast<int64_t>(kvCacheBytes_));
      r.integer(layers[i], name, "bytes", 0,
                static_cast<int64_t>(kvCacheBytes_) - offset);
      if (!r.optional(layers[i], "regions"))
        continue;
      int64_t rows = r.integer(layers[i], name, "capacity", 1, INT32_MAX);
      const auto &regions =
          r.require(layers[i], name, "regions", JsonValue::Kind::Array)
              .asArray();
      for (size_t j = 0; j < regions.size(); ++j) {
        std::string part = name + ".regions[" + std::to_string(j) + "]";
        if (!regions[j].isObject())
          r.fail(part, "must be an object");
        KVCacheRegion region;
        region.rows = uint64_t(rows);
        region.offset = uint64_t(
            r.integer(regions[j], part, "offset", 0, int64_t(kvCacheBytes_)));
        region.rowBytes =
            uint64_t(r.integer(regions[j], part, "row_bytes", 1,
                               int64_t(kvCacheBytes_ - region.offset) / rows));
        kvCacheRegions_.push_back(region);
      }
    }
    // Paging needs every layer's rows: all layers describe them, or none.
    size_t described = 0;
    for (const JsonValue &layer : layers)
      described += layer.find("regions") != nullptr;
    if (described != 0 && described != layers.size())
      r.fail("kv_cache.layers",
             "describes the regions of " + std::to_string(described) + " of " +
                 std::to_string(layers.size()) + " layers (all or none)");
    // Paging maps each region's rows on their own: they must not overlap.
    std::vector<KVCacheRegion> sorted = kvCacheRegions_;
    std::sort(sorted.begin(), sorted.end(),
              [](const KVCacheRegion &a, const KVCacheRegion &b) {
                return a.offset < b.offset;
              });
    for (size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i - 1].offset + sorted[i - 1].rows * sorted[i - 1].rowBytes >
          sorted[i].offset)
        r.fail("kv_cache.layers", "has overlapping regions");
    kvCacheRegions_ = std::move(sorted);
  }

  if (r.optional(m, "expert_counts")) {
    const auto &slots =
        r.require(m, "", "expert_counts", JsonValue::Kind::Array).asArray();
    for (size_t i = 0; i < slots.size(); ++i) {
      std::string name = "expert_counts[" + std::to_string(i) + "]";
      if (!slots[i].isObject())
        r.fail(name, "must be an object");
      ExpertCounterSlot slot;
      slot.name = r.string(slots[i], name, "name");
      slot.experts = r.integer(slots[i], name, "experts", 1, INT32_MAX);
      int64_t last = static_cast<int64_t>(kvCacheBytes_) - slot.experts * 8;
      if (last < 0)
        r.fail(name, "needs " + std::to_string(slot.experts * 8) +
                         " bytes but the cache has " +
                         std::to_string(kvCacheBytes_));
      slot.offset = r.integer(slots[i], name, "offset", 0, last);
      if (slot.offset % 8 != 0)
        r.fail(name + ".offset", "must be a multiple of 8");
      expertCounters_.push_back(std::move(slot));
    }
  }

  const JsonValue &weights = r.object(m, "", "weights");
  weightsBytes_ = r.integer(weights, "weights", "bytes", 0);
  if (weightsBytes_ != header_.weightsSize)
    r.fail("weights.bytes", "is " + std::to_string(weightsBytes_) +
                                " but the weights section has " +
                                std::to_string(header_.weightsSize) + " bytes");
  parameterCount_ = r.integer(weights, "weights", "parameter_count", 0);
  if (r.optional(weights, "tensors")) {
    const auto &tensors =
        r.require(weights, "weights", "tensors", JsonValue::Kind::Array)
            .asArray();
    for (size_t i = 0; i < tensors.size(); ++i) {
      std::string name = "weights.tensors[" + std::to_string(i) + "]";
      if (!tensors[i].isObject())
        r.fail(name, "must be an object");
      if (const JsonValue *n = tensors[i].find("name"); n && n->isString())
        name += " (" + n->asString() + ")";
      int64_t offset = r.integer(tensors[i], name, "offset", 0,
                                 static_cast<int64_t>(weightsBytes_));
      if (offset % kTensorAlignment != 0)
        r.fail(name + ".offset", "is " + std::to_string(offset) + ", not " +
                                     std::to_string(kTensorAlignment) +
                                     "-byte aligned");
      r.integer(tensors[i], name, "bytes", 0,
                static_cast<int64_t>(weightsBytes_) - offset);
    }
  }
  compiler_ = r.optionalString(m, "", "compiler");
}

//===----------------------------------------------------------------------===//
// Code
//===----------------------------------------------------------------------===//

void Artifact::loadCode(const OpenOptions &options) {
  // The first candidate that loads (a GPU target fails here when its driver
  // or device is missing); an explicit device gets no fallback.
  std::vector<std::string> failures = refused_;
  for (const Candidate &candidate : candidates_) {
    target_ = candidate.info;
    try {
      loadCandidate(candidate, options);
      return;
    } catch (const Error &error) {
      backend_.reset();
      if (!options.device.empty() || candidates_.size() == 1)
        throw;
      failures.push_back(error.what());
    }
  }
  std::string reasons;
  for (const std::string &why : failures)
    reasons += (reasons.empty() ? "" : "; ") + why;
  throw Error(path_ + ": none of its targets runs here: " + reasons);
}

void Artifact::loadCandidate(const Candidate &candidate,
                             const OpenOptions &options) {
  backend_ = createBackend(target_.kind);
  CodeManifest manifest;
  manifest.mapWeights = options.mapWeights;
  manifest.path = path_;
  manifest.model = &model_;
  manifest.target = &target_;
  manifest.kvCacheBytes = kvCacheBytes_;
  manifest.weightsBytes = weightsBytes_;
  manifest.prefillName = prefillName_;
  manifest.decodeName = decodeName_;
  manifest.stepName = stepName_;
  manifest.targetJson = candidate.json;
  backend_->loadCode(mapping_ + header_.codeOffset + candidate.codeOffset,
                     candidate.codeSize, manifest);
  backend_->uploadWeights(weightsData(), weightsSize());
}
