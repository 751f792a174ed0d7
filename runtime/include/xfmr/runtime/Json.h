//===- Json.h - a small strict JSON reader ----------------------*- C++ -*-===//
//
// Enough JSON to read an artifact manifest without LLVM: RFC 8259 values, no
// extensions (no comments, trailing commas, NaN, duplicate keys). Errors are
// `Error`s that give the byte offset.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_JSON_H
#define XFMR_RUNTIME_JSON_H

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xfmr::runtime {

/// One parsed JSON value. Objects keep their keys in file order.
class JsonValue {
public:
  enum class Kind { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<JsonValue>;
  using Object = std::vector<std::pair<std::string, JsonValue>>;

  JsonValue() = default;
  static JsonValue makeBool(bool value);
  /// A number; `isInteger` when it is integral and fits int64 exactly.
  static JsonValue makeNumber(double value, bool isInteger, int64_t intValue,
                              bool integerLiteral = true);
  static JsonValue makeString(std::string value);
  static JsonValue makeArray(Array values);
  static JsonValue makeObject(Object members);

  Kind kind() const { return kind_; }
  bool isNull() const { return kind_ == Kind::Null; }
  bool isBool() const { return kind_ == Kind::Bool; }
  bool isNumber() const { return kind_ == Kind::Number; }
  /// True for numbers that are integral and representable as int64.
  bool isInteger() const { return kind_ == Kind::Number && isInteger_; }
  /// True for integers written without a fraction or exponent ("2", not
  /// "2.0"): Python's json reads those as int, the others as float.
  bool isIntegerLiteral() const { return isInteger() && integerLiteral_; }
  bool isString() const { return kind_ == Kind::String; }
  bool isArray() const { return kind_ == Kind::Array; }
  bool isObject() const { return kind_ == Kind::Object; }

  /// Accessors throw `Error` when the kind does not match.
  bool asBool() const;
  double asDouble() const;
  int64_t asInt() const;
  const std::string &asString() const;
  const Array &asArray() const;
  const Object &asObject() const;

  /// The member `key` of an object, or null when absent or not an object.
  const JsonValue *find(std::string_view key) const;

  /// "null", "a bool", "a number", "a string", "an array" or "an object".
  static const char *kindName(Kind kind);

private:
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  bool isInteger_ = false;
  bool integerLiteral_ = true;
  double number_ = 0;
  int64_t int_ = 0;
  std::string string_;
  Array array_;
  Object object_;
};

/// Appends the UTF-8 bytes of code point `cp` (at most U+10FFFF) to `out`.
void appendUtf8(std::string &out, uint32_t cp);

/// Parses one JSON document (surrounding whitespace allowed). Throws `Error`
/// naming `what` (e.g. "manifest of model.xfmr") and the byte offset.
JsonValue parseJson(std::string_view text,
                    const std::string &what = "JSON text");

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_JSON_H
