//===- ImportUtil.cpp - Helpers shared by the checkpoint readers ---------===//

#include "import/ImportUtil.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace llvm;

namespace xfmr {
namespace {

/// Walks the members of a JSON object without building values. The input is
/// valid JSON (llvm::json::parse accepted it), so the scanner only needs to
/// find token boundaries; it still never reads out of bounds on bad input.
class MemberScanner {
public:
  explicit MemberScanner(StringRef text) : text(text) {}

  /// Calls `fn(rawKey, valueText)` for each member, where rawKey includes its
  /// quotes. Stops early when `fn` returns false. Returns false when the text
  /// is not an object.
  bool forEachMember(function_ref<bool(StringRef, StringRef)> fn) {
    skipSpace();
    if (!consume('{'))
      return false;
    skipSpace();
    if (consume('}'))
      return true;
    while (pos < text.size()) {
      skipSpace();
      size_t keyBegin = pos;
      if (peek() != '"' || !skipString())
        return false;
      StringRef rawKey = text.slice(keyBegin, pos);
      skipSpace();
      if (!consume(':'))
        return false;
      skipSpace();
      size_t valueBegin = pos;
      if (!skipValue())
        return false;
      if (!fn(rawKey, text.slice(valueBegin, pos)))
        return true;
      skipSpace();
      if (consume(','))
        continue;
      return consume('}');
    }
    return false;
  }

private:
  char peek() const { return pos < text.size() ? text[pos] : '\0'; }
  bool consume(char c) {
    if (peek() != c)
      return false;
    ++pos;
    return true;
  }
  void skipSpace() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' ||
                                 text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  }
  /// Skips a string starting at its opening quote.
  bool skipString() {
    ++pos;
    while (pos < text.size()) {
      char c = text[pos++];
      if (c == '\\')
        ++pos;
      else if (c == '"')
        return true;
    }
    return false;
  }
  bool skipValue() {
    char c = peek();
    if (c == '"')
      return skipString();
    if (c == '{' || c == '[') {
      int depth = 0;
      while (pos < text.size()) {
        char d = text[pos];
        if (d == '"') {
          if (!skipString())
            return false;
          continue;
        }
        ++pos;
        if (d == '{' || d == '[')
          ++depth;
        else if ((d == '}' || d == ']') && --depth == 0)
          return true;
      }
      return false;
    }
    size_t begin = pos;
    while (pos < text.size() && !StringRef(",}] \t\r\n").contains(text[pos]))
      ++pos;
    return pos > begin;
  }

  StringRef text;
  size_t pos = 0;
};

/// Decodes a quoted JSON string token; escapes are rare in keys, so the common
/// case is a slice.
std::string decodeKey(StringRef rawKey) {
  if (!rawKey.contains('\\'))
    return rawKey.drop_front().drop_back().str();
  Expected<json::Value> value = json::parse(rawKey);
  if (!value) {
    consumeError(value.takeError());
    return rawKey.str();
  }
  if (std::optional<StringRef> str = value->getAsString())
    return str->str();
  return rawKey.str();
}

} // namespace

std::optional<std::string> findDuplicateKey(StringRef objectText) {
  StringSet<> seen;
  std::optional<std::string> duplicate;
  MemberScanner(objectText).forEachMember([&](StringRef rawKey, StringRef) {
    std::string key = decodeKey(rawKey);
    if (!seen.insert(key).second) {
      duplicate = std::move(key);
      return false;
    }
    return true;
  });
  return duplicate;
}

std::optional<StringRef> findMemberText(StringRef objectText, StringRef key) {
  std::optional<StringRef> found;
  MemberScanner(objectText)
      .forEachMember([&](StringRef rawKey, StringRef value) {
        if (decodeKey(rawKey) == key)
          found = value;
        return true;
      });
  return found;
}

bool nestsDeeperThan(StringRef text, size_t maxDepth, StringRef open,
                     StringRef close) {
  size_t depth = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        inString = false;
    } else if (c == '"') {
      inString = true;
    } else if (open.contains(c)) {
      if (++depth > maxDepth)
        return true;
    } else if (close.contains(c) && depth > 0 &&
               !(c == '>' && i > 0 && text[i - 1] == '-')) {
      --depth;
    }
  }
  return false;
}

Expected<json::Value> parseJsonStrict(StringRef text, StringRef what,
                                      ArrayRef<StringRef> nestedObjects) {
  if (nestsDeeperThan(text, kMaxJsonDepth))
    return createStringError(inconvertibleErrorCode(),
                             "%s nests arrays or objects deeper than %zu "
                             "levels; it is not a model file",
                             what.str().c_str(), kMaxJsonDepth);
  Expected<json::Value> value = json::parse(text);
  if (!value)
    return createStringError(inconvertibleErrorCode(),
                             "%s is not valid JSON: %s", what.str().c_str(),
                             toString(value.takeError()).c_str());
  if (!value->getAsObject())
    return std::move(*value);
  if (std::optional<std::string> dup = findDuplicateKey(text))
    return createStringError(inconvertibleErrorCode(),
                             "%s has duplicate key '%s'", what.str().c_str(),
                             dup->c_str());
  for (StringRef nested : nestedObjects) {
    std::optional<StringRef> member = findMemberText(text, nested);
    if (!member)
      continue;
    if (std::optional<std::string> dup = findDuplicateKey(*member))
      return createStringError(
          inconvertibleErrorCode(), "%s has duplicate key '%s' in '%s'",
          what.str().c_str(), dup->c_str(), nested.str().c_str());
  }
  return std::move(*value);
}

Error checkRegularFile(StringRef path) {
  sys::fs::file_status status;
  if (std::error_code ec = sys::fs::status(path, status))
    return createStringError(ec, "cannot read '%s': %s", path.str().c_str(),
                             ec.message().c_str());
  if (status.type() != sys::fs::file_type::regular_file)
    return createStringError(inconvertibleErrorCode(),
                             "cannot read '%s': not a regular file",
                             path.str().c_str());
  return Error::success();
}

Expected<json::Value> readJsonFile(StringRef path,
                                   ArrayRef<StringRef> nestedObjects) {
  if (Error error = checkRegularFile(path))
    return std::move(error);
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/false,
                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return createStringError(buffer.getError(), "cannot read '%s': %s",
                             path.str().c_str(),
                             buffer.getError().message().c_str());
  return parseJsonStrict((*buffer)->getBuffer(), "'" + path.str() + "'",
                         nestedObjects);
}

StringRef jsonKindName(const json::Value &value) {
  switch (value.kind()) {
  case json::Value::Null:
    return "null";
  case json::Value::Boolean:
    return "boolean";
  case json::Value::Number:
    return value.getAsInteger() || value.getAsUINT64() ? "integer" : "number";
  case json::Value::String:
    return "string";
  case json::Value::Array:
    return "array";
  case json::Value::Object:
    return "object";
  }
  return "value";
}

Error joinProblems(StringRef header, ArrayRef<std::string> problems,
                   size_t limit) {
  if (problems.empty())
    return Error::success();
  if (problems.size() == 1)
    return createStringError(inconvertibleErrorCode(),
                             header + ": " + problems.front());
  std::string message =
      (header + ": " + Twine(problems.size()) + " problems:").str();
  for (const std::string &problem : problems.take_front(limit))
    message += "\n  " + problem;
  if (problems.size() > limit)
    message +=
        "\n  ... and " + std::to_string(problems.size() - limit) + " more";
  return createStringError(inconvertibleErrorCode(), message);
}

} // namespace xfmr
