//===- TemplateParser.cpp - tokens to the template's statements -----------===//
//
// Recursive descent in the shape of jinja2/parser.py, so precedence matches:
// conditional < or < and < not < comparisons < + - < ~ < * / // % < ** <
// unary - + < filters and tests < postfix (attribute, item, call).
//
//===----------------------------------------------------------------------===//

#include "template/TemplateParser.h"

#include "xfmr/runtime/Error.h"

#include <set>

namespace xfmr::runtime::jinja {

namespace {

/// Nesting beyond this is refused rather than overflowing the stack.
constexpr int kMaxDepth = 100;

class Parser {
public:
  explicit Parser(const std::vector<Token> &tokens) : tokens_(tokens) {}

  std::vector<Node> parseAll() {
    std::string end;
    std::vector<Node> body = parseBody({}, end);
    return body;
  }

private:
  using TK = Token::Kind;

  const Token &peek(size_t ahead = 0) const {
    size_t i = pos_ + ahead;
    return i < tokens_.size() ? tokens_[i] : tokens_.back();
  }
  const Token &next() {
    const Token &t = peek();
    if (pos_ < tokens_.size() - 1)
      ++pos_;
    return t;
  }
  bool isOp(const char *op, size_t ahead = 0) const {
    return peek(ahead).kind == TK::Operator && peek(ahead).text == op;
  }
  bool isName(const char *name, size_t ahead = 0) const {
    return peek(ahead).kind == TK::Name && peek(ahead).text == name;
  }
  bool acceptOp(const char *op) {
    if (!isOp(op))
      return false;
    next();
    return true;
  }
  bool acceptName(const char *name) {
    if (!isName(name))
      return false;
    next();
    return true;
  }

  static std::string describe(const Token &t) {
    switch (t.kind) {
    case TK::Text:
      return "text";
    case TK::VariableBegin:
      return "'{{'";
    case TK::VariableEnd:
      return "end of print statement";
    case TK::BlockBegin:
      return "'{%'";
    case TK::BlockEnd:
      return "end of statement block";
    case TK::Name:
      return "'" + t.text + "'";
    case TK::String:
      return "string";
    case TK::Integer:
    case TK::Float:
      return "number";
    case TK::Operator:
      return "'" + t.text + "'";
    case TK::End:
      return "end of template";
    }
    return "token";
  }

  [[noreturn]] void fail(const std::string &message, int line = 0) const {
    throw Error("line " + std::to_string(line ? line : peek().line) + ": " +
                message);
  }
  [[noreturn]] void unexpected(const std::string &expected) const {
    fail("expected " + expected + ", got " + describe(peek()));
  }
  void expectOp(const char *op) {
    if (!acceptOp(op))
      unexpected(std::string("'") + op + "'");
  }
  void expectBlockEnd() {
    if (peek().kind != TK::BlockEnd)
      unexpected("end of statement block");
    next();
  }
  std::string expectName() {
    if (peek().kind != TK::Name)
      unexpected("a name");
    return next().text;
  }

  struct DepthGuard {
    explicit DepthGuard(Parser &p) : parser(p) {
      if (++parser.depth_ > kMaxDepth)
        parser.fail("the template nests deeper than " +
                    std::to_string(kMaxDepth) + " levels");
    }
    ~DepthGuard() { --parser.depth_; }
    Parser &parser;
  };

  /// Operator chains (`a + b + c`, `x.y.z`, `v|f|g`) build trees as deep as
  /// they are long; each link counts as a level, so evaluating and freeing
  /// the tree cannot overflow the stack either.
  void deeper() {
    if (++depth_ > kMaxDepth)
      fail("the template nests deeper than " + std::to_string(kMaxDepth) +
           " levels");
  }

  static ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---- statements -------------------------------------------------------

