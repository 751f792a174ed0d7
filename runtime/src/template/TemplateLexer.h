//===- TemplateLexer.h - Jinja source to tokens -----------------*- C++ -*-===//
//
// Splits a Jinja template into text and the tokens inside `{{ }}` and
// `{% %}` tags, with Jinja's whitespace rules as Hugging Face configures them
// for chat templates (trim_blocks and lstrip_blocks on, `-` and `+` modifiers,
// one trailing newline dropped). Comments vanish; `{% raw %}` becomes text.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TEMPLATE_TEMPLATELEXER_H
#define XFMR_RUNTIME_TEMPLATE_TEMPLATELEXER_H

#include <cstdint>
#include <string>
#include <vector>

namespace xfmr::runtime::jinja {

struct Token {
  enum class Kind {
    Text,
    VariableBegin, // {{
    VariableEnd,   // }}
    BlockBegin,    // {%
    BlockEnd,      // %}
    Name,
    String,  // `text` holds the unescaped value
    Integer, // `integer`
    Float,   // `number`
    Operator,
    End
  };
  Kind kind = Kind::End;
  std::string text;
  int64_t integer = 0;
  double number = 0;
  int line = 1;
};

/// The tokens of `source`, ending in an `End` token. Throws `Error` with the
/// line of an unterminated tag, string or comment, or an unexpected character.
std::vector<Token> tokenizeTemplate(const std::string &source);

} // namespace xfmr::runtime::jinja

#endif // XFMR_RUNTIME_TEMPLATE_TEMPLATELEXER_H
