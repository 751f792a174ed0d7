"""End to end with `xfmr-compile --quantize int4` (W4A8): the compiled model matches a
float64 emulation of exactly the same scheme (xfmr.reference.int4: an f16 scale per output
channel and group of inputs, int8 activations per token, the LM head and routed experts
W8A8), with the CPU's VNNI kernels (the default, this machine's CPU, where it has
AVX512-VNNI) and the int32 fallback (x86-64-v3). AArch64's sdot/usdot kernels are checked
in test_aarch64.py."""

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from artifact_abi import CompiledModel
from conftest import tool
from test_e2e_cpu import compile_model, greedy_through_abi
from test_e2e_int8 import row_errors
from xfmr import reference
from xfmr.reference.int4 import apply_int4, quantize_groups

TOLERANCE = 1e-3
CPUS = ["native", "x86-64-v3"]


def emulation(checkpoint, **options):
    # A kept (bf16) LM head is a bf16 panel linear: its input is rounded to bf16.
    kept = ["lm_head.weight"] if options.get("head") == "keep" else []
    model = reference.load(str(checkpoint), bf16_inputs=kept)
    apply_int4(model, **options)
    return model


def manifest(artifact):
    data = Path(artifact).read_bytes()
    header = struct.unpack("<8sIIQQQQQQQ", data[:72])
    return json.loads(data[header[3]:header[3] + header[4]])


def test_quantize_groups_matches_the_scheme():
    # Q4_0: the group's first value of the largest magnitude is code -8. Group max -8:
    # the scale is exactly 1 (an f16), so the ties are exact.
    w = np.array([[-8.0, 0.5, 1.5, -2.5, 0.0, 0.0, 0.0, 0.0]])
    assert np.array_equal(quantize_groups(w, 4), [[-8, 0, 2, -2, 0, 0, 0, 0]])
    # A positive maximum: a negative scale, the f16 rounding of max / -8; the opposite
    # extreme (-1.0, code 8) clips at 7.
    scale = float(np.float16(-1.0 / 8))
    assert np.array_equal(quantize_groups([[1.0, -0.3, -1.0]], 3),
                          [[-8 * scale, 2 * scale, 7 * scale]])
    # A group too small for an f16 scale quantizes to zeros, not NaN.
    assert np.array_equal(quantize_groups([[1e-9, -1e-9]], 2), [[0.0, 0.0]])
    # Each group has its own scale; a last, shorter group too.
    q = quantize_groups([[1.0, 2.0, 100.0]], 2)
    assert q[0, 2] == float(np.float16(100 / -8)) * -8


@pytest.mark.parametrize("cpu", CPUS)
def test_stories260k_int4(cpu, stories260k_dir, tmp_path):
    """The real tiny Llama (dimension 64; its tied LM head int8 from the embedding table,
    which the embedding keeps in f32): every greedy id and logit row match."""
    artifact = compile_model(stories260k_dir, tmp_path, "--quantize", "int4", "--cpu", cpu)
    expected_ids, expected_rows = emulation(stories260k_dir).generate_greedy([1], 30)
    ids, rows = greedy_through_abi(CompiledModel(artifact), [1], 30)
    assert np.max(row_errors(rows, expected_rows)) < TOLERANCE
    assert ids == list(expected_ids)


@pytest.mark.parametrize("group,head", [(32, "int8"), (128, "int8"), (48, "int4"),
                                        (32, "keep")])
