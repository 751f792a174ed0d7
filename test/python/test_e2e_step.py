"""Batched steps (the artifact's `step` entry, `xfmr.Session.step`): several sequences in
one call compute what each computes alone, for every architecture and cache format. A step
returns one logits row per sequence (its last id's), compared with the same rows alone.

Each case runs three sequences of different prompt lengths two ways: alone (prefill, then
greedy decode one session at a time, each with a whole cache of its own) and together (the
prompts as segments of one step, then one step per token for all three, with a fourth
sequence whose prompt joins in the middle beside the others' decode tokens), on the CPU in
paged caches: blocks of one KVBlockPool, of the smallest size the cache format allows (the
checkpoints have a context of 2048, so that every format's cache is page-aligned). Every
logit row must agree to 1e-4 of its max-abs and the greedy ids must be equal."""

import numpy as np
import pytest

import xfmr
from test_e2e_cpu import relative_row_error

PROMPTS = [list(range(3, 11)), list(range(5, 45)), [7]]
LATE_PROMPT = list(range(9, 14))
STEPS = 6


def alone(artifact, prompt, steps):
    """The logits of `prompt`'s last id, then of `steps` greedy tokens: one session on its
    own (prefill, then decode)."""
    session = artifact.session()
    rows = [session.prefill(prompt)[-1]]
    ids = []
    for _ in range(steps):
        ids.append(int(rows[-1].argmax()))
        rows.append(session.decode(ids[-1]))
    return ids, np.array(rows)


def block_pool(artifact):
    """A pool for the sequences of `together`, or None where caches are not paged (GPU back
    ends, caches under 16 pages)."""
    if artifact.target["kind"] != "cpu" or xfmr.KVBlockPool.why_not_pageable(artifact):
        return None
    return xfmr.KVBlockPool(artifact, sequences=len(PROMPTS) + 1)


