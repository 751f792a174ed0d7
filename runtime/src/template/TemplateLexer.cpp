//===- TemplateLexer.cpp - Jinja source to tokens -------------------------===//
//
// Follows jinja2/lexer.py (3.1) with trim_blocks and lstrip_blocks on: the
// text before a `{%`/`{#` tag loses the spaces and tabs that start its line,
// the newline after `%}`/`#}` is dropped, `-` strips all whitespace on its
// side and `+` keeps it.
//
//===----------------------------------------------------------------------===//

#include "template/TemplateLexer.h"
#include "template/TemplateValue.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <cctype>
#include <cstdlib>
#include <utf8proc.h>

namespace xfmr::runtime::jinja {

namespace {

/// The length of the whitespace code point at `text[pos]`, or 0.
size_t spaceAt(const std::string &text, size_t pos) {
  utf8proc_int32_t cp;
  utf8proc_ssize_t n = utf8proc_iterate(
      reinterpret_cast<const utf8proc_uint8_t *>(text.data()) + pos,
      static_cast<utf8proc_ssize_t>(text.size() - pos), &cp);
  if (n <= 0 || !isPythonSpace(static_cast<uint32_t>(cp)))
    return 0;
  return static_cast<size_t>(n);
}

std::string rstripSpace(const std::string &text) {
  std::vector<uint32_t> cps = decodeUtf8(text);
  while (!cps.empty() && isPythonSpace(cps.back()))
    cps.pop_back();
  return encodeUtf8(cps);
}

class Lexer {
public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t open = findOpener(pos_);
      if (open == std::string::npos) {
        emitText(src_.substr(pos_));
        break;
      }
      char type = src_[open + 1];
      char modifier = open + 2 < src_.size() &&
                              (src_[open + 2] == '-' || src_[open + 2] == '+')
                          ? src_[open + 2]
                          : 0;
      std::string text = src_.substr(pos_, open - pos_);
      bool raw = type == '%' && isRawBegin(open);
      text = leftStrip(std::move(text), modifier, type != '{');
      emitText(text);
      countLines(pos_, open);
      pos_ = open + 2 + (modifier ? 1 : 0);
      if (raw)
        lexRaw();
      else if (type == '#')
        lexComment();
      else
        lexTag(type == '%');
    }
    tokens_.push_back(token(Token::Kind::End));
    return std::move(tokens_);
  }

private:
  [[noreturn]] void fail(const std::string &message) const {
    throw Error("line " + std::to_string(line_) + ": " + message);
  }

  Token token(Token::Kind kind, std::string text = "") const {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.line = line_;
    return t;
  }

  void countLines(size_t from, size_t to) {
    for (size_t i = from; i < to && i < src_.size(); ++i)
      line_ += src_[i] == '\n';
  }

