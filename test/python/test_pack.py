"""Weights-stripped artifacts and xfmr-pack: `xfmr-compile --strip-weights` writes code,
manifest and packing plan; `xfmr-pack STRIPPED CHECKPOINT -o FULL` (runtime only) binds a
checkpoint's weights. Packing the checkpoint a model was compiled from gives the directly
compiled artifact byte for byte, for every weight transform (copies, stacked experts, FP8
block quantization in FN and FNUZ, MLA folds rounded to bf16) and every target; packing
another checkpoint of the same shapes equals compiling that one (refit without
recompiling). Bad inputs fail with a message naming the file or tensor and write nothing."""

import subprocess
from pathlib import Path

import pytest

from conftest import tool


def compile_to(checkpoint, output, *flags):
    subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(output), *flags],
                   check=True, capture_output=True, text=True)
    return output


def pack(stripped, checkpoint, output):
    return subprocess.run([tool("xfmr-pack"), str(stripped), str(checkpoint), "-o", str(output)],
                          capture_output=True, text=True)


def assert_same_bytes(a, b):
    data_a, data_b = Path(a).read_bytes(), Path(b).read_bytes()
    assert len(data_a) == len(data_b), f"{a}: {len(data_a)} bytes, {b}: {len(data_b)} bytes"
    if data_a != data_b:
        first = next(i for i in range(len(data_a)) if data_a[i] != data_b[i])
        pytest.fail(f"{a} and {b} differ first at byte {first}")


