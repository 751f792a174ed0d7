"""Mixture-of-experts layers and their routers (Mixtral; DeepSeek-V3).

Every top-k here is a stable sort on descending score, so ties go to the lowest index.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .attention import softmax
from .mlp import SwiGLU, linear


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries along the last axis, best first, ties to lowest index."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def route_softmax_topk(logits: np.ndarray, top_k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Mixtral routing: softmax over all experts, top-k, weights renormalized to sum 1.

    Returns (experts [T, k], weights [T, k]).
    """
    probs = softmax(logits)
    idx = topk_indices(probs, top_k)
    w = np.take_along_axis(probs, idx, axis=-1)
    return idx, w / np.sum(w, axis=-1, keepdims=True)


def route_grouped(logits: np.ndarray, bias: Optional[np.ndarray], top_k: int, n_group: int,
                  topk_group: int, scoring_func: str = "sigmoid", topk_method: str = "noaux_tc",
                  norm_topk_prob: bool = True,
                  routed_scaling_factor: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """DeepSeek routing. Returns (experts [T, k], weights [T, k]).

    scores = sigmoid(logits) (or softmax). Selection uses scores + bias (`noaux_tc`). Experts
    form `n_group` contiguous groups; a group scores the sum of its two best biased scores
    (`noaux_tc`) or its best score (`group_limited_greedy`); only the `topk_group` best groups
    stay eligible, the others are excluded entirely. The top_k eligible experts are chosen;
    their weights are the unbiased scores, divided by their sum (+1e-20) when
    `norm_topk_prob`, times `routed_scaling_factor`. `topk_method="greedy"` skips grouping.
    """
    if scoring_func == "sigmoid":
        scores = sigmoid(logits)
    elif scoring_func == "softmax":
        scores = softmax(logits)
    else:
        raise NotImplementedError(f"scoring_func {scoring_func!r} (supported: sigmoid, softmax)")
    choice = scores + bias if bias is not None else scores
    tokens, experts = scores.shape
    if topk_method in ("noaux_tc", "group_limited_greedy"):
        if experts % n_group:
            raise ValueError(f"{experts} experts do not split into n_group={n_group} groups")
        grouped = choice.reshape(tokens, n_group, experts // n_group)
        if topk_method == "noaux_tc":
            best = -np.sort(-grouped, axis=-1, kind="stable")[..., :2]
            group_scores = best.sum(axis=-1)
        else:
            group_scores = grouped.max(axis=-1)
        keep = topk_indices(group_scores, topk_group)  # [T, topk_group]
        group_ok = np.zeros((tokens, n_group), dtype=bool)
        np.put_along_axis(group_ok, keep, True, axis=-1)
        eligible = np.repeat(group_ok, experts // n_group, axis=-1)
        choice = np.where(eligible, choice, -np.inf)
    elif topk_method != "greedy":
        raise NotImplementedError(f"topk_method {topk_method!r} "
                                  "(supported: noaux_tc, group_limited_greedy, greedy)")
    idx = topk_indices(choice, top_k)
    w = np.take_along_axis(scores, idx, axis=-1)
    if top_k > 1 and norm_topk_prob:
        w = w / (np.sum(w, axis=-1, keepdims=True) + 1e-20)
    return idx, w * routed_scaling_factor


def mix_experts(x: np.ndarray, idx: np.ndarray, weights: np.ndarray, experts) -> np.ndarray:
    """sum_k weights[t, k] * experts[idx[t, k]](x[t]) for every token t."""
    out = np.zeros_like(x, dtype=np.float64)
    for e in np.unique(idx):
        rows, slots = np.nonzero(idx == e)
        out[rows] += weights[rows, slots][:, None] * experts[e](x[rows])
    return out


class MixtralMoE:
    """`block_sparse_moe`: router `gate`, experts w1 (gate), w3 (up), w2 (down)."""

    def __init__(self, weights, prefix: str, config: dict):
        hidden, inter = config["hidden_size"], config["intermediate_size"]
        n = config["num_local_experts"]
        self.top_k = config["num_experts_per_tok"]
        self.gate = weights.get(f"{prefix}.gate.weight", (n, hidden))
        self.experts = [SwiGLU.load(weights, f"{prefix}.experts.{e}", hidden, inter,
                                    names=("w1", "w3", "w2")) for e in range(n)]
        #: Tokens routed to each expert over every call (the runtime's expert_tokens).
        self.routed = np.zeros(n, np.int64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        idx, w = route_softmax_topk(linear(x, self.gate), self.top_k)
        np.add.at(self.routed, idx.ravel(), 1)
        return mix_experts(x, idx, w, self.experts)


class DeepseekMoE:
    """DeepSeek-V3 MoE: grouped routing over routed experts plus always-on shared experts."""

    def __init__(self, weights, prefix: str, config: dict):
        hidden, inter = config["hidden_size"], config["moe_intermediate_size"]
        n = config["n_routed_experts"]
        self.top_k = config["num_experts_per_tok"]
        self.n_group = config.get("n_group") or 1
        self.topk_group = config.get("topk_group") or self.n_group
        self.scoring_func = config.get("scoring_func", "sigmoid")
        self.topk_method = config.get("topk_method", "noaux_tc")
        self.norm_topk_prob = bool(config.get("norm_topk_prob", True))
        self.scaling = float(config.get("routed_scaling_factor", 1.0))
        self.gate = weights.get(f"{prefix}.gate.weight", (n, hidden))
        self.bias = weights.maybe(f"{prefix}.gate.e_score_correction_bias", (n,))
        if self.topk_method == "noaux_tc" and self.bias is None:
            self.bias = np.zeros(n)
        self.experts = [SwiGLU.load(weights, f"{prefix}.experts.{e}", hidden, inter)
                        for e in range(n)]
        shared = config.get("n_shared_experts") or 0
        self.shared = (SwiGLU.load(weights, f"{prefix}.shared_experts", hidden, shared * inter)
                       if shared else None)
        #: Tokens routed to each expert over every call (the runtime's expert_tokens).
        self.routed = np.zeros(n, np.int64)

    def route(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return route_grouped(linear(x, self.gate), self.bias, self.top_k, self.n_group,
                             self.topk_group, self.scoring_func, self.topk_method,
                             self.norm_topk_prob, self.scaling)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        idx, w = self.route(x)
        np.add.at(self.routed, idx.ravel(), 1)
        out = mix_experts(x, idx, w, self.experts)
        if self.shared is not None:
            out = out + self.shared(x)
        return out
