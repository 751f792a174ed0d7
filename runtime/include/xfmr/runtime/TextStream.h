//===- TextStream.h - generated tokens as text, as they arrive --*- C++ -*-===//
//
// Streams the text of generated tokens: each push returns the bytes that are
// safe to show now. It holds back the bytes of a UTF-8 character that the
// next token may complete, and a tail that may be the start of a stop
// string; once a stop string appears, the text before it is returned and
// nothing after it ever is. Everything returned, plus finish(), equals the
// decode of all the ids up to the stop string, byte for byte.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TEXTSTREAM_H
#define XFMR_RUNTIME_TEXTSTREAM_H

#include "xfmr/runtime/Tokenizer.h"

#include <string>
#include <vector>

namespace xfmr::runtime {

class TextStream {
public:
  /// `stops`: strings that end the text (none may be empty).
  TextStream(const Tokenizer &tokenizer, std::vector<std::string> stops = {});

  /// Adds a generated token; returns the bytes now safe to show. An id the
  /// tokenizer does not know (past its vocabulary: models often pad theirs)
  /// has no text.
  std::string push(int32_t id);
  /// The bytes held back, at the end of generation (empty after a stop).
  std::string finish();
  /// Whether a stop string appeared.
  bool stopped() const { return stopped_; }
  /// All the text so far, up to a stop string.
  const std::string &text() const { return text_; }

private:
  const Tokenizer &tokenizer_;
  std::vector<std::string> stops_;
  std::vector<int32_t> ids_;
  std::string text_;
  size_t shown_ = 0;
  bool stopped_ = false;
};

/// The length of the longest prefix of `text` that ends on a complete UTF-8
/// character (or on a byte that can never start or continue one).
size_t completeUtf8Prefix(const std::string &text);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_TEXTSTREAM_H
