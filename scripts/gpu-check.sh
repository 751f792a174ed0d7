#!/usr/bin/env bash
# The CUDA back end end to end on a real NVIDIA GPU, against the CPU back end.
#
#   scripts/gpu-check.sh prepare [DIR] [CHIP]   here (MLIR machine): compile each model for
#                                               the CPU and for cuda:CHIP (default sm_90;
#                                               "vulkan" checks the same path on lavapipe,
#                                               "mma-emulation"/"mfma-emulation" the NVIDIA/
#                                               AMD matrix-unit kernels there, products
#                                               emulated) into DIR (default build-gpucheck),
#                                               with xfmr-run; stays under 64 MiB
#   scripts/gpu-check.sh run [DIR]              on the GPU machine (no MLIR needed): run
#                                               every model on both, compare greedy ids and
#                                               logits, print one table
#   scripts/gpu-check.sh bench-prepare [DIR] [CHIP]   here: the speed benchmark's models
#                                               (Llama-3-8B bf16 and FP8, DeepSeek-V2-Lite
#                                               shapes), weights-stripped, into DIR (default
#                                               build-gpubench); see bench/gpu.py
#   scripts/gpu-check.sh bench [DIR]  (or --bench)   on the GPU machine: generate, pack and
#                                               time them against the copy bandwidth, cuBLAS
#                                               and transformers; print one table
#
# GPU-sized models do not fit the 64 MiB a device call carries: they travel weights-stripped
# (xfmr-compile --strip-weights), and `run` generates their synthetic checkpoint on the GPU
# machine (python/xfmr/synth.py, NumPy only) and binds it with xfmr-pack first.
#
# With the device tool: prepare here, then run with carry ["build-gpucheck"]; the run takes
# well under a minute after the machine starts. Exit status 1 if any model differs.
set -euo pipefail
cd "$(dirname "$0")/.."

command="${1:-}"
dir="${2:-build-gpucheck}"
chip="${3:-sm_90}"
gpu_target="cuda:$chip"
[ "$chip" = vulkan ] && gpu_target=vulkan
# "mma-emulation" / "mfma-emulation": the NVIDIA / AMD matrix-unit kernels on lavapipe,
# products emulated (a rehearsal of the CUDA check without a GPU; WarpProducts.cpp).
[[ "$chip" == mma-emulation || "$chip" == mfma-emulation ]] && gpu_target="vulkan:$chip"
# 80 ids < every vocab here (128): two 64-token tiles of the prefill linears and attention.
prompt_ids=$(seq 0 79 | awk '{printf "%s%d", (NR > 1 ? " " : ""), (37 * $1 + 11) % 120 + 3}')
export prompt_ids
# The first Python with NumPy (and, for the benchmark, PyTorch): on the GPU machine the
# plain python3 holds PyTorch; here Debian's /usr/bin/python3 has NumPy.
pick_python() {
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c "import numpy$1" 2> /dev/null; then echo "$candidate"; return; fi
  done
  echo python3
}
python=$(pick_python "")

case "$command" in
bench-prepare)
  "$python" bench/gpu.py prepare --dir "${2:-build-gpubench}" --chip "${3:-sm_90a}"
  ;;
bench|--bench)
  # Leaves the packed models in ${TMPDIR:-/tmp} only while each runs (about 40 GB at most).
  "$(pick_python ", torch")" bench/gpu.py run --dir "${2:-build-gpubench}"
  ;;
