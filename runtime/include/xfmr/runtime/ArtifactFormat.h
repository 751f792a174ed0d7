//===- ArtifactFormat.h - the model.xfmr file layout ------------*- C++ -*-===//
//
// Shared by the compiler (which writes artifacts) and the runtime (which maps
// them). Plain C++17, no dependencies.
//
// A `model.xfmr` file is, little-endian:
//
//   [0, 4096)        FileHeader, zero-padded
//   manifest         UTF-8 JSON (see below), at manifestOffset
//   weights          one blob, 4096-aligned; every tensor 64-byte aligned
//   code             an ELF shared object (the compiled model), 4096-aligned
//   trailer          FileTrailer: an XXH3-64 checksum of the header and of
//                    each section, the last 40 bytes of the file
//
// A weights-stripped artifact (xfmr-compile --strip-weights) sets
// kFlagWeightsStripped and has an empty weights section; its manifest is the
// full artifact's, packing plan included (see WeightPacking.h), so xfmr-pack
// rebuilds the full artifact byte for byte from a checkpoint.
//
// The runtime maps the file once, verifies the checksums (unless told the
// file is trusted), then uses the weights in place (zero copy) and loads the
// code with dlopen from an in-memory file. The trailer comes last so that
// the compiler can stream an artifact (to a pipe, too) in one pass.
//
// The code describes itself: it exports `xfmr_model_info` (ModelInfo below)
// with the sizes it was compiled for and its entry points. The runtime takes
// the entry points from that table, never from a name the manifest gives
// (a name is resolved only to check that it means the same function), and
// refuses an artifact whose manifest disagrees with the table.
//
// Manifest (format_version 2):
// {
//   "format_version": 2,
//   "target": {"kind": "cpu", "triple": "x86_64-unknown-linux-gnu",
//              "cpu": "x86-64-v2", "features": ""},
//   "model": {"architecture": "LlamaForCausalLM", "vocab_size": 512,
//             "hidden_size": 64, "num_layers": 5, "context_length": 512,
//             "bos_token_id": 1, "eos_token_id": 2},
//   "entry_points": {"prefill": "_mlir_ciface_prefill",
//                    "decode": "_mlir_ciface_decode"},
//   "kv_cache": {"bytes": 655360, "bytes_per_token": 1280,
//                "layers": [{"kind": "kv", "offset": 0, "bytes": 131072,
//                            "element_type": "f32", "capacity": 512,
//                            "heads": 4, "key_dim": 8, "value_dim": 8}]},
//   "weights": {"bytes": 1040384, "parameter_count": 260032,
//               "tensors": [{"name": "model.norm.weight", "offset": 0,
//                            "bytes": 256, "dtype": "f32", "shape": [64]}]},
//   "compile_options": {"target": "cpu", "cpu": "generic", "opt_level": 3},
//   "compiler": "xfmr 0.1.0 (4f3c2a1)",
//   "tokenizer": {"file": "tokenizer.json", "text": "{...}", "vocab_size": 512,
//                 "config": {...}},          (optional; see TokenizerFiles.h)
//   "generation_config": {"eos_token_id": [2, 7]}             (optional)
// }
//
// Entry-point ABI (MLIR's C interface for memrefs): every entry point is
//
//   void entry(MemRef1D *ids,      // int32 [tokens]
//              int64_t start,      // position of ids[0]
//              MemRef1D *weights,  // uint8 [weights.bytes], the blob above
//              MemRef1D *cache,    // uint8 [kv_cache.bytes], zero at reset
//              MemRef2D *logits);  // float [tokens, vocab], written
//
// `prefill` takes any number of tokens, `decode` exactly one. The code reads
// cache entries [0, start) and writes entries [start, start + tokens).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_ARTIFACTFORMAT_H
#define XFMR_RUNTIME_ARTIFACTFORMAT_H

#include <cstdint>

namespace xfmr::artifact {

/// First 8 bytes of every artifact.
inline constexpr char kMagic[8] = {'X', 'F', 'M', 'R', 'A', 'R', 'T', '\0'};
/// Bumped on any incompatible change of the layout, manifest or ABI.
/// 2: checksum trailer, ModelInfo table in the code.
inline constexpr uint32_t kFormatVersion = 2;
/// Alignment of the header, the weight blob and the code section.
inline constexpr uint64_t kSectionAlignment = 4096;
/// Alignment of every tensor inside the weight blob.
inline constexpr uint64_t kTensorAlignment = 64;

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t flags; // kFlag* bits
  uint64_t manifestOffset, manifestSize;
  uint64_t weightsOffset, weightsSize;
  uint64_t codeOffset, codeSize;
  /// The whole file's size: a shorter file is truncated.
  uint64_t fileSize;
};
static_assert(sizeof(FileHeader) == 72, "FileHeader layout is part of the format");

