//===- Version.cpp - which xfmr this is -----------------------------------===//

#include "xfmr/runtime/Version.h"

#include "XfmrVersion.inc" // Generated: XFMR_VERSION, XFMR_COMMIT.

const char *xfmr::runtime::versionNumber() { return XFMR_VERSION; }

const char *xfmr::runtime::versionCommit() { return XFMR_COMMIT; }

const char *xfmr::runtime::versionString() {
  return "xfmr " XFMR_VERSION " (" XFMR_COMMIT ")";
}
