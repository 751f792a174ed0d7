"""MoE benchmark: a synthetic DeepSeek-V3-style model (64 routed experts, top-6, 2 shared,
~1B parameters of which ~200M are active per token) compiled with each MoE evaluation
form (`xfmr-compile --moe dense|sparse|sparse-prefill`). Decode tokens/s against the
active-parameter roofline (the bytes one token must read, over the read bandwidth measured
in the same run) and against the dense form; prefill tokens/s for a 512-token prompt.
Writes docs/moe.md and bench/moe.json.

Usage: /usr/bin/python3 bench/moe.py [--threads 2] [--quick]
"""
import argparse
import json
import sys
import time

from run import BIN, BUILD, MODELS, PY, REPO, bandwidth, log, run, xfmr_stats

#: DeepSeek-V3's shape scaled down: MLA, group-limited routing (8 groups, best 4), one
#: dense layer first, then MoE layers of 64 routed experts (top 6) and 2 shared.
CONFIG = {
    "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 10,
    "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000,
    "max_position_embeddings": 4096, "first_k_dense_replace": 1,
    "n_routed_experts": 64, "num_experts_per_tok": 6, "n_shared_experts": 2,
    "moe_intermediate_size": 512, "n_group": 8, "topk_group": 4,
    "q_lora_rank": 384, "kv_lora_rank": 256, "qk_nope_head_dim": 64,
    "qk_rope_head_dim": 32, "v_head_dim": 64,
}

#: (row, xfmr-compile flags, what runs).
FORMS = [
    ("dense", ["--moe", "dense"], "every expert on every token, weighted 0 where not routed"),
    ("sparse", ["--moe", "sparse"],
     "decode: each token's top-k experts; prefill: one grouped GEMM per expert"),
    ("sparse-prefill", ["--moe", "sparse-prefill"],
     "token-by-token top-k dispatch in prefill too"),
    ("sparse, fp8", ["--moe", "sparse", "--quantize", "fp8"],
     "sparse, FP8 weights (128x128 blocks) and activations (1x128)"),
]


def checkpoint(dtype):
    folder = MODELS / f"moe-1b-{dtype}"
    if not (folder / "config.json").exists():
        log(f"generating {folder.name} (~1B parameters; takes a minute)")
        sets = [f"{key}={value}" for key, value in CONFIG.items()]
        run([PY, "-m", "xfmr.synth", "--arch", "deepseek_v3", "--preset", "500m", "--dtype",
             dtype, "--seed", "0", "--out", folder, *[a for s in sets for a in ("--set", s)]])
    return folder


def active_bytes(artifact):
    """Bytes of the artifact's weights one decoded token reads: all of them, except that a
    MoE layer reads top_k of its routed experts (shared experts always) and the embedding
    one row. FP8 codes and scales count like the weight they come from."""
    sys.path.insert(0, str(REPO / "python"))
    import xfmr
    xfmr.__path__.append(str(BUILD / "python" / "xfmr"))
    fraction = CONFIG["num_experts_per_tok"] / CONFIG["n_routed_experts"]
    total = 0.0
    for tensor in xfmr.Artifact(str(artifact)).manifest["weights"]["tensors"]:
        name, size = tensor["name"], tensor["bytes"]
        if ".mlp.experts." in name:
            total += size * fraction
        elif name == "model.embed_tokens.weight":
            total += size / tensor["shape"][0]
        else:
            total += size
    return total


