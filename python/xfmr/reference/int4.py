"""Float64 emulation of xfmr's W4A8 scheme (`xfmr-compile --quantize int4`), applied to a
reference model: the same scales and rounding as the compiled code, computed independently
of it.

Weights: each linear weight [out, in] gets one f16 scale per output channel and group of
`group` inputs (default 32), as llama.cpp's Q4_0: m is the group's first value of the
largest magnitude (sign kept), scale = float16(m / -8); the weight becomes
clip(round_half_even(w / scale), -8, 7) * scale (0 where the scale rounds to 0), so m is
code -8 and all 16 levels are used. Activations: before each such linear, every token's
input is quantized to int8 with one scale for the whole row, as in the W8A8 scheme
(xfmr.reference.int8.quantize_rows). Each group's product of codes is exact, so a linear
computes sum over groups of (x codes . w codes) * scale_w, times scale_x. Routed experts
are int4 the same way (their input and SwiGLU output int8 per token) when the group is a
multiple of 16, else W8A8; the LM head (head="int8", the default; tied or not) is W8A8
(xfmr.reference.int8); the embedding, norms, routers and MLA's kv_b stay as they are.
Shared experts are int4 linears.
This mirrors passes/QuantizeInt4.cpp.
"""

from __future__ import annotations

import numpy as np

from .attention import map_linear_weights
from .int8 import Int8Weight, quantize_rows
from .mlp import SwiGLU

GROUP = 32
#: The routed experts are int4 when the group is a multiple of this.
EXPERT_VECTOR = 16


def quantize_groups(w: np.ndarray, group: int = GROUP) -> np.ndarray:
    """The int4 values code x scale of `w` [rows, cols], one f16 scale per row and group of
    `group` columns (the last group of a row may be shorter)."""
    w = np.asarray(w, np.float64)
    rows, cols = w.shape
    out = np.empty_like(w)
    for c0 in range(0, cols, group):
        block = w[:, c0:c0 + group]
        first = np.argmax(np.abs(block), axis=1)  # the first of the largest magnitude
        m = block[np.arange(rows), first][:, None]
        with np.errstate(over="ignore"):
            scale = (m / -8.0).astype(np.float16).astype(np.float64)
        if not np.all(np.isfinite(scale)):
            raise ValueError("a group's scale is beyond f16's range")
        with np.errstate(divide="ignore", invalid="ignore"):
            codes = np.where(scale == 0, 0.0, np.clip(np.rint(block / scale), -8, 7))
        out[:, c0:c0 + group] = codes * scale
    return out


def _mark(w: np.ndarray) -> np.ndarray:
    return np.asarray(w).view(Int8Weight)


def apply_int4(model, group: int = GROUP, head: str = "int8", experts: str = "int4") -> None:
    """Rewrites `model` (from reference.load) in place to compute the W4A8 scheme: int4 for
    the linear layers of attention, dense MLPs, shared experts and (experts="int4", when
    the group is a multiple of 16) the routed experts, W8A8 for the routed experts otherwise
    and (head="int8") the LM head; head="int4" quantizes it as the other linears,
    head="keep" keeps it."""

    def linear_weight(w):
        return _mark(quantize_groups(w, group))

    def int8_weight(w):
        return _mark(quantize_rows(w))

    for layer in model.layers:
        map_linear_weights(layer.attn, linear_weight)
        mlp = layer.mlp
        dense = [mlp] if isinstance(mlp, SwiGLU) else []
        if getattr(mlp, "shared", None) is not None:
            dense.append(mlp.shared)
        for expert in dense:
            for name in ("gate", "up", "down"):
                setattr(expert, name, linear_weight(getattr(expert, name)))
        # Routed experts are int4 too when the group is whole 16-weight vectors
        # of the expert kernels, else W8A8.
        int4_experts = experts == "int4" and group % EXPERT_VECTOR == 0
        expert_weight = linear_weight if int4_experts else int8_weight
        for expert in ([] if isinstance(mlp, SwiGLU) else list(mlp.experts)):
            for name in ("gate", "up", "down"):
                setattr(expert, name, expert_weight(getattr(expert, name)))
    # A tied head (the embedding matrix) too: the embedding keeps the table.
    if head != "keep":
        model.lm_head = (linear_weight if head == "int4" else int8_weight)(model.lm_head)
