"""End to end with an evicting KV cache (`xfmr-compile --kv-window W --kv-sinks S`,
StreamingLLM): the cache holds S + W entries as a ring, generation runs past the context
length, and every logit row matches a float64 model whose attention sees the same positions
(xfmr.reference.kv_cache.use_eviction) to 1e-3 of the row's max-abs."""

import subprocess

import numpy as np
import pytest

import xfmr
from test_e2e_cpu import relative_row_error, tool
from xfmr import reference
from xfmr.reference.kv_cache import use_eviction, use_kv_cache, use_latent_cache

INT32_MAX = 2**31 - 1


def teacher_forced_rows(session, ids, prompt_length):
    """Logit rows of every position: the first `prompt_length` ids in one prefill call
    (which wraps the ring when longer than it), the rest one decode step each."""
    rows = list(session.prefill(ids[:prompt_length]))
    rows += [session.decode(token) for token in ids[prompt_length:]]
    return np.array(rows)


def check(checkpoint, tmp_path, ids, prompt_length, window, sinks, kv_cache=None):
    artifact = xfmr.compile(checkpoint, tmp_path / "model.xfmr", kv_cache=kv_cache,
                            kv_window=window, kv_sinks=sinks)
    model = reference.load(str(checkpoint))
    if kv_cache:
        use_kv_cache(model, kv_cache)
    use_eviction(model, window, sinks)
    expected = model.forward(ids, model.new_cache())
    session = artifact.session()
    rows = teacher_forced_rows(session, ids, prompt_length)
    assert relative_row_error(rows, expected) < 1e-3
    assert list(rows.argmax(-1)) == list(expected.argmax(-1))
    assert session.position == len(ids)
    return artifact


def test_stories260k_past_the_context(stories260k_dir, tmp_path):
    """560 positions through a 4 + 24 entry ring, past max_position_embeddings = 512; the
    40-token prompt wraps the ring inside one prefill call."""
    model = reference.load(str(stories260k_dir))
    generated, _ = model.generate_greedy([1], 559)
    artifact = check(stories260k_dir, tmp_path, [1] + generated, 40, window=24, sinks=4)
    manifest = artifact.manifest
    assert manifest["model"]["kv_window"] == 24 and manifest["model"]["kv_sinks"] == 4
    assert artifact.context_length == INT32_MAX
    # 28 entries x 5 layers x 4 KV heads x (8 + 8) f32 channels.
    assert artifact.kv_cache_bytes == 28 * 5 * 4 * 16 * 4
    assert manifest["compile_options"]["kv_window"] == 24


@pytest.mark.parametrize("kv_cache", [None, "int8"])
def test_synthetic_window_only_and_quantized(kv_cache, synth_checkpoint, tmp_path):
    """No sinks (a plain sliding window), and eviction composed with an int8 cache."""
    checkpoint = synth_checkpoint("llama")
    sinks = 0 if kv_cache is None else 3
    check(checkpoint, tmp_path, [(7 * i + 3) % 50 for i in range(80)], 20, window=9,
          sinks=sinks, kv_cache=kv_cache)


def test_generate_runs_past_the_context(stories260k_dir, tmp_path):
    """Session.generate is not bounded by the model's context length any more."""
    artifact = xfmr.compile(stories260k_dir, tmp_path / "model.xfmr", context=16,
                            kv_window=8, kv_sinks=2)
    tokens = artifact.session().generate([1], 40)
    assert len(tokens) == 40


@pytest.mark.parametrize("flags", [(), ("--mla-cache", "latent"),
                                   ("--mla-cache", "latent", "--kv-cache", "fp8"),
                                   ("--mla-cache", "latent", "--mla-absorb", "compile-time")],
                         ids=["expanded", "latent", "latent-fp8", "latent-folded"])
def test_deepseek_v3(flags, synth_checkpoint, tmp_path):
    """MLA evicts like GQA, from its expanded cache or its (compressed) latent cache."""
    checkpoint = synth_checkpoint("deepseek_v3")
    artifact = xfmr.compile(checkpoint, tmp_path / "model.xfmr", kv_window=9, kv_sinks=2,
                            mla_cache="latent" if "latent" in flags else None,
                            kv_cache="fp8" if "fp8" in flags else None,
                            mla_absorb="compile-time" if "compile-time" in flags else None)
    model = reference.load(str(checkpoint))
    if "fp8" in flags:
        use_latent_cache(model, "fp8")
    use_eviction(model, 9, 2)
    ids = [(5 * i + 1) % 50 for i in range(48)]
    expected = model.forward(ids, model.new_cache())
    rows = teacher_forced_rows(artifact.session(), ids, 16)
    assert relative_row_error(rows, expected) < 1e-3
    assert list(rows.argmax(-1)) == list(expected.argmax(-1))
    assert artifact.manifest["model"]["kv_window"] == 9
    assert artifact.manifest["compile_options"]["mla_absorb"] == (
        "compile-time" if "compile-time" in flags else "runtime")


def test_unsupported_models(synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint("mistral", overrides={"sliding_window": 8})
    message = "already attends through a sliding window"
    output = tmp_path / "model.xfmr"
    result = subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(output),
                             "--kv-window", "16"], capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr
    assert not output.exists()


def test_bad_options(synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint("llama")
    result = subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o",
                             str(tmp_path / "m.xfmr"), "--kv-sinks", "4"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "sinks need a window" in result.stderr
    with pytest.raises(xfmr.InvalidArgumentError, match="kv_sinks needs kv_window"):
        xfmr.compile(checkpoint, tmp_path / "n.xfmr", kv_sinks=4)
