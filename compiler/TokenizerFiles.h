//===- TokenizerFiles.h - the tokenizer an artifact carries -----*- C++ -*-===//
//
// xfmr-compile copies a checkpoint's tokenizer into the artifact's manifest,
// so that one file is enough to chat with a model:
//   "tokenizer": {"file": "tokenizer.json", "text": "<the file>",
//                 "vocab_size": N, "config": {tokenizer_config.json}}
// ("tokenizer.model" files are stored as "base64"), and
//   "generation_config": {generation_config.json}
// (end-of-sequence ids, which may be a list, and sampling defaults).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_COMPILER_TOKENIZERFILES_H
#define XFMR_COMPILER_TOKENIZERFILES_H

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <optional>
#include <string>

namespace xfmr {

struct TokenizerFiles {
  /// The manifest's "tokenizer" object; empty when there is no tokenizer.
  llvm::json::Object tokenizer;
  /// The manifest's "generation_config" object, if the folder has one.
  std::optional<llvm::json::Object> generationConfig;
  /// The tokenizer's vocabulary size (0 without a tokenizer).
  int64_t vocabSize = 0;
  /// "tokenizer.json (BPE, 50257 tokens) from DIR", for the progress line.
  std::string description;
};

/// Reads the tokenizer at `path`: a tokenizer.json or tokenizer.model file,
/// or a folder holding one (tokenizer.json first), with the
/// tokenizer_config.json and generation_config.json beside it. A folder
/// without a tokenizer gives no tokenizer, unless `required`. The tokenizer
/// is loaded once, by the runtime's code, to check it; errors name the file.
llvm::Expected<TokenizerFiles> readTokenizerFiles(llvm::StringRef path,
                                                  bool required);

} // namespace xfmr

#endif // XFMR_COMPILER_TOKENIZERFILES_H
