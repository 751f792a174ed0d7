//===- TokenizerFuzzer.cpp - tokenizer files and the text they encode -----===//
//
// Input: a tokenizer file (tokenizer.json or SentencePiece model), a NUL, and
// a text to encode; the ids are decoded back.

#include "FuzzTarget.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Tokenizer.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string input(reinterpret_cast<const char *>(data), size);
  size_t nul = input.find('\0');
  std::string file = input.substr(0, nul);
  std::string text = nul == std::string::npos ? "" : input.substr(nul + 1);
  try {
    auto tokenizer = xfmr::runtime::Tokenizer::fromBytes(file, "fuzz");
    std::vector<int32_t> ids = tokenizer->encode(text, /*addSpecial=*/true);
    (void)tokenizer->decode(ids);
  } catch (const xfmr::runtime::Error &) {
  }
  return 0;
}