prepare)
  build="${XFMR_BUILD_DIR:-build}"
  rm -rf "$dir" && mkdir -p "$dir/models" "$dir/bin"
  cp "$build/bin/xfmr-run" "$build/bin/xfmr-pack" "$dir/bin/"
  # CPU model code links LLVM's OpenMP runtime, which the GPU machine lacks.
  mkdir -p "$dir/lib" && cp -L /usr/lib/llvm-22/lib/libomp.so.5 "$dir/lib/"
  # xfmr-run's tokenizers link PCRE2, utf8proc and libsentencepiece (with what those
  # need), which the GPU machine may lack as well.
  ldd "$build/bin/xfmr-run" | awk '/sentencepiece|pcre2|utf8proc|protobuf|absl/ {print $3}' |
    xargs -r cp -L -t "$dir/lib/"
  mkdir -p "$dir/stripped"
  wide="--set hidden_size=256 --set intermediate_size=512 --set num_attention_heads=4"
  wide+=" --set num_key_value_heads=2"
  # name | generator (synth arch and options, or a folder) | compile flags
  models=(
    "stories260K|../shared/models/stories260K|"
    "llama-bf16|llama --dtype bf16|"
    "llama-fp8|llama|--quantize fp8"
    "qwen2-f16-int8kv|qwen2 --dtype f16|--kv-cache int8"
    "mistral-window|mistral|"
    "llama-evicting-ring|llama|--kv-window 8 --kv-sinks 2"
    "mixtral|mixtral|"
    "deepseek-v3-fp8|deepseek_v3 --dtype fp8|"
    "deepseek-v3-fp8-latent-fp8kv|deepseek_v3 --dtype fp8|--mla-cache latent --kv-cache fp8"
    # Widths of whole stages: the prefill linears run on the matrix units (mma.sync, MFMA).
    "llama-mma-bf16|llama --dtype bf16 $wide|"
    "llama-mma-fp8|llama $wide|--quantize fp8"
    # bf16 experts: MoE prefill's grouped products on the matrix units too (a smaller
    # intermediate size keeps the artifacts to 1.5 MiB).
    "mixtral-mma-bf16|mixtral --dtype bf16 $wide --set intermediate_size=128|"
    # FP8 experts and activations: on sm_89/sm_90 and gfx942 the grouped products multiply
    # both operands' E4M3 codes on the FP8 units (one layer: see the fp8-activations check).
    "mixtral-mma-fp8|mixtral $wide --set intermediate_size=128 --set num_hidden_layers=1|--quantize fp8"
    # "-fast": both sides without --precise (bf16 inputs in the CPU's panel linears and in
    # the GPU's single-bf16 products, and the GPU's prefill attention on the matrix units).
    "llama-mma-bf16-fast|llama --dtype bf16 $wide|"
    # "-attention": f32 linears and, without --precise, prefill attention on the matrix
    # units (bf16 q, k, v and probabilities), against the float64 reference that rounds at
    # the same points (xfmr.reference.attention.use_matrix_tiles), computed here.
    "llama-mma-attention|llama $wide|"
    # "-latent-attention": MLA's latent attention on NVIDIA's matrix units (16 heads as the
    # products' rows, bf16 queries, entries and probabilities; FP8 codes and their scales),
    # prefill and decode, against the float64 reference that rounds at the same points
    # (use_latent_tiles). One layer: over two, the bf16 ties that the GPU and the
    # reference break differently add up (a median of 2-3e-4, over the check's 2e-4).
    "deepseek-v3-mma-latent-attention|deepseek_v3 --set kv_lora_rank=256 --set qk_rope_head_dim=64 --set num_attention_heads=16 --set num_hidden_layers=1|--mla-cache latent --kv-cache fp8"
    # "-wgmma": the same for cuda:sm_90a (H100 and H200 run it): the warpgroup products.
    "llama-mma-bf16-wgmma|llama --dtype bf16 $wide|"
    "llama-mma-fp8-wgmma|llama $wide|--quantize fp8"
  )
  for entry in "${models[@]}"; do
    IFS='|' read -r name source flags <<< "$entry"
    # Vulkan keeps f32 inputs either way: only the matrix units round them to bf16.
    [[ ( "$name" == *-fast || "$name" == *-attention ) && "$gpu_target" == vulkan ]] && continue
    # The latent decode's matrix-unit form is NVIDIA's only (AMD keeps the f32 SIMT one).
    [[ "$name" == *-latent-attention && ( "$gpu_target" == rocm* || "$gpu_target" == *mfma* ) ]] && continue
    model_target="$gpu_target"
    if [[ "$name" == *-wgmma ]]; then
      [[ "$gpu_target" == cuda:* ]] || continue
      model_target=cuda:sm_90a
    fi
    # FP8 activations round each input to a code: where the CPU's and the GPU's f32 sums
    # differ by an ulp next to a rounding boundary, one code moves by a step, and a
    # logit row by up to a few percent (seen on lavapipe). The comparison allows that.
    [[ "$flags" == *"--quantize fp8"* ]] && echo fp8-activations > "$dir/models/$name.check"
    # bf16 probabilities and queries in the GPU's prefill attention, f32 on the CPU: a few
    # 1e-3 on every row (the -attention model checks the rounding itself).
    [[ "$name" == *-fast ]] && echo bf16-attention > "$dir/models/$name.check"
    if [ -d "$source" ]; then
      checkpoint="$source"
    else
      checkpoint="$dir/checkpoints/$name"
      # shellcheck disable=SC2086
      PYTHONPATH=python "$python" -m xfmr.synth --arch $source --quiet --out "$checkpoint"
    fi
    if [[ "$name" == *-attention ]]; then
      # Tiles of 64 queries on NVIDIA, 32 on AMD.
      queries=64
      [[ "$gpu_target" == *mfma* ]] && queries=32
      PYTHONPATH=python "$python" - "$checkpoint" "$dir/models/$name.expected.npz" "$queries" "$name" <<'PYTHON'
