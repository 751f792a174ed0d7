//===- TemplateBuiltins.cpp - Jinja's operators, filters, tests -----------===//
//
// Each function mirrors its Python or jinja2/filters.py counterpart; where a
// Python error would surface, an `Error` with Python's wording does.
//
//===----------------------------------------------------------------------===//

#include "template/TemplateBuiltins.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <utf8proc.h>

namespace xfmr::runtime::jinja {

namespace {

/// Lists and strings longer than this are refused (a template that builds
/// them is broken or hostile; chat prompts are far smaller).
constexpr size_t kMaxSize = size_t(1) << 26;
/// Lists longer than this are refused (range(), repetition, concatenation).
constexpr size_t kMaxListSize = 100000;

[[noreturn]] void fail(const std::string &message) { throw Error(message); }

[[noreturn]] void failUndefined(const Value &value) {
  fail(value.name().empty() ? "an undefined value was used" : value.name());
}

std::string quoted(const std::string &text) { return "'" + text + "'"; }

/// A function's parameters, filled from positional and keyword arguments as
/// Python binds them.
class Parameters {
public:
  Parameters(const std::string &function, const Arguments &args,
             std::vector<std::string> names)
      : names_(std::move(names)), values_(names_.size(), nullptr) {
    if (args.positional.size() > names_.size())
      fail(function + "() takes at most " + std::to_string(names_.size()) +
           " argument" + (names_.size() == 1 ? "" : "s") + " (" +
           std::to_string(args.positional.size()) + " given)");
    for (size_t i = 0; i < args.positional.size(); ++i)
      values_[i] = &args.positional[i];
    for (const auto &[key, value] : args.keywords) {
      auto it = std::find(names_.begin(), names_.end(), key);
      if (it == names_.end())
        fail(function + "() got an unexpected keyword argument " + quoted(key));
      size_t i = static_cast<size_t>(it - names_.begin());
      if (values_[i])
        fail(function + "() got multiple values for argument " + quoted(key));
      values_[i] = &value;
    }
  }
  /// The argument for parameter `i`, or null when not given.
  const Value *get(size_t i) const { return values_[i]; }
  const Value &require(size_t i, const std::string &function) const {
    if (!values_[i])
      fail(function + "() missing required argument " + quoted(names_[i]));
    return *values_[i];
  }
  bool flag(size_t i, bool fallback = false) const {
    return values_[i] ? values_[i]->truthy() : fallback;
  }

private:
  std::vector<std::string> names_;
  std::vector<const Value *> values_;
};

// ---- strings --------------------------------------------------------------

using CodePoints = std::vector<uint32_t>;

CodePoints chars(const std::string &text) { return decodeUtf8(text); }
std::string text(const CodePoints &cps) { return encodeUtf8(cps); }

const std::string &requireString(const Value &value, const std::string &what) {
  if (value.isUndefined())
    failUndefined(value);
  if (!value.isString())
    fail(what + " must be str, not " + value.typeName());
  return value.asString();
}

int64_t requireInt(const Value &value, const std::string &what) {
  if (value.isUndefined())
    failUndefined(value);
  if (!value.isInt() && !value.isBool())
    fail(what + " must be an integer, not " + value.typeName());
  return value.asInt();
}

uint32_t upper(uint32_t cp) {
  return static_cast<uint32_t>(
      utf8proc_toupper(static_cast<utf8proc_int32_t>(cp)));
}
uint32_t lower(uint32_t cp) {
  return static_cast<uint32_t>(
      utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
}
uint32_t titleCase(uint32_t cp) {
  return static_cast<uint32_t>(
      utf8proc_totitle(static_cast<utf8proc_int32_t>(cp)));
}
bool isCased(uint32_t cp) {
  utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL ||
         c == UTF8PROC_CATEGORY_LT;
}

std::string mapChars(const std::string &s, uint32_t (*f)(uint32_t)) {
  CodePoints cps = chars(s);
  for (uint32_t &cp : cps)
    cp = f(cp);
  return text(cps);
}

std::string capitalize(const std::string &s) {
  CodePoints cps = chars(s);
  for (size_t i = 0; i < cps.size(); ++i)
    cps[i] = i == 0 ? titleCase(cps[i]) : lower(cps[i]);
  return text(cps);
}

/// Python's str.title().
std::string pythonTitle(const std::string &s) {
  CodePoints cps = chars(s);
  bool previousCased = false;
  for (uint32_t &cp : cps) {
    bool cased = isCased(cp);
    cp = cased ? (previousCased ? lower(cp) : titleCase(cp)) : cp;
    previousCased = cased;
  }
  return text(cps);
}

/// Python's str.strip/lstrip/rstrip; `set` null strips whitespace.
std::string strip(const std::string &s, const Value *set, bool left,
                  bool right) {
  CodePoints cps = chars(s);
  CodePoints strip;
  bool whitespace = !set || set->isNone();
  if (!whitespace)
    strip = chars(requireString(*set, "strip arg"));
  auto drop = [&](uint32_t cp) {
    return whitespace
               ? isPythonSpace(cp)
               : std::find(strip.begin(), strip.end(), cp) != strip.end();
  };
  size_t begin = 0, end = cps.size();
  while (left && begin < end && drop(cps[begin]))
    ++begin;
  while (right && end > begin && drop(cps[end - 1]))
    --end;
  return text(CodePoints(cps.begin() + static_cast<long>(begin),
                         cps.begin() + static_cast<long>(end)));
}

/// Python's str.split (or rsplit with `fromRight`).
List split(const std::string &s, const Value *separator, int64_t maxSplit,
           bool fromRight) {
  List parts;
  if (!separator || separator->isNone()) {
    CodePoints cps = chars(s);
    if (fromRight)
      std::reverse(cps.begin(), cps.end());
    std::vector<CodePoints> words;
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && isPythonSpace(cps[i]))
        ++i;
      if (i == cps.size())
        break;
      if (maxSplit >= 0 && static_cast<int64_t>(words.size()) == maxSplit) {
        size_t end = cps.size();
        while (end > i && isPythonSpace(cps[end - 1]))
          --end;
        words.emplace_back(cps.begin() + static_cast<long>(i),
                           cps.begin() + static_cast<long>(end));
        break;
      }
      size_t start = i;
      while (i < cps.size() && !isPythonSpace(cps[i]))
        ++i;
      words.emplace_back(cps.begin() + static_cast<long>(start),
                         cps.begin() + static_cast<long>(i));
      if (words.size() > kMaxListSize)
        fail("split() makes more than " + std::to_string(kMaxListSize) +
             " parts");
    }
    if (fromRight) {
      std::reverse(words.begin(), words.end());
      for (CodePoints &w : words)
        std::reverse(w.begin(), w.end());
    }
    if (words.size() > kMaxListSize)
      fail("split() makes more than " + std::to_string(kMaxListSize) +
           " parts");
    for (CodePoints &w : words)
      parts.push_back(Value::string(text(w)));
    return parts;
  }
  const std::string &sep = requireString(*separator, "separator");
  if (sep.empty())
    fail("empty separator");
  std::vector<std::string> pieces;
  if (!fromRight) {
    size_t start = 0;
    for (;;) {
      size_t at = s.find(sep, start);
      if (at == std::string::npos ||
          (maxSplit >= 0 && static_cast<int64_t>(pieces.size()) == maxSplit))
        break;
      pieces.push_back(s.substr(start, at - start));
      if (pieces.size() > kMaxListSize)
        fail("split() makes more than " + std::to_string(kMaxListSize) +
             " parts");
      start = at + sep.size();
    }
    pieces.push_back(s.substr(start));
  } else {
    size_t end = s.size();
    for (;;) {
      if (end < sep.size() ||
          (maxSplit >= 0 && static_cast<int64_t>(pieces.size()) == maxSplit))
        break;
      size_t at = s.rfind(sep, end - sep.size());
      if (at == std::string::npos)
        break;
      pieces.push_back(s.substr(at + sep.size(), end - at - sep.size()));
      if (pieces.size() > kMaxListSize)
        fail("split() makes more than " + std::to_string(kMaxListSize) +
             " parts");
      end = at;
    }
    pieces.push_back(s.substr(0, end));
    std::reverse(pieces.begin(), pieces.end());
  }
  if (pieces.size() > kMaxListSize)
    fail("split() makes more than " + std::to_string(kMaxListSize) + " parts");
  for (std::string &p : pieces)
    parts.push_back(Value::string(std::move(p)));
  return parts;
}

bool isLineBreak(uint32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
         (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 || cp == 0x2028 ||
         cp == 0x2029;
}

/// Python's str.splitlines(keepends).
std::vector<std::string> splitLines(const std::string &s, bool keepEnds) {
  CodePoints cps = chars(s);
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (!isLineBreak(cps[i]))
      continue;
    size_t end = i;
    if (cps[i] == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n')
      ++i;
    lines.push_back(text(
        CodePoints(cps.begin() + static_cast<long>(start),
                   cps.begin() + static_cast<long>(keepEnds ? i + 1 : end))));
    if (lines.size() > kMaxListSize)
      fail("more than " + std::to_string(kMaxListSize) + " lines");
    start = i + 1;
  }
  if (start < cps.size())
    lines.push_back(
        text(CodePoints(cps.begin() + static_cast<long>(start), cps.end())));
  return lines;
}

std::string replace(const std::string &s, const std::string &old,
                    const std::string &replacement, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts the replacement around every character.
    CodePoints cps = chars(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += replacement;
        ++done;
      }
      if (i < cps.size())
        out += text(CodePoints{cps[i]});
      if (out.size() > kMaxSize)
        fail("the string grows beyond " + std::to_string(kMaxSize) + " bytes");
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  for (size_t at = s.find(old);
       at != std::string::npos && (count < 0 || done < count);
       at = s.find(old, start)) {
    out.append(s, start, at - start);
    out += replacement;
    if (out.size() > kMaxSize)
      fail("the string grows beyond " + std::to_string(kMaxSize) + " bytes");
    start = at + old.size();
    ++done;
  }
  out.append(s, start, std::string::npos);
  return out;
}

/// Code point index of byte offset `at` in `s`.
int64_t charIndex(const std::string &s, size_t at) {
  return static_cast<int64_t>(chars(s.substr(0, at)).size());
}

bool startsOrEndsWith(const std::string &s, const Value &affix, bool start) {
  if (affix.isList() && affix.isTuple()) {
    for (const Value &each : affix.asList())
      if (startsOrEndsWith(s, each, start))
        return true;
    return false;
  }
  const std::string &a = requireString(affix, start ? "startswith first arg"
                                                    : "endswith first arg");
  if (a.size() > s.size())
    return false;
  return start ? s.compare(0, a.size(), a) == 0
               : s.compare(s.size() - a.size(), a.size(), a) == 0;
}

std::string htmlEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&#34;";
      break;
    case '\'':
      out += "&#39;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

// ---- numbers --------------------------------------------------------------

Value makeInt(__int128 value, const char *op) {
  if (value > INT64_MAX || value < INT64_MIN)
    fail(std::string("integer overflow in '") + op +
         "' (xfmr's templates use 64-bit integers)");
  return Value::integer(static_cast<int64_t>(value));
}

[[noreturn]] void unsupportedOperands(const std::string &op, const Value &a,
                                      const Value &b) {
  fail("unsupported operand type(s) for " + op + ": '" + a.typeName() +
       "' and '" + b.typeName() + "'");
}

Value repeat(const Value &sequence, int64_t times) {
  if (sequence.isString()) {
    size_t size = std::max<size_t>(sequence.asString().size(), 1);
    if (times > 0 && static_cast<uint64_t>(times) > kMaxSize / size)
      fail("the string grows beyond " + std::to_string(kMaxSize) + " bytes");
    std::string out;
    for (int64_t i = 0; i < times; ++i)
      out += sequence.asString();
    return Value::string(out);
  }
  size_t size = std::max<size_t>(sequence.asList().size(), 1);
  if (times > 0 && static_cast<uint64_t>(times) > kMaxListSize / size)
    fail("the list grows beyond " + std::to_string(kMaxListSize) + " elements");
  List out;
  for (int64_t i = 0; i < times; ++i)
    out.insert(out.end(), sequence.asList().begin(), sequence.asList().end());
  return Value::list(std::move(out), sequence.isTuple());
}

bool contains(const Value &container, const Value &element) {
  switch (container.kind()) {
  case Value::Kind::Undefined:
    return false;
  case Value::Kind::String:
    if (!element.isString())
      fail(std::string("'in <string>' requires string as left operand, not ") +
           element.typeName());
    return container.asString().find(element.asString()) != std::string::npos;
  case Value::Kind::List:
    for (const Value &each : container.asList())
      if (equals(each, element))
        return true;
    return false;
  case Value::Kind::Dict:
    if ((element.isList() && !element.isTuple()) || element.isDict() ||
        element.isNamespace())
      fail(std::string("unhashable type: '") + element.typeName() + "'");
    return element.isString() && container.find(element.asString());
  default:
    fail(std::string("argument of type '") + container.typeName() +
         "' is not iterable");
  }
}

int64_t length(const Value &value) {
  switch (value.kind()) {
  case Value::Kind::Undefined:
    return 0;
  case Value::Kind::String:
    return static_cast<int64_t>(chars(value.asString()).size());
  case Value::Kind::List:
    return static_cast<int64_t>(value.asList().size());
  case Value::Kind::Dict:
    return static_cast<int64_t>(value.asDict().size());
  default:
    fail(std::string("object of type '") + value.typeName() + "' has no len()");
  }
}

// ---- JSON -----------------------------------------------------------------

void appendJsonString(std::string &out, const std::string &s) {
  out += '"';
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    default:
      if (u < 0x20) {
        char escape[8];
        std::snprintf(escape, sizeof(escape), "\\u%04x", u);
        out += escape;
      } else {
        out += c;
      }
    }
  }
  out += '"';
}

