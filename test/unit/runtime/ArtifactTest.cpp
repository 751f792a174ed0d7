//===- ArtifactTest.cpp - opening and validating model.xfmr ---------------===//

#include "RuntimeTestUtil.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Host.h"

#include <dlfcn.h>
#include <sys/utsname.h>

using namespace xfmr::runtime;
using namespace xfmr::test;
using xfmr::artifact::FileHeader;

namespace {

class ArtifactTest : public TempDirTest {
protected:
  /// The message of the Error that opening `bytes` throws ("" if none).
  std::string openError(const Bytes &bytes) {
    writeBytes(path(), bytes);
    try {
      Artifact::open(path());
    } catch (const Error &e) {
      return e.what();
    }
    return "";
  }
  std::string openError(const FixtureArtifact &fixture) {
    return openError(fixture.bytes());
  }
  /// Opens the fixture with its header changed by `edit`.
  std::string headerError(const std::function<void(FileHeader &)> &edit) {
    Bytes bytes = FixtureArtifact().bytes();
    FileHeader h;
    std::memcpy(&h, bytes.data(), sizeof(h));
    edit(h);
    std::memcpy(bytes.data(), &h, sizeof(h));
    return openError(bytes);
  }
  /// Opens the fixture with its manifest changed from `from` to `to`.
  std::string manifestError(const std::string &from, const std::string &to) {
    FixtureArtifact fixture;
    fixture.editManifest = [&](std::string m) {
      return replaceOnce(m, from, to);
    };
    return openError(fixture);
  }
  std::string path() const { return file("model.xfmr"); }
};

#define EXPECT_CONTAINS(text, part)                                            \
  EXPECT_NE(std::string(text).find(part), std::string::npos)                   \
      << "message: " << (text)

TEST_F(ArtifactTest, OpensAValidArtifact) {
  FixtureArtifact fixture;
  fixture.write(path());
  auto a = Artifact::open(path());
  EXPECT_EQ(a->path(), path());
  EXPECT_EQ(a->vocabSize(), 16);
  EXPECT_EQ(a->contextLength(), 32);
  EXPECT_EQ(a->model().architecture, "FixtureForCausalLM");
  EXPECT_EQ(a->model().hiddenSize, 8);
  EXPECT_EQ(a->model().numLayers, 1);
  EXPECT_EQ(a->bosTokenId(), 1);
  EXPECT_EQ(a->eosTokenId(), 2);
  EXPECT_EQ(a->kvCacheBytes(), 128u);
  EXPECT_EQ(a->kvCacheBytesPerToken(), 4u);
  EXPECT_EQ(a->weightsBytes(), 64u);
  EXPECT_EQ(a->parameterCount(), 16u);
  EXPECT_EQ(a->compiler(), "fixture");
  EXPECT_EQ(a->target().kind, "cpu");
  EXPECT_EQ(a->target().cpu, "x86-64");
  EXPECT_EQ(a->manifest().find("format_version")->asInt(), 1);
  EXPECT_NE(a->prefillFn(), nullptr);
  EXPECT_NE(a->decodeFn(), nullptr);
  EXPECT_NE(a->prefillFn(), a->decodeFn());
}

TEST_F(ArtifactTest, WeightsAreUsedInPlace) {
  FixtureArtifact fixture;
  fixture.write(path());
  auto a = Artifact::open(path());
  const uint8_t *begin = a->mappingData(), *end = begin + a->mappingSize();
  EXPECT_EQ(a->mappingSize(), fixture.bytes().size());
  EXPECT_GE(a->weightsData(), begin);
  EXPECT_LE(a->weightsData() + a->weightsSize(), end);
  EXPECT_EQ(a->weightsData(), begin + a->header().weightsOffset);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a->weightsData()) % 4096, 0u);
  EXPECT_EQ(std::memcmp(a->weightsData(), fixture.bias.data(), 64), 0);
}

