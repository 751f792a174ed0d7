//===- TextStream.cpp - generated tokens as text, as they arrive ----------===//

#include "xfmr/runtime/TextStream.h"

#include "xfmr/runtime/Error.h"

#include <algorithm>

using namespace xfmr::runtime;

size_t xfmr::runtime::completeUtf8Prefix(const std::string &text) {
  // Look back over at most 3 continuation bytes for the start of the last
  // character; an incomplete sequence there is held back.
  size_t end = text.size();
  for (size_t back = 1; back <= 4 && back <= end; ++back) {
    auto byte = static_cast<unsigned char>(text[end - back]);
    if ((byte & 0xC0) == 0x80)
      continue; // a continuation byte
    size_t length = byte < 0x80             ? 1
                    : (byte & 0xE0) == 0xC0 ? 2
                    : (byte & 0xF0) == 0xE0 ? 3
                    : (byte & 0xF8) == 0xF0 ? 4
                                            : 1; // never valid: show it
    return back < length ? end - back : end;
  }
  return end;
}

TextStream::TextStream(const Tokenizer &tokenizer,
                       std::vector<std::string> stops)
    : tokenizer_(tokenizer), stops_(std::move(stops)) {
  for (const std::string &stop : stops_)
    if (stop.empty())
      throw Error("a stop string must not be empty");
}

std::string TextStream::push(int32_t id) {
  if (stopped_)
    return "";
  // An id the tokenizer does not know (a model's vocabulary is often padded
  // past the tokenizer's) has no text.
  try {
    tokenizer_.decode({id});
  } catch (const Error &) {
    return "";
  }
  ids_.push_back(id);
  // The whole decode, not the token's alone: SentencePiece drops the space
  // of the first piece only, and decodes are stable as ids are appended.
  text_ = tokenizer_.decode(ids_);
  size_t stop = std::string::npos;
  for (const std::string &s : stops_)
    stop = std::min(stop, text_.find(s));
  if (stop != std::string::npos) {
    stopped_ = true;
    text_.resize(stop);
    std::string out = stop > shown_ ? text_.substr(shown_) : "";
    shown_ = std::max(shown_, stop);
    return out;
  }
  size_t ready = completeUtf8Prefix(text_);
  // Hold back a tail that a stop string starts with.
  size_t hold = 0;
  for (const std::string &s : stops_)
    for (size_t k = std::min(s.size() - 1, ready); k > hold; --k)
      if (text_.compare(ready - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  ready -= hold;
  if (ready <= shown_)
    return "";
  std::string out = text_.substr(shown_, ready - shown_);
  shown_ = ready;
  return out;
}

std::string TextStream::finish() {
  if (stopped_ || shown_ >= text_.size())
    return "";
  std::string out = text_.substr(shown_);
  shown_ = text_.size();
  return out;
}