void appendJson(std::string &out, const Value &value, int indent, bool sortKeys,
                const std::string &itemSeparator,
                const std::string &keySeparator, int level) {
  if (out.size() > kMaxSize)
    fail("tojson's text grows beyond " + std::to_string(kMaxSize) + " bytes");
  auto newline = [&](int depth) {
    if (indent >= 0) {
      out += '\n';
      out.append(static_cast<size_t>(indent * depth), ' ');
    }
  };
  switch (value.kind()) {
  case Value::Kind::None:
    out += "null";
    return;
  case Value::Kind::Bool:
    out += value.asBool() ? "true" : "false";
    return;
  case Value::Kind::Int:
    out += std::to_string(value.asInt());
    return;
  case Value::Kind::Float: {
    double d = value.asDouble();
    out += std::isnan(d)   ? "NaN"
           : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity")
                           : floatRepr(d);
    return;
  }
  case Value::Kind::String:
    appendJsonString(out, value.asString());
    return;
  case Value::Kind::List: {
    if (value.asList().empty()) {
      out += "[]";
      return;
    }
    out += '[';
    bool first = true;
    for (const Value &each : value.asList()) {
      if (!first)
        out += itemSeparator;
      first = false;
      newline(level + 1);
      appendJson(out, each, indent, sortKeys, itemSeparator, keySeparator,
                 level + 1);
    }
    newline(level);
    out += ']';
    return;
  }
  case Value::Kind::Dict: {
    if (value.asDict().empty()) {
      out += "{}";
      return;
    }
    std::vector<const std::pair<std::string, Value> *> members;
    for (const auto &member : value.asDict())
      members.push_back(&member);
    if (sortKeys)
      std::sort(members.begin(), members.end(),
                [](auto *a, auto *b) { return a->first < b->first; });
    out += '{';
    bool first = true;
    for (const auto *member : members) {
      if (!first)
        out += itemSeparator;
      first = false;
      newline(level + 1);
      appendJsonString(out, member->first);
      out += keySeparator;
      appendJson(out, member->second, indent, sortKeys, itemSeparator,
                 keySeparator, level + 1);
    }
    newline(level);
    out += '}';
    return;
  }
  case Value::Kind::Undefined:
    fail("Object of type Undefined is not JSON serializable");
  default:
    fail(std::string("Object of type ") + value.typeName() +
         " is not JSON serializable");
  }
}

