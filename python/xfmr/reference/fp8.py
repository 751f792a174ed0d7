"""Float64 emulation of xfmr's FP8 scheme (`xfmr-compile --quantize fp8`), applied to a
reference model: exactly the same scales, rounding and activation groups as the compiled
code, computed independently of it.

Weights: each linear weight [out, in] is split into blocks (`block`, or one row per output
channel, or the whole tensor); scale = float32(max(max|w| over the block, 1e-12) / 448); the
weight becomes decode_e4m3(encode_e4m3(w / scale)) * scale (round to nearest even,
saturating). Activations (with `activations=True`): before each quantized linear, every token's
input is treated the same way in groups of `group` channels, routed experts included (their
input, and each expert's SwiGLU output before its down projection). MLA's kv_b gets weight
quantization only; the embedding, the LM head (names in `keep`), norms and routers stay
in high precision. Checkpoints that are already FP8 keep their weights and only gain activation
quantization. This mirrors passes/QuantizeFP8.cpp.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ..safetensors import decode_f8_e4m3, encode_f8_e4m3
from .attention import MLAttention, map_linear_weights
from .mlp import SwiGLU

MAX_E4M3 = 448.0
EPSILON = 1e-12


def round_e4m3(x: np.ndarray) -> np.ndarray:
    """The E4M3FN value nearest to each element (ties to even), saturating at +-448."""
    return decode_f8_e4m3(encode_f8_e4m3(np.asarray(x, np.float64)), np.float64)


def quantize_blocks(w: np.ndarray, block: Sequence[int]) -> np.ndarray:
    """Block-quantized copy of a [rows, cols] weight (float64), edge blocks partial."""
    w = np.asarray(w, np.float64)
    rows, cols = w.shape
    b0, b1 = block
    out = np.empty_like(w)
    for r in range(0, rows, b0):
        for c in range(0, cols, b1):
            tile = w[r:r + b0, c:c + b1]
            finite = np.abs(tile[np.isfinite(tile)])
            amax = float(finite.max()) if finite.size else 0.0
            scale = float(np.float32(max(amax, EPSILON) / MAX_E4M3))
            out[r:r + b0, c:c + b1] = round_e4m3(tile / scale) * scale
    return out


def fake_quantize(x: np.ndarray, group: int) -> np.ndarray:
    """Per-token, per-group dynamic quantization of activations [tokens, channels]."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for c in range(0, x.shape[1], group):
        chunk = x[:, c:c + group]
        amax = np.max(np.abs(chunk), axis=1, keepdims=True)
        scale = (np.maximum(amax, EPSILON) / MAX_E4M3).astype(np.float32).astype(np.float64)
        out[:, c:c + group] = round_e4m3(chunk / scale) * scale
    return out


class QuantizedWeight(np.ndarray):
    """A weight whose linear layer quantizes its input first (see mlp.linear)."""

    activation_group: Optional[int] = None
    bf16_input: bool = False

    def __array_finalize__(self, obj):
        self.activation_group = getattr(obj, "activation_group", None)
        self.bf16_input = getattr(obj, "bf16_input", False)


def _mark(w: np.ndarray, group: Optional[int], bf16_input: bool = False) -> np.ndarray:
    marked = np.asarray(w).view(QuantizedWeight)
    marked.activation_group = group
    marked.bf16_input = bf16_input
    return marked


def apply_fp8(model, granularity: str = "block", block: Sequence[int] = (128, 128),
              activations: bool = True, group: int = 128,
              keep: Sequence[str] = ("embed_tokens", "lm_head")) -> None:
    """Rewrites `model` (from reference.load) in place to compute the FP8 scheme."""
    native = bool((model.config.get("quantization_config") or {}).get("quant_method") == "fp8")
    act = group if activations else None

    def weight_block(w):
        rows, cols = w.shape
        if granularity == "channel":
            return (1, cols)
        if granularity == "tensor":
            return (rows, cols)
        return tuple(block)

    def linear_weight(w, with_activations=True):
        q = w if native else quantize_blocks(w, weight_block(w))
        # Weights whose linears round their inputs to bf16 (reference.load's bf16_inputs:
        # the CPU's panel kernels without --precise) keep that mark; the weights stay
        # exact, code x scale (the kernels multiply the codes and scale the sums).
        bf16_input = bool(getattr(w, "bf16_input", False))
        return _mark(q, act if with_activations else None, bf16_input)

    def swiglu(mlp: SwiGLU, with_activations=True):
        mlp.gate = linear_weight(mlp.gate, with_activations)
        mlp.up = linear_weight(mlp.up, with_activations)
        mlp.down = linear_weight(mlp.down, with_activations)

    del keep  # the embedding and the LM head are not linear layers of the blocks below
    for layer in model.layers:
        attn = layer.attn
        map_linear_weights(attn, linear_weight)
        if isinstance(attn, MLAttention):
            attn.wkv_b = linear_weight(attn.wkv_b, with_activations=False)
        mlp = layer.mlp
        if isinstance(mlp, SwiGLU):
            swiglu(mlp)
        else:
            for expert in mlp.experts:  # inputs and SwiGLU outputs quantized too
                swiglu(expert)
            if getattr(mlp, "shared", None) is not None:
                swiglu(mlp.shared)
