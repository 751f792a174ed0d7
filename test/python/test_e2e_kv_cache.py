"""End to end with compressed KV caches (`xfmr-compile --kv-cache`): every setting matches a
float64 emulation of the same compression (xfmr.reference.kv_cache) to 1e-3 of each logit
row's max-abs, with the same greedy ids, and the manifest reports the smaller cache."""

import json
import struct
import subprocess

import numpy as np
import pytest

from artifact_abi import CompiledModel
from test_e2e_cpu import compile_model, greedy_through_abi, relative_row_error, tool
from xfmr import reference
from xfmr.reference.kv_cache import use_folded_mla, use_kv_cache, use_latent_cache

ELEMENTS = ["bf16", "f16", "fp8", "int8"]


def check(checkpoint, tmp_path, element, prompt, steps):
    artifact = compile_model(checkpoint, tmp_path, "--kv-cache", element)
    model = reference.load(str(checkpoint))
    use_kv_cache(model, element)
    expected_ids, expected_rows = model.generate_greedy(prompt, steps)
    compiled = CompiledModel(artifact)
    ids, rows = greedy_through_abi(compiled, prompt, steps)
    assert relative_row_error(rows, expected_rows) < 1e-3
    assert ids == list(expected_ids)
    return compiled.manifest


@pytest.mark.parametrize("element", ELEMENTS)
def test_stories260k(element, stories260k_dir, tmp_path):
    manifest = check(stories260k_dir, tmp_path, element, [1], 40)
    # 5 layers x 4 KV heads x (8 + 8) channels; 8-bit caches add two f32 scales per head.
    per_token = {"bf16": 640, "f16": 640, "fp8": 320 + 160, "int8": 320 + 160}[element]
    assert manifest["kv_cache"]["bytes_per_token"] == per_token
    assert manifest["compile_options"]["kv_cache"] == element


@pytest.mark.parametrize("arch", ["llama", "mixtral", "deepseek_v3"])
@pytest.mark.parametrize("element", ["bf16", "fp8", "int8"])
def test_synthetic(arch, element, synth_checkpoint, tmp_path):
    check(synth_checkpoint(arch), tmp_path, element, list(range(3, 27)), 8)


def matches_expanded(checkpoint, tmp_path, *flags):
    """Compiles with `flags` and checks greedy ids and logit rows (1e-4) against the
    expanded MLA cache; returns the compiled model."""
    compiled = CompiledModel(compile_model(checkpoint, tmp_path / "compiled", *flags))
    expanded = CompiledModel(compile_model(checkpoint, tmp_path / "expanded"))
    prompt = list(range(3, 27))
    ids, rows = greedy_through_abi(compiled, prompt, 8)
    expected_ids, expected_rows = greedy_through_abi(expanded, prompt, 8)
    assert ids == expected_ids
    assert relative_row_error(rows, expected_rows) < 1e-4
    return compiled


@pytest.mark.parametrize("options", [{}, {"dtype": "fp8"}, {"preset": "small"}],
                         ids=["f32", "native-fp8", "small"])
def test_mla_latent_cache_equals_expanded(options, synth_checkpoint, tmp_path):
    """MLA with weight absorption (--mla-cache latent) computes the same function as the
    expanded cache, from a cache of kv_lora_rank + qk_rope_head_dim values per token."""
    checkpoint = synth_checkpoint("deepseek_v3", **options)
    latent = matches_expanded(checkpoint, tmp_path, "--mla-cache", "latent")
    config = json.load(open(checkpoint / "config.json"))
    layers = config["num_hidden_layers"]
    assert latent.manifest["kv_cache"]["bytes_per_token"] == layers * 4 * (
        config["kv_lora_rank"] + config["qk_rope_head_dim"])
    assert latent.manifest["compile_options"]["mla_cache"] == "latent"


