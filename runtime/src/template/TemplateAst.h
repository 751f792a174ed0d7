//===- TemplateAst.h - the parsed form of a Jinja template ------*- C++ -*-===//
//
// Expressions and statements of the Jinja subset chat templates use. Each
// node keeps its source line for error messages.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_TEMPLATE_TEMPLATEAST_H
#define XFMR_RUNTIME_TEMPLATE_TEMPLATEAST_H

#include "template/TemplateValue.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace xfmr::runtime::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,   // `value`
    Name,      // `name`
    List,      // `[args...]`, or a tuple when `tuple`
    Dict,      // `{kwargs...}` (string keys)
    Attribute, // args[0].name
    Item,      // args[0][args[1]]
    Slice,     // args[0][args[1]:args[2]:args[3]] (null parts omitted)
    Call,      // args[0](args[1...], kwargs)
    Filter,    // args[0] | name(args[1...], kwargs)
    Test,      // args[0] is [not] name(args[1...])
    Unary,     // name: "-", "+", "not"
    Binary,    // name: "or", "and", "+", "==", "in", "not in", ...
    Condition  // args[1] if args[0] else args[2] (args[2] null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;
  bool tuple = false;
};

struct Node {
  enum class Kind {
    Text,     // `text`
    Output,   // {{ expr }}
    If,       // if expr: body, else: orElse (an elif is an If in orElse)
    For,      // for targets in expr [if filter]: body, else: orElse
    Set,      // set targets = expr, or set targets[0].attribute = expr
    SetBlock, // set targets[0] %}body{% endset
    Break,
    Continue,
    Block, // a body rendered as is ({% generation %}: Hugging Face's marker)
    Macro  // macro attribute(targets = parameters, kwargs' values = defaults)

  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::string> targets;
  std::string attribute;
  /// Macro: each parameter's default (null: none).
  std::vector<ExprPtr> defaults;
  std::vector<Node> body;
  std::vector<Node> orElse;
};

} // namespace xfmr::runtime::jinja

#endif // XFMR_RUNTIME_TEMPLATE_TEMPLATEAST_H
