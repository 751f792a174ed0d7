#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and runs the
# main job on the built-in default model. Today that is the graph pipeline
# (xfmr-graph-opt) over the sample Llama decoder layer in examples/: the IR is
# parsed, verified, optimized and printed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build.sh xfmr-opt
MODEL=${1:-examples/llama-decoder-layer.mlir}
echo "== xfmr-opt --xfmr-graph-opt $MODEL" >&2
"${XFMR_BUILD_DIR:-build}/bin/xfmr-opt" "$MODEL" --xfmr-graph-opt
