//===- ArtifactFuzzer.cpp - the artifact loader's checks ------------------===//
//
// Header, sections, checksums, manifest and target checks of
// runtime::Artifact on an image in memory; the code is never loaded (dlopen
// runs an artifact's code: that is the trust boundary, see
// docs/reliability.md). The manifest is reached without the checksums first,
// since a fuzzer cannot keep them valid.
//
//===----------------------------------------------------------------------===//

#include "FuzzTarget.h"

#include "xfmr/runtime/Artifact.h"
#include "xfmr/runtime/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (bool verify : {false, true}) {
    xfmr::runtime::OpenOptions options;
    options.verifyChecksums = verify;
    try {
      xfmr::runtime::Artifact::checkImage(data, size, "fuzz.xfmr", options);
    } catch (const xfmr::runtime::Error &) {
    }
  }
  return 0;
}