TEST_F(ArtifactTest, MissingOrSpecialFiles) {
  try {
    Artifact::open(file("absent.xfmr"));
    FAIL();
  } catch (const Error &e) {
    EXPECT_CONTAINS(e.what(), file("absent.xfmr") + ": cannot open");
  }
  EXPECT_THROW(Artifact::open(dir), Error); // a directory
  EXPECT_CONTAINS(openError(Bytes{}), "not an xfmr artifact");
}

TEST_F(ArtifactTest, BadMagic) {
  Bytes bytes = FixtureArtifact().bytes();
  bytes[0] = 'Y';
  EXPECT_EQ(openError(bytes),
            path() + ": not an xfmr artifact (the file does not start with "
                     "the magic \"XFMRART\")");
  std::string text = "{\"format_version\": 1}";
  EXPECT_CONTAINS(openError(Bytes(text.begin(), text.end())),
                  "not an xfmr artifact");
}

TEST_F(ArtifactTest, UnsupportedVersion) {
  EXPECT_EQ(headerError([](FileHeader &h) { h.version = 2; }),
            path() + ": artifact format version 2 is not supported (this "
                     "runtime supports version 1); recompile the model");
}

TEST_F(ArtifactTest, Truncated) {
  Bytes bytes = FixtureArtifact().bytes();
  size_t full = bytes.size();
  bytes.resize(full - 100);
  EXPECT_EQ(openError(bytes),
            path() + ": truncated: the header says " + std::to_string(full) +
                " bytes, the file has " + std::to_string(full - 100));
  bytes.resize(40); // magic, but not a whole header
  EXPECT_CONTAINS(openError(bytes), "truncated: 40 bytes");
  bytes = FixtureArtifact().bytes();
  bytes.push_back(0);
  EXPECT_CONTAINS(openError(bytes), "(trailing data)");
}

TEST_F(ArtifactTest, BadSections) {
  EXPECT_CONTAINS(headerError([](FileHeader &h) { h.weightsOffset += 64; }),
                  "weights section [offset 8256, size 64] is not 4096-byte "
                  "aligned");
  EXPECT_CONTAINS(headerError([](FileHeader &h) { h.codeSize += 1; }),
                  "code section");
  EXPECT_CONTAINS(headerError([](FileHeader &h) { h.codeSize += 1; }),
                  "runs past the end of the file");
  EXPECT_CONTAINS(headerError([](FileHeader &h) { h.manifestOffset = 8; }),
                  "manifest section [offset 8, size");
  EXPECT_CONTAINS(
      headerError([](FileHeader &h) { h.weightsOffset = ~uint64_t(0) - 4095; }),
      "runs past the end");
  EXPECT_CONTAINS(headerError([](FileHeader &h) {
                    h.weightsOffset = h.codeOffset;
                    h.weightsSize = 64;
                  }),
                  "the weights and code sections overlap");
  EXPECT_CONTAINS(headerError([](FileHeader &h) { h.reserved = 1; }),
                  "header field 'reserved' is 1, must be 0");
}

TEST_F(ArtifactTest, ManifestNotJson) {
  std::string m = FixtureArtifact().manifest();
  EXPECT_CONTAINS(manifestError("{\"format_version\"", "{format_version"),
                  path() + ": manifest: invalid JSON at offset 1");
  EXPECT_CONTAINS(manifestError(m, "[1, 2]"), "manifest is not a JSON object");
}

