//===- TemplateRenderer.cpp - runs a parsed template ----------------------===//

#include "template/TemplateRenderer.h"
#include "template/TemplateBuiltins.h"

#include "xfmr/runtime/Error.h"

#include <algorithm>
#include <unordered_map>

namespace xfmr::runtime::jinja {

namespace {

constexpr uint64_t kMaxSteps = 2'000'000;
constexpr size_t kMaxOutput = size_t(64) << 20;

enum class Flow { Normal, Break, Continue };

class Renderer {
public:
  explicit Renderer(const Dict &variables) {
    scopes_.emplace_back();
    for (const auto &[name, value] : variables)
      scopes_.back()[name] = value;
    scopes_.emplace_back(); // the template's own assignments
  }

  std::string run(const std::vector<Node> &nodes) {
    startWork(kMaxSteps);
    try {
      renderBody(nodes);
    } catch (const Error &error) {
      std::string message = error.what();
      if (message.compare(0, 5, "line ") != 0)
        message = "line " + std::to_string(line_) + ": " + message;
      throw Error(message);
    }
    return std::move(out_);
  }

private:
  using Scope = std::unordered_map<std::string, Value>;

  void step(int line) {
    line_ = line;
    chargeWork(1);
  }

  void write(const std::string &text) {
    out_ += text;
    // Macro calls and set blocks render into buffers of their own: the
    // limit counts those held while they run, too.
    if (out_.size() + captured_ > kMaxOutput)
      throw Error("the rendered text exceeds " +
                  std::to_string(kMaxOutput >> 20) + " MiB");
  }

  Value lookup(const std::string &name) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      auto it = scope->find(name);
      if (it != scope->end())
        return it->second;
    }
    Value global = globalFunction(name);
    if (!global.isUndefined())
      return global;
    return Value::undefined("'" + name + "' is undefined");
  }

  void assign(const std::string &name, Value value) {
    scopes_.back()[name] = std::move(value);
  }

  Flow renderBody(const std::vector<Node> &nodes) {
    for (const Node &node : nodes) {
      Flow flow = render(node);
      if (flow != Flow::Normal)
        return flow;
    }
    return Flow::Normal;
  }

  /// Counts the frames of render/eval/macro calls: nested statements,
  /// expressions and macros together stay far from the stack's end.
  struct Frame {
    explicit Frame(Renderer &r) : renderer(r) {
      if (++renderer.frames_ > kMaxFrames)
        throw Error("the template nests deeper than " +
                    std::to_string(kMaxFrames) +
                    " levels of statements, expressions and macro calls");
    }
    ~Frame() { --renderer.frames_; }
    Renderer &renderer;
  };

  Flow render(const Node &node) {
    Frame frame(*this);
    step(node.line);
    switch (node.kind) {
    case Node::Kind::Text:
      write(node.text);
      return Flow::Normal;
    case Node::Kind::Output:
      write(eval(*node.expr).str());
      return Flow::Normal;
    case Node::Kind::If:
      return eval(*node.expr).truthy() ? renderBody(node.body)
                                       : renderBody(node.orElse);
    case Node::Kind::For:
      return renderFor(node);
    case Node::Kind::Set: {
      Value value = eval(*node.expr);
      step(node.line);
      if (!node.attribute.empty()) {
        Value target = lookup(node.targets[0]);
        if (!target.isNamespace())
          throw Error("cannot assign attribute on non-namespace object '" +
                      node.targets[0] + "'");
        // A namespace holds no namespace, so values never form cycles
        // (that would leak, and print forever).
        if (value.isNamespace() || value.holdsNamespace())
          throw Error("a namespace cannot hold another namespace");
        if (value.nesting() + 1 > Value::kMaxNesting)
          throw Error("values nest deeper than " +
                      std::to_string(Value::kMaxNesting) + " levels");
        Dict &members = target.mutableDict();
        for (auto &member : members)
          if (member.first == node.attribute) {
            member.second = std::move(value);
            return Flow::Normal;
          }
        members.emplace_back(node.attribute, std::move(value));
        return Flow::Normal;
      }
      if (node.targets.size() == 1) {
        assign(node.targets[0], std::move(value));
        return Flow::Normal;
      }
      unpack(node.targets, value);
      return Flow::Normal;
    }
    case Node::Kind::SetBlock: {
      std::string saved = std::move(out_);
      out_.clear();
      captured_ += saved.size();
      Flow flow = renderBody(node.body);
      captured_ -= saved.size();
      std::string captured = std::move(out_);
      out_ = std::move(saved);
      // A break or continue inside leaves the block unassigned, as jinja2.
      if (flow != Flow::Normal)
        return flow;
      assign(node.targets[0], Value::string(std::move(captured)));
      return Flow::Normal;
    }
    case Node::Kind::Break:
      return Flow::Break;
    case Node::Kind::Continue:
      return Flow::Continue;
    case Node::Kind::Block:
      return renderBody(node.body);
    case Node::Kind::Macro:
      macros_.push_back(&node);
      assign(node.attribute,
             Value::function(kMacroPrefix + node.attribute,
                             Value::integer(int64_t(macros_.size() - 1))));
      return Flow::Normal;
    }
    return Flow::Normal;
  }

