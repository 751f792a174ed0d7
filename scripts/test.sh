#!/usr/bin/env bash
# The README's test command (and CI's, .ci/run): installs what is missing,
# builds, and runs every test in three stages:
#   1. the main build (clang, ./build): lit + FileCheck, GoogleTest, pytest,
#      fuzz-target replays, the IR build-order check (through ctest);
#   2. scripts/sanitize.sh: ASan + UBSan build (./build-asan): unit, lit and
#      tool tests under the sanitizers, fuzz replays and bounded fuzzing;
#   3. scripts/check-host-compilers.sh: GCC 12 build (./build-gcc): unit and
#      lit tests, and byte-identical artifacts from the GCC and clang builds.
# `scripts/test.sh --quick` runs stage 1 only; extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
start=$(date +%s)
bash scripts/setup.sh
bash scripts/build.sh
(cd "${XFMR_BUILD_DIR:-build}" && ctest --output-on-failure -j "${XFMR_JOBS:-2}" "$@")
echo "test: main build passed ($(( $(date +%s) - start )) s)"
if [ "$quick" -eq 1 ]; then
  exit 0
fi
bash scripts/sanitize.sh
echo "test: sanitizer stage passed ($(( $(date +%s) - start )) s)"
bash scripts/check-host-compilers.sh "${XFMR_BUILD_DIR:-build}"
echo "test: all stages passed in $(( $(date +%s) - start )) s"
