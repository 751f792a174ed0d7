"""bfloat16 rounding, and weights whose linear layer rounds its input to bf16.

CPU-only artifacts multiply bf16 linear weights by activations rounded to bf16 (the CPU's
bf16 dot products; `xfmr-compile --precise` keeps them f32). The manifest lists those
weights: its tensors with a "panel" entry. `reference.load(dir, bf16_inputs=names)` marks
the same weights, and `mlp.linear` then rounds their input the same way.
"""

from __future__ import annotations

import numpy as np


def round_bf16(x: np.ndarray) -> np.ndarray:
    """Nearest bfloat16 value (ties to even) of x as float32, as float64."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


class BF16InputWeight(np.ndarray):
    """A weight whose linear layer multiplies bf16-rounded inputs (see mlp.linear)."""

    bf16_input: bool = False

    def __array_finalize__(self, obj):
        self.bf16_input = getattr(obj, "bf16_input", False)


def mark_bf16_input(w: np.ndarray) -> np.ndarray:
    marked = np.asarray(w).view(BF16InputWeight)
    marked.bf16_input = True
    return marked
