//===- Regex.cpp - PCRE2 regular expressions for pre-tokenizers -----------===//

#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/Regex.h"

#include "xfmr/runtime/Error.h"

#include <pcre2.h>

#include <memory>

using namespace xfmr::runtime;

namespace {

std::string pcre2Message(int code) {
  PCRE2_UCHAR buffer[256];
  int length = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return length < 0 ? "PCRE2 error " + std::to_string(code)
                    : std::string(reinterpret_cast<char *>(buffer), length);
}

pcre2_code *codeOf(void *code) { return static_cast<pcre2_code *>(code); }

} // namespace

Regex::Regex(const std::string &pattern, const std::string &what)
    : what_(what) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code *code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset,
      nullptr);
  if (!code)
    throw Error(what + ": the regex does not compile at offset " +
                std::to_string(offset) + ": " + pcre2Message(error));
  // The JIT is an optimization: without it (no JIT on this CPU) the
  // interpreter gives the same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(codeOf(code_)); }

void Regex::forEachMatch(
    std::string_view text,
    const std::function<void(size_t, size_t)> &onMatch) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(codeOf(code_), nullptr),
      pcre2_match_data_free);
  if (!data)
    throw Error(what_ + ": out of memory for regex matches");
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t position = 0;
  while (position < text.size()) {
    int result = pcre2_match(codeOf(code_), subject, text.size(), position,
                             PCRE2_NOTEMPTY, data.get(), nullptr);
    if (result == PCRE2_ERROR_NOMATCH)
      return;
    if (result < 0)
      throw Error(what_ + ": regex matching failed: " + pcre2Message(result));
    PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(data.get());
    onMatch(ovector[0], ovector[1]);
    position = ovector[1];
  }
}

std::string xfmr::runtime::escapeRegex(std::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}-/#").find(c) !=
        std::string_view::npos)
      escaped += '\\';
    escaped += c;
  }
  return escaped;
}