  /// Statements up to a `{% name %}` whose name is in `ends` (consumed up to
  /// the name; `end` receives it) or the end of the template when `ends` is
  /// empty.
  std::vector<Node> parseBody(const std::set<std::string> &ends,
                              std::string &end) {
    DepthGuard guard(*this);
    std::vector<Node> body;
    for (;;) {
      const Token &t = peek();
      if (t.kind == TK::End) {
        if (!ends.empty())
          fail("unexpected end of template, expected '" + *ends.begin() + "'");
        return body;
      }
      if (t.kind == TK::Text) {
        Node node;
        node.kind = Node::Kind::Text;
        node.line = t.line;
        node.text = next().text;
        body.push_back(std::move(node));
        continue;
      }
      if (t.kind == TK::VariableBegin) {
        next();
        Node node;
        node.kind = Node::Kind::Output;
        node.line = t.line;
        node.expr = parseTuple(true);
        if (peek().kind != TK::VariableEnd)
          unexpected("end of print statement");
        next();
        body.push_back(std::move(node));
        continue;
      }
      if (t.kind != TK::BlockBegin)
        unexpected("a statement");
      next();
      if (peek().kind == TK::Name && ends.count(peek().text)) {
        end = next().text;
        return body;
      }
      body.push_back(parseStatement());
    }
  }

  Node parseStatement() {
    const Token &t = peek();
    if (t.kind != TK::Name)
      fail("tag name expected");
    static const std::set<std::string> unsupported = {
        "call",    "filter", "with", "include",    "import", "from",
        "extends", "block",  "do",   "autoescape", "trans"};
    const std::string &name = t.text;
    int line = t.line;
    if (name == "if")
      return parseIf();
    if (name == "for")
      return parseFor();
    if (name == "set")
      return parseSet();
    if (name == "break" || name == "continue") {
      next();
      if (loopDepth_ == 0)
        fail("'" + name + "' outside of a loop", line);
      expectBlockEnd();
      Node node;
      node.kind = name == "break" ? Node::Kind::Break : Node::Kind::Continue;
      node.line = line;
      return node;
    }
    if (name == "generation") {
      next();
      expectBlockEnd();
      Node node;
      node.kind = Node::Kind::Block;
      node.line = line;
      std::string end;
      node.body = parseBody({"endgeneration"}, end);
      expectBlockEnd();
      return node;
    }
    if (name == "macro")
      return parseMacro();
    if (unsupported.count(name))
      fail("the tag '" + name +
               "' is not supported in chat templates by xfmr (supported: if, "
               "for, set, macro, break, continue, raw, generation)",
           line);
    fail("encountered unknown tag '" + name + "'", line);
  }

  /// From `if` (or, for an `elif`, from just after the keyword).
  Node parseIf(bool atKeyword = true) {
    Node node;
    node.kind = Node::Kind::If;
    node.line = atKeyword ? next().line : peek().line;
    node.expr = parseTuple(false);
    expectBlockEnd();
    std::string end;
    node.body = parseBody({"elif", "else", "endif"}, end);
    if (end == "elif") {
      node.orElse.push_back(parseIf(false)); // consumes through endif
      return node;
    }
    if (end == "else") {
      expectBlockEnd();
      node.orElse = parseBody({"endif"}, end);
    }
    expectBlockEnd();
    return node;
  }

  std::vector<std::string> parseTargets() {
    std::vector<std::string> targets;
    bool parens = acceptOp("(");
    do {
      targets.push_back(expectName());
    } while (acceptOp(","));
    if (parens)
      expectOp(")");
    return targets;
  }

  Node parseFor() {
    Node node;
    node.kind = Node::Kind::For;
    node.line = next().line;
    node.targets = parseTargets();
    if (!acceptName("in"))
      unexpected("'in'");
    node.expr = parseTuple(false);
    if (acceptName("if"))
      node.filter = parseExpression(true);
    if (isName("recursive"))
      fail("recursive loops are not supported in chat templates by xfmr");
    expectBlockEnd();
    ++loopDepth_;
    std::string end;
    node.body = parseBody({"else", "endfor"}, end);
    --loopDepth_;
    if (end == "else") {
      expectBlockEnd();
      node.orElse = parseBody({"endfor"}, end);
    }
    expectBlockEnd();
    return node;
  }

  /// `macro name(a, b=default)`: its body renders when called.
  Node parseMacro() {
    Node node;
    node.kind = Node::Kind::Macro;
    node.line = next().line;
    node.attribute = expectName();
    expectOp("(");
    while (!isOp(")")) {
      if (!node.targets.empty())
        expectOp(",");
      node.targets.push_back(expectName());
      node.defaults.push_back(acceptOp("=") ? parseExpression(true) : nullptr);
      if (!node.defaults.back() && node.defaults.size() > 1 &&
          node.defaults[node.defaults.size() - 2])
        fail("a macro parameter without a default follows one with a default");
    }
    expectOp(")");
    expectBlockEnd();
    int savedLoops = loopDepth_;
    loopDepth_ = 0; // break/continue cannot leave a macro
    std::string end;
    node.body = parseBody({"endmacro"}, end);
    loopDepth_ = savedLoops;
    expectBlockEnd();
    return node;
  }

