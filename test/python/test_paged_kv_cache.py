"""Paged KV caches (issue 18): sessions take their caches from a KVBlockPool block by block,
share full blocks of a common prompt prefix, copy a shared block before writing into it, and
give blocks back when reset or deleted. A paged cache computes exactly what a whole one
does: every comparison here is with a session that has a whole cache of its own."""

import numpy as np
import pytest

import xfmr

CONTEXT = 2048


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from xfmr import synth

    folder = tmp_path_factory.mktemp("paged")
    synth.generate(str(folder / "ckpt"), "llama",
                   overrides={"max_position_embeddings": CONTEXT})
    return xfmr.compile(folder / "ckpt", folder / "model.xfmr")


def prompt(length, seed=0):
    return [int(i) for i in np.random.default_rng(seed).integers(3, 120, length)]


def whole(artifact, ids):
    """Logits of `ids` in a whole cache."""
    return artifact.session().prefill(ids)


def test_blocks_follow_the_tokens(artifact):
    # The manifest places each layer's rows; the compiler page-aligned them.
    for layer in artifact.manifest["kv_cache"]["layers"]:
        assert [r["offset"] % 4096 for r in layer["regions"]] == [0]
        assert layer["regions"][0]["row_bytes"] == 128
    pool = xfmr.KVBlockPool(artifact, blocks=16)
    assert (pool.blocks, pool.block_tokens) == (16, 32)  # rows of 128 bytes: 32 a page
    assert pool.block_bytes * CONTEXT // 32 == artifact.kv_cache_bytes
    session = xfmr.Session(artifact, block_pool=pool)
    assert session.kv_blocks == 0 and pool.available == 16
    ids = prompt(70)
    np.testing.assert_array_equal(session.prefill(ids), whole(artifact, ids))
    assert session.kv_blocks == 3 and pool.stats["used"] == 3
    session.decode(5)
    assert session.kv_blocks == 3
    session.truncate(10)
    assert session.kv_blocks == 1
    session.reset()
    assert session.kv_blocks == 0
    # The first two blocks were full: they stay cached for their prefix.
    assert pool.stats["cached"] == 2 and pool.available == 16
    del session
    assert pool.stats["used"] == 0


def test_shared_prefix_and_copy_on_write(artifact):
    """A second sequence whose prompt starts like the first maps the first's full blocks
    (block-granular: at most len - 1 tokens), computes only the rest, and both continue
    independently; writing into a shared block (after a truncate) copies it first."""
    pool = xfmr.KVBlockPool(artifact, blocks=32, block_tokens=32)
    first = prompt(100)
    a = xfmr.Session(artifact, block_pool=pool)
    a.prefill(first)
    second = first[:80] + prompt(9, seed=1)
    b = xfmr.Session(artifact, block_pool=pool)
    assert b.reuse_prefix(second) == 64 and b.position == 64
    assert pool.stats["used"] == 4  # a's four blocks, two of them shared
    rows = b.prefill(second[64:])
    np.testing.assert_array_equal(rows, whole(artifact, second)[64:])
    assert pool.stats["prefix_hit_tokens"] == 64
    assert pool.stats["prefix_lookup_tokens"] == len(second)
    # The whole prompt is never taken: its last token must run for its logits.
    c = xfmr.Session(artifact, block_pool=pool)
    assert c.reuse_prefix(first[:96]) == 64
    c.reset()
    # b writes into the block it shares with a: b gets a copy, a keeps its own.
    b.truncate(40)
    tail = prompt(7, seed=2)
    np.testing.assert_array_equal(b.prefill(tail), whole(artifact, second[:40] + tail)[40:])
    assert pool.stats["copies"] == 1
    more = prompt(3, seed=3)
    np.testing.assert_array_equal(a.prefill(more), whole(artifact, first + more)[100:])
    # Decode through a step too: a and b side by side.
    rows = xfmr.Session.step([(a, [9]), (b, [11])])
    np.testing.assert_array_equal(rows[0], whole(artifact, first + more + [9])[-1])
    np.testing.assert_array_equal(rows[1], whole(artifact, second[:40] + tail + [11])[-1])


def test_published_blocks_outlive_their_session(artifact):
    """A finished sequence's full blocks stay cached: the next turn of a chat reuses them,
    and cached blocks are reclaimed, least recently used first, when blocks run out."""
    pool = xfmr.KVBlockPool(artifact, blocks=8, block_tokens=32)
    turn = prompt(80)
    s = xfmr.Session(artifact, block_pool=pool)
    s.prefill(turn)
    s.reset()
    assert pool.stats["cached"] == 2
    follow = turn + prompt(5, seed=4)
    assert s.reuse_prefix(follow) == 64
    np.testing.assert_array_equal(s.prefill(follow[64:]), whole(artifact, follow)[64:])
    s.reset()
    # Another long prompt takes every block: the cached ones are reclaimed.
    t = xfmr.Session(artifact, block_pool=pool)
    t.prefill(prompt(250, seed=5))
    assert pool.stats["used"] == 8 and pool.stats["cached"] == 0
    t.reset()
    assert s.reuse_prefix(follow) == 0