/// FileHeader::flags: the weights section is empty, the manifest still
/// describes the weights (bind them with xfmr-pack).
inline constexpr uint32_t kFlagWeightsStripped = 1;
inline constexpr uint32_t kKnownFlags = kFlagWeightsStripped;

/// The header of a file with these section sizes: the manifest after the
/// header, the weights and code each on the next section boundary, the
/// trailer last. Writers all use it, so equal contents give equal files.
inline FileHeader layoutArtifact(uint64_t manifestSize, uint64_t weightsSize,
                                 uint64_t codeSize, uint32_t flags);

/// The last bytes of every artifact: XXH3-64 (seed 0) of the FileHeader's 72
/// bytes and of each section's bytes.
struct FileTrailer {
  char magic[8]; // kTrailerMagic
  uint64_t headerHash, manifestHash, weightsHash, codeHash;
};
static_assert(sizeof(FileTrailer) == 40, "FileTrailer layout is part of the format");
inline constexpr char kTrailerMagic[8] = {'X', 'F', 'M', 'R', 'S', 'U', 'M', '\0'};

inline FileHeader layoutArtifact(uint64_t manifestSize, uint64_t weightsSize,
                                 uint64_t codeSize, uint32_t flags) {
  auto alignUp = [](uint64_t n) {
    return (n + kSectionAlignment - 1) / kSectionAlignment * kSectionAlignment;
  };
  FileHeader header{};
  for (int i = 0; i < 8; ++i)
    header.magic[i] = kMagic[i];
  header.version = kFormatVersion;
  header.flags = flags;
  header.manifestOffset = kSectionAlignment;
  header.manifestSize = manifestSize;
  header.weightsOffset = alignUp(header.manifestOffset + manifestSize);
  header.weightsSize = weightsSize;
  header.codeOffset = alignUp(header.weightsOffset + weightsSize);
  header.codeSize = codeSize;
  header.fileSize = header.codeOffset + codeSize + sizeof(FileTrailer);
  return header;
}

/// MLIR's memref descriptor for rank 1 and 2 (C interface).
template <typename T, int Rank> struct MemRef {
  T *allocated;
  T *aligned;
  int64_t offset;
  int64_t sizes[Rank];
  int64_t strides[Rank];
};

using EntryFn = void (*)(MemRef<int32_t, 1> *ids, int64_t start,
                         MemRef<uint8_t, 1> *weights,
                         MemRef<uint8_t, 1> *cache, MemRef<float, 2> *logits);

/// The batched decode (`step`): segments is [N, 4] = first row, rows,
/// start position and the byte offset of the sequence's cache blob in
/// `caches` (see xfmr-lower-to-kernels).
using StepFn = void (*)(MemRef<int32_t, 1> *ids, MemRef<int64_t, 2> *segments,
                        MemRef<uint8_t, 1> *weights, MemRef<uint8_t, 1> *caches,
                        MemRef<float, 2> *logits);

/// The table the code exports as `xfmr_model_info`: what it was compiled
/// for. Sizes are in tokens and bytes; a model without an evicting cache
/// has kvWindow = kvSinks = 0. `cpu` and `features` (NUL-terminated, in the
/// code) are the LLVM CPU and the ISA extensions the code may use, as the
/// manifest's target.cpu and target.features.
struct ModelInfo {
  uint32_t abiVersion; // kModelAbiVersion
  uint32_t size;       // sizeof(ModelInfo)
  int64_t vocabSize;
  int64_t contextLength;
  int64_t kvCacheBytes;
  int64_t weightsBytes;
  int64_t kvWindow;
  int64_t kvSinks;
  EntryFn prefill;
  EntryFn decode;
  const char *cpu;
  const char *features;
  /// Null when the code has no step entry.
  StepFn step;
};
static_assert(sizeof(ModelInfo) == 96, "ModelInfo layout is part of the ABI");
inline constexpr char kModelInfoSymbol[] = "xfmr_model_info";
/// Bumped on any change of ModelInfo or of the entry-point ABI.
/// 2: the step entry.
inline constexpr uint32_t kModelAbiVersion = 2;

} // namespace xfmr::artifact

#endif // XFMR_RUNTIME_ARTIFACTFORMAT_H
