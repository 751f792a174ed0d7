"""End to end on a GPU back end without a GPU: models compiled with `--target vulkan` run
their SPIR-V kernels on Mesa's CPU Vulkan driver (lavapipe) through the runtime's Vulkan
backend. The f32 models match the float64 NumPy reference (as on the CPU); lossy schemes
(bf16/f16 weights, FP8 and int8 weights, 8-bit caches) match the CPU back end's artifact compiled
with the same flags, which is itself tested against its emulation. Skipped where no
Vulkan driver is installed."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from xfmr import reference

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("XFMR_BUILD_DIR", REPO / "build")) / "bin"

TOLERANCE = 1e-4


def tool(name):
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/build.sh)")
    return str(path)


def compile_model(checkpoint, out_dir, target, *extra):
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    artifact = Path(out_dir) / f"model-{target.replace(':', '-')}.xfmr"
    subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(artifact),
                    "--target", target, *extra], check=True, capture_output=True, text=True)
    return artifact


def open_session(artifact):
    import xfmr
    try:
        return xfmr.Session(xfmr.Artifact(str(artifact)))
    except xfmr.Error as error:
        text = str(error)
        if "libvulkan" in text or "Vulkan device" in text or "Vulkan driver" in text:
            pytest.skip(f"no Vulkan driver here: {text}")
        raise


def greedy(artifact, prompt, n):
    """Prefill, then decode greedily: the ids and the logit rows they came from."""
    session = open_session(artifact)
    rows = [np.asarray(session.prefill(prompt))[-1]]
    ids = [int(np.argmax(rows[-1]))]
    for _ in range(n - 1):
        rows.append(np.array(session.decode(ids[-1])))
        ids.append(int(np.argmax(rows[-1])))
    return ids, np.array(rows)


def relative_row_error(rows, expected):
    rows, expected = np.asarray(rows, np.float64), np.asarray(expected, np.float64)
    scale = np.max(np.abs(expected), axis=-1)
    return float(np.max(np.max(np.abs(rows - expected), axis=-1) / scale))


def test_stories260k_matches_reference_and_cpu(stories260k_dir, tmp_path):
    artifact = compile_model(stories260k_dir, tmp_path, "vulkan")
    ids, rows = greedy(artifact, [1], 63)
    expected_ids, expected_rows = reference.load(str(stories260k_dir)).generate_greedy([1], 63)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < TOLERANCE
    cpu_ids, _ = greedy(compile_model(stories260k_dir, tmp_path, "cpu"), [1], 63)
    assert ids == cpu_ids


SYNTHETIC = {
    "llama-bf16-llama3-tied": dict(arch="llama", dtype="bf16", tie_embeddings=True, overrides={
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
    "mistral-window": dict(arch="mistral", overrides={"sliding_window": 8}),
    "qwen2-f16-bias": dict(arch="qwen2", dtype="f16"),
    # Decode reads rows of whole 16-byte words 16 bytes at a time; the down
    # projection's rows (44 bf16 inputs) are not, and take the element form.
    "llama-bf16-odd-width": dict(arch="llama", dtype="bf16",
                                 overrides={"intermediate_size": 44}),
    # Rows long enough for the decode linears' unrolled loads (264 words: one span of
    # 4 x 64 and a tail that most threads skip) and head dimension 64.
    "llama-bf16-wide": dict(arch="llama", dtype="bf16",
                            overrides={"hidden_size": 256, "intermediate_size": 2112,
                                       "num_attention_heads": 4, "num_key_value_heads": 2}),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_matches_reference(name, synth_checkpoint, tmp_path):
    spec = dict(SYNTHETIC[name])
    checkpoint = synth_checkpoint(spec.pop("arch"), **spec)
    artifact = compile_model(checkpoint, tmp_path, "vulkan")
    prompt = list(range(3, 27))  # longer than Mistral's window
    expected_ids, expected_rows = reference.load(str(checkpoint)).generate_greedy(prompt, 12)
    ids, rows = greedy(artifact, prompt, 12)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < TOLERANCE


# Lossy settings: the same flags on the CPU back end (tested against each scheme's
# emulation) are the oracle.
LOSSY = {
    "kv-bf16": ("llama", {}, ["--kv-cache", "bf16"]),
    "kv-f16": ("llama", {}, ["--kv-cache", "f16"]),
    "kv-fp8": ("llama", {}, ["--kv-cache", "fp8"]),
    "kv-int8": ("qwen2", {}, ["--kv-cache", "int8"]),
    "kv-window-sinks": ("llama", {}, ["--kv-window", "8", "--kv-sinks", "2"]),
    "fp8-weights": ("llama", {}, ["--quantize", "fp8"]),
    "fp8-weights-bf16": ("llama", {"dtype": "bf16"},
                         ["--quantize", "fp8", "--quantize-activations=false"]),
    "fp8-weights-odd-width": ("llama", {"dtype": "bf16", "overrides": {"intermediate_size": 44}},
                              ["--quantize", "fp8", "--quantize-activations=false"]),
    # Mixture of experts: routing, each dispatch, FP8 experts, chunks of a large
    # intermediate dimension.
    "mixtral": ("mixtral", {}, []),
    "mixtral-dense": ("mixtral", {}, ["--moe", "dense"]),
    "mixtral-sparse-prefill": ("mixtral", {}, ["--moe", "sparse-prefill"]),
    "mixtral-fp8": ("mixtral", {"dtype": "fp8"}, []),
    "mixtral-chunked": ("mixtral", {"overrides": {"intermediate_size": 7000,
                                                  "num_local_experts": 8,
                                                  "num_experts_per_tok": 3}}, []),
    # DeepSeek-V3: MLA (expanded, latent, compressed latent, folded), sigmoid routing with
    # groups and a correction bias, fused shared experts, FP8 with block scales.
    "deepseek-v3": ("deepseek_v3", {}, []),
    "deepseek-v3-fp8": ("deepseek_v3", {"dtype": "fp8"}, []),
    "deepseek-v3-latent": ("deepseek_v3", {}, ["--mla-cache", "latent"]),
    "deepseek-v3-latent-fp8-cache": ("deepseek_v3", {"dtype": "fp8"},
                                     ["--mla-cache", "latent", "--kv-cache", "fp8"]),
    "deepseek-v3-latent-int8-ring": ("deepseek_v3", {}, ["--mla-cache", "latent", "--kv-cache",
                                                        "int8", "--kv-window", "8",
                                                        "--kv-sinks", "2"]),
    "deepseek-v3-folded": ("deepseek_v3", {}, ["--mla-cache", "latent",
                                               "--mla-absorb", "compile-time"]),
    "deepseek-v3-int8-cache": ("deepseek_v3", {}, ["--kv-cache", "int8"]),
    # W8A8: the GPU's generic kernels multiply dequantized codes; the CPU, the codes.
    "llama-w8a8": ("llama", {"dtype": "bf16"}, ["--quantize", "int8"]),
    "deepseek-v3-w8a8": ("deepseek_v3", {}, ["--quantize", "int8"]),
}


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_lossy_matches_cpu(name, synth_checkpoint, tmp_path):
    arch, spec, flags = LOSSY[name]
    checkpoint = synth_checkpoint(arch, **spec)
    prompt = list(range(5, 25))
    gpu_ids, gpu_rows = greedy(compile_model(checkpoint, tmp_path, "vulkan", *flags), prompt, 10)
    # --precise: the GPU kernels keep f32 activations in bf16 linears, as the CPU does then.
    cpu_ids, cpu_rows = greedy(compile_model(checkpoint, tmp_path, "cpu", "--precise", *flags),
                               prompt, 10)
    assert gpu_ids == cpu_ids
    assert relative_row_error(gpu_rows, cpu_rows) < TOLERANCE


LONG_DECODE = {
    "f32": ("llama", {}, []),
    "int8-cache": ("llama", {}, ["--kv-cache", "int8"]),
    "window-sinks": ("llama", {}, ["--kv-window", "100", "--kv-sinks", "4"]),
    "mla-latent": ("deepseek_v3", {}, ["--mla-cache", "latent"]),
    # FP8 weights, activations and latent cache: entries that round to different codes
    # on the two back ends add up over 300 tokens (1.2e-4 here, the same with a
    # workgroup per head instead of slices).
    "mla-latent-fp8": ("deepseek_v3", {"dtype": "fp8"}, ["--mla-cache", "latent",
                                                         "--kv-cache", "fp8"], 2e-4),
    "mla-latent-int8-ring": ("deepseek_v3", {}, ["--mla-cache", "latent", "--kv-cache", "int8",
                                                 "--kv-window", "100", "--kv-sinks", "4"]),
}


@pytest.mark.parametrize("name", sorted(LONG_DECODE))
def test_long_decode_matches_cpu(name, synth_checkpoint, tmp_path):
    """Decode after 300 tokens: flash decoding splits each head's keys into slices of
    whole 64-key chunks (here 5 of 64 keys, the last partial; with a ring, sinks and the
    window's wrap in one key sequence) and combines their softmaxes; GQA and MLA's
    latent attention."""
    arch, spec, flags, *tolerance = LONG_DECODE[name]
    checkpoint = synth_checkpoint(arch, **spec)
    prompt = [(7 * i + 3) % 100 + 2 for i in range(300)]
    extra = ["--context", "320", *flags]
    gpu_ids, gpu_rows = greedy(compile_model(checkpoint, tmp_path / "gpu", "vulkan", *extra),
                               prompt, 8)
    cpu_ids, cpu_rows = greedy(compile_model(checkpoint, tmp_path / "cpu", "cpu", "--precise",
                                             *extra), prompt, 8)
    assert gpu_ids == cpu_ids
    assert relative_row_error(gpu_rows, cpu_rows) < (tolerance or [TOLERANCE])[0]


@pytest.mark.parametrize("flags", [[], ["--kv-window", "24"]], ids=["causal", "window"])
def test_prefill_in_parts_equals_whole(flags, synth_checkpoint, tmp_path):
    """Prefill attends in tiles of queries: a prompt prefilled in parts (the second part
    starting mid-tile of the cache, 37 tokens: two whole tiles and a partial one) gives
    the rows of one prefill of the whole prompt."""
    checkpoint = synth_checkpoint("llama")
    artifact = compile_model(checkpoint, tmp_path, "vulkan", "--context", "96", *flags)
    prompt = [(5 * i + 1) % 100 + 2 for i in range(57)]
    whole = np.asarray(open_session(artifact).prefill(prompt))
    parts = open_session(artifact)
    first = np.asarray(parts.prefill(prompt[:20]))
    second = np.asarray(parts.prefill(prompt[20:]))
    assert relative_row_error(np.concatenate([first, second]), whole) < TOLERANCE


def test_prefill_equals_token_by_token(synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint("llama")
    artifact = compile_model(checkpoint, tmp_path, "vulkan")
    prompt = [5, 9, 2, 7, 11, 4, 8, 1, 13, 6, 3, 10]
    whole = np.asarray(open_session(artifact).prefill(prompt))
    stepwise = open_session(artifact)
    rows = [np.asarray(stepwise.prefill([prompt[0]]))[-1]]
    rows += [np.array(stepwise.decode(token)) for token in prompt[1:]]
    assert relative_row_error(np.array(rows), whole) < TOLERANCE


def test_xfmr_run_matches_cpu(stories260k_dir, tmp_path):
    outputs = {}
    for target in ("cpu", "vulkan"):
        artifact = compile_model(stories260k_dir, tmp_path, target)
        result = subprocess.run([tool("xfmr-run"), str(artifact), "--prompt-ids", "1 45 120",
                                 "-n", "24"], capture_output=True, text=True)
        if result.returncode != 0 and "Vulkan" in result.stderr:
            pytest.skip(result.stderr.strip())
        assert result.returncode == 0, result.stderr
        outputs[target] = result.stdout
    assert outputs["vulkan"] == outputs["cpu"]


def test_one_artifact_for_several_targets(stories260k_dir, tmp_path):
    """--target cuda:sm_90,vulkan,cpu: the runtime runs the first target this machine can
    (here Vulkan, without an NVIDIA driver), or the one `device` names; all give the same
    ids. The weights are stored once."""
    import xfmr
    artifact = compile_model(stories260k_dir, tmp_path, "cuda:sm_90,vulkan,cpu")
    manifest = xfmr.Artifact(str(artifact), device="cpu").manifest
    assert [t["kind"] for t in manifest["targets"]] == ["cuda", "vulkan", "cpu"]
    assert manifest["target"]["kind"] == "cuda"
    cpu_only = compile_model(stories260k_dir, tmp_path, "cpu")
    assert artifact.stat().st_size < 2 * cpu_only.stat().st_size  # one copy of the weights
    ids = {}
    for device in (None, "vulkan", "cpu"):
        try:
            session = xfmr.Session(str(artifact), device=device)
        except xfmr.Error as error:
            if "vulkan device" in str(error):
                pytest.skip(str(error))
            raise
        ids[device] = session.generate([1], 24)
        assert session.artifact.target["kind"] == (device or "vulkan")
    assert ids[None] == ids["vulkan"] == ids["cpu"]
    with pytest.raises(xfmr.Error, match="cannot open a cuda device"):
        xfmr.Artifact(str(artifact), device="cuda")
    with pytest.raises(xfmr.Error, match=r"has no code for device 'rocm' \(it has: cuda, "
                                         r"vulkan, cpu\)"):
        xfmr.Artifact(str(artifact), device="rocm")
    result = subprocess.run([tool("xfmr-run"), str(artifact), "--prompt-ids", "1", "-n", "24",
                             "--device", "cpu"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split() == [str(i) for i in ids["cpu"]]


def test_several_targets_are_checked(stories260k_dir, tmp_path):
    for target, message in (("cpu,cpu", "names 'cpu' twice"), ("cpu,", "has an empty entry"),
                            ("cpu,cuda", "a chip is required")):
        out = tmp_path / "bad.xfmr"
        result = subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o", str(out),
                                 "--target", target], capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not out.exists()


def fp8_values(codes, exponent_bits, mantissa_bits):
    """The values of FP8 codes, from the format's definition (float64)."""
    codes = np.asarray(codes, np.int64)
    bias = 2 ** (exponent_bits - 1) - 1
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> mantissa_bits) & (2 ** exponent_bits - 1)
    mantissa = (codes & (2 ** mantissa_bits - 1)) / 2.0 ** mantissa_bits
    magnitude = np.where(exponent == 0, 2.0 ** (1 - bias) * mantissa,
                         2.0 ** (exponent - bias) * (1.0 + mantissa))
    return sign * magnitude


