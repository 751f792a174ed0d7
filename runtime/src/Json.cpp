//===- Json.cpp - a small strict JSON reader ------------------------------===//

#include "xfmr/runtime/Json.h"

#include "xfmr/runtime/Error.h"

#include <charconv>
#include <cmath>
#include <unordered_set>

using namespace xfmr::runtime;

JsonValue JsonValue::makeBool(bool value) {
  JsonValue v;
  v.kind_ = Kind::Bool;
  v.bool_ = value;
  return v;
}

JsonValue JsonValue::makeNumber(double value, bool isInteger,
                                int64_t intValue, bool integerLiteral) {
  JsonValue v;
  v.kind_ = Kind::Number;
  v.number_ = value;
  v.isInteger_ = isInteger;
  v.integerLiteral_ = integerLiteral;
  v.int_ = intValue;
  return v;
}

JsonValue JsonValue::makeString(std::string value) {
  JsonValue v;
  v.kind_ = Kind::String;
  v.string_ = std::move(value);
  return v;
}

JsonValue JsonValue::makeArray(Array values) {
  JsonValue v;
  v.kind_ = Kind::Array;
  v.array_ = std::move(values);
  return v;
}

JsonValue JsonValue::makeObject(Object members) {
  JsonValue v;
  v.kind_ = Kind::Object;
  v.object_ = std::move(members);
  return v;
}

const char *JsonValue::kindName(Kind kind) {
  switch (kind) {
  case Kind::Null:
    return "null";
  case Kind::Bool:
    return "a bool";
  case Kind::Number:
    return "a number";
  case Kind::String:
    return "a string";
  case Kind::Array:
    return "an array";
  case Kind::Object:
    return "an object";
  }
  return "?";
}

static void expectKind(const JsonValue &v, JsonValue::Kind kind) {
  if (v.kind() != kind)
    throw Error(std::string("JSON value is ") + JsonValue::kindName(v.kind()) +
                ", expected " + JsonValue::kindName(kind));
}

bool JsonValue::asBool() const {
  expectKind(*this, Kind::Bool);
  return bool_;
}

double JsonValue::asDouble() const {
  expectKind(*this, Kind::Number);
  return number_;
}

int64_t JsonValue::asInt() const {
  expectKind(*this, Kind::Number);
  if (!isInteger_)
    throw Error("JSON number " + std::to_string(number_) +
                " is not an integer");
  return int_;
}

const std::string &JsonValue::asString() const {
  expectKind(*this, Kind::String);
  return string_;
}

const JsonValue::Array &JsonValue::asArray() const {
  expectKind(*this, Kind::Array);
  return array_;
}

const JsonValue::Object &JsonValue::asObject() const {
  expectKind(*this, Kind::Object);
  return object_;
}

const JsonValue *JsonValue::find(std::string_view key) const {
  if (kind_ != Kind::Object)
    return nullptr;
  for (const auto &member : object_)
    if (member.first == key)
      return &member.second;
  return nullptr;
}

namespace {

/// Objects up to this many members look for duplicate keys linearly.
constexpr size_t kLinearKeySearch = 16;

/// Recursive descent over the text. Nesting is bounded so that hostile input
/// cannot overflow the stack.
class Parser {
public:
  Parser(std::string_view text, const std::string &what)
      : text_(text), what_(what) {}

  JsonValue parseDocument() {
    skipSpace();
    JsonValue v = parseValue(0);
    skipSpace();
    if (pos_ != text_.size())
      fail("unexpected text after the JSON value");
    return v;
  }

private:
  static constexpr int kMaxDepth = 256;

  [[noreturn]] void fail(const std::string &message) const {
    throw Error(what_ + ": invalid JSON at offset " + std::to_string(pos_) +
                ": " + message);
  }

  bool atEnd() const { return pos_ >= text_.size(); }
  char peek() const { return atEnd() ? '\0' : text_[pos_]; }

  void skipSpace() {
    while (!atEnd() && (peek() == ' ' || peek() == '\t' || peek() == '\n' ||
                        peek() == '\r'))
      ++pos_;
  }

  void expect(char c) {
    if (atEnd())
      fail(std::string("expected '") + c + "', found end of text");
    if (peek() != c)
      fail(std::string("expected '") + c + "', found '" + peek() + "'");
    ++pos_;
  }

