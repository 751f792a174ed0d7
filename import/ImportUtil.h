//===- ImportUtil.h - Helpers shared by the checkpoint readers --*- C++ -*-===//
//
// Internal helpers of the checkpoint readers: reading a JSON file with errors
// that name it, finding duplicate keys (which llvm::json silently collapses,
// the last one winning, but which we must reject in safetensors headers, index
// weight maps and config files), and joining several problems into one error.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_IMPORT_IMPORTUTIL_H
#define XFMR_IMPORT_IMPORTUTIL_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <optional>
#include <string>

namespace xfmr {

/// The deepest nesting of arrays and objects parseJsonStrict accepts. Real
/// configs and safetensors headers nest 2-4 levels; llvm::json::parse
/// recurses per level and overflows the stack near 60,000 (as the runtime's
/// own reader, it stops at 256).
inline constexpr size_t kMaxJsonDepth = 256;

/// Whether `text` nests brackets deeper than `maxDepth`, looking only at
/// the characters of `open` and `close` outside double-quoted strings (no
/// recursion, any input). JSON nests with "[{" and "]}"; MLIR text with
/// "([{<" and ")]}>" (a '>' after '-' is an arrow, not a bracket).
bool nestsDeeperThan(llvm::StringRef text, size_t maxDepth,
                     llvm::StringRef open = "[{", llvm::StringRef close = "]}");

/// The deepest bracket nesting xfmr parses in .mlir text. MLIR's parser
/// recurses per level (its stack ends near 10,000 levels); models nest
/// about 10.
inline constexpr size_t kMaxIRDepth = 1024;

/// Parses `text` as JSON. Unlike llvm::json::parse, rejects nesting deeper
/// than kMaxJsonDepth (before parsing) and duplicate keys in the top-level
/// object and, for each name in `nestedObjects`, in the object stored under
/// that top-level key. Errors are prefixed with `what` (typically "<path>: "
/// plus a description of the document).
llvm::Expected<llvm::json::Value>
parseJsonStrict(llvm::StringRef text, llvm::StringRef what,
                llvm::ArrayRef<llvm::StringRef> nestedObjects = {});

/// Fails unless `path` is a regular file (or a link to one): reading a FIFO
/// or a device would block or never end. Checked without opening it.
llvm::Error checkRegularFile(llvm::StringRef path);

/// Reads the file at `path` (which must be a regular file) and parses it
/// with parseJsonStrict. Errors name the file.
llvm::Expected<llvm::json::Value>
readJsonFile(llvm::StringRef path,
             llvm::ArrayRef<llvm::StringRef> nestedObjects = {});

/// Returns the first key that occurs more than once among the direct members
/// of the JSON object at the start of `objectText`, which must already be
/// known to be valid JSON. Returns std::nullopt when there is none or when the
/// text is not an object.
std::optional<std::string> findDuplicateKey(llvm::StringRef objectText);

/// Returns the raw text of the value stored under `key` in the JSON object at
/// the start of `objectText` (valid JSON), or std::nullopt.
std::optional<llvm::StringRef> findMemberText(llvm::StringRef objectText,
                                              llvm::StringRef key);

/// Names the kind of a JSON value for error messages: "null", "boolean",
/// "integer", "number", "string", "array" or "object".
llvm::StringRef jsonKindName(const llvm::json::Value &value);

/// Builds one error from `problems`: "<header>: <p>" for a single problem,
/// otherwise "<header>: N problems:" followed by one indented line per problem,
/// listing at most `limit` and then "... and M more".
llvm::Error joinProblems(llvm::StringRef header,
                         llvm::ArrayRef<std::string> problems,
                         size_t limit = 10);

} // namespace xfmr

#endif // XFMR_IMPORT_IMPORTUTIL_H
