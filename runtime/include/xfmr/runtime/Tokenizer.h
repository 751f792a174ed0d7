//===- Tokenizer.h - text <-> token ids -------------------------*- C++ -*-===//
//
// The tokenizers of Hugging Face checkpoints, in C++ (no Python at run time):
//   - `tokenizer.json` with a BPE model over ByteLevel bytes (GPT-2, Llama-3,
//     DeepSeek-V3, Qwen2/3) or, SentencePiece-style, over UTF-8 characters
//     with byte fallback (Llama-2, Mistral, Gemma): added and special tokens
//     matched first, then the normalizers (NFC, Prepend, Replace, Sequence),
//     the pre-tokenizers (ByteLevel with or without its regex, Split on a
//     regex, Metaspace, Sequence), then merges by rank; decoded by ByteLevel
//     or by Replace, ByteFallback, Fuse, Strip and Metaspace steps;
//   - SentencePiece `tokenizer.model` files, through libsentencepiece;
// from a file, or from the artifact that carries it.
// A component the loader does not implement is an error naming it, never a
// silent approximation.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TOKENIZER_H
#define XFMR_RUNTIME_TOKENIZER_H

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace xfmr::runtime {

class Artifact;

class Tokenizer {
public:
  virtual ~Tokenizer();

  /// Loads a `tokenizer.json` or a SentencePiece `tokenizer.model` (told
  /// apart by their content). Throws `Error` naming `path` and what is wrong
  /// or unsupported.
  static std::unique_ptr<Tokenizer> load(const std::string &path);
  /// The same from the file's bytes; `what` names them in errors.
  static std::unique_ptr<Tokenizer> fromBytes(const std::string &bytes,
                                              const std::string &what);
  /// The tokenizer an artifact carries (its manifest's "tokenizer", see
  /// compiler/TokenizerFiles.h), or null when it has none.
  static std::unique_ptr<Tokenizer> fromArtifact(const Artifact &artifact);

  /// The ids of `text` (any bytes; invalid UTF-8 is kept byte by byte where
  /// the tokenizer can represent it). `addSpecial` adds what the tokenizer's
  /// post-processor adds around a single sequence (BOS for Llama-3,
  /// DeepSeek-V3 and SentencePiece models).
  virtual std::vector<int32_t> encode(std::string_view text,
                                      bool addSpecial) const = 0;
  /// The bytes of `ids`, special tokens included. Throws `Error` for an id
  /// outside the vocabulary.
  virtual std::string decode(const std::vector<int32_t> &ids) const = 0;
  /// One past the largest id.
  virtual int64_t vocabSize() const = 0;
  /// "tokenizer.json (BPE)" or "SentencePiece".
  virtual std::string kind() const = 0;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_TOKENIZER_H
