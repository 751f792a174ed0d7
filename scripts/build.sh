#!/usr/bin/env bash
# Configures (once) and builds xfmr into ./build with Ninja, two jobs, clang-22
# and ccache when present. Extra arguments are passed to ninja (targets).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${XFMR_BUILD_DIR:-build}
JOBS=${XFMR_JOBS:-2}

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  args=(-S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release)
  if command -v clang++-22 >/dev/null; then
    args+=(-DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22)
  fi
  if command -v ld.lld-22 >/dev/null; then
    args+=(-DLLVM_USE_LINKER=lld-22)
  fi
  if command -v ccache >/dev/null; then
    args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  cmake "${args[@]}" ${XFMR_CMAKE_ARGS:-}
fi
ninja -C "$BUILD_DIR" -j "$JOBS" "$@"