import os, sys
import numpy as np
from xfmr import reference
from xfmr.reference.attention import use_latent_tiles, use_matrix_tiles
from xfmr.reference.kv_cache import use_latent_cache
model = reference.load(sys.argv[1])
if "latent" in sys.argv[4]:
    # Prefill from a latent cache stays f32 (SIMT); decode in chunks of 32 keys.
    use_latent_cache(model, "fp8")
    use_latent_tiles(model, 32)
else:
    use_matrix_tiles(model, queries=int(sys.argv[3]))
ids, rows = model.generate_greedy([int(i) for i in os.environ["prompt_ids"].split()], 32)
np.savez(sys.argv[2], ids=np.asarray(ids), rows=np.asarray(rows, np.float32))
PYTHON
    fi
    # Models with an emulation as their oracle need no CPU artifact (the set must stay
    # under the 64 MiB a device call carries, with the source tree).
    targets=(cpu "$model_target")
    [[ "$name" == *-attention ]] && targets=("$model_target")
    for target in "${targets[@]}"; do
      out="$dir/models/$name.${target%%:*}.xfmr"
      # --cpu x86-64-v2: the CPU artifacts run on the GPU machine's CPU. --precise: the
      # CPU keeps f32 activations in bf16 and FP8 linears, as the SIMT GPU kernels do, and
      # the GPU's bf16 matrix products keep about 16 bits of their input.
      precise="--precise"
      [[ "$name" == *-fast || "$name" == *-attention ]] && precise=""
      # shellcheck disable=SC2086
      "$build/bin/xfmr-compile" "$checkpoint" -o "$out" --target "$target" $flags $precise \
        --cpu x86-64-v2 2> "$dir/compile.log" || { cat "$dir/compile.log" >&2; exit 1; }
    done
  done
  # name | synth arch and options | compile flags: compiled weights-stripped, packed there.
  # (GPU_CHECK_STRIPPED replaces the list, e.g. with a small model to try the path here.)
  stripped_models=("${GPU_CHECK_STRIPPED:-llama-500m-bf16|llama --preset 500m --dtype bf16|}")
  for entry in "${stripped_models[@]}"; do
    IFS='|' read -r name source flags <<< "$entry"
    checkpoint="$dir/checkpoints/$name"
    # shellcheck disable=SC2086
    PYTHONPATH=python "$python" -m xfmr.synth --arch $source --quiet --out "$checkpoint"
    for target in cpu "$gpu_target"; do
      out="$dir/stripped/$name.${target%%:*}.xfmr"
      # shellcheck disable=SC2086
      "$build/bin/xfmr-compile" "$checkpoint" -o "$out" --target "$target" $flags --precise \
        --cpu x86-64-v2 --strip-weights 2> "$dir/compile.log" || { cat "$dir/compile.log" >&2; exit 1; }
    done
    echo "$source" > "$dir/stripped/$name.synth"
    rm -rf "$checkpoint"
  done
  rm -rf "$dir/checkpoints" "$dir/compile.log"
  cp scripts/gpu-check.sh "$dir/"
  echo "gpu-check: prepared $(du -sh "$dir" | cut -f1) in $dir for $gpu_target"
  ;;