// ---- filters --------------------------------------------------------------

/// The key sort/unique/min/max compare: the item's `attribute` (a dotted
/// path) and, unless case sensitive, strings lowered.
Value sortKey(const Value &item, const Value *attribute, bool caseSensitive) {
  Value key = item;
  if (attribute && !attribute->isNone()) {
    std::string path = attribute->str();
    size_t start = 0;
    for (;;) {
      size_t dot = path.find('.', start);
      std::string part = path.substr(start, dot - start);
      bool digits = !part.empty() &&
                    std::all_of(part.begin(), part.end(),
                                [](char c) { return c >= '0' && c <= '9'; });
      int64_t number = 0;
      if (digits) {
        auto [end, error] =
            std::from_chars(part.data(), part.data() + part.size(), number);
        if (error != std::errc())
          fail("the attribute index '" + part + "' is too large");
      }
      key = digits ? getItem(key, Value::integer(number))
                   : getItem(key, Value::string(part));
      if (dot == std::string::npos)
        break;
      start = dot + 1;
    }
  }
  if (!caseSensitive && key.isString())
    key = Value::string(mapChars(key.asString(), lower));
  return key;
}

/// `items` in the order of `keys`, stable (equal keys keep their order, as
/// Python's sorted does, also with reverse).
List sortedBy(const List &items, const List &keys, bool reverse) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    bool before =
        reverse ? lessThan(keys[b], keys[a]) : lessThan(keys[a], keys[b]);
    bool after =
        reverse ? lessThan(keys[a], keys[b]) : lessThan(keys[b], keys[a]);
    return before || (!after && a < b);
  });
  List out;
  for (size_t i : order)
    out.push_back(items[i]);
  return out;
}

List selectOrReject(const Value &sequence, const Arguments &args, bool select,
                    bool byAttribute, const std::string &filter) {
  Arguments testArgs;
  size_t first = 0;
  std::string attribute;
  if (byAttribute) {
    if (args.positional.empty())
      fail(filter + "() missing the attribute argument");
    attribute = args.positional[0].str();
    first = 1;
  }
  std::string test;
  if (args.positional.size() > first) {
    test = requireString(args.positional[first], filter + "() test name");
    testArgs.positional.assign(args.positional.begin() +
                                   static_cast<long>(first) + 1,
                               args.positional.end());
  }
  testArgs.keywords = args.keywords;
  List out;
  if (!sequence.truthy()) // jinja2 iterates only `if value`
    return out;
  for (const Value &item : iterate(sequence)) {
    Value subject = byAttribute ? getAttribute(item, attribute) : item;
    bool passed =
        test.empty() ? subject.truthy() : applyTest(test, subject, testArgs);
    if (passed == select)
      out.push_back(item);
  }
  return out;
}

Value minOrMax(const Value &sequence, const Arguments &args, bool max,
               const std::string &name) {
  Parameters p(name, args, {"case_sensitive", "attribute"});
  List items = iterate(sequence);
  if (items.empty())
    return Value::undefined("no " + name + " item, sequence was empty");
  size_t best = 0;
  Value bestKey = sortKey(items[0], p.get(1), p.flag(0));
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = sortKey(items[i], p.get(1), p.flag(0));
    if (max ? lessThan(bestKey, key) : lessThan(key, bestKey)) {
      best = i;
      bestKey = key;
    }
  }
  return items[best];
}

Value toInt(const Value &value, const Value *fallback) {
  if (value.isUndefined())
    failUndefined(value);
  Value otherwise = fallback ? *fallback : Value::integer(0);
  if (value.isInt() || value.isBool())
    return Value::integer(value.asInt());
  if (value.isFloat()) {
    double d = value.asDouble();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18)
      return otherwise;
    return Value::integer(static_cast<int64_t>(d));
  }
  if (value.isString()) {
    std::string s = strip(value.asString(), nullptr, true, true);
    std::string digits;
    for (char c : s)
      if (c != '_')
        digits += c;
    char *end = nullptr;
    errno = 0;
    long long parsed = std::strtoll(digits.c_str(), &end, 10);
    if (!digits.empty() && *end == 0 && errno == 0)
      return Value::integer(parsed);
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == 0 && std::isfinite(d) && std::fabs(d) < 9.2e18)
      return Value::integer(static_cast<int64_t>(d));
  }
  return otherwise;
}