TEST_F(ArtifactTest, ManifestFields) {
  EXPECT_EQ(manifestError("\"vocab_size\": 16, ", ""),
            path() + ": manifest field 'model.vocab_size' is missing");
  EXPECT_EQ(manifestError("\"vocab_size\": 16", "\"vocab_size\": \"16\""),
            path() + ": manifest field 'model.vocab_size' must be a number, "
                     "found a string");
  EXPECT_CONTAINS(manifestError("\"vocab_size\": 16", "\"vocab_size\": 0"),
                  "'model.vocab_size' is 0, must be in [1, 2147483647]");
  EXPECT_CONTAINS(
      manifestError("\"context_length\": 32", "\"context_length\": 3.5"),
      "'model.context_length' must be an integer, found 3.5");
  EXPECT_CONTAINS(manifestError("\"eos_token_id\": 2", "\"eos_token_id\": 16"),
                  "'model.eos_token_id' is 16, must be in [0, 15]");
  EXPECT_EQ(manifestError("\"bos_token_id\": 1", "\"bos_token_id\": null"), "");
  EXPECT_CONTAINS(
      manifestError("\"format_version\": 1", "\"format_version\": 2"),
      "manifest format_version 2 is not supported");
  EXPECT_CONTAINS(
      manifestError("\"decode\": \"_mlir_ciface_decode\"", "\"decode\": 3"),
      "'entry_points.decode' must be a string");
  EXPECT_CONTAINS(manifestError("\"bytes_per_token\": 4, ", ""),
                  "'kv_cache.bytes_per_token' is missing");
  EXPECT_CONTAINS(
      manifestError("\"parameter_count\": 16", "\"parameter_count\": -1"),
      "'weights.parameter_count' is -1");
  EXPECT_CONTAINS(manifestError("\"weights\": {\"bytes\": 64",
                                "\"weights\": {\"bytes\": 128"),
                  "'weights.bytes' is 128 but the weights section has 64 "
                  "bytes");
  EXPECT_CONTAINS(manifestError("\"name\": \"bias\", \"offset\": 0",
                                "\"name\": \"bias\", \"offset\": 32"),
                  "'weights.tensors[0] (bias).offset' is 32, not 64-byte "
                  "aligned");
  EXPECT_CONTAINS(manifestError("\"offset\": 0, \"bytes\": 128",
                                "\"offset\": 64, \"bytes\": 128"),
                  "'kv_cache.layers[0].bytes' is 128, must be in [0, 64]");
  EXPECT_CONTAINS(manifestError("\"model\": {", "\"model\": 1, \"m\": {"),
                  "'model' must be an object, found a number");
}

TEST_F(ArtifactTest, TargetMustMatchTheHost) {
  FixtureArtifact fixture;
  fixture.kind = "cuda";
  EXPECT_EQ(openError(fixture),
            path() + ": target kind 'cuda' is not supported by this runtime "
                     "(it runs 'cpu' artifacts)");
  fixture = FixtureArtifact();
  fixture.triple = "aarch64-unknown-linux-gnu";
  EXPECT_EQ(openError(fixture),
            path() +
                ": target triple 'aarch64-unknown-linux-gnu' does not "
                "match this host '" +
                hostTriple() + "': architecture 'aarch64' is not 'x86_64'");
  fixture.triple = "x86_64-pc-windows-msvc";
  EXPECT_CONTAINS(openError(fixture), "operating system 'windows' is not "
                                      "'linux'");
  fixture.triple = "x86_64-linux-gnu"; // no vendor: fine
  EXPECT_EQ(openError(fixture), "");
  fixture = FixtureArtifact();
  fixture.editManifest = [](std::string m) {
    return replaceOnce(m, "\"cpu\": \"x86-64\"", "\"cpu\": \"x86-64-v2\"");
  };
  EXPECT_EQ(openError(fixture), ""); // every test machine has x86-64-v2
}

TEST_F(ArtifactTest, HostTriple) {
  struct utsname info;
  ASSERT_EQ(uname(&info), 0);
  EXPECT_EQ(hostTriple().rfind(std::string(info.machine) + "-unknown-linux", 0),
            0u);
  EXPECT_EQ(tripleMismatch(hostTriple()), "");
  EXPECT_NE(tripleMismatch("nvptx64-nvidia-cuda"), "");
  EXPECT_NE(tripleMismatch("garbage"), "");
  EXPECT_EQ(cpuMismatch("some-future-cpu", "+some-future-feature"), "");
}

