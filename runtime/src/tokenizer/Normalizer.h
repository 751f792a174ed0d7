//===- Normalizer.h - Unicode normalization of tokenizer input --*- C++ -*-===//

#ifndef XFMR_RUNTIME_TOKENIZER_NORMALIZER_H
#define XFMR_RUNTIME_TOKENIZER_NORMALIZER_H

#include <string>
#include <string_view>

namespace xfmr::runtime {

/// `text` in Unicode Normalization Form C (utf8proc), as the `NFC`
/// normalizer of tokenizer.json makes it. Bytes that are not valid UTF-8
/// stay as they are, and the valid text between them is normalized.
std::string toNFC(std::string_view text);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_TOKENIZER_NORMALIZER_H
