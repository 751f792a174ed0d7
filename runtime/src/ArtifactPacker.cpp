//===- ArtifactPacker.cpp - bind checkpoint weights to compiled code ------===//

#include "xfmr/runtime/ArtifactPacker.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/ArtifactFormat.h"
#include "xfmr/runtime/Checksum.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"
#include "xfmr/runtime/OutputFile.h"
#include "xfmr/runtime/SafetensorsCheckpoint.h"

#include <fstream>
#include <sstream>

using namespace xfmr::runtime;
using namespace xfmr::artifact;

namespace {

class CheckpointSource : public TensorSource {
public:
  explicit CheckpointSource(const SafetensorsCheckpoint &checkpoint)
      : checkpoint_(checkpoint) {}
  bool find(const std::string &name, Tensor &tensor) const override {
    const CheckpointTensor *t = checkpoint_.find(name);
    if (!t)
      return false;
    tensor = {t->dtype, t->shape, t->data, t->size};
    return true;
  }
  std::string describe() const override {
    return "the checkpoint " + checkpoint_.dir();
  }

private:
  const SafetensorsCheckpoint &checkpoint_;
};

/// A checkpoint of another architecture fails here with a clear message
/// rather than at the first tensor that does not fit.
void checkArchitecture(const Artifact &artifact, const std::string &dir) {
  const JsonValue *model = artifact.manifest().find("model");
  const JsonValue *architecture = model ? model->find("architecture") : nullptr;
  std::ifstream in(dir + "/config.json", std::ios::binary);
  if (!architecture || !architecture->isString() || !in)
    return;
  std::stringstream text;
  text << in.rdbuf();
  JsonValue config = parseJson(text.str(), dir + "/config.json");
  const JsonValue *names =
      config.isObject() ? config.find("architectures") : nullptr;
  if (!names || !names->isArray() || names->asArray().empty())
    return;
  std::string list;
  for (const JsonValue &name : names->asArray()) {
    if (name.isString() && name.asString() == architecture->asString())
      return;
    list += (list.empty() ? "" : ", ") +
            (name.isString() ? name.asString() : std::string("?"));
  }
  throw Error(dir + "/config.json: the checkpoint is a " + list + ", but " +
              artifact.path() + " was compiled for a " +
              architecture->asString());
}

} // namespace

PackResult xfmr::runtime::packArtifact(
    const std::string &artifactPath, const std::string &checkpointDir,
    const std::string &outputPath,
    const std::function<void(const std::string &)> &progress) {
  std::shared_ptr<Artifact> input = Artifact::inspect(artifactPath);
  std::vector<PackedTensor> plan =
      readPackingPlan(input->manifest(), artifactPath);
  const JsonValue *weights = input->manifest().find("weights");
  const JsonValue *bytes = weights ? weights->find("bytes") : nullptr;
  if (!bytes || !bytes->isInteger() || bytes->asInt() < 0)
    throw Error(artifactPath + ": manifest field 'weights.bytes' must be a "
                               "non-negative integer");
  uint64_t weightsBytes = static_cast<uint64_t>(bytes->asInt());
  std::unique_ptr<SafetensorsCheckpoint> checkpoint =
      SafetensorsCheckpoint::open(checkpointDir);
  checkArchitecture(*input, checkpointDir);

  const FileHeader &in = input->header();
  FileHeader header =
      layoutArtifact(in.manifestSize, weightsBytes, in.codeSize,
                     in.flags & ~kFlagWeightsStripped);
  const uint8_t *base = input->mappingData();
  FileTrailer trailer = input->trailer();
  trailer.headerHash = Checksum::of(&header, sizeof(header));

  OutputFile file;
  if (std::string error = file.open(outputPath); !error.empty())
    throw Error(error);
  uint64_t position = 0;
  auto write = [&](const void *data, size_t size) {
    position += size;
    return file.write(data, size);
  };
  static const char zeros[kSectionAlignment] = {};
  auto padTo = [&](uint64_t target) {
    while (position < target) {
      uint64_t n = std::min<uint64_t>(sizeof(zeros), target - position);
      if (std::string error = write(zeros, n); !error.empty())
        throw Error(error);
    }
  };
  auto check = [](const std::string &error) {
    if (!error.empty())
      throw Error(error);
  };
  check(write(&header, sizeof(header)));
  padTo(header.manifestOffset);
  check(write(base + in.manifestOffset, in.manifestSize));
  padTo(header.weightsOffset);
  Checksum weightsHash;
  PackResult result;
  CheckpointSource source(*checkpoint);
  std::string error = packWeights(
      plan, weightsBytes, source,
      [&](const void *data, size_t size) {
        weightsHash.update(data, size);
        return write(data, size);
      },
      progress, &result.summary);
  if (!error.empty())
    throw Error("cannot pack " + outputPath + ": " + error);
  trailer.weightsHash = weightsHash.digest();
  padTo(header.codeOffset);
  check(write(base + in.codeOffset, in.codeSize));
  check(write(&trailer, sizeof(trailer)));
  check(file.commit());
  result.bytesWritten = header.fileSize;
  result.weightsBytes = weightsBytes;
  result.tensors = plan.size();
  return result;
}
