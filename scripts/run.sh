#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, compiles the
# built-in default model to one artifact, generates from it, and checks the
# result against the NumPy reference.
#
# The default model is stories260K (../shared/models) when present, else a
# small synthetic Llama the project generates deterministically (seed 0).
# Pass a checkpoint folder to use another model: scripts/run.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build.sh xfmr-compile xfmr-run
BUILD=${XFMR_BUILD_DIR:-build}
PY=/usr/bin/python3
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"

MODEL=${1:-}
if [ -z "$MODEL" ]; then
  if [ -f ../shared/models/stories260K/config.json ]; then
    MODEL=../shared/models/stories260K
  else
    MODEL="$BUILD/default-model"
    if [ ! -f "$MODEL/config.json" ]; then
      echo "== ../shared/models/stories260K not found; generating a synthetic Llama in $MODEL" >&2
      $PY -m xfmr.synth --arch llama --preset small --seed 0 --out "$MODEL"
    fi
  fi
fi
PROMPT=${XFMR_PROMPT:-1}
N=${XFMR_NEW_TOKENS:-63}
ARTIFACT="$BUILD/default.xfmr"

echo "== xfmr-compile $MODEL -o $ARTIFACT" >&2
"$BUILD/bin/xfmr-compile" "$MODEL" -o "$ARTIFACT"
echo "== xfmr-run $ARTIFACT --prompt-ids \"$PROMPT\" -n $N --stats" >&2
IDS=$("$BUILD/bin/xfmr-run" "$ARTIFACT" --prompt-ids "$PROMPT" -n "$N" \
        --dump-logits "$BUILD/default-logits.npy" --stats 2> "$BUILD/default-stats.json")
echo "generated ids: $IDS"
$PY scripts/compare_reference.py "$MODEL" "$PROMPT" "$IDS" "$BUILD/default-logits.npy"
$PY - "$BUILD/default-stats.json" <<'PYEOF'
import json, sys
stats = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"speed: prefill {stats['prefill_tokens_per_s']:.0f} tok/s, decode {stats['decode_tokens_per_s']:.0f} tok/s "
      f"on {stats['threads']} threads; weights {stats['weights_bytes'] / 2**20:.1f} MiB, "
      f"KV cache {stats['kv_cache_bytes_per_token']} bytes/token, peak RSS {stats['peak_rss_bytes'] / 2**20:.0f} MiB")
PYEOF
