//===- AddedTokens.cpp - Finding a tokenizer's added tokens in text -------===//
//
// The rules follow the `tokenizers` library's AddedVocabulary::find_matches,
// including where they interact: a `single_word` match that is dropped still
// consumes its text (matches never overlap), an `lstrip` token takes no
// whitespace that an earlier `rstrip` token took, and the next split starts
// where the last token's match (with its stripped whitespace) ends.
// Whitespace and word characters are Unicode's, as in Rust's regex crate
// (`\s`: White_Space; `\w`: Alphabetic, marks, decimal digits, connector
// punctuation and the joiners); bytes of invalid UTF-8 are neither.
//
//===----------------------------------------------------------------------===//

#include "tokenizer/AddedTokens.h"

#include <algorithm>

using namespace xfmr::runtime;

namespace {

/// The code point of the valid UTF-8 character text[begin, end), or -1.
int64_t codePointOf(std::string_view text) {
  if (text.empty())
    return -1;
  auto lead = static_cast<unsigned char>(text[0]);
  size_t length = lead < 0x80                    ? 1
                  : lead >= 0xC2 && lead <= 0xDF ? 2
                  : lead >= 0xE0 && lead <= 0xEF ? 3
                  : lead >= 0xF0 && lead <= 0xF4 ? 4
                                                 : 0;
  if (length != text.size())
    return -1;
  uint32_t c = length == 1 ? lead : lead & (0x3F >> (length - 1));
  for (size_t k = 1; k < length; ++k) {
    auto byte = static_cast<unsigned char>(text[k]);
    if ((byte & 0xC0) != 0x80)
      return -1;
    c = (c << 6) | (byte & 0x3F);
  }
  // Overlong 3- and 4-byte forms, surrogates and values past U+10FFFF.
  if ((length == 3 && c < 0x800) || (length == 4 && c < 0x10000) ||
      (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
    return -1;
  return c;
}

/// The bytes of the character that starts at `text[i]` (1 for a byte that
/// starts none).
size_t lengthAt(std::string_view text, size_t i) {
  for (size_t length = 1; length <= 4 && i + length <= text.size(); ++length)
    if (codePointOf(text.substr(i, length)) >= 0)
      return length;
  return 1;
}

/// The bytes of the character that ends at `text[i - 1]` (1 for a byte that
/// ends none).
size_t lengthBefore(std::string_view text, size_t i) {
  for (size_t length = 1; length <= 4 && length <= i; ++length)
    if (codePointOf(text.substr(i - length, length)) >= 0)
      return length;
  return 1;
}

/// Unicode's White_Space property (Rust regex's `\s`).
bool isWhiteSpace(int64_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Whether `character` (one character's bytes) is a word character (Rust
/// regex's `\w`, UTS #18).
bool isWordCharacter(std::string_view character) {
  static const Regex word(
      "\\A[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]\\z",
      "the word-character class");
  bool found = false;
  word.forEachMatch(character, [&](size_t, size_t) { found = true; });
  return found;
}

bool endsWithWord(std::string_view text) {
  return !text.empty() && isWordCharacter(text.substr(
                              text.size() - lengthBefore(text, text.size())));
}

bool startsWithWord(std::string_view text) {
  return !text.empty() && isWordCharacter(text.substr(0, lengthAt(text, 0)));
}

} // namespace

AddedTokenMatcher::AddedTokenMatcher(
    const std::vector<std::pair<std::string, const AddedToken *>> &patterns,
    const std::string &what) {
  for (const auto &[pattern, token] : patterns)
    byPattern_.try_emplace(pattern, token);
  std::vector<const std::string *> byLength;
  for (const auto &entry : byPattern_)
    byLength.push_back(&entry.first);
  // Longest first: "<|a|>" wins over "<|a" at the same position.
  std::sort(byLength.begin(), byLength.end(),
            [](const std::string *a, const std::string *b) {
              return a->size() != b->size() ? a->size() > b->size() : *a < *b;
            });
  std::string alternatives;
  for (const std::string *pattern : byLength)
    alternatives += (alternatives.empty() ? "" : "|") + escapeRegex(*pattern);
  regex_ = std::make_unique<Regex>(alternatives, what);
}

void AddedTokenMatcher::split(
    std::string_view text, const std::function<void(size_t, size_t)> &onText,
    const std::function<void(int32_t)> &onToken) const {
  size_t done = 0; // where the next text starts
  regex_->forEachMatch(text, [&](size_t begin, size_t end) {
    const AddedToken &token =
        *byPattern_.at(std::string(text.substr(begin, end - begin)));
    if (token.singleWord && (endsWithWord(text.substr(0, begin)) ||
                             startsWithWord(text.substr(end))))
      return;
    if (token.lstrip) {
      size_t start = begin;
      while (start > 0) {
        size_t length = lengthBefore(text, start);
        if (!isWhiteSpace(codePointOf(text.substr(start - length, length))))
          break;
        start -= length;
      }
      begin = std::max(start, done);
    }
    if (token.rstrip) {
      while (end < text.size()) {
        size_t length = lengthAt(text, end);
        if (!isWhiteSpace(codePointOf(text.substr(end, length))))
          break;
        end += length;
      }
    }
    if (done < begin)
      onText(done, begin);
    onToken(token.id);
    done = end;
  });
  if (done < text.size())
    onText(done, text.size());
}
