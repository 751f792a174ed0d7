//===- ArtifactTest.cpp - opening and validating model.xfmr ---------------===//

#include "RuntimeTestUtil.h"

#include "backends/cpu/CpuBackend.h"
#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Host.h"
#include "xfmr/runtime/KVBlockPool.h"

#include <cstddef>
#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/utsname.h>

using namespace xfmr::runtime;

/// The CPU backend that runs a loaded artifact's code.
static const CpuBackend &cpuCode(const Artifact &artifact) {
  return static_cast<const CpuBackend &>(artifact.backend());
}
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
  /// The message of the Error that opening the file at `file` throws.
  std::string openError(const std::string &file) {
    try {
      Artifact::open(file);
    } catch (const Error &e) {
      return e.what();
    }
    return "";
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
  EXPECT_EQ(a->manifest().find("format_version")->asInt(), 2);
  EXPECT_GE(a->verifySeconds(), 0.0);
  EXPECT_EQ(a->backend().kind(), "cpu");
  EXPECT_NE(cpuCode(*a).prefillFn(), nullptr);
  EXPECT_NE(cpuCode(*a).decodeFn(), nullptr);
  EXPECT_NE(cpuCode(*a).prefillFn(), cpuCode(*a).decodeFn());
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
  std::string text = "{\"format_version\": 2}";
  EXPECT_CONTAINS(openError(Bytes(text.begin(), text.end())),
                  "not an xfmr artifact");
}

TEST_F(ArtifactTest, UnsupportedVersion) {
  EXPECT_EQ(headerError([](FileHeader &h) { h.version = 1; }),
            path() + ": artifact format version 1 is not supported (this "
                     "runtime supports version 2); recompile the model");
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
  EXPECT_CONTAINS(headerError([](FileHeader &h) { h.flags = 6; }),
                  "header field 'flags' is 6, which has unknown bits");
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
      manifestError("\"format_version\": 2", "\"format_version\": 3"),
      "manifest format_version 3 is not supported");
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

/// The fixture with its one cache layer described by `regions` (JSON).
static FixtureArtifact withRegions(const std::string &regions) {
  FixtureArtifact fixture;
  fixture.editManifest = [regions](std::string m) {
    return replaceOnce(m, "\"offset\": 0, \"bytes\": 128}",
                       "\"offset\": 0, \"bytes\": 128, \"capacity\": 32, "
                       "\"regions\": " +
                           regions + "}");
  };
  return fixture;
}

TEST_F(ArtifactTest, CacheRegionsAndWhetherTheyPage) {
  // Absent: an artifact of an older compiler, which cannot be paged.
  FixtureArtifact plain;
  plain.write(path());
  auto a = Artifact::open(path());
  EXPECT_TRUE(a->kvCacheRegions().empty());
  EXPECT_CONTAINS(KVBlockPool::whyNotPageable(*a), "compile it again");

  withRegions("[{\"offset\": 0, \"row_bytes\": 4}]").write(path());
  a = Artifact::open(path());
  ASSERT_EQ(a->kvCacheRegions().size(), 1u);
  EXPECT_EQ(a->kvCacheRegions()[0].rowBytes, 4u);
  EXPECT_EQ(a->kvCacheRegions()[0].rows, 32u);
  // Rows of 4 bytes: a block of a page would be 1024 positions, past the
  // capacity of 32.
  EXPECT_CONTAINS(KVBlockPool::whyNotPageable(*a),
                  "needs a block size that makes whole pages");
  EXPECT_CONTAINS(KVBlockPool::whyNotPageable(*a, 8), "8 positions make 32");
  try {
    KVBlockPool(a, KVBlockPoolOptions{4, 1, 0});
    ADD_FAILURE() << "a pool of an unpageable cache";
  } catch (const Error &e) {
    EXPECT_CONTAINS(e.what(), path() + ": the KV cache cannot be paged");
  }

  EXPECT_CONTAINS(
      openError(withRegions("[{\"offset\": 0, \"row_bytes\": 8}]")),
      "'kv_cache.layers[0].regions[0].row_bytes' is 8, must be in [1, 4]");
  EXPECT_CONTAINS(openError(withRegions("[{\"offset\": 0, \"row_bytes\": 2}, "
                                        "{\"offset\": 32, \"row_bytes\": 2}]")),
                  "'kv_cache.layers' has overlapping regions");
  EXPECT_CONTAINS(
      openError(withRegions("[{\"offset\": 200, \"row_bytes\": 1}]")),
      "'kv_cache.layers[0].regions[0].offset' is 200");
  EXPECT_CONTAINS(openError(withRegions("{}")),
                  "'kv_cache.layers[0].regions' must be an array");
}