  Node parseSet() {
    Node node;
    node.line = next().line;
    std::string first = expectName();
    if (acceptOp(".")) {
      node.targets.push_back(first);
      node.attribute = expectName();
    } else {
      node.targets.push_back(first);
      while (acceptOp(","))
        node.targets.push_back(expectName());
    }
    if (acceptOp("=")) {
      node.kind = Node::Kind::Set;
      node.expr = parseTuple(true);
      expectBlockEnd();
      return node;
    }
    if (node.targets.size() != 1 || !node.attribute.empty())
      unexpected("'='");
    if (isOp("|"))
      fail("filtered set blocks are not supported in chat templates by xfmr");
    expectBlockEnd();
    node.kind = Node::Kind::SetBlock;
    std::string end;
    node.body = parseBody({"endset"}, end);
    expectBlockEnd();
    return node;
  }

  // ---- expressions ------------------------------------------------------

  /// An expression, or a tuple of them without parentheses (`a, b`).
  ExprPtr parseTuple(bool withCondition) {
    int line = peek().line;
    ExprPtr first = parseExpression(withCondition);
    if (!isOp(","))
      return first;
    auto tuple = make(Expr::Kind::List, line);
    tuple->tuple = true;
    tuple->args.push_back(std::move(first));
    while (acceptOp(",")) {
      if (peek().kind == TK::VariableEnd || peek().kind == TK::BlockEnd ||
          isOp(")"))
        break;
      tuple->args.push_back(parseExpression(withCondition));
    }
    return tuple;
  }

  ExprPtr parseExpression(bool withCondition) {
    DepthGuard guard(*this);
    if (!withCondition)
      return parseOr();
    ExprPtr expr = parseOr();
    int savedDepth = depth_;
    while (isName("if")) {
      deeper();
      int line = next().line;
      auto condition = make(Expr::Kind::Condition, line);
      condition->args.push_back(parseOr());
      condition->args.push_back(std::move(expr));
      if (acceptName("else"))
        condition->args.push_back(parseExpression(true));
      else
        condition->args.push_back(nullptr);
      expr = std::move(condition);
    }
    depth_ = savedDepth;
    return expr;
  }

  ExprPtr binary(const std::string &op, ExprPtr lhs, ExprPtr rhs, int line) {
    auto e = make(Expr::Kind::Binary, line);
    e->name = op;
    e->args.push_back(std::move(lhs));
    e->args.push_back(std::move(rhs));
    return e;
  }

  ExprPtr parseOr() {
    int savedDepth = depth_;
    ExprPtr lhs = parseAnd();
    while (isName("or")) {
      deeper();
      int line = next().line;
      lhs = binary("or", std::move(lhs), parseAnd(), line);
    }
    depth_ = savedDepth;
    return lhs;
  }

  ExprPtr parseAnd() {
    int savedDepth = depth_;
    ExprPtr lhs = parseNot();
    while (isName("and")) {
      deeper();
      int line = next().line;
      lhs = binary("and", std::move(lhs), parseNot(), line);
    }
    depth_ = savedDepth;
    return lhs;
  }

  ExprPtr parseNot() {
    if (isName("not")) {
      DepthGuard guard(*this);
      auto e = make(Expr::Kind::Unary, next().line);
      e->name = "not";
      e->args.push_back(parseNot());
      return e;
    }
    return parseCompare();
  }

