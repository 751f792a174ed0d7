"""Decoder-only language models assembled from the reference pieces.

Every architecture is the same pre-norm stack:
    h = embed[ids]
    per layer: h += attn(rms(h)); h += mlp(rms(h))
    logits = rms(h) @ lm_head^T   (lm_head = embed when lm_head.weight is absent)
What differs is the attention (GQA or MLA) and the MLP (dense, Mixtral MoE, DeepSeek MoE).
"""

from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .attention import GQAttention, MLAttention
from .cache import Cache
from .mlp import SwiGLU, linear
from .moe import DeepseekMoE, MixtralMoE
from .norm import rms_norm
from .weights import Weights

#: Canonical architecture name -> (HF class name, model_type).
ARCHITECTURES = {
    "llama": ("LlamaForCausalLM", "llama"),
    "mistral": ("MistralForCausalLM", "mistral"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
    "mixtral": ("MixtralForCausalLM", "mixtral"),
    "deepseek_v3": ("DeepseekV3ForCausalLM", "deepseek_v3"),
}


def architecture_of(config: dict) -> str:
    """The canonical architecture name ("llama", ...) of an HF config."""
    by_class = {cls: arch for arch, (cls, _) in ARCHITECTURES.items()}
    by_type = {mt: arch for arch, (_, mt) in ARCHITECTURES.items()}
    for cls in config.get("architectures") or []:
        if cls in by_class:
            return by_class[cls]
    if config.get("model_type") in by_type:
        return by_type[config["model_type"]]
    raise ValueError(f"unsupported architecture {config.get('architectures')} / model_type "
                     f"{config.get('model_type')!r}; supported: "
                     + ", ".join(cls for cls, _ in ARCHITECTURES.values()))


def sliding_window_of(config: dict, arch: str, layer: int) -> Optional[int]:
    """The attention window of `layer`, or None for full causal attention."""
    if arch in ("mistral", "mixtral"):
        return config.get("sliding_window")
    if arch == "qwen2":
        window = config.get("sliding_window") if config.get("use_sliding_window") else None
        layer_types = config.get("layer_types")
        if layer_types:
            return window if layer_types[layer] == "sliding_attention" else None
        if window is not None and layer >= config.get("max_window_layers", 0):
            return window
        return None
    return None


def is_moe_layer(config: dict, arch: str, layer: int) -> bool:
    if arch == "mixtral":
        return True
    if arch == "deepseek_v3":
        return (bool(config.get("n_routed_experts"))
                and layer >= config.get("first_k_dense_replace", 0)
                and layer % config.get("moe_layer_freq", 1) == 0)
    return False


class DecoderLayer:
    def __init__(self, weights: Weights, config: dict, arch: str, layer: int):
        p = f"model.layers.{layer}"
        hidden = config["hidden_size"]
        self.eps = config.get("rms_norm_eps", 1e-6)
        self.input_norm = weights.get(f"{p}.input_layernorm.weight", (hidden,))
        self.post_norm = weights.get(f"{p}.post_attention_layernorm.weight", (hidden,))
        if arch == "deepseek_v3":
            self.attn = MLAttention(weights, f"{p}.self_attn", config)
        else:
            self.attn = GQAttention(weights, f"{p}.self_attn", config,
                                    sliding_window_of(config, arch, layer))
        if arch == "mixtral":
            self.mlp = MixtralMoE(weights, f"{p}.block_sparse_moe", config)
        elif is_moe_layer(config, arch, layer):
            self.mlp = DeepseekMoE(weights, f"{p}.mlp", config)
        else:
            self.mlp = SwiGLU.load(weights, f"{p}.mlp", hidden, config["intermediate_size"])

    def __call__(self, h: np.ndarray, cache: Cache, layer: int) -> np.ndarray:
        h = h + self.attn(rms_norm(h, self.input_norm, self.eps), cache, layer)
        return h + self.mlp(rms_norm(h, self.post_norm, self.eps))


class Model:
    """A causal LM in float64. `forward` appends to a `Cache`; positions continue from it."""

    def __init__(self, config: dict, weights: Weights):
        self.config = config
        self.arch = architecture_of(config)
        act = config.get("hidden_act", "silu")
        if act != "silu":
            raise NotImplementedError(f"hidden_act {act!r} (supported: silu)")
        hidden, vocab = config["hidden_size"], config["vocab_size"]
        self.vocab_size = vocab
        self.num_layers = config["num_hidden_layers"]  # MTP layers beyond this are ignored
        self.eps = config.get("rms_norm_eps", 1e-6)
        self.embed = weights.get("model.embed_tokens.weight", (vocab, hidden))
        self.layers = [DecoderLayer(weights, config, self.arch, i) for i in range(self.num_layers)]
        self.norm = weights.get("model.norm.weight", (hidden,))
        # Tied embeddings: without an lm_head tensor the embedding matrix is the output head.
        self.lm_head = weights.maybe("lm_head.weight", (vocab, hidden))
        if self.lm_head is None:
            self.lm_head = self.embed

    def new_cache(self) -> Cache:
        return Cache(self.num_layers)

    def forward(self, ids: Sequence[int], cache: Optional[Cache] = None) -> np.ndarray:
        """Logits [len(ids), vocab] (float64) for tokens at positions cache.length, ...

        Appends the tokens' keys and values to `cache` (a fresh one when None).
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got "
                             f"[{ids.min()}, {ids.max()}]")
        if cache is None:
            cache = self.new_cache()
        if ids.size == 0:
            return np.zeros((0, self.vocab_size))
        h = self.embed[ids].astype(np.float64)
        for i, layer in enumerate(self.layers):
            h = layer(h, cache, i)
        cache.length += len(ids)
        return linear(rms_norm(h, self.norm, self.eps), self.lm_head)

    def generate_greedy(self, prompt_ids: Sequence[int], n: int,
                        cache: Optional[Cache] = None) -> Tuple[List[int], np.ndarray]:
        """Greedy decoding: n new ids and the [n, vocab] logit rows each was taken from.

        Row 0 is the logits at the last prompt position; argmax ties go to the lowest id.
        """
        prompt = list(prompt_ids)
        if not prompt:
            raise ValueError("generate_greedy needs at least one prompt token")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        cache = self.new_cache() if cache is None else cache
        rows = np.zeros((n, self.vocab_size))
        out: List[int] = []
        if n == 0:
            return out, rows
        row = self.forward(prompt, cache)[-1]
        for i in range(n):
            rows[i] = row
            out.append(int(np.argmax(row)))
            if i + 1 < n:
                row = self.forward([out[-1]], cache)[-1]
        return out, rows


def read_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config


def load(model_dir: str, bf16_inputs: Sequence[str] = ()) -> Model:
    """Load a Hugging Face checkpoint folder (config.json + safetensors) as a reference model.

    bf16_inputs: names of weights whose linear layers round their input to bf16, as the
    compiled CPU code does for the weights its manifest stores in panels (see bf16.py)."""
    config = read_config(model_dir)
    architecture_of(config)  # fail early, before touching the weights
    return Model(config, Weights(model_dir, config, bf16_inputs))
