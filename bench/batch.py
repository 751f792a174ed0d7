"""Batched decode in the engine: aggregate decode tokens/s of B sequences advanced together
by the artifact's batched step (`xfmr.Session.step`, one call per token for all B), against
B = 1 in the same run, on the 500M synthetic Llama of bench/llama_cpp.py.

Each level prefills B sequences (different prompts of --prompt tokens), then times --tokens
greedy steps of all B; the best of --repeats runs is kept, levels alternate between runs.
The bandwidth roofline of one sequence (weights bytes / measured read bandwidth) is printed
beside it: B sequences per step can exceed it B-fold at most. With --paged each level also
runs in paged KV caches (one xfmr.KVBlockPool for the B sequences), alternating with the
whole caches, and the table gives both.

Usage: /usr/bin/python3 bench/batch.py [--threads 2] [--levels 1,4,16] [--dtype bf16]
       [--quantize int8] [--paged]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp import cpu_description  # noqa: E402
from run import BIN, BUILD, MODELS, bandwidth, checkpoint, log, run  # noqa: E402

sys.path.insert(0, str(BUILD / "python"))  # the package with its native extension
import xfmr  # noqa: E402


def measure(artifact, batch, prompt, tokens, threads, paged=False):
    pool = xfmr.KVBlockPool(artifact, sequences=batch) if paged else None
    sessions = [xfmr.Session(artifact, threads=threads, block_pool=pool)
                for _ in range(batch)]
    prompts = [[(7 * i + 13 * b + 3) % 500 for i in range(prompt)] for b in range(batch)]
    rows = xfmr.Session.step(list(zip(sessions, prompts)))  # one row per sequence
    next_ids = [int(row.argmax()) for row in rows]
    start = time.perf_counter()
    for _ in range(tokens):
        rows = xfmr.Session.step([(s, [t]) for s, t in zip(sessions, next_ids)])
        next_ids = [int(row.argmax()) for row in rows]
    seconds = time.perf_counter() - start
    return batch * tokens / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--quantize", default=None)
    parser.add_argument("--paged", action="store_true")
    parser.add_argument("--json", default=str(Path(__file__).with_name("batch.json")))
    args = parser.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    folder = checkpoint(f"llama-500m-{args.dtype}", "llama", "500m", args.dtype)
    name = f"llama-500m-batch-{args.quantize or args.dtype}.xfmr"
    path = MODELS / name
    log(f"compiling {name}")
    extra = ["--quantize", args.quantize] if args.quantize else []
    run([BIN / "xfmr-compile", folder, "-o", path, "--context", 512, *extra])
    artifact = xfmr.Artifact(str(path))
    gbps = bandwidth(args.threads)
    roofline = gbps * 1e9 / artifact.manifest["weights"]["bytes"]
    variants = [False, True] if args.paged else [False]
    best = {(b, paged): 0.0 for b in levels for paged in variants}
    for repeat in range(args.repeats):
        for b in levels:
            for paged in variants:
                rate = measure(artifact, b, args.prompt, args.tokens, args.threads, paged)
                log(f"run {repeat + 1}: {b} sequence(s){' paged' if paged else ''}: "
                    f"{rate:.1f} tokens/s")
                best[(b, paged)] = max(best[(b, paged)], rate)
    one = best[(levels[0], False)]
    lines = [f"CPU: {cpu_description()}; {args.threads} threads; "
             f"{args.quantize or args.dtype} weights; read bandwidth {gbps:.1f} GB/s "
             f"(one sequence's roofline {roofline:.1f} tokens/s)", "",
             "| sequences per step | decode tokens/s (aggregate) | vs 1 sequence "
             "| vs one sequence's roofline |" + (" paged caches | paged / whole |"
                                                 if args.paged else ""),
             "| ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if args.paged else "")]
    for b in levels:
        line = (f"| {b} | {best[(b, False)]:.1f} | {best[(b, False)] / one:.2f}x "
                f"| {best[(b, False)] / roofline:.2f}x |")
        if args.paged:
            line += (f" {best[(b, True)]:.1f} | "
                     f"{best[(b, True)] / best[(b, False)]:.2f}x |")
        lines.append(line)
    print("\n".join(lines))
    Path(args.json).write_text(json.dumps(
        {"cpu": cpu_description(), "threads": args.threads, "weights": args.quantize or
         args.dtype, "bandwidth_gb_per_s": gbps, "roofline_tokens_per_s": roofline,
         "tokens_per_second": {str(b): best[(b, False)] for b in levels},
         "paged_tokens_per_second": {str(b): best[(b, True)] for b in levels}
         if args.paged else None}, indent=1) + "\n")


if __name__ == "__main__":
    main()
