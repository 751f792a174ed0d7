"""MoE layers compiled in each evaluation form (`xfmr-compile --moe`): dense (every expert
on every token, weighted 0 where not routed), sparse (the default: decode runs each token's
top-k experts, prefill one grouped GEMM per selected expert) and sparse-prefill (token by
token in prefill too). All forms compute the same function: each matches the float64
reference (f32) or its FP8 emulation, greedy ids equal. The runtime's per-expert token
counts equal the reference router's, ties included."""

import json
import subprocess

import numpy as np
import pytest

from artifact_abi import CompiledModel
from test_e2e_cpu import TOLERANCE, compile_model, greedy_through_abi, relative_row_error, tool
from test_e2e_fp8 import check as check_fp8
from xfmr import reference
from xfmr.safetensors import SafetensorsWriter, open_checkpoint

FORMS = ["dense", "sparse", "sparse-prefill"]
ARCHS = ["mixtral", "deepseek_v3"]
#: Long enough that grouped prefill gives experts several rows (full 4-row tiles).
PROMPT = list(range(3, 27))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("arch", ARCHS)
def test_forms_match_reference_f32(arch, form, synth_checkpoint, tmp_path):
    checkpoint = synth_checkpoint(arch)
    artifact = compile_model(checkpoint, tmp_path, "--moe", form)
    expected_ids, expected_rows = reference.load(str(checkpoint)).generate_greedy(PROMPT, 12)
    ids, rows = greedy_through_abi(CompiledModel(artifact), PROMPT, 12)
    assert ids == list(expected_ids)
    assert relative_row_error(rows, expected_rows) < TOLERANCE


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("arch", ARCHS)
def test_forms_match_fp8_emulation(arch, form, synth_checkpoint, tmp_path):
    # --quantize fp8 (block weights, dynamic activations) against its float64 emulation.
    check_fp8(synth_checkpoint(arch), tmp_path, ["--moe", form], {}, PROMPT, steps=8)


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
@pytest.mark.parametrize("arch", ARCHS)
def test_fp8_channel_and_tensor_scales(arch, granularity, synth_checkpoint, tmp_path):
    # One layout covers the gate/up and down stacks: a block as wide as the widest row
    # (per channel) or matrix (per tensor) gives each stack its own scale per row/matrix.
    # Weights only, so every row must match (dynamic activations are covered above).
    check_fp8(synth_checkpoint(arch), tmp_path,
              [f"--quantize-granularity={granularity}", "--quantize-activations=false"],
              {"granularity": granularity, "activations": False}, PROMPT, steps=8)


@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_fused_fp8_shared_expert(form, synth_checkpoint, tmp_path):
    # Weights-only FP8: the shared expert's linears read the experts' input, so the sparse
    # form folds them (with their scales) into the MoE kernel; dense leaves them apart.
    check_fp8(synth_checkpoint("deepseek_v3"), tmp_path,
              ["--quantize-activations=false", "--moe", form], {"activations": False},
              PROMPT, steps=8)


def moe_layers(model):
    return [layer.mlp for layer in model.layers if hasattr(layer.mlp, "routed")]


def test_expert_token_counts_match_reference_routing(synth_checkpoint, tmp_path):
    import xfmr

    checkpoint = synth_checkpoint("deepseek_v3")
    artifact = xfmr.Artifact(str(compile_model(checkpoint, tmp_path)))
    session = artifact.session()
    generated = session.generate(PROMPT, 6)
    model = reference.load(str(checkpoint))
    model.forward(PROMPT + generated[:-1], model.new_cache())
    expected = [layer.routed for layer in moe_layers(model)]
    counts = session.stats["expert_tokens"]
    # DeepSeek-V3 tiny: layer 0 is dense, layer 1 routes 8 experts, top 2.
    assert list(counts) == ["model.layers.1.mlp"]
    assert [list(c) for c in counts.values()] == [list(e) for e in expected]
    assert sum(counts["model.layers.1.mlp"]) == 2 * (len(PROMPT) + 5)
    # reset() empties the cache but keeps the session's counts, however often.
    total = sum(counts["model.layers.1.mlp"])
    for _ in range(2):
        session.reset()
        session.prefill(PROMPT[:4])
        total += 2 * 4
        assert sum(session.stats["expert_tokens"]["model.layers.1.mlp"]) == total


def tied_router_checkpoint(source, out):
    """`source` with every router row (and correction bias) from expert 2 on copied from
    expert 1: experts 1..n-1 tie on every token, so selection must break ties, and the
    lowest index must win (experts past the first few are then never chosen)."""
    folder = open_checkpoint(str(source))
    tensors = {name: folder.raw(name) for name in folder.keys()}
    specs = []
    for name in sorted(tensors):
        info = folder.info(name)
        if name.endswith(("gate.weight", "gate.e_score_correction_bias")) and (
                ".mlp.gate." in name or ".block_sparse_moe.gate." in name):
            tied = tensors[name].copy()
            tied[2:] = tied[1]
            tensors[name] = tied
        specs.append((name, info.dtype, info.shape))
    out.mkdir()
    (out / "config.json").write_text((source / "config.json").read_text())
    with SafetensorsWriter(str(out / "model.safetensors"), specs,
                           metadata={"format": "pt"}) as writer:
        for name, _, _ in specs:
            writer.write(name, tensors[name])
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_ties_go_to_the_lowest_index(arch, synth_checkpoint, tmp_path):
    checkpoint = tied_router_checkpoint(synth_checkpoint(arch), tmp_path / "tied")
    artifact = compile_model(checkpoint, tmp_path / "out")
    run = subprocess.run([tool("xfmr-run"), str(artifact), "--prompt-ids",
                          " ".join(map(str, PROMPT)), "-n", "1", "--stats"],
                         check=True, capture_output=True, text=True)
    stats = json.loads(run.stderr.strip().splitlines()[-1])
    model = reference.load(str(checkpoint))
    model.forward(PROMPT, model.new_cache())
    expected = [[int(c) for c in layer.routed] for layer in moe_layers(model)]
    assert list(stats["expert_tokens"].values()) == expected
    # Top-2 takes expert 0 and/or the lowest tied ones: Mixtral {0, 1} or {1, 2};
    # DeepSeek-V3 (groups of 2, best 2 groups) only ever keeps groups 0 and 1.
    last = 2 if arch == "mixtral" else 3
    for counts in expected:
        assert sum(counts) == 2 * len(PROMPT) and not any(counts[last + 1:])
