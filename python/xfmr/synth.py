"""Synthetic Hugging Face checkpoints for testing: random weights, real layouts.

    python -m xfmr.synth --arch deepseek_v3 --preset tiny --dtype fp8 --out /tmp/ds
    python -m xfmr.synth --arch llama --preset 500m --dtype bf16 --shards 4 --out /tmp/l500m \\
        --set rope_scaling='{"rope_type": "llama3", "factor": 8.0}'

Writes `config.json` and `model.safetensors` (or `--shards N` files and
`model.safetensors.index.json`) with the tensor names and shapes of docs/checkpoints.md.
Weights are deterministic in `--seed`: each tensor comes from its own generator, seeded from
the seed and the tensor's name, so a tensor's values do not depend on which other tensors
exist or in what order they are written. Tensors are generated and written in row chunks, so
memory stays bounded whatever the model size.

Scales follow real models so activations and logits stay in a realistic range: linear weights
N(0, 1/fan_in), norm weights 1 + N(0, 0.1^2), embeddings and lm_head N(0, (2/sqrt(hidden))^2).
`fp8` follows DeepSeek-V3: linear weights inside attention and MLPs are F8_E4M3 with a float32
`weight_scale_inv` per block (amax / 448); embeddings, lm_head, router gates and norms are
BF16, `e_score_correction_bias` is F32.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .safetensors import DTYPES as ST_DTYPES
from .safetensors import (E4M3_MAX, INDEX_NAME, SINGLE_NAME, SafetensorsWriter, build_header,
                          encode, encode_f8_e4m3)

ARCHS = ("llama", "mistral", "qwen2", "mixtral", "deepseek_v3")
DTYPES = {"f32": "F32", "bf16": "BF16", "f16": "F16", "fp8": "F8_E4M3"}
TORCH_DTYPE = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "fp8": "bfloat16"}

#: Dense sizes shared by every architecture.
PRESETS: Dict[str, dict] = {
    # ~26K parameters (~100 KB in f32).
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                 max_position_embeddings=256),
    # ~3.4M parameters (~7 MB in bf16).
    "small": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4, vocab_size=2048,
                  max_position_embeddings=1024),
    # ~500M parameters for the dense architectures.
    "500m": dict(hidden_size=1536, intermediate_size=4096, num_hidden_layers=16,
                 num_attention_heads=12, num_key_value_heads=4, vocab_size=32000,
                 max_position_embeddings=4096),
}

#: Per-architecture, per-preset additions (applied after PRESETS, before --set).
ARCH_PRESETS: Dict[str, Dict[str, dict]] = {
    "mistral": {
        "tiny": dict(sliding_window=16),
        "small": dict(sliding_window=256),
        "500m": dict(sliding_window=2048),
    },
    "qwen2": {p: dict(rope_theta=1000000.0, use_sliding_window=False, rms_norm_eps=1e-6)
              for p in PRESETS},
    # Mixtral: 4 experts of half the dense width, top 2.
    "mixtral": {p: dict(num_local_experts=4, num_experts_per_tok=2,
                        intermediate_size=PRESETS[p]["intermediate_size"] // 2,
                        sliding_window=None, router_aux_loss_coef=0.02)
                for p in PRESETS},
    # DeepSeek-V3: MLA + one dense layer then MoE layers; YaRN as in the real config.
    "deepseek_v3": {
        "tiny": dict(q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
                     v_head_dim=8, n_routed_experts=8, n_group=4, topk_group=2,
                     num_experts_per_tok=2, moe_intermediate_size=16, n_shared_experts=1,
                     first_k_dense_replace=1,
                     rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=64,
                                       beta_fast=32, beta_slow=1, mscale=1.0,
                                       mscale_all_dim=1.0)),
        "small": dict(q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32,
                      qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16, n_group=4,
                      topk_group=2, num_experts_per_tok=4, moe_intermediate_size=128,
                      n_shared_experts=1, first_k_dense_replace=1,
                      rope_scaling=dict(type="yarn", factor=4.0,
                                        original_max_position_embeddings=256, beta_fast=32,
                                        beta_slow=1, mscale=1.0, mscale_all_dim=1.0)),
        "500m": dict(q_lora_rank=768, kv_lora_rank=256, qk_nope_head_dim=128,
                     qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=16, n_group=4,
                     topk_group=2, num_experts_per_tok=4, moe_intermediate_size=512,
                     n_shared_experts=1, first_k_dense_replace=1,
                     rope_scaling=dict(type="yarn", factor=4.0,
                                       original_max_position_embeddings=1024, beta_fast=32,
                                       beta_slow=1, mscale=1.0, mscale_all_dim=1.0)),
    },
}

_CLASS = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "deepseek_v3": "DeepseekV3ForCausalLM",
}

_CHUNK_ELEMENTS = 1 << 22  # rows are generated ~4M values at a time
_BIG_BYTES = 64 << 20  # report progress for outputs above this size


class SynthError(ValueError):
    """A bad request (unknown architecture, inconsistent sizes, bad --set)."""


# ----------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------


def make_config(arch: str, preset: str = "tiny", dtype: str = "f32",
                overrides: Optional[Dict[str, object]] = None, tie_embeddings: bool = False,
                mtp: bool = False, block_size: Sequence[int] = (128, 128)) -> dict:
    """The config.json contents for a synthetic checkpoint (validated)."""
    if arch not in ARCHS:
        raise SynthError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if preset not in PRESETS:
        raise SynthError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if dtype not in DTYPES:
        raise SynthError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if mtp and arch != "deepseek_v3":
        raise SynthError("--mtp is only meaningful for deepseek_v3")
    config: dict = {
        "architectures": [_CLASS[arch]],
        "model_type": arch,
        **copy.deepcopy(PRESETS[preset]),
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "torch_dtype": TORCH_DTYPE[dtype],
    }
    if arch == "llama":
        config.update(attention_bias=False, mlp_bias=False)
    if arch == "deepseek_v3":
        config.update(rms_norm_eps=1e-6, topk_method="noaux_tc", scoring_func="sigmoid",
                      norm_topk_prob=True, routed_scaling_factor=2.5, moe_layer_freq=1,
                      num_nextn_predict_layers=0, attention_bias=False)
        config["num_key_value_heads"] = config["num_attention_heads"]
    config.update(copy.deepcopy(ARCH_PRESETS.get(arch, {}).get(preset, {})))
    if arch == "qwen2":
        config.setdefault("sliding_window", config["max_position_embeddings"])
        config.setdefault("max_window_layers", config["num_hidden_layers"])
    if tie_embeddings:
        config["tie_word_embeddings"] = True
    if mtp:
        config["num_nextn_predict_layers"] = 1
    for key, value in (overrides or {}).items():
        _set_dotted(config, key, value)
    if dtype == "fp8":
        config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3",
                                         "activation_scheme": "dynamic",
                                         "weight_block_size": [int(b) for b in block_size]}
    validate_config(config, arch)
    return config


def _set_dotted(config: dict, key: str, value: object) -> None:
    """config[a][b] = value for key "a.b" (creating dicts on the way)."""
    parts = key.split(".")
    node = config
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def parse_set(items: Sequence[str]) -> Dict[str, object]:
    """["key=value", ...] -> {key: value}; values are JSON when they parse, else strings."""
    out: Dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SynthError(f"--set expects key=value, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = value
    return out


def _positive_int(config: dict, key: str) -> int:
    v = config.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise SynthError(f"{key} must be a positive integer, got {v!r}")
    return v


def validate_config(config: dict, arch: str) -> None:
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                "intermediate_size", "max_position_embeddings"):
        _positive_int(config, key)
    heads = config["num_attention_heads"]
    if arch == "deepseek_v3":
        for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                    "moe_intermediate_size", "num_experts_per_tok"):
            _positive_int(config, key)
        if config.get("q_lora_rank") is not None:
            _positive_int(config, "q_lora_rank")
        if config["qk_rope_head_dim"] % 2:
            raise SynthError("qk_rope_head_dim must be even (RoPE turns pairs)")
        experts = config.get("n_routed_experts")
        if experts:
            _positive_int(config, "n_routed_experts")
            groups = _positive_int(config, "n_group")
            keep = _positive_int(config, "topk_group")
            if experts % groups:
                raise SynthError(f"n_routed_experts {experts} is not a multiple of "
                                 f"n_group {groups}")
            if keep > groups:
                raise SynthError(f"topk_group {keep} exceeds n_group {groups}")
            if config["num_experts_per_tok"] > keep * (experts // groups):
                raise SynthError(f"num_experts_per_tok {config['num_experts_per_tok']} exceeds "
                                 f"the {keep * (experts // groups)} experts in topk_group groups")
            _positive_int(config, "moe_layer_freq")
        if config.get("scoring_func", "sigmoid") not in ("sigmoid", "softmax"):
            raise SynthError(f"scoring_func must be sigmoid or softmax, got "
                             f"{config.get('scoring_func')!r}")
        if (config.get("n_shared_experts") or 0) < 0:
            raise SynthError("n_shared_experts must be >= 0")
        if (config.get("num_nextn_predict_layers") or 0) not in (0, 1):
            raise SynthError("num_nextn_predict_layers must be 0 or 1")
    else:
        kv = _positive_int(config, "num_key_value_heads")
        if heads % kv:
            raise SynthError(f"num_attention_heads {heads} is not a multiple of "
                             f"num_key_value_heads {kv}")
        head_dim = config.get("head_dim")
        if head_dim is None:
            if config["hidden_size"] % heads:
                raise SynthError(f"hidden_size {config['hidden_size']} is not a multiple of "
                                 f"num_attention_heads {heads} (or set head_dim)")
            head_dim = config["hidden_size"] // heads
        elif isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0:
            raise SynthError(f"head_dim must be a positive integer, got {head_dim!r}")
        if head_dim % 2:
            raise SynthError(f"head_dim {head_dim} must be even (RoPE turns pairs)")
        if arch == "mixtral":
            n = _positive_int(config, "num_local_experts")
            k = _positive_int(config, "num_experts_per_tok")
            if k > n:
                raise SynthError(f"num_experts_per_tok {k} exceeds num_local_experts {n}")
        window = config.get("sliding_window")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                                   or window <= 0):
            raise SynthError(f"sliding_window must be a positive integer or null, got {window!r}")
    qc = config.get("quantization_config")
    if qc:
        block = qc.get("weight_block_size")
        if (not isinstance(block, list) or len(block) != 2
                or not all(isinstance(b, int) and b > 0 for b in block)):
            raise SynthError(f"weight_block_size must be two positive integers, got {block!r}")


# ----------------------------------------------------------------------------------------
# Tensor plan
# ----------------------------------------------------------------------------------------


@dataclass
class Tensor:
    """One tensor to write. `init`: ("normal", std) | ("norm",) ; `quantize`: FP8 + scale."""

    name: str
    shape: Tuple[int, ...]
    dtype: str  # safetensors dtype of the stored tensor
    init: Tuple
    quantize: bool = False
    block: Tuple[int, int] = (128, 128)

    @property
    def scale_shape(self) -> Tuple[int, int]:
        return (math.ceil(self.shape[0] / self.block[0]), math.ceil(self.shape[1] / self.block[1]))

    def specs(self) -> List[Tuple[str, str, Tuple[int, ...]]]:
        """(name, dtype, shape) entries this tensor occupies in a file."""
        out = [(self.name, self.dtype, self.shape)]
        if self.quantize:
            out.append((self.name + "_scale_inv", "F32", self.scale_shape))
        return out

    def nbytes(self) -> int:
        return sum(ST_DTYPES[d].itemsize * int(np.prod(s)) for _, d, s in self.specs())


def plan_tensors(config: dict, dtype: str = "f32",
                 block: Sequence[int] = (128, 128)) -> List[Tensor]:
    """Every tensor of the checkpoint, in file order."""
    arch = config["model_type"]
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    float_dtype = "BF16" if dtype == "fp8" else DTYPES[dtype]
    block = (int(block[0]), int(block[1]))
    out: List[Tensor] = []

    def linear(name: str, rows: int, cols: int, quantizable: bool = True) -> None:
        q = dtype == "fp8" and quantizable
        out.append(Tensor(name, (rows, cols), "F8_E4M3" if q else float_dtype,
                          ("normal", 1.0 / math.sqrt(cols)), q, block))

    def norm(name: str, size: int) -> None:
        out.append(Tensor(name, (size,), float_dtype, ("norm",)))

    def bias(name: str, size: int, std: float = 0.1) -> None:
        out.append(Tensor(name, (size,), float_dtype, ("normal", std)))

    def swiglu(prefix: str, inter: int, names=("gate_proj", "up_proj", "down_proj")) -> None:
        linear(f"{prefix}.{names[0]}.weight", inter, hidden)
        linear(f"{prefix}.{names[1]}.weight", inter, hidden)
        linear(f"{prefix}.{names[2]}.weight", hidden, inter)

    emb_std = 2.0 / math.sqrt(hidden)
    out.append(Tensor("model.embed_tokens.weight", (vocab, hidden), float_dtype,
                      ("normal", emb_std)))
    layers = config["num_hidden_layers"]
    mtp = (config.get("num_nextn_predict_layers") or 0) if arch == "deepseek_v3" else 0
    for i in range(layers + mtp):
        p = f"model.layers.{i}"
        if i >= layers:  # DeepSeek-V3 multi-token-prediction module
            out.append(Tensor(f"{p}.embed_tokens.weight", (vocab, hidden), float_dtype,
                              ("normal", emb_std)))
            norm(f"{p}.enorm.weight", hidden)
            norm(f"{p}.hnorm.weight", hidden)
            linear(f"{p}.eh_proj.weight", hidden, 2 * hidden, quantizable=False)
        norm(f"{p}.input_layernorm.weight", hidden)
        a = f"{p}.self_attn"
        if arch == "deepseek_v3":
            h = config["num_attention_heads"]
            nope, rope_dim = config["qk_nope_head_dim"], config["qk_rope_head_dim"]
            v_dim, kv_rank = config["v_head_dim"], config["kv_lora_rank"]
            q_rank = config.get("q_lora_rank")
            if q_rank:
                linear(f"{a}.q_a_proj.weight", q_rank, hidden)
                norm(f"{a}.q_a_layernorm.weight", q_rank)
                linear(f"{a}.q_b_proj.weight", h * (nope + rope_dim), q_rank)
            else:
                linear(f"{a}.q_proj.weight", h * (nope + rope_dim), hidden)
            linear(f"{a}.kv_a_proj_with_mqa.weight", kv_rank + rope_dim, hidden)
            norm(f"{a}.kv_a_layernorm.weight", kv_rank)
            linear(f"{a}.kv_b_proj.weight", h * (nope + v_dim), kv_rank)
            linear(f"{a}.o_proj.weight", hidden, h * v_dim)
        else:
            heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
            hd = config.get("head_dim") or hidden // heads
            linear(f"{a}.q_proj.weight", heads * hd, hidden)
            linear(f"{a}.k_proj.weight", kv * hd, hidden)
            linear(f"{a}.v_proj.weight", kv * hd, hidden)
            linear(f"{a}.o_proj.weight", hidden, heads * hd)
            if arch == "qwen2":
                bias(f"{a}.q_proj.bias", heads * hd)
                bias(f"{a}.k_proj.bias", kv * hd)
                bias(f"{a}.v_proj.bias", kv * hd)
        norm(f"{p}.post_attention_layernorm.weight", hidden)
        if arch == "mixtral":
            m = f"{p}.block_sparse_moe"
            n = config["num_local_experts"]
            linear(f"{m}.gate.weight", n, hidden, quantizable=False)
            for e in range(n):
                swiglu(f"{m}.experts.{e}", config["intermediate_size"], ("w1", "w3", "w2"))
        elif arch == "deepseek_v3" and _deepseek_moe_layer(config, i):
            m = f"{p}.mlp"
            n = config["n_routed_experts"]
            linear(f"{m}.gate.weight", n, hidden, quantizable=False)
            out.append(Tensor(f"{m}.gate.e_score_correction_bias", (n,), "F32", ("normal", 0.1)))
            for e in range(n):
                swiglu(f"{m}.experts.{e}", config["moe_intermediate_size"])
            shared = config.get("n_shared_experts") or 0
            if shared:
                swiglu(f"{m}.shared_experts", shared * config["moe_intermediate_size"])
        else:
            swiglu(f"{p}.mlp", config["intermediate_size"])
        if i >= layers:
            norm(f"{p}.shared_head.norm.weight", hidden)
            out.append(Tensor(f"{p}.shared_head.head.weight", (vocab, hidden), float_dtype,
                              ("normal", emb_std)))
    norm("model.norm.weight", hidden)
    if not config.get("tie_word_embeddings"):
        out.append(Tensor("lm_head.weight", (vocab, hidden), float_dtype, ("normal", emb_std)))
    return out


def _deepseek_moe_layer(config: dict, i: int) -> bool:
    return (bool(config.get("n_routed_experts")) and i >= config.get("first_k_dense_replace", 0)
            and i % config.get("moe_layer_freq", 1) == 0)


# ----------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one tensor: PCG64 seeded from (seed, hash of name)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed)] + words)))


def _row_chunks(t: Tensor) -> int:
    """Rows generated per chunk (a multiple of the block height for FP8)."""
    cols = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
    rows = max(1, _CHUNK_ELEMENTS // max(cols, 1))
    if t.quantize:
        rows = max(t.block[0], rows // t.block[0] * t.block[0])
    return rows


def generate_values(t: Tensor, seed: int) -> Iterator[np.ndarray]:
    """float32 values of tensor `t`, in row chunks (the whole vector for 1-D tensors)."""
    rng = tensor_rng(seed, t.name)
    if len(t.shape) == 1:
        z = rng.standard_normal(t.shape, dtype=np.float32)
        yield (1.0 + 0.1 * z if t.init[0] == "norm" else t.init[1] * z).astype(np.float32)
        return
    rows_total = t.shape[0]
    step = _row_chunks(t)
    for r0 in range(0, rows_total, step):
        r1 = min(rows_total, r0 + step)
        z = rng.standard_normal((r1 - r0,) + tuple(t.shape[1:]), dtype=np.float32)
        yield (np.float32(t.init[1]) * z) if t.init[0] == "normal" else 1.0 + 0.1 * z


def quantize_fp8_blockwise(w: np.ndarray, block: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """(F8_E4M3 codes, float32 scale_inv per block) with w ~= fp8 * scale_inv blockwise.

    scale_inv = amax(|block|) / 448 (1 for an all-zero block); edge blocks are partial.
    """
    rows, cols = w.shape
    b0, b1 = int(block[0]), int(block[1])
    nr, nc = math.ceil(rows / b0), math.ceil(cols / b1)
    padded = np.zeros((nr * b0, nc * b1), dtype=np.float32)
    padded[:rows, :cols] = np.abs(w)
    amax = padded.reshape(nr, b0, nc, b1).max(axis=(1, 3))
    scale = np.where(amax > 0, amax / np.float32(E4M3_MAX), np.float32(1.0)).astype(np.float32)
    full = np.repeat(np.repeat(scale, b0, axis=0), b1, axis=1)[:rows, :cols]
    return encode_f8_e4m3(w.astype(np.float64) / full), scale


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


def split_shards(tensors: List[Tensor], shards: int) -> List[List[Tensor]]:
    """Consecutive groups of about equal bytes (a weight stays with its scale_inv)."""
    if shards < 1:
        raise SynthError(f"--shards must be >= 1, got {shards}")
    if shards > len(tensors):
        raise SynthError(f"--shards {shards} exceeds the {len(tensors)} tensors to write")
    total = sum(t.nbytes() for t in tensors)
    groups: List[List[Tensor]] = [[] for _ in range(shards)]
    done, g = 0, 0
    for i, t in enumerate(tensors):
        remaining_tensors = len(tensors) - i
        remaining_groups = shards - g - 1
        # Move on when this group has its share, or when later groups need the tensors left.
        if groups[g] and g + 1 < shards and (done >= total * (g + 1) / shards
                                             or remaining_tensors <= remaining_groups):
            g += 1
        groups[g].append(t)
        done += t.nbytes()
    return groups


class _Progress:
    def __init__(self, total: int, enabled: bool, stream=sys.stderr):
        self.total, self.enabled, self.stream = total, enabled, stream
        self.done, self.last = 0, 0.0

    def add(self, n: int, where: str) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.last > 1.0 or self.done == self.total):
            self.last = now
            pct = 100.0 * self.done / max(self.total, 1)
            self.stream.write(f"synth: {self.done / 2**20:8.1f} / {self.total / 2**20:.1f} MiB "
                              f"({pct:5.1f}%) {where}\n")
            self.stream.flush()


def _encoded_tensor(t: Tensor, seed: int) -> List[Tuple[str, np.ndarray]]:
    """The (name, stored array) writes of tensor `t`, encoded (a worker thread's job: NumPy
    releases the GIL in the generator and the array arithmetic)."""
    if not t.quantize:
        return [(t.name, encode(chunk, t.dtype)) for chunk in generate_values(t, seed)]
    writes, scales = [], []
    for chunk in generate_values(t, seed):
        q, s = quantize_fp8_blockwise(chunk, t.block)
        writes.append((t.name, q))
        scales.append(s)
    writes.append((t.name + "_scale_inv", np.concatenate(scales, axis=0)))
    return writes


def _write_tensors(w: SafetensorsWriter, group: List[Tensor], seed: int, progress: _Progress,
                   where: str, workers: int) -> None:
    """Writes `group` in order; up to `workers` tensors are generated ahead in threads (each
    tensor has its own generator, so the bytes do not depend on `workers`)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        queue = iter(group)
        for t in itertools.islice(queue, workers):
            pending.append(pool.submit(_encoded_tensor, t, seed))
        while pending:
            writes = pending.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(_encoded_tensor, nxt, seed))
            for name, array in writes:
                w.write(name, array)
                progress.add(array.nbytes, where)


