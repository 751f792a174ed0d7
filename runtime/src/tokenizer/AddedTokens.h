//===- AddedTokens.h - Finding a tokenizer's added tokens in text -*- C++
//-*-===//
//
// A tokenizer.json's "added_tokens" (special or not) are found in the text
// before anything else, as the `tokenizers` library's AddedVocabulary finds
// them: leftmost first, the longest at one position, and then
//   - `single_word`: a match next to a word character (Unicode \w) is not a
//     token (and its text stays text);
//   - `lstrip` / `rstrip`: the token absorbs the Unicode whitespace to its
//     left / right;
//   - `normalized`: the token is matched, as its normalized content, in the
//     normalized text between the other tokens (see BPETokenizer).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TOKENIZER_ADDEDTOKENS_H
#define XFMR_RUNTIME_TOKENIZER_ADDEDTOKENS_H

#include "tokenizer/Regex.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace xfmr::runtime {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool lstrip = false, rstrip = false, singleWord = false, normalized = false;
};

/// Finds one set of added tokens (the normalized ones or the others).
class AddedTokenMatcher {
public:
  /// `patterns`: each token with the text it is matched as. Where two tokens
  /// have the same text, the first is the one found.
  AddedTokenMatcher(
      const std::vector<std::pair<std::string, const AddedToken *>> &patterns,
      const std::string &what);

  /// Splits `text` into tokens and the text between them: calls
  /// `onText(begin, end)` for text and `onToken(id)` for a token, in order.
  void split(std::string_view text,
             const std::function<void(size_t, size_t)> &onText,
             const std::function<void(int32_t)> &onToken) const;

private:
  std::unordered_map<std::string, const AddedToken *> byPattern_;
  std::unique_ptr<Regex> regex_;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_TOKENIZER_ADDEDTOKENS_H