LINEAR_IR = """
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x16xf32> attributes {{xfmr.entry = "prefill"}} {{
  %e = xfmr.weight "embed" : tensor<16x256xf32>
  %h = xfmr.embedding %e[%ids] : tensor<16x256xf32>, tensor<?xi32> -> tensor<?x256xf32>
  %w = xfmr.weight "w" : tensor<16x256x{element}>
  %s = xfmr.weight "w_scale" : tensor<1x2xf32>
  %y = xfmr.linear %h, %w scale(%s : tensor<1x2xf32>) {{scale_layout = #xfmr.scale_layout<block [128, 128]>}}
      : tensor<?x256xf32>, tensor<16x256x{element}> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}}
func.func @decode(%ids: tensor<1xi32>, %start: index) -> tensor<1x16xf32> attributes {{xfmr.entry = "decode"}} {{
  %e = xfmr.weight "embed" : tensor<16x256xf32>
  %h = xfmr.embedding %e[%ids] : tensor<16x256xf32>, tensor<1xi32> -> tensor<1x256xf32>
  %w = xfmr.weight "w" : tensor<16x256x{element}>
  %s = xfmr.weight "w_scale" : tensor<1x2xf32>
  %y = xfmr.linear %h, %w scale(%s : tensor<1x2xf32>) {{scale_layout = #xfmr.scale_layout<block [128, 128]>}}
      : tensor<1x256xf32>, tensor<16x256x{element}> -> tensor<1x16xf32>
  return %y : tensor<1x16xf32>
}}
"""


