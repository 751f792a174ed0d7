#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every
# test (lit + FileCheck, GoogleTest units, pytest) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build.sh
cd "${XFMR_BUILD_DIR:-build}"
ctest --output-on-failure -j "${XFMR_JOBS:-2}" "$@"
