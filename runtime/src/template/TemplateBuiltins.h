//===- TemplateBuiltins.h - Jinja's operators, filters, tests ---*- C++ -*-===//
//
// What a chat template can do to values: Python's operators, attribute and
// item access (Jinja's getattr/getitem rules, where a missing member is
// undefined), the methods of str/dict, Jinja's built-in filters and tests,
// and the globals Hugging Face gives templates (raise_exception,
// strftime_now, and `tojson` with json.dumps's arguments). Anything else is
// an `Error` naming it.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TEMPLATE_TEMPLATEBUILTINS_H
#define XFMR_RUNTIME_TEMPLATE_TEMPLATEBUILTINS_H

#include "template/TemplateValue.h"

#include <string>
#include <utility>
#include <vector>

namespace xfmr::runtime::jinja {

struct Arguments {
  List positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

/// `a op b` for +, -, *, /, //, %, **, ~, ==, !=, <, <=, >, >=, in, not in.
Value binaryOperation(const std::string &op, const Value &a, const Value &b);
/// `-a` and `+a`.
Value unaryOperation(const std::string &op, const Value &a);
/// `object.name`: a method or, failing that, the item `name`; else undefined.
Value getAttribute(const Value &object, const std::string &name);
/// `object[key]`: the item or, for a string key, the attribute; else
/// undefined.
Value getItem(const Value &object, const Value &key);
/// `object[start:stop:step]`, parts undefined where omitted.
Value getSlice(const Value &object, const Value &start, const Value &stop,
               const Value &step);
/// Calls a global function or bound method.
Value callFunction(const Value &function, const Arguments &args);
/// `operand | name(args)`.
Value applyFilter(const std::string &name, const Value &operand,
                  const Arguments &args);
/// `operand is name(args)`.
bool applyTest(const std::string &name, const Value &operand,
               const Arguments &args);
/// The elements `for x in value` visits (keys of a dict, characters of a
/// string, nothing for undefined).
List iterate(const Value &value);
/// The globals every template sees: range, namespace, dict,
/// raise_exception, strftime_now.
Value globalFunction(const std::string &name);

/// json.dumps(value, ensure_ascii=False, indent, separators, sort_keys), as
/// Hugging Face's `tojson` filter calls it.
std::string toJson(const Value &value, int indent, bool sortKeys,
                   const std::string &itemSeparator,
                   const std::string &keySeparator);

} // namespace xfmr::runtime::jinja

#endif // XFMR_RUNTIME_TEMPLATE_TEMPLATEBUILTINS_H