@pytest.mark.parametrize("element,dtype,exponent_bits,mantissa_bits", [
    ("f8E4M3FN", "F8_E4M3", 4, 3), ("f8E5M2", "F8_E5M2", 5, 2)])
def test_every_fp8_code_decodes_exactly(element, dtype, exponent_bits, mantissa_bits,
                                        tmp_path):
    """A linear whose rows hold every finite FP8 code (subnormals, both zeros), once per
    row in a different order: decode (16-byte words widened through f16) and prefill
    (the tiles) equal x @ (codes x block scale)^T from the format's definition."""
    from xfmr.safetensors import save_file
    rng = np.random.default_rng(7)
    codes = np.arange(256)
    finite = np.isfinite(fp8_values(codes, exponent_bits, mantissa_bits)) & (
        (codes & 0x7F) != (0x7F if exponent_bits == 4 else -1)) & (
        ((codes >> mantissa_bits) & (2 ** exponent_bits - 1)) != 2 ** exponent_bits - 1
        if exponent_bits == 5 else True)
    rows = [np.where(finite[p], p, 0) for p in (rng.permutation(256) for _ in range(16))]
    weight = np.array(rows, np.uint8)
    scale = np.array([[0.75, 3.0]], np.float32)
    embed = rng.standard_normal((16, 256)).astype(np.float32)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    save_file(str(folder / "model.safetensors"),
              {"embed": embed, "w": (dtype, weight), "w_scale": scale})
    ir = tmp_path / "linear.mlir"
    ir.write_text(LINEAR_IR.format(element=element))
    artifact = tmp_path / "linear.xfmr"
    subprocess.run([tool("xfmr-compile"), str(ir), "--weights", str(folder), "-o",
                    str(artifact), "--target", "vulkan"], check=True, capture_output=True)
    values = fp8_values(weight, exponent_bits, mantissa_bits)
    values *= np.repeat(scale.astype(np.float64), 128, axis=1)
    expected = embed.astype(np.float64) @ values.T
    session = open_session(artifact)
    decoded = np.array([np.asarray(session.prefill([i]))[0] for i in range(16)])
    tiled = np.asarray(open_session(artifact).prefill(list(range(16))))
    for rows_got in (decoded, tiled):
        assert relative_row_error(rows_got, expected) < 1e-6