TEST_F(ArtifactTest, TargetMustMatchTheHost) {
  FixtureArtifact fixture;
  fixture.kind = "tpu";
  EXPECT_EQ(openError(fixture),
            path() + ": target kind 'tpu' is not supported by this runtime "
                     "(it runs 'cpu', 'cuda', 'rocm', 'vulkan' artifacts)");
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
  // A CPU this host lacks features of: refused before the code is loaded,
  // naming the missing features (no SIGILL later).
  fixture = FixtureArtifact();
  fixture.editManifest = [](std::string m) {
    return replaceOnce(m, "\"features\": \"+cx8,+sse2\"",
                       "\"features\": \"+sse2,+future-simd,+another\"");
  };
  EXPECT_EQ(openError(fixture),
            path() + ": the code was compiled for cpu 'x86-64', which needs "
                     "future-simd, another, which this runtime cannot check "
                     "on this host; recompile for this machine");
}

TEST_F(ArtifactTest, TargetMustBeTheCodes) {
  // The manifest's target is checked against the host, so it must be the
  // code's own (ModelInfo), not a claim that hides what the code needs.
  EXPECT_EQ(manifestError("\"cpu\": \"x86-64\"", "\"cpu\": \"x86-64-v2\""),
            path() + ": manifest field 'target.cpu' is 'x86-64-v2' but the "
                     "model code was compiled for 'x86-64' (the manifest was "
                     "edited or belongs to another model)");
  EXPECT_CONTAINS(
      manifestError("\"features\": \"+cx8,+sse2\"", "\"features\": \"\""),
      "manifest field 'target.features' is '' but the model code was "
      "compiled for '+cx8,+sse2'");
}

TEST_F(ArtifactTest, HostTriple) {
  struct utsname info;
  ASSERT_EQ(uname(&info), 0);
  EXPECT_EQ(hostTriple().rfind(std::string(info.machine) + "-unknown-linux", 0),
            0u);
  EXPECT_EQ(tripleMismatch(hostTriple()), "");
  EXPECT_NE(tripleMismatch("nvptx64-nvidia-cuda"), "");
  EXPECT_NE(tripleMismatch("garbage"), "");
  EXPECT_EQ(cpuMismatch("generic", ""), "");
  EXPECT_EQ(cpuMismatch("x86-64", "+cx8,+sse2,-avx512f"), "");
  EXPECT_EQ(cpuMismatch("some-future-cpu", "+some-future-feature"),
            "the code was compiled for cpu 'some-future-cpu', which needs "
            "some-future-feature, which this runtime cannot check on this "
            "host; recompile for this machine");
  // System features (hidden by hypervisors) are not required.
  EXPECT_EQ(cpuMismatch("x86-64", "+sse2,+sgx,+pconfig"), "");
  EXPECT_EQ(hostHasFeature("sse2"), 1);
  EXPECT_EQ(hostHasFeature("no-such-feature"), -1);
  // Whatever this host lacks is named.
  for (const char *name : {"avx512f", "amx-tile", "avx512fp16", "avx10.2"}) {
    if (hostHasFeature(name) == 0) {
      EXPECT_CONTAINS(cpuMismatch("future", std::string("+sse2,+") + name),
                      std::string("which needs ") + name + ": this host's");
    }
  }
}