run)
  [ -x "$dir/bin/xfmr-run" ] || { echo "gpu-check: $dir/bin/xfmr-run missing (prepare first)" >&2; exit 2; }
  LD_LIBRARY_PATH="$(cd "$dir" && pwd)/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader || true
  # Weights-stripped models: their checkpoints are generated here, then packed.
  for spec in "$dir"/stripped/*.synth; do
    [ -e "$spec" ] || continue
    name=$(basename "$spec" .synth)
    checkpoint="${TMPDIR:-/tmp}/gpu-check-$name"
    start=$SECONDS
    # shellcheck disable=SC2046
    PYTHONPATH=python "$python" -m xfmr.synth --arch $(cat "$spec") --quiet --out "$checkpoint"
    for stripped in "$dir/stripped/$name".*.xfmr; do
      "$dir/bin/xfmr-pack" --quiet "$stripped" "$checkpoint" -o "$dir/models/$(basename "$stripped")"
    done
    rm -rf "$checkpoint"
    echo "gpu-check: generated and packed $name in $((SECONDS - start)) s"
  done
  "$python" - "$dir" <<'PYTHON'
import json, os, subprocess, sys, time
from pathlib import Path
import numpy as np

root = Path(sys.argv[1])
run = str(root / "bin" / "xfmr-run")
prompt = os.environ["prompt_ids"]
rows, failed = [], False
# Each model's GPU artifact, its CPU one where the CPU is its oracle.
names = sorted({p.name.split(".")[0] for p in root.glob("models/*.xfmr")})
for name in names:
    cpu = root / "models" / f"{name}.cpu.xfmr"
    gpu = next(cpu.parent.glob(f"{name}.[!c]*.xfmr"), None) or cpu.with_name(f"{name}.cuda.xfmr")
    result = {}
    runs = (("cpu", cpu), ("gpu", gpu)) if cpu.exists() else (("gpu", gpu),)
    for label, artifact in runs:
        logits = root / f"{name}.{label}.npy"
        start = time.time()
        done = subprocess.run([run, str(artifact), "--prompt-ids", prompt, "-n", "32",
                               "--stats", "--dump-logits", str(logits)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            result[label] = {"error": done.stderr.strip().splitlines()[-1]}
            continue
        stats = json.loads(done.stderr.strip().splitlines()[-1])
        result[label] = {"ids": done.stdout.split(), "logits": np.load(logits),
                         "stats": stats, "wall": time.time() - start}
    cpu_r, gpu_r = result.get("cpu", {}), result["gpu"]
    if "error" in cpu_r or "error" in gpu_r:
        failed = True
        rows.append((name, "ERROR", "-", "-", "-", "-", "-",
                     gpu_r.get("error") or cpu_r.get("error")))
        continue
    # CUDA: the same run with each decode step replayed as a CUDA graph must give the
    # same ids and logits bit for bit (the same kernels in the same order).
    graphs = "-"
    if gpu.name.endswith(".cuda.xfmr"):
        logits = root / f"{name}.graphs.npy"
        done = subprocess.run([run, str(gpu), "--prompt-ids", prompt, "-n", "32",
                               "--dump-logits", str(logits)], capture_output=True, text=True,
                              env=dict(os.environ, XFMR_CUDA_GRAPHS="1"))
        graphs = ("same" if done.returncode == 0 and done.stdout.split() == gpu_r["ids"]
                  and np.array_equal(np.load(logits), gpu_r["logits"]) else "DIFFERS")
        failed |= graphs != "same"
    # The oracle: the CPU's run, or the float64 emulation of the GPU's scheme.
    expected_path = root / "models" / f"{name}.expected.npz"
    if expected_path.exists():
        expected = np.load(expected_path)
        oracle = {"ids": [str(i) for i in expected["ids"]], "logits": expected["rows"]}
    else:
        oracle = cpu_r
    same = oracle["ids"] == gpu_r["ids"]
    scale = np.max(np.abs(oracle["logits"]), axis=-1)
    errors = np.max(np.abs(gpu_r["logits"] - oracle["logits"]), axis=-1) / scale
    check_path = root / "models" / f"{name}.check"
    check = check_path.read_text().strip() if check_path.exists() else ""
    ids_text = "yes" if same else "no"
    if check == "bf16-attention" and not same:
        # Two schemes that round differently (bf16 attention on the GPU, f32 on the
        # CPU) may pick different tokens where the oracle's top two logits are closer
        # than the rounding moves them: then the runs are compared up to that token.
        first = next(i for i, (a, b) in enumerate(zip(oracle["ids"], gpu_r["ids"])) if a != b)
        top = np.sort(oracle["logits"][first])[-2:]
        if (top[1] - top[0]) / scale[first] < 2e-2:
            same, errors = True, errors[: first + 1]
            ids_text = f"to a tie at {first}"
    error = float(np.max(errors))
    if expected_path.exists():
        # Against its emulation: a bf16 tie rounds the other way now and then.
        ok = same and float(np.median(errors)) < 2e-4 and error < 2e-3
    elif check == "fp8-activations":
        # Most rows within 1e-3; one activation code that rounds the other way moves a
        # row by up to a few percent.
        ok = same and float(np.median(errors)) < 1e-3 and error < 5e-2
    elif check == "bf16-attention":
        ok = same and error < 2e-2
    else:
        # Every row within 1e-3.
        ok = same and error < 1e-3
    failed |= not ok
    s = gpu_r["stats"]
    rows.append((name, "ok" if ok else "DIFFERS", ids_text, graphs, f"{error:.2e}",
                 f"{s['prefill_tokens_per_s']:.0f}", f"{s['decode_tokens_per_s']:.0f}",
                 f"{s['device']}, {s['device_memory_bytes'] / 2**20:.1f} MiB, "
                 f"upload {s['weights_upload_seconds'] * 1e3:.1f} ms"))
header = ("model", "result", "ids = oracle", "graphs", "max rel logit err", "prefill tok/s",
          "decode tok/s", "device")
widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
for r in [header, tuple("-" * w for w in widths)] + rows:
    print(" | ".join(str(v).ljust(w) for v, w in zip(r, widths)))
sys.exit(1 if failed else 0)
PYTHON
  ;;
*)
  sed -n '2,28p' "$0" >&2
  exit 2
  ;;
esac
