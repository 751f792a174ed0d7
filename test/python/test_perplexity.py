"""xfmr-perplexity (issue 17): perplexity over sliding windows, against the float64 NumPy
reference on the same windows, and KL divergence against a base artifact. A tiny synthetic
Llama carries GPT-2's tokenizer (../shared/tokenizers; skipped when absent)."""

import json
import math
import subprocess

import numpy as np
import pytest

from conftest import REPO, tool

GPT2 = REPO.parent / "shared" / "tokenizers" / "gpt2" / "tokenizer.json"
TEXT = (REPO / "README.md").read_text()[:1500]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    if not GPT2.exists():
        pytest.skip(f"{GPT2} not found (shared tokenizers absent)")
    from xfmr import synth  # noqa: PLC0415
    folder = tmp_path_factory.mktemp("ppl")
    synth.generate(str(folder / "ckpt"), "llama", tokenizer=str(GPT2))
    subprocess.run([tool("xfmr-compile"), str(folder / "ckpt"), "-o", str(folder / "m.xfmr")],
                   check=True, capture_output=True)
    (folder / "text.txt").write_text(TEXT)
    return folder


def perplexity(*args):
    out = subprocess.run([tool("xfmr-perplexity"), *map(str, args)], capture_output=True,
                         text=True)
    return out


def reference_perplexity(folder, ids, context, stride):
    from xfmr import reference  # noqa: PLC0415
    model = reference.load(str(folder / "ckpt"))
    nll, scored, scored_up_to, begin = 0.0, 0, 1, 0
    while scored_up_to < len(ids):
        end = min(begin + context, len(ids))
        logits = model.forward(ids[begin:end])
        log_p = logits - logits.max(-1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
        for j in range(max(scored_up_to, begin + 1), end):
            nll -= log_p[j - 1 - begin, ids[j]]
            scored += 1
        scored_up_to = max(scored_up_to, end)
        if end == len(ids):
            break
        begin += stride
    return math.exp(nll / scored), scored


@pytest.mark.parametrize("context,stride", [(64, 64), (64, 24)])
def test_perplexity_matches_the_reference(model, context, stride):
    out = perplexity(model / "m.xfmr", "--text-file", model / "text.txt", "--context", context,
                     "--stride", stride)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    ids = subprocess.run([tool("xfmr-tokenize"), str(model / "m.xfmr")], input=TEXT.encode(),
                         capture_output=True, check=True).stdout.split()
    ids = [int(i) for i in ids]
    expected, scored = reference_perplexity(model, ids, context, stride)
    # Windows that do not overlap leave the first token of each unscored.
    windows = -(-(len(ids)) // context) if stride == context else None
    assert result["tokens"] == len(ids) and result["scored"] == scored
    assert scored == (len(ids) - windows if windows else len(ids) - 1)
    assert abs(result["perplexity"] / expected - 1) < 1e-4
    assert "window 1: tokens [0, 64)" in out.stderr


def test_kl_divergence_against_a_base(model, tmp_path):
    # The model against itself: no divergence, the same top tokens.
    out = perplexity(model / "m.xfmr", "--text-file", model / "text.txt", "--context", 64,
                     "--kl-base", model / "m.xfmr")
    result = json.loads(out.stdout)
    assert abs(result["kl_divergence"]) < 1e-6 and result["top1_agreement"] == 1.0
    # FP8 against the f32 model: a small, positive divergence.
    fp8 = tmp_path / "fp8.xfmr"
    subprocess.run([tool("xfmr-compile"), str(model / "ckpt"), "-o", str(fp8), "--quantize",
                    "fp8", "--quantize-block", "32"], check=True, capture_output=True)
    result = json.loads(perplexity(fp8, "--text-file", model / "text.txt", "--context", 64,
                                   "--kl-base", model / "m.xfmr").stdout)
    assert 0 < result["kl_divergence"] < 0.5 and 0.5 < result["top1_agreement"] <= 1


def test_errors(model, tmp_path):
    artifact, text = model / "m.xfmr", model / "text.txt"
    for args, message in [((), "--text-file is required"),
                          (("--text-file", text, "--context", 1), "--context must be"),
                          (("--text-file", text, "--context", 8, "--stride", 9),
                           "--stride must not exceed"),
                          (("--text-file", text, "--bogus"), "unknown option")]:
        out = perplexity(artifact, *args)
        assert out.returncode == 2 and message in out.stderr, out.stderr
    short = tmp_path / "short.txt"
    short.write_text("Hi")
    for args, message in [(("--text-file", tmp_path / "missing.txt"), "missing.txt"),
                          (("--text-file", short), "at least 2"),
                          (("--text-file", text, "--context", 100000), "exceeds the artifact"),
                          (("--text-file", text, "--kl-base", tmp_path / "no.xfmr"), "no.xfmr")]:
        out = perplexity(artifact, *args)
        assert out.returncode == 1 and message in out.stderr, out.stderr
        assert out.stdout == ""