Value toFloat(const Value &value, const Value *fallback) {
  if (value.isUndefined())
    failUndefined(value);
  Value otherwise = fallback ? *fallback : Value::floating(0.0);
  if (value.isNumber())
    return Value::floating(value.asDouble());
  if (value.isString()) {
    std::string s = strip(value.asString(), nullptr, true, true);
    char *end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == 0)
      return Value::floating(d);
  }
  return otherwise;
}

std::string indent(const std::string &input, const Value *width, bool first,
                   bool blank) {
  int64_t spaces =
      width && !width->isString() ? requireInt(*width, "indent width") : 4;
  if (spaces > 1024)
    fail("indent width " + std::to_string(spaces) + " is larger than 1024");
  std::string indention =
      width && width->isString()
          ? width->asString()
          : std::string(static_cast<size_t>(std::max<int64_t>(0, spaces)), ' ');
  std::vector<std::string> lines = splitLines(input + "\n", false);
  std::string out;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i)
      out += (i ? "\n" + indention : "") + lines[i];
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i)
      out += "\n" + (lines[i].empty() ? "" : indention) + lines[i];
  }
  return first ? indention + out : out;
}

std::string jinjaTitle(const std::string &s) {
  // jinja2's do_title: split before runs of "-", whitespace and opening
  // brackets, capitalize each piece's first character, lower the rest.
  CodePoints cps = chars(s);
  auto isBreak = [](uint32_t cp) {
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' ||
           isPythonSpace(cp);
  };
  CodePoints out;
  size_t i = 0;
  while (i < cps.size()) {
    size_t start = i;
    bool breaking = isBreak(cps[i]);
    while (i < cps.size() && isBreak(cps[i]) == breaking)
      ++i;
    for (size_t k = start; k < i; ++k)
      out.push_back(breaking     ? cps[k]
                    : k == start ? upper(cps[k])
                                 : lower(cps[k]));
  }
  return text(out);
}

Value sliceList(const List &items, const Value &startValue,
                const Value &stopValue, const Value &stepValue, bool tuple) {
  auto optional = [](const Value &v, const char *what) -> const Value * {
    if (v.isUndefined() || v.isNone())
      return nullptr;
    if (!v.isInt() && !v.isBool())
      fail(std::string("slice ") + what + " indices must be integers or None");
    return &v;
  };
  const Value *startArg = optional(startValue, "start");
  const Value *stopArg = optional(stopValue, "stop");
  const Value *stepArg = optional(stepValue, "step");
  int64_t n = static_cast<int64_t>(items.size());
  int64_t step = stepArg ? stepArg->asInt() : 1;
  if (step == 0)
    fail("slice step cannot be zero");
  auto clamp = [&](const Value *v, int64_t fallback) {
    if (!v)
      return fallback;
    int64_t i = v->asInt();
    if (i < 0)
      i += n;
    if (step > 0)
      return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t start = clamp(startArg, step > 0 ? 0 : n - 1);
  int64_t stop = clamp(stopArg, step > 0 ? n : -1);
  List out;
  // (In 128 bits: a step near 2^63 must not wrap around.)
  for (__int128 i = start; step > 0 ? i < stop : i > stop; i += step)
    out.push_back(items[static_cast<size_t>(i)]);
  return Value::list(std::move(out), tuple);
}

std::string timeNow(const std::string &format) {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buffer[512];
  size_t n = std::strftime(buffer, sizeof(buffer), format.c_str(), &local);
  return std::string(buffer, n);
}

Value listFromStrings(const std::vector<std::string> &strings) {
  if (strings.size() > kMaxListSize)
    fail("more than " + std::to_string(kMaxListSize) + " lines");
  List out;
  for (const std::string &s : strings)
    out.push_back(Value::string(s));
  return Value::list(std::move(out));
}

bool isCallable(const Value &value) { return value.isFunction(); }

} // namespace

List iterate(const Value &value) {
  switch (value.kind()) {
  case Value::Kind::Undefined:
    return {};
  case Value::Kind::String: {
    List out;
    CodePoints cps = chars(value.asString());
    if (cps.size() > kMaxListSize)
      fail("a string of " + std::to_string(cps.size()) +
           " characters is too long to iterate (more than " +
           std::to_string(kMaxListSize) + ")");
    chargeWork(cps.size());
    for (uint32_t cp : cps)
      out.push_back(Value::string(text(CodePoints{cp})));
    return out;
  }
  case Value::Kind::List:
    chargeWork(value.asList().size());
    return value.asList();
  case Value::Kind::Dict: {
    chargeWork(value.asDict().size());
    List out;
    for (const auto &member : value.asDict())
      out.push_back(Value::string(member.first));
    return out;
  }
  default:
    fail(std::string("'") + value.typeName() + "' object is not iterable");
  }
}

std::string toJson(const Value &value, int indent, bool sortKeys,
                   const std::string &itemSeparator,
                   const std::string &keySeparator) {
  std::string out;
  appendJson(out, value, indent, sortKeys, itemSeparator, keySeparator, 0);
  return out;
}

Value unaryOperation(const std::string &op, const Value &a) {
  if (a.isUndefined())
    failUndefined(a);
  if (!a.isNumber())
    fail("bad operand type for unary " + op + ": '" + a.typeName() + "'");
  if (op == "+")
    return a.isFloat() ? a : Value::integer(a.asInt());
  if (a.isFloat())
    return Value::floating(-a.asDouble());
  return makeInt(-static_cast<__int128>(a.asInt()), "-");
}

