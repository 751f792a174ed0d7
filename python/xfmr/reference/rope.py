"""Rotary position embeddings: frequencies (default, linear, llama3, YaRN) and rotation.

Two pairings are in use. Llama, Mistral, Qwen2 and Mixtral rotate "halves": dimension i is
paired with i + d/2. DeepSeek-V3 rotates interleaved pairs (x[2i], x[2i+1]); pair i turns by
position * inv_freq[i] in both cases.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np


def rope_type(rope_scaling: Optional[dict]) -> str:
    """The scaling kind of a config's `rope_scaling` ("default" when absent)."""
    if not rope_scaling:
        return "default"
    return rope_scaling.get("rope_type", rope_scaling.get("type", "default"))


def default_inv_freq(dim: int, theta: float) -> np.ndarray:
    """inv_freq[i] = theta^(-2i/dim), i < dim/2."""
    return 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def llama3_inv_freq(inv_freq: np.ndarray, scaling: dict) -> np.ndarray:
    """Llama 3.1 scaling: long wavelengths slowed by `factor`, short ones kept, a smooth
    interpolation between the two wavelength bounds."""
    factor = float(scaling["factor"])
    low_freq_factor = float(scaling.get("low_freq_factor", 1.0))
    high_freq_factor = float(scaling.get("high_freq_factor", 4.0))
    old_context = float(scaling.get("original_max_position_embeddings", 8192))
    low_freq_wavelen = old_context / low_freq_factor
    high_freq_wavelen = old_context / high_freq_factor
    wavelen = 2.0 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, smoothed, scaled)


def llama_inv_freq(dim: int, theta: float, rope_scaling: Optional[dict]) -> np.ndarray:
    """Frequencies for Llama-family models: default, `linear` or `llama3` scaling."""
    kind = rope_type(rope_scaling)
    inv_freq = default_inv_freq(dim, theta)
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / float(rope_scaling["factor"])
    if kind == "llama3":
        return llama3_inv_freq(inv_freq, rope_scaling)
    raise NotImplementedError(f"rope_scaling type {kind!r} is not supported for this "
                              "architecture (supported: linear, llama3)")


# ---- YaRN as in DeepSeek's reference (DeepseekV3YarnRotaryEmbedding) ------------------


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """Attention temperature of YaRN: 0.1 * mscale * ln(scale) + 1 (1 when scale <= 1)."""
    if scale <= 1.0:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def yarn_find_correction_dim(num_rotations: float, dim: int, base: float,
                             max_position_embeddings: int) -> float:
    """The dimension whose wavelength makes `num_rotations` turns over the original context."""
    return (dim * math.log(max_position_embeddings / (num_rotations * 2 * math.pi))) / (
        2 * math.log(base))


def yarn_find_correction_range(low_rot: float, high_rot: float, dim: int, base: float,
                               max_position_embeddings: int) -> Tuple[int, int]:
    low = math.floor(yarn_find_correction_dim(low_rot, dim, base, max_position_embeddings))
    high = math.ceil(yarn_find_correction_dim(high_rot, dim, base, max_position_embeddings))
    return max(low, 0), min(high, dim - 1)


def yarn_linear_ramp_mask(lo: float, hi: float, n: int) -> np.ndarray:
    if lo == hi:
        hi += 0.001  # avoid a division by zero
    return np.clip((np.arange(n, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def yarn_inv_freq(dim: int, theta: float, scaling: dict) -> Tuple[np.ndarray, float]:
    """YaRN frequencies and the factor that multiplies cos and sin.

    Dimensions rotating fast (many turns over the original context, beyond `beta_fast`)
    keep their frequency, slow ones (below `beta_slow`) are interpolated by `factor`, and a
    linear ramp blends the two in between.
    """
    factor = float(scaling["factor"])
    beta_fast = float(scaling.get("beta_fast", 32))
    beta_slow = float(scaling.get("beta_slow", 1))
    original = int(scaling.get("original_max_position_embeddings", 4096))
    mscale = float(scaling.get("mscale", 1.0))
    mscale_all_dim = float(scaling.get("mscale_all_dim", 0.0))
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    freq_extra = 1.0 / theta ** exponents
    freq_inter = 1.0 / (factor * theta ** exponents)
    low, high = yarn_find_correction_range(beta_fast, beta_slow, dim, theta, original)
    extra_mask = 1.0 - yarn_linear_ramp_mask(low, high, dim // 2)
    inv_freq = freq_inter * (1.0 - extra_mask) + freq_extra * extra_mask
    cos_sin_scale = yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)
    return inv_freq, cos_sin_scale


def cos_sin(inv_freq: np.ndarray, positions: np.ndarray,
            scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """cos and sin of position * inv_freq, each [len(positions), len(inv_freq)], times scale."""
    angles = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)
    return np.cos(angles) * scale, np.sin(angles) * scale


def rotate_half(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate pairs (x[i], x[i + d/2]) of the last axis; x is [..., seq, d]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rotate_interleaved(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate pairs (x[2i], x[2i+1]) of the last axis; x is [..., seq, d]."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty(x.shape, dtype=np.float64)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = odd * cos + even * sin
    return out