  ExprPtr parseCompare() {
    ExprPtr lhs = parseMath1();
    int savedDepth = depth_;
    for (;;) {
      deeper();
      int line = peek().line;
      std::string op;
      if (peek().kind == TK::Operator &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
           peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (isName("in")) {
        next();
        op = "in";
      } else if (isName("not") && isName("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        depth_ = savedDepth;
        return lhs;
      }
      // Python chains comparisons (a < b < c); Jinja too. Two-operand
      // chains are what templates use; longer ones are refused.
      ExprPtr rhs = parseMath1();
      lhs = binary(op, std::move(lhs), std::move(rhs), line);
      if (peek().kind == TK::Operator &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
           peek().text == "<=" || peek().text == ">" || peek().text == ">="))
        fail("chained comparisons are not supported in chat templates by "
             "xfmr");
    }
  }

  ExprPtr parseMath1() {
    int savedDepth = depth_;
    ExprPtr lhs = parseConcat();
    while (isOp("+") || isOp("-")) {
      deeper();
      const Token &t = next();
      lhs = binary(t.text, std::move(lhs), parseConcat(), t.line);
    }
    depth_ = savedDepth;
    return lhs;
  }

  ExprPtr parseConcat() {
    int savedDepth = depth_;
    ExprPtr lhs = parseMath2();
    while (isOp("~")) {
      deeper();
      int line = next().line;
      lhs = binary("~", std::move(lhs), parseMath2(), line);
    }
    depth_ = savedDepth;
    return lhs;
  }

  ExprPtr parseMath2() {
    int savedDepth = depth_;
    ExprPtr lhs = parsePow();
    while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
      deeper();
      const Token &t = next();
      lhs = binary(t.text, std::move(lhs), parsePow(), t.line);
    }
    depth_ = savedDepth;
    return lhs;
  }

  ExprPtr parsePow() {
    int savedDepth = depth_;
    ExprPtr lhs = parseUnary(true);
    while (isOp("**")) {
      deeper();
      int line = next().line;
      lhs = binary("**", std::move(lhs), parseUnary(true), line);
    }
    depth_ = savedDepth;
    return lhs;
  }

