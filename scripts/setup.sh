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

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
