//===- RunOptionsFuzzer.cpp - xfmr-run's command line ---------------------===//
//
// The input is an argument vector, arguments separated by NUL bytes.
//
//===----------------------------------------------------------------------===//

#include "FuzzTarget.h"

#include "RunOptions.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::vector<std::string> args = xfmr::fuzz::splitAtNul(data, size);
  try {
    xfmr::run::parseRunOptions(args);
  } catch (const xfmr::run::UsageError &) {
  }
  try {
    xfmr::run::parseIds(std::string(reinterpret_cast<const char *>(data), size));
  } catch (const xfmr::run::UsageError &) {
  }
  return 0;
}
