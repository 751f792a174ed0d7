//===- Host.h - what this machine can run -----------------------*- C++ -*-===//
//
// An artifact's code is native code for one target triple and CPU. Loading it
// elsewhere would fail in dlopen with an obscure message, or crash on the
// first unsupported instruction, so the runtime checks the manifest's target
// against the host first and says what differs.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_HOST_H
#define XFMR_RUNTIME_HOST_H

#include <string>

namespace xfmr::runtime {

/// This machine's target triple from uname(2), e.g.
/// "x86_64-unknown-linux-gnu".
std::string hostTriple();

/// Why code for `triple` cannot run on this host (architecture or operating
/// system differ), or an empty string when it can. The vendor and
/// environment components are not compared.
std::string tripleMismatch(const std::string &triple);

/// Why code compiled for `cpu` (e.g. "x86-64-v3") with LLVM `features`
/// (e.g. "+avx2,+fma") cannot run on this CPU, or an empty string. CPU names
/// and features the runtime does not know are not checked.
std::string cpuMismatch(const std::string &cpu, const std::string &features);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_HOST_H
