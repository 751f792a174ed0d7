"""Causal self-attention: grouped-query attention (Llama family) and DeepSeek's MLA."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import rope
from .cache import Cache
from .mlp import linear
from .norm import rms_norm


def causal_mask(start: int, steps: int, total: int, window: Optional[int],
                sinks: int = 0) -> np.ndarray:
    """[steps, total] booleans: may the query at position start+t attend the key at j?

    Keys up to and including the query's position; with a sliding window only keys at
    positions > p - window (the query sees `window` positions, itself included), and the
    first `sinks` positions (attention sinks of an evicting cache).
    """
    q_pos = np.arange(start, start + steps)[:, None]
    k_pos = np.arange(total)[None, :]
    allowed = k_pos <= q_pos
    if window is not None:
        allowed &= (k_pos > q_pos - window) | (k_pos < sinks)
    return allowed


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray,
           scale: float) -> np.ndarray:
    """softmax(q k^T * scale, masked) v for q [H, T, dk], k [H, S, dk], v [H, S, dv]."""
    scores = np.einsum("htd,hsd->hts", q, k) * scale
    scores = np.where(mask[None], scores, -np.inf)
    return np.einsum("hts,hsd->htd", softmax(scores), v)


#: Keys per chunk of the GPU's matrix-unit prefill attention.
MATRIX_CHUNK = 64


def attend_matrix_tiles(q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int,
                        window: Optional[int], scale: float, queries: int = 64) -> np.ndarray:
    """Causal attention as the GPUs' matrix-unit prefill computes it (lowering/GPU/Kernels/
    AttentionTiles.cpp, FlashAttention-2 on bf16 products), for q [H, T, dk] at positions
    start.., k [H, S, dk], v [H, S, dv]: q, k and v rounded to bf16; queries in tiles of
    `queries` tokens (NVIDIA 64, AMD 32), each walking its keys in chunks of 64 from the
    first key its first query sees; per chunk the running maximum m, exp(s - m) rounded to
    bf16 multiplies the values and its unrounded sum normalizes. Only the rounding points
    differ from `attend`."""
    from .bf16 import round_bf16  # noqa: PLC0415

    heads, steps, _ = q.shape
    q, k, v = round_bf16(q), round_bf16(k), round_bf16(v)
    out = np.zeros((heads, steps, v.shape[-1]))
    for first_token in range(0, steps, queries):
        tokens = slice(first_token, min(first_token + queries, steps))
        tile_start = start + first_token
        positions = np.arange(start, start + steps)[tokens]
        first = max(0, tile_start + 1 - window) if window is not None else 0
        last = positions[-1] + 1
        m = np.full((heads, len(positions)), -1e30)
        total = np.zeros((heads, len(positions)))
        o = np.zeros((heads, len(positions), v.shape[-1]))
        for chunk in range(first, last, MATRIX_CHUNK):
            keys = np.arange(chunk, min(chunk + MATRIX_CHUNK, last))
            s = np.einsum("htd,hsd->hts", q[:, tokens], k[:, keys]) * scale
            visible = keys[None, :] <= positions[:, None]
            if window is not None:
                visible &= keys[None, :] > positions[:, None] - window
            s = np.where(visible[None], s, -np.inf)
            new_m = np.maximum(m, np.max(s, axis=-1))
            correction = np.exp(m - new_m)
            p = np.exp(s - new_m[..., None])
            total = total * correction + np.sum(p, axis=-1)
            o = o * correction[..., None] + np.einsum("hts,hsd->htd", round_bf16(p), v[:, keys])
            m = new_m
        out[:, tokens] = o / total[..., None]
    return out


def attend_causal(attn, q: np.ndarray, keys: np.ndarray, values: np.ndarray, start: int,
                  scale: float) -> np.ndarray:
    """Causal attention of `attn` (its window and sinks) over the cache's keys and values:
    exact, or as the GPUs' matrix units compute a prefill where use_matrix_tiles asked."""
    if attn.matrix_tiles and q.shape[1] > 1 and not attn.sinks:
        return attend_matrix_tiles(q, keys, values, start, attn.window, scale, attn.matrix_tiles)
    mask = causal_mask(start, q.shape[1], keys.shape[1], attn.window, attn.sinks)
    return attend(q, keys, values, mask, scale)


#: Slices of the keys of NVIDIA's matrix-unit latent decode (LatentTiles.cpp).
LATENT_SLICES = 128


