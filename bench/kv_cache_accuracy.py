"""Accuracy of xfmr's compressed KV caches against the uncompressed cache (issue 6).

Uses the float64 NumPy emulation of the compression (xfmr.reference.kv_cache, the same
element types, scales and rounding as `xfmr-compile --kv-cache ...`), so no build is needed.
For each model:

1. Sample sequences from the uncompressed reference model (float64 cache; temperature 1.0,
   fixed seed, from prompt [1]).
2. Run the uncompressed model and each compressed-cache variant teacher-forced over the same
   tokens, one token per forward call, as decoding does: every key and value is compressed
   when it is written and every later step attends to the compressed entries.
3. Report, over all predicted positions, the max logit error (max over positions of
   max|z - z_ref| / max|z_ref| of the row), the mean KL(p_ref || p_cache) in nats and the
   top-1 agreement, plus the KV-cache bytes per token from the model's config.

Usage (numpy only, ~2-3 minutes on 2 cores):
    PYTHONPATH=python /usr/bin/python3 bench/kv_cache_accuracy.py
Writes docs/kv-cache.md and bench/kv_cache_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))

from xfmr import reference, synth  # noqa: E402
from xfmr.reference.kv_cache import (LATENT_SCALE_BLOCK, use_kv_cache,  # noqa: E402
                                     use_latent_cache)

sys.path.insert(0, str(REPO / "bench"))
from accuracy_common import (log_softmax, plus_minus, sample_sequences,  # noqa: E402
                             stderr_of_mean)

STORIES260K = REPO.parent / "shared" / "models" / "stories260K"

#: `--kv-cache` settings in table order, with their element size in bytes.
SETTINGS = [("f32", 4), ("bf16", 2), ("f16", 2), ("fp8", 1), ("int8", 1)]

#: What the issue quotes for a float64 emulation on stories260K (mean KL, top-1).
ISSUE_FIGURES = {"fp8": (0.055, 0.85), "int8": (0.0024, 0.965)}

#: Synthetic models: (title, arch, preset), each `--dtype bf16 --seed 0`.
SYNTH_MODELS = [
    ("Synthetic Llama, small preset (random weights)", "llama", "small"),
    ("Synthetic DeepSeek-V3, small preset (random weights)", "deepseek_v3", "small"),
]


# ----------------------------------------------------------------------------------------
# Cache shape and size
# ----------------------------------------------------------------------------------------


def cache_shape(config: dict) -> Dict[str, int]:
    """Layers, heads, key and value width of the cache xfmr compiles for `config`.

    Grouped-query attention caches num_key_value_heads heads of head_dim keys and values.
    DeepSeek-V3's MLA (the expanded, non-absorbed cache) stores per attention head the full
    key [k_nope | k_pe] (qk_nope_head_dim + qk_rope_head_dim) and the value (v_head_dim).
    """
    layers = int(config["num_hidden_layers"])
    if "kv_lora_rank" in config:
        return dict(layers=layers, heads=int(config["num_attention_heads"]),
                    key_dim=int(config["qk_nope_head_dim"]) + int(config["qk_rope_head_dim"]),
                    value_dim=int(config["v_head_dim"]))
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    return dict(layers=layers, heads=int(config.get("num_key_value_heads") or heads),
                key_dim=head_dim, value_dim=head_dim)


def bytes_per_token(config: dict, element: str) -> int:
    """KV-cache bytes per token: layers x heads x (key_dim + value_dim) x element bytes, plus
    for 8-bit elements two f32 scales (key, value) per head and layer. "latent-E" settings
    (MLA latent cache of element E): layers x (kv_lora_rank x E bytes + qk_rope x its bytes,
    bf16 for 8-bit E, + one f32 scale per 128 latent channels for 8-bit E)."""
    s = cache_shape(config)
    if element.startswith("latent-"):
        size = dict(SETTINGS)[element[len("latent-"):]]
        rank, rope = int(config["kv_lora_rank"]), int(config["qk_rope_head_dim"])
        scales = -(-rank // LATENT_SCALE_BLOCK) * 4 if size == 1 else 0
        return s["layers"] * (rank * size + scales + rope * (2 if size == 1 else size))
    size = dict(SETTINGS)[element]
    scales = 2 * 4 if size == 1 else 0
    return s["layers"] * s["heads"] * ((s["key_dim"] + s["value_dim"]) * size + scales)


# ----------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------


class RoutingRecorder:
    """Records, for every forward call, the routed experts that each MoE layer chose for the
    call's last token (the token whose logits predict the next one). DeepSeek-V3's top-k
    routing is discontinuous: a small change in the hidden state can swap an expert."""

    def __init__(self, model):
        self.calls: List[List[np.ndarray]] = []
        self.moe = [layer.mlp for layer in model.layers if hasattr(layer.mlp, "route")]
        for i, mlp in enumerate(self.moe):
            mlp.route = self._wrap(mlp.route, i)

    def _wrap(self, route, i):
        def recorded(x):
            idx, w = route(x)
            if i == 0:
                self.calls.append([])
            self.calls[-1].append(np.sort(idx[-1]))
            return idx, w
        return recorded

    def take(self) -> Optional[np.ndarray]:
        """Experts [calls, moe_layers, top_k] since the last take (None without MoE)."""
        calls, self.calls = self.calls, []
        return np.array(calls) if self.moe else None


def decode_forced(model, seq: Sequence[int], n_prompt: int) -> np.ndarray:
    """Logits [len(seq) - n_prompt, vocab] predicting seq[n_prompt:], teacher-forced: the
    prompt in one call, then one token per call through model.new_cache()."""
    cache = model.new_cache()
    rows = [model.forward(list(seq[:n_prompt]), cache)[-1]]
    for tok in seq[n_prompt:-1]:
        rows.append(model.forward([tok], cache)[-1])
    return np.stack(rows)


def position_kl(ref_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """KL(p_ref || p) in nats per position (row) of two logit arrays [positions, vocab]."""
    lr, lq = log_softmax(ref_rows), log_softmax(rows)
    return np.maximum(np.sum(np.exp(lr) * (lr - lq), axis=-1), 0.0)  # >= 0 up to rounding


def compare(ref_rows: Sequence[np.ndarray], rows: Sequence[np.ndarray]) -> Dict[str, float]:
    """Logit error, KL(p_ref || p) (nats) and top-1 agreement over all positions."""
    kls, agrees, errs = [], [], []
    for zr, z in zip(ref_rows, rows):
        kls.append(position_kl(zr, z))
        agrees.append(np.argmax(zr, axis=-1) == np.argmax(z, axis=-1))
        errs.append(np.max(np.abs(z - zr), axis=-1) / np.max(np.abs(zr), axis=-1))
    kl, agree, err = np.concatenate(kls), np.concatenate(agrees), np.concatenate(errs)
    return dict(max_logit_error=float(err.max()), mean_logit_error=float(err.mean()),
                mean_kl=float(kl.mean()), mean_kl_stderr=stderr_of_mean([k.mean() for k in kls]),
                median_kl=float(np.median(kl)), p95_kl=float(np.percentile(kl, 95)),
                max_kl=float(kl.max()), top1=float(agree.mean()),
                top1_stderr=stderr_of_mean([a.mean() for a in agrees]), positions=int(kl.size))


def evaluate(model_dir, n_seqs: int = 8, n_tokens: int = 63, prompt: Sequence[int] = (1,),
             seed: int = 0, settings: Optional[Sequence[str]] = None,
             log: Optional[Callable[[str], None]] = None) -> dict:
    """The measurement for one checkpoint folder; returns a JSON-ready dict."""
    model = reference.load(str(model_dir))
    if settings is None:
        settings = [s for s, _ in SETTINGS]
        if "kv_lora_rank" in model.config:  # MLA: also the latent cache in each element type
            settings += [f"latent-{s}" for s, _ in SETTINGS if s != "f16"]
    say = log or (lambda msg: None)
    t0 = time.time()
    uncompressed = model.new_cache
    routing = RoutingRecorder(model)
    seqs, ref_rows = sample_sequences(model, prompt, n_seqs, n_tokens, seed)
    ref_experts = routing.take()
    lr = log_softmax(np.concatenate(ref_rows))
    entropy = float(np.mean(-np.sum(np.exp(lr) * lr, axis=-1)))
    say(f"{Path(model_dir).name}: sampled {n_seqs}x{n_tokens} tokens, reference entropy "
        f"{entropy:.3f} nats (uniform {np.log(model.vocab_size):.3f}) "
        f"in {time.time() - t0:.1f} s")
    rows = []
    for element in settings:
        t1 = time.time()
        if element.startswith("latent-"):
            model.new_cache = uncompressed
            use_latent_cache(model, element[len("latent-"):])
        else:
            use_kv_cache(model, element)
        got = [decode_forced(model, s, len(prompt)) for s in seqs]
        stats = compare(ref_rows, got)
        experts = routing.take()
        if experts is not None:
            # Positions (and MoE layer decisions) whose routed experts differ from the
            # reference's, and the mean KL of the positions routed identically in every layer.
            diff = np.any(experts != ref_experts, axis=-1)  # [positions, moe_layers]
            same = ~np.any(diff, axis=-1)
            kl = position_kl(np.concatenate(ref_rows), np.concatenate(got))
            stats.update(routing_changed_positions=float(1.0 - same.mean()),
                         routing_changed_decisions=float(diff.mean()),
                         mean_kl_same_routing=float(kl[same].mean()) if same.any() else None)
        # The compression is per token, so a prefill of the whole sequence through the same
        # cache must give the same logits as decoding it token by token.
        pre = model.forward(list(seqs[0][:-1]), model.new_cache())[len(prompt) - 1:]
        routing.take()
        prefill_vs_decode = float(np.max(np.abs(pre - got[0])) / np.max(np.abs(got[0])))
        rows.append(dict(setting=element, bytes_per_token=bytes_per_token(model.config, element),
                         **stats, prefill_vs_decode=prefill_vs_decode,
                         seconds=round(time.time() - t1, 2)))
        r = rows[-1]
        say(f"  {element:5s} {r['bytes_per_token']:6d} B/token  max logit err "
            f"{r['max_logit_error']:.2e}  KL {r['mean_kl']:.5f}  top-1 {r['top1']:.3f}  "
            f"({r['seconds']:.1f} s)")
    model.new_cache = uncompressed
    for layer in model.layers:
        if hasattr(layer.attn, "latent_storage"):
            layer.attn.latent_storage = None
    cfg = model.config
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "head_dim", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
            "vocab_size", "torch_dtype")
    return dict(config={k: cfg[k] for k in keys if cfg.get(k) is not None},
                cache=cache_shape(cfg), n_seqs=n_seqs, n_tokens=n_tokens, prompt=list(prompt),
                seed=seed, temperature=1.0, ref_entropy=entropy,
                uniform_entropy=float(np.log(model.vocab_size)),
                ref_top1_prob=float(np.mean(np.exp(lr.max(axis=-1)))),
                rows=rows, seconds=round(time.time() - t0, 1))


# ----------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------


def _kl(x: float, stderr: Optional[float] = None) -> str:
    if x < 1e-3:
        return f"{x:.1e}" + ("" if stderr is None else f" ± {stderr:.1e}")
    return f"{x:.4f}{plus_minus(stderr, 4)}"


def _row(r: dict, f32_bytes: int, moe: bool) -> str:
    text = (f"| `{r['setting']}` | {r['bytes_per_token']} | "
            f"{r['bytes_per_token'] / f32_bytes:.3f} | {r['max_logit_error']:.2e} | "
            f"{_kl(r['mean_kl'], r['mean_kl_stderr'])} | {_kl(r['p95_kl'])} | "
            f"{r['top1']:.3f}{plus_minus(r['top1_stderr'], 3)} |")
    if moe:
        same = r["mean_kl_same_routing"]
        text += (f" {100 * r['routing_changed_positions']:.1f}% | "
                 f"{'-' if same is None else _kl(same)} |")
    return text


def issue_comparison(res: dict) -> str:
    by = {r["setting"]: r for r in res["rows"]}
    parts = []
    for element, (kl, top1) in ISSUE_FIGURES.items():
        if element in by:
            r = by[element]
            parts.append(f"{element} mean KL {r['mean_kl']:.4f} ± {r['mean_kl_stderr'] or 0:.4f}"
                         f" (issue: ~{kl}), top-1 {r['top1']:.3f} ± {r['top1_stderr'] or 0:.3f}"
                         f" (issue: ~{top1})")
    return "; ".join(parts)


def markdown(results: Dict[str, dict], verdict: str = "") -> str:
    total_seconds = sum(r.get("seconds", 0) for r in results.values())
    out = [
        "# KV-cache compression: size and accuracy",
        "",
        "What each `xfmr-compile --kv-cache` setting saves in cache memory and what it costs in",
        "accuracy against the uncompressed cache. Generated by `bench/kv_cache_accuracy.py`",
        "(raw numbers in `bench/kv_cache_accuracy.json`); rerun it after changing the scheme:",
        "",
        "    PYTHONPATH=python /usr/bin/python3 bench/kv_cache_accuracy.py",
        "",
        "## The settings",
        "",
        "Only the cache changes: weights, activations and attention arithmetic stay f32. Each",
        "key and value is converted when it is written to the cache, and every later step (and",
        "the writing step itself) attends to the stored, converted entries. Keys are stored",
        "after RoPE.",
        "",
        "- **`f32`** (the default): 4 bytes per element, no scales. This is the baseline that",
        "  the compiled model runs with; here it differs from the float64 reference only by",
        "  f32 rounding.",
        "- **`bf16`**: each element rounded to bfloat16 (8-bit exponent, 8-bit significand,",
        "  nearest, ties to even), 2 bytes, no scales. Same range as f32, ~3 significant digits.",
        "- **`f16`**: each element rounded to IEEE half (5-bit exponent, 11-bit significand),",
        "  2 bytes, no scales. Three more significand bits than bf16; its range (up to 65504,",
        "  subnormal below 6e-5) suffices for post-RoPE keys and values of the models here.",
        "- **`fp8`**: E4M3FN codes (4-bit exponent, 3-bit mantissa, saturating at +-448),",
        "  1 byte per element, plus **one f32 scale per token, per KV head and per tensor**",
        "  (one for the head's key vector, one for its value vector):",
        "  `scale = max(max|x|, 1e-12) / 448`, stored as f32; the code is `x / scale` rounded to",
        "  the nearest E4M3 value (ties to even). Read back as `code * scale`.",
        "- **`int8`**: the same per-token, per-head scales with `/ 127`; the code is",
        "  `round(x / scale)` (half to even) clamped to +-127: a uniform grid of step",
        "  `max|x| / 127` across the vector.",
        "",
        "The scales of the 8-bit settings are computed when the entry is written, from that",
        "token's own vector, so they never change afterwards and decoding needs no second pass.",
        "",
        "**Bytes per token** (what `--stats` reports as `kv_cache_bytes_per_token`) is",
        "`layers x heads x (key_dim + value_dim) x element_bytes`, plus `layers x heads x 2 x 4`",
        "for the f32 scales of the 8-bit settings. For grouped-query attention `heads` is",
        "`num_key_value_heads` and `key_dim = value_dim = head_dim`. DeepSeek-V3's MLA is compiled",
        "with the expanded cache: per attention head (`num_attention_heads`) the full key",
        "`[k_nope | k_pe]` (`qk_nope_head_dim + qk_rope_head_dim`, one scale for both parts) and",
        "the value (`v_head_dim`); that is the default, `--mla-cache expanded`. With",
        "`--mla-cache latent` (weight absorption, `xfmr-absorb-mla`) only `kv_lora_rank +",
        "qk_rope_head_dim` values per token and layer are cached, and `--kv-cache` sets their",
        "type: the `latent-*` rows of the DeepSeek table (8-bit: FlashMLA's layout, the",
        "latent as codes with one f32 scale per 128 channels and k_pe in bf16; DeepSeek-V3's",
        "512 + 64 take 656 bytes).",
        "",
        "## Method",
        "",
        "The numbers come from the float64 NumPy emulation of exactly this compression",
        "(`xfmr.reference.kv_cache.use_kv_cache`); `test/python/test_e2e_kv_cache.py` checks that",
        "the compiled models match that emulation to 1e-3 of each logit row (in practice ~1e-6),",
        "so they are also the compiled models' numbers.",
        "",
        "Sequences are sampled from the uncompressed reference model (float64 cache,",
        "temperature 1.0, fixed seed, prompt `[1]`). The uncompressed model and each setting are",
        "then run teacher-forced over the same tokens, **one token per forward call** as in",
        "decoding, so each step attends to the compressed keys and values of all earlier steps.",
        "(The compression is per token, so a prefill of the whole sequence gives the same",
        "logits; the script checks this on one sequence per setting, `prefill_vs_decode` in the",
        "JSON, all below 1e-12.) At every predicted position:",
        "",
        "- **Max logit error**: `max|z - z_ref| / max|z_ref|` of the logit row, maximised over",
        "  all positions (the measure the end-to-end tests bound by 1e-3 against the emulation).",
        "- **Mean KL**: KL(p_ref || p_cache) in nats, averaged over all positions, ± the",
        "  standard error over sequences; **p95 KL** its 95th percentile over positions.",
        "- **Top-1**: the fraction of positions where the argmax of both models' logits agrees,",
        "  ± the standard error over sequences.",
        "",
        "**Ratio** is bytes per token relative to the f32 cache.",
        "",
    ]
    for name, res in results.items():
        if res.get("skipped"):
            out += [f"## {name}", "", f"Skipped: {res['skipped']}", ""]
            continue
        c, s = res["config"], res["cache"]
        if "kv_lora_rank" in c:
            attn = (f"{c['num_attention_heads']} heads, MLA (kv_lora_rank {c['kv_lora_rank']}, "
                    f"qk_nope {c['qk_nope_head_dim']}, qk_rope {c['qk_rope_head_dim']}, "
                    f"v {c['v_head_dim']})")
        else:
            attn = f"{c['num_attention_heads']} heads ({c.get('num_key_value_heads')} KV)"
        f32_bytes = next(r["bytes_per_token"] for r in res["rows"] if r["setting"] == "f32")
        moe = "routing_changed_positions" in res["rows"][0]
        out += [
            f"## {name}",
            "",
            f"{res['description']} hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, "
            f"{attn}, vocab {c['vocab_size']}. Cache: {s['layers']} layers x {s['heads']} "
            f"heads x (key {s['key_dim']} + value {s['value_dim']}). {res['n_seqs']} sequences "
            f"x {res['n_tokens']} sampled tokens ({res['rows'][0]['positions']} positions), "
            f"seed {res['seed']}.",
            "",
            f"Reference distributions: mean entropy {res['ref_entropy']:.3f} nats "
            f"(uniform: {res['uniform_entropy']:.3f}), mean top-1 probability "
            f"{res['ref_top1_prob']:.3f}.",
            "",
            "| `--kv-cache` | Bytes/token | Ratio | Max logit error | Mean KL (nats) | p95 KL "
            "| Top-1 agreement |" + (" Routing changed | KL, same routing |" if moe else ""),
            "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if moe else ""),
        ]
        out += [_row(r, f32_bytes, moe) for r in res["rows"]]
        out.append("")
        if "kv_lora_rank" in c:
            out += ["`latent-E` rows: `--mla-cache latent --kv-cache E` (weight absorption, "
                    f"`xfmr-absorb-mla`): per token and layer only c_KV ({c['kv_lora_rank']}) "
                    f"and k_pe ({c['qk_rope_head_dim']}) values; for 8-bit E the latent is "
                    "stored as codes with one f32 scale per 128 channels and k_pe as bf16 "
                    "(FlashMLA's layout). The latent f32 cache computes the same function as "
                    "the expanded f32 cache (absorption only reorders the products; "
                    "`test/python/test_e2e_kv_cache.py` checks the same logits to 1e-4).", ""]
        if res.get("note"):
            out += [res["note"], ""]
    if verdict:
        out += ["## Reading the numbers", "", verdict, ""]
    out += [
        f"_Generated {time.strftime('%Y-%m-%d')} on {platform.machine()} with NumPy "
        f"{np.__version__}; the run took {total_seconds:.0f} s._",
        "",
    ]
    return "\n".join(out)


VERDICT = """\
- **f16 is practically lossless; bf16 nearly so.** Both halve the cache. f16 keeps three
  more significand bits than bf16, and its KL is ~60x smaller (stories260K: 7e-6 vs 5e-4
  nats; top-1 agreement 0.999 vs 0.988). Its narrower range is no issue for the keys and
  values of these models; a model whose cached values exceeded 65504 would overflow to
  inf in f16, not in bf16.
