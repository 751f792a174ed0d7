"""The GPU back ends' matrix-unit kernels without a GPU: `--target vulkan:mma-emulation`
runs NVIDIA's (mma.sync fragments and ldmatrix: the prefill linears of MatrixTiles.cpp,
the prefill attention of AttentionTiles.cpp, MoE's grouped products of
MatrixTileProducts.cpp, MLA's latent decode of LatentTiles.cpp) with each warp's product
done through workgroup memory (WarpProducts.cpp); `vulkan:mfma-emulation` the AMD ones
(MFMA's layouts). Their staging, fragment layouts, masks, softmax and scales run here, on
lavapipe; only the instruction differs from a GPU's. (Apart from test_e2e_vulkan.py so
that ctest runs the two side by side.)"""

import numpy as np
import pytest

from test_e2e_vulkan import (TOLERANCE, compile_model, greedy, open_session,
                             relative_row_error)
from xfmr import reference


# `--target vulkan:mma-emulation` runs the NVIDIA matrix-unit kernels (mma.sync fragments:
# the prefill linears of MatrixTiles.cpp and the prefill attention of AttentionTiles.cpp)
# with each warp's product done through workgroup memory (WarpProducts.cpp); and
# `vulkan:mfma-emulation` the AMD ones (MFMA's layouts). Their staging, fragment layouts,
# masks, softmax and scales run here, on lavapipe; only the instruction differs from a
# GPU's.
WIDE = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
        "num_key_value_heads": 2}


def emulated_rows_and_reference(checkpoint, tmp_path, prompt, parts=1,
                                target="vulkan:mma-emulation"):
    """The emulated artifact's greedy rows (prefill in `parts` calls) and the float64
    reference's that rounds attention as the matrix-unit prefill does."""
    from xfmr.reference.attention import use_matrix_tiles

    artifact = compile_model(checkpoint, tmp_path, target, "--context", "256")
    session = open_session(artifact)
    model = reference.load(str(checkpoint))
    use_matrix_tiles(model, queries=32 if "mfma" in target else 64)
    cache = model.new_cache()
    cut = len(prompt) // parts if parts > 1 else len(prompt)
    rows, expected = [], []
    for piece in (prompt[:cut], prompt[cut:]) if parts > 1 else (prompt,):
        rows.append(np.asarray(session.prefill(piece))[-1])
        expected.append(model.forward(piece, cache)[-1])
    # Prefill rows of the last part, then 6 decoded tokens.
    for _ in range(6):
        token = int(np.argmax(expected[-1]))
        rows.append(np.array(session.decode(token)))
        expected.append(model.forward([token], cache)[-1])
    return np.array(rows), np.array(expected)


MMA_ATTENTION = {
    # Head dimension 64, GQA (2 query heads a KV head); 150 tokens: 3 query tiles, 3 key
    # chunks, the last partial.
    "llama": ("llama", WIDE, 1),
    # Prefill in two calls: the second starts mid-tile of the cache.
    "llama-in-parts": ("llama", WIDE, 2),
    # A sliding window shorter than a tile: chunks start where the tile's first query's
    # window does.
    "mistral-window": ("mistral", dict(WIDE, sliding_window=40), 1),
    # DeepSeek-V3's expanded MLA: keys of nope + rope = 32 channels, values of 16.
    "deepseek-v3-mla": ("deepseek_v3", {"qk_nope_head_dim": 16, "qk_rope_head_dim": 16,
                                        "v_head_dim": 16}, 1),
}