def attend_latent_tiles(q_latent: np.ndarray, q_rope: np.ndarray, latent: np.ndarray,
                        scales: np.ndarray, rope_keys: np.ndarray, scale: float,
                        chunk: int, block: int = 128,
                        slices: int = LATENT_SLICES) -> np.ndarray:
    """Attention in latent space of one token (q_latent [H, rank], q_rope [H, rope]) over
    the entries of a latent cache it sees (latent [S, rank] values or 8-bit codes, scales
    [S, rank / block] their scales per block of channels, rope_keys [S, rope]), as NVIDIA's
    matrix units compute it (lowering/GPU/Kernels/LatentTiles.cpp): the queries, the entries
    and the rope keys rounded to bf16; `slices` slices of whole chunks of `chunk` keys
    (decode: flash decoding's LATENT_SLICES; prefill: one), each walking its chunks with a
    running maximum m, where exp(s - m) times each block's scales, rounded to bf16,
    multiplies the block's codes and its unrounded sum normalizes; the slices combined.
    Returns [H, rank]."""
    from .bf16 import round_bf16  # noqa: PLC0415

    q_latent, q_rope = round_bf16(q_latent), round_bf16(q_rope)
    latent, rope_keys = round_bf16(latent), round_bf16(rope_keys)
    count, rank = latent.shape
    per_slice = -(-(-(-count // slices)) // chunk) * chunk
    blocks = [slice(i, min(i + block, rank)) for i in range(0, rank, block)]
    parts = []
    for first in range(0, count, per_slice):
        last = min(first + per_slice, count)
        m = np.full(q_latent.shape[0], -1e30)
        total = np.zeros(q_latent.shape[0])
        o = np.zeros(q_latent.shape)
        for start in range(first, last, chunk):
            keys = np.arange(start, min(start + chunk, last))
            s = q_rope @ rope_keys[keys].T
            for b, channels in enumerate(blocks):
                s += (q_latent[:, channels] @ latent[keys, channels].T) * scales[keys, b]
            s *= scale
            new_m = np.maximum(m, np.max(s, axis=-1))
            correction = np.exp(m - new_m)
            p = np.exp(s - new_m[:, None])
            total = total * correction + np.sum(p, axis=-1)
            o *= correction[:, None]
            for b, channels in enumerate(blocks):
                o[:, channels] += round_bf16(p * scales[keys, b]) @ latent[keys, channels]
            m = new_m
        parts.append((o, m, total))
    top = np.max([m for _, m, _ in parts], axis=0)
    weights = [np.exp(m - top) for _, m, _ in parts]
    out = sum(o * w[:, None] for (o, _, _), w in zip(parts, weights))
    return out / sum(t * w for (_, _, t), w in zip(parts, weights))[:, None]


def use_latent_tiles(model, chunk: int = 32) -> None:
    """Attention of MLA latent caches (no evicting ring), prefill and decode, as NVIDIA's
    matrix units compute it (attend_latent_tiles) in chunks of `chunk` keys (32, or 16
    where a wide latent's staging leaves too little workgroup memory)."""
    for layer in model.layers:
        if isinstance(layer.attn, MLAttention):
            layer.attn.latent_tiles = chunk


def use_matrix_tiles(model, queries: int = 64) -> None:
    """Prefill attention (more than one token, no evicting ring) as the GPUs' matrix units
    compute it (attend_matrix_tiles) in tiles of `queries` tokens (NVIDIA 64, AMD 32); decode
    stays exact, as the GPUs' flash decoding is f32."""
    for layer in model.layers:
        layer.attn.matrix_tiles = queries


class GQAttention:
    """Multi-head attention with `kv_heads` key/value heads shared by groups of query heads,
    rotate-half RoPE, optional q/k/v/o biases (Qwen2) and an optional sliding window."""

    def __init__(self, weights, prefix: str, config: dict, window: Optional[int]):
        hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads") or self.heads
        self.head_dim = config.get("head_dim") or hidden // self.heads
        if self.heads % self.kv_heads:
            raise ValueError(f"num_attention_heads {self.heads} is not a multiple of "
                             f"num_key_value_heads {self.kv_heads}")
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.wq = weights.get(f"{prefix}.q_proj.weight", (q_out, hidden))
        self.wk = weights.get(f"{prefix}.k_proj.weight", (kv_out, hidden))
        self.wv = weights.get(f"{prefix}.v_proj.weight", (kv_out, hidden))
        self.wo = weights.get(f"{prefix}.o_proj.weight", (hidden, q_out))
        self.bq = weights.maybe(f"{prefix}.q_proj.bias", (q_out,))
        self.bk = weights.maybe(f"{prefix}.k_proj.bias", (kv_out,))
        self.bv = weights.maybe(f"{prefix}.v_proj.bias", (kv_out,))
        self.bo = weights.maybe(f"{prefix}.o_proj.bias", (hidden,))
        self.window = window
        self.sinks = 0
        #: Set by use_matrix_tiles: prefill as the GPUs' matrix units compute it, in tiles
        #: of this many queries (0: exactly).
        self.matrix_tiles = 0
        self.inv_freq = rope.llama_inv_freq(self.head_dim, float(config.get("rope_theta", 10000.0)),
                                            config.get("rope_scaling"))

    def __call__(self, x: np.ndarray, cache: Cache, layer: int) -> np.ndarray:
        steps, start = x.shape[0], cache.length
        d = self.head_dim
        q = linear(x, self.wq, self.bq).reshape(steps, self.heads, d).transpose(1, 0, 2)
        k = linear(x, self.wk, self.bk).reshape(steps, self.kv_heads, d).transpose(1, 0, 2)
        v = linear(x, self.wv, self.bv).reshape(steps, self.kv_heads, d).transpose(1, 0, 2)
        cos, sin = rope.cos_sin(self.inv_freq, np.arange(start, start + steps))
        q, k = rope.rotate_half(q, cos, sin), rope.rotate_half(k, cos, sin)
        keys, values = cache.update(layer, k, v)
        # Query head h reads key/value head h // (heads / kv_heads).
        group = self.heads // self.kv_heads
        keys, values = np.repeat(keys, group, axis=0), np.repeat(values, group, axis=0)
        out = attend_causal(self, q, keys, values, start, 1.0 / math.sqrt(d))
        return linear(out.transpose(1, 0, 2).reshape(steps, self.heads * d), self.wo, self.bo)


class MLAttention:
    """DeepSeek-V3 multi-head latent attention (the plain, non-absorbed formulation).

    q = q_b(norm(q_a(x))) (or q_proj(x)), per head [nope | rope]. The joint projection
    kv_a(x) = [c_kv (kv_lora_rank) | k_pe (rope dim)]: only c_kv is normalized and expanded by
    kv_b into per-head [k_nope | v] (head-major rows); k_pe is one rotary key shared by all
    heads. RoPE turns interleaved pairs.
    """

    def __init__(self, weights, prefix: str, config: dict):
        hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.nope = config["qk_nope_head_dim"]
        self.rope_dim = config["qk_rope_head_dim"]
        self.v_dim = config["v_head_dim"]
        self.kv_rank = config["kv_lora_rank"]
        self.q_rank = config.get("q_lora_rank")
        self.eps = config.get("rms_norm_eps", 1e-6)
        #: Set by kv_cache.use_latent_cache: how a latent cache stores c_KV and k_pe.
        self.latent_storage = None
        #: Set by kv_cache.use_folded_mla: (W_q_latent, W_q_rope, W_o_folded) when W_UK and
        #: W_UV are folded into the projections at compile time.
        self.folded = None
        #: Set by kv_cache.use_eviction: the window and sinks of an evicting cache.
        self.window: Optional[int] = None
        self.sinks = 0
        #: Set by use_matrix_tiles: prefill as the GPUs' matrix units compute it, in tiles
        #: of this many queries (0: exactly).
        self.matrix_tiles = 0
        #: Set by use_latent_tiles: attention from a latent cache (prefill and decode) as
        #: NVIDIA's matrix units compute it, in chunks of this many keys (0: exactly).
        self.latent_tiles = 0
        qk_dim = self.nope + self.rope_dim
        if self.q_rank:
            self.wq_a = weights.get(f"{prefix}.q_a_proj.weight", (self.q_rank, hidden))
            self.q_norm = weights.get(f"{prefix}.q_a_layernorm.weight", (self.q_rank,))
            self.wq_b = weights.get(f"{prefix}.q_b_proj.weight",
                                    (self.heads * qk_dim, self.q_rank))
        else:
            self.wq = weights.get(f"{prefix}.q_proj.weight", (self.heads * qk_dim, hidden))
        self.wkv_a = weights.get(f"{prefix}.kv_a_proj_with_mqa.weight",
                                 (self.kv_rank + self.rope_dim, hidden))
        self.kv_norm = weights.get(f"{prefix}.kv_a_layernorm.weight", (self.kv_rank,))
        self.wkv_b = weights.get(f"{prefix}.kv_b_proj.weight",
                                 (self.heads * (self.nope + self.v_dim), self.kv_rank))
        self.wo = weights.get(f"{prefix}.o_proj.weight", (hidden, self.heads * self.v_dim))
        self.bo = weights.maybe(f"{prefix}.o_proj.bias", (hidden,))

        theta = float(config.get("rope_theta", 10000.0))
        scaling = config.get("rope_scaling")
        kind = rope.rope_type(scaling)
        self.scale = qk_dim ** -0.5
        self.cos_sin_scale = 1.0
        if kind == "default":
            self.inv_freq = rope.default_inv_freq(self.rope_dim, theta)
        elif kind == "linear":
            self.inv_freq = rope.default_inv_freq(self.rope_dim, theta) / float(scaling["factor"])
        elif kind == "yarn":
            self.inv_freq, self.cos_sin_scale = rope.yarn_inv_freq(self.rope_dim, theta, scaling)
            mscale_all_dim = float(scaling.get("mscale_all_dim", 0.0))
            if mscale_all_dim:
                m = rope.yarn_get_mscale(float(scaling["factor"]), mscale_all_dim)
                self.scale *= m * m
        else:
            raise NotImplementedError(f"rope_scaling type {kind!r} is not supported for "
                                      "DeepSeek-V3 (supported: linear, yarn)")

    def query_input(self, x: np.ndarray) -> np.ndarray:
        """What the query projection (q_b_proj or q_proj) reads."""
        if self.q_rank:
            return rms_norm(linear(x, self.wq_a), self.q_norm, self.eps)
        return x

    def query_weight(self) -> np.ndarray:
        return self.wq_b if self.q_rank else self.wq

    def latent_and_rope_key(self, x: np.ndarray, start: int, cache: Optional[Cache] = None,
                            layer: int = 0):
        """c_KV normalized and k_pe rotated [1, T, rope], as the latent cache stores them.
        With latent_tiles, the entries as stored (codes and scales) also go to `cache`."""
        kv_a = linear(x, self.wkv_a)
        c_kv = rms_norm(kv_a[:, : self.kv_rank], self.kv_norm, self.eps)
        cos, sin = rope.cos_sin(self.inv_freq, np.arange(start, start + x.shape[0]),
                                self.cos_sin_scale)
        k_pe = rope.rotate_interleaved(kv_a[None, :, self.kv_rank:], cos, sin)
        if self.latent_storage is not None:
            if self.latent_tiles and cache is not None:
                self.remember_latent(cache, layer, c_kv, k_pe)
            c_kv = self.latent_storage.latent(c_kv)
            k_pe = self.latent_storage.rope_key(k_pe)
        return c_kv, k_pe, cos, sin

    def remember_latent(self, cache: Cache, layer: int, c_kv: np.ndarray,
                        k_pe: np.ndarray) -> None:
        """Appends the latent cache's entries of c_KV [T, rank] and k_pe [1, T, rope] as
        stored (codes, scales, rope keys) to cache.latent_entries[layer]."""
        entries = getattr(cache, "latent_entries", None)
        if entries is None:
            entries = cache.latent_entries = {}
        codes, scales = self.latent_storage.latent_parts(c_kv)
        new = (codes, scales, self.latent_storage.rope_key(k_pe)[0])
        old = entries.get(layer)
        entries[layer] = new if old is None else tuple(
            np.concatenate([a, b]) for a, b in zip(old, new))

    def latent_tiles_attend(self, cache: Cache, layer: int, q_latent: np.ndarray,
                            q_rope: np.ndarray, start: int) -> Optional[np.ndarray]:
        """The latent outputs [H, T, rank] of tokens at positions start.. (q_latent [H, T,
        rank], q_rope [H, T, rope]) as the matrix units compute them (use_latent_tiles:
        decode in slices, prefill a token at a time), or None where they don't."""
        # An evicting cache (a window, sinks) keeps the f32 form (a ring's slots).
        if not self.latent_tiles or self.latent_storage is None or self.window is not None:
            return None
        codes, scales, rope_keys = cache.latent_entries[layer]
        steps = q_latent.shape[1]
        out = np.zeros(q_latent.shape)
        for i in range(steps):
            visible = slice(0, start + i + 1)
            out[:, i] = attend_latent_tiles(
                q_latent[:, i], q_rope[:, i], codes[visible], scales[visible],
                rope_keys[visible], self.scale, self.latent_tiles,
                slices=LATENT_SLICES if steps == 1 else 1)
        return out

    def folded_call(self, x: np.ndarray, cache: Cache, layer: int) -> np.ndarray:
        """Attention in latent space with the folded projections: scores q_lat . c_KV +
        q_pe . k_pe, output latents through the folded o_proj."""
        steps, start = x.shape[0], cache.length
        h, rd = self.heads, self.rope_dim
        w_latent, w_rope, w_out = self.folded
        cq = self.query_input(x)
        q_lat = linear(cq, w_latent).reshape(steps, h, self.kv_rank).transpose(1, 0, 2)
        q_pe = linear(cq, w_rope).reshape(steps, h, rd).transpose(1, 0, 2)
        c_kv, k_pe, cos, sin = self.latent_and_rope_key(x, start, cache, layer)
        q_pe = rope.rotate_interleaved(q_pe, cos, sin)
        k = np.concatenate([c_kv[None], k_pe], axis=-1)  # one "head" shared by all
        keys, values = cache.update(layer, k, c_kv[None])
        tiles = self.latent_tiles_attend(cache, layer, q_lat, q_pe, start)
        if tiles is not None:
            out = tiles.transpose(1, 0, 2).reshape(steps, h * self.kv_rank)
            return linear(out, w_out, self.bo)
        mask = causal_mask(start, steps, keys.shape[1], self.window, self.sinks)
        q = np.concatenate([q_lat, q_pe], axis=-1)
        out = attend(q, np.broadcast_to(keys, (h,) + keys.shape[1:]),
                     np.broadcast_to(values, (h,) + values.shape[1:]), mask, self.scale)
        return linear(out.transpose(1, 0, 2).reshape(steps, h * self.kv_rank), w_out, self.bo)

    def __call__(self, x: np.ndarray, cache: Cache, layer: int) -> np.ndarray:
        if self.folded is not None:
            return self.folded_call(x, cache, layer)
        steps, start = x.shape[0], cache.length
        h, nope, rd = self.heads, self.nope, self.rope_dim
        q = linear(self.query_input(x), self.query_weight())
        q = q.reshape(steps, h, nope + rd).transpose(1, 0, 2)  # [H, T, nope + rope]
        q_nope, q_pe = q[..., :nope], q[..., nope:]

        # c_KV and k_pe as a (compressed) latent cache would hold them, then expanded.
        c_kv, k_pe, cos, sin = self.latent_and_rope_key(x, start, cache, layer)
        kv = linear(c_kv, self.wkv_b)
        kv = kv.reshape(steps, h, nope + self.v_dim).transpose(1, 0, 2)
        k_nope, v = kv[..., :nope], kv[..., nope:]
        q_pe = rope.rotate_interleaved(q_pe, cos, sin)
        q = np.concatenate([q_nope, q_pe], axis=-1)
        k = np.concatenate([k_nope, np.broadcast_to(k_pe, (h, steps, rd))], axis=-1)
        keys, values = cache.update(layer, k, v)
        if self.latent_tiles:
            # Absorbed: the query times W_UK, the latent outputs times W_UV.
            kv_b = self.wkv_b.reshape(h, nope + self.v_dim, self.kv_rank)
            q_latent = np.einsum("htd,hdc->htc", q_nope, kv_b[:, :nope])
            tiles = self.latent_tiles_attend(cache, layer, q_latent, q_pe, start)
            if tiles is not None:
                out = np.einsum("htc,hvc->thv", tiles, kv_b[:, nope:])
                return linear(out.reshape(steps, h * self.v_dim), self.wo, self.bo)
        out = attend_causal(self, q, keys, values, start, self.scale)
        return linear(out.transpose(1, 0, 2).reshape(steps, h * self.v_dim), self.wo, self.bo)


def map_linear_weights(attn, fn) -> None:
    """Replaces each weight of `attn` that the compiler lowers to an xfmr.linear (q/k/v/o;
    MLA's query and KV projections and o, not kv_b, which MLA attention reads itself) with
    fn(weight): how the quantization emulations rewrite attention."""
    names = (("wq", "wk", "wv", "wo") if isinstance(attn, GQAttention)
             else ("wq_a", "wq_b", "wq", "wkv_a", "wo"))
    for name in names:
        if getattr(attn, name, None) is not None:
            setattr(attn, name, fn(getattr(attn, name)))
