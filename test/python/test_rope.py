"""Rotary embeddings: pairings, Llama 3 / linear scaling, DeepSeek YaRN."""

import math

import numpy as np

from xfmr.reference import rope


def test_interleaved_is_rotate_half_on_deinterleaved_dims():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 8))
    cos, sin = rope.cos_sin(rope.default_inv_freq(8, 10000.0), np.arange(5))
    perm = np.r_[0:8:2, 1:8:2]  # (x0, x2, x4, x6, x1, x3, x5, x7)
    np.testing.assert_allclose(rope.rotate_interleaved(x, cos, sin)[..., perm],
                               rope.rotate_half(x[..., perm], cos, sin), rtol=0, atol=1e-15)
    # Position 0 is the identity; rotation preserves each pair's norm.
    np.testing.assert_allclose(rope.rotate_half(x, cos, sin)[:, 0], x[:, 0])
    y = rope.rotate_interleaved(x, cos, sin)
    np.testing.assert_allclose(y[..., 0::2] ** 2 + y[..., 1::2] ** 2,
                               x[..., 0::2] ** 2 + x[..., 1::2] ** 2, rtol=1e-12)


def test_linear_scaling_divides_positions():
    base = rope.llama_inv_freq(16, 10000.0, None)
    lin = rope.llama_inv_freq(16, 10000.0, {"rope_type": "linear", "factor": 4.0})
    np.testing.assert_allclose(lin, base / 4.0, rtol=1e-15)
    np.testing.assert_allclose(rope.cos_sin(lin, [8.0])[0], rope.cos_sin(base, [2.0])[0])
    # "type" is the older spelling of "rope_type".
    np.testing.assert_allclose(rope.llama_inv_freq(16, 1e4, {"type": "linear", "factor": 2}),
                               base / 2)


def test_llama3_scaling():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    dim, theta = 128, 500000.0
    base = theta ** -(np.arange(0, dim, 2) / dim)
    got = rope.llama_inv_freq(dim, theta, scaling)
    wavelen = 2 * math.pi / base
    for i in range(dim // 2):
        if wavelen[i] < 8192 / 4.0:  # high frequency: kept
            want = base[i]
        elif wavelen[i] > 8192 / 1.0:  # low frequency: slowed by the factor
            want = base[i] / 8.0
        else:  # in between: interpolate on 8192 / wavelen
            smooth = (8192 / wavelen[i] - 1.0) / (4.0 - 1.0)
            want = (1 - smooth) * base[i] / 8.0 + smooth * base[i]
        assert math.isclose(got[i], want, rel_tol=1e-12), i
    assert got[0] == base[0] and got[-1] == base[-1] / 8.0


def test_yarn_correction_range_and_frequencies():
    # dim 64, theta 1e4, original context 4096, beta_fast 32, beta_slow 1:
    # 64 ln(4096 / (32 * 2 pi)) / (2 ln 1e4) = 10.47 -> 10; with 1 rotation 22.5 -> 23.
    assert rope.yarn_find_correction_range(32, 1, 64, 10000.0, 4096) == (10, 23)
    scaling = {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
               "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
    inv, scale = rope.yarn_inv_freq(64, 10000.0, scaling)
    base = 10000.0 ** -(np.arange(0, 64, 2) / 64)
    np.testing.assert_allclose(inv[:11], base[:11], rtol=1e-14)  # fast dims keep their freq
    np.testing.assert_allclose(inv[23:], base[23:] / 40.0, rtol=1e-14)  # slow ones interpolate
    ramp = (np.arange(11, 23) - 10) / 13.0
    np.testing.assert_allclose(inv[11:23], base[11:23] / 40 * ramp + base[11:23] * (1 - ramp),
                               rtol=1e-14)
    assert scale == 1.0  # mscale == mscale_all_dim
    assert math.isclose(rope.yarn_get_mscale(40.0, 1.0), 0.1 * math.log(40.0) + 1.0)
    assert rope.yarn_get_mscale(1.0, 1.0) == 1.0
    _, scale = rope.yarn_inv_freq(64, 10000.0, dict(scaling, mscale=0.707, mscale_all_dim=0.0))
    assert math.isclose(scale, 0.1 * 0.707 * math.log(40.0) + 1.0)
