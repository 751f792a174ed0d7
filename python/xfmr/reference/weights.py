"""Checkpoint weights for the reference models: decoded, FP8-dequantized, by name."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from .bf16 import mark_bf16_input

from ..safetensors import SafetensorsFolder


def dequantize_blockwise(q: np.ndarray, scale_inv: np.ndarray,
                         block: Sequence[int]) -> np.ndarray:
    """Real weight = q * scale_inv, one scale per `block[0] x block[1]` tile.

    `scale_inv` has shape [ceil(rows/b0), ceil(cols/b1)]; tiles at the right and bottom edges
    are partial. The product is exact in float64 (a 4-bit significand times a float32).
    """
    rows, cols = q.shape
    b0, b1 = int(block[0]), int(block[1])
    want = (math.ceil(rows / b0), math.ceil(cols / b1))
    if tuple(scale_inv.shape) != want:
        raise ValueError(f"scale_inv shape {tuple(scale_inv.shape)} does not match weight "
                         f"{q.shape} with blocks {b0}x{b1} (expected {want})")
    s = np.repeat(np.repeat(scale_inv.astype(np.float64), b0, axis=0), b1, axis=1)
    return q.astype(np.float64) * s[:rows, :cols]


class Weights:
    """Tensors of a checkpoint folder as NumPy arrays.

    BF16/F16/F32 tensors come back as float32 (exact); FP8 weights with a
    `<name>_scale_inv` sibling come back dequantized as float64 (exact). All arithmetic in the
    reference is float64; mixing in float32 operands promotes without loss.
    """

    def __init__(self, folder: str, config: dict, bf16_inputs=()):
        self.files = SafetensorsFolder(folder)
        self.bf16_inputs = frozenset(bf16_inputs)
        qc = config.get("quantization_config") or {}
        self.block = tuple(qc.get("weight_block_size") or (128, 128))
        if len(self.block) != 2:
            raise ValueError(f"weight_block_size must have two entries, got {self.block}")

    def has(self, name: str) -> bool:
        return name in self.files

    def get(self, name: str, shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
        """Tensor `name` as float values; checks `shape` when given."""
        if name not in self.files:
            raise KeyError(f"{self.files.folder}: checkpoint lacks tensor {name!r}")
        info = self.files.info(name)
        if info.dtype in ("F8_E4M3", "F8_E5M2"):
            scale_name = name + "_scale_inv"
            if scale_name not in self.files:
                raise ValueError(f"{name}: {info.dtype} weight without {scale_name}")
            if len(info.shape) != 2:
                raise ValueError(f"{name}: FP8 weights must be 2-D, got {list(info.shape)}")
            value = dequantize_blockwise(self.files.get(name, np.float64),
                                         self.files.get(scale_name, np.float32), self.block)
        else:
            value = np.asarray(self.files.get(name, np.float32))
            if value.dtype.kind != "f":
                raise ValueError(f"{name}: expected a float tensor, got {info.dtype}")
            value = np.array(value)  # own the memory: detach from the file mapping
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(f"{name}: shape {list(value.shape)}, expected {list(shape)}")
        if name in self.bf16_inputs:
            value = mark_bf16_input(value)
        return value

    def maybe(self, name: str, shape: Optional[Tuple[int, ...]] = None) -> Optional[np.ndarray]:
        return self.get(name, shape) if self.has(name) else None
