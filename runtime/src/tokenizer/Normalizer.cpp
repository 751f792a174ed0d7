//===- Normalizer.cpp - Unicode normalization of tokenizer input ----------===//

#include "tokenizer/Normalizer.h"

#include "xfmr/runtime/Error.h"

#include <utf8proc.h>

#include <cstdlib>

using namespace xfmr::runtime;

namespace {

/// NFC of `text`, which is valid UTF-8.
std::string validToNFC(std::string_view text) {
  if (text.empty())
    return std::string();
  utf8proc_uint8_t *result = nullptr;
  utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t *>(text.data()),
                   utf8proc_ssize_t(text.size()), &result,
                   utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0)
    throw Error(std::string("Unicode normalization failed: ") +
                utf8proc_errmsg(length));
  std::string normalized(reinterpret_cast<char *>(result), size_t(length));
  std::free(result);
  return normalized;
}

} // namespace

std::string xfmr::runtime::toNFC(std::string_view text) {
  // ASCII is already in every normalization form.
  bool ascii = true;
  for (char c : text)
    ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii)
    return std::string(text);
  std::string normalized;
  size_t validStart = 0, position = 0;
  while (position < text.size()) {
    utf8proc_int32_t codePoint;
    utf8proc_ssize_t length = utf8proc_iterate(
        reinterpret_cast<const utf8proc_uint8_t *>(text.data()) + position,
        utf8proc_ssize_t(text.size() - position), &codePoint);
    if (length > 0) {
      position += size_t(length);
      continue;
    }
    // An invalid byte: normalize the valid run before it, keep the byte.
    normalized += validToNFC(text.substr(validStart, position - validStart));
    normalized += text[position];
    validStart = ++position;
  }
  normalized += validToNFC(text.substr(validStart));
  return normalized;
}
