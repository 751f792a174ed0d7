#!/usr/bin/env bash
# Installs every Debian package xfmr needs to build and test (and, with --bench, to run
# the benchmarks). Idempotent: packages already present are skipped, so running it twice
# costs a second.
set -euo pipefail

PACKAGES=(
  # toolchain
  cmake ninja-build ccache g++ git
  # artifact checksums (XXH3, header-only use)
  libxxhash-dev
  # LLVM / MLIR 22 (Debian's libMLIR.so dylib, TableGen, FileCheck, lit)
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools clang-22 lld-22 libomp-22-dev
  libclang-rt-22-dev  # sanitizer runtimes (XFMR_ENABLE_SANITIZERS)
  # tokenizers: PCRE2 (pre-tokenizer regexes), SentencePiece models, utf8proc
  # (Unicode normalization); the SentencePiece Python module is the oracle of
  # the tokenizer tests
  libpcre2-dev libsentencepiece-dev libutf8proc-dev python3-sentencepiece pkg-config
  # chat templates: python3-jinja2 is the oracle of the template tests
  python3-jinja2
  # xfmr-serve: HTTP (cpp-httplib) and JSON (nlohmann) from Debian
  libcpp-httplib-dev nlohmann-json3-dev
  # C++ unit tests
  libgtest-dev googletest
  # Python bindings, reference implementation and tests
  python3 python3-dev python3-numpy python3-pytest pybind11-dev python3-pybind11
  python3-setuptools
  # GPU back ends: Vulkan (headers; Mesa's CPU driver lavapipe runs the SPIR-V
  # kernels in CI), SPIR-V validation, AMD device libraries (ocml/ockl)
  libvulkan-dev libvulkan1 mesa-vulkan-drivers spirv-tools rocm-device-libs
  # ARM64: the cross toolchain (and its glibc, which the compiler links
  # aarch64 model code against) and QEMU to run cross-built binaries in tests
  g++-aarch64-linux-gnu qemu-user-static
)

# Benchmarks compare against PyTorch eager and llama.cpp: `scripts/setup.sh --bench`
# adds PyTorch and what llama.cpp's gguf-py imports (bench/llama_cpp.py; it also
# needs python3-sentencepiece, installed for the tokenizer tests).
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(python3-torch python3-yaml)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
else
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The arm64 builds of the libraries the runtime's tokenizers link, for
# scripts/build-runtime.sh --arch aarch64: unpacked into a sysroot of their
# own rather than installed, because libsentencepiece-dev cannot be installed
# for two architectures at once (apt would remove the host's). Debian's arm64
# packages, fetched with apt (dpkg's arm64 architecture is enabled for that).
SYSROOT="${XFMR_AARCH64_SYSROOT:-/opt/xfmr/sysroot-aarch64}"
SYSROOT_PACKAGES=(libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2
                  libsentencepiece-dev libsentencepiece0)
if [ ! -f "$SYSROOT/.packages" ] ||
   [ "$(cat "$SYSROOT/.packages")" != "${SYSROOT_PACKAGES[*]}" ]; then
  echo "setup: unpacking the arm64 tokenizer libraries into $SYSROOT"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  $SUDO apt-get update -qq
  download=$(mktemp -d)
  chmod 777 "$download"
  (cd "$download" && apt-get download -qq "${SYSROOT_PACKAGES[@]/%/:arm64}")
  $SUDO mkdir -p "$SYSROOT"
  for deb in "$download"/*.deb; do
    $SUDO dpkg-deb -x "$deb" "$SYSROOT"
  done
  rm -rf "$download"
  echo "${SYSROOT_PACKAGES[*]}" | $SUDO tee "$SYSROOT/.packages" > /dev/null
fi
echo "setup: done"
