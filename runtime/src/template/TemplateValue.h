//===- TemplateValue.h - values of a chat template ------------*- C++ -*-===//
//
// Jinja evaluates Python objects; chat templates use a small part of them:
// undefined, None, bools, ints, floats, strings, lists, dicts (from JSON
// messages), namespaces and callables. This value type follows Python's rules
// for exactly those (truthiness, ==, <, str(), repr()) so a template renders
// the same bytes as python3-jinja2 does.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TEMPLATE_TEMPLATEVALUE_H
#define XFMR_RUNTIME_TEMPLATE_TEMPLATEVALUE_H

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace xfmr::runtime {
class JsonValue;
} // namespace xfmr::runtime

namespace xfmr::runtime::jinja {

class Value;
using List = std::vector<Value>;
/// Dicts keep insertion order, as Python's do; keys are strings (JSON keys).
using Dict = std::vector<std::pair<std::string, Value>>;

class Value {
public:
  enum class Kind {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Dict,
    /// `namespace(...)`: a dict whose attributes `set ns.x = ...` assigns.
    Namespace,
    /// A global function or a method bound to `self` (e.g. "str.split").
    Function
  };

  Value() = default;
  static Value undefined(std::string name = "");
  static Value none();
  static Value boolean(bool value);
  static Value integer(int64_t value);
  static Value floating(double value);
  static Value string(std::string value);
  static Value list(List values, bool isTuple = false);
  static Value dict(Dict members);
  static Value nameSpace(Dict members);
  static Value function(std::string name);
  static Value function(std::string name, Value self);
  static Value fromJson(const JsonValue &json);

  Kind kind() const { return kind_; }
  bool isUndefined() const { return kind_ == Kind::Undefined; }
  bool isNone() const { return kind_ == Kind::None; }
  bool isBool() const { return kind_ == Kind::Bool; }
  bool isInt() const { return kind_ == Kind::Int; }
  bool isFloat() const { return kind_ == Kind::Float; }
  /// Python's numbers: bool, int and float.
  bool isNumber() const { return isBool() || isInt() || isFloat(); }
  bool isString() const { return kind_ == Kind::String; }
  bool isList() const { return kind_ == Kind::List; }
  bool isTuple() const { return kind_ == Kind::List && isTuple_; }
  bool isDict() const { return kind_ == Kind::Dict; }
  bool isNamespace() const { return kind_ == Kind::Namespace; }
  bool isFunction() const { return kind_ == Kind::Function; }

  bool asBool() const { return bool_; }
  int64_t asInt() const { return isBool() ? (bool_ ? 1 : 0) : int_; }
  /// Int, bool or float as a double.
  double asDouble() const;
  const std::string &asString() const { return text(); }
  /// For undefined values: the name that was looked up; for functions: the
  /// function's name.
  const std::string &name() const { return text(); }
  const List &asList() const { return *list_; }
  const Dict &asDict() const { return *dict_; }
  /// The members of a dict or namespace; namespaces share them between
  /// copies, as Python references do.
  Dict &mutableDict() const { return *dict_; }
  /// The object a method is bound to (undefined for global functions).
  const Value &boundSelf() const { return list_->front(); }

  /// The member `key` of a dict or namespace, or null.
  const Value *find(const std::string &key) const;

  /// Python's bool(x).
  bool truthy() const;
  /// Python's str(x), as `{{ x }}` prints it (undefined prints nothing).
  std::string str() const;
  /// Python's repr(x).
  std::string repr() const;
  /// How many lists, dicts and namespaces nest in this value (0 for a
  /// scalar); values are refused beyond `kMaxNesting`.
  unsigned nesting() const { return nesting_; }
  /// True when a namespace is in this value (a namespace cannot hold one,
  /// so values never form cycles).
  bool holdsNamespace() const { return holdsNamespace_; }
  static constexpr unsigned kMaxNesting = 512;

  /// Python's type name ("str", "int", "dict", ...), for error messages.
  const char *typeName() const;

private:
  /// Sets nesting_ and holdsNamespace_ from `children`; throws past the limit.
  template <typename Range, typename Get>
  void measure(const Range &children, Get get);

  Kind kind_ = Kind::Undefined;
  bool bool_ = false;
  bool isTuple_ = false;
  bool holdsNamespace_ = false;
  unsigned nesting_ = 0;
  int64_t int_ = 0;
  double float_ = 0;
  /// Strings are immutable and shared: copying a value copies no text.
  std::shared_ptr<const std::string> string_;
  const std::string &text() const;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
};

/// Texts (strings, printed values, JSON) longer than this are refused.
constexpr size_t kMaxTextBytes = size_t(64) << 20;

/// The work a template does inside builtins counts against the same budget
/// as its steps: `chargeWork` adds `steps` (one per element handled, one per
/// 64 bytes of text) and throws `Error` past the limit that `startWork` set
/// for this thread's render.
void startWork(uint64_t limit);
void chargeWork(uint64_t steps);

/// Python's `a == b` for these values.
bool equals(const Value &a, const Value &b);
/// Python's `a < b`; throws `Error` where Python raises TypeError.
bool lessThan(const Value &a, const Value &b);
/// Python's repr of a float (shortest round trip: 0.1, 1e+16, 1.0).
std::string floatRepr(double value);
/// Python's str.isspace for one code point.
bool isPythonSpace(uint32_t cp);
/// The code points of UTF-8 `text`; a byte that starts no valid sequence is
/// one code point of its own (0xDC80 + byte, as Python's surrogateescape).
std::vector<uint32_t> decodeUtf8(const std::string &text);
std::string encodeUtf8(const std::vector<uint32_t> &codePoints);

} // namespace xfmr::runtime::jinja

#endif // XFMR_RUNTIME_TEMPLATE_TEMPLATEVALUE_H
