"""Gated MLP (SwiGLU): down(silu(gate(x)) * up(x))."""

from __future__ import annotations

from typing import Optional

import numpy as np


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def linear(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None) -> np.ndarray:
    """y = x W^T + b, with W stored [out, in] as in Hugging Face checkpoints.

    A weight marked by fp8.apply_fp8 first quantizes the input per token and group; one
    marked by int8.apply_int8 quantizes it to int8 per token; one marked by
    bf16.mark_bf16_input rounds it to bf16."""
    group = getattr(w, "activation_group", None)
    bf16_input = getattr(w, "bf16_input", False)
    if getattr(w, "int8_input", False):
        from .int8 import quantize_rows  # noqa: PLC0415
        x = quantize_rows(x)
    if group:
        from .fp8 import fake_quantize  # noqa: PLC0415 (avoids an import cycle)
        x = fake_quantize(x, group)
    if bf16_input:  # after the FP8 activation quantization, as the kernels do
        from .bf16 import round_bf16  # noqa: PLC0415
        x = round_bf16(x)
    w = np.asarray(w)
    y = np.asarray(x, dtype=np.float64) @ np.asarray(w).T
    return y if b is None else y + b


class SwiGLU:
    def __init__(self, gate: np.ndarray, up: np.ndarray, down: np.ndarray,
                 gate_bias=None, up_bias=None, down_bias=None):
        self.gate, self.up, self.down = gate, up, down
        self.gate_bias, self.up_bias, self.down_bias = gate_bias, up_bias, down_bias

    @classmethod
    def load(cls, weights, prefix: str, hidden: int, inter: int,
             names=("gate_proj", "up_proj", "down_proj")) -> "SwiGLU":
        g, u, d = (f"{prefix}.{n}" for n in names)
        return cls(weights.get(g + ".weight", (inter, hidden)),
                   weights.get(u + ".weight", (inter, hidden)),
                   weights.get(d + ".weight", (hidden, inter)),
                   weights.maybe(g + ".bias", (inter,)), weights.maybe(u + ".bias", (inter,)),
                   weights.maybe(d + ".bias", (hidden,)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = silu(linear(x, self.gate, self.gate_bias)) * linear(x, self.up, self.up_bias)
        return linear(h, self.down, self.down_bias)