TEST_F(ArtifactTest, ManifestMustAgreeWithTheCode) {
  // Each of these once crashed the runtime or produced wrong tokens.
  EXPECT_EQ(manifestError("\"vocab_size\": 16", "\"vocab_size\": 100000"),
            path() + ": manifest field 'model.vocab_size' is 100000 but the "
                     "model code was compiled for 16 (the manifest was edited "
                     "or belongs to another model)");
  EXPECT_CONTAINS(manifestError("\"vocab_size\": 16", "\"vocab_size\": 8"),
                  "'model.vocab_size' is 8 but the model code was compiled "
                  "for 16");
  EXPECT_CONTAINS(
      manifestError("\"context_length\": 32", "\"context_length\": 100000"),
      "'model.context_length' is 100000 but the model code was compiled for "
      "32");
  FixtureArtifact fixture;
  fixture.editManifest = [](std::string m) {
    m = replaceOnce(m, "{\"bytes\": 128", "{\"bytes\": 64");
    return replaceOnce(m, "\"bytes\": 128}", "\"bytes\": 64}");
  };
  EXPECT_CONTAINS(openError(fixture), "'kv_cache.bytes' is 64 but the model "
                                      "code was compiled for 128");
  EXPECT_CONTAINS(
      manifestError("\"context_length\": 32", "\"context_length\": 32, "
                                              "\"kv_window\": 8, "
                                              "\"kv_sinks\": 0"),
      "'model.kv_window' is 8 but the model code was compiled for 0");
}

TEST_F(ArtifactTest, ChecksumsCatchEveryFlippedByte) {
  FixtureArtifact fixture;
  Bytes good = fixture.bytes();
  FileHeader h;
  std::memcpy(&h, good.data(), sizeof(h));
  struct Case {
    const char *section;
    uint64_t offset;
  } cases[] = {{"header", offsetof(FileHeader, manifestSize) + 7},
               {"manifest", h.manifestOffset + 20},
               {"weights", h.weightsOffset + 5},
               {"code", h.codeOffset + h.codeSize / 2}};
  for (const Case &c : cases) {
    Bytes bad = good;
    bad[c.offset] ^= 0x10;
    std::string message = openError(bad);
    if (std::string(c.section) == "header") {
      // A header field out of range is a structural error first.
      EXPECT_NE(message, "") << c.section;
      continue;
    }
    EXPECT_CONTAINS(message, path() + ": the " + c.section +
                                 " section is corrupt: its XXH3 checksum is ")
        << c.section;
  }
  // A corrupt trailer, or none.
  Bytes bad = good;
  bad[bad.size() - 1] ^= 1;
  EXPECT_CONTAINS(openError(bad), "the code section is corrupt");
  bad = good;
  bad[bad.size() - 40] = 'Y';
  EXPECT_CONTAINS(openError(bad), "the checksum trailer is missing");
  // Trusted files may skip the check: a flipped weight byte then loads.
  bad = good;
  bad[h.weightsOffset + 5] ^= 0x10;
  writeBytes(path(), bad);
  EXPECT_THROW(Artifact::open(path()), Error);
  OpenOptions trusted;
  trusted.verifyChecksums = false;
  auto a = Artifact::open(path(), trusted);
  EXPECT_EQ(a->verifySeconds(), 0.0);
}

TEST_F(ArtifactTest, HeaderChecksum) {
  // Most header flips break the layout checks first (above); the checksum
  // catches the rest. Here the recorded header checksum itself differs.
  Bytes bytes = FixtureArtifact().bytes();
  bytes[bytes.size() - 32] ^= 1; // headerHash, first byte
  EXPECT_CONTAINS(openError(bytes), "the header section is corrupt");
}

