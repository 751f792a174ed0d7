"""End to end on the CPU: checkpoints compiled by xfmr-compile match the float64
NumPy reference (greedy ids equal, every logit row within 1e-4 of the row's
max-abs), through the artifact's C ABI and through xfmr-run."""

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
    # A prompt longer than Mistral's window, so the window matters.
    prompt = list(range(3, 27))
    expected_ids, expected_rows = reference.load(str(checkpoint)).generate_greedy(prompt, 12)
    ids, rows = greedy_through_abi(CompiledModel(artifact), prompt, 12)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < TOLERANCE


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
