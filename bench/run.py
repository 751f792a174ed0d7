"""xfmr's CPU benchmark: prefill and decode tokens/s against the memory
bandwidth roofline measured in the same run and against PyTorch eager (same
checkpoint, same threads). Writes the results to docs/performance.md.

Usage: /usr/bin/python3 bench/run.py [--threads 2] [--quick]
       /usr/bin/python3 bench/run.py --baseline OTHER_BUILD/bin [--quick]
Needs a build (scripts/build.sh) and python3-torch (scripts/setup.sh --bench).
With --baseline, compares this build with another (e.g. before a change) on
the same checkpoints in the same run instead: both compile each model, their
runs alternate, and the best of --repeats runs per build is kept; writes
bench/compare.json and prints the table (docs/performance.md is left alone).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("XFMR_BUILD_DIR", REPO / "build"))
BIN = BUILD / "bin"
MODELS = BUILD / "bench-models"
PY = "/usr/bin/python3"
ENV = dict(os.environ, PYTHONPATH=str(REPO / "python"))


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True,
                          env=ENV, **kwargs)


def checkpoint(name, arch, preset, dtype):
    folder = MODELS / name
    if not (folder / "config.json").exists():
        log(f"generating {name} ({arch} {preset} {dtype})")
        run([PY, "-m", "xfmr.synth", "--arch", arch, "--preset", preset, "--dtype", dtype,
             "--seed", "0", "--out", folder])
    return folder


def bandwidth(threads):
    return json.loads(run([BIN / "xfmr-bandwidth", threads, 1024]).stdout)["read_gb_per_s"]


def xfmr_stats(artifact, prompt, new_tokens, threads, bin_dir=BIN):
    ids = " ".join(str((7 * i + 3) % 500) for i in range(prompt))
    result = run([bin_dir / "xfmr-run", artifact, "--prompt-ids", ids, "-n", new_tokens,
                  "--threads", threads, "--stats"])
    return json.loads(result.stderr.strip().splitlines()[-1])


def measure(name, folder, threads, prompt, decode, cpu, peer, flags=()):
    artifact = MODELS / f"{name}.xfmr"
    begin = time.perf_counter()
    run([BIN / "xfmr-compile", folder, "-o", artifact, "--cpu", cpu,
         "--context", prompt + decode + 16, *flags])
    compile_seconds = time.perf_counter() - begin
    log(f"{name}: compiled in {compile_seconds:.1f} s")
    prefill = xfmr_stats(artifact, prompt, 1, threads)
    gbps = bandwidth(threads)
    decode_stats = xfmr_stats(artifact, 16, decode + 1, threads)
    gbps = max(gbps, bandwidth(threads))
    weights = decode_stats["weights_bytes"]
    roofline = gbps * 1e9 / weights
    row = {
        "model": name, "threads": threads, "compile_seconds": compile_seconds,
        "weights_bytes": weights, "parameter_count": decode_stats["parameter_count"],
        "read_gb_per_s": gbps, "prefill_tokens": prompt,
        "prefill_tokens_per_s": prefill["prefill_tokens_per_s"],
        "decode_tokens_per_s": decode_stats["decode_tokens_per_s"],
        "roofline_tokens_per_s": roofline,
        "roofline_fraction": decode_stats["decode_tokens_per_s"] / roofline,
    }
    if peer:
        log(f"{name}: PyTorch eager {peer}")
        torch = json.loads(run([PY, REPO / "bench" / "torch_llama.py", folder, "--dtype", peer,
                                "--threads", threads, "--prompt", prompt,
                                "--decode", decode]).stdout)
        row["torch"] = torch
        row["prefill_vs_torch"] = row["prefill_tokens_per_s"] / torch["prefill_tokens_per_s"]
        row["decode_vs_torch"] = row["decode_tokens_per_s"] / torch["decode_tokens_per_s"]
    log(f"{name}: prefill {row['prefill_tokens_per_s']:.0f} tok/s, decode "
        f"{row['decode_tokens_per_s']:.1f} tok/s = {row['roofline_fraction']:.2f} of "
        f"{roofline:.1f} tok/s roofline ({gbps:.1f} GB/s)")
    return row


GEMM_MODULE = """module attributes {{xfmr.model = {{architecture = "gemm", vocab_size = {n} : i64,
    hidden_size = {k} : i64, num_layers = 0 : i64, context_length = {context} : i64}}}} {{
  func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x{n}xf32>
      attributes {{xfmr.entry = "prefill"}} {{
    %e = xfmr.weight "embed" : tensor<{n}x{k}xf32>
    %x = xfmr.embedding %e[%ids] : tensor<{n}x{k}xf32>, tensor<?xi32> -> tensor<?x{k}xf32>
    %w = xfmr.weight "w" : tensor<{n}x{k}x{dtype}>
    %y = xfmr.linear %x, %w : tensor<?x{k}xf32>, tensor<{n}x{k}x{dtype}> -> tensor<?x{n}xf32>
    return %y : tensor<?x{n}xf32>
  }}
  func.func @decode(%ids: tensor<1xi32>, %start: index) -> tensor<1x{n}xf32>
      attributes {{xfmr.entry = "decode"}} {{
    %e = xfmr.weight "embed" : tensor<{n}x{k}xf32>
    %x = xfmr.embedding %e[%ids] : tensor<{n}x{k}xf32>, tensor<1xi32> -> tensor<1x{k}xf32>
    %w = xfmr.weight "w" : tensor<{n}x{k}x{dtype}>
    %y = xfmr.linear %x, %w : tensor<1x{k}xf32>, tensor<{n}x{k}x{dtype}> -> tensor<1x{n}xf32>
    return %y : tensor<1x{n}xf32>
  }}
}}
"""


def cpu_peak_gflops(threads):
    """The arithmetic peaks of the cores, measured from the instruction rates by
    xfmr-peak (12 independent chains per thread of 512-bit f32 FMAs, and of AVX512-BF16
    dot products where the CPU has them): {"f32": GFLOP/s, "bf16": GFLOP/s or None}.
    VMs report their base clock in /proc/cpuinfo, not the clock the cores run at."""
    peak = json.loads(run([BIN / "xfmr-peak", threads]).stdout)
    return {"f32": peak["f32_fma_gflops"], "bf16": peak["bf16_dot_gflops"],
            "int8": peak.get("int8_dot_gops")}


def gemm(threads, cpu, tokens=512, n=4096, k=4096):
    """One prefill-sized linear [tokens, k] x [n, k]^T, bf16 and FP8 weights."""
    sys.path.insert(0, str(REPO / "python"))
    import numpy as np
    from xfmr.safetensors import save_file
    folder = MODELS / "gemm"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if not (folder / "model.safetensors").exists():
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        save_file(str(folder / "model.safetensors"),
                  {"embed": rng.standard_normal((n, k)).astype(np.float32),
                   "w": ("BF16", w)})
        (folder / "config.json").write_text("{}")
    rows = []
    for label, flags in [("bf16", []), ("fp8 (E4M3 128x128, activations 1x128)",
                                        ["--quantize", "fp8"]),
                         ("int8 W8A8 (per channel, activations per token)",
                          ["--quantize", "int8"])]:
        source = MODELS / "gemm.mlir"
        source.write_text(GEMM_MODULE.format(n=n, k=k, context=tokens + 16, dtype="bf16"))
        artifact = MODELS / "gemm.xfmr"
        run([BIN / "xfmr-compile", source, "--weights", folder, "-o", artifact, "--cpu", cpu,
             *flags])
        # Warm runs (xfmr-bench's warm-up pass faults the buffers in), the best counts:
        # one cold process per run would time first touches, not the GEMM.
        bench_rows = json.loads(run([BIN / "xfmr-bench", artifact, "-p", tokens, "-n", 0,
                                     "-r", 5, "-t", threads, "-o", "json"]).stdout)
        best = max(bench_rows[0]["samples_ts"])
        gflops = 2.0 * n * k * best / 1e9
        # CPU-only artifacts multiply bf16 (and FP8, widened to bf16) weights by bf16
        # activations with the CPU's bf16 dot products where it has them, else f32 FMAs.
        peaks = cpu_peak_gflops(threads)
        unit = "bf16" if peaks["bf16"] else "f32"
        # W8A8 multiplies int8 codes with the CPU's int8 dot products (VNNI).
        if "int8" in label and peaks["int8"]:
            unit = "int8"
        rows.append({"weights": label, "tokens": tokens, "n": n, "k": k,
                     "gflops": gflops, "peak_gflops": peaks[unit], "peak_unit": unit,
                     "fraction_of_peak": gflops / peaks[unit]})
        log(f"gemm {label}: {gflops:.0f} GFLOP/s = {rows[-1]['fraction_of_peak']:.2f} of peak")
    return rows


#: Long-context settings: (label, xfmr-compile flags, cache entries or None for all).
LONG_CONTEXT_SETTINGS = [
    ("f32", ["--kv-cache", "f32"], None),
    ("bf16", ["--kv-cache", "bf16"], None),
    ("fp8", ["--kv-cache", "fp8"], None),
    ("int8", ["--kv-cache", "int8"], None),
    ("f32, evict: 4 sinks + 508 window", ["--kv-window", "508", "--kv-sinks", "4"], 512),
    ("int8, evict: 4 sinks + 508 window",
     ["--kv-cache", "int8", "--kv-window", "508", "--kv-sinks", "4"], 512),
]


def long_context(threads, cpu, prompt=4000, decode=32):
    """Decode at a long context for each KV-cache setting, on a model whose cache traffic
    outweighs its weights (Llama 'small': 13 MB of weights, 8 KB of f32 cache per token).
    Evicting caches hold a fixed number of entries, whatever the position."""
    folder = checkpoint("llama-small-bf16", "llama", "small", "bf16")
    rows = []
    for index, (label, flags, entries) in enumerate(LONG_CONTEXT_SETTINGS):
        artifact = MODELS / f"long-{index}.xfmr"
        run([BIN / "xfmr-compile", folder, "-o", artifact, "--cpu", cpu,
             "--context", prompt + decode + 16, *flags])
        stats = xfmr_stats(artifact, prompt, decode + 1, threads)
        rows.append({"kv_cache": label, "context": prompt,
                     "cache_entries": entries or prompt,
                     "kv_cache_bytes_per_token": stats["kv_cache_bytes_per_token"],
                     "decode_tokens_per_s": stats["decode_tokens_per_s"],
                     "weights_bytes": stats["weights_bytes"]})
        log(f"long context {label}: {stats['decode_tokens_per_s']:.1f} tok/s at {prompt} "
            f"tokens, {stats['kv_cache_bytes_per_token']} B/token")
    return rows


def write_markdown(rows, args, gemm_rows=(), long_rows=()):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        "# Performance",
        "",
        "Measured by `bench/run.py` (numbers below are from its last run; re-run it to refresh).",
        f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()};",
        f"{args.threads} threads; code compiled with `--cpu {args.cpu}`; "
        f"{datetime.date.today().isoformat()}.",
        "",
        "Decode reads every weight once per token, so its ceiling is the machine's read bandwidth",
        "divided by the weight bytes: the *roofline*, measured in the same run with",
        "`xfmr-bandwidth` (all threads streaming a 1 GiB buffer; these VMs swing, so the best of",
        "two probes around the decode run is used). The peer is PyTorch eager (Debian's",
        "python3-torch 1.13, oneDNN for bf16) on the same checkpoint and thread count",
        "(`bench/torch_llama.py`); PyTorch's f32 matmuls use Debian's reference BLAS, so f32 has",
        "no PyTorch column. A fraction above 1 means the probe caught a slower moment than",
        "the decode run did: compare rows of one run, and re-run for stable figures.",
        "FP8 decode reads 60% of bf16's bytes but widens every weight in registers; on 2",
        "cores that conversion caps it near 52 tok/s, so it beats bf16 when bandwidth is",
        "scarce (1.74x at 32 GB/s in an earlier run) and ties it when bandwidth is plentiful.",
        "",
        "| model | weights | compile | prefill tok/s | decode tok/s | roofline tok/s (GB/s) | of roofline | prefill vs PyTorch | decode vs PyTorch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        torch_prefill = f"{r['prefill_vs_torch']:.2f}x ({r['torch']['prefill_tokens_per_s']:.0f})" if "torch" in r else "-"
        torch_decode = f"{r['decode_vs_torch']:.2f}x ({r['torch']['decode_tokens_per_s']:.1f})" if "torch" in r else "-"
        lines.append(
            f"| {r['model']} | {r['weights_bytes'] / 2**20:.0f} MiB | {r['compile_seconds']:.1f} s | "
            f"{r['prefill_tokens_per_s']:.0f} ({r['prefill_tokens']} tok) | {r['decode_tokens_per_s']:.1f} | "
            f"{r['roofline_tokens_per_s']:.1f} ({r['read_gb_per_s']:.1f}) | {r['roofline_fraction']:.2f} | "
            f"{torch_prefill} | {torch_decode} |")
    if gemm_rows:
        lines += [
            "",
            "## Prefill-sized GEMM",
            "",
            "One linear layer, [512 tokens, 4096] x [4096, 4096]^T (the shape of a 7B model's",
            "attention projection), timed as a prefill. The peak is measured from the instruction",
            "rate by `xfmr-peak` (independent chains of 512-bit f32 FMAs, 32 flops each, and of",
            "AVX512-BF16 `vdpbf16ps`, 64 flops each, on every thread): bf16 and FP8 weights run",
            "on the bf16 dot products where the CPU has them. Warm runs (`xfmr-bench`), best of 5.",
            "",
            "| weights | GFLOP/s | of peak |",
            "| --- | --- | --- |",
        ]
        for g in gemm_rows:
            lines.append(f"| {g['weights']} | {g['gflops']:.0f} | {g['fraction_of_peak']:.2f} "
                         f"(peak {g['peak_gflops']:.0f}, {g.get('peak_unit', 'f32')}) |")
    if long_rows:
        base = long_rows[0]["decode_tokens_per_s"]
        lines += [
            "",
            "## Decode at a long context, per KV-cache setting",
            "",
            f"Llama 'small' (bf16 weights, {long_rows[0]['weights_bytes'] / 2**20:.0f} MiB), "
            f"at position {long_rows[0]['context']}: each decoded token reads the whole "
            "cache, so narrower caches decode faster, and evicting caches (`--kv-window`, "
            "`--kv-sinks`) read a fixed number of entries at any position (their accuracy: "
            "[kv-eviction.md](kv-eviction.md)).",
            "",
            "| KV cache | bytes/token | entries | cache read per decoded token | decode tok/s | "
            "vs f32 |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in long_rows:
            entries = r.get("cache_entries", r["context"])
            lines.append(f"| {r['kv_cache']} | {r['kv_cache_bytes_per_token']} | {entries} | "
                         f"{r['kv_cache_bytes_per_token'] * entries / 2**20:.1f} MiB | "
                         f"{r['decode_tokens_per_s']:.1f} | {r['decode_tokens_per_s'] / base:.2f}x |")
    lines += ["", "FP8 accuracy against the unquantized models: [fp8-accuracy.md](fp8-accuracy.md);",
              "KV-cache settings: [kv-cache.md](kv-cache.md).", ""]
    lines += compare_markdown()
    lines += ["Raw results: `bench/results.json`.", ""]
    write_keeping_hand_written(lines)
    (REPO / "bench" / "results.json").write_text(
        json.dumps({"models": rows, "gemm": list(gemm_rows), "long_context": list(long_rows)},
                   indent=2) + "\n")


#: docs/performance.md: what follows this line is written by hand (other benchmarks, GPU,
#: profiling) and kept when bench/run.py rewrites the sections before it.
HAND_WRITTEN_MARKER = "<!-- Sections below are written by hand; bench/run.py keeps them. -->"


def write_keeping_hand_written(lines):
    doc = REPO / "docs" / "performance.md"
    kept = ""
    if doc.exists():
        text = doc.read_text()
        if HAND_WRITTEN_MARKER in text:
            kept = text[text.index(HAND_WRITTEN_MARKER) + len(HAND_WRITTEN_MARKER):]
    doc.write_text("\n".join(lines) + "\n" + HAND_WRITTEN_MARKER + kept)


COMPARE_HEADING = "## Before and after a change"


def compare_markdown():
    """The section for bench/compare.json (the last --baseline run), or nothing."""
    path = REPO / "bench" / "compare.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    lines = [COMPARE_HEADING, "",
             f"`bench/run.py --baseline` on {data['date']}: {data['change']}. Both builds compile",
             f"the same checkpoints; their runs alternate, best of {data['repeats']} per build, "
             f"{data['threads']} threads, `--cpu {data['cpu']}`.", "",
             "| model | prefill tok/s (before -> after) | decode tok/s (before -> after) |",
             "| --- | --- | --- |"]
    for row in data["rows"]:
        b, t = row["baseline"], row["this_build"]
        lines.append(f"| {row['model']} | {b['prefill']:.0f} -> {t['prefill']:.0f} "
                     f"({row['prefill_ratio']:.2f}x) | {b['decode']:.1f} -> {t['decode']:.1f} "
                     f"({row['decode_ratio']:.2f}x) |")
    if data.get("remark"):
        lines += ["", data["remark"]]
    return lines + ["", "Comparison data: `bench/compare.json`.", ""]


def compare_builds(baseline, threads, cpu, quick, repeats, change):
    """Prefill and decode of this build against `baseline` (a bin folder), side by side."""
    prompt, decode = (64, 16) if quick else (256, 32)
    bf16 = checkpoint("llama-500m-bf16", "llama", "500m", "bf16")
    small = checkpoint("llama-small-bf16", "llama", "small", "bf16")
    cases = [("Llama 500M bf16", bf16, []),
             ("Llama 500M fp8", bf16, ["--quantize", "fp8"]),
             ("Llama small bf16, int8 KV cache", small, ["--kv-cache", "int8"])]
    stories = REPO.parent / "shared" / "models" / "stories260K"
    if (stories / "config.json").exists():
        cases.insert(0, ("stories260K f32", stories, []))
    builds = {"baseline": Path(baseline), "this build": BIN}
    rows = []
    for name, folder, flags in cases:
        artifacts = {}
        for label, bin_dir in builds.items():
            artifact = MODELS / f"compare-{len(rows)}-{label.replace(' ', '-')}.xfmr"
            run([bin_dir / "xfmr-compile", folder, "-o", artifact, "--cpu", cpu,
                 "--context", prompt + decode + 16, *flags])
            artifacts[label] = artifact
        best = {label: {"prefill": 0.0, "decode": 0.0} for label in builds}
        for _ in range(repeats):
            for label, bin_dir in builds.items():
                prefill = xfmr_stats(artifacts[label], prompt, 1, threads, bin_dir)
                decoded = xfmr_stats(artifacts[label], 16, decode + 1, threads, bin_dir)
                best[label]["prefill"] = max(best[label]["prefill"],
                                             prefill["prefill_tokens_per_s"])
                best[label]["decode"] = max(best[label]["decode"],
                                            decoded["decode_tokens_per_s"])
        row = {"model": name, "prompt": prompt, "decode_tokens": decode,
               "baseline": best["baseline"], "this_build": best["this build"],
               "prefill_ratio": best["this build"]["prefill"] / best["baseline"]["prefill"],
               "decode_ratio": best["this build"]["decode"] / best["baseline"]["decode"]}
        rows.append(row)
        log(f"{name}: prefill {row['prefill_ratio']:.3f}x, decode {row['decode_ratio']:.3f}x "
            f"of the baseline")
    (REPO / "bench" / "compare.json").write_text(json.dumps(
        {"date": datetime.date.today().isoformat(), "change": change, "threads": threads,
         "cpu": cpu, "repeats": repeats, "rows": rows}, indent=2) + "\n")
    lines = compare_markdown()
    print("\n".join(lines))
    # Refresh the section in docs/performance.md, leaving the other tables.
    doc = REPO / "docs" / "performance.md"
    text = doc.read_text()
    start = text.find(COMPARE_HEADING)
    end = text.find("Raw results:")
    if start < 0:
        start = end
    doc.write_text(text[:start] + "\n".join(lines) + "\n" + text[end:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu", default="native")
    parser.add_argument("--quick", action="store_true", help="small prompts, no 500M f32")
    parser.add_argument("--only-long-context", action="store_true",
                        help="re-measure only the long-context table; the other tables "
                             "come from bench/results.json")
    parser.add_argument("--baseline", metavar="BIN_DIR",
                        help="compare with another build's bin folder instead")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per build with --baseline (the best counts)")
    parser.add_argument("--change", default="the baseline against this build",
                        help="what differs between the builds, for the report")
    args = parser.parse_args()
    if args.baseline:
        for tool in ["xfmr-compile", "xfmr-run"]:
            if not (Path(args.baseline) / tool).exists():
                sys.exit(f"bench: {Path(args.baseline) / tool} does not exist")
        MODELS.mkdir(parents=True, exist_ok=True)
        compare_builds(args.baseline, args.threads, args.cpu, args.quick, args.repeats,
                       args.change)
        return
    for tool in ["xfmr-compile", "xfmr-run", "xfmr-bandwidth"]:
        if not (BIN / tool).exists():
            sys.exit(f"bench: {BIN / tool} is not built (run scripts/build.sh)")
    MODELS.mkdir(parents=True, exist_ok=True)
    if args.only_long_context:
        previous = json.loads((REPO / "bench" / "results.json").read_text())
        long_rows = long_context(args.threads, args.cpu)
        write_markdown(previous["models"], args, previous["gemm"], long_rows)
        log("wrote docs/performance.md and bench/results.json (long-context table re-measured)")
        return
    prompt, decode = (64, 16) if args.quick else (512, 64)
    rows = []
    stories = REPO.parent / "shared" / "models" / "stories260K"
    if (stories / "config.json").exists():
        rows.append(measure("stories260K f32", stories, args.threads, min(prompt, 256), 256,
                            args.cpu, None))
    bf16 = checkpoint("llama-500m-bf16", "llama", "500m", "bf16")
    rows.append(measure("Llama 500M bf16", bf16, args.threads, prompt, decode, args.cpu, "bf16"))
    rows.append(measure("Llama 500M fp8 (from bf16, E4M3 128x128, act. 1x128)", bf16,
                        args.threads, prompt, decode, args.cpu, None, ["--quantize", "fp8"]))
    rows.append(measure("Llama 500M fp8 weights only", bf16, args.threads, prompt, decode,
                        args.cpu, None, ["--quantize", "fp8", "--quantize-activations=false"]))
    if not args.quick:
        f32 = checkpoint("llama-500m-f32", "llama", "500m", "f32")
        rows.append(measure("Llama 500M f32", f32, args.threads, prompt, decode, args.cpu, None))
    gemm_rows = gemm(args.threads, args.cpu)
    long_rows = long_context(args.threads, args.cpu)
    write_markdown(rows, args, gemm_rows, long_rows)
    log("wrote docs/performance.md and bench/results.json")


if __name__ == "__main__":
    main()