- **int8 is a small cost for ~4x less memory; fp8 is much worse at the same size.** On
  stories260K int8 gives mean KL 0.0024 and top-1 0.969, fp8 0.061 and 0.820: 25x the KL
  (20x on the synthetic Llama). Both have one scale per token and head, so each vector's
  largest element fixes the grid. int8's step is max/127 for every element. E4M3's step
  is 1/8 to 1/16 of the value, so it is coarser than int8 for every element above
  ~max/14, up to 9x coarser at the top (32/448 vs 1/127). It is finer only for the small
  elements, which matter little for q.k and the value sums. The scales cost 8 bytes per
  head and layer: half of the codes' size at stories260K's head_dim 8 (ratio 0.375, not
  0.25), ~3% at head_dim 128.
- **Against the issue's figures** (stories260K, float64 emulation: fp8 KL ~0.055 and
  top-1 ~0.85, int8 KL ~0.0024 and top-1 ~0.965): int8 agrees. fp8's KL agrees within
  two standard errors; its top-1 (0.820 ± 0.007 over 64 sequences) is lower than ~0.85.
  8-sequence runs (`--stories-seqs 8 --seed 0` to `9`) give fp8 KL 0.042 to 0.069 and
  top-1 0.80 to 0.86, so the issue's figures fit a single 8-sequence sample. The gap looks
  like sampling noise, not a different scheme.