Value binaryOperation(const std::string &op, const Value &a, const Value &b) {
  if (op == "==")
    return Value::boolean(equals(a, b));
  if (op == "!=")
    return Value::boolean(!equals(a, b));
  if (op == "<")
    return Value::boolean(lessThan(a, b));
  if (op == ">")
    return Value::boolean(lessThan(b, a));
  if (op == "<=")
    return Value::boolean(lessThan(a, b) || equals(a, b));
  if (op == ">=")
    return Value::boolean(lessThan(b, a) || equals(a, b));
  if (op == "in")
    return Value::boolean(contains(b, a));
  if (op == "not in")
    return Value::boolean(!contains(b, a));
  if (op == "~") {
    std::string out = a.str() + b.str();
    if (out.size() > kMaxSize)
      fail("the string grows beyond " + std::to_string(kMaxSize) + " bytes");
    return Value::string(std::move(out));
  }
  if (a.isUndefined())
    failUndefined(a);
  if (b.isUndefined())
    failUndefined(b);
  bool numbers = a.isNumber() && b.isNumber();
  bool anyFloat = a.isFloat() || b.isFloat();
  if (op == "+") {
    if (numbers)
      return anyFloat
                 ? Value::floating(a.asDouble() + b.asDouble())
                 : makeInt(static_cast<__int128>(a.asInt()) + b.asInt(), "+");
    if (a.isString() && b.isString()) {
      if (a.asString().size() + b.asString().size() > kMaxSize)
        fail("the string grows beyond " + std::to_string(kMaxSize) + " bytes");
      return Value::string(a.asString() + b.asString());
    }
    if (a.isList() && b.isList() && a.isTuple() == b.isTuple()) {
      List out = a.asList();
      out.insert(out.end(), b.asList().begin(), b.asList().end());
      if (out.size() > kMaxListSize)
        fail("the list grows beyond " + std::to_string(kMaxListSize) +
             " elements");
      return Value::list(std::move(out), a.isTuple());
    }
    if (a.isString())
      fail(std::string("can only concatenate str (not \"") + b.typeName() +
           "\") to str");
    if (a.isList() && !a.isTuple())
      fail(std::string("can only concatenate list (not \"") + b.typeName() +
           "\") to list");
    unsupportedOperands(op, a, b);
  }
  if (op == "*") {
    if (numbers)
      return anyFloat
                 ? Value::floating(a.asDouble() * b.asDouble())
                 : makeInt(static_cast<__int128>(a.asInt()) * b.asInt(), "*");
    if ((a.isString() || a.isList()) && (b.isInt() || b.isBool()))
      return repeat(a, b.asInt());
    if ((b.isString() || b.isList()) && (a.isInt() || a.isBool()))
      return repeat(b, a.asInt());
    unsupportedOperands(op, a, b);
  }
  if (!numbers) {
    if (op == "%" && a.isString())
      fail("printf-style string formatting ('%') is not supported in chat "
           "templates by xfmr");
    unsupportedOperands(op, a, b);
  }
  if (op == "-")
    return anyFloat
               ? Value::floating(a.asDouble() - b.asDouble())
               : makeInt(static_cast<__int128>(a.asInt()) - b.asInt(), "-");
  if (op == "/") {
    if (b.asDouble() == 0)
      fail("division by zero");
    return Value::floating(a.asDouble() / b.asDouble());
  }
  if (op == "//" || op == "%") {
    if (anyFloat) {
      double x = a.asDouble(), y = b.asDouble();
      if (y == 0)
        fail("float divmod()");
      double mod = std::fmod(x, y);
      if (mod != 0 && ((y < 0) != (mod < 0)))
        mod += y;
      else if (mod == 0)
        mod = std::copysign(0.0, y); // Python's sign of a zero remainder
      if (op == "%")
        return Value::floating(mod);
      return Value::floating(std::floor((x - mod) / y + 0.5));
    }
    int64_t x = a.asInt(), y = b.asInt();
    if (y == 0)
      fail("integer division or modulo by zero");
    if (x == INT64_MIN && y == -1)
      fail("integer overflow in '//'");
    int64_t quotient = x / y, remainder = x % y;
    if (remainder != 0 && ((remainder < 0) != (y < 0))) {
      --quotient;
      remainder += y;
    }
    return Value::integer(op == "//" ? quotient : remainder);
  }
  if (op == "**") {
    if (!anyFloat && b.asInt() >= 0) {
      __int128 result = 1;
      __int128 base = a.asInt();
      for (int64_t e = b.asInt(); e > 0; --e) {
        result *= base;
        if (result > INT64_MAX || result < INT64_MIN)
          return makeInt(result, "**");
        if (result == 0 || result == 1)
          break;
      }
      if (result == 1 && base == -1 && b.asInt() % 2 == 1)
        result = -1;
      return makeInt(result, "**");
    }
    if (a.asDouble() == 0 && b.asDouble() < 0)
      fail("0.0 cannot be raised to a negative power");
    double result = std::pow(a.asDouble(), b.asDouble());
    if (std::isinf(result) && std::isfinite(a.asDouble()) &&
        std::isfinite(b.asDouble()))
      fail("(34, 'Numerical result out of range')");
    return Value::floating(result);
  }
  fail("unknown operator '" + op + "'");
}

Value getAttribute(const Value &object, const std::string &name) {
  static const char *const stringMethods[] = {
      "strip",      "lstrip",   "rstrip",  "split",   "rsplit", "splitlines",
      "startswith", "endswith", "upper",   "lower",   "title",  "capitalize",
      "replace",    "find",     "rfind",   "count",   "join",   "isdigit",
      "isalpha",    "isalnum",  "isspace", "islower", "isupper"};
  static const char *const dictMethods[] = {"items", "keys", "values", "get"};
  static const char *const listMethods[] = {"count", "index"};
  switch (object.kind()) {
  case Value::Kind::Undefined:
    failUndefined(object);
  case Value::Kind::String:
    for (const char *method : stringMethods)
      if (name == method)
        return Value::function("str." + name, object);
    break;
  case Value::Kind::Dict:
    for (const char *method : dictMethods)
      if (name == method)
        return Value::function("dict." + name, object);
    if (const Value *member = object.find(name))
      return *member;
    break;
  case Value::Kind::Namespace:
    if (const Value *member = object.find(name))
      return *member;
    break;
  case Value::Kind::List:
    for (const char *method : listMethods)
      if (name == method)
        return Value::function("list." + name, object);
    break;
  default:
    break;
  }
  return Value::undefined("'" + std::string(object.typeName()) +
                          " object' has no attribute '" + name + "'");
}

Value getItem(const Value &object, const Value &key) {
  if (object.isUndefined())
    failUndefined(object);
  if (object.isDict() && key.isString()) {
    if (const Value *member = object.find(key.asString()))
      return *member;
  } else if ((object.isList() || object.isString()) &&
             (key.isInt() || key.isBool())) {
    int64_t i = key.asInt();
    if (object.isList()) {
      int64_t n = static_cast<int64_t>(object.asList().size());
      if (i < 0)
        i += n;
      if (i >= 0 && i < n)
        return object.asList()[static_cast<size_t>(i)];
    } else {
      CodePoints cps = chars(object.asString());
      int64_t n = static_cast<int64_t>(cps.size());
      if (i < 0)
        i += n;
      if (i >= 0 && i < n)
        return Value::string(text(CodePoints{cps[static_cast<size_t>(i)]}));
    }
  } else if (key.isString() && !object.isDict()) {
    return getAttribute(object, key.asString());
  }
  return Value::undefined("'" + std::string(object.typeName()) +
                          " object' has no attribute " + key.repr());
}

Value getSlice(const Value &object, const Value &start, const Value &stop,
               const Value &step) {
  if (object.isUndefined())
    failUndefined(object);
  if (object.isList())
    return sliceList(object.asList(), start, stop, step, object.isTuple());
  if (object.isString()) {
    Value parts = sliceList(iterate(object), start, stop, step, false);
    std::string out;
    for (const Value &part : parts.asList())
      out += part.asString();
    return Value::string(std::move(out));
  }
  // Jinja slices bypass its forgiving getitem: Python's TypeError surfaces.
  fail("'" + std::string(object.typeName()) + "' object is not subscriptable");
}

Value globalFunction(const std::string &name) {
  static const char *const globals[] = {"range", "namespace", "dict",
                                        "raise_exception", "strftime_now"};
  for (const char *global : globals)
    if (name == global)
      return Value::function(name);
  return Value::undefined();
}