def measure(folder, form, flags, args):
    artifact = MODELS / "moe-1b.xfmr"
    begin = time.perf_counter()
    run([BIN / "xfmr-compile", folder, "-o", artifact, "--cpu", args.cpu, *flags,
         "--context", args.prompt + args.decode + 32])
    compile_seconds = time.perf_counter() - begin
    prefill = xfmr_stats(artifact, args.prompt, 1, args.threads)
    gbps = bandwidth(args.threads)
    decode = xfmr_stats(artifact, 16, args.decode + 1, args.threads)
    gbps = max(gbps, bandwidth(args.threads))
    counts = [c for layer in decode["expert_tokens"].values() for c in layer]
    row = {"form": form, "compile_seconds": compile_seconds, "read_gb_per_s": gbps,
           "weights_bytes": decode["weights_bytes"],
           "parameter_count": decode["parameter_count"],
           "prefill_tokens": args.prompt,
           "prefill_tokens_per_s": prefill["prefill_tokens_per_s"],
           "decode_tokens_per_s": decode["decode_tokens_per_s"],
           "experts_used": sum(1 for c in counts if c), "experts_total": len(counts),
           "active_bytes": active_bytes(artifact)}
    log(f"{form}: prefill {row['prefill_tokens_per_s']:.1f} tok/s, decode "
        f"{row['decode_tokens_per_s']:.1f} tok/s ({gbps:.1f} GB/s), compiled in "
        f"{compile_seconds:.0f} s")
    artifact.unlink()
    return row


