"""End to end with `xfmr-compile --quantize int8` (W8A8): the compiled model matches a
float64 emulation of exactly the same scheme (xfmr.reference.int8: a scale per output
channel and per token, codes to nearest even), with the CPU's VNNI kernels (the default,
this machine's CPU, where it has AVX512-VNNI) and the int32 fallback (x86-64-v3)."""

import numpy as np
import pytest

from artifact_abi import CompiledModel
from test_e2e_cpu import compile_model, greedy_through_abi
from xfmr import reference
from xfmr.reference.int8 import apply_int8, quantize_rows

TOLERANCE = 1e-3
CPUS = ["native", "x86-64-v3"]


def row_errors(rows, expected):
    rows, expected = np.asarray(rows, np.float64), np.asarray(expected, np.float64)
    return np.max(np.abs(rows - expected), axis=-1) / np.max(np.abs(expected), axis=-1)


def emulation(checkpoint):
    model = reference.load(str(checkpoint))
    apply_int8(model)
    return model


def test_quantize_rows_matches_the_scheme():
    # max |x| = 127 / 128: the scale is exactly 1 / 128, so the ties are exact.
    step = 2.0 ** -7
    x = np.array([[0.0, 0.0, 0.0, 0.0], [127 * step, 1.5 * step, 2.5 * step, -0.5 * step]])
    q = quantize_rows(x)
    assert np.array_equal(q[0], [0.0, 0.0, 0.0, 0.0])  # an all-zero row stays finite
    assert np.array_equal(q[1] / step, [127, 2, 2, 0])  # ties to even
    # The largest magnitude is code -127 x the (f32) scale; 1.0 is code 42 (42.33).
    scale = float(np.float32(3.0 / 127))
    assert np.array_equal(quantize_rows([[1.0, -3.0]]), [[42 * scale, -127 * scale]])


@pytest.mark.parametrize("cpu", CPUS)
def test_stories260k_int8(cpu, stories260k_dir, tmp_path):
    """The real tiny Llama (dimension 64): every greedy id and logit row match."""
    artifact = compile_model(stories260k_dir, tmp_path, "--quantize", "int8", "--cpu", cpu)
    expected_ids, expected_rows = emulation(stories260k_dir).generate_greedy([1], 30)
    ids, rows = greedy_through_abi(CompiledModel(artifact), [1], 30)
    assert np.max(row_errors(rows, expected_rows)) < TOLERANCE
    assert ids == list(expected_ids)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("cpu", CPUS)
def test_llama_int8(dtype, cpu, synth_checkpoint, tmp_path):
    """Hidden 256: an activation within an f32 error of a rounding tie can round the other
    way in the compiled f32 code than in the float64 emulation (as with FP8, see
    test_e2e_fp8.py), so the prompt's rows are compared teacher-forced: the compiled model
    is much closer to the emulation than the emulation is to the unquantized model."""
    checkpoint = synth_checkpoint("llama", preset="small", dtype=dtype)
    artifact = compile_model(checkpoint, tmp_path, "--quantize", "int8", "--cpu", cpu)
    prompt = list(range(3, 19))
    rows = CompiledModel(artifact).prefill(prompt)
    expected = emulation(checkpoint).forward(prompt, None)
    unquantized = reference.load(str(checkpoint))
    format_error = row_errors(expected, unquantized.forward(prompt, unquantized.new_cache()))
    errors = row_errors(rows, expected)
    assert np.mean(errors) < 0.1 * np.mean(format_error), (errors, format_error)


@pytest.mark.parametrize("arch,flags", [
    ("mixtral", []),
    ("mixtral", ["--moe", "dense"]),
    ("deepseek_v3", []),
], ids=["mixtral", "mixtral-dense", "deepseek-v3"])
def test_moe_and_mla_int8(arch, flags, synth_checkpoint, tmp_path):
    """Mixtral (routed experts) and DeepSeek-V3 (MLA, routed and shared experts, dense first
    layer): linears and expert stacks are int8 (each expert's rows, input and SwiGLU output
    with their own scales), kv_b keeps its precision, as the emulation has it. (The GPU
    kernels are compared with these in test_e2e_vulkan.py.)"""
    checkpoint = synth_checkpoint(arch)
    artifact = compile_model(checkpoint, tmp_path, "--quantize", "int8", *flags)
    prompt = list(range(3, 15))
    expected_ids, expected_rows = emulation(checkpoint).generate_greedy(prompt, 8)
    ids, rows = greedy_through_abi(CompiledModel(artifact), prompt, 8)
    assert np.max(row_errors(rows, expected_rows)) < TOLERANCE
    assert ids == list(expected_ids)
