//===- BPETokenizer.h - Hugging Face tokenizer.json, BPE model --*- C++ -*-===//

#ifndef XFMR_RUNTIME_TOKENIZER_BPETOKENIZER_H
#define XFMR_RUNTIME_TOKENIZER_BPETOKENIZER_H

#include "xfmr/runtime/Tokenizer.h"

namespace xfmr::runtime {

class JsonValue;

/// A `tokenizer.json` whose model is BPE (see Tokenizer.h for the supported
/// components). Throws `Error` naming `what` and the unsupported component.
std::unique_ptr<Tokenizer> loadBPETokenizer(const JsonValue &json,
                                            const std::string &what);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_TOKENIZER_BPETOKENIZER_H
