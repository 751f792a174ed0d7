//===- Artifact.h - a loaded model.xfmr -------------------------*- C++ -*-===//
//
// Opening an artifact maps the file read-only, validates the header and the
// section table, verifies the checksums of every section, validates the
// manifest, and hands the code to the Backend of its target kind
// (Backend.h), which checks the target against the host, loads the code and
// checks that the code's own description (ModelInfo) agrees with the
// manifest. Weights are used in place (zero copy). Every
// failure is an `Error` naming the file and what is wrong; nothing of the
// artifact runs before the checksums and the target check pass.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_ARTIFACT_H
#define XFMR_RUNTIME_ARTIFACT_H

#include "xfmr/runtime/ArtifactFormat.h"
#include "xfmr/runtime/Backend.h"
#include "xfmr/runtime/Json.h"

#include <cstdint>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace xfmr::runtime {

/// The manifest's "model" object.
struct ModelConfig {
  std::string architecture;
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t numLayers = 0;
  int64_t contextLength = 0;
  /// Evicting KV caches (compiled with --kv-window): the last `kvWindow`
  /// and first `kvSinks` positions stay; 0 when the cache does not evict.
  int64_t kvWindow = 0;
  int64_t kvSinks = 0;
  std::optional<int32_t> bosTokenId;
  std::optional<int32_t> eosTokenId;
};

/// Where one MoE layer counts the tokens routed to each expert: `experts`
/// int64 counters at `offset` in the KV-cache buffer.
struct ExpertCounterSlot {
  std::string name;
  uint64_t offset = 0;
  int64_t experts = 0;
};

/// One token-indexed part of a layer's cache (the manifest's
/// kv_cache.layers[i].regions): row t is `rowBytes` bytes at
/// offset + t * rowBytes of the cache blob, for t in [0, rows).
struct KVCacheRegion {
  uint64_t offset = 0;
  uint64_t rowBytes = 0;
  uint64_t rows = 0;
};

/// How to open an artifact.
struct OpenOptions {
  /// Verify the XXH3 checksums of the header and every section before using
  /// them. Skip only for trusted files, where the time matters (it costs
  /// about one read of the file: Artifact::verifySeconds()).
  bool verifyChecksums = true;
  /// Which of the artifact's targets to run ("cpu", "cuda", "rocm",
  /// "vulkan"); empty: the first one this machine can run.
  std::string device;
  /// CPU: read the weights from the file mapping (shared with the page
  /// cache and other processes) instead of copying them into memory backed
  /// by 2 MiB pages, where decode runs 5-25% faster (fewer TLB misses) at
  /// the cost of a private copy.
  bool mapWeights = false;
};

/// The manifest's "target" object.
struct TargetInfo {
  std::string kind;
  std::string triple;
  std::string cpu;
  std::string features;
  /// The GPU chip of GPU artifacts ("sm_90a", "gfx942"; "" for Vulkan and
  /// the CPU).
  std::string chip;
  /// AArch64 code for one SVE vector length: its bits (256, 512); 0: any.
  int64_t sveBits = 0;
};

class Artifact {
public:
  /// Maps, validates and loads `path`. Throws `Error`.
  static std::shared_ptr<Artifact> open(const std::string &path,
                                        const OpenOptions &options = {});
  /// Validates an artifact image in memory as open() does, up to (not
  /// including) loading its code: header and sections, checksums (per
  /// `options`), manifest, target. `name` stands for the path in messages.
  /// For the fuzzers and tests; throws `Error`.
  static void checkImage(const uint8_t *data, uint64_t size,
                         const std::string &name,
                         const OpenOptions &options = {});
  /// Maps `path` and validates its header, sections and the checksums of
  /// header, manifest and code, and parses its manifest, without reading
  /// the weights or loading code: what xfmr-pack needs of an artifact,
  /// weights-stripped or not, built for any target. Throws `Error`.
  static std::shared_ptr<Artifact> inspect(const std::string &path);
  /// Whether `path` starts with an artifact's magic (tools that take an
  /// artifact or another kind of file tell them apart with it).
  static bool isArtifactFile(const std::string &path);
  ~Artifact();
  Artifact(const Artifact &) = delete;
  Artifact &operator=(const Artifact &) = delete;

