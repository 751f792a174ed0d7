//===- ToolSupport.cpp - what every xfmr command-line tool shares ---------===//

#include "tools/common/ToolSupport.h"

#include "xfmr/runtime/Version.h"

#include "llvm/Support/Path.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;

int xfmr::tools::parseCommandLine(
    int argc, char **argv, StringRef overview,
    ArrayRef<const cl::OptionCategory *> categories) {
  StringRef tool = sys::path::filename(argv[0]);
  cl::SetVersionPrinter(
      [](raw_ostream &os) { os << runtime::versionString() << "\n"; });
  if (!categories.empty())
    cl::HideUnrelatedOptions(categories);
  std::string messages;
  raw_string_ostream errors(messages);
  if (cl::ParseCommandLineOptions(argc, argv, overview, &errors))
    return 0;
  // LLVM writes "<tool>: <message>" lines; give them the common form.
  SmallVector<StringRef> lines;
  StringRef(messages).rtrim().split(lines, '\n');
  for (StringRef line : lines) {
    line = line.trim();
    if (line.empty())
      continue;
    line.consume_front(tool);
    line.consume_front(":");
    reportError(tool, line.trim(), kExitUsage);
  }
  errs() << "(see " << tool << " --help)\n";
  return kExitUsage;
}

int xfmr::tools::reportError(StringRef tool, const Twine &message,
                             int exitCode) {
  WithColor::error(errs(), tool) << message << "\n";
  return exitCode;
}

int xfmr::tools::usageError(StringRef tool, const Twine &message) {
  reportError(tool, message, kExitUsage);
  errs() << "(see " << tool << " --help)\n";
  return kExitUsage;
}

void xfmr::tools::reportWarning(StringRef tool, const Twine &message) {
  WithColor::warning(errs(), tool) << message << "\n";
}

int xfmr::tools::reportError(StringRef tool, Error error) {
  bool usage = false;
  std::string message;
  handleAllErrors(std::move(error), [&](const ErrorInfoBase &info) {
    if (!message.empty())
      message += "\n";
    message += info.message();
    usage |= info.convertToErrorCode() ==
             std::make_error_code(std::errc::invalid_argument);
  });
  if (usage)
    return usageError(tool, message);
  return reportError(tool, message, kExitFailure);
}