def test_a_full_pool_refuses_before_any_compute(artifact):
    pool = xfmr.KVBlockPool(artifact, blocks=2, block_tokens=32)
    s = xfmr.Session(artifact, block_pool=pool)
    s.prefill(prompt(40))
    with pytest.raises(xfmr.Error, match="KV cache is full: all 2 blocks of 32 positions"):
        s.prefill(prompt(30, seed=6))
    other = xfmr.Session(artifact, block_pool=pool)
    with pytest.raises(xfmr.Error, match="KV cache is full"):
        xfmr.Session.step([(other, [5])])
    # Nothing moved; freeing blocks lets the other sequence run.
    assert s.position == 40 and other.position == 0
    s.reset()
    np.testing.assert_array_equal(other.prefill([5, 6]), whole(artifact, [5, 6]))


def test_evicting_cache_in_blocks(tmp_path):
    """A ring cache pages too: its blocks fill as the ring does, decoding past the ring
    equals a whole ring, and its blocks are never shared (a ring overwrites them)."""
    from xfmr import synth

    synth.generate(str(tmp_path / "ckpt"), "llama",
                   overrides={"max_position_embeddings": CONTEXT})
    artifact = xfmr.compile(tmp_path / "ckpt", tmp_path / "model.xfmr",
                            kv_window=508, kv_sinks=4)
    assert xfmr.KVBlockPool.why_not_pageable(artifact) == ""
    pool = xfmr.KVBlockPool(artifact)
    paged, ring = xfmr.Session(artifact, block_pool=pool), artifact.session()
    ids = prompt(600, seed=7)
    np.testing.assert_array_equal(paged.prefill(ids), ring.prefill(ids))
    assert paged.kv_blocks == pool.blocks
    for token in (5, 6, 7):
        np.testing.assert_array_equal(paged.decode(token), ring.decode(token))
    assert pool.stats["cached"] == 0
    assert xfmr.Session(artifact, block_pool=pool).reuse_prefix(ids) == 0


def test_paging_errors(artifact, synth_checkpoint, tmp_path):
    # 72 positions: 9 KiB a layer, packed at 64 bytes (not pages) and no block size fits.
    small = xfmr.compile(synth_checkpoint("llama"), tmp_path / "small.xfmr", context=72)
    assert xfmr.KVBlockPool.why_not_pageable(small) != ""
    with pytest.raises(xfmr.InvalidArgumentError, match="cannot be paged"):
        xfmr.KVBlockPool(small)
    with pytest.raises(xfmr.InvalidArgumentError, match="whole pages"):
        xfmr.KVBlockPool(artifact, blocks=4, block_tokens=3)
    with pytest.raises(xfmr.InvalidArgumentError, match="blocks"):
        xfmr.KVBlockPool(artifact, blocks=-1)
    with pytest.raises(xfmr.InvalidArgumentError, match="max_map_count"):
        xfmr.KVBlockPool(artifact, blocks=2 ** 30, block_tokens=32)
    pool = xfmr.KVBlockPool(artifact, blocks=4)
    other = xfmr.Artifact(str(artifact.path))
    with pytest.raises(xfmr.InvalidArgumentError, match="another Artifact"):
        xfmr.Session(other, block_pool=pool)
    with pytest.raises(xfmr.InvalidArgumentError, match="block_pool must be"):
        xfmr.Session(artifact, block_pool=object())
    # Sessions without a pool take no blocks, and reuse nothing.
    s = artifact.session()
    assert s.kv_blocks == 0 and s.reuse_prefix([1, 2, 3]) == 0


def test_paged_cache_on_a_gpu_back_end_is_refused(synth_checkpoint, tmp_path):
    from test_e2e_vulkan import open_session

    path = tmp_path / "model.xfmr"
    xfmr.compile(synth_checkpoint("llama", overrides={"max_position_embeddings": CONTEXT}),
                 path, target="vulkan")
    open_session(path)  # skips without a Vulkan driver
    artifact = xfmr.Artifact(str(path))
    assert "needs the CPU back end" in xfmr.KVBlockPool.why_not_pageable(artifact)
    with pytest.raises(xfmr.InvalidArgumentError,
                       match="needs the CPU back end; this artifact runs on vulkan"):
        xfmr.KVBlockPool(artifact, blocks=4)
