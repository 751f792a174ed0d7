//===- SentencePieceTokenizer.h - tokenizer.model files ---------*- C++ -*-===//

#ifndef XFMR_RUNTIME_TOKENIZER_SENTENCEPIECETOKENIZER_H
#define XFMR_RUNTIME_TOKENIZER_SENTENCEPIECETOKENIZER_H

#include "xfmr/runtime/Tokenizer.h"

namespace xfmr::runtime {

/// A SentencePiece model (the serialized protobuf of `tokenizer.model`),
/// run by Debian's libsentencepiece. Throws `Error` naming `what`.
std::unique_ptr<Tokenizer> loadSentencePieceTokenizer(const std::string &bytes,
                                                      const std::string &what);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_TOKENIZER_SENTENCEPIECETOKENIZER_H