Value callFunction(const Value &function, const Arguments &args) {
  if (function.isUndefined())
    failUndefined(function);
  if (!function.isFunction())
    fail(std::string("'") + function.typeName() + "' object is not callable");
  const std::string &name = function.name();
  const Value &self = function.boundSelf();

  if (name == "range") {
    if (!args.keywords.empty())
      fail("range() takes no keyword arguments");
    if (args.positional.empty() || args.positional.size() > 3)
      fail("range expected 1 to 3 arguments, got " +
           std::to_string(args.positional.size()));
    int64_t start = 0, stop, step = 1;
    if (args.positional.size() == 1) {
      stop = requireInt(args.positional[0], "range() argument");
    } else {
      start = requireInt(args.positional[0], "range() argument");
      stop = requireInt(args.positional[1], "range() argument");
      if (args.positional.size() == 3)
        step = requireInt(args.positional[2], "range() argument");
    }
    if (step == 0)
      fail("range() arg 3 must not be zero");
    List out;
    for (__int128 i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (out.size() >= kMaxListSize)
        fail("range() is longer than " + std::to_string(kMaxListSize) +
             " elements");
      out.push_back(Value::integer(static_cast<int64_t>(i)));
    }
    return Value::list(std::move(out));
  }
  if (name == "namespace" || name == "dict") {
    Dict members;
    for (const Value &positional : args.positional) {
      if (!positional.isDict())
        fail(name + "() takes a dict or keyword arguments");
      for (const auto &member : positional.asDict())
        members.push_back(member);
    }
    for (const auto &keyword : args.keywords) {
      auto it =
          std::find_if(members.begin(), members.end(),
                       [&](const auto &m) { return m.first == keyword.first; });
      if (it != members.end())
        it->second = keyword.second;
      else
        members.push_back(keyword);
    }
    return name == "dict" ? Value::dict(std::move(members))
                          : Value::nameSpace(std::move(members));
  }
  if (name == "raise_exception") {
    Parameters p(name, args, {"message"});
    fail("raise_exception: " + p.require(0, name).str());
  }
  if (name == "strftime_now") {
    Parameters p(name, args, {"format"});
    return Value::string(timeNow(requireString(p.require(0, name), "format")));
  }
  if (name == "loop.cycle") {
    if (args.positional.empty())
      fail("no items for cycling given");
    size_t index = static_cast<size_t>(self.asInt());
    return args.positional[index % args.positional.size()];
  }

  // Methods of dicts.
  if (name == "dict.items" || name == "dict.keys" || name == "dict.values") {
    Parameters p(name.substr(5), args, {});
    List out;
    for (const auto &[key, value] : self.asDict()) {
      if (name == "dict.items")
        out.push_back(Value::list({Value::string(key), value}, true));
      else
        out.push_back(name == "dict.keys" ? Value::string(key) : value);
    }
    return Value::list(std::move(out));
  }
  if (name == "dict.get") {
    Parameters p("get", args, {"key", "default"});
    const Value &key = p.require(0, "get");
    if (key.isString())
      if (const Value *member = self.find(key.asString()))
        return *member;
    return p.get(1) ? *p.get(1) : Value::none();
  }

  // Methods of lists and tuples.
  if (name == "list.count" || name == "list.index") {
    Parameters p(name.substr(5), args, {"value"});
    const Value &needle = p.require(0, name.substr(5));
    const List &items = self.asList();
    int64_t count = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!equals(items[i], needle))
        continue;
      if (name == "list.index")
        return Value::integer(static_cast<int64_t>(i));
      ++count;
    }
    if (name == "list.index")
      fail(needle.repr() + " is not in list");
    return Value::integer(count);
  }

  // Methods of strings.
  const std::string &s = self.asString();
  std::string method = name.substr(4);
  if (method == "strip" || method == "lstrip" || method == "rstrip") {
    Parameters p(method, args, {"chars"});
    return Value::string(
        strip(s, p.get(0), method != "rstrip", method != "lstrip"));
  }
  if (method == "split" || method == "rsplit") {
    Parameters p(method, args, {"sep", "maxsplit"});
    int64_t maxSplit = p.get(1) ? requireInt(*p.get(1), "maxsplit") : -1;
    return Value::list(split(s, p.get(0), maxSplit, method == "rsplit"));
  }
  if (method == "splitlines") {
    Parameters p(method, args, {"keepends"});
    return listFromStrings(splitLines(s, p.flag(0)));
  }
  if (method == "startswith" || method == "endswith") {
    Parameters p(method, args, {"prefix"});
    return Value::boolean(
        startsOrEndsWith(s, p.require(0, method), method == "startswith"));
  }
  if (method == "upper" || method == "lower" || method == "title" ||
      method == "capitalize") {
    Parameters p(method, args, {});
    if (method == "upper")
      return Value::string(mapChars(s, upper));
    if (method == "lower")
      return Value::string(mapChars(s, lower));
    return Value::string(method == "title" ? pythonTitle(s) : capitalize(s));
  }
  if (method == "replace") {
    Parameters p(method, args, {"old", "new", "count"});
    return Value::string(
        replace(s, requireString(p.require(0, method), "replace() argument 1"),
                requireString(p.require(1, method), "replace() argument 2"),
                p.get(2) ? requireInt(*p.get(2), "count") : -1));
  }
  if (method == "find" || method == "rfind" || method == "count") {
    Parameters p(method, args, {"sub"});
    const std::string &sub =
        requireString(p.require(0, method), method + "() argument");
    if (method == "count") {
      if (sub.empty())
        return Value::integer(static_cast<int64_t>(chars(s).size()) + 1);
      int64_t n = 0;
      for (size_t at = s.find(sub); at != std::string::npos;
           at = s.find(sub, at + sub.size()))
        ++n;
      return Value::integer(n);
    }
    size_t at = method == "find" ? s.find(sub) : s.rfind(sub);
    return Value::integer(at == std::string::npos ? -1 : charIndex(s, at));
  }
  if (method == "join") {
    Parameters p(method, args, {"iterable"});
    std::string out;
    bool first = true;
    for (const Value &item : iterate(p.require(0, method))) {
      if (!item.isString())
        fail(std::string("sequence item: expected str instance, ") +
             item.typeName() + " found");
      if (!first)
        out += s;
      first = false;
      out += item.asString();
      if (out.size() > kMaxSize)
        fail("the string grows beyond " + std::to_string(kMaxSize) + " bytes");
    }
    return Value::string(std::move(out));
  }
  if (method.compare(0, 2, "is") == 0) {
    Parameters p(method, args, {});
    CodePoints cps = chars(s);
    auto all = [&](auto predicate) {
      return Value::boolean(!cps.empty() &&
                            std::all_of(cps.begin(), cps.end(), predicate));
    };
    auto category = [](uint32_t cp) {
      return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    };
    auto isAlpha = [&](uint32_t cp) {
      auto c = category(cp);
      return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
    };
    auto isDigit = [&](uint32_t cp) {
      return category(cp) == UTF8PROC_CATEGORY_ND;
    };
    if (method == "isdigit")
      return all(isDigit);
    if (method == "isalpha")
      return all(isAlpha);
    if (method == "isalnum")
      return all([&](uint32_t cp) { return isAlpha(cp) || isDigit(cp); });
    if (method == "isspace")
      return all(isPythonSpace);
    bool anyCased = std::any_of(cps.begin(), cps.end(), isCased);
    if (method == "islower")
      return Value::boolean(
          anyCased && std::none_of(cps.begin(), cps.end(), [&](uint32_t cp) {
            auto c = category(cp);
            return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT;
          }));
    return Value::boolean(
        anyCased && std::none_of(cps.begin(), cps.end(), [&](uint32_t cp) {
          auto c = category(cp);
          return c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
        }));
  }
  fail("'" + name + "' cannot be called");
}