@pytest.mark.parametrize("options", [{}, {"preset": "small"}], ids=["f32", "small"])
def test_mla_folded_at_compile_time_equals_expanded(options, synth_checkpoint, tmp_path):
    """--mla-absorb compile-time folds W_UK into the query projection and W_UV into o_proj
    when packing (double precision): same function as the expanded cache (1e-4 at f32)."""
    checkpoint = synth_checkpoint("deepseek_v3", **options)
    folded = matches_expanded(checkpoint, tmp_path, "--mla-cache", "latent", "--mla-absorb",
                              "compile-time")
    assert folded.manifest["compile_options"]["mla_absorb"] == "compile-time"
    tensors = {t.get("transform") for t in folded.manifest["weights"]["tensors"]}
    assert {"mla_query_latent", "mla_query_rope", "mla_output"} <= tensors


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_mla_folded_matches_emulation(dtype, synth_checkpoint, tmp_path):
    """Folded weights keep the checkpoint's precision: a bf16 model stores the folded
    products rounded once to bf16. The compiled model matches the float64 emulation of
    exactly that (xfmr.reference.kv_cache.use_folded_mla); at f32 the emulation is the
    unfolded model."""
    checkpoint = synth_checkpoint("deepseek_v3", dtype=dtype)
    compiled = CompiledModel(compile_model(checkpoint, tmp_path, "--mla-cache", "latent",
                                           "--mla-absorb", "compile-time"))
    model = reference.load(str(checkpoint), bf16_inputs=compiled.bf16_inputs)
    use_folded_mla(model, dtype)
    prompt = list(range(3, 27))
    expected_ids, expected_rows = model.generate_greedy(prompt, 8)
    ids, rows = greedy_through_abi(compiled, prompt, 8)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < 1e-4
    if dtype == "f32":
        plain = reference.load(str(checkpoint))
        assert relative_row_error(expected_rows, plain.generate_greedy(prompt, 8)[1]) < 1e-6


def test_mla_fold_needs_high_precision_weights(synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint("deepseek_v3", dtype="fp8")
    run = subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(tmp_path / "m.xfmr"),
                          "--mla-cache", "latent", "--mla-absorb", "compile-time"],
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "cannot fold W_UK/W_UV at compile time" in run.stderr
    assert not (tmp_path / "m.xfmr").exists() and not (tmp_path / "m.xfmr.tmp").exists()
    run = subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(tmp_path / "m.xfmr"),
                          "--mla-absorb", "compile-time"], capture_output=True, text=True)
    assert run.returncode != 0 and "needs --mla-cache latent" in run.stderr


@pytest.mark.parametrize("fold", [False, True], ids=["runtime", "compile-time"])
@pytest.mark.parametrize("element", ["bf16", "fp8", "int8"])
def test_compressed_latent_cache(element, fold, synth_checkpoint, tmp_path):
    """--mla-cache latent --kv-cache ELEMENT: the latent in ELEMENT (8-bit: FlashMLA-style,
    one scale per 128 channels and k_pe in bf16) matches the float64 emulation of the same
    storage. kv_lora_rank 192 spans two scale blocks (128 + 64)."""
    checkpoint = synth_checkpoint("deepseek_v3", overrides={"kv_lora_rank": 192})
    artifact = compile_model(checkpoint, tmp_path, "--mla-cache", "latent", "--kv-cache", element,
                             *(["--mla-absorb", "compile-time"] if fold else []))
    model = reference.load(str(checkpoint))
    use_latent_cache(model, element)
    prompt = list(range(3, 27))
    expected_ids, expected_rows = model.generate_greedy(prompt, 8)
    compiled = CompiledModel(artifact)
    ids, rows = greedy_through_abi(compiled, prompt, 8)
    assert relative_row_error(rows, expected_rows) < 1e-3
    assert ids == list(expected_ids)
    config = json.load(open(checkpoint / "config.json"))
    rope = config["qk_rope_head_dim"]
    per_layer = {"bf16": 2 * (192 + rope), "fp8": 192 + 2 * 4 + 2 * rope,
                 "int8": 192 + 2 * 4 + 2 * rope}[element]
    assert compiled.manifest["kv_cache"]["bytes_per_token"] == (
        config["num_hidden_layers"] * per_layer)
