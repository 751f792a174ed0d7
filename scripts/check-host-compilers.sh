#!/usr/bin/env bash
# The host-compiler stage of scripts/test.sh: the IR and code xfmr emits must
# not depend on the C++ compiler that built it. Builds xfmr with GCC 12 into
# ./build-gcc, runs its unit and lit tests, then compiles a set of models
# (every architecture; FP8; KV-cache types; eviction; MoE forms; MLA caches
# and folding) with the GCC and the clang builds and requires byte-identical
# artifacts, and identical imported IR.
# Usage: scripts/check-host-compilers.sh [CLANG_BUILD_DIR]  (default ./build)
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG_DIR=${1:-${XFMR_BUILD_DIR:-build}}
GCC_DIR=${XFMR_GCC_BUILD_DIR:-build-gcc}
start=$(date +%s)

if [ ! -f "$GCC_DIR/build.ninja" ]; then
  args=(-S . -B "$GCC_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
        -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ -DXFMR_ENABLE_PYTHON=OFF)
  if command -v ccache >/dev/null; then
    args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  cmake "${args[@]}"
fi
ninja -C "$GCC_DIR" -j "${XFMR_JOBS:-2}"
# Both builds must be of this commit: artifacts record the version string.
ninja -C "$CLANG_DIR" -j "${XFMR_JOBS:-2}" xfmr-compile xfmr-import
echo "host compilers: GCC build done in $(( $(date +%s) - start )) s"

for test in XfmrDialectTests XfmrImportTests XfmrLoweringTests XfmrRuntimeTests; do
  "$GCC_DIR/bin/$test" --gtest_brief=1
done
/usr/lib/llvm-22/bin/lit -q "$GCC_DIR/test"
echo "host compilers: GCC unit and lit tests passed ($(( $(date +%s) - start )) s)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH=$PWD/python
synth() { /usr/bin/python3 -m xfmr.synth --arch "$1" --quiet --out "$work/$1" "${@:2}"; }
for arch in llama mistral qwen2 mixtral; do synth "$arch"; done
synth deepseek_v3 --mtp
stories=../shared/models/stories260K

failed=0
compare() {
  local name=$1; shift
  "$CLANG_DIR/bin/xfmr-compile" "$@" -o "$work/$name.clang.xfmr" 2>/dev/null
  "$GCC_DIR/bin/xfmr-compile" "$@" -o "$work/$name.gcc.xfmr" 2>/dev/null
  if cmp -s "$work/$name.clang.xfmr" "$work/$name.gcc.xfmr"; then
    echo "  identical  $name"
  else
    echo "  DIFFERENT  $name"
    failed=1
  fi
}
for arch in llama mistral qwen2 mixtral deepseek_v3; do
  compare "$arch" "$work/$arch" --context 64
  compare "$arch-fp8" "$work/$arch" --context 64 --quantize fp8
done
compare llama-w8a8 "$work/llama" --context 64 --quantize int8
compare deepseek-w8a8 "$work/deepseek_v3" --context 64 --quantize int8
compare llama-kv-int8 "$work/llama" --context 64 --kv-cache int8
compare llama-kv-fp8 "$work/llama" --context 64 --kv-cache fp8
compare llama-evict "$work/llama" --context 64 --kv-window 16 --kv-sinks 4
compare mixtral-dense "$work/mixtral" --context 64 --moe dense
compare mixtral-sparse-prefill "$work/mixtral" --context 64 --moe sparse-prefill
compare deepseek-latent-fp8 "$work/deepseek_v3" --context 64 --mla-cache latent --kv-cache fp8
compare deepseek-folded "$work/deepseek_v3" --context 64 --mla-cache latent --mla-absorb compile-time
compare deepseek-latent-int8-evict "$work/deepseek_v3" --context 64 --mla-cache latent --kv-cache int8 --kv-window 16
# GPU targets: host code, PTX/cubin, AMD code object and SPIR-V, all in one artifact.
compare deepseek-fp8-gpus "$work/deepseek_v3" --context 64 --quantize fp8 \
  --target cuda:sm_90,rocm:gfx942,vulkan
compare llama-int8kv-gpus "$work/llama" --context 64 --target cuda:sm_90a,vulkan --kv-cache int8
if [ -d "$stories" ]; then
  compare stories260k "$stories"
fi
"$CLANG_DIR/bin/xfmr-import" "$work/deepseek_v3" --mtp > "$work/mtp.clang.mlir"
"$GCC_DIR/bin/xfmr-import" "$work/deepseek_v3" --mtp > "$work/mtp.gcc.mlir"
if cmp -s "$work/mtp.clang.mlir" "$work/mtp.gcc.mlir"; then
  echo "  identical  deepseek_v3 --mtp IR"
else
  echo "  DIFFERENT  deepseek_v3 --mtp IR"
  failed=1
fi
if [ "$failed" -ne 0 ]; then
  echo "host compilers: GCC and clang builds emit different artifacts: some code builds IR in"
  echo "two arguments of one call (scripts/check-ir-build-order.py finds such calls)"
  exit 1
fi
echo "host compilers: byte-identical artifacts; done in $(( $(date +%s) - start )) s"
