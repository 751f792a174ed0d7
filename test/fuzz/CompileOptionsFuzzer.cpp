//===- CompileOptionsFuzzer.cpp - xfmr-compile's option checks ------------===//
//
// The input gives the option strings (separated by NUL bytes, in the order
// below) that xfmr-compile and xfmr.compile() pass to the compiler, which
// validates them before any work.
//
//===----------------------------------------------------------------------===//

#include "FuzzTarget.h"

#include "compiler/Compiler.h"

#include <charconv>

namespace {
int64_t number(const std::string &text) {
  int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::vector<std::string> fields = xfmr::fuzz::splitAtNul(data, size);
  fields.resize(15);
  xfmr::CompileOptions options;
  options.model = fields[0];
  options.output = fields[1];
  options.target = fields[2];
  options.cpu = fields[3];
  options.context = number(fields[4]);
  options.quantize = fields[5];
  options.quantizeOptions = fields[6];
  options.kvCache = fields[7];
  options.mlaCache = fields[8];
  options.mlaAbsorb = fields[9];
  options.moe = fields[10];
  options.kvWindow = number(fields[11]);
  options.kvSinks = number(fields[12]);
  options.optLevel = static_cast<unsigned>(number(fields[13]));
  options.weights = fields[14];
  llvm::consumeError(xfmr::validateCompileOptions(options));
  return 0;
}