# (architecture, synth options, xfmr-compile flags)
CASES = {
    "llama-f32": ("llama", {}, []),
    "llama-bf16-tied": ("llama", {"dtype": "bf16", "tie_embeddings": True}, []),
    "qwen2-f16": ("qwen2", {"dtype": "f16"}, []),
    "llama-quantize-fp8": ("llama", {"dtype": "bf16"}, ["--quantize", "fp8"]),
    "llama-quantize-fp8-channel": ("llama", {}, ["--quantize", "fp8",
                                                 "--quantize-granularity", "channel"]),
    "llama-quantize-int8": ("llama", {"dtype": "bf16"}, ["--quantize", "int8"]),
    "llama-quantize-int4": ("llama", {"dtype": "bf16"}, ["--quantize", "int4"]),
    "mixtral-quantize-int4-g64": ("mixtral", {}, ["--quantize", "int4", "--quantize-group", "64"]),
    "multi-target-int8": ("llama", {}, ["--target", "cpu,vulkan", "--quantize", "int8"]),
    "mixtral-stacked-experts": ("mixtral", {}, []),
    "mixtral-fp8-checkpoint": ("mixtral", {"dtype": "fp8"}, []),
    "deepseek-v3-fp8": ("deepseek_v3", {"dtype": "fp8"}, []),
    "deepseek-v3-folded-bf16": ("deepseek_v3", {"dtype": "bf16"},
                                ["--mla-cache", "latent", "--mla-absorb", "compile-time"]),
    "deepseek-v3-folded-f32": ("deepseek_v3", {}, ["--mla-cache", "latent",
                                                   "--mla-absorb", "compile-time"]),
    "sharded": ("llama", {"shards": 3}, []),
    "vulkan": ("llama", {}, ["--target", "vulkan"]),
    "multi-target-fnuz": ("llama", {"dtype": "bf16"},
                          ["--target", "cpu,rocm:gfx942", "--quantize", "fp8"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_packed_equals_compiled(name, synth_checkpoint, tmp_path):
    arch, spec, flags = CASES[name]
    checkpoint = synth_checkpoint(arch, **spec)
    full = compile_to(checkpoint, tmp_path / "full.xfmr", *flags)
    stripped = compile_to(checkpoint, tmp_path / "stripped.xfmr", "--strip-weights", *flags)
    assert stripped.stat().st_size < full.stat().st_size
    result = pack(stripped, checkpoint, tmp_path / "packed.xfmr")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr
    assert_same_bytes(full, tmp_path / "packed.xfmr")
    # A full artifact repacks to itself too.
    result = pack(full, checkpoint, tmp_path / "repacked.xfmr")
    assert result.returncode == 0, result.stderr
    assert_same_bytes(full, tmp_path / "repacked.xfmr")


def test_stories260k(stories260k_dir, tmp_path):
    full = compile_to(stories260k_dir, tmp_path / "full.xfmr")
    stripped = compile_to(stories260k_dir, tmp_path / "stripped.xfmr", "--strip-weights")
    assert pack(stripped, stories260k_dir, tmp_path / "packed.xfmr").returncode == 0
    assert_same_bytes(full, tmp_path / "packed.xfmr")


@pytest.mark.parametrize("flags", [[], ["--quantize", "fp8"], ["--quantize", "int8"]],
                         ids=["bf16", "fp8", "int8"])
def test_refit_other_weights_equals_compiling_them(flags, synth_checkpoint, tmp_path):
    """Fine-tuned weights (another seed, same shapes) bound without recompiling."""
    base = synth_checkpoint("llama", dtype="bf16", seed=0)
    tuned = synth_checkpoint("llama", dtype="bf16", seed=1)
    stripped = compile_to(base, tmp_path / "stripped.xfmr", "--strip-weights", *flags)
    result = pack(stripped, tuned, tmp_path / "refit.xfmr")
    assert result.returncode == 0, result.stderr
    assert_same_bytes(compile_to(tuned, tmp_path / "tuned.xfmr", *flags), tmp_path / "refit.xfmr")
    # And the refit artifact runs.
    run = subprocess.run([tool("xfmr-run"), str(tmp_path / "refit.xfmr"), "--prompt-ids", "1 2 3",
                          "-n", "4"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.split()) == 4


def test_dtype_conversion_is_reported(synth_checkpoint, tmp_path):
    bf16 = synth_checkpoint("llama", dtype="bf16")
    f32 = synth_checkpoint("llama")
    stripped = compile_to(bf16, tmp_path / "stripped.xfmr", "--strip-weights")
    result = pack(stripped, f32, tmp_path / "packed.xfmr")
    assert result.returncode == 0, result.stderr
    assert "converted model.norm.weight (F32 -> BF16)" in result.stderr


def test_stripped_artifact_does_not_run(synth_checkpoint, tmp_path):
    stripped = compile_to(synth_checkpoint("llama"), tmp_path / "stripped.xfmr",
                          "--strip-weights")
    run = subprocess.run([tool("xfmr-run"), str(stripped), "--prompt-ids", "1", "-n", "1"],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "has no weights (it was compiled with --strip-weights)" in run.stderr
    assert f"xfmr-pack {stripped} CHECKPOINT_DIR" in run.stderr


def expect_pack_error(stripped, checkpoint, output, message):
    result = pack(stripped, checkpoint, output)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert not Path(output).exists()
    assert not [p for p in Path(output).parent.iterdir() if p.name.startswith(".")], \
        "a temporary file was left behind"


def test_errors(synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint("llama")
    stripped = compile_to(checkpoint, tmp_path / "stripped.xfmr", "--strip-weights")
    out = tmp_path / "out" / "packed.xfmr"
    out.parent.mkdir()
    # Another architecture.
    expect_pack_error(stripped, synth_checkpoint("qwen2"), out, "the checkpoint is a "
                      "Qwen2ForCausalLM, but")
    # Other shapes of the same architecture.
    expect_pack_error(stripped, synth_checkpoint("llama", overrides={"hidden_size": 96}), out,
                      "the compiled code expects")
    # A missing tensor.
    partial = tmp_path / "partial"
    partial.mkdir()
    from xfmr import safetensors
    source = safetensors.SafetensorsFile(str(checkpoint / "model.safetensors"))
    safetensors.save_file(str(partial / "model.safetensors"),
                          {name: (source.info(name).dtype, source.raw(name))
                           for name in source.keys() if name != "model.norm.weight"})
    (partial / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    expect_pack_error(stripped, partial, out,
                      f"weight 'model.norm.weight' is not in the checkpoint {partial}")
    # No weights at all, not a folder, a damaged artifact.
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_pack_error(stripped, empty, out, "has no weights: expected model.safetensors")
    expect_pack_error(stripped, tmp_path / "nowhere", out, "does not exist or is not a folder")
    damaged = tmp_path / "damaged.xfmr"
    data = bytearray(stripped.read_bytes())
    data[5000] ^= 1
    damaged.write_bytes(bytes(data))
    expect_pack_error(damaged, checkpoint, out, "section is corrupt")


def test_usage_errors(tmp_path):
    for args, message in [([], "expected an artifact and a checkpoint folder"),
                          (["a", "b"], "-o FILE is required"),
                          (["a", "b", "c", "-o", "x"], "too many arguments"),
                          (["a", "b", "-o"], "-o requires a file name"),
                          (["--bogus"], "unknown option '--bogus'")]:
        result = subprocess.run([tool("xfmr-pack"), *args], capture_output=True, text=True,
                                cwd=tmp_path)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
    assert not list(tmp_path.iterdir())
    assert subprocess.run([tool("xfmr-pack"), "--help"], capture_output=True,
                          text=True).stdout.startswith("usage: xfmr-pack")


def test_python_api(synth_checkpoint, tmp_path):
    import xfmr
    checkpoint = synth_checkpoint("llama")
    stripped = xfmr.compile(str(checkpoint), tmp_path / "stripped.xfmr", strip_weights=True)
    assert stripped == str(tmp_path / "stripped.xfmr")
    lines = []
    artifact = xfmr.pack(stripped, checkpoint, tmp_path / "packed.xfmr", progress=lines.append)
    assert artifact.manifest["weights"]["bytes"] > 0
    assert_same_bytes(xfmr.compile(str(checkpoint), tmp_path / "full.xfmr").path,
                      tmp_path / "packed.xfmr")
    with pytest.raises(xfmr.Error, match="--strip-weights"):
        xfmr.Artifact(stripped)
    with pytest.raises(xfmr.InvalidArgumentError, match="strip_weights needs an output"):
        xfmr.compile(str(checkpoint), strip_weights=True)
    with pytest.raises(FileNotFoundError):
        xfmr.pack(tmp_path / "missing.xfmr", checkpoint, tmp_path / "x.xfmr")


def test_stripped_from_a_sparse_checkpoint(synth_checkpoint, tmp_path):
    """A GPU-sized model compiles weights-stripped from a sparse checkpoint (headers, no
    data); the real checkpoint, generated elsewhere, packs into the full artifact."""
    from xfmr import synth
    sparse = tmp_path / "sparse"
    synth.generate(str(sparse), "deepseek_v3", dtype="bf16", sparse=True)
    flags = ["--mla-cache", "latent", "--mla-absorb", "compile-time"]
    stripped = compile_to(sparse, tmp_path / "stripped.xfmr", "--strip-weights", *flags)
    real = synth_checkpoint("deepseek_v3", dtype="bf16")
    assert pack(stripped, real, tmp_path / "packed.xfmr").returncode == 0
    assert_same_bytes(compile_to(real, tmp_path / "full.xfmr", *flags), tmp_path / "packed.xfmr")