@pytest.mark.parametrize("cpu", CPUS)
def test_llama_int4(group, head, cpu, synth_checkpoint, tmp_path):
    """Hidden 256 (48 leaves a short last group; 128 halves the scales), each LM head
    form. As for int8 (test_e2e_int8.py), the prompt's rows are compared teacher-forced:
    the compiled model is far closer to the emulation than the emulation is to the
    unquantized model."""
    checkpoint = synth_checkpoint("llama", preset="small", dtype="bf16")
    artifact = compile_model(checkpoint, tmp_path, "--quantize", "int4", "--cpu", cpu,
                             "--quantize-group", str(group), "--quantize-head", head)
    prompt = list(range(3, 19))
    rows = CompiledModel(artifact).prefill(prompt)
    expected = emulation(checkpoint, group=group, head=head).forward(prompt, None)
    unquantized = reference.load(str(checkpoint))
    format_error = row_errors(expected, unquantized.forward(prompt, unquantized.new_cache()))
    errors = row_errors(rows, expected)
    assert np.max(errors) < 1e-3 * np.mean(format_error), (errors, format_error)
    tensors = manifest(artifact)["weights"]["tensors"]
    head_tensors = [t for t in tensors if t["name"] == "lm_head.weight"]
    assert {t["dtype"] for t in head_tensors} == {"int8": {"i8", "f32"}, "int4": {"i4", "f16"},
                                                    "keep": {"bf16"}}[head]


@pytest.mark.parametrize("arch,group,experts", [("mixtral", 32, "int4"),
                                                ("deepseek_v3", 32, "int4"),
                                                ("mixtral", 40, "int4"),
                                                ("mixtral", 32, "int8")])
