"""GPU speed on a lent NVIDIA GPU, against the hardware's measured ceilings and PyTorch.

    python3 bench/gpu.py prepare [--dir build-gpubench] [--chip sm_90a] [--smoke]
        here (MLIR machine): writes sparse checkpoints (headers only) of the models below,
        compiles each weights-stripped for cuda:CHIP (a few hundred KiB each) and copies
        xfmr-run and xfmr-pack beside them: what the device tool carries (well under 64 MiB).
    python3 bench/gpu.py run [--dir build-gpubench] [--out DIR] [--only NAMES]
        on the GPU machine (no MLIR): measures the device-to-device copy bandwidth and the
        cuBLAS(Lt) bf16 and FP8 (`torch._scaled_mm`) GEMM rates at the models' shapes;
        generates each model's real checkpoint there (python/xfmr/synth.py, threads, timed),
        binds it with xfmr-pack (timed), runs xfmr-run (decode at batch 1 after a short
        prompt, time to first token of a long prompt) and Hugging Face transformers eager on
        the same checkpoint, and prints one table. Full numbers go to OUT/gpu-bench.json.

`scripts/gpu-check.sh bench` runs both steps' halves (prepare here, run there). `--smoke`
uses tiny shapes and `--target vulkan` so the whole path can be tried here on lavapipe
(figures meaningless). Decode roofline: bytes a token must read (every weight but the
embedding table, for MoE layers the routed experts' share; the KV cache up to the context)
over the measured copy bandwidth.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

LLAMA3_8B = {
    "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
    "max_position_embeddings": 8192, "rope_theta": 500000.0,
}
# DeepSeek-V2-Lite's attention and experts (64 routed, top 6, 2 shared, kv_lora_rank 512, no
# query LoRA) in 4 of its 27 layers (figures are reported per layer too).
DEEPSEEK_V2_LITE_4L = {
    "hidden_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 16,
    "num_key_value_heads": 16, "q_lora_rank": None, "kv_lora_rank": 512,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 64,
    "num_experts_per_tok": 6, "n_shared_experts": 2, "first_k_dense_replace": 1,
    "n_group": 1, "topk_group": 1, "vocab_size": 102400, "max_position_embeddings": 40960,
}

# name -> (synth arch, dtype, config overrides, compile flags, prompt, decode, long prompt)
MODELS = {
    "llama3-8b-bf16": ("llama", "bf16", LLAMA3_8B,
                       ["--kv-cache", "bf16", "--context", "8192"], 128, 128, 4096),
    "llama3-8b-fp8": ("llama", "bf16", LLAMA3_8B,
                      ["--quantize", "fp8", "--kv-cache", "bf16", "--context", "8192"],
                      128, 128, 4096),
    "dsv2lite-4l-latent-fp8kv": ("deepseek_v3", "bf16", DEEPSEEK_V2_LITE_4L,
                                 ["--mla-cache", "latent", "--kv-cache", "fp8",
                                  "--context", "33792"], 32768, 64, 0),
}
SMOKE = {
    "llama3-8b-bf16": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512,
                       "max_position_embeddings": 512},
    "dsv2lite-4l-latent-fp8kv": {"hidden_size": 64, "num_hidden_layers": 2,
                                 "num_attention_heads": 4, "num_key_value_heads": 4,
                                 "q_lora_rank": None, "kv_lora_rank": 32,
                                 "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
                                 "v_head_dim": 16, "intermediate_size": 96,
                                 "moe_intermediate_size": 32, "n_routed_experts": 8,
                                 "num_experts_per_tok": 2, "n_shared_experts": 2,
                                 "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
                                 "vocab_size": 512, "max_position_embeddings": 1024},
}
SMOKE["llama3-8b-fp8"] = SMOKE["llama3-8b-bf16"]
SMOKE_SIZES = {"llama3-8b-bf16": (16, 8, 64), "llama3-8b-fp8": (16, 8, 64),
               "dsv2lite-4l-latent-fp8kv": (256, 8, 0)}


def prepare(args):
    from xfmr import synth
    build = Path(os.environ.get("XFMR_BUILD_DIR", REPO / "build")) / "bin"
    out = Path(args.dir)
    shutil.rmtree(out, ignore_errors=True)
    (out / "bin").mkdir(parents=True)
    for tool in ("xfmr-run", "xfmr-pack"):
        shutil.copy2(build / tool, out / "bin" / tool)
    target = "vulkan" if args.smoke else f"cuda:{args.chip}"
    plan = {"target": target, "smoke": args.smoke, "models": {}}
    for name, (arch, dtype, overrides, flags, prompt, decode, long_prompt) in MODELS.items():
        if args.smoke:
            overrides = SMOKE[name]
            prompt, decode, long_prompt = SMOKE_SIZES[name]
            flags = [f if f not in ("8192", "33792") else "512" for f in flags]
        sparse = out / "sparse" / name
        synth.generate(str(sparse), arch, dtype=dtype, overrides=dict(overrides),
                       sparse=True, progress=False)
        artifact = out / f"{name}.xfmr"
        subprocess.run([str(build / "xfmr-compile"), str(sparse), "-o", str(artifact),
                        "--target", target, "--strip-weights", *flags], check=True)
        plan["models"][name] = {"arch": arch, "dtype": dtype, "overrides": overrides,
                                "flags": flags, "prompt": prompt, "decode": decode,
                                "long_prompt": long_prompt}
    shutil.rmtree(out / "sparse")
    (out / "plan.json").write_text(json.dumps(plan, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"gpu-bench: prepared {size / 2**20:.1f} MiB in {out} for {target}")


# ----------------------------------------------------------------------------------------
# On the GPU machine
# ----------------------------------------------------------------------------------------


def median_ms(fn, warmup=3, repeat=10):
    """Median time of fn() in ms, timed with CUDA events."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_bandwidth():
    """Device-to-device copy, bytes read plus written per second (GB/s)."""
    import torch
    n = 1 << 30
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * n / ms / 1e6


