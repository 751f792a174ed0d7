//===- ToolSupport.h - what every xfmr command-line tool shares -*- C++ -*-===//
//
// One behaviour for xfmr-compile, xfmr-import and xfmr-opt (xfmr-run, which
// links no LLVM, follows the same rules by hand):
//   - errors are "<tool>: error: <message>" on stderr;
//   - exit code 2 for a bad command line (unknown or malformed options, bad
//     values), 1 for a failure while running, 0 otherwise;
//   - --version prints "xfmr <version> (<commit>)";
//   - --help shows the tool's own options, grouped, not LLVM's internals.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TOOLS_COMMON_TOOLSUPPORT_H
#define XFMR_TOOLS_COMMON_TOOLSUPPORT_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Error.h"

namespace xfmr::tools {

/// Exit codes shared by every tool.
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

/// Parses the command line. Only `categories` (and --help/--version) are
/// shown by --help when `categories` is not empty. Returns 0 when the tool
/// should go on, or the exit code (kExitUsage after printing the errors in
/// the common form).
int parseCommandLine(int argc, char **argv, llvm::StringRef overview,
                     llvm::ArrayRef<const llvm::cl::OptionCategory *>
                         categories = {});

/// Prints "<tool>: error: <message>" and returns `exitCode`.
int reportError(llvm::StringRef tool, const llvm::Twine &message,
                int exitCode = kExitFailure);

/// A bad command line found after parsing: prints the error and "(see
/// <tool> --help)", returns kExitUsage.
int usageError(llvm::StringRef tool, const llvm::Twine &message);

/// Prints "<tool>: warning: <message>".
void reportWarning(llvm::StringRef tool, const llvm::Twine &message);

/// Reports `error` and returns its exit code: kExitUsage when any part
/// carries std::errc::invalid_argument (a bad option), else kExitFailure.
int reportError(llvm::StringRef tool, llvm::Error error);

} // namespace xfmr::tools

#endif // XFMR_TOOLS_COMMON_TOOLSUPPORT_H