Value applyFilter(const std::string &name, const Value &value,
                  const Arguments &args) {
  auto string = [&]() -> std::string { return value.str(); };
  if (name == "tojson") {
    Parameters p(name, args,
                 {"ensure_ascii", "indent", "separators", "sort_keys"});
    if (p.flag(0))
      fail("tojson(ensure_ascii=True) is not supported in chat templates by "
           "xfmr");
    int indent = -1;
    if (p.get(1) && !p.get(1)->isNone()) {
      if (p.get(1)->isString())
        fail("tojson() with a string indent is not supported in chat "
             "templates by xfmr");
      indent = static_cast<int>(
          std::clamp<int64_t>(requireInt(*p.get(1), "indent"), 0, 64));
    }
    std::string itemSeparator = indent >= 0 ? "," : ", ", keySeparator = ": ";
    if (p.get(2) && !p.get(2)->isNone()) {
      const Value &separators = *p.get(2);
      if (!separators.isList() || separators.asList().size() != 2)
        fail("tojson() separators must be a pair of strings");
      itemSeparator = requireString(separators.asList()[0], "separator");
      keySeparator = requireString(separators.asList()[1], "separator");
    }
    return Value::string(
        toJson(value, indent, p.flag(3), itemSeparator, keySeparator));
  }
  if (name == "trim") {
    Parameters p(name, args, {"chars"});
    return Value::string(strip(string(), p.get(0), true, true));
  }
  if (name == "length" || name == "count") {
    Parameters p(name, args, {});
    return Value::integer(length(value));
  }
  if (name == "string") {
    Parameters p(name, args, {});
    return Value::string(string());
  }
  if (name == "upper" || name == "lower" || name == "capitalize" ||
      name == "title") {
    Parameters p(name, args, {});
    if (name == "upper")
      return Value::string(mapChars(string(), upper));
    if (name == "lower")
      return Value::string(mapChars(string(), lower));
    return Value::string(name == "title" ? jinjaTitle(string())
                                         : capitalize(string()));
  }
  if (name == "default" || name == "d") {
    Parameters p(name, args, {"default_value", "boolean"});
    bool useDefault = value.isUndefined() || (p.flag(1) && !value.truthy());
    if (!useDefault)
      return value;
    return p.get(0) ? *p.get(0) : Value::string("");
  }
  if (name == "replace") {
    Parameters p(name, args, {"old", "new", "count"});
    return Value::string(replace(
        string(), p.require(0, name).str(), p.require(1, name).str(),
        p.get(2) && !p.get(2)->isNone() ? requireInt(*p.get(2), "count") : -1));
  }
  if (name == "join") {
    Parameters p(name, args, {"d", "attribute"});
    std::string separator = p.get(0) ? p.get(0)->str() : "";
    std::string out;
    bool first = true;
    for (const Value &item : iterate(value)) {
      if (!first)
        out += separator;
      first = false;
      out += (p.get(1) ? getAttribute(item, p.get(1)->str()) : item).str();
      if (out.size() > kMaxSize)
        fail("the string grows beyond " + std::to_string(kMaxSize) + " bytes");
    }
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    Parameters p(name, args, {});
    List items = iterate(value);
    if (items.empty())
      return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") {
    Parameters p(name, args, {});
    return Value::list(iterate(value));
  }
  if (name == "reverse") {
    Parameters p(name, args, {});
    if (value.isString()) {
      CodePoints cps = chars(value.asString());
      std::reverse(cps.begin(), cps.end());
      return Value::string(text(cps));
    }
    List items = iterate(value);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "sort") {
    Parameters p(name, args, {"reverse", "case_sensitive", "attribute"});
    List items = iterate(value);
    bool reverse = p.flag(0), caseSensitive = p.flag(1);
    List keys;
    for (const Value &item : items)
      keys.push_back(sortKey(item, p.get(2), caseSensitive));
    return Value::list(sortedBy(items, keys, reverse));
  }
  if (name == "unique") {
    Parameters p(name, args, {"case_sensitive", "attribute"});
    List out, seen;
    for (const Value &item : iterate(value)) {
      Value key = sortKey(item, p.get(1), p.flag(0));
      if ((key.isList() && !key.isTuple()) || key.isDict() || key.isNamespace())
        fail(std::string("unhashable type: '") + key.typeName() + "'");
      chargeWork(seen.size() / 16 + 1);
      if (std::none_of(seen.begin(), seen.end(),
                       [&](const Value &s) { return equals(s, key); })) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return Value::list(std::move(out));
  }
  if (name == "min" || name == "max")
    return minOrMax(value, args, name == "max", name);
  if (name == "sum") {
    Parameters p(name, args, {"attribute", "start"});
    Value total = p.get(1) ? *p.get(1) : Value::integer(0);
    for (const Value &item : iterate(value))
      total = binaryOperation(
          "+", total, p.get(0) ? getAttribute(item, p.get(0)->str()) : item);
    return total;
  }
  if (name == "int") {
    Parameters p(name, args, {"default"});
    return toInt(value, p.get(0));
  }
  if (name == "float") {
    Parameters p(name, args, {"default"});
    return toFloat(value, p.get(0));
  }
  if (name == "abs") {
    Parameters p(name, args, {});
    if (!value.isNumber())
      fail(std::string("bad operand type for abs(): '") + value.typeName() +
           "'");
    if (value.isFloat())
      return Value::floating(std::fabs(value.asDouble()));
    return value.asInt() < 0 ? unaryOperation("-", value)
                             : Value::integer(value.asInt());
  }
  if (name == "round") {
    Parameters p(name, args, {"precision", "method"});
    int64_t precision = p.get(0) ? requireInt(*p.get(0), "precision") : 0;
    std::string method = p.get(1) ? p.get(1)->str() : "common";
    if (value.isUndefined())
      failUndefined(value);
    if (!value.isNumber())
      fail(std::string("type ") + value.typeName() +
           " doesn't define __round__ method");
    if (method != "common" && method != "ceil" && method != "floor")
      fail("method must be common, ceil or floor");
    // Python's round() of an int (or bool) is that int.
    if (method == "common" && !value.isFloat() && precision >= 0)
      return Value::integer(value.asInt());
    double x = value.asDouble();
    if (method == "common" && precision >= 0 && precision <= 300 &&
        std::isfinite(x)) {
      // Python's round(): the exact binary value rounded half to even at
      // `precision` decimals, which printf's correctly rounded %f also does.
      char buffer[400];
      std::snprintf(buffer, sizeof(buffer), "%.*f", static_cast<int>(precision),
                    x);
      return Value::floating(std::strtod(buffer, nullptr));
    }
    double scale = std::pow(10.0, static_cast<double>(precision));
    double scaled = x * scale;
    double rounded = method == "common" ? std::nearbyint(scaled)
                     : method == "ceil" ? std::ceil(scaled)
                                        : std::floor(scaled);
    return Value::floating(rounded / scale);
  }
  if (name == "items") {
    Parameters p(name, args, {});
    if (value.isUndefined())
      return Value::list({});
    if (!value.isDict())
      fail("can only get item pairs from a mapping");
    return callFunction(Value::function("dict.items", value), Arguments{});
  }
  if (name == "dictsort") {
    Parameters p(name, args, {"case_sensitive", "by", "reverse"});
    if (!value.isDict())
      fail("dictsort() needs a mapping");
    bool byValue = p.get(1) && p.get(1)->str() == "value";
    List items = callFunction(Value::function("dict.items", value), Arguments{})
                     .asList();
    List keys;
    for (const Value &item : items)
      keys.push_back(
          sortKey(item.asList()[byValue ? 1 : 0], nullptr, p.flag(0)));
    return Value::list(sortedBy(items, keys, p.flag(2)));
  }
  if (name == "map") {
    List out;
    if (!value.truthy()) // jinja2 iterates only `if value`
      return Value::list(std::move(out));
    bool byAttribute = args.positional.empty();
    if (byAttribute) {
      Parameters p(name, args, {"attribute", "default"});
      const Value &attribute = p.require(0, name);
      for (const Value &item : iterate(value)) {
        Value v = sortKey(item, &attribute, true);
        out.push_back(v.isUndefined() && p.get(1) ? *p.get(1) : v);
      }
    } else {
      std::string filter =
          requireString(args.positional[0], "map() filter name");
      Arguments rest;
      rest.positional.assign(args.positional.begin() + 1,
                             args.positional.end());
      rest.keywords = args.keywords;
      for (const Value &item : iterate(value))
        out.push_back(applyFilter(filter, item, rest));
    }
    return Value::list(std::move(out));
  }
  if (name == "select" || name == "reject")
    return Value::list(
        selectOrReject(value, args, name == "select", false, name));
  if (name == "selectattr" || name == "rejectattr")
    return Value::list(
        selectOrReject(value, args, name == "selectattr", true, name));
  if (name == "indent") {
    Parameters p(name, args, {"width", "first", "blank"});
    // jinja2 appends "\n" to the value itself: only strings work.
    return Value::string(indent(requireString(value, "indent() value"),
                                p.get(0), p.flag(1), p.flag(2)));
  }
  if (name == "safe") {
    Parameters p(name, args, {});
    return value;
  }
  if (name == "e" || name == "escape") {
    Parameters p(name, args, {});
    return Value::string(htmlEscape(string()));
  }
  if (name == "attr") {
    Parameters p(name, args, {"name"});
    return getAttribute(value, p.require(0, name).str());
  }
  fail("no filter named '" + name +
       "' (xfmr's chat templates have: abs, attr, capitalize, count, "
       "default, dictsort, escape, first, float, indent, int, items, join, "
       "last, length, list, lower, map, max, min, reject, rejectattr, "
       "replace, reverse, round, safe, select, selectattr, sort, string, "
       "sum, title, tojson, trim, unique, upper)");
}

bool applyTest(const std::string &name, const Value &value,
               const Arguments &args) {
  auto other = [&]() -> const Value & {
    Parameters p(name, args, {"other"});
    return p.require(0, name);
  };
  auto none = [&]() { Parameters p(name, args, {}); };
  if (name == "defined")
    return none(), !value.isUndefined();
  if (name == "undefined")
    return none(), value.isUndefined();
  if (name == "none")
    return none(), value.isNone();
  if (name == "boolean")
    return none(), value.isBool();
  if (name == "true")
    return none(), value.isBool() && value.asBool();
  if (name == "false")
    return none(), value.isBool() && !value.asBool();
  if (name == "integer")
    return none(), value.isInt();
  if (name == "float")
    return none(), value.isFloat();
  if (name == "number")
    return none(), value.isNumber();
  if (name == "string")
    return none(), value.isString();
  if (name == "mapping")
    return none(), value.isDict();
  if (name == "iterable")
    return none(), value.isString() || value.isList() || value.isDict() ||
                       value.isUndefined();
  if (name == "sequence") // (undefined has len() and [], as jinja2's does)
    return none(), value.isString() || value.isList() || value.isDict() ||
                       value.isUndefined();
  if (name == "callable") // (an undefined value is callable: it raises)
    return none(), isCallable(value) || value.isUndefined();
  if (name == "lower" || name == "upper") {
    none();
    // jinja2: str(value).islower()
    Value method = Value::function("str.is" + name, Value::string(value.str()));
    return callFunction(method, Arguments{}).asBool();
  }
  if (name == "escaped")
    return none(), false;
  if (name == "sameas") {
    const Value &o = other();
    if (value.isNone() || value.isBool() || o.isNone() || o.isBool())
      return value.kind() == o.kind() && equals(value, o);
    if (value.kind() != o.kind())
      return false;
    if (value.isNamespace() || value.isDict())
      return &value.asDict() == &o.asDict();
    if (value.isList())
      return &value.asList() == &o.asList();
    return false;
  }
  if (name == "eq" || name == "equalto" || name == "==")
    return equals(value, other());
  if (name == "ne" || name == "!=")
    return !equals(value, other());
  if (name == "lt" || name == "lessthan" || name == "<")
    return lessThan(value, other());
  if (name == "le" || name == "<=")
    return lessThan(value, other()) || equals(value, other());
  if (name == "gt" || name == "greaterthan" || name == ">")
    return lessThan(other(), value);
  if (name == "ge" || name == ">=")
    return lessThan(other(), value) || equals(value, other());
  if (name == "in")
    return contains(other(), value);
  if (name == "divisibleby") {
    const Value &o = other();
    Value rest = binaryOperation("%", value, o);
    return rest.asDouble() == 0;
  }
  if (name == "even" || name == "odd") {
    none();
    Value rest = binaryOperation("%", value, Value::integer(2));
    return equals(rest, Value::integer(name == "even" ? 0 : 1));
  }
  fail("no test named '" + name + "'");
}

} // namespace xfmr::runtime::jinja