TEST_F(ArtifactTest, AFifoIsRefusedWithoutBlocking) {
  ASSERT_EQ(mkfifo(path().c_str(), 0600), 0);
  // Would block forever in open() without O_NONBLOCK.
  EXPECT_CONTAINS(openError(path()), "not a regular file");
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

TEST_F(ArtifactTest, EntryPointsStayInsideTheModel) {
  // dlsym would find libc's system() through the code's dependencies; the
  // runtime once called it with the ids buffer as a command.
  FixtureArtifact fixture;
  fixture.decodeSymbol = "system";
  EXPECT_EQ(openError(fixture),
            path() + ": entry point 'decode' names symbol 'system', which the "
                     "model code does not define");
  fixture.decodeSymbol = "omp_set_num_threads"; // in the model, not decode
  EXPECT_EQ(openError(fixture),
            path() + ": entry point 'decode' names symbol "
                     "'omp_set_num_threads', which is not the model's decode "
                     "entry point");
  fixture = FixtureArtifact();
  fixture.prefillSymbol = "fixture_other_function";
  EXPECT_CONTAINS(openError(fixture), "which is not the model's prefill");
  // Code without the ModelInfo table (not compiled by xfmr-compile).
  fixture = FixtureArtifact();
  fixture.code = readBytes(XFMR_FIXTURE_MODEL_NO_INFO);
  EXPECT_CONTAINS(openError(fixture), "the model code does not export its "
                                      "description 'xfmr_model_info'");
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
  EXPECT_THROW(a->setThreads(Artifact::kMaxThreads + 1), Error);
  a->setThreads(Artifact::kMaxThreads);
  EXPECT_EQ(get(), Artifact::kMaxThreads);
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
  EXPECT_NE(cpuCode(*a).prefillFn(), cpuCode(*b).prefillFn());
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
  ASSERT_NE(dladdr(reinterpret_cast<void *>(cpuCode(*b).prefillFn()), &info), 0);
  EXPECT_NE(name, info.dli_fname);
}

} // namespace

//===----------------------------------------------------------------------===//
// Artifacts for several targets ("targets", each with its code range)
//===----------------------------------------------------------------------===//

namespace {
/// The fixture's manifest with "targets": `targets` (JSON array text) added.
FixtureArtifact withTargets(const std::string &targets) {
  FixtureArtifact fixture;
  fixture.editManifest = [targets](std::string m) {
    return replaceOnce(m, " \"model\":", " \"targets\": " + targets + ",\n \"model\":");
  };
  return fixture;
}

std::string hostTarget(const std::string &kind, uint64_t offset,
                       uint64_t size) {
  return "{\"kind\": \"" + kind + "\", \"triple\": \"" + hostTriple() +
         "\", \"cpu\": \"" + kFixtureCpu + "\", \"features\": \"" +
         kFixtureFeatures + "\", \"code_offset\": " + std::to_string(offset) +
         ", \"code_size\": " + std::to_string(size) + "}";
}
} // namespace

TEST_F(ArtifactTest, SeveralTargetsRunTheFirstThatLoads) {
  // An unknown kind first: skipped for the CPU code after it.
  uint64_t size = FixtureArtifact().code.size();
  FixtureArtifact fixture = withTargets(
      "[{\"kind\": \"tpu\", \"triple\": \"tpu\", \"code_offset\": 0, "
      "\"code_size\": 1}, " +
      hostTarget("cpu", 0, size) + "]");
  fixture.write(path());
  auto artifact = Artifact::open(path());
  EXPECT_EQ(artifact->target().kind, "cpu");
  OpenOptions options;
  options.device = "vulkan";
  try {
    Artifact::open(path(), options);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              path() + ": has no code for device 'vulkan' (it has: tpu, cpu)");
  }
}

TEST_F(ArtifactTest, SeveralTargetsAreChecked) {
  uint64_t size = FixtureArtifact().code.size();
  EXPECT_EQ(openError(withTargets("[]")),
            path() + ": 'targets' must be a non-empty array");
  EXPECT_EQ(openError(withTargets("[3]")),
            path() + ": 'targets[0]' must be an object");
  EXPECT_EQ(openError(withTargets("[" + hostTarget("cpu", 8, size) + "]")),
            path() + ": targets[0]'s code lies outside the code section");
  // A code range that is not the code: the loader names what it found.
  EXPECT_CONTAINS(openError(withTargets("[" + hostTarget("cpu", 0, 64) + "]")),
                  path());
}
