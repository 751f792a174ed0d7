//===- RuntimeTestUtil.h - artifacts and processes for runtime tests ------===//
//
// Writes valid (or deliberately broken) model.xfmr files around the fixture
// shared object, so the runtime is tested without the compiler.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H
#define XFMR_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H

#include "FixtureModel.h"

#include "xfmr/runtime/ArtifactFormat.h"
#include "xfmr/runtime/Checksum.h"
#include "xfmr/runtime/Host.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace xfmr::test {

using Bytes = std::vector<uint8_t>;

inline Bytes readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

inline void writeBytes(const std::string &path, const Bytes &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
}

inline std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The pieces of a fixture artifact; tests change one and build.
struct FixtureArtifact {
  int64_t vocab = kFixtureVocab;
  int64_t context = kFixtureContext;
  std::string triple = xfmr::runtime::hostTriple();
  std::string kind = "cpu";
  std::string prefillSymbol = "_mlir_ciface_prefill";
  std::string decodeSymbol = "_mlir_ciface_decode";
  std::vector<float> bias;
  Bytes code = readBytes(XFMR_FIXTURE_MODEL);
  /// Applied to the manifest text (e.g. to drop a field); identity if empty.
  std::function<std::string(std::string)> editManifest;

  FixtureArtifact() {
    for (int64_t v = 0; v < vocab; ++v)
      bias.push_back(0.25f * float(v % 5));
  }

  uint64_t weightBytes() const {
    // Padded like a real blob; the manifest must agree with the section.
    return (bias.size() * sizeof(float) + 63) / 64 * 64;
  }

  std::string manifest() const {
    std::string cacheBytes = std::to_string(context * 4);
    std::ostringstream m;
    m << "{\"format_version\": 2,\n"
      << " \"target\": {\"kind\": \"" << kind << "\", \"triple\": \"" << triple
      << "\", \"cpu\": \"" << kFixtureCpu << "\", \"features\": \""
      << kFixtureFeatures << "\"},\n"
      << " \"model\": {\"architecture\": \"FixtureForCausalLM\", "
      << "\"vocab_size\": " << vocab << ", \"hidden_size\": 8, "
      << "\"num_layers\": 1, \"context_length\": " << context
      << ", \"bos_token_id\": 1, \"eos_token_id\": 2},\n"
      << " \"entry_points\": {\"prefill\": \"" << prefillSymbol
      << "\", \"decode\": \"" << decodeSymbol << "\"},\n"
      << " \"kv_cache\": {\"bytes\": " << cacheBytes
      << ", \"bytes_per_token\": 4, \"layers\": [{\"kind\": \"kv\", "
      << "\"offset\": 0, \"bytes\": " << cacheBytes << "}]},\n"
      << " \"weights\": {\"bytes\": " << weightBytes()
      << ", \"parameter_count\": " << vocab
      << ", \"tensors\": [{\"name\": \"bias\", \"offset\": 0, \"bytes\": "
      << vocab * 4 << ", \"dtype\": \"f32\", \"shape\": [" << vocab << "]}]},\n"
      << " \"compiler\": \"fixture\"}\n";
    return editManifest ? editManifest(m.str()) : m.str();
  }

  /// The file contents: header, manifest, weights, code, checksum trailer.
  Bytes bytes() const {
    auto align = [](uint64_t x) {
      return (x + xfmr::artifact::kSectionAlignment - 1) /
             xfmr::artifact::kSectionAlignment *
             xfmr::artifact::kSectionAlignment;
    };
    std::string m = manifest();
    xfmr::artifact::FileHeader h{};
    std::memcpy(h.magic, xfmr::artifact::kMagic, sizeof(h.magic));
    h.version = xfmr::artifact::kFormatVersion;
    h.manifestOffset = xfmr::artifact::kSectionAlignment;
    h.manifestSize = m.size();
    h.weightsOffset = align(h.manifestOffset + h.manifestSize);
    h.weightsSize = weightBytes();
    h.codeOffset = align(h.weightsOffset + h.weightsSize);
    h.codeSize = code.size();
    h.fileSize = h.codeOffset + h.codeSize + sizeof(artifact::FileTrailer);
    Bytes out(h.fileSize, 0);
    std::memcpy(out.data(), &h, sizeof(h));
    std::memcpy(out.data() + h.manifestOffset, m.data(), m.size());
    std::memcpy(out.data() + h.weightsOffset, bias.data(),
                bias.size() * sizeof(float));
    std::memcpy(out.data() + h.codeOffset, code.data(), code.size());
    artifact::FileTrailer t{};
    std::memcpy(t.magic, artifact::kTrailerMagic, sizeof(t.magic));
    using runtime::Checksum;
    t.headerHash = Checksum::of(out.data(), sizeof(h));
    t.manifestHash = Checksum::of(out.data() + h.manifestOffset, h.manifestSize);
    t.weightsHash = Checksum::of(out.data() + h.weightsOffset, h.weightsSize);
    t.codeHash = Checksum::of(out.data() + h.codeOffset, h.codeSize);
    std::memcpy(out.data() + h.fileSize - sizeof(t), &t, sizeof(t));
    return out;
  }

  void write(const std::string &path) const { writeBytes(path, bytes()); }
};

/// Replaces the first `from` in `text` (the test fails if absent).
inline std::string replaceOnce(std::string text, const std::string &from,
                               const std::string &to) {
  size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << "'" << from << "' not in the manifest";
  if (pos != std::string::npos)
    text.replace(pos, from.size(), to);
  return text;
}

/// The logits the fixture computes for `history` (all tokens so far, the
/// last one being the token whose logits these are).
inline std::vector<float> fixtureLogits(const std::vector<float> &bias,
                                        const std::vector<int32_t> &history) {
  std::vector<int32_t> cache;
  for (int32_t id : history)
    cache.push_back(id + 1);
  uint32_t h = fixtureHistoryHash(cache.data(), int64_t(cache.size()));
  std::vector<float> row;
  for (size_t v = 0; v < bias.size(); ++v)
    row.push_back(fixtureLogit(bias.data(), h, int64_t(v)));
  return row;
}

/// A fresh temporary folder per test, removed afterwards.
class TempDirTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "xfmr-rt-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string file(const std::string &name) const { return dir + "/" + name; }

  std::string dir;
};

} // namespace xfmr::test

#endif // XFMR_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H
