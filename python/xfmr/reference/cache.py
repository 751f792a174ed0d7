"""Key/value cache: per layer, the keys and values of every position seen so far."""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np


class Cache:
    """Keys [kv_heads, seq, dk] and values [kv_heads, seq, dv] per layer, in float64.

    Keys are stored after RoPE. `length` is the number of positions processed; the next
    forward call's first token sits at position `length`.
    """

    def __init__(self, num_layers: int):
        self.keys: List[Optional[np.ndarray]] = [None] * num_layers
        self.values: List[Optional[np.ndarray]] = [None] * num_layers
        self.length = 0

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Append this step's k, v for `layer`; return all keys and values of the layer."""
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            if self.keys[layer].shape[1] != self.length:
                raise RuntimeError(f"cache layer {layer} holds {self.keys[layer].shape[1]} "
                                   f"positions, cache length is {self.length}")
            self.keys[layer] = np.concatenate([self.keys[layer], k], axis=1)
            self.values[layer] = np.concatenate([self.values[layer], v], axis=1)
        return self.keys[layer], self.values[layer]
