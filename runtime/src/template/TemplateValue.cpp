//===- TemplateValue.cpp - Python semantics of template values ------------===//

#include "template/TemplateValue.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utf8proc.h>

namespace xfmr::runtime::jinja {

namespace {
thread_local uint64_t workDone = 0;
thread_local uint64_t workLimit = UINT64_MAX;
} // namespace

void startWork(uint64_t limit) {
  workDone = 0;
  workLimit = limit;
}

void chargeWork(uint64_t steps) {
  workDone += steps;
  if (workDone > workLimit)
    throw Error("the template runs for more than " + std::to_string(workLimit) +
                " steps");
}

static void checkText(const std::string &text) {
  if (text.size() > kMaxTextBytes)
    throw Error("a text grows beyond " + std::to_string(kMaxTextBytes >> 20) +
                " MiB");
}

const std::string &Value::text() const {
  static const std::string empty;
  return string_ ? *string_ : empty;
}

template <typename Range, typename Get>
void Value::measure(const Range &children, Get get) {
  unsigned deepest = 0;
  for (const auto &child : children) {
    const Value &value = get(child);
    deepest = std::max(deepest, value.nesting_);
    holdsNamespace_ = holdsNamespace_ || value.holdsNamespace_ ||
                      value.kind_ == Kind::Namespace;
  }
  nesting_ = deepest + 1;
  if (nesting_ > kMaxNesting)
    throw Error("values nest deeper than " + std::to_string(kMaxNesting) +
                " levels");
}

Value Value::undefined(std::string name) {
  Value v;
  v.string_ = std::make_shared<const std::string>(std::move(name));
  return v;
}
Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}
Value Value::boolean(bool value) {
  Value v;
  v.kind_ = Kind::Bool;
  v.bool_ = value;
  return v;
}
Value Value::integer(int64_t value) {
  Value v;
  v.kind_ = Kind::Int;
  v.int_ = value;
  return v;
}
Value Value::floating(double value) {
  Value v;
  v.kind_ = Kind::Float;
  v.float_ = value;
  return v;
}
Value Value::string(std::string value) {
  Value v;
  v.kind_ = Kind::String;
  v.string_ = std::make_shared<const std::string>(std::move(value));
  return v;
}
Value Value::list(List values, bool isTuple) {
  Value v;
  v.kind_ = Kind::List;
  v.isTuple_ = isTuple;
  v.measure(values, [](const Value &x) -> const Value & { return x; });
  v.list_ = std::make_shared<List>(std::move(values));
  return v;
}
Value Value::dict(Dict members) {
  Value v;
  v.kind_ = Kind::Dict;
  v.measure(members, [](const auto &m) -> const Value & { return m.second; });
  v.dict_ = std::make_shared<Dict>(std::move(members));
  return v;
}
Value Value::nameSpace(Dict members) {
  Value v = dict(std::move(members));
  if (v.holdsNamespace_)
    throw Error("a namespace cannot hold another namespace");
  v.kind_ = Kind::Namespace;
  return v;
}
Value Value::function(std::string name) {
  return function(std::move(name), Value());
}
Value Value::function(std::string name, Value self) {
  Value v;
  v.kind_ = Kind::Function;
  v.string_ = std::make_shared<const std::string>(std::move(name));
  v.list_ = std::make_shared<List>(List{std::move(self)});
  return v;
}

Value Value::fromJson(const JsonValue &json) {
  switch (json.kind()) {
  case JsonValue::Kind::Null:
    return none();
  case JsonValue::Kind::Bool:
    return boolean(json.asBool());
  case JsonValue::Kind::Number:
    return json.isIntegerLiteral() ? integer(json.asInt())
                                   : floating(json.asDouble());
  case JsonValue::Kind::String:
    return string(json.asString());
  case JsonValue::Kind::Array: {
    List values;
    for (const JsonValue &element : json.asArray())
      values.push_back(fromJson(element));
    return list(std::move(values));
  }
  case JsonValue::Kind::Object: {
    Dict members;
    for (const auto &[key, member] : json.asObject())
      members.emplace_back(key, fromJson(member));
    return dict(std::move(members));
  }
  }
  return none();
}

double Value::asDouble() const {
  if (isFloat())
    return float_;
  return static_cast<double>(asInt());
}