def gemm_rates(shapes):
    """{(M, N, K): (bf16 TFLOP/s via torch.matmul, FP8 TFLOP/s via torch._scaled_mm)}."""
    import torch
    rates = {}
    for m, n, k in shapes:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        flops = 2.0 * m * n * k
        bf16 = flops / median_ms(lambda: a @ w.t()) / 1e9
        a8, w8 = a.to(torch.float8_e4m3fn), w.to(torch.float8_e4m3fn)
        one = torch.ones((), device="cuda", dtype=torch.float32)
        try:
            fp8 = flops / median_ms(lambda: torch._scaled_mm(
                a8, w8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)) / 1e9
        except (RuntimeError, TypeError) as error:
            fp8 = f"error: {error}"
        rates[(m, n, k)] = (bf16, fp8)
        del a, w, a8, w8
    torch.cuda.empty_cache()
    return rates


def run_xfmr(root, artifact, prompt_len, decode, vocab, graphs=False):
    import numpy as np
    ids = np.random.default_rng(0).integers(3, vocab, prompt_len)
    # XFMR_CUDA_GRAPHS=1: each decode step's launches replayed as one CUDA graph.
    env = dict(os.environ, XFMR_CUDA_GRAPHS="1" if graphs else "0")
    done = subprocess.run([str(root / "bin" / "xfmr-run"), str(artifact), "--prompt-ids",
                           " ".join(map(str, ids)), "-n", str(decode), "--stats"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stderr.strip().splitlines()[-1])


def _ncu_times(root, artifact, prompt_len, vocab, kernels, count, generate=1):
    """[(kernel name, seconds)] of the first `count` kernels matching the regex `kernels` in
    a prefill of `prompt_len` tokens (then `generate` - 1 decode steps), timed by Nsight
    Compute where it is installed."""
    import csv
    import io
    import numpy as np
    ncu = shutil.which("ncu")
    if not ncu:
        return []
    ids = np.random.default_rng(0).integers(3, vocab, prompt_len)
    done = subprocess.run([ncu, "--csv", "--metrics", "gpu__time_duration.sum", "-k",
                           f"regex:{kernels}", "-c", str(count), str(root / "bin" / "xfmr-run"),
                           str(artifact), "--prompt-ids", " ".join(map(str, ids)), "-n",
                           str(generate)],
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout[done.stdout.find('"ID"'):]
    scale = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
             "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    times = []
    for row in csv.DictReader(io.StringIO(lines)):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        seconds = float(row["Metric Value"].replace(",", "")) * scale.get(row["Metric Unit"], 1e-9)
        times.append((row.get("Kernel Name", "").split("(")[0], seconds))
    return times


def profile_matrix_kernels(root, artifact, prompt_len, vocab, count=6):
    """The first `count` prefill linears on the matrix units (kernels named *_mma_* or
    *_wgmma_*) of a prompt of `prompt_len` tokens: [(kernel, M, N, K, seconds)]."""
    import re
    kernels = []
    for name, seconds in _ncu_times(root, artifact, prompt_len, vocab, "_w?mma_", count):
        shape = re.search(r"linear_(\d+)x(\d+)_", name)
        if shape:
            kernels.append((name, prompt_len, int(shape.group(1)), int(shape.group(2)),
                            seconds))
    return kernels


def profile_attention_kernel(root, artifact, prompt_len, vocab):
    """The first prefill attention on the matrix units (attend_C x Hq x Hkv x Dk x Dv ...
    _mma) of a prompt of `prompt_len` tokens: (kernel, Hq, Hkv, Dk, Dv, seconds) or None."""
    import re
    for name, seconds in _ncu_times(root, artifact, prompt_len, vocab, "attend_.*_mma$", 1):
        shape = re.search(r"attend_\d+x(\d+)x(\d+)x(\d+)x(\d+)_", name)
        if shape:
            return (name, *map(int, shape.groups()), seconds)
    return None


def profile_latent_decode(root, artifact, prompt_len, vocab, manifest, config):
    """The first layer's MLA latent decode (latent_attend_..._mma_slices and _mma_combine,
    NVIDIA's matrix units) after a prompt of `prompt_len` tokens: [(kernel, seconds, GB/s of
    that layer's latent cache read)]."""
    cache = manifest["kv_cache"]["bytes_per_token"] / config["num_hidden_layers"] * prompt_len
    return [(name, seconds, cache / seconds / 1e9)
            for name, seconds in _ncu_times(root, artifact, prompt_len, vocab,
                                            "latent_attend_.*_mma_(slices|combine)$", 2,
                                            generate=2)]


def profile_grouped_experts(root, artifact, prompt_len, vocab, config):
    """The first MoE layer's grouped expert products on the matrix units (moe_experts_..._mma
    _prefill_up: gate and up; _prefill_down) in a prefill of `prompt_len` tokens, each
    against cuBLAS(Lt) of one dense GEMM with the same products (the entries, T x top-k,
    times the stacked weights: a bound no grouping loses to): torch.matmul in bf16, or
    torch._scaled_mm in FP8 for the kernels that multiply E4M3 codes on the FP8 units
    (`_e4m3_` in the name): [(kernel, seconds, TFLOP/s, cuBLAS TFLOP/s)]."""
    hidden, inter = config["hidden_size"], config["moe_intermediate_size"]
    entries = prompt_len * config["num_experts_per_tok"]
    shapes = {"up": (entries, 2 * inter, hidden), "down": (entries, hidden, inter)}
    rows = []
    for name, seconds in _ncu_times(root, artifact, prompt_len, vocab,
                                    "moe_experts_.*_mma.*_prefill_(up|down)$", 2):
        m, n, k = shapes["up" if name.endswith("_up") else "down"]
        bf16, fp8 = gemm_rates([(m, n, k)])[(m, n, k)]
        peer = fp8 if "_e4m3_" in name else bf16
        rows.append((name, seconds, 2.0 * m * n * k / seconds / 1e12,
                     peer if isinstance(peer, float) else float("nan")))
    return rows


def causal_attention_flops(tokens, heads, key_dim, value_dim):
    """Multiply-adds x 2 of causal attention over `tokens` (half the score matrix)."""
    return 2.0 * tokens * tokens / 2 * heads * (key_dim + value_dim)


def sdpa_rate(tokens, heads, kv_heads, key_dim, value_dim):
    """PyTorch's scaled_dot_product_attention (FlashAttention-2 on bf16), causal, at one
    prefill's shape: TFLOP/s."""
    import torch
    import torch.nn.functional as F
    q = torch.randn(1, heads, tokens, key_dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, kv_heads, tokens, key_dim, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, kv_heads, tokens, value_dim, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(lambda: F.scaled_dot_product_attention(
        q, k, v, is_causal=True, enable_gqa=kv_heads != heads))
    del q, k, v
    return causal_attention_flops(tokens, heads, key_dim, value_dim) / ms / 1e9


def decode_bytes_per_token(manifest, config, context):
    """Weights a decode step reads (not the embedding table; a MoE layer's routed experts
    by their top-k share) plus the KV cache up to `context` tokens."""
    experts = config.get("n_routed_experts") or config.get("num_local_experts")
    top_k = config.get("num_experts_per_tok", 1)
    total = 0.0
    for t in manifest["weights"]["tensors"]:
        if "embed_tokens" in t["name"]:
            continue
        routed = ".experts." in t["name"] and "shared" not in t["name"]
        total += t["bytes"] * (top_k / experts if routed and experts else 1.0)
    return total + manifest["kv_cache"]["bytes_per_token"] * context


def torch_peer(checkpoint, prompt_len, decode, long_prompt, vocab):
    """transformers eager (SDPA attention) on the same checkpoint: decode tok/s at batch 1
    and the long prompt's prefill seconds."""
    import torch
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(checkpoint), dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (1, prompt_len), generator=gen).cuda()
    with torch.no_grad():
        for _ in range(2):  # warm-up
            out = model(ids, use_cache=True)
        torch.cuda.synchronize()
        out = model(ids, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(decode):
            out = model(token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        result = {"decode_tokens_per_s": decode / (time.perf_counter() - start)}
        if long_prompt:
            long_ids = torch.randint(3, vocab, (1, long_prompt), generator=gen).cuda()
            model(long_ids[:, :128])
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(long_ids, use_cache=True)
            torch.cuda.synchronize()
            result["long_prefill_seconds"] = time.perf_counter() - start
    del model
    torch.cuda.empty_cache()
    return result


def run(args):
    from xfmr import synth
    root = Path(args.dir)
    plan = json.loads((root / "plan.json").read_text())
    out = Path(args.out or root)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    results = {"plan": plan, "models": {}}
    rows = []
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if cuda:
        props = torch.cuda.get_device_properties(0)
        results["device"] = f"{props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}"
        bandwidth = copy_bandwidth()
        results["copy_GBps"] = bandwidth
        rows.append(("device-to-device copy", f"{bandwidth:.0f} GB/s", "", ""))
    else:
        bandwidth = None
        rows.append(("device", "no CUDA device: ceilings and PyTorch skipped", "", ""))
    only = set(args.only.split(",")) if args.only else None
    started = time.time()
    for name, spec in plan["models"].items():
        if only and name not in only:
            continue
        # The device time is lent by the minute: what does not fit is skipped, and said.
        if time.time() - started > args.budget_s:
            rows.append((f"{name}: skipped", f"over the {args.budget_s:.0f} s budget", "", ""))
            continue
        entry = results["models"].setdefault(name, {})
        # Models of one architecture, dtype and shape share a checkpoint (bf16 and FP8).
        shape = hashlib.sha256(json.dumps(spec["overrides"], sort_keys=True).encode())
        checkpoint = work / f"checkpoint-{spec['arch']}-{spec['dtype']}-{shape.hexdigest()[:8]}"
        try:
            if not (checkpoint / "config.json").exists():
                start = time.time()
                config = synth.generate(str(checkpoint), spec["arch"], dtype=spec["dtype"],
                                        overrides=dict(spec["overrides"]), progress=False)
                size = sum(p.stat().st_size for p in checkpoint.iterdir())
                entry["synth_seconds"] = time.time() - start
                rows.append((f"{name}: generate checkpoint",
                             f"{size / 2**30:.1f} GiB in {entry['synth_seconds']:.1f} s",
                             f"{size / 2**30 / entry['synth_seconds']:.2f} GiB/s", ""))
            config = json.loads((checkpoint / "config.json").read_text())
            full = work / f"{name}.xfmr"
            start = time.time()
            subprocess.run([str(root / "bin" / "xfmr-pack"), "--quiet", str(root / f"{name}.xfmr"),
                            str(checkpoint), "-o", str(full)], check=True)
            entry["pack_seconds"] = time.time() - start
            rows.append((f"{name}: xfmr-pack", f"{entry['pack_seconds']:.1f} s", "", ""))
            manifest = _manifest(full)
            vocab = config["vocab_size"]
            stats = run_xfmr(root, full, spec["prompt"], spec["decode"], vocab)
            entry["xfmr"] = stats
            context = spec["prompt"] + spec["decode"]
            per_token = decode_bytes_per_token(manifest, config, context)
            entry["decode_bytes_per_token"] = per_token
            decode = stats["decode_tokens_per_s"]
            roofline = bandwidth * 1e9 / per_token if bandwidth else None
            rows.append((f"{name}: xfmr decode (prompt {spec['prompt']})", f"{decode:.1f} tok/s",
                         f"roofline {roofline:.1f}" if roofline else "",
                         f"{decode / roofline:.2f}" if roofline else ""))
            # Graphs against a rerun without them: the first run also pays for the
            # kernels' first use (lazy module loading, driver caches).
            graphed = run_xfmr(root, full, spec["prompt"], spec["decode"], vocab, graphs=True)
            rerun = run_xfmr(root, full, spec["prompt"], spec["decode"], vocab)
            entry["xfmr_graphs"], entry["xfmr_rerun"] = graphed, rerun
            rows.append((f"{name}: xfmr decode, CUDA graphs",
                         f"{graphed['decode_tokens_per_s']:.1f} tok/s",
                         f"without {rerun['decode_tokens_per_s']:.1f} (rerun)",
                         f"{graphed['decode_tokens_per_s'] / rerun['decode_tokens_per_s']:.2f}"))
            if roofline:
                rows.append((f"{name}: bytes read per token x tok/s",
                             f"{per_token * decode / 1e9:.0f} GB/s",
                             f"copy {bandwidth:.0f}", f"{per_token * decode / 1e9 / bandwidth:.2f}"))
            if spec["long_prompt"]:
                long = run_xfmr(root, full, spec["long_prompt"], 1, vocab)
                entry["xfmr_long"] = long
                rows.append((f"{name}: xfmr prefill {spec['long_prompt']} (TTFT)",
                             f"{long['prefill_seconds']:.3f} s",
                             f"{long['prefill_tokens_per_s']:.0f} tok/s", ""))
                # The tensor-core linears alone, against cuBLAS at their shapes (below).
                if cuda and not args.no_gemm:
                    entry["matrix_kernels"] = profile_matrix_kernels(
                        root, full, spec["long_prompt"], vocab)
                    # Prefill attention on the matrix units against PyTorch's SDPA.
                    attention = profile_attention_kernel(root, full, spec["long_prompt"], vocab)
                    if attention:
                        kernel, heads, kv_heads, dk, dv, seconds = attention
                        tflops = causal_attention_flops(spec["long_prompt"], heads, dk, dv) \
                            / seconds / 1e12
                        peer = sdpa_rate(spec["long_prompt"], heads, kv_heads, dk, dv)
                        entry["attention_kernel"] = {"kernel": kernel, "seconds": seconds,
                                                     "tflops": tflops, "sdpa_tflops": peer}
                        rows.append((f"{name}: {kernel} T={spec['long_prompt']}",
                                     f"{tflops:.0f} TFLOP/s", f"SDPA {peer:.0f}",
                                     f"{tflops / peer:.2f}"))
            # MoE: the grouped expert products of a 4096-token prefill on the matrix
            # units, against one cuBLAS GEMM of the same products.
            if cuda and not args.no_gemm and spec["arch"] == "deepseek_v3":
                # Its latent decode at the whole context, against the copy bandwidth (the
                # slices' kernel reads the cache; the combination their partial outputs).
                latent = profile_latent_decode(root, full, spec["prompt"], vocab, manifest,
                                               config)
                entry["latent_decode"] = latent
                for kernel, seconds, rate in latent:
                    rows.append((f"{name}: {kernel} context {spec['prompt']}",
                                 f"{seconds * 1e6:.1f} us", f"cache {rate:.0f} GB/s",
                                 f"{rate / bandwidth:.2f}" if bandwidth else ""))
                grouped = profile_grouped_experts(root, full, 4096, vocab, config)
                entry["grouped_experts"] = grouped
                for kernel, seconds, tflops, peer in grouped:
                    rows.append((f"{name}: {kernel} T=4096", f"{tflops:.0f} TFLOP/s",
                                 f"one cuBLAS GEMM {peer:.0f}", f"{tflops / peer:.2f}"))
            full.unlink()
            if cuda and spec["arch"] == "llama" and spec["dtype"] == "bf16" and \
                    "--quantize" not in spec["flags"] and not args.no_torch:
                peer = torch_peer(checkpoint, spec["prompt"], spec["decode"],
                                  spec["long_prompt"], vocab)
                entry["torch"] = peer
                rows.append((f"{name}: transformers eager decode",
                             f"{peer['decode_tokens_per_s']:.1f} tok/s", "xfmr / torch",
                             f"{decode / peer['decode_tokens_per_s']:.2f}"))
                if "long_prefill_seconds" in peer and spec["long_prompt"]:
                    rows.append((f"{name}: transformers SDPA prefill {spec['long_prompt']}",
                                 f"{peer['long_prefill_seconds']:.3f} s", "xfmr / torch",
                                 f"{entry['xfmr_long']['prefill_seconds'] / peer['long_prefill_seconds']:.2f}"))
        except Exception as error:  # one model's failure must not hide the others' figures
            entry["error"] = str(error)
            rows.append((f"{name}: ERROR", str(error)[:100], "", ""))
        _write(out, results)
    if cuda and not args.no_gemm:
        h, f = LLAMA3_8B["hidden_size"], LLAMA3_8B["intermediate_size"]
        shapes = [(m, n, k) for m in (512, 4096) for n, k in ((6144, h), (h, h), (2 * f, h),
                                                              (h, f), (f, h), (1024, h))]
        rates = gemm_rates(shapes)
        results["gemm_tflops"] = {f"{m}x{n}x{k}": r for (m, n, k), r in rates.items()}
        for (m, n, k), (bf16, fp8) in rates.items():
            rows.append((f"cuBLAS GEMM M={m} N={n} K={k}", f"bf16 {bf16:.0f} TFLOP/s",
                         f"fp8 {fp8:.0f}" if isinstance(fp8, float) else str(fp8)[:40], ""))
        # xfmr's matrix-unit linears (Nsight Compute) against cuBLAS at the same shape.
        for name, entry in results["models"].items():
            for kernel, m, n, k, seconds in entry.get("matrix_kernels", []):
                tflops = 2.0 * m * n * k / seconds / 1e12
                peer = rates.get((m, n, k))
                fp8 = "e4m3" in kernel
                ratio = ""
                if peer and isinstance(peer[1 if fp8 else 0], float):
                    ratio = f"{tflops / peer[1 if fp8 else 0]:.2f}"
                rows.append((f"{name}: {kernel} M={m}", f"{tflops:.0f} TFLOP/s",
                             "vs cuBLAS " + ("fp8" if fp8 else "bf16"), ratio))
    _write(out, results)
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    for r in rows:
        print(" | ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    return 1 if any("error" in e for e in results["models"].values()) else 0


def _manifest(artifact):
    import struct
    with open(artifact, "rb") as f:
        header = f.read(72)
        offset, size = struct.unpack_from("<QQ", header, 16)
        f.seek(offset)
        return json.loads(f.read(size))


def _write(out, results):
    (out / "gpu-bench.json").write_text(json.dumps(results, indent=1, default=str))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dir", default="build-gpubench")
    p.add_argument("--chip", default="sm_90a")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, --target vulkan")
    r = sub.add_parser("run")
    r.add_argument("--dir", default="build-gpubench")
    r.add_argument("--out", default=os.environ.get("OUT"))
    r.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp"),
                   help="where checkpoints and packed artifacts go (needs ~40 GB)")
    r.add_argument("--only", help="comma list of model names")
    r.add_argument("--no-torch", action="store_true")
    r.add_argument("--no-gemm", action="store_true")
    r.add_argument("--budget-s", type=float, default=420,
                   help="start no model after this many seconds (default 420)")
    args = parser.parse_args()
    return prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main() or 0)
