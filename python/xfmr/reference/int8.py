"""Float64 emulation of xfmr's W8A8 scheme (`xfmr-compile --quantize int8`), applied to a
reference model: the same scales and rounding as the compiled code, computed independently
of it.

Weights: each linear weight [out, in] gets one scale per output channel, scale =
float32(max(max|w| over the row, 1e-12) / 127); the weight becomes clip(round_half_even(w /
scale), -127, 127) * scale. Activations: before each such linear, every token's input is
treated the same way with one scale for the whole row. The product of the codes is exact,
so a linear computes (x codes . w codes) * scale_x * scale_w. Routed experts are quantized
the same way (each expert's rows, its input and its SwiGLU output per token). Embedding, LM
head, norms, routers and MLA's kv_b stay in high precision. This mirrors
passes/QuantizeInt8.cpp.
"""

from __future__ import annotations

import numpy as np

from .attention import map_linear_weights
from .mlp import SwiGLU

EPSILON = 1e-12


def quantize_rows(x: np.ndarray) -> np.ndarray:
    """Each row of `x` [rows, cols] (float64) quantized to int8 codes with its own scale,
    returned as code x scale."""
    x = np.asarray(x, np.float64)
    amax = np.max(np.abs(x), axis=-1, keepdims=True)
    scale = (np.maximum(amax, EPSILON) / 127.0).astype(np.float32).astype(np.float64)
    return np.clip(np.rint(x / scale), -127, 127) * scale


class Int8Weight(np.ndarray):
    """A weight whose linear layer quantizes each token of its input to int8 first (see
    mlp.linear)."""

    int8_input: bool = True


def _mark(w: np.ndarray) -> np.ndarray:
    return np.asarray(w).view(Int8Weight)


def apply_int8(model) -> None:
    """Rewrites `model` (from reference.load) in place to compute the W8A8 scheme."""

    def linear_weight(w):
        return _mark(quantize_rows(w))

    for layer in model.layers:
        map_linear_weights(layer.attn, linear_weight)
        mlp = layer.mlp
        experts = [mlp] if isinstance(mlp, SwiGLU) else list(mlp.experts)
        if getattr(mlp, "shared", None) is not None:
            experts.append(mlp.shared)
        # Routed and shared experts alike: every weight row its scale, every token's
        # input to gate/up and to down (the SwiGLU output) its own.
        for expert in experts:
            for name in ("gate", "up", "down"):
                setattr(expert, name, linear_weight(getattr(expert, name)))