def test_table_larger_than_a_binding(synth_checkpoint, tmp_path):
    """An embedding table (tied to the LM head) of 134 MB: more than the 2^27 bytes many
    Vulkan devices (lavapipe among them) bind to one kernel parameter. The compiler splits
    both by rows over launches (the second window holds ids 524271 and up), and the model
    still matches the float64 reference, for ids in both windows."""
    checkpoint = synth_checkpoint("llama", tie_embeddings=True, overrides={
        "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 524800})
    artifact = compile_model(checkpoint, tmp_path, "vulkan")
    prompt = [3, 524700, 17, 524299, 100, 524799]
    ids, rows = greedy(artifact, prompt, 4)
    expected_ids, expected_rows = reference.load(str(checkpoint)).generate_greedy(prompt, 4)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < TOLERANCE


def test_prompt_past_a_binding_goes_in_parts(synth_checkpoint, tmp_path):
    """A 1200-token prompt of a 32000-word vocabulary: its prefill logits (154 MB) pass
    the 2^27 bytes lavapipe binds to one kernel parameter. The device refuses that launch
    (it would read out of range), and the runtime prefills the prompt in parts instead,
    halving until they fit: every row of the logits and the generation match the CPU."""
    checkpoint = synth_checkpoint("llama", overrides={"vocab_size": 32000,
                                                      "max_position_embeddings": 2048})
    prompt = [(37 * i + 11) % 31000 + 3 for i in range(1200)]
    gpu = compile_model(checkpoint, tmp_path / "gpu", "vulkan")
    cpu = compile_model(checkpoint, tmp_path / "cpu", "cpu", "--precise")
    rows = [0, 599, 600, 1199]
    gpu_rows = np.asarray(open_session(gpu).prefill(prompt))[rows]
    cpu_rows = np.asarray(open_session(cpu).prefill(prompt))[rows]
    assert relative_row_error(gpu_rows, cpu_rows) < TOLERANCE
    assert greedy(gpu, prompt, 3)[0] == greedy(cpu, prompt, 3)[0]