- **DeepSeek-V3's error is dominated by MoE routing flips.** Top-k expert selection is
  discontinuous: when a perturbed hidden state changes which experts a token uses, its
  logits change completely (max logit error 0.6 to 1.2 for every compressed setting, even
  f16). fp8 changes the routing at about a third of the positions, int8 at ~12%, bf16 at
  ~3%, f16 at ~1%. Leaving those positions out ("KL, same routing") removes most of the KL
  (bf16: 2.4e-4 of 0.0064; fp8: 0.020 of 0.157). What remains is still above the
  synthetic Llama's, because a flip at an earlier token also changes the keys and values
  that token left in the cache for the later layers. A trained MoE model will show the same
  effect to some degree, so cache precision matters more for it than for a dense model.
- **The synthetic models have random weights.** Their next-token distributions are close
  to uniform, so absolute KL values are small and top-1
  agreement comes down to near-ties. Compare settings with each other on them, not with
  stories260K.
- **Choosing:** use f16 (rather than bf16) to halve the cache at a negligible cost, and
  int8 to quarter it at a small one. fp8 has int8's size with 20-25x its KL on the dense
  models, so it only makes sense where the attention kernels consume E4M3 directly."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stories-seqs", type=int, default=64,
                   help="sampled sequences for stories260K (default 64)")
    p.add_argument("--synth-seqs", type=int, default=16,
                   help="sampled sequences per synthetic model (default 16)")
    p.add_argument("--tokens", type=int, default=63, help="tokens per sequence (default 63)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--stories", default=str(STORIES260K), help="stories260K checkpoint folder")
    p.add_argument("--md", default=str(REPO / "docs" / "kv-cache.md"), help="Markdown out")
    p.add_argument("--json", default=str(REPO / "bench" / "kv_cache_accuracy.json"),
                   help="JSON out")
    args = p.parse_args(argv)

    def log(msg):
        print(f"kv_cache_accuracy: {msg}", file=sys.stderr, flush=True)

    results: Dict[str, dict] = {}
    name = "stories260K"
    if (Path(args.stories) / "config.json").exists():
        res = evaluate(args.stories, args.stories_seqs, args.tokens, (1,), args.seed, log=log)
        res["description"] = "Trained TinyStories Llama (llama2.c `stories260K`, f32):"
        res["note"] = ("The issue quotes, for a float64 emulation on this model, fp8 mean KL "
                       "~0.055 and top-1 ~0.85, int8 KL ~0.0024 and top-1 ~0.965. This run: "
                       f"{issue_comparison(res)}.")
        results[name] = res
    else:
        log(f"stories260K not found at {args.stories}; skipping it")
        results[name] = dict(skipped=f"checkpoint not found at `{args.stories}`.")

    for title, arch, preset in SYNTH_MODELS:
        with tempfile.TemporaryDirectory(prefix="xfmr-kv-acc-") as tmp:
            synth.generate(tmp, arch, preset=preset, dtype="bf16", seed=0, progress=False)
            res = evaluate(tmp, args.synth_seqs, args.tokens, (1,), args.seed, log=log)
        res["description"] = (f"Random bf16 weights (`python -m xfmr.synth --arch {arch} "
                              f"--preset {preset} --dtype bf16 --seed 0`):")
        results[title] = res

    Path(args.md).write_text(markdown(results, VERDICT))
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    log(f"wrote {args.md} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