def test_moe_and_mla_int4(arch, group, experts, synth_checkpoint, tmp_path):
    """Mixtral (routed experts) and DeepSeek-V3 (MLA, routed and shared experts, a dense
    first layer): linears, shared and routed experts int4 (the routed stacks row-major,
    two codes a byte, with f16 group scales; with groups that are no multiple of the
    expert kernels' 16-weight vectors, or --quantize-experts int8, int8), the LM head
    int8, kv_b in its precision, as the emulation has it."""
    checkpoint = synth_checkpoint(arch)
    artifact = compile_model(checkpoint, tmp_path, "--quantize", "int4",
                             "--quantize-group", str(group), "--quantize-experts", experts)
    tensors = manifest(artifact)["weights"]["tensors"]
    stacks = [t for t in tensors if len(t["shape"]) == 3 and t["transform"].endswith("codes")]
    assert stacks
    for stack in stacks:
        count, rows, cols = stack["shape"]
        assert "panel" not in stack
        if group % 16 or experts == "int8":
            assert stack["dtype"] == "i8" and stack["bytes"] == count * rows * cols
            continue
        assert stack["dtype"] == "i4" and stack["block"] == [1, group]
        assert stack["bytes"] == count * rows * -(-cols // 2)
        scales = next(t for t in tensors if t["name"] == stack["name"] and t["dtype"] == "f16")
        assert scales["shape"] == [count, rows, -(-cols // group)]
    prompt = list(range(3, 15))
    expected_ids, expected_rows = emulation(checkpoint, group=group,
                                            experts=experts).generate_greedy(prompt, 8)
    ids, rows = greedy_through_abi(CompiledModel(artifact), prompt, 8)
    assert np.max(row_errors(rows, expected_rows)) < TOLERANCE
    assert ids == list(expected_ids)


def test_int4_storage(synth_checkpoint, tmp_path):
    """Codes two to a byte in panels (transform int4_codes), f16 group scales in panels of
    single columns (int4_scales): 4.5 bits a weight, about a quarter of bf16."""
    checkpoint = synth_checkpoint("llama", preset="small", dtype="bf16")
    int4 = compile_model(checkpoint, tmp_path / "int4", "--quantize", "int4",
                         "--quantize-head", "int4")
    bf16 = compile_model(checkpoint, tmp_path / "bf16")
    tensors = manifest(int4)["weights"]["tensors"]
    codes = next(t for t in tensors if t["name"].endswith("q_proj.weight") and
                 t["dtype"] == "i4")
    scales = next(t for t in tensors if t["name"] == codes["name"] and t["dtype"] == "f16")
    rows, cols = codes["shape"]
    assert codes["transform"] == "int4_codes" and codes["block"] == [1, 32]
    assert codes["panel"] == 64 and codes["bytes"] == -(-rows // 64) * 64 * cols // 2
    assert scales["transform"] == "int4_scales" and scales["panel"] == 64
    assert scales["shape"] == [rows, cols // 32]
    assert scales["bytes"] == -(-rows // 64) * 64 * (cols // 32) * 2
    linear = sum(t["bytes"] for t in tensors if t["dtype"] in ("i4", "f16"))
    dense = sum(t["bytes"] for t in manifest(bf16)["weights"]["tensors"]
                if t.get("panel"))
    assert linear / dense == pytest.approx(4.5 / 16, rel=0.02)
    # The parameters are the checkpoint's, not the stored codes and scales (nor the int4
    # head's copy of a table).
    assert (manifest(int4)["weights"]["parameter_count"] ==
            manifest(bf16)["weights"]["parameter_count"])


def run_compile(checkpoint, out, *flags):
    return subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(out), *flags],
                          capture_output=True, text=True)


@pytest.mark.parametrize("flags,words", [
    (["--quantize", "int4", "--target", "vulkan"],
     "--quantize int4 is for CPU targets only"),
    (["--quantize", "int4", "--target", "cpu,cuda:sm_90"], "'cuda:sm_90'"),
    (["--quantize", "int4", "--quantize-group", "12"], "a multiple of 8"),
    (["--quantize", "int8", "--quantize-group", "32"], "--quantize-group is an int4 option"),
    (["--quantize", "int4", "--quantize-head", "fp8"], "expected int8, int4 or keep"),
    (["--quantize", "int4", "--quantize-experts", "int2"], "expected int4 or int8, got 'int2'"),
    (["--quantize", "int8", "--quantize-experts", "int4"],
     "--quantize-experts is an int4 option"),
    (["--quantize", "int4", "--quantize-block", "128"], "--quantize int4 takes only"),
])
def test_int4_option_errors(flags, words, stories260k_dir, tmp_path):
    out = tmp_path / "model.xfmr"
    done = run_compile(stories260k_dir, out, *flags)
    assert done.returncode != 0 and words in done.stderr, done.stderr
    assert not out.exists()


def test_python_compile_int4(stories260k_dir, tmp_path):
    xfmr = pytest.importorskip("xfmr")
    if not xfmr.native_available():
        pytest.skip("the extension xfmr._xfmr is not built")
    out = tmp_path / "model.xfmr"
    xfmr.compile(str(stories260k_dir), str(out), quantize="int4",
                 quantize_options={"group": 64, "head": "keep"})
    tensors = manifest(out)["weights"]["tensors"]
    assert any(t["dtype"] == "i4" and t["block"] == [1, 64] for t in tensors)
    for options in ({"group": 12}, {"block": 128}, {"head": "fp16"}, {"experts": "fp8"}):
        with pytest.raises(xfmr.InvalidArgumentError):
            xfmr.compile(str(stories260k_dir), str(tmp_path / "bad.xfmr"), quantize="int4",
                         quantize_options=options)
    with pytest.raises(xfmr.InvalidArgumentError):
        xfmr.compile(str(stories260k_dir), str(tmp_path / "bad.xfmr"), quantize="int8",
                     quantize_options={"group": 32})


@pytest.mark.parametrize("value,words", [
    (1e6, "needs a scale beyond f16's range"),
    (np.inf, "an infinity at [0, 0]"),
])
def test_unquantizable_weights_are_named(value, words, synth_checkpoint, tmp_path):
    """A weight int4 cannot hold (a group whose scale, max |w| / 8, overflows f16; an
    infinity) fails the compile, naming the tensor; nothing is written."""
    from xfmr.safetensors import SafetensorsFolder, save_file

    source = synth_checkpoint("llama", preset="small")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text((source / "config.json").read_text())
    files = SafetensorsFolder(str(source))
    tensors = {name: np.array(files.get(name, np.float32)) for name in files.keys()}
    name = "model.layers.0.self_attn.q_proj.weight"
    tensors[name][0, 0] = value
    save_file(str(folder / "model.safetensors"), tensors)
    out = tmp_path / "model.xfmr"
    done = run_compile(folder, out, "--quantize", "int4")
    assert done.returncode != 0
    assert f"cannot quantize weight '{name}'" in done.stderr and words in done.stderr, \
        done.stderr
    assert not out.exists() and list(tmp_path.glob("*.tmp-*")) == []
