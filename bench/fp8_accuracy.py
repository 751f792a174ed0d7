"""Accuracy of xfmr's FP8 scheme (issue 5), its int8 W8A8 scheme (issue 16) and its int4
W4A8 scheme (issue 19) against the unquantized model.

Uses the float64 NumPy emulations of the schemes (xfmr.reference.fp8 and .int8, the same
scales, rounding and activation groups as `xfmr-compile --quantize fp8|int8`), so no build is
needed. For each model:

1. Sample sequences from the unquantized reference model itself (temperature 1.0, fixed seed).
2. Run the unquantized model and each FP8 variant teacher-forced (one prefill per sequence)
   over the same tokens.
3. Report, over all predicted positions, the mean KL(p_ref || p_fp8) in nats and the top-1
   agreement (argmax of the FP8 logits equals argmax of the reference logits), plus the mean
   entropy of the reference distributions so the KL can be judged against it.

Schemes: FP8 with 128x128 blocks, per-output-channel and per-tensor weight scales, each
weights-only and weights + dynamic per-token 1x128 activations; int8 with per-output-channel
weight scales and per-token activation scales (W8A8); int4 with f16 scales per output channel
and group of 32 or 128 inputs, int8 activations per token, the LM head int8, int4 or kept.

Usage (numpy only, ~1-2 minutes on 2 cores):
    PYTHONPATH=python /usr/bin/python3 bench/fp8_accuracy.py
Writes docs/fp8-accuracy.md and bench/fp8_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))

from xfmr import reference, synth  # noqa: E402
from xfmr.reference.fp8 import apply_fp8  # noqa: E402
from xfmr.reference.int4 import apply_int4  # noqa: E402
from xfmr.reference.int8 import apply_int8  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from accuracy_common import (log_softmax, plus_minus, sample_sequences,  # noqa: E402
                             stderr_of_mean)

STORIES260K = REPO.parent / "shared" / "models" / "stories260K"

#: (label, apply_fp8 keyword arguments, or format="int8" for apply_int8), in table order.
SCHEMES = [
    ("128x128 blocks", dict(granularity="block", block=(128, 128), activations=False)),
    ("128x128 blocks", dict(granularity="block", block=(128, 128), activations=True)),
    ("per-channel", dict(granularity="channel", activations=False)),
    ("per-channel", dict(granularity="channel", activations=True)),
    ("per-tensor", dict(granularity="tensor", activations=False)),
    ("per-tensor", dict(granularity="tensor", activations=True)),
    ("int8 per-channel", dict(format="int8", granularity="channel", activations=True)),
    ("int4 groups of 32, int8 head", dict(format="int4", group=32, head="int8")),
    ("int4 groups of 32, int4 head", dict(format="int4", group=32, head="int4")),
    ("int4 groups of 32, bf16 head", dict(format="int4", group=32, head="keep")),
    ("int4 groups of 128, int8 head", dict(format="int4", group=128, head="int8")),
]

#: Synthetic models (`python -m xfmr.synth --arch llama --preset small --dtype bf16 --seed 0`
#: plus these --set overrides): the small preset as is (hidden 256, ~3.4M parameters) and a
#: wider one (hidden 768, ~31M parameters; wider is slow in float64 with NumPy's reference BLAS).
SYNTH_MODELS = [
    ("Synthetic Llama, small preset (random weights)", {}),
    ("Synthetic Llama, hidden 768 (random weights)",
     dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=12,
          num_key_value_heads=4, vocab_size=4096)),
]


def teacher_forced(model, seqs: Sequence[Sequence[int]]) -> List[np.ndarray]:
    """Log-probabilities [len(seq) - 1, vocab] predicting each next token (one prefill each)."""
    return [log_softmax(model.forward(list(s[:-1]), model.new_cache())) for s in seqs]


def compare(ref_logp: Sequence[np.ndarray], q_logp: Sequence[np.ndarray]) -> Dict[str, float]:
    """Mean KL(p_ref || p_q) (nats), its spread, and top-1 agreement over all positions,
    with standard errors over the sequences."""
    kls, agrees, rels = [], [], []
    for lr, lq in zip(ref_logp, q_logp):
        kls.append(np.maximum(np.sum(np.exp(lr) * (lr - lq), axis=-1), 0.0))  # >= 0 up to rounding
        agrees.append(np.argmax(lr, axis=-1) == np.argmax(lq, axis=-1))
        # Relative error of the logits (each row centred, which removes softmax's free shift).
        r = lr - lr.mean(axis=-1, keepdims=True)
        d = (lq - lq.mean(axis=-1, keepdims=True)) - r
        rels.append(np.linalg.norm(d, axis=-1) / np.linalg.norm(r, axis=-1))
    kl, agree, rel = np.concatenate(kls), np.concatenate(agrees), np.concatenate(rels)
    return dict(mean_kl=float(kl.mean()), mean_kl_stderr=stderr_of_mean([k.mean() for k in kls]),
                median_kl=float(np.median(kl)), p95_kl=float(np.percentile(kl, 95)),
                max_kl=float(kl.max()), top1=float(agree.mean()),
                top1_stderr=stderr_of_mean([a.mean() for a in agrees]),
                rel_logit_error=float(rel.mean()), positions=int(kl.size))


def evaluate(model_dir, n_seqs: int = 8, n_tokens: int = 64, prompt: Sequence[int] = (1,),
             seed: int = 0, schemes=None, log=None, load=None) -> dict:
    """The core measurement for one checkpoint folder; returns a JSON-ready dict.

    `load(model_dir)` makes a fresh reference model (default xfmr.reference.load); it is
    called once for the reference and once per scheme, since apply_fp8 works in place."""
    schemes = SCHEMES if schemes is None else schemes
    load = load or reference.load
    say = log or (lambda msg: None)
    t0 = time.time()
    ref = load(str(model_dir))
    seqs, _ = sample_sequences(ref, prompt, n_seqs, n_tokens, seed)
    ref_logp = teacher_forced(ref, seqs)
    lr = np.concatenate(ref_logp)
    entropy = float(np.mean(-np.sum(np.exp(lr) * lr, axis=-1)))
    vocab = ref.vocab_size
    say(f"{Path(model_dir).name} (hidden {ref.config['hidden_size']}): sampled "
        f"{n_seqs}x{n_tokens} tokens, reference entropy "
        f"{entropy:.3f} nats (uniform {np.log(vocab):.3f}) in {time.time() - t0:.1f} s")
    rows = []
    for label, kwargs in schemes:
        t1 = time.time()
        model = load(str(model_dir))
        kind = kwargs.get("format", "fp8")
        int8 = kind == "int8"
        if int8:
            apply_int8(model)
        elif kind == "int4":
            apply_int4(model, group=kwargs["group"], head=kwargs["head"])
        else:
            apply_fp8(model, **kwargs)
        stats = compare(ref_logp, teacher_forced(model, seqs))
        row = dict(scheme=label, format=kind,
                   granularity=("channel" if int8 else f"group {kwargs['group']}"
                                if kind == "int4" else kwargs.get("granularity", "block")),
                   block=list(kwargs.get("block", (128, 128))),
                   activations=bool(kwargs.get("activations", True)), **stats,
                   seconds=round(time.time() - t1, 2))
        rows.append(row)
        say(f"  {label:15s} {'W+A' if row['activations'] else 'W  '}  KL {row['mean_kl']:.5f}"
            f"  top-1 {row['top1']:.3f}  ({row['seconds']:.1f} s)")
    cfg = ref.config
    return dict(config={k: cfg.get(k) for k in (
                    "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "vocab_size", "torch_dtype")},
                parameters=_parameters(ref), n_seqs=n_seqs, n_tokens=n_tokens,
                prompt=list(prompt), seed=seed, temperature=1.0, ref_entropy=entropy,
                uniform_entropy=float(np.log(vocab)),
                ref_top1_prob=float(np.mean(np.exp(lr.max(axis=-1)))),
                rows=rows, seconds=round(time.time() - t0, 1))


def _parameters(model) -> int:
    n = model.embed.size + (0 if model.lm_head is model.embed else model.lm_head.size)
    for layer in model.layers:
        for obj in (layer.attn, layer.mlp):
            n += sum(v.size for v in vars(obj).values() if isinstance(v, np.ndarray))
        n += layer.input_norm.size + layer.post_norm.size
    return int(n + model.norm.size)


def markdown(results: Dict[str, dict]) -> str:
    total_seconds = sum(r.get("seconds", 0) for r in results.values())
    out = [
        "# FP8, int8 and int4 accuracy",
        "",
        "How far xfmr's FP8 scheme (`xfmr-compile --quantize fp8`), its int8 W8A8 scheme",
        "(`--quantize int8`) and its int4 W4A8 scheme (`--quantize int4`) move a model's",
        "next-token distribution away from the unquantized model. Generated by",
        "`bench/fp8_accuracy.py`",
        "(raw numbers in `bench/fp8_accuracy.json`); rerun it after changing the scheme:",
        "",
        "    PYTHONPATH=python /usr/bin/python3 bench/fp8_accuracy.py",
        "",
        "## The scheme",
        "",
        "FP8 follows DeepSeek-V3. The weights of the linear layers inside attention and the MLP",
        "(q/k/v/o, gate/up/down) become E4M3FN values times an fp32 scale; the embedding, the",
        "LM head, norms and MoE routers stay in high precision. A scale is",
        "`max|w| / 448` over the group of weights it serves (floored at 1e-12), and each weight is",
        "rounded to the nearest E4M3FN value (ties to even, saturating at +-448). The group is",
        "what `--quantize-granularity` chooses:",
        "",
        "- **128x128 blocks** (`block`, the default; `--quantize-block=RxC`): one scale per",
        "  128x128 tile of the `[out, in]` weight, edge tiles partial.",
        "- **per-channel** (`channel`): one scale per output channel (a row of `[out, in]`).",
        "- **per-tensor** (`tensor`): one scale for the whole weight matrix.",
        "",
        "With `--quantize-activations=true` (the default) the input of every quantized linear is",
        "also quantized on the fly: per token, in groups of 128 channels, each group with its own",
        "max-abs scale; products accumulate in fp32. `weights only` rows use",
        "`--quantize-activations=false`.",
        "",
        "**int8** (`--quantize int8`, W8A8, for CPUs without FP8 arithmetic): each linear",
        "weight gets one scale per output channel, `max|w| / 127`, and integer codes rounded to",
        "nearest even in [-127, 127]; each token's input to a linear gets one scale for its",
        "whole row the same way. The products of the codes are exact integer sums, scaled by",
        "both scales (`xfmr.reference.int8.apply_int8`; `test/python/test_e2e_int8.py` checks",
        "the compiled code against it). Routed experts are quantized like linears; the",
        "embedding, the LM head, norms, routers and MLA's kv_b stay in high precision.",
        "",
        "**int4** (`--quantize int4`, W4A8 for CPUs and phones, as llama.cpp's Q4_0 x Q8_0):",
        "each linear weight gets one f16 scale per output channel and group of 32 inputs",
        "(`--quantize-group`), as Q4_0: `f16(m / -8)` for m the group's first value of the",
        "largest magnitude, and codes rounded to nearest even in [-8, 7] (m is code -8);",
        "activations are int8 per token as in W8A8. Each group's product is an exact integer",
        "sum, scaled by its weight scale; the token's scale multiplies the total",
        "(`xfmr.reference.int4.apply_int4`; `test/python/test_e2e_int4.py` checks the compiled",
        "code against it). The LM head is W8A8 by default (`--quantize-head int8`; `int4` and",
        "`keep` are the rows below), routed experts are int4 like the linears, and a tied",
        "head (stories260K's) is quantized the same way from a copy of the",
        "embedding table, which the embedding keeps.",
        "",
        "The numbers below come from the float64 NumPy emulation of exactly this scheme",
        "(`xfmr.reference.fp8.apply_fp8`); `test/python/test_e2e_fp8.py` checks that the",
        "compiled code matches that emulation to 1e-3, so they are also the compiled model's.",
        "",
        "## Method",
        "",
        "Sequences are sampled from the unquantized reference model itself (temperature 1.0,",
        "fixed seed, from prompt `[1]`). The unquantized model and each FP8 variant are then run",
        "teacher-forced over the same tokens; at every position we compare the next-token",
        "distributions: **mean KL** is KL(p_ref || p_fp8) in nats averaged over all positions,",
        "**top-1** the fraction of positions where both models' argmax agree (both with the",
        "standard error over the sequences). **Logit error** is |z_fp8 - z_ref| / |z_ref| per",
        "position, averaged, with each logit row z centred (softmax ignores a shift): the",
        "format's error before the softmax turns it into KL. **Entropy** is the mean entropy of",
        "the reference distributions (with `ln(vocab)`, the uniform distribution's, beside",
        "it): a KL means little without knowing how peaked p_ref is.",
        "",
    ]
    for name, res in results.items():
        if res.get("skipped"):
            out += [f"## {name}", "", f"Skipped: {res['skipped']}", ""]
            continue
        c = res["config"]
        out += [
            f"## {name}",
            "",
            f"{res['description']} hidden {c['hidden_size']}, intermediate "
            f"{c['intermediate_size']}, {c['num_hidden_layers']} layers, "
            f"{c['num_attention_heads']} heads ({c['num_key_value_heads']} KV), vocab "
            f"{c['vocab_size']}, {res['parameters'] / 1e6:.2f}M parameters. "
            f"{res['n_seqs']} sequences x {res['n_tokens']} sampled tokens "
            f"({res['rows'][0]['positions']} positions), seed {res['seed']}.",
            "",
            f"Reference distributions: mean entropy {res['ref_entropy']:.3f} nats "
            f"(uniform: {res['uniform_entropy']:.3f}), mean top-1 probability "
            f"{res['ref_top1_prob']:.3f}.",
            "",
            "| Weight scales | Activations | Mean KL (nats) | Median KL | p95 KL | Top-1 agreement "
            "| Logit error |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in res["rows"]:
            act = "dynamic 1x128" if r["activations"] else "unquantized (weights only)"
            if r.get("format") in ("int8", "int4"):
                act = "int8, per token"
            out.append(f"| {r['scheme']} | {act} "
                       f"| {r['mean_kl']:.4f}{plus_minus(r['mean_kl_stderr'], 4)} "
                       f"| {r['median_kl']:.4f} | {r['p95_kl']:.4f} "
                       f"| {r['top1']:.3f}{plus_minus(r['top1_stderr'], 3)} "
                       f"| {100 * r['rel_logit_error']:.1f}% |")
        out.append("")
        if res.get("note"):
            out += [res["note"], ""]
    out += [
        "## Reading the numbers",
        "",
        "- **Scale granularity hardly matters for FP8 here.** Within each model the three",
        "  choices differ by no more than about two standard errors. E4M3 is a floating-point",
        "  format: its relative step (1/16 to 1/8 of a value) is the same at every magnitude",
        "  from 448 down to 2^-6, so with one max-abs scale a value keeps full relative",
        "  precision unless it is ~2^15 (448 / 2^-6) times smaller than the largest value",
        "  sharing its scale. A scale choice only shifts where the grid points fall. Smaller",
        "  groups pay off only for weights with rows or blocks of very different magnitude,",
        "  or outliers; in stories260K, even per-tensor scales put no more than 0.1% of any",
        "  layer-0 weight below that range. (INT8 is different: its uniform grid has a step of max/127 for",
        "  every value, so per-channel scales matter much more there.) On weights narrower",
        "  than 128 (stories260K's are 64 wide, MLPs 172) a 128x128 block covers most or all of",
        "  the matrix, so blocks and per-tensor are nearly the same scheme.",
        "- **int8 W8A8 is about ten times closer to the model than FP8 W+A.** With a scale",
        "  per output channel and per token, int8's 255 levels (a step of max/127) beat E4M3's",
        "  3-bit mantissa on these weights and activations: the int8 row's mean KL is 8 to 11",
        "  times smaller than any FP8 scheme with quantized activations, and its top-1",
        "  agreement 14 to 26 points higher. It is also faster on CPUs (performance.md).",
        "  Outliers (a few values far above the rest of their row or token) would hurt int8",
        "  first; these models have none, trained LLMs at scale do.",
        "- **int4 costs far more than 8 bits.** On both synthetic models int4 (groups of 32,",
        "  int8 head) has a mean KL of 0.25 nats and top-1 agreement of 0.41-0.50: about 6",
        "  times FP8 W+A's KL and 45-60 times int8's. Its step, max/8 of a group of 32, is about",
        "  7% (rms) of a Gaussian weight against E4M3's 2-3%, and KL grows with the square of",
        "  the error. stories260K (hidden 64) suffers most (KL 2.2, top-1 0.28). These",
        "  random-weight models are a stress test; what int4 costs a trained model of",
        "  realistic size is still to be measured.",
        "- **Q4_0's 16th level is worth 20% of int4's KL.** Using code -8 for the group's",
        "  largest magnitude (a signed scale m / -8, as llama.cpp's Q4_0) instead of codes",
        "  [-7, 7] with max|w| / 7 makes the step 7/8 as large: mean KL fell from 0.302 and",
        "  0.311 to 0.246 and 0.247 on the synthetic models, 2.40 to 2.19 on stories260K, and",
        "  from 0.437 to 0.363 with groups of 128 (same runs otherwise, 2026-12-07). The",
        "  kernels did not change: the stored nibble is code + 8 either way.",
        "- **Groups of 128 cost about 45% more KL than groups of 32** (0.35-0.36 against",
        "  0.25) for 8% fewer bytes (4.125 against 4.5 bits a weight).",
        "- **The LM head is int8 under int4 because that costs nothing measurable.** An int8",
        "  head gives the same KL as a head kept in bf16 (0.2459 against 0.2456, 0.2470",
        "  against 0.2468); an int4 head adds 6% (0.260, 0.261). On the 500M benchmark model",
        "  the int8 head is 49 MB of the 276 MB decode reads a token; an int4 head would save",
        "  21 MB (8% of decode time) for that 6% (performance.md). The embedding stays in its",
        "  precision: decode reads one row of it a token, so it costs memory, not bandwidth.",
        "- **Quantizing activations adds about 70% to the weights' KL.** Also quantizing every",
        "  linear's input (dynamic 1x128) multiplies the mean KL by about 1.7 in every model",
        "  and lowers top-1 agreement by 4 to 12 percentage points.",
        "- **stories260K is a harsh case** (hidden 64, head dim 8, peaked distributions). Its",
        "  logits move by ~25% of their size under FP8 weights (the synthetic models: ~11%),",
        "  and its sharp, trained distributions turn that into far more KL than the synthetic",
        "  models' flat ones do.",
        "- **Synthetic models have random weights**, so their next-token distributions are",
        "  close to uniform (mean entropy within ~2 nats of ln(vocab), mean top-1 probability",
        "  of a few percent). Absolute KL values are therefore small, and top-1 agreement is",
        "  decided by near-ties among many almost equally likely tokens. The 768-wide model",
        "  loses no less than the 256-wide one, so the small KL comes from the flat",
        "  distributions rather than the width. Compare schemes with each other on these",
        "  models, not with trained models. A trained model of realistic size is still needed",
        "  to say what FP8 costs in practice.",
        "",
        "## Where FP8 costs too much",
        "",
        "In this order: keep activations unquantized (`--quantize-activations=false`; weights",
        "stay FP8, so decode still reads one byte per weight), keep sensitive layers in high",
        "precision (`--quantize-keep=NAME,...`), and use per-channel or smaller blocks",
        "(`--quantize-granularity=channel`, `--quantize-block=RxC`), which helps only",
        "weights with outlier rows, as above. On CPUs, `--quantize int8` (per-channel int8",
        "weights, per-token int8 activations) is both more accurate and faster than FP8 on",
        "the models above.",
        "",
        f"_Generated {time.strftime('%Y-%m-%d')} on {platform.machine()} with NumPy "
        f"{np.__version__}; the run took {total_seconds:.0f} s._",
        "",
    ]
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seqs", type=int, default=8, help="sampled sequences per model (default 8)")
    p.add_argument("--tokens", type=int, default=64, help="tokens per sequence (default 64)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--stories", default=str(STORIES260K), help="stories260K checkpoint folder")
    p.add_argument("--md", default=str(REPO / "docs" / "fp8-accuracy.md"), help="Markdown out")
    p.add_argument("--json", default=str(REPO / "bench" / "fp8_accuracy.json"), help="JSON out")
    p.add_argument("--from-json", action="store_true",
                   help="only rewrite the Markdown from the JSON of an earlier run")
    args = p.parse_args(argv)
    if args.from_json:
        Path(args.md).write_text(markdown(json.loads(Path(args.json).read_text())))
        return 0

    def log(msg):
        print(f"fp8_accuracy: {msg}", file=sys.stderr, flush=True)

    results: Dict[str, dict] = {}
    name = "stories260K"
    if (Path(args.stories) / "config.json").exists():
        res = evaluate(args.stories, args.seqs, args.tokens, (1,), args.seed, log=log)
        res["description"] = "Trained TinyStories Llama (llama2.c `stories260K`, f32):"
        first = res["rows"][0]
        res["note"] = (
            "Issue 5 quoted mean KL ~0.27 and top-1 ~0.6 for a float64 emulation of "
            "128x128-block E4M3 weights on this model; this run measures mean KL "
            f"{first['mean_kl']:.3f} ± {first['mean_kl_stderr']:.3f} and top-1 "
            f"{first['top1']:.3f} ± {first['top1_stderr']:.3f} for that scheme (weights only, "
            "first row), in line with it.")
        results[name] = res
    else:
        log(f"stories260K not found at {args.stories}; skipping it")
        results[name] = dict(skipped=f"checkpoint not found at `{args.stories}`.")

    for title, overrides in SYNTH_MODELS:
        with tempfile.TemporaryDirectory(prefix="xfmr-fp8-acc-") as tmp:
            synth.generate(tmp, "llama", preset="small", dtype="bf16", seed=0,
                           overrides=dict(overrides), progress=False)
            res = evaluate(tmp, args.seqs, args.tokens, (1,), args.seed, log=log)
        sets = "".join(f" --set {k}={v}" for k, v in overrides.items())
        res["description"] = ("Synthetic Llama, random bf16 weights (`python -m xfmr.synth "
                              f"--arch llama --preset small --dtype bf16 --seed 0{sets}`):")
        results[title] = res

    Path(args.md).write_text(markdown(results))
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    log(f"wrote {args.md} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