def _write_sparse(path: str, specs: List[Tuple[str, str, Tuple[int, ...]]]) -> None:
    """A safetensors file of zeros: the header, then a hole (no disk blocks, no time)."""
    header, layout = build_header(specs, {"format": "pt"})
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + (layout[-1].end if layout else 0))


def tokenizer_info(path: str) -> Dict[str, object]:
    """The vocabulary size of a tokenizer.json (largest id + 1, added tokens included) or a
    SentencePiece tokenizer.model (read with the sentencepiece module), and the ids of its
    BOS and EOS tokens where it names them (tokenizer_config.json beside a tokenizer.json):
    {"file": "tokenizer.json"|"tokenizer.model", "vocab_size": N, "bos_token_id": ..., ...}."""
    with open(path, "rb") as f:
        data = f.read()
    if data.lstrip()[:1] == b"{":
        try:
            tokenizer = json.loads(data)
            ids = {text: int(i) for text, i in tokenizer["model"]["vocab"].items()}
            ids.update({t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens") or []})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SynthError(f"{path}: not a tokenizer.json ({e})") from None
        info: Dict[str, object] = {"file": "tokenizer.json", "vocab_size": max(ids.values()) + 1}
        config_path = os.path.join(os.path.dirname(path), "tokenizer_config.json")
        if os.path.exists(config_path):
            with open(config_path) as f:
                config = json.load(f)
            for key in ("bos", "eos"):
                token = config.get(f"{key}_token")
                if isinstance(token, dict):
                    token = token.get("content")
                if isinstance(token, str) and token in ids:
                    info[f"{key}_token_id"] = ids[token]
        return info
    try:
        import sentencepiece  # noqa: PLC0415
    except ImportError:
        raise SynthError(f"{path}: reading a SentencePiece model needs python3-sentencepiece") \
            from None
    try:
        model = sentencepiece.SentencePieceProcessor(model_file=path)
    except (RuntimeError, OSError) as e:
        raise SynthError(f"{path}: not a SentencePiece model ({e})") from None
    info = {"file": "tokenizer.model", "vocab_size": model.get_piece_size()}
    for key, value in (("bos", model.bos_id()), ("eos", model.eos_id())):
        if value >= 0:
            info[f"{key}_token_id"] = value
    return info


def generate(out_dir: str, arch: str, preset: str = "tiny", dtype: str = "f32", seed: int = 0,
             shards: int = 1, overrides: Optional[Dict[str, object]] = None,
             tie_embeddings: bool = False, mtp: bool = False,
             block_size: Sequence[int] = (128, 128),
             progress: Optional[bool] = None, workers: Optional[int] = None,
             sparse: bool = False, tokenizer: Optional[str] = None) -> dict:
    """Write a synthetic checkpoint folder; returns its config.

    `tokenizer`: a tokenizer.json or tokenizer.model to place in the checkpoint (with the
        tokenizer_config.json beside it): the vocabulary is sized to match it, and BOS/EOS
        take its ids; xfmr-compile then carries it into the artifact.

    `progress`: report to stderr (None: only for outputs above 64 MiB).
    `workers`: threads generating tensors ahead of the writer (None: the CPU count, at most
        16); the output does not depend on it.
    `sparse`: every weight zero, written as sparse files (no disk space, no time): enough for
        `xfmr-compile --strip-weights`, which reads only the headers, not for running.
    """
    if workers is None:
        workers = min(16, os.cpu_count() or 1)
    if workers < 1:
        raise SynthError(f"workers must be >= 1, got {workers}")
    placed = None
    if tokenizer is not None:
        placed = tokenizer_info(tokenizer)
        overrides = dict(overrides or {})
        if overrides.get("vocab_size", placed["vocab_size"]) != placed["vocab_size"]:
            raise SynthError(f"vocab_size={overrides['vocab_size']} contradicts the tokenizer's "
                             f"{placed['vocab_size']} tokens")
        overrides["vocab_size"] = placed["vocab_size"]
        for key in ("bos_token_id", "eos_token_id"):
            if key in placed:
                overrides.setdefault(key, placed[key])
    config = make_config(arch, preset, dtype, overrides, tie_embeddings, mtp, block_size)
    tensors = plan_tensors(config, dtype, block_size)
    groups = split_shards(tensors, shards)
    os.makedirs(out_dir, exist_ok=True)
    for fname in os.listdir(out_dir):  # stale files of an earlier run would confuse readers
        if fname == INDEX_NAME or (fname.startswith("model") and fname.endswith(".safetensors")):
            os.remove(os.path.join(out_dir, fname))
    total = sum(t.nbytes() for t in tensors)
    report = _Progress(total, total > _BIG_BYTES if progress is None else progress)
    names = ([SINGLE_NAME] if shards == 1 else
             [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)])
    weight_map: Dict[str, str] = {}
    for fname, group in zip(names, groups):
        specs = [spec for t in group for spec in t.specs()]
        path = os.path.join(out_dir, fname)
        if sparse:
            _write_sparse(path, specs)
        else:
            with SafetensorsWriter(path, specs, metadata={"format": "pt"}) as w:
                _write_tensors(w, group, seed, report, fname, workers)
        weight_map.update({name: fname for name, _, _ in specs})
    if shards > 1:
        index = {"metadata": {"total_size": total},
                 "weight_map": dict(sorted(weight_map.items()))}
        with open(os.path.join(out_dir, INDEX_NAME), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    if placed is not None:
        for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
        shutil.copyfile(tokenizer, os.path.join(out_dir, str(placed["file"])))
        config_path = os.path.join(os.path.dirname(tokenizer), "tokenizer_config.json")
        if os.path.exists(config_path):
            shutil.copyfile(config_path, os.path.join(out_dir, "tokenizer_config.json"))
    return config


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------


def _parse_block(text: str) -> Tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"block size must be N or RxC, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"block size must be positive N or RxC, got {text!r}")
    return vals[0], vals[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m xfmr.synth",
        description="Write a synthetic Hugging Face checkpoint (config.json + safetensors).")
    p.add_argument("--arch", required=True, choices=ARCHS, help="architecture")
    p.add_argument("--out", required=True, help="output folder (created; old weights replaced)")
    p.add_argument("--preset", default="tiny", choices=tuple(PRESETS), help="size (default tiny)")
    p.add_argument("--dtype", default="f32", choices=tuple(DTYPES),
                   help="weight dtype; fp8 = DeepSeek-style block-quantized E4M3 (default f32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--shards", type=int, default=1, help="number of safetensors files")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (JSON value; dotted keys reach into dicts); "
                        "repeatable")
    p.add_argument("--tie-embeddings", action="store_true",
                   help="tie_word_embeddings: no lm_head.weight")
    p.add_argument("--mtp", action="store_true",
                   help="deepseek_v3: num_nextn_predict_layers=1 (one extra MTP layer)")
    p.add_argument("--block-size", type=_parse_block, default=(128, 128), metavar="N|RxC",
                   help="fp8 scale block (default 128)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads generating tensors (default: the CPU count, at most 16)")
    p.add_argument("--tokenizer", metavar="FILE", default=None,
                   help="a tokenizer.json or tokenizer.model to place in the checkpoint "
                        "(vocabulary, BOS and EOS sized to match)")
    p.add_argument("--sparse", action="store_true",
                   help="all-zero weights as sparse files (instant, no disk space): for "
                        "xfmr-compile --strip-weights, which reads only the headers")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always report progress on stderr (default: above 64 MiB)")
    p.add_argument("--quiet", dest="progress", action="store_false",
                   help="never report progress")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = generate(args.out, args.arch, args.preset, args.dtype, args.seed, args.shards,
                          parse_set(args.overrides), args.tie_embeddings, args.mtp,
                          args.block_size, args.progress, args.workers, args.sparse,
                          args.tokenizer)
    except SynthError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except OSError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if args.progress is not False:
        sys.stderr.write(f"synth: wrote {config['architectures'][0]} ({args.preset}, "
                         f"{args.dtype}) to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