def together(artifact, prompts, late_prompt, steps, pool=None):
    """The same through steps (one logits row per sequence and step): all prompts in the
    first step, then one token each per step; `late_prompt` arrives at step 2 and is
    prefilled beside the others' tokens. With `pool`, the sessions' caches are its blocks."""
    sessions = [xfmr.Session(artifact, block_pool=pool) for _ in prompts]
    late = xfmr.Session(artifact, block_pool=pool)
    out = xfmr.Session.step(list(zip(sessions, prompts)))
    assert out.shape == (len(prompts), artifact.vocab_size)
    rows = [[row] for row in out]
    late_rows = []
    ids = [[] for _ in prompts]
    late_ids = []
    for step in range(steps):
        inputs = []
        for i, session in enumerate(sessions):
            ids[i].append(int(rows[i][-1].argmax()))
            inputs.append((session, [ids[i][-1]]))
        if step == 2:
            inputs.insert(1, (late, late_prompt))
        elif step > 2:
            late_ids.append(int(late_rows[-1].argmax()))
            inputs.append((late, [late_ids[-1]]))
        out = xfmr.Session.step(inputs)
        for (session, _), row in zip(inputs, out):
            if session is late:
                late_rows.append(row)
            else:
                rows[sessions.index(session)].append(row)
    for i, session in enumerate(sessions):
        assert session.position == len(prompts[i]) + steps
        # One id counts as a decode token, several as prefill.
        assert session.stats["decode_tokens"] == steps + (len(prompts[i]) == 1)
    if pool is not None:
        # Blocks as the sequences grew: one per block_tokens positions started.
        for session in sessions + [late]:
            assert session.kv_blocks == -(-session.position // pool.block_tokens)
        assert pool.stats["used"] == sum(s.kv_blocks for s in sessions + [late])
    return ids, [np.array(r) for r in rows], late_ids, np.array(late_rows)


def check(artifact, paged=True):
    pool = block_pool(artifact)
    assert (pool is not None) == paged, xfmr.KVBlockPool.why_not_pageable(artifact)
    ids, rows, late_ids, late_rows = together(artifact, PROMPTS, LATE_PROMPT, STEPS, pool)
    for i, prompt in enumerate(PROMPTS):
        expected_ids, expected_rows = alone(artifact, prompt, STEPS)
        assert ids[i] == expected_ids, f"sequence {i}"
        assert relative_row_error(rows[i], expected_rows) < 1e-4, f"sequence {i}"
    expected_ids, expected_rows = alone(artifact, LATE_PROMPT, STEPS - 3)
    assert late_ids == expected_ids
    assert relative_row_error(late_rows, expected_rows) < 1e-4


CASES = {
    "llama-f32": ("llama", {}, {}),
    "llama-bf16-cache": ("llama", {}, {"kv_cache": "bf16"}),
    "llama-f16-cache": ("llama", {}, {"kv_cache": "f16"}),
    "llama-fp8-cache": ("llama", {}, {"kv_cache": "fp8"}),
    "llama-int8-cache": ("llama", {}, {"kv_cache": "int8"}),
    "llama-bf16-weights": ("llama", {"dtype": "bf16"}, {}),
    "llama-int8": ("llama", {"dtype": "bf16"}, {"quantize": "int8"}),
    "llama-fp8": ("llama", {"dtype": "bf16"}, {"quantize": "fp8"}),
    "mistral": ("mistral", {}, {}),
    "qwen2": ("qwen2", {}, {}),
    "mixtral": ("mixtral", {}, {}),
    "mixtral-int8": ("mixtral", {"dtype": "bf16"}, {"quantize": "int8"}),
    "deepseek-v3-expanded": ("deepseek_v3", {}, {}),
    "deepseek-v3-latent": ("deepseek_v3", {}, {"mla_cache": "latent"}),
    "deepseek-v3-latent-fp8": ("deepseek_v3", {}, {"mla_cache": "latent", "kv_cache": "fp8"}),
    "deepseek-v3-latent-int8": ("deepseek_v3", {}, {"mla_cache": "latent",
                                                    "kv_cache": "int8"}),
    "deepseek-v3-folded": ("deepseek_v3", {}, {"mla_cache": "latent",
                                               "mla_absorb": "compile-time"}),
    "deepseek-v3-fp8": ("deepseek_v3", {"dtype": "fp8"}, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_step_equals_alone(case, synth_checkpoint, tmp_path):
    arch, synth_options, compile_options = CASES[case]
    checkpoint = synth_checkpoint(arch, overrides={"max_position_embeddings": 2048},
                                  **synth_options)
    check(xfmr.compile(checkpoint, tmp_path / "model.xfmr", **compile_options))


def test_step_stories260k(stories260k_dir, tmp_path):
    check(xfmr.compile(stories260k_dir, tmp_path / "model.xfmr"))


def test_step_evicting_cache(synth_checkpoint, tmp_path):
    """A ring cache (--kv-window): decode steps past the ring's size still equal decoding
    alone; a multi-token segment that would wrap the ring is refused before any compute."""
    artifact = xfmr.compile(synth_checkpoint("llama"), tmp_path / "model.xfmr",
                            kv_window=40, kv_sinks=2)
    check(artifact, paged=False)  # a ring of 40 positions is less than a page
    session = artifact.session()
    with pytest.raises(xfmr.InvalidArgumentError, match="wrap the evicting cache"):
        xfmr.Session.step([(session, list(range(3, 53)))])
    assert session.position == 0


def test_step_errors(synth_checkpoint, tmp_path):
    artifact = xfmr.compile(synth_checkpoint("llama"), tmp_path / "model.xfmr")
    other = xfmr.compile(synth_checkpoint("llama"), tmp_path / "other.xfmr")
    a, b = artifact.session(), artifact.session()
    with pytest.raises(xfmr.InvalidArgumentError, match="at least one"):
        xfmr.Session.step([])
    with pytest.raises(xfmr.InvalidArgumentError, match="repeats the session"):
        xfmr.Session.step([(a, [1]), (a, [2])])
    with pytest.raises(xfmr.InvalidArgumentError, match="another artifact"):
        xfmr.Session.step([(a, [1]), (other.session(), [2])])
    with pytest.raises(xfmr.InvalidArgumentError, match="step input 1.*out of range"):
        xfmr.Session.step([(a, [1]), (b, [artifact.vocab_size])])
    with pytest.raises(xfmr.InvalidArgumentError, match="not a \\(Session, ids\\) pair"):
        xfmr.Session.step([a])
    with pytest.raises(xfmr.InvalidArgumentError, match="no token ids"):
        xfmr.Session.step([(a, [1]), (b, [])])
    # Nothing ran.
    assert a.position == 0 and b.position == 0
    assert artifact.manifest["entry_points"]["step"] == "_mlir_ciface_batch_step"


@pytest.mark.parametrize("arch,options", [("llama", {}), ("deepseek_v3", {"mla_cache": "latent"})],
                         ids=["llama", "deepseek-v3-latent"])
def test_step_on_vulkan(arch, options, synth_checkpoint, tmp_path):
    """The GPU back ends run the same step entry (here Vulkan on lavapipe): the host code
    loops over the segments and launches the same kernels on views of device memory."""
    from test_e2e_vulkan import open_session

    path = tmp_path / "model.xfmr"
    xfmr.compile(synth_checkpoint(arch), path, target="vulkan", **options)
    open_session(path)  # skips without a Vulkan driver
    check(xfmr.Artifact(str(path)), paged=False)