const Value *Value::find(const std::string &key) const {
  if (!dict_ || (kind_ != Kind::Dict && kind_ != Kind::Namespace))
    return nullptr;
  for (const auto &[name, member] : *dict_)
    if (name == key)
      return &member;
  return nullptr;
}

bool Value::truthy() const {
  switch (kind_) {
  case Kind::Undefined:
  case Kind::None:
    return false;
  case Kind::Bool:
    return bool_;
  case Kind::Int:
    return int_ != 0;
  case Kind::Float:
    return float_ != 0;
  case Kind::String:
    return !text().empty();
  case Kind::List:
    return !list_->empty();
  case Kind::Dict:
    return !dict_->empty();
  case Kind::Namespace:
  case Kind::Function:
    return true;
  }
  return false;
}

const char *Value::typeName() const {
  switch (kind_) {
  case Kind::Undefined:
    return "Undefined";
  case Kind::None:
    return "NoneType";
  case Kind::Bool:
    return "bool";
  case Kind::Int:
    return "int";
  case Kind::Float:
    return "float";
  case Kind::String:
    return "str";
  case Kind::List:
    return isTuple_ ? "tuple" : "list";
  case Kind::Dict:
    return "dict";
  case Kind::Namespace:
    return "Namespace";
  case Kind::Function:
    return "builtin_function_or_method";
  }
  return "object";
}

std::string floatRepr(double value) {
  if (std::isnan(value))
    return "nan";
  if (std::isinf(value))
    return value < 0 ? "-inf" : "inf";
  if (value == 0)
    return std::signbit(value) ? "-0.0" : "0.0";
  // The shortest digits that read back as `value`, as Python's repr finds.
  char buffer[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*e", precision - 1, value);
    if (std::strtod(buffer, nullptr) == value)
      break;
  }
  std::string text(buffer);
  bool negative = text[0] == '-';
  size_t e = text.find('e');
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i)
    if (text[i] != '.')
      digits += text[i];
  int exponent = std::atoi(text.c_str() + e + 1);
  int point = exponent + 1; // value = 0.digits x 10^point
  std::string out = negative ? "-" : "";
  if (point > 16 || point < -3) {
    out += digits[0];
    if (digits.size() > 1)
      out += "." + digits.substr(1);
    // Room for any int exponent (GCC's -Wformat-truncation counts them all).
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    return out + exp;
  }
  if (point <= 0)
    return out + "0." + std::string(-point, '0') + digits;
  if (static_cast<size_t>(point) >= digits.size())
    return out + digits + std::string(point - digits.size(), '0') + ".0";
  return out + digits.substr(0, point) + "." + digits.substr(point);
}

bool isPythonSpace(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 ||
      cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
      cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
      cp == 0x3000)
    return true;
  return false;
}

std::vector<uint32_t> decodeUtf8(const std::string &text) {
  chargeWork(text.size() / 64);
  std::vector<uint32_t> out;
  out.reserve(text.size());
  const auto *bytes = reinterpret_cast<const utf8proc_uint8_t *>(text.data());
  utf8proc_ssize_t size = static_cast<utf8proc_ssize_t>(text.size());
  for (utf8proc_ssize_t i = 0; i < size;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(bytes + i, size - i, &cp);
    if (n <= 0) {
      out.push_back(0xDC00 + bytes[i]);
      ++i;
      continue;
    }
    out.push_back(static_cast<uint32_t>(cp));
    i += n;
  }
  return out;
}

std::string encodeUtf8(const std::vector<uint32_t> &codePoints) {
  std::string out;
  out.reserve(codePoints.size());
  for (uint32_t cp : codePoints) {
    if (cp >= 0xDC80 && cp <= 0xDCFF)
      out += static_cast<char>(cp - 0xDC00); // a byte kept from invalid UTF-8
    else
      appendUtf8(out, cp);
  }
  return out;
}

static bool isPrintable(uint32_t cp) {
  if (cp == ' ')
    return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
  case UTF8PROC_CATEGORY_CC:
  case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_CS:
  case UTF8PROC_CATEGORY_CO:
  case UTF8PROC_CATEGORY_CN:
  case UTF8PROC_CATEGORY_ZL:
  case UTF8PROC_CATEGORY_ZP:
  case UTF8PROC_CATEGORY_ZS:
    return false;
  default:
    return true;
  }
}

