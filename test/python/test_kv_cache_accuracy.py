"""Smoke test of bench/kv_cache_accuracy.py's measurement on tiny synthetic models."""

import importlib.util

import pytest

from conftest import REPO
from xfmr import reference


@pytest.fixture(scope="module")
def kv_cache_accuracy():
    spec = importlib.util.spec_from_file_location("kv_cache_accuracy",
                                                  REPO / "bench" / "kv_cache_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# DeepSeek-V3 with every layer dense: MLA's expanded cache without MoE routing, whose
# discontinuous top-k choices make a tiny model's KL ordering a matter of luck.
@pytest.mark.parametrize("arch,overrides", [("llama", {}),
                                            ("deepseek_v3", dict(first_k_dense_replace=2))])
def test_kv_cache_accuracy_smoke(kv_cache_accuracy, synth_checkpoint, arch, overrides):
    checkpoint = synth_checkpoint(arch, preset="tiny", seed=0, overrides=overrides)
    result = kv_cache_accuracy.evaluate(checkpoint, n_seqs=2, n_tokens=16, prompt=(1,), seed=0)
    rows = {r["setting"]: r for r in result["rows"]}
    expected = ["f32", "bf16", "f16", "fp8", "int8"]
    if arch == "deepseek_v3":  # MLA also measures its latent cache in each type
        expected += ["latent-f32", "latent-bf16", "latent-fp8", "latent-int8"]
        assert rows["latent-f32"]["max_logit_error"] < 1e-5
        assert 0.0 < rows["latent-int8"]["mean_kl"]
    assert list(rows) == expected
    for row in rows.values():
        assert row["mean_kl"] >= 0.0
        assert 0.0 <= row["top1"] <= 1.0
        assert row["positions"] == 32
        assert row["prefill_vs_decode"] < 1e-9
    assert rows["f32"]["max_logit_error"] < 1e-5
    assert 0.0 < rows["int8"]["mean_kl"] <= rows["fp8"]["mean_kl"]
    assert rows["f16"]["mean_kl"] <= rows["bf16"]["mean_kl"]
    assert "routing_changed_positions" not in rows["fp8"]
    text = kv_cache_accuracy.markdown({"m": dict(result, description="d")})
    assert text.count("| `int8` |") == 1


def test_moe_routing_changes(kv_cache_accuracy, synth_checkpoint):
    checkpoint = synth_checkpoint("deepseek_v3", preset="tiny", seed=0)
    result = kv_cache_accuracy.evaluate(checkpoint, n_seqs=2, n_tokens=16, seed=0,
                                        settings=["f32", "fp8"])
    f32, fp8 = result["rows"]
    assert f32["routing_changed_positions"] == 0.0
    assert f32["mean_kl_same_routing"] == pytest.approx(f32["mean_kl"])
    assert 0.0 <= fp8["routing_changed_decisions"] <= fp8["routing_changed_positions"] <= 1.0
    assert "Routing changed" in kv_cache_accuracy.markdown({"m": dict(result, description="d")})


def test_bytes_per_token(kv_cache_accuracy, synth_checkpoint):
    # stories260K's shape (as test_e2e_kv_cache.py checks against the compiled manifest):
    # 5 layers x 4 KV heads x (8 + 8); 8-bit caches add two f32 scales per head and layer.
    stories = dict(num_hidden_layers=5, hidden_size=64, num_attention_heads=8,
                   num_key_value_heads=4)
    assert {e: kv_cache_accuracy.bytes_per_token(stories, e)
            for e in ("f32", "bf16", "f16", "fp8", "int8")} == \
        dict(f32=1280, bf16=640, f16=640, fp8=480, int8=480)
    # DeepSeek-V3 tiny: the expanded cache holds 4 heads x (8 + 4 key, 8 value) per layer.
    config = reference.read_config(str(synth_checkpoint("deepseek_v3", preset="tiny", seed=0)))
    assert kv_cache_accuracy.cache_shape(config) == dict(layers=2, heads=4, key_dim=12,
                                                         value_dim=8)
    assert kv_cache_accuracy.bytes_per_token(config, "int8") == 2 * 4 * (20 + 8)

    # DeepSeek-V3's latent cache in FlashMLA's layout: 512 fp8 codes, 4 f32 scales and
    # 64 bf16 rope channels = 656 bytes per token and layer.
    deepseek = dict(num_hidden_layers=1, num_attention_heads=128, qk_nope_head_dim=128,
                    qk_rope_head_dim=64, v_head_dim=128, kv_lora_rank=512)
    assert kv_cache_accuracy.bytes_per_token(deepseek, "latent-fp8") == 656
    assert kv_cache_accuracy.bytes_per_token(deepseek, "latent-bf16") == 2 * 576
