#!/usr/bin/env bash
# Builds the runtime and xfmr-run alone (no MLIR or LLVM), for this machine or
# cross-compiled for another architecture:
#   scripts/build-runtime.sh [--arch aarch64] [--build-dir DIR]
# --arch aarch64 uses cmake/toolchains/aarch64-linux-gnu.cmake and builds into
# build-aarch64/ (build-aarch64/bin/xfmr-run). The shared libraries xfmr-run
# needs besides glibc (libstdc++, libgcc_s, PCRE2, utf8proc, SentencePiece)
# are copied into DIR/lib, which xfmr-run's RPATH names: copy bin/ and lib/
# to a device with glibc 2.36 or newer and run bin/xfmr-run.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=""
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --build-dir) dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "build-runtime: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
args=()
case "$arch" in
  ""|host) dir="${dir:-build-runtime}" ;;
  aarch64)
    dir="${dir:-build-aarch64}"
    for tool in aarch64-linux-gnu-g++ pkg-config; do
      if ! command -v "$tool" > /dev/null; then
        echo "build-runtime: $tool not found (scripts/setup.sh installs the cross toolchain)" >&2
        exit 1
      fi
    done
    args+=(-DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/aarch64-linux-gnu.cmake") ;;
  *) echo "build-runtime: unknown --arch '$arch' (supported: aarch64)" >&2; exit 2 ;;
esac
launcher=()
if command -v ccache > /dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DXFMR_RUNTIME_ONLY=ON \
  "${launcher[@]}" "${args[@]}" > "$dir.configure.log" 2>&1 || {
  cat "$dir.configure.log" >&2
  exit 1
}
rm -f "$dir.configure.log"
ninja -C "$dir" -j "${XFMR_JOBS:-2}" xfmr-run

# Ship every library xfmr-run needs (transitively) that is not glibc's.
triple=$(case "$arch" in aarch64) echo aarch64-linux-gnu ;; *) gcc -dumpmachine ;; esac)
search=(/usr/lib/"$triple" /lib/"$triple" /usr/"$triple"/lib)
if [ "$arch" = aarch64 ]; then
  sysroot="${XFMR_AARCH64_SYSROOT:-/opt/xfmr/sysroot-aarch64}"
  search=("$sysroot/usr/lib/$triple" "$sysroot/lib/$triple" /usr/"$triple"/lib)
fi
mkdir -p "$dir/lib"
pending=("$dir/bin/xfmr-run")
while [ ${#pending[@]} -gt 0 ]; do
  file="${pending[0]}"
  pending=("${pending[@]:1}")
  for needed in $(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    case "$needed" in
      libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*) continue ;;
    esac
    [ -e "$dir/lib/$needed" ] && continue
    found=""
    for d in "${search[@]}"; do
      if [ -e "$d/$needed" ]; then found="$d/$needed"; break; fi
    done
    if [ -z "$found" ]; then
      echo "build-runtime: $needed (needed by $file) not found in ${search[*]}" >&2
      exit 1
    fi
    cp -L "$found" "$dir/lib/$needed"
    pending+=("$dir/lib/$needed")
  done
done
echo "build-runtime: $dir/bin/xfmr-run, with $(ls "$dir/lib" | tr '\n' ' ')in $dir/lib"
