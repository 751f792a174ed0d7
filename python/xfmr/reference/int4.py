"""Float64 emulation of xfmr's W4A8 scheme (`xfmr-compile --quantize int4`), applied to a
reference model: the same scales and rounding as the compiled code, computed independently
of it.

Weights: each linear weight [out, in] gets one f16 scale per output channel and group of
`group` inputs (default 32), scale = float16(max(max|w| over the group, 1e-12) / 7); the
weight becomes clip(round_half_even(w / scale), -7, 7) * scale (0 where the scale rounds to
0). Activations: before each such linear, every token's input is quantized to int8 with one
scale for the whole row, as in the W8A8 scheme (xfmr.reference.int8.quantize_rows). Each
group's product of codes is exact, so a linear computes sum over groups of (x codes . w
codes) * scale_w, times scale_x. Embedding, LM head, norms, routers, expert stacks
(xfmr.moe_experts) and MLA's kv_b stay in high precision. This mirrors
passes/QuantizeInt4.cpp.
"""

from __future__ import annotations

import numpy as np

from .attention import GQAttention, MLAttention
from .int8 import Int8Weight
from .mlp import SwiGLU

EPSILON = 1e-12
GROUP = 32


def quantize_groups(w: np.ndarray, group: int = GROUP) -> np.ndarray:
    """The int4 values code x scale of `w` [rows, cols], one f16 scale per row and group of
    `group` columns (the last group of a row may be shorter)."""
    w = np.asarray(w, np.float64)
    rows, cols = w.shape
    out = np.empty_like(w)
    for c0 in range(0, cols, group):
        block = w[:, c0:c0 + group]
        amax = np.max(np.abs(block), axis=1, keepdims=True)
        scale = (np.maximum(amax, EPSILON) / 7.0).astype(np.float16).astype(np.float64)
        if not np.all(np.isfinite(scale)):
            raise ValueError("a group's scale is beyond f16's range")
        with np.errstate(divide="ignore", invalid="ignore"):
            codes = np.where(scale == 0, 0.0, np.clip(np.rint(block / scale), -7, 7))
        out[:, c0:c0 + group] = codes * scale
    return out


def _mark(w: np.ndarray) -> np.ndarray:
    return np.asarray(w).view(Int8Weight)


def apply_int4(model, group: int = GROUP) -> None:
    """Rewrites `model` (from reference.load) in place to compute the W4A8 scheme: the
    linear layers of attention and of dense MLPs (not expert stacks)."""

    def linear_weight(w):
        return _mark(quantize_groups(w, group))

    for layer in model.layers:
        attn = layer.attn
        if isinstance(attn, GQAttention):
            for name in ("wq", "wk", "wv", "wo"):
                setattr(attn, name, linear_weight(getattr(attn, name)))
        elif isinstance(attn, MLAttention):
            for name in ("wq_a", "wq_b", "wq", "wkv_a", "wo"):
                if getattr(attn, name, None) is not None:
                    setattr(attn, name, linear_weight(getattr(attn, name)))
        mlp = layer.mlp
        if isinstance(mlp, SwiGLU):
            for name in ("gate", "up", "down"):
                setattr(mlp, name, linear_weight(getattr(mlp, name)))