static std::string stringRepr(const std::string &text) {
  bool hasSingle = text.find('\'') != std::string::npos;
  bool hasDouble = text.find('"') != std::string::npos;
  char quote = hasSingle && !hasDouble ? '"' : '\'';
  std::string out(1, quote);
  for (uint32_t cp : decodeUtf8(text)) {
    char escape[16];
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp < 0x7F && cp >= 0x20) {
      out += static_cast<char>(cp);
    } else if (cp >= 0x80 && isPrintable(cp)) {
      appendUtf8(out, cp);
    } else {
      if (cp <= 0xFF)
        std::snprintf(escape, sizeof(escape), "\\x%02x", cp);
      else if (cp <= 0xFFFF)
        std::snprintf(escape, sizeof(escape), "\\u%04x", cp);
      else
        std::snprintf(escape, sizeof(escape), "\\U%08x", cp);
      out += escape;
    }
  }
  out += quote;
  return out;
}

static std::string dictBody(const Dict &members) {
  std::string out = "{";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i)
      out += ", ";
    out += stringRepr(members[i].first) + ": " + members[i].second.repr();
    checkText(out);
  }
  return out + "}";
}

std::string Value::str() const {
  switch (kind_) {
  case Kind::Undefined:
    return "";
  case Kind::String:
    return text();
  default:
    return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
  case Kind::Undefined:
    return "Undefined";
  case Kind::None:
    return "None";
  case Kind::Bool:
    return bool_ ? "True" : "False";
  case Kind::Int:
    return std::to_string(int_);
  case Kind::Float:
    return floatRepr(float_);
  case Kind::String:
    return stringRepr(text());
  case Kind::List: {
    std::string out = isTuple_ ? "(" : "[";
    for (size_t i = 0; i < list_->size(); ++i) {
      out += (i ? ", " : "") + (*list_)[i].repr();
      checkText(out);
    }
    if (isTuple_ && list_->size() == 1)
      out += ",";
    return out + (isTuple_ ? ")" : "]");
  }
  case Kind::Dict:
    return dictBody(*dict_);
  case Kind::Namespace:
    return "<Namespace " + dictBody(*dict_) + ">";
  case Kind::Function:
    return "<built-in function " + text() + ">";
  }
  return "";
}

bool equals(const Value &a, const Value &b) {
  if (a.isNumber() && b.isNumber()) {
    if (a.isFloat() || b.isFloat())
      return a.asDouble() == b.asDouble();
    return a.asInt() == b.asInt();
  }
  if (a.kind() != b.kind())
    return false;
  switch (a.kind()) {
  case Value::Kind::Undefined:
  case Value::Kind::None:
    return true;
  case Value::Kind::String:
    return a.asString() == b.asString();
  case Value::Kind::List: {
    if (a.isTuple() != b.isTuple() || a.asList().size() != b.asList().size())
      return false;
    for (size_t i = 0; i < a.asList().size(); ++i)
      if (!equals(a.asList()[i], b.asList()[i]))
        return false;
    return true;
  }
  case Value::Kind::Dict: {
    if (a.asDict().size() != b.asDict().size())
      return false;
    for (const auto &[key, member] : a.asDict()) {
      const Value *other = b.find(key);
      if (!other || !equals(member, *other))
        return false;
    }
    return true;
  }
  case Value::Kind::Namespace:
    return &a.asDict() == &b.asDict();
  case Value::Kind::Function:
    return a.name() == b.name();
  default:
    return false;
  }
}

bool lessThan(const Value &a, const Value &b) {
  if (a.isNumber() && b.isNumber()) {
    if (a.isFloat() || b.isFloat())
      return a.asDouble() < b.asDouble();
    return a.asInt() < b.asInt();
  }
  if (a.isString() && b.isString())
    return a.asString() < b.asString(); // UTF-8 byte order = code point order
  if (a.isList() && b.isList() && a.isTuple() == b.isTuple()) {
    const List &x = a.asList(), &y = b.asList();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i]))
        return lessThan(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw Error(std::string("'<' not supported between instances of '") +
              a.typeName() + "' and '" + b.typeName() + "'");
}

} // namespace xfmr::runtime::jinja