@pytest.mark.parametrize("target", ["vulkan:mma-emulation", "vulkan:mfma-emulation"])
@pytest.mark.parametrize("name", sorted(MMA_ATTENTION))
def test_mma_attention_matches_its_emulation(name, target, synth_checkpoint, tmp_path):
    """f32 weights keep the linears in f32 SIMT tiles: only prefill attention runs on the
    (emulated) matrix units, NVIDIA's (64 queries a workgroup, P from registers) or AMD's
    (32, P through workgroup memory), rounding q, k, v and the probabilities to bf16. It
    must match the float64 reference that rounds at the same points (attend_matrix_tiles)
    to well under the rounding's own effect (a few 1e-3)."""
    arch, overrides, parts = MMA_ATTENTION[name]
    checkpoint = synth_checkpoint(arch, overrides=overrides)
    prompt = [(37 * i + 11) % 120 + 3 for i in range(150)]
    rows, expected = emulated_rows_and_reference(checkpoint, tmp_path, prompt, parts, target)
    errors = np.max(np.abs(rows - expected), axis=-1) / np.max(np.abs(expected), axis=-1)
    # A probability or query within an f32 error of a bf16 tie rounds the other way: a
    # few 1e-4 on a row.
    assert np.median(errors) < 2e-4, errors
    assert np.max(errors) < 2e-3, errors


@pytest.mark.parametrize("target", ["vulkan:mma-emulation", "vulkan:mfma-emulation"])
def test_mma_linears_match_cpu(target, synth_checkpoint, tmp_path):
    """The prefill linears on the (emulated) matrix units, NVIDIA's mma.sync or AMD's MFMA
    (`vulkan:mfma-emulation`: gfx942's layouts, FP8 on FNUZ codes): bf16 weights with
    --precise (a product for the input's bf16 remainder too) and E4M3 weights times FP8
    activation codes (promotion with the token's and the block's scales), 80 tokens (two
    token tiles), against the CPU back end with the same flags."""
    prompt = [(37 * i + 11) % 120 + 3 for i in range(80)]
    bf16 = synth_checkpoint("llama", dtype="bf16", overrides=WIDE)
    # One layer: its K and V projections of every token reach the decoded rows, and no
    # FP8 activation of a later layer can round to another code (a step of 1/8).
    f32 = synth_checkpoint("llama", overrides=dict(WIDE, num_hidden_layers=1))
    for checkpoint, flags in ((bf16, ["--precise"]), (f32, ["--precise", "--quantize", "fp8"])):
        gpu = compile_model(checkpoint, tmp_path / "gpu", target, *flags)
        cpu = compile_model(checkpoint, tmp_path / "cpu", "cpu", *flags)
        gpu_ids, gpu_rows = greedy(gpu, prompt, 8)
        cpu_ids, cpu_rows = greedy(cpu, prompt, 8)
        assert gpu_ids == cpu_ids
        assert relative_row_error(gpu_rows, cpu_rows) < TOLERANCE, flags


# Mixtral with a hidden size of 1.5 stages (96) and an intermediate size of 1.25 column
# tiles (40); DeepSeek-V3 with its shared expert (the same products over all tokens). FP8
# experts (E4M3 in 128 x 128 blocks) multiply their codes, each stage's sums times the
# block's scale: DeepSeek-V3's FP8 checkpoint, and Mixtral's experts quantized at compile
# time (256 x 256: two blocks of rows, two of K).
GROUPED_EXPERTS = {
    "mixtral": ("mixtral", "bf16", {"hidden_size": 96, "intermediate_size": 40}, []),
    "deepseek-v3": ("deepseek_v3", "bf16", {}, []),
    "deepseek-v3-fp8": ("deepseek_v3", "fp8", {}, []),
    "mixtral-fp8-experts": ("mixtral", "bf16", {"hidden_size": 256, "intermediate_size": 256},
                            ["--quantize", "fp8", "--quantize-activations=false"]),
    # DeepSeek-V3's recipe whole: activations quantized per token in groups of 128 too, so
    # the experts multiply both operands' E4M3 codes on the (emulated) FP8 units. One layer:
    # an activation of a later layer within an f32 rounding of a code's edge would round to
    # the next code (a step of 1/8) on one back end, and that moves the rows by 3e-2 after
    # two layers (the same between the CPU and the plain SIMT kernels).
    # Only with --precise: without it, attention rounds to bf16 (its matrix units), and
    # that moves some of the experts' inputs across a code's edge.
    "mixtral-fp8": ("mixtral", "bf16", {"hidden_size": 256, "intermediate_size": 256,
                                        "num_hidden_layers": 1}, ["--quantize", "fp8"],
                    [(["--precise"], TOLERANCE)]),
    # The same with DeepSeek-V3's shared expert (its codes on the FP8 units too), its one
    # layer a MoE layer (2.5e-6 seen).
    "deepseek-v3-fp8-units": ("deepseek_v3", "bf16",
                              {"hidden_size": 256, "moe_intermediate_size": 128,
                               "intermediate_size": 256, "num_hidden_layers": 1,
                               "first_k_dense_replace": 0}, ["--quantize", "fp8"],
                              [(["--precise"], TOLERANCE)]),
}
#: The GPU runs of each case, as (flags, tolerance against the CPU with --precise).
GROUPED_RUNS = [(["--precise"], TOLERANCE), ([], 1e-2)]


