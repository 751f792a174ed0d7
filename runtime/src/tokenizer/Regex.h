//===- Regex.h - PCRE2 regular expressions for pre-tokenizers ---*- C++ -*-===//
//
// Hugging Face pre-tokenizer patterns use Unicode classes (\p{L}, \p{N}) and
// lookahead: PCRE2 with UTF, UCP and the JIT runs them as the Rust `regex`
// and Oniguruma engines of the reference implementations do. Subjects may
// hold invalid UTF-8: such bytes never match (PCRE2_MATCH_INVALID_UTF).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TOKENIZER_REGEX_H
#define XFMR_RUNTIME_TOKENIZER_REGEX_H

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace xfmr::runtime {

class Regex {
public:
  /// Compiles `pattern`; throws `Error` naming `what`, the position and
  /// PCRE2's message.
  Regex(const std::string &pattern, const std::string &what);
  ~Regex();
  Regex(const Regex &) = delete;
  Regex &operator=(const Regex &) = delete;

  /// Calls `onMatch(begin, end)` for each non-empty match of the pattern in
  /// `text`, left to right, without overlaps.
  void forEachMatch(std::string_view text,
                    const std::function<void(size_t, size_t)> &onMatch) const;

private:
  void *code_ = nullptr;
  std::string what_;
};

/// `text` with every regex metacharacter escaped: a pattern matching it.
std::string escapeRegex(std::string_view text);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_TOKENIZER_REGEX_H
