//===- FuzzTarget.h - what every xfmr fuzz target includes ------*- C++ -*-===//
//
// Each fuzz target defines LLVMFuzzerTestOneInput. Built with
// -fsanitize=fuzzer (XFMR_ENABLE_FUZZERS, clang) it is a libFuzzer binary;
// otherwise it links ReplayMain.cpp and runs the inputs it is given once
// each, which is how every build replays the seeds and the regression inputs
// (test/fuzz/run_fuzzers.py).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TEST_FUZZ_FUZZTARGET_H
#define XFMR_TEST_FUZZ_FUZZTARGET_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

namespace xfmr::fuzz {

/// Splits an input at NUL bytes: the arguments of a command line.
inline std::vector<std::string> splitAtNul(const uint8_t *data, size_t size) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0)
      parts.emplace_back();
    else
      parts.back() += static_cast<char>(data[i]);
  }
  if (parts.back().empty())
    parts.pop_back();
  return parts;
}

} // namespace xfmr::fuzz

#endif // XFMR_TEST_FUZZ_FUZZTARGET_H
