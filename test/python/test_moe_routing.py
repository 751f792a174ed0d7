"""MoE routers on small hand-computed cases (DeepSeek grouped routing, Mixtral top-k)."""

import math

import numpy as np
import pytest

from xfmr.reference.models import is_moe_layer
from xfmr.reference.moe import route_grouped, route_softmax_topk


def logit(p):
    """Router logits whose sigmoid is p."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))[None, :]  # one token


def test_group_limited_selection_excludes_the_best_expert_of_a_dropped_group():
    # 8 experts in 4 groups of 2. Group scores (sum of the 2 best): 1.0, 1.15, 1.1, 1.0, so
    # groups 1 and 2 stay; expert 0 (0.9) is the second best overall but its group is dropped.
    s = [0.9, 0.1, 0.6, 0.55, 0.15, 0.95, 0.5, 0.5]
    idx, w = route_grouped(logit(s), np.zeros(8), top_k=2, n_group=4, topk_group=2,
                           routed_scaling_factor=2.5)
    assert idx.tolist() == [[5, 2]]
    np.testing.assert_allclose(w, [[0.95 / 1.55 * 2.5, 0.6 / 1.55 * 2.5]], rtol=1e-12)


def test_bias_steers_selection_but_weights_use_unbiased_scores():
    s = [0.9, 0.1, 0.6, 0.55, 0.15, 0.95, 0.5, 0.5]
    bias = np.array([0.0, 0.9, 0, 0, 0, 0, 0, 0])
    # Biased group scores: 0.9 + 1.0 = 1.9, 1.15, 1.1, 1.0: groups 0 and 1 stay (group 2 and
    # its expert 5 at 0.95 are out). The biased best of experts 0..3 are expert 1 (1.0) and
    # expert 0 (0.9); weights are the raw sigmoid scores 0.1 and 0.9, renormalized, times 1.
    idx, w = route_grouped(logit(s), bias, top_k=2, n_group=4, topk_group=2)
    assert idx.tolist() == [[1, 0]]
    np.testing.assert_allclose(w, [[0.1, 0.9]], rtol=1e-12)


def test_group_score_is_sum_of_top_two_not_max():
    # Group 0: one strong expert (sum 0.99 + 0.01 = 1.0); group 1: two good ones (1.2).
    s = [0.99, 0.01, 0.6, 0.6]
    idx, _ = route_grouped(logit(s), np.zeros(4), top_k=1, n_group=2, topk_group=1)
    assert idx.tolist() == [[2]]  # noaux_tc keeps group 1; ties (0.6, 0.6) go to the lower id
    idx, _ = route_grouped(logit(s), None, top_k=1, n_group=2, topk_group=1,
                           topk_method="group_limited_greedy")
    assert idx.tolist() == [[0]]  # the max rule keeps group 0
    idx, _ = route_grouped(logit(s), None, top_k=1, n_group=2, topk_group=1, topk_method="greedy")
    assert idx.tolist() == [[0]]


def test_dropped_groups_are_excluded_even_when_kept_scores_are_negative():
    # All biased scores of the kept group are negative (0.5 - 2); filling dropped experts with
    # 0 instead of -inf would wrongly pick experts 2 and 3.
    s = [0.5, 0.5, 0.5, 0.5]
    bias = np.array([-2.0, -2.0, -3.0, -3.0])
    idx, w = route_grouped(logit(s), bias, top_k=2, n_group=2, topk_group=1)
    assert idx.tolist() == [[0, 1]]
    np.testing.assert_allclose(w, [[0.5, 0.5]], rtol=1e-12)


def test_ties_go_to_the_lowest_index():
    # Groups 1 and 2 have identical score multisets, so identical group scores; topk_group=1
    # keeps group 1. Inside it experts 2 and 3 tie; top_k=1 takes expert 2.
    s = [0.1, 0.2, 0.7, 0.7, 0.7, 0.7]
    idx, _ = route_grouped(logit(s), np.zeros(6), top_k=1, n_group=3, topk_group=1)
    assert idx.tolist() == [[2]]
    # Identical rows route identically; several tokens at once.
    idx, _ = route_grouped(np.repeat(logit(s), 3, axis=0), np.zeros(6), top_k=2, n_group=3,
                           topk_group=2)
    assert idx.tolist() == [[2, 3]] * 3


def test_normalization_and_scaling_switches():
    s = [0.8, 0.4, 0.3, 0.1]
    _, w = route_grouped(logit(s), np.zeros(4), top_k=2, n_group=1, topk_group=1,
                         norm_topk_prob=False, routed_scaling_factor=2.0)
    np.testing.assert_allclose(w, [[1.6, 0.8]], rtol=1e-12)
    _, w = route_grouped(logit(s), np.zeros(4), top_k=2, n_group=1, topk_group=1,
                         norm_topk_prob=True, routed_scaling_factor=2.0)
    np.testing.assert_allclose(w, [[0.8 / 1.2 * 2.0, 0.4 / 1.2 * 2.0]], rtol=1e-12)
    # softmax scoring
    logits = np.log(np.array([[4.0, 2.0, 1.0, 1.0]]))  # softmax = [0.5, 0.25, 0.125, 0.125]
    idx, w = route_grouped(logits, None, top_k=2, n_group=1, topk_group=1,
                           scoring_func="softmax", norm_topk_prob=False)
    assert idx.tolist() == [[0, 1]]
    np.testing.assert_allclose(w, [[0.5, 0.25]], rtol=1e-12)
    with pytest.raises(ValueError):
        route_grouped(logit(s), None, top_k=1, n_group=3, topk_group=1)


def test_mixtral_softmax_top2_renormalized():
    idx, w = route_softmax_topk(np.array([[1.0, 2.0, 3.0, 0.0]]), 2)
    assert idx.tolist() == [[2, 1]]
    e = math.exp(-1.0)
    np.testing.assert_allclose(w, [[1 / (1 + e), e / (1 + e)]], rtol=1e-12)
    idx, w = route_softmax_topk(np.array([[1.0, 1.0, 0.0, 1.0]]), 2)  # three-way tie
    assert idx.tolist() == [[0, 1]]
    np.testing.assert_allclose(w, [[0.5, 0.5]], rtol=1e-12)


def test_which_deepseek_layers_are_moe():
    cfg = {"n_routed_experts": 8, "first_k_dense_replace": 1, "moe_layer_freq": 2}
    assert [i for i in range(6) if is_moe_layer(cfg, "deepseek_v3", i)] == [2, 4]
    cfg = {"n_routed_experts": 8, "first_k_dense_replace": 3, "moe_layer_freq": 1}
    assert [i for i in range(6) if is_moe_layer(cfg, "deepseek_v3", i)] == [3, 4, 5]
    assert not any(is_moe_layer({"n_routed_experts": None}, "deepseek_v3", i) for i in range(4))
    assert all(is_moe_layer({}, "mixtral", i) for i in range(3))
    assert not is_moe_layer({}, "llama", 0)