  void expectWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word)
      fail("invalid literal (expected '" + std::string(word) + "')");
    pos_ += word.size();
  }

  JsonValue parseValue(int depth) {
    if (depth > kMaxDepth)
      fail("nesting deeper than " + std::to_string(kMaxDepth));
    if (atEnd())
      fail("expected a value, found end of text");
    char c = peek();
    switch (c) {
    case '{':
      return parseObject(depth);
    case '[':
      return parseArray(depth);
    case '"':
      return JsonValue::makeString(parseString());
    case 't':
      expectWord("true");
      return JsonValue::makeBool(true);
    case 'f':
      expectWord("false");
      return JsonValue::makeBool(false);
    case 'n':
      expectWord("null");
      return JsonValue();
    default:
      if (c == '-' || (c >= '0' && c <= '9'))
        return parseNumber();
      fail(std::string("unexpected character '") + c + "'");
    }
  }

  JsonValue parseObject(int depth) {
    expect('{');
    JsonValue::Object members;
    std::unordered_set<std::string> keys;
    skipSpace();
    if (peek() == '}') {
      ++pos_;
      return JsonValue::makeObject(std::move(members));
    }
    while (true) {
      skipSpace();
      if (peek() != '"')
        fail("expected a string key");
      size_t keyPos = pos_;
      std::string key = parseString();
      // A linear search while the object is small; a set of its keys once it
      // is large (a tokenizer.json vocabulary has 100k members).
      bool duplicate = false;
      if (members.size() < kLinearKeySearch) {
        for (const auto &member : members)
          duplicate = duplicate || member.first == key;
      } else {
        if (keys.empty())
          for (const auto &member : members)
            keys.insert(member.first);
        duplicate = !keys.insert(key).second;
      }
      if (duplicate) {
        pos_ = keyPos;
        fail("duplicate key \"" + key + "\"");
      }
      skipSpace();
      expect(':');
      skipSpace();
      JsonValue value = parseValue(depth + 1);
      members.emplace_back(std::move(key), std::move(value));
      skipSpace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return JsonValue::makeObject(std::move(members));
    }
  }

  JsonValue parseArray(int depth) {
    expect('[');
    JsonValue::Array values;
    skipSpace();
    if (peek() == ']') {
      ++pos_;
      return JsonValue::makeArray(std::move(values));
    }
    while (true) {
      skipSpace();
      values.push_back(parseValue(depth + 1));
      skipSpace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return JsonValue::makeArray(std::move(values));
    }
  }

  unsigned parseHex4() {
    if (text_.size() - pos_ < 4)
      fail("truncated \\u escape");
    unsigned value = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      value <<= 4;
      if (c >= '0' && c <= '9')
        value |= c - '0';
      else if (c >= 'a' && c <= 'f')
        value |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        value |= c - 'A' + 10;
      else
        fail("invalid hex digit in \\u escape");
    }
    return value;
  }



  std::string parseString() {
    expect('"');
    std::string out;
    while (true) {
      if (atEnd())
        fail("unterminated string");
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        fail("control character in string (must be escaped)");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (atEnd())
        fail("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
      case '"':
      case '\\':
      case '/':
        out += e;
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        unsigned cp = parseHex4();
        if (cp >= 0xDC00 && cp <= 0xDFFF)
          fail("unpaired low surrogate in \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (text_.substr(pos_, 2) != "\\u")
            fail("unpaired high surrogate in \\u escape");
          pos_ += 2;
          unsigned low = parseHex4();
          if (low < 0xDC00 || low > 0xDFFF)
            fail("invalid low surrogate in \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        --pos_;
        fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  void digits() {
    size_t begin = pos_;
    while (!atEnd() && peek() >= '0' && peek() <= '9')
      ++pos_;
    if (pos_ == begin)
      fail("expected a digit");
  }

  JsonValue parseNumber() {
    size_t begin = pos_;
    if (peek() == '-')
      ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9')
        fail("leading zero in number");
    } else {
      digits();
    }
    bool integral = true;
    if (peek() == '.') {
      ++pos_;
      digits();
      integral = false;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-')
        ++pos_;
      digits();
      integral = false;
    }
    const char *first = text_.data() + begin;
    const char *last = text_.data() + pos_;
    // from_chars, unlike strtod, ignores the C locale's decimal point.
    double value = 0;
    auto [dEnd, dErr] = std::from_chars(first, last, value);
    if (dErr != std::errc() || dEnd != last) {
      pos_ = begin;
      fail("number out of range");
    }
    int64_t intValue = 0;
    bool isInteger = false;
    if (integral) {
      auto [iEnd, iErr] = std::from_chars(first, last, intValue);
      isInteger = iErr == std::errc() && iEnd == last;
    } else if (std::nearbyint(value) == value && std::fabs(value) < 0x1p63) {
      // 1e3 or 2.0 still count as integers.
      intValue = static_cast<int64_t>(value);
      isInteger = true;
    }
    return JsonValue::makeNumber(value, isInteger, intValue, integral);
  }

  std::string_view text_;
  const std::string &what_;
  size_t pos_ = 0;
};

} // namespace

JsonValue xfmr::runtime::parseJson(std::string_view text,
                                   const std::string &what) {
  return Parser(text, what).parseDocument();
}

void xfmr::runtime::appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}