  void unpack(const std::vector<std::string> &targets, const Value &value) {
    List items = iterate(value);
    if (items.size() != targets.size())
      throw Error(items.size() < targets.size()
                      ? "not enough values to unpack (expected " +
                            std::to_string(targets.size()) + ", got " +
                            std::to_string(items.size()) + ")"
                      : "too many values to unpack (expected " +
                            std::to_string(targets.size()) + ")");
    for (size_t i = 0; i < targets.size(); ++i)
      assign(targets[i], items[i]);
  }

  void bindTargets(const std::vector<std::string> &targets, const Value &item) {
    if (targets.size() == 1)
      assign(targets[0], item);
    else
      unpack(targets, item);
  }

  Flow renderFor(const Node &node) {
    Value iterable = eval(*node.expr);
    if (iterable.isNone())
      throw Error("'NoneType' object is not iterable");
    List items = iterate(iterable);
    // Building the list was work too: a loop over range(10**6) inside
    // another must hit the step limit early.
    chargeWork(items.size());
    step(node.line);
    if (node.filter) {
      // `for x in xs if cond`: the loop (and `loop.length`) sees only the
      // items that pass.
      List kept;
      for (const Value &item : items) {
        scopes_.emplace_back();
        bindTargets(node.targets, item);
        bool pass = eval(*node.filter).truthy();
        scopes_.pop_back();
        if (pass)
          kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty())
      return renderBody(node.orElse);
    int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      step(node.line);
      Dict loop = {
          {"index", Value::integer(i + 1)},
          {"index0", Value::integer(i)},
          {"revindex", Value::integer(n - i)},
          {"revindex0", Value::integer(n - i - 1)},
          {"first", Value::boolean(i == 0)},
          {"last", Value::boolean(i == n - 1)},
          {"length", Value::integer(n)},
          {"depth", Value::integer(1)},
          {"depth0", Value::integer(0)},
          {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)]
                             : Value::undefined("there is no previous item")},
          {"nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)]
                                 : Value::undefined("there is no next item")},
          {"cycle", Value::function("loop.cycle", Value::integer(i))}};
      scopes_.emplace_back();
      assign("loop", Value::dict(std::move(loop)));
      bindTargets(node.targets, items[static_cast<size_t>(i)]);
      Flow flow = renderBody(node.body);
      scopes_.pop_back();
      if (flow == Flow::Break)
        break;
    }
    return Flow::Normal;
  }

  Arguments arguments(const Expr &e, size_t first) {
    Arguments args;
    for (size_t i = first; i < e.args.size(); ++i)
      args.positional.push_back(eval(*e.args[i]));
    for (const auto &[key, value] : e.kwargs)
      args.keywords.emplace_back(key, eval(*value));
    return args;
  }

  Value eval(const Expr &e) {
    Frame frame(*this);
    step(e.line);
    switch (e.kind) {
    case Expr::Kind::Literal:
      return e.value;
    case Expr::Kind::Name:
      return lookup(e.name);
    case Expr::Kind::List: {
      List items;
      for (const ExprPtr &item : e.args)
        items.push_back(eval(*item));
      return Value::list(std::move(items), e.tuple);
    }
    case Expr::Kind::Dict: {
      Dict members;
      for (const auto &entry : e.kwargs) {
        const std::string &key = entry.first;
        Value v = eval(*entry.second);
        auto it = std::find_if(members.begin(), members.end(),
                               [&](const auto &m) { return m.first == key; });
        if (it != members.end())
          it->second = std::move(v);
        else
          members.emplace_back(key, std::move(v));
      }
      return Value::dict(std::move(members));
    }
    case Expr::Kind::Attribute:
      return getAttribute(eval(*e.args[0]), e.name);
    case Expr::Kind::Item: {
      Value object = eval(*e.args[0]);
      return getItem(object, eval(*e.args[1]));
    }
    case Expr::Kind::Slice: {
      Value object = eval(*e.args[0]);
      Value parts[3];
      for (int i = 0; i < 3; ++i)
        if (e.args[1 + i])
          parts[i] = eval(*e.args[1 + i]);
      return getSlice(object, parts[0], parts[1], parts[2]);
    }
    case Expr::Kind::Call: {
      Value callee = eval(*e.args[0]);
      Arguments args = arguments(e, 1);
      line_ = e.line;
      if (callee.isFunction() &&
          callee.name().compare(0, kMacroPrefix.size(), kMacroPrefix) == 0)
        return callMacro(*macros_[size_t(callee.boundSelf().asInt())], args);
      return callFunction(callee, args);
    }
    case Expr::Kind::Filter: {
      Value operand = eval(*e.args[0]);
      Arguments args = arguments(e, 1);
      line_ = e.line;
      return applyFilter(e.name, operand, args);
    }
    case Expr::Kind::Test: {
      Value operand = eval(*e.args[0]);
      Arguments args = arguments(e, 1);
      line_ = e.line;
      return Value::boolean(applyTest(e.name, operand, args) != e.negated);
    }
    case Expr::Kind::Unary: {
      Value operand = eval(*e.args[0]);
      line_ = e.line;
      if (e.name == "not")
        return Value::boolean(!operand.truthy());
      return unaryOperation(e.name, operand);
    }
    case Expr::Kind::Binary: {
      Value lhs = eval(*e.args[0]);
      // `and`/`or` return an operand and skip the right one, as Python.
      if (e.name == "and")
        return lhs.truthy() ? eval(*e.args[1]) : lhs;
      if (e.name == "or")
        return lhs.truthy() ? lhs : eval(*e.args[1]);
      Value rhs = eval(*e.args[1]);
      line_ = e.line;
      return binaryOperation(e.name, lhs, rhs);
    }
    case Expr::Kind::Condition:
      if (eval(*e.args[0]).truthy())
        return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2])
                       : Value::undefined("the condition was false and the "
                                          "expression has no else");
    }
    return Value();
  }

  /// A macro's body renders into a string of its own, in a scope that sees
  /// the context and the template's top-level names (not the caller's
  /// loop variables), with its parameters bound as Python binds them.
  Value callMacro(const Node &macro, const Arguments &args) {
    const std::string &name = macro.attribute;
    size_t count = macro.targets.size();
    if (args.positional.size() > count)
      throw Error("macro '" + name + "' takes not more than " +
                  std::to_string(count) + " argument(s)");
    if (++macroDepth_ > kMaxMacroDepth)
      throw Error("macros call each other deeper than " +
                  std::to_string(kMaxMacroDepth) + " levels");
    std::vector<Scope> saved(scopes_.begin() + 2, scopes_.end());
    scopes_.resize(2);
    scopes_.emplace_back();
    std::string savedOut = std::move(out_);
    out_.clear();
    captured_ += savedOut.size();
    for (size_t i = 0; i < count; ++i) {
      const std::string &parameter = macro.targets[i];
      const Value *given =
          i < args.positional.size() ? &args.positional[i] : nullptr;
      for (const auto &keyword : args.keywords)
        if (keyword.first == parameter) {
          if (given)
            throw Error("macro '" + name + "' got multiple values for '" +
                        parameter + "'");
          given = &keyword.second;
        }
      if (given)
        assign(parameter, *given);
      else if (macro.defaults[i])
        assign(parameter, eval(*macro.defaults[i]));
      else
        assign(parameter, Value::undefined("'" + parameter + "' is undefined"));
    }
    for (const auto &keyword : args.keywords)
      if (std::find(macro.targets.begin(), macro.targets.end(),
                    keyword.first) == macro.targets.end())
        throw Error("macro '" + name + "' takes no keyword argument '" +
                    keyword.first + "'");
    renderBody(macro.body);
    std::string result = std::move(out_);
    captured_ -= savedOut.size();
    out_ = std::move(savedOut);
    scopes_.resize(2);
    scopes_.insert(scopes_.end(), saved.begin(), saved.end());
    --macroDepth_;
    return Value::string(std::move(result));
  }

  static inline const std::string kMacroPrefix = "macro ";
  static constexpr int kMaxMacroDepth = 100;
  static constexpr int kMaxFrames = 2000;
  int frames_ = 0;
  std::vector<const Node *> macros_;
  /// Bytes of the outer output buffers while a macro or set block renders.
  size_t captured_ = 0;
  int macroDepth_ = 0;
  std::vector<Scope> scopes_;
  std::string out_;
  int line_ = 1;
};

} // namespace

std::string renderTemplate(const std::vector<Node> &nodes,
                           const Dict &variables) {
  return Renderer(variables).run(nodes);
}

} // namespace xfmr::runtime::jinja