@pytest.mark.parametrize("target", ["vulkan:mma-emulation", "vulkan:mfma-emulation"])
@pytest.mark.parametrize("name", sorted(GROUPED_EXPERTS))
def test_mma_grouped_experts_match_cpu(name, target, synth_checkpoint, tmp_path):
    """Prefill's grouped expert products on the (emulated) matrix units, bf16 experts: 150
    tokens give each expert several 32-entry tiles (the last partial), gathered by the
    routing's order. In these models nothing else uses the matrix units (widths that are
    not whole stages, head dimensions that are not multiples of 16), so against the CPU
    with --precise (f32 activations): with --precise too, the experts' activations go in
    two bf16 products (their value and its remainder) and the rows match to f32's accuracy
    (3e-6 seen); without it they round to bf16, which moves the rows by a few 1e-3 (2.6e-3
    seen on Mixtral), the tokens staying the same. FP8 activations: the codes' products are
    exact, and the rows match to f32's accuracy (4.5e-7 seen)."""
    arch, dtype, overrides, extra, *runs = GROUPED_EXPERTS[name]
    checkpoint = synth_checkpoint(arch, dtype=dtype, overrides=overrides)
    prompt = [(37 * i + 11) % 120 + 3 for i in range(150)]
    cpu = compile_model(checkpoint, tmp_path / "cpu", "cpu", "--context", "256", "--precise",
                        *extra)
    cpu_ids, cpu_rows = greedy(cpu, prompt, 4)
    for flags, tolerance in (runs[0] if runs else GROUPED_RUNS):
        gpu = compile_model(checkpoint, tmp_path / "gpu", target, "--context", "256", *flags,
                            *extra)
        gpu_ids, gpu_rows = greedy(gpu, prompt, 4)
        assert gpu_ids == cpu_ids, flags
        assert relative_row_error(gpu_rows, cpu_rows) < tolerance, flags


# MLA's latent decode on NVIDIA's (emulated) matrix units (LatentTiles.cpp): name ->
# (DeepSeek-V3 overrides, compile flags, the latent cache's element, keys a chunk, folded).
# Chunks are 32 keys, 16 where the staging of a wide latent and the emulation's own
# fragments pass 48 KiB of workgroup memory (rank 512 here; on a GPU only past 512).
MLA_DEEPSEEK = {"qk_rope_head_dim": 16, "num_attention_heads": 4}
LATENT_TILES = {
    # 4 heads (rows 4 to 15 of the tiles empty), an f32 latent rounded to bf16.
    "f32": (dict(MLA_DEEPSEEK, kv_lora_rank=64, num_hidden_layers=1), [], "f32", 32,
            False),
    # bf16 entries are staged as they are.
    "bf16": (dict(MLA_DEEPSEEK, kv_lora_rank=64, num_hidden_layers=1),
             ["--kv-cache", "bf16"], "bf16", 32, False),
    # 16 heads, two scale blocks of FP8 codes (each warp's 4 steps in one block).
    "fp8": (dict(MLA_DEEPSEEK, kv_lora_rank=256, num_attention_heads=16,
                 num_hidden_layers=1), ["--kv-cache", "fp8"], "fp8", 32, False),
    # DeepSeek's widths (rank 512, rope 64), 32 heads: two groups of 16.
    "fp8-rank512": (dict(kv_lora_rank=512, qk_rope_head_dim=64, num_attention_heads=32,
                         num_hidden_layers=1), ["--kv-cache", "fp8"], "fp8", 16, False),
    # W_UK and W_UV folded into the projections, int8 codes.
    "int8-folded": (dict(MLA_DEEPSEEK, kv_lora_rank=256, num_attention_heads=16,
                         num_hidden_layers=1),
                    ["--kv-cache", "int8", "--mla-absorb", "compile-time"], "int8", 32, True),
    # 20 loads a thread a chunk of f32 entries: staged without holding the next chunk's
    # in registers.
    "f32-unprefetched": (dict(kv_lora_rank=256, qk_rope_head_dim=64, num_attention_heads=16,
                              num_hidden_layers=1), [], "f32", 32, False),
}