  ExprPtr parseUnary(bool withFilter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (isOp("-") || isOp("+")) {
      const Token &t = next();
      node = make(Expr::Kind::Unary, t.line);
      node->name = t.text;
      node->args.push_back(parseUnary(false));
    } else {
      node = parsePrimary();
    }
    node = parsePostfix(std::move(node));
    if (withFilter)
      node = parseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr parsePrimary() {
    const Token &t = peek();
    int line = t.line;
    switch (t.kind) {
    case TK::Name: {
      next();
      auto e = make(Expr::Kind::Literal, line);
      if (t.text == "true" || t.text == "True")
        e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False")
        e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None")
        e->value = Value::none();
      else {
        e->kind = Expr::Kind::Name;
        e->name = t.text;
      }
      return e;
    }
    case TK::String: {
      std::string text;
      while (peek().kind == TK::String)
        text += next().text;
      auto e = make(Expr::Kind::Literal, line);
      e->value = Value::string(std::move(text));
      return e;
    }
    case TK::Integer: {
      auto e = make(Expr::Kind::Literal, line);
      e->value = Value::integer(next().integer);
      return e;
    }
    case TK::Float: {
      auto e = make(Expr::Kind::Literal, line);
      e->value = Value::floating(next().number);
      return e;
    }
    case TK::Operator:
      if (t.text == "(") {
        next();
        if (acceptOp(")")) {
          auto e = make(Expr::Kind::List, line);
          e->tuple = true;
          return e;
        }
        ExprPtr inner = parseExpression(true);
        if (acceptOp(")"))
          return inner;
        auto tuple = make(Expr::Kind::List, line);
        tuple->tuple = true;
        tuple->args.push_back(std::move(inner));
        while (acceptOp(",")) {
          if (isOp(")"))
            break;
          tuple->args.push_back(parseExpression(true));
        }
        expectOp(")");
        return tuple;
      }
      if (t.text == "[") {
        next();
        auto list = make(Expr::Kind::List, line);
        while (!isOp("]")) {
          if (!list->args.empty())
            expectOp(",");
          if (isOp("]"))
            break;
          list->args.push_back(parseExpression(true));
        }
        expectOp("]");
        return list;
      }
      if (t.text == "{") {
        next();
        auto dict = make(Expr::Kind::Dict, line);
        while (!isOp("}")) {
          if (!dict->kwargs.empty())
            expectOp(",");
          if (isOp("}"))
            break;
          if (peek().kind != TK::String)
            fail("dict literals need string keys in chat templates by xfmr");
          std::string key = next().text;
          expectOp(":");
          dict->kwargs.emplace_back(std::move(key), parseExpression(true));
        }
        expectOp("}");
        return dict;
      }
      break;
    default:
      break;
    }
    unexpected("an expression");
  }

  ExprPtr parsePostfix(ExprPtr node) {
    int savedDepth = depth_;
    for (;;) {
      deeper();
      int line = peek().line;
      if (isOp(".")) {
        next();
        auto e = make(Expr::Kind::Attribute, line);
        if (peek().kind == TK::Integer) {
          // `x.0` is `x[0]` in Jinja.
          e->kind = Expr::Kind::Item;
          auto index = make(Expr::Kind::Literal, line);
          index->value = Value::integer(next().integer);
          e->args.push_back(std::move(node));
          e->args.push_back(std::move(index));
        } else {
          e->name = expectName();
          e->args.push_back(std::move(node));
        }
        node = std::move(e);
      } else if (isOp("[")) {
        next();
        node = parseSubscript(std::move(node), line);
      } else if (isOp("(")) {
        node = parseCall(std::move(node));
      } else {
        depth_ = savedDepth;
        return node;
      }
    }
  }

  ExprPtr parseSubscript(ExprPtr object, int line) {
    ExprPtr parts[3];
    bool slice = false;
    for (int i = 0; i < 3; ++i) {
      if (!isOp(":") && !isOp("]"))
        parts[i] = parseExpression(true);
      if (i < 2 && acceptOp(":")) {
        slice = true;
        continue;
      }
      break;
    }
    expectOp("]");
    auto e = make(slice ? Expr::Kind::Slice : Expr::Kind::Item, line);
    e->args.push_back(std::move(object));
    if (!slice) {
      if (!parts[0])
        fail("expected an index", line);
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    for (ExprPtr &part : parts)
      e->args.push_back(std::move(part));
    return e;
  }

  /// `(args, name=value)`, appended to `e->args` after what is there.
  void parseArguments(Expr &e) {
    expectOp("(");
    bool first = true;
    while (!isOp(")")) {
      if (!first) {
        expectOp(",");
        if (isOp(")"))
          break;
      }
      first = false;
      if (isOp("*") || isOp("**"))
        fail("*args and **kwargs are not supported in chat templates by xfmr");
      if (peek().kind == TK::Name && isOp("=", 1)) {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(std::move(key), parseExpression(true));
      } else {
        if (!e.kwargs.empty())
          fail("a positional argument follows a keyword argument");
        e.args.push_back(parseExpression(true));
      }
    }
    expectOp(")");
  }

  ExprPtr parseCall(ExprPtr callee) {
    auto e = make(Expr::Kind::Call, peek().line);
    e->args.push_back(std::move(callee));
    parseArguments(*e);
    return e;
  }

  ExprPtr parseFilterExpr(ExprPtr node) {
    int savedDepth = depth_;
    for (;;) {
      deeper();
      int line = peek().line;
      if (isOp("|")) {
        next();
        auto e = make(Expr::Kind::Filter, line);
        e->name = expectName();
        while (acceptOp("."))
          e->name += "." + expectName();
        e->args.push_back(std::move(node));
        if (isOp("("))
          parseArguments(*e);
        node = std::move(e);
      } else if (isName("is")) {
        next();
        auto e = make(Expr::Kind::Test, line);
        e->negated = acceptName("not");
        e->name = expectName();
        while (acceptOp("."))
          e->name += "." + expectName();
        e->args.push_back(std::move(node));
        if (isOp("(")) {
          parseArguments(*e);
        } else {
          TK k = peek().kind;
          bool argument =
              (k == TK::Name || k == TK::String || k == TK::Integer ||
               k == TK::Float || isOp("[") || isOp("{")) &&
              !isName("else") && !isName("or") && !isName("and");
          if (argument) {
            if (isName("is"))
              fail("you cannot chain multiple tests with is");
            e->args.push_back(parsePostfix(parsePrimary()));
          }
        }
        node = std::move(e);
      } else if (isOp("(")) {
        node = parseCall(std::move(node));
      } else {
        depth_ = savedDepth;
        return node;
      }
    }
  }

  const std::vector<Token> &tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loopDepth_ = 0;
};

} // namespace

std::vector<Node> parseTemplate(const std::vector<Token> &tokens) {
  return Parser(tokens).parseAll();
}

} // namespace xfmr::runtime::jinja