def write(rows, args, peer):
    dense = next(r for r in rows if r["form"] == "dense")
    sparse = next(r for r in rows if r["form"] == "sparse")
    active = sparse["active_bytes"]
    lines = [
        "# Mixture of experts: sparse dispatch and grouped expert GEMMs",
        "",
        "Measured by `bench/moe.py` (re-run it to refresh). A synthetic DeepSeek-V3-style",
        f"model, bf16: {CONFIG['num_hidden_layers']} layers (MLA attention; the first dense,",
        f"then MoE with {CONFIG['n_routed_experts']} routed experts, top "
        f"{CONFIG['num_experts_per_tok']} in the best {CONFIG['topk_group']} of "
        f"{CONFIG['n_group']} groups, {CONFIG['n_shared_experts']} shared experts), hidden "
        f"{CONFIG['hidden_size']}, expert width {CONFIG['moe_intermediate_size']}:",
        f"{rows[0]['parameter_count'] / 1e9:.2f}B parameters, "
        f"{rows[0]['weights_bytes'] / 2**30:.2f} GiB of weights; one decoded token needs "
        f"{active / 2**20:.0f} MiB of them (the *active* weights; "
        + ", ".join(f"{r['active_bytes'] / 2**20:.0f} MiB with {r['form'].split(', ')[1]}"
                    for r in rows if ", " in r["form"]) + ").",
        f"{args.threads} threads, `--cpu {args.cpu}`; prefill of {args.prompt} tokens, "
        f"{args.decode} decoded tokens after a 16-token prompt.",
        "",
        "The *roofline* is the read bandwidth measured in the same run (`xfmr-bandwidth`,",
        "best of two probes around the decode run) over the bytes a decoded token reads: the",
        "active weights for the sparse forms (the *active-parameter roofline*), all weights",
        "for the dense form, which runs every expert on every token (and does `experts /",
        "top_k` times the needed arithmetic). This VM's bandwidth swings between runs (30-52",
        "GB/s), which moves the decode ratios between rows; the fractions of roofline compare",
        "the forms at equal bandwidth. The FP8 row reads its own (smaller) active bytes; it",
        "widens each FP8 weight in registers, which on 2 cores caps decode below the FP8",
        "roofline (see [performance.md](performance.md)).",
        "",
        "The peer is PyTorch eager (Debian's python3-torch 1.13, bf16, oneDNN) running",
        "Hugging Face's DeepSeek-V3 MoE (`moe_infer`: tokens sorted by expert, one call per",
        "expert with tokens) on the same checkpoint and threads (`bench/torch_deepseek.py`,",
        "whose f32 logits match the float64 reference to 1.4e-6).",
        "",
        "| `--moe` | what runs | prefill tok/s | vs dense | vs PyTorch | decode tok/s | "
        "vs dense | vs PyTorch | roofline tok/s (GB/s) | of roofline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        read = r["weights_bytes"] if r["form"] == "dense" else r["active_bytes"]
        roofline = r["read_gb_per_s"] * 1e9 / read
        what = next(w for form, _, w in FORMS if form == r["form"])
        lines.append(
            f"| {r['form']} | {what} | {r['prefill_tokens_per_s']:.1f} | "
            f"{r['prefill_tokens_per_s'] / dense['prefill_tokens_per_s']:.2f}x | "
            f"{r['prefill_tokens_per_s'] / peer['prefill_tokens_per_s']:.2f}x | "
            f"{r['decode_tokens_per_s']:.1f} | "
            f"{r['decode_tokens_per_s'] / dense['decode_tokens_per_s']:.2f}x | "
            f"{r['decode_tokens_per_s'] / peer['decode_tokens_per_s']:.2f}x | "
            f"{roofline:.1f} ({r['read_gb_per_s']:.1f}) | "
            f"{r['decode_tokens_per_s'] / roofline:.2f} |")
    lines.append(f"| PyTorch eager | {peer['peer']}, `moe_infer` | "
                 f"{peer['prefill_tokens_per_s']:.1f} | - | 1.00x | "
                 f"{peer['decode_tokens_per_s']:.1f} | - | 1.00x | - | - |")
    fraction = {r["form"]: r["decode_tokens_per_s"] * (r["weights_bytes"] if r["form"] == "dense"
                                                         else active) / r["read_gb_per_s"]
                for r in (dense, sparse)}
    lines += [
        "",
        f"At equal bandwidth, sparse decode is {fraction['sparse'] / fraction['dense'] * dense['weights_bytes'] / active:.1f}x "
        "the dense form (the ratio of their roofline fractions times all weights over the "
        "active ones).",
    ]
    lines += [
        "",
        "Per-expert token counts come from the runtime (`xfmr-run --stats`, "
        "`Session.stats[\"expert_tokens\"]`); in the decode runs above "
        f"{rows[-1]['experts_used']} of {rows[-1]['experts_total']} (layer, expert) pairs "
        "received tokens.",
        "",
        "Raw results: `bench/moe.json`.",
        "",
    ]
    (REPO / "docs" / "moe.md").write_text("\n".join(lines))
    (REPO / "bench" / "moe.json").write_text(
        json.dumps({"config": CONFIG, "threads": args.threads,
                    "cpu": args.cpu, "prompt": args.prompt, "decode": args.decode,
                    "rows": rows, "pytorch": peer}, indent=2) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu", default="native")
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite docs/moe.md from bench/moe.json")
    args = parser.parse_args()
    if args.rewrite:
        saved = json.loads((REPO / "bench" / "moe.json").read_text())
        for key in ("threads", "cpu", "prompt", "decode"):
            setattr(args, key, saved.get(key, getattr(args, key)))
        write(saved["rows"], args, saved["pytorch"])
        return
    for tool in ["xfmr-compile", "xfmr-run", "xfmr-bandwidth"]:
        if not (BIN / tool).exists():
            sys.exit(f"bench: {BIN / tool} is not built (run scripts/build.sh)")
    MODELS.mkdir(parents=True, exist_ok=True)
    folder = checkpoint("bf16")
    rows = [measure(folder, form, flags, args) for form, flags, _ in FORMS]
    log("PyTorch eager peer (Hugging Face's moe_infer)")
    peer = json.loads(run([PY, REPO / "bench" / "torch_deepseek.py", folder, "--dtype", "bf16",
                           "--threads", args.threads, "--prompt", args.prompt,
                           "--decode", args.decode]).stdout)
    log(f"PyTorch: prefill {peer['prefill_tokens_per_s']:.1f} tok/s, decode "
        f"{peer['decode_tokens_per_s']:.1f} tok/s")
    write(rows, args, peer)
    log("wrote docs/moe.md and bench/moe.json")


if __name__ == "__main__":
    main()