@pytest.mark.parametrize("name", sorted(LATENT_TILES))
def test_mma_latent_attention_matches_its_emulation(name, synth_checkpoint, tmp_path):
    """Attention from an MLA latent cache on the (emulated) mma.sync units: a workgroup's
    16 heads are the products' rows, the entries staged as bf16 (8-bit codes exact, their
    scales on the scores and the probabilities); prefill a workgroup per token, decode in
    flash decoding's 128 slices (here 10 of 32 keys, or 19 of 16) combined. The prefill's
    row of a 300-token prompt and 8 decoded rows must match the float64 reference that
    rounds the queries, the entries and the probabilities to bf16 at the same points
    (use_latent_tiles) to well under that rounding's own effect (6e-4 to 2e-3 on these rows
    against the exact reference). One layer: over two, the rounding ties that the two
    sides break differently (an f32 value within an f32 error of a bf16 tie) add up to
    medians of 2-3e-4."""
    from xfmr.reference.attention import use_latent_tiles
    from xfmr.reference.kv_cache import use_folded_mla, use_latent_cache

    overrides, flags, element, chunk, folded = LATENT_TILES[name]
    checkpoint = synth_checkpoint("deepseek_v3", overrides=overrides)
    prompt = [(7 * i + 3) % 100 + 2 for i in range(300)]
    artifact = compile_model(checkpoint, tmp_path, "vulkan:mma-emulation", "--context", "320",
                             "--mla-cache", "latent", *flags)
    ids, rows = greedy(artifact, prompt, 8)
    model = reference.load(str(checkpoint))
    use_latent_cache(model, element)
    if folded:
        use_folded_mla(model)
    use_latent_tiles(model, chunk)
    expected_ids, expected = model.generate_greedy(prompt, 8)
    assert ids == list(expected_ids)
    errors = np.max(np.abs(rows - expected), axis=-1) / np.max(np.abs(expected), axis=-1)
    # An f32 latent, query or probability within an f32 error of a bf16 tie rounds the
    # other way: up to 2e-4 on a row seen.
    assert np.median(errors) < 2e-4, errors
    assert np.max(errors) < 2e-3, errors


@pytest.mark.parametrize("target", ["vulkan:mma-emulation", "vulkan:mfma-emulation"])
@pytest.mark.parametrize("cache", ["int8", "fp8"])
def test_mma_attention_reads_8bit_caches(cache, target, synth_checkpoint, tmp_path):
    """8-bit caches in the matrix-unit attention: the codes are exact in bf16, the keys'
    scales multiply the score columns and the values' the probabilities. Against the CPU
    with the same cache (f32 attention), the rows differ by the bf16 rounding of the
    queries and probabilities (a few 1e-3); a scale applied wrongly would move them by far
    more."""
    checkpoint = synth_checkpoint("llama", overrides=WIDE)
    prompt = [(37 * i + 11) % 120 + 3 for i in range(70)]
    flags = ["--context", "128", "--kv-cache", cache]
    gpu_ids, gpu_rows = greedy(compile_model(checkpoint, tmp_path / "gpu", target, *flags),
                               prompt, 4)
    cpu_ids, cpu_rows = greedy(compile_model(checkpoint, tmp_path / "cpu", "cpu", *flags),
                               prompt, 4)
    assert gpu_ids == cpu_ids
    assert relative_row_error(gpu_rows, cpu_rows) < 2e-2
