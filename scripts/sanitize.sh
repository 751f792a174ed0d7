#!/usr/bin/env bash
# The sanitizer stage of scripts/test.sh: builds xfmr with AddressSanitizer +
# UBSan (clang, -O1, every UBSan finding fatal) and libFuzzer targets into
# ./build-asan, then runs under the sanitizers:
#   - every GoogleTest unit test,
#   - every lit test (the tools end to end: import, compile, run, errors),
#   - the pytest tests that drive the command-line tools (outputs, CLI, e2e
#     through xfmr-compile/xfmr-run; tests that need the Python extension are
#     skipped: an ASan module cannot load into Debian's python3),
#   - every fuzz target on its seeds and regression inputs, then each for
#     XFMR_FUZZ_SECONDS (default 15) of fuzzing, XFMR_JOBS (2) at a time.
# Safe to re-run; a second run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${XFMR_ASAN_BUILD_DIR:-build-asan}
FUZZ_SECONDS=${XFMR_FUZZ_SECONDS:-15}
start=$(date +%s)

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  args=(-S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
        "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG"
        -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22
        -DLLVM_USE_LINKER=lld-22 -DXFMR_ENABLE_SANITIZERS=ON)
  if command -v ccache >/dev/null; then
    args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  cmake "${args[@]}"
fi
ninja -C "$BUILD_DIR" -j "${XFMR_JOBS:-2}"
echo "sanitize: built in $(( $(date +%s) - start )) s"

# allow_user_poisoning=0: LLVM's BumpPtrAllocator poisons fresh slabs when
# compiled with ASan (our code) and does not unpoison what it hands out when
# compiled without (Debian's libMLIR.so), so a slab shared by both reads as
# "use-after-poison" in MLIR's own code. Leaks are reported.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allow_user_poisoning=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for test in XfmrDialectTests XfmrImportTests XfmrLoweringTests XfmrRuntimeTests; do
  "$BUILD_DIR/bin/$test" --gtest_brief=1
done
echo "sanitize: unit tests passed ($(( $(date +%s) - start )) s)"

/usr/lib/llvm-22/bin/lit -q "$BUILD_DIR/test"
echo "sanitize: lit tests passed ($(( $(date +%s) - start )) s)"

# Two pytest processes side by side (one a core), each with its own temporary
# folder and log; both logs are printed, and either failing fails the stage.
pytest_group() {
  local name=$1
  shift
  XFMR_BUILD_DIR="$BUILD_DIR" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    --basetemp="$BUILD_DIR/pytest-tmp/$name" "$@" > "$BUILD_DIR/pytest-$name.log" 2>&1
}
mkdir -p "$BUILD_DIR/pytest-tmp"
rm -f "$BUILD_DIR"/pytest-*.log
pytest_group tools \
  test/python/test_cli.py test/python/test_e2e_cpu.py test/python/test_e2e_kv_eviction.py \
  test/python/test_perplexity.py \
  "test/python/test_tokenize.py::test_gpt2_known_encodings" \
  "test/python/test_tokenize.py::test_gpt2_round_trips_exactly" \
  "test/python/test_tokenize.py::test_errors" \
  "test/python/test_run_text.py::test_text_prompt_and_streamed_text_match_the_ids" \
  "test/python/test_run_text.py::test_end_of_sequence_and_stop_strings_stop_generation" \
  "test/python/test_run_text.py::test_text_errors" &
tools=$!
# xfmr-pack reads untrusted artifacts and checkpoints: its error paths too.
{ pytest_group outputs test/python/test_outputs.py test/python/test_e2e_moe.py \
    test/python/test_bench_tool.py &&
  pytest_group pack test/python/test_pack.py -k "errors or usage or does_not_run or refit or stories"; } &
outputs=$!
status=0
wait "$tools" || status=1
wait "$outputs" || status=1
for log in tools outputs pack; do
  if [ -f "$BUILD_DIR/pytest-$log.log" ]; then
    echo "pytest ($log): $(tail -n 1 "$BUILD_DIR/pytest-$log.log")"
    [ "$status" -eq 0 ] || tail -n 80 "$BUILD_DIR/pytest-$log.log"
  fi
done
if [ "$status" -ne 0 ]; then
  echo "sanitize: tool tests failed (logs: $BUILD_DIR/pytest-*.log)"
  exit 1
fi
echo "sanitize: tool tests passed ($(( $(date +%s) - start )) s)"

PYTHONPATH=python /usr/bin/python3 test/fuzz/run_fuzzers.py --bin "$BUILD_DIR/bin" \
  --work "$BUILD_DIR/fuzz" --replay --fuzz "$FUZZ_SECONDS" --jobs "${XFMR_JOBS:-2}"
echo "sanitize: fuzzing passed; done in $(( $(date +%s) - start )) s"