TEST_F(ArtifactTest, CodeMustLoad) {
  FixtureArtifact fixture;
  fixture.code = Bytes(100, 0);
  EXPECT_EQ(openError(fixture),
            path() + ": the code section is not an ELF shared object");
  fixture.code = Bytes{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0};
  EXPECT_CONTAINS(openError(fixture), ": cannot load the model code: ");
}

TEST_F(ArtifactTest, EntryPointsMustResolve) {
  FixtureArtifact fixture;
  fixture.decodeSymbol = "_mlir_ciface_missing";
  EXPECT_EQ(openError(fixture),
            path() + ": entry point 'decode' names symbol "
                     "'_mlir_ciface_missing', which the model code does not "
                     "define");
}

TEST_F(ArtifactTest, ThreadsReachOpenMP) {
  FixtureArtifact fixture;
  fixture.write(path());
  auto a = Artifact::open(path());
  ASSERT_TRUE(a->threadsSupported());
  auto get = reinterpret_cast<int (*)()>(a->symbol("fixture_get_threads"));
  ASSERT_NE(get, nullptr);
  EXPECT_GE(get(), 1); // open() applies the default (all cores)
  a->setThreads(3);
  EXPECT_EQ(get(), 3);
  EXPECT_EQ(a->threads(), 3);
  EXPECT_THROW(a->setThreads(-1), Error);
  EXPECT_EQ(a->symbol("no_such_symbol"), nullptr);
}

TEST_F(ArtifactTest, ThreadsWithoutOpenMPAreRemembered) {
  FixtureArtifact fixture;
  fixture.code = readBytes(XFMR_FIXTURE_MODEL_NO_OMP);
  fixture.write(path());
  auto a = Artifact::open(path());
  EXPECT_FALSE(a->threadsSupported());
  a->setThreads(5);
  EXPECT_EQ(a->threads(), 5);
}

TEST_F(ArtifactTest, ManyArtifactsLoadTheirOwnCode) {
  // Alternate two different code objects through the same descriptor
  // numbers: each open must load its own code, never a stale one.
  FixtureArtifact omp, noOmp;
  noOmp.code = readBytes(XFMR_FIXTURE_MODEL_NO_OMP);
  omp.write(file("omp.xfmr"));
  noOmp.write(file("noomp.xfmr"));
  for (int i = 0; i < 20; ++i) {
    bool useOmp = i % 2 == 0;
    auto a = Artifact::open(file(useOmp ? "omp.xfmr" : "noomp.xfmr"));
    EXPECT_EQ(a->threadsSupported(), useOmp) << i;
  }
  // Two at once.
  auto a = Artifact::open(file("omp.xfmr"));
  auto b = Artifact::open(file("noomp.xfmr"));
  EXPECT_TRUE(a->threadsSupported());
  EXPECT_FALSE(b->threadsSupported());
  EXPECT_NE(a->prefillFn(), b->prefillFn());
}

TEST_F(ArtifactTest, StaleCodeNamesAreSkipped) {
  FixtureArtifact omp, noOmp;
  noOmp.code = readBytes(XFMR_FIXTURE_MODEL_NO_OMP);
  omp.write(file("omp.xfmr"));
  noOmp.write(file("noomp.xfmr"));
  std::string name;
  {
    auto a = Artifact::open(file("omp.xfmr"));
    Dl_info info;
    ASSERT_NE(dladdr(a->symbol("fixture_get_threads"), &info), 0);
    name = info.dli_fname;
    // Pin the code so that it outlives the artifact under its old name, as
    // code that cannot be unloaded would.
    ASSERT_NE(dlopen(name.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE),
              nullptr);
  }
  // The next memfd likely gets the same number: the name is taken.
  auto b = Artifact::open(file("noomp.xfmr"));
  EXPECT_FALSE(b->threadsSupported());
  Dl_info info;
  ASSERT_NE(dladdr(reinterpret_cast<void *>(b->prefillFn()), &info), 0);
  EXPECT_NE(name, info.dli_fname);
}

} // namespace
