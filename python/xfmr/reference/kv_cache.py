"""Float64 emulation of xfmr's compressed KV caches (`xfmr-compile --kv-cache ...`): each
key and value is stored in the cache's element type when it is written, and read back from it.

- bf16, f16: each element rounded to the format (to nearest, ties to even);
- fp8 (E4M3FN) and int8: per token and KV head, the key (and separately the value) gets
  scale = float32(max(max |x|, 1e-12) / 448) (int8: / 127) and is stored as
  round(x / scale) * scale (E4M3 rounding to nearest even and saturating; int8 rounding half to
  even, clamped to +-127).

MLA's expanded cache stores the full key [k_nope | k_pe] per head (one scale for both parts).
Applies to a model from `reference.load` with `use_kv_cache(model, element)`.

Eviction (`xfmr-compile --kv-window W --kv-sinks S`) keeps, for the query at position p, the
keys at positions < S and in (p - W, p]: `use_eviction(model, W, S)` masks attention that way
over the full-length cache (positions and rotations stay absolute, as in the compiled ring).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..safetensors import decode_bf16, encode_bf16
from .cache import Cache
from .bf16 import round_bf16  # noqa: F401 (also used by tests through here)
from .fp8 import round_e4m3

EPSILON = 1e-12


def compress(x: np.ndarray, element: str) -> np.ndarray:
    """Entries x [heads, tokens, dim] as stored and read back."""
    codes, scale = compress_parts(x, element)
    return codes * scale


def compress_parts(x: np.ndarray, element: str):
    """Entries x [..., dim] as stored: (values or 8-bit codes, scale [..., 1]; 1 for the
    formats without a scale)."""
    if element == "f32":
        return np.asarray(x, np.float32).astype(np.float64), np.ones(x.shape[:-1] + (1,))
    if element == "bf16":
        return round_bf16(x), np.ones(x.shape[:-1] + (1,))
    if element == "f16":
        return (np.asarray(x, np.float32).astype(np.float16).astype(np.float64),
                np.ones(x.shape[:-1] + (1,)))
    top = 448.0 if element == "fp8" else 127.0
    x32 = np.asarray(x, np.float32).astype(np.float64)
    amax = np.max(np.abs(x32), axis=-1, keepdims=True)
    scale = (np.maximum(amax, EPSILON) / top).astype(np.float32).astype(np.float64)
    # The compiled kernels divide in f32, and so does the emulation (a quotient kept in
    # float64 can land on the other side of a rounding tie).
    y = (x32.astype(np.float32) / scale.astype(np.float32)).astype(np.float64)
    codes = round_e4m3(y) if element == "fp8" else np.clip(np.round(y), -127, 127)
    return codes, scale


class CompressedCache(Cache):
    """A Cache that stores what the compiled cache of `element` would hold."""

    def __init__(self, num_layers: int, element: str):
        super().__init__(num_layers)
        self.element = element

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return super().update(layer, compress(k, self.element), compress(v, self.element))


def use_kv_cache(model, element: str) -> None:
    """Makes `model.new_cache()` return caches of `element` (f32, bf16, f16, fp8, int8)."""
    if element not in ("f32", "bf16", "f16", "fp8", "int8"):
        raise ValueError(f"unknown KV-cache element {element!r}")
    model.new_cache = lambda: CompressedCache(model.num_layers, element)


#: Channels per scale of an 8-bit latent cache (FlashMLA's tile).
LATENT_SCALE_BLOCK = 128


class LatentStorage:
    """What an MLA latent cache of `element` (`--mla-cache latent --kv-cache element`)
    stores: c_KV in the element type (8-bit: one scale per token and 128 channels) and k_pe
    in the element type (8-bit: bf16)."""

    def __init__(self, element: str):
        if element not in ("f32", "bf16", "f16", "fp8", "int8"):
            raise ValueError(f"unknown latent cache element {element!r}")
        self.element = element

    def latent(self, c_kv: np.ndarray) -> np.ndarray:
        """c_KV [tokens, rank] as stored and read back."""
        codes, scales = self.latent_parts(c_kv)
        per_channel = np.repeat(scales, LATENT_SCALE_BLOCK, axis=-1)[:, : c_kv.shape[-1]]
        return codes * per_channel

    def latent_parts(self, c_kv: np.ndarray):
        """c_KV [tokens, rank] as stored: (values or codes [tokens, rank], their scales
        [tokens, blocks of LATENT_SCALE_BLOCK channels]; ones without scales)."""
        if self.element not in ("fp8", "int8"):
            values, _ = compress_parts(c_kv, self.element)
            blocks = -(-c_kv.shape[-1] // LATENT_SCALE_BLOCK)
            return values, np.ones(c_kv.shape[:-1] + (blocks,))
        parts = [compress_parts(c_kv[:, i:i + LATENT_SCALE_BLOCK], self.element)
                 for i in range(0, c_kv.shape[-1], LATENT_SCALE_BLOCK)]
        return (np.concatenate([codes for codes, _ in parts], axis=-1),
                np.concatenate([scale for _, scale in parts], axis=-1))

    def rope_key(self, k_pe: np.ndarray) -> np.ndarray:
        """k_pe [1, tokens, rope] as stored and read back."""
        return compress(k_pe, "bf16" if self.element in ("fp8", "int8") else self.element)


def use_latent_cache(model, element: str) -> None:
    """Make `model`'s MLA layers see c_KV and k_pe as a latent cache of `element` stores
    them. (The reference attends in the expanded form, which computes the same function.)"""
    from .attention import MLAttention

    storage = LatentStorage(element)
    layers = [layer.attn for layer in model.layers if isinstance(layer.attn, MLAttention)]
    if not layers:
        raise ValueError("use_latent_cache needs a model with MLA layers")
    for attn in layers:
        attn.latent_storage = storage


def fold_mla_weights(attn, dtype: str = "f32"):
    """W_UK folded into the query projection and W_UV into o_proj, in float64, then rounded
    once to `dtype` ("f32", "bf16", "f16") as `xfmr-compile --mla-absorb compile-time`
    stores them: (W_q_latent [H * rank, in], W_q_rope [H * rope, in], W_o [hidden,
    H * rank])."""
    h, nope, rd, v, rank = attn.heads, attn.nope, attn.rope_dim, attn.v_dim, attn.kv_rank
    wq = attn.query_weight().reshape(h, nope + rd, -1)
    kv_b = attn.wkv_b.reshape(h, nope + v, rank)
    w_uk, w_uv = kv_b[:, :nope], kv_b[:, nope:]
    w_latent = np.einsum("hdc,hdj->hcj", w_uk, wq[:, :nope]).reshape(h * rank, -1)
    w_rope = wq[:, nope:].reshape(h * rd, -1)
    w_out = np.einsum("nhv,hvc->nhc", attn.wo.reshape(-1, h, v), w_uv).reshape(-1, h * rank)
    return tuple(round_to(w, dtype) for w in (w_latent, w_rope, w_out))


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """float64 `x` rounded once to `dtype`, as the packer stores folded weights (unlike
    `compress`, which rounds values the kernels computed in f32)."""
    if dtype == "f32":
        return x.astype(np.float32).astype(np.float64)
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float64)
    if dtype == "bf16":
        return decode_bf16(encode_bf16(x), np.float64)
    raise ValueError(f"unknown dtype {dtype!r}")


def use_folded_mla(model, dtype: str = "f32") -> None:
    """Make `model`'s MLA layers attend in latent space through projections with W_UK and
    W_UV folded in and stored in `dtype` (the checkpoint's precision), as
    `--mla-absorb compile-time` does."""
    from .attention import MLAttention

    layers = [layer.attn for layer in model.layers if isinstance(layer.attn, MLAttention)]
    if not layers:
        raise ValueError("use_folded_mla needs a model with MLA layers")
    for attn in layers:
        attn.folded = fold_mla_weights(attn, dtype)


def use_eviction(model, window: int, sinks: int = 0) -> None:
    """Make `model` attend like an evicting cache of `sinks` + `window` entries (GQA and
    MLA layers alike)."""
    if window <= 0 or sinks < 0:
        raise ValueError(f"eviction needs window > 0 and sinks >= 0, got {window}, {sinks}")
    for layer in model.layers:
        if layer.attn.window is not None:
            raise NotImplementedError("eviction over a model's own sliding window")
        layer.attn.window, layer.attn.sinks = window, sinks
