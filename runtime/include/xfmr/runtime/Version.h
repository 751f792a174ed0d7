//===- Version.h - which xfmr this is ---------------------------*- C++ -*-===//
//
// One version string for every tool's --version, the artifact manifest's
// "compiler" field and the Python package: "xfmr <version> (<commit>)". The
// version is the CMake project's (and xfmr.__version__); the commit is the
// git revision the build was made from ("unknown" outside a checkout).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_VERSION_H
#define XFMR_RUNTIME_VERSION_H

namespace xfmr::runtime {

/// "0.1.0"
const char *versionNumber();
/// The abbreviated git commit, or "unknown".
const char *versionCommit();
/// "xfmr 0.1.0 (4f3c2a1b9d0e)"
const char *versionString();

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_VERSION_H
