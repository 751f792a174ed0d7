"""End to end on the CPU: checkpoints compiled by xfmr-compile match the float64
NumPy reference (greedy ids equal, every logit row within 1e-4 of the row's
max-abs), through the artifact's C ABI and through xfmr-run. Linear layers with
bf16 weights round their inputs to bf16 (unless --precise); the reference
rounds at the same points."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from artifact_abi import CompiledModel
from xfmr import reference

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("XFMR_BUILD_DIR", REPO / "build")) / "bin"

TOLERANCE = 1e-4


def tool(name):
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/build.sh)")
    return str(path)


def compile_model(checkpoint, out_dir, *extra):
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    artifact = Path(out_dir) / "model.xfmr"
    subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(artifact), *extra],
                   check=True, capture_output=True, text=True)
    return artifact


def relative_row_error(rows, expected):
    rows, expected = np.asarray(rows, np.float64), np.asarray(expected, np.float64)
    scale = np.max(np.abs(expected), axis=-1)
    return float(np.max(np.max(np.abs(rows - expected), axis=-1) / scale))


# An activation within an f32 rounding error of a bf16 rounding tie may round the other way
# in the compiled code than in the float64 emulation. The row it feeds moves by about one
# bf16 step of one input (1e-3 here); the rows after it do not. So with bf16 inputs most
# rows must match to TOLERANCE and each row to BF16_TIE_TOLERANCE (missing the rounding
# altogether costs 3e-3 to 1e-2 on every row).
BF16_TIE_TOLERANCE = 2e-3


def row_errors(rows, expected):
    rows, expected = np.asarray(rows, np.float64), np.asarray(expected, np.float64)
    return np.max(np.abs(rows - expected), axis=-1) / np.max(np.abs(expected), axis=-1)


def assert_rows_match(rows, expected, bf16_inputs):
    errors = row_errors(rows, expected)
    if not bf16_inputs:
        assert np.max(errors) < TOLERANCE, errors
        return
    assert np.median(errors) < TOLERANCE, errors
    assert np.max(errors) < BF16_TIE_TOLERANCE, errors


def greedy_through_abi(model, prompt, n):
    """Prefill the prompt, then decode greedily; ids and the logit rows they came from."""
    rows = [model.prefill(prompt)[-1]]
    ids = [int(np.argmax(rows[-1]))]
    for step in range(n - 1):
        rows.append(model.decode(ids[-1], len(prompt) + step))
        ids.append(int(np.argmax(rows[-1])))
    return ids, np.array(rows)


def test_stories260k_greedy_63(stories260k_dir, tmp_path):
    artifact = compile_model(stories260k_dir, tmp_path)
    expected_ids, expected_rows = reference.load(str(stories260k_dir)).generate_greedy([1], 63)
    ids, rows = greedy_through_abi(CompiledModel(artifact), [1], 63)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < TOLERANCE


SYNTHETIC = {
    "llama-bf16-llama3-tied": dict(arch="llama", dtype="bf16", tie_embeddings=True, overrides={
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
    "mistral-window": dict(arch="mistral", overrides={"sliding_window": 8}),
    "qwen2-f16-bias": dict(arch="qwen2", dtype="f16"),
    "mixtral-moe": dict(arch="mixtral"),
    "deepseek-v3": dict(arch="deepseek_v3"),
    "deepseek-v3-fp8-sharded": dict(arch="deepseek_v3", dtype="fp8", shards=3),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_matches_reference(name, synth_checkpoint, tmp_path):
    spec = dict(SYNTHETIC[name])
    checkpoint = synth_checkpoint(spec.pop("arch"), **spec)
    artifact = compile_model(checkpoint, tmp_path)
    compiled = CompiledModel(artifact)
    # A prompt longer than Mistral's window, so the window matters.
    prompt = list(range(3, 27))
    # bf16 linear weights multiply bf16-rounded activations: the reference rounds there too.
    expected = reference.load(str(checkpoint), bf16_inputs=compiled.bf16_inputs)
    expected_ids, expected_rows = expected.generate_greedy(prompt, 12)
    ids, rows = greedy_through_abi(compiled, prompt, 12)
    assert ids == list(expected_ids)
    assert_rows_match(rows, expected_rows, compiled.bf16_inputs)


def test_prefill_equals_token_by_token(synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint("llama")
    artifact = compile_model(checkpoint, tmp_path)
    prompt = [5, 9, 2, 7, 11, 4, 8, 1, 13, 6, 3, 10]
    whole = CompiledModel(artifact).prefill(prompt)
    stepwise_model = CompiledModel(artifact)
    stepwise = np.array([stepwise_model.decode(token, i) for i, token in enumerate(prompt)])
    assert relative_row_error(whole, stepwise) < TOLERANCE
    # Prefill in two chunks continues from the cache.
    chunked_model = CompiledModel(artifact)
    first = chunked_model.prefill(prompt[:5])
    second = chunked_model.prefill(prompt[5:], start=5)
    assert relative_row_error(np.concatenate([first, second]), whole) < TOLERANCE


def test_bf16_activations_match_their_emulation(synth_checkpoint, tmp_path):
    """CPU-only artifacts store every bf16 linear weight in panels and round the inputs of
    those linears to bf16 (the AVX512-BF16 dot products; the same rounding elsewhere). The
    float64 emulation that rounds at the same points matches; the unrounded reference is
    far off. --precise keeps f32 inputs and matches the unrounded reference."""
    checkpoint = synth_checkpoint("llama", dtype="bf16")
    prompt = list(range(3, 27))
    default = CompiledModel(compile_model(checkpoint, tmp_path / "default"))
    layers = default.manifest["model"]["num_layers"]
    expected = {f"model.layers.{i}.{name}.weight" for i in range(layers)
                for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                             "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                             "mlp.down_proj")} | {"lm_head.weight"}
    assert set(default.bf16_inputs) == expected
    for t in default.manifest["weights"]["tensors"]:
        if t["name"] in expected:
            rows, cols = t["shape"]
            assert t["panel"] == 64
            assert t["bytes"] == -(-rows // 64) * -(-cols // 2) * 64 * 2 * 2

    rows = default.prefill(prompt)
    emulated = reference.load(str(checkpoint), bf16_inputs=default.bf16_inputs)
    plain = reference.load(str(checkpoint))
    plain_rows = plain.forward(prompt)
    assert_rows_match(rows, emulated.forward(prompt), default.bf16_inputs)
    assert np.median(row_errors(rows, plain_rows)) > 10 * TOLERANCE

    precise = CompiledModel(compile_model(checkpoint, tmp_path / "precise", "--precise"))
    assert precise.bf16_inputs == []
    assert any(t.get("panel") for t in precise.manifest["weights"]["tensors"])
    assert np.max(row_errors(precise.prefill(prompt), plain_rows)) < TOLERANCE


@pytest.mark.parametrize("flags,emulation", [
    (["--quantize-activations=false"], {"activations": False}),
    ([], {}),
], ids=["weights-only", "activations"])
def test_fp8_panels_match_their_emulation(flags, emulation, synth_checkpoint, tmp_path):
    """FP8 codes quantized at compile time sit in panels too; with bf16 activations each
    weight stays exact (code x scale) and each linear input is rounded to bf16 after its
    FP8 quantization (xfmr.reference.fp8.apply_fp8 on a model loaded with bf16_inputs)."""
    from xfmr.reference.fp8 import apply_fp8  # noqa: PLC0415
    checkpoint = synth_checkpoint("llama", dtype="bf16")
    compiled = CompiledModel(compile_model(checkpoint, tmp_path, "--quantize", "fp8", *flags))
    fp8_panels = [t["name"] for t in compiled.manifest["weights"]["tensors"]
                  if t.get("panel") and t["dtype"] == "f8e4m3fn"]
    assert len(fp8_panels) == 7 * compiled.manifest["model"]["num_layers"]
    prompt = list(range(3, 27))
    expected = reference.load(str(checkpoint), bf16_inputs=compiled.bf16_inputs)
    apply_fp8(expected, **emulation)
    expected_ids, expected_rows = expected.generate_greedy(prompt, 8)
    ids, rows = greedy_through_abi(compiled, prompt, 8)
    assert ids == list(expected_ids)
    assert_rows_match(rows, expected_rows, compiled.bf16_inputs)
