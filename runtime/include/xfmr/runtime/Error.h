//===- Error.h - the runtime's one exception type ---------------*- C++ -*-===//
//
// Every runtime failure (bad file, bad manifest, bad input, failed load) is an
// `Error`. Its message names the file, field or value at fault; the Python
// bindings turn it into a Python exception, xfmr-run prints it.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_ERROR_H
#define XFMR_RUNTIME_ERROR_H

#include <stdexcept>
#include <string>

namespace xfmr::runtime {

/// The exception thrown by every runtime API on invalid input or I/O failure.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_ERROR_H