  size_t findOpener(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos;
         i = src_.find('{', i + 1))
      if (i + 1 < src_.size() &&
          (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    return std::string::npos;
  }

  void emitText(const std::string &text) {
    if (!text.empty())
      tokens_.push_back(token(Token::Kind::Text, text));
  }

  /// lstrip_blocks and the `-` modifier on the text before a tag.
  std::string leftStrip(std::string text, char modifier,
                        bool isBlockOrComment) {
    if (modifier == '-')
      return rstripSpace(text);
    if (modifier == '+' || !isBlockOrComment)
      return text;
    size_t lineStart = text.rfind('\n');
    lineStart = lineStart == std::string::npos ? 0 : lineStart + 1;
    if (lineStart == 0 && !lineStarting_)
      return text;
    for (size_t i = lineStart; i < text.size(); ++i)
      if (text[i] != ' ' && text[i] != '\t')
        return text;
    text.resize(lineStart);
    return text;
  }

  size_t skipSpace(size_t at) const {
    while (at < src_.size()) {
      size_t n = spaceAt(src_, at);
      if (!n)
        break;
      at += n;
    }
    return at;
  }

  /// `{%[-+]? raw [-]?%}` at `open`.
  bool isRawBegin(size_t open) const {
    size_t at = open + 2;
    if (at < src_.size() && (src_[at] == '-' || src_[at] == '+'))
      ++at;
    at = skipSpace(at);
    if (src_.compare(at, 3, "raw") != 0)
      return false;
    at = skipSpace(at + 3);
    return src_.compare(at, 2, "%}") == 0 || src_.compare(at, 3, "-%}") == 0;
  }

  /// After a block or comment end at `at` (just past `%}`/`#}`), with its
  /// modifier: where the text that follows starts.
  size_t afterBlockEnd(size_t at, char modifier) {
    if (modifier == '-')
      at = skipSpace(at);
    else if (modifier != '+' && at < src_.size() && src_[at] == '\n')
      ++at; // trim_blocks
    return at;
  }

  void finishTag(size_t end) {
    countLines(pos_, end);
    lineStarting_ = end > 0 && src_[end - 1] == '\n';
    pos_ = end;
  }

  void lexRaw() {
    // The rest of the opening tag: `raw` and `%}` or `-%}` (no trim_blocks).
    size_t at = skipSpace(pos_) + 3;
    at = skipSpace(at);
    if (src_[at] == '-')
      at = skipSpace(at + 3);
    else
      at += 2;
    finishTag(at);
    for (size_t open = findOpener(pos_); open != std::string::npos;
         open = findOpener(open + 1)) {
      if (src_[open + 1] != '%')
        continue;
      size_t p = open + 2;
      char modifier = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+'))
        modifier = src_[p++];
      p = skipSpace(p);
      if (src_.compare(p, 6, "endraw") != 0)
        continue;
      p = skipSpace(p + 6);
      char endModifier = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+'))
        endModifier = src_[p++];
      if (src_.compare(p, 2, "%}") != 0)
        continue;
      emitText(leftStrip(src_.substr(pos_, open - pos_), modifier, true));
      finishTag(afterBlockEnd(p + 2, endModifier));
      return;
    }
    fail("missing end of raw directive");
  }

  void lexComment() {
    for (size_t i = pos_; i + 1 < src_.size(); ++i) {
      char modifier = 0;
      size_t close = i;
      if ((src_[i] == '-' || src_[i] == '+') &&
          src_.compare(i + 1, 2, "#}") == 0) {
        modifier = src_[i];
        close = i + 1;
      } else if (src_.compare(i, 2, "#}") != 0) {
        continue;
      }
      finishTag(afterBlockEnd(close + 2, modifier));
      return;
    }
    fail("missing end of comment tag");
  }

  /// The `-}}`/`}}` or `+%}`/`-%}`/`%}` at `at`: its length, or 0.
  size_t endTagAt(size_t at, bool block, char &modifier) const {
    const char *close = block ? "%}" : "}}";
    modifier = 0;
    if (src_.compare(at, 2, close) == 0)
      return 2;
    if ((src_[at] == '-' || (block && src_[at] == '+')) &&
        src_.compare(at + 1, 2, close) == 0) {
      modifier = src_[at];
      return 3;
    }
    return 0;
  }

  void lexTag(bool block) {
    tokens_.push_back(
        token(block ? Token::Kind::BlockBegin : Token::Kind::VariableBegin));
    std::vector<char> balance;
    bool afterDot = false;
    for (;;) {
      size_t at = skipSpace(pos_);
      countLines(pos_, at);
      pos_ = at;
      if (pos_ >= src_.size())
        fail(std::string("unexpected end of template, expected '") +
             (block ? "%}" : "}}") + "'");
      char modifier;
      if (size_t length =
              balance.empty() ? endTagAt(pos_, block, modifier) : 0) {
        tokens_.push_back(
            token(block ? Token::Kind::BlockEnd : Token::Kind::VariableEnd));
        size_t end = pos_ + length;
        end = block ? afterBlockEnd(end, modifier)
                    : (modifier == '-' ? skipSpace(end) : end);
        finishTag(end);
        return;
      }
      char c = src_[pos_];
      bool dot = false;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t end = pos_;
        while (end < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[end])) ||
                src_[end] == '_'))
          ++end;
        tokens_.push_back(
            token(Token::Kind::Name, src_.substr(pos_, end - pos_)));
        pos_ = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lexNumber(afterDot);
      } else if (c == '\'' || c == '"') {
        lexString(c);
      } else {
        static const char *const twoChar[] = {
            "//", "**", "==", "!=", "<=", ">="};
        std::string op(1, c);
        for (const char *candidate : twoChar)
          if (src_.compare(pos_, 2, candidate) == 0)
            op = candidate;
        if (op.size() == 1 &&
            std::string("+-/*%~[](){}<>=.:|,;").find(c) == std::string::npos)
          fail(std::string("unexpected char '") + c + "'");
        if (c == '(' || c == '[' || c == '{') {
          balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
        } else if (op.size() == 1 && (c == ')' || c == ']' || c == '}')) {
          if (balance.empty())
            fail(std::string("unexpected '") + c + "'");
          if (balance.back() != c)
            fail(std::string("unexpected '") + c + "', expected '" +
                 balance.back() + "'");
          balance.pop_back();
        }
        dot = op == ".";
        tokens_.push_back(token(Token::Kind::Operator, op));
        pos_ += op.size();
      }
      afterDot = dot;
    }
  }

  void lexNumber(bool afterDot) {
    auto digits = [&](size_t at) {
      // (\d+_)*\d+
      size_t end = at;
      while (end < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[end])) ||
              (src_[end] == '_' && end + 1 < src_.size() &&
               std::isdigit(static_cast<unsigned char>(src_[end + 1])) &&
               end > at)))
        ++end;
      return end;
    };
    size_t end = digits(pos_);
    bool isFloat = false;
    if (!afterDot) {
      size_t fractionEnd = end;
      if (end + 1 < src_.size() && src_[end] == '.' &&
          std::isdigit(static_cast<unsigned char>(src_[end + 1])))
        fractionEnd = digits(end + 1);
      size_t exponentEnd = fractionEnd;
      if (fractionEnd < src_.size() &&
          (src_[fractionEnd] == 'e' || src_[fractionEnd] == 'E')) {
        size_t at = fractionEnd + 1;
        if (at < src_.size() && (src_[at] == '+' || src_[at] == '-'))
          ++at;
        if (at < src_.size() &&
            std::isdigit(static_cast<unsigned char>(src_[at])))
          exponentEnd = digits(at);
      }
      if (exponentEnd != end) {
        isFloat = true;
        end = exponentEnd;
      }
    }
    std::string text;
    for (size_t i = pos_; i < end; ++i)
      if (src_[i] != '_')
        text += src_[i];
    Token t = token(isFloat ? Token::Kind::Float : Token::Kind::Integer, text);
    if (isFloat) {
      t.number = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      t.integer = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE)
        fail("the integer " + text + " is too large");
    }
    tokens_.push_back(std::move(t));
    pos_ = end;
  }

  /// A string literal, unescaped as Python's "unicode-escape" codec does.
  void lexString(char quote) {
    int startLine = line_;
    std::string value;
    size_t i = pos_ + 1;
    for (;; ++i) {
      if (i >= src_.size()) {
        line_ = startLine;
        fail("unterminated string literal");
      }
      char c = src_[i];
      if (c == quote)
        break;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (++i >= src_.size())
        continue; // reported as unterminated above
      char e = src_[i];
      auto hex = [&](int count) {
        if (i + count >= src_.size())
          fail("truncated \\" + std::string(1, e) + " escape in a string");
        uint32_t cp = 0;
        for (int k = 1; k <= count; ++k) {
          char h = src_[i + k];
          if (!std::isxdigit(static_cast<unsigned char>(h)))
            fail("truncated \\" + std::string(1, e) + " escape in a string");
          cp = cp * 16 +
               static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                         ? h - '0'
                                         : std::tolower(h) - 'a' + 10);
        }
        i += count;
        if (cp > 0x10FFFF)
          fail("illegal Unicode character in a string escape");
        appendUtf8(value, cp);
      };
      switch (e) {
      case '\n':
        break; // line continuation
      case '\\':
      case '\'':
      case '"':
        value += e;
        break;
      case 'a':
        value += '\a';
        break;
      case 'b':
        value += '\b';
        break;
      case 'f':
        value += '\f';
        break;
      case 'n':
        value += '\n';
        break;
      case 'r':
        value += '\r';
        break;
      case 't':
        value += '\t';
        break;
      case 'v':
        value += '\v';
        break;
      case 'x':
        hex(2);
        break;
      case 'u':
        hex(4);
        break;
      case 'U':
        hex(8);
        break;
      case 'N':
        // Python accepts \N{NAME}; xfmr has no table of character names.
        fail("\\N{...} escapes are not supported in chat templates by xfmr");
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < src_.size() && src_[i + 1] >= '0' &&
                          src_[i + 1] <= '7';
               ++k)
            cp = cp * 8 + static_cast<uint32_t>(src_[++i] - '0');
          appendUtf8(value, cp);
        } else {
          value += '\\';
          value += e;
        }
      }
    }
    Token t = token(Token::Kind::String, std::move(value));
    countLines(pos_, i);
    tokens_.push_back(std::move(t));
    pos_ = i + 1;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool lineStarting_ = true;
  std::vector<Token> tokens_;
};

} // namespace

std::vector<Token> tokenizeTemplate(const std::string &source) {
  // Newlines become "\n" and one trailing newline goes, as Jinja does by
  // default (keep_trailing_newline off).
  std::string text;
  text.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      text += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n')
        ++i;
    } else {
      text += source[i];
    }
  }
  if (!text.empty() && text.back() == '\n')
    text.pop_back();
  return Lexer(std::move(text)).run();
}

} // namespace xfmr::runtime::jinja