  const std::string &path() const { return path_; }
  /// The whole parsed manifest, for fields without an accessor.
  const JsonValue &manifest() const { return manifest_; }
  const ModelConfig &model() const { return model_; }
  const TargetInfo &target() const { return target_; }
  int64_t vocabSize() const { return model_.vocabSize; }
  int64_t contextLength() const { return model_.contextLength; }
  std::optional<int32_t> bosTokenId() const { return model_.bosTokenId; }
  std::optional<int32_t> eosTokenId() const { return model_.eosTokenId; }
  /// The ids that end a text generation: eos_token_id and those of the
  /// manifest's generation_config (from the checkpoint's
  /// generation_config.json), without repeats.
  const std::vector<int32_t> &endOfSequenceIds() const {
    return endOfSequenceIds_;
  }
  uint64_t kvCacheBytes() const { return kvCacheBytes_; }
  uint64_t kvCacheBytesPerToken() const { return kvCacheBytesPerToken_; }
  uint64_t weightsBytes() const { return weightsBytes_; }
  /// Every token-indexed part of the cache blob, in blob order; empty when
  /// the artifact does not describe them (compiled before they were
  /// recorded): such a cache cannot be paged.
  const std::vector<KVCacheRegion> &kvCacheRegions() const {
    return kvCacheRegions_;
  }
  /// One slot per MoE layer, in layer order; empty for dense models.
  const std::vector<ExpertCounterSlot> &expertCounters() const {
    return expertCounters_;
  }
  uint64_t parameterCount() const { return parameterCount_; }
  /// Seconds spent verifying checksums at open (0 when skipped).
  double verifySeconds() const { return verifySeconds_; }
  /// The compiler's version string ("" when absent).
  const std::string &compiler() const { return compiler_; }

  /// The weight blob, inside the read-only file mapping.
  const uint8_t *weightsData() const {
    return mapping_ + header_.weightsOffset;
  }
  uint64_t weightsSize() const { return header_.weightsSize; }
  /// The whole mapped file (tests check that weights are not copied).
  const uint8_t *mappingData() const { return mapping_; }
  uint64_t mappingSize() const { return mappingSize_; }
  const artifact::FileHeader &header() const { return header_; }
  const artifact::FileTrailer &trailer() const { return trailer_; }
  /// True for an artifact compiled with --strip-weights (only inspect()
  /// opens one).
  bool weightsStripped() const {
    return header_.flags & artifact::kFlagWeightsStripped;
  }

  /// What runs the code (chosen by the target kind).
  Backend &backend() const { return *backend_; }
  /// Writes a copy of the artifact file to `path` (through OutputFile:
  /// atomically, never through a symlink). Throws `Error`.
  void save(const std::string &path) const;

  /// A symbol of the loaded code, or null.
  void *symbol(const std::string &name) const;

  /// Sets the number of threads the code uses (0: hardware concurrency).
  /// Calls `omp_set_num_threads` when the code links an OpenMP runtime;
  /// otherwise the count is only remembered. Throws `Error` when negative.
  void setThreads(int threads);
  /// The effective count set last (hardware concurrency by default).
  int threads() const { return threads_; }
  /// Whether the code honours thread counts (it links OpenMP).
  bool threadsSupported() const {
    return backend_ && backend_->threadsSupported();
  }
  /// Applies an effective count for the calling thread only. OpenMP keeps
  /// the count per calling thread, and this writes no shared state, so
  /// sessions on different threads can use their own counts.
  void applyThreads(int threads) const;
  /// `threads`, or hardware concurrency for 0; throws `Error` when negative
  /// or above kMaxThreads.
  static int effectiveThreads(int threads);
  /// The most threads a session may ask for. OpenMP aborts the process when
  /// the OS refuses a thread (rc 134 at 100000 here), and more threads than
  /// cores only slow a model down.
  static constexpr int kMaxThreads = 1024;

private:
  explicit Artifact(std::string path);
  void mapFile();
  void checkHeader();
  /// `weights` = false skips the weights section (inspect(): its reader
  /// replaces them, hashing gigabytes it discards would be wasted).
  void verifyChecksums(bool weights = true);
  /// A target the artifact has code for: its manifest object and its part
  /// of the code section.
  struct Candidate {
    TargetInfo info;
    const JsonValue *json = nullptr;
    uint64_t codeOffset = 0, codeSize = 0;
  };
  void readManifest(const OpenOptions &options);
  /// Parses the manifest section into manifest_.
  void parseManifest();
  /// Throws the message that tells how to bind a stripped artifact's weights.
  void refuseStripped() const;
  /// Creates the backend of the first candidate target that loads, loads
  /// its code and hands it the weights.
  void loadCode(const OpenOptions &options);
  void loadCandidate(const Candidate &candidate, const OpenOptions &options);

  std::string path_;
  uint8_t *mapping_ = nullptr;
  /// Whether mapping_ is this object's mmap (not checkImage's buffer).
  bool ownsMapping_ = false;
  uint64_t mappingSize_ = 0;
  artifact::FileHeader header_{};
  artifact::FileTrailer trailer_{};
  JsonValue manifest_;
  ModelConfig model_;
  TargetInfo target_;
  /// The targets this machine can run, in the artifact's order, and why
  /// the others cannot.
  std::vector<Candidate> candidates_;
  std::vector<std::string> refused_;
  std::string prefillName_, decodeName_, stepName_, compiler_;
  std::vector<int32_t> endOfSequenceIds_;
  uint64_t kvCacheBytes_ = 0, kvCacheBytesPerToken_ = 0;
  uint64_t weightsBytes_ = 0, parameterCount_ = 0;
  double verifySeconds_ = 0;
  std::vector<ExpertCounterSlot> expertCounters_;
  std::vector<KVCacheRegion> kvCacheRegions_;
  std::unique_ptr<Backend> backend_;
  int threads_ = 1;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_ARTIFACT_H
