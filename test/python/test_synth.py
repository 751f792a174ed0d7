"""Synthetic checkpoints: every architecture generates, loads and runs; layout, dtypes, FP8,
shards, determinism, command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

import xfmr.reference as ref
from xfmr import synth
from xfmr.safetensors import SafetensorsFolder, decode_f8_e4m3

PROMPT = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]  # 20 > mistral's window 16


def check_logits(logits: np.ndarray, vocab: int) -> None:
    """Finite, realistic scale, position-dependent, neither one-hot nor uniform."""
    assert logits.shape == (len(PROMPT), vocab) and logits.dtype == np.float64
    assert np.isfinite(logits).all()
    assert 0.3 < logits.std() < 30
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert 0.02 < p.max(axis=1).mean() < 0.95
    assert len(set(np.argmax(logits, axis=1).tolist())) > 3


@pytest.mark.parametrize("arch", synth.ARCHS)
def test_every_arch_generates_loads_and_runs(arch, synth_checkpoint):
    folder = synth_checkpoint(arch)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [synth._CLASS[arch]] and config["model_type"] == arch
    model = ref.load(str(folder))
    assert model.arch == arch
    check_logits(model.forward(PROMPT), config["vocab_size"])
    ids, rows = model.generate_greedy(PROMPT[:3], 5)
    assert len(ids) == 5 and rows.shape == (5, config["vocab_size"])
    # Tiny really is tiny (a few KB .. ~200 KB).
    assert (folder / "model.safetensors").stat().st_size < 200_000


def test_tensor_names_and_shapes_follow_the_checkpoint_doc(synth_checkpoint):
    files = SafetensorsFolder(str(synth_checkpoint("qwen2")))
    assert files.info("model.layers.1.self_attn.k_proj.weight").shape == (16, 32)
    assert files.info("model.layers.0.self_attn.q_proj.bias").shape == (32,)
    assert files.info("lm_head.weight").shape == (128, 32)
    files = SafetensorsFolder(str(synth_checkpoint("mixtral")))
    assert files.info("model.layers.0.block_sparse_moe.gate.weight").shape == (4, 32)
    assert files.info("model.layers.1.block_sparse_moe.experts.3.w2.weight").shape == (32, 32)
    files = SafetensorsFolder(str(synth_checkpoint("deepseek_v3")))
    p = "model.layers.1"
    assert files.info(f"{p}.self_attn.q_b_proj.weight").shape == (4 * 12, 24)
    assert files.info(f"{p}.self_attn.kv_a_proj_with_mqa.weight").shape == (16 + 4, 32)
    assert files.info(f"{p}.self_attn.kv_b_proj.weight").shape == (4 * 16, 16)
    assert files.info(f"{p}.self_attn.o_proj.weight").shape == (32, 32)
    assert files.info(f"{p}.mlp.gate.e_score_correction_bias").dtype == "F32"
    assert files.info(f"{p}.mlp.shared_experts.up_proj.weight").shape == (16, 32)
    assert "model.layers.0.mlp.gate_proj.weight" in files  # first_k_dense_replace = 1
    assert "model.layers.0.mlp.gate.weight" not in files


def test_dtypes_bf16_f16_close_to_f32(synth_checkpoint):
    base = ref.load(str(synth_checkpoint("llama", seed=5))).forward(PROMPT)
    for dtype, tol in (("bf16", 0.05), ("f16", 0.01)):
        folder = synth_checkpoint("llama", seed=5, dtype=dtype)
        files = SafetensorsFolder(str(folder))
        assert files.info("model.embed_tokens.weight").dtype == synth.DTYPES[dtype]
        logits = ref.load(str(folder)).forward(PROMPT)
        assert np.abs(logits - base).max() < tol * np.abs(base).max()


def test_fp8_deepseek_layout_and_dequantization(synth_checkpoint):
    folder = synth_checkpoint("deepseek_v3", dtype="fp8", block_size=(16, 16), seed=1)
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "fp8", "fmt": "e4m3",
                                             "activation_scheme": "dynamic",
                                             "weight_block_size": [16, 16]}
    files = SafetensorsFolder(str(folder))
    name = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight"  # [20, 32]: partial row block
    assert files.info(name).dtype == "F8_E4M3"
    assert files.info(name + "_scale_inv").dtype == "F32"
    assert files.info(name + "_scale_inv").shape == (2, 2)
    for unquantized in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                        "model.layers.1.mlp.gate.weight", "model.layers.0.input_layernorm.weight",
                        "model.layers.1.self_attn.kv_a_layernorm.weight"):
        assert files.info(unquantized).dtype == "BF16", unquantized
        assert unquantized + "_scale_inv" not in files
    # Each block uses the E4M3 range: its largest code is within rounding of 448.
    codes = files.raw(name)
    block_max = np.abs(decode_f8_e4m3(codes, np.float64))[:16, :16].max()
    assert block_max == 448.0
    # Dequantized weights are the f32 weights (same seed) to E4M3 precision (2^-4 relative).
    f32 = SafetensorsFolder(str(synth_checkpoint("deepseek_v3", dtype="f32", seed=1)))
    model = ref.load(str(folder))
    w = model.layers[1].attn.wkv_a
    exact = f32.get(name).astype(np.float64)
    normal = np.abs(exact) > np.abs(exact).max() * 2.0 ** -6
    assert (np.abs(w - exact)[normal] <= np.abs(exact)[normal] * 2.0 ** -4 + 1e-12).all()
    logits = model.forward(PROMPT)
    check_logits(logits, config["vocab_size"])
    base = ref.load(str(synth_checkpoint("deepseek_v3", dtype="f32", seed=1))).forward(PROMPT)
    assert np.corrcoef(logits.ravel(), base.ravel())[0, 1] > 0.5


def test_mla_softmax_scale_includes_yarn_mscale(synth_checkpoint):
    model = ref.load(str(synth_checkpoint("deepseek_v3")))
    attn = model.layers[0].attn
    m = 0.1 * 1.0 * np.log(4.0) + 1.0  # mscale_all_dim 1, factor 4
    assert np.isclose(attn.scale, (8 + 4) ** -0.5 * m * m)
    assert attn.cos_sin_scale == 1.0


def test_shards_hold_the_same_tensors(synth_checkpoint):
    one = synth_checkpoint("mixtral", dtype="bf16", seed=2)
    three = synth_checkpoint("mixtral", dtype="bf16", seed=2, shards=3)
    index = json.loads((three / "model.safetensors.index.json").read_text())
    shard_files = sorted(set(index["weight_map"].values()))
    assert shard_files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert not (three / "model.safetensors").exists()
    a, b = SafetensorsFolder(str(one)), SafetensorsFolder(str(three))
    assert sorted(a.keys()) == sorted(b.keys()) == sorted(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(a.info(k).nbytes for k in a.keys())
    for k in a.keys():
        assert np.array_equal(a.raw(k), b.raw(k)), k
    np.testing.assert_array_equal(ref.load(str(one)).forward(PROMPT),
                                  ref.load(str(three)).forward(PROMPT))
    fp8 = synth_checkpoint("deepseek_v3", dtype="fp8", shards=4, block_size=(16, 16))
    index = json.loads((fp8 / "model.safetensors.index.json").read_text())
    wm = index["weight_map"]
    assert all(wm[k] == wm[k[: -len("_scale_inv")]] for k in wm if k.endswith("_scale_inv"))
    check_logits(ref.load(str(fp8)).forward(PROMPT), 128)


def test_deterministic_from_seed_and_independent_of_order(synth_checkpoint):
    a = (synth_checkpoint("llama", seed=7) / "model.safetensors").read_bytes()
    again = synth_checkpoint("mistral", seed=7)  # another folder, same seed
    b = (synth_checkpoint("llama", seed=8) / "model.safetensors").read_bytes()
    assert a != b
    la = SafetensorsFolder(str(synth_checkpoint("llama", seed=7)))
    mi = SafetensorsFolder(str(again))
    deeper = SafetensorsFolder(str(synth_checkpoint("llama", seed=7,
                                                    overrides={"num_hidden_layers": 3})))
    for name in ("model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight",
                 "model.layers.1.mlp.down_proj.weight", "lm_head.weight"):
        assert np.array_equal(la.raw(name), mi.raw(name))
        assert np.array_equal(la.raw(name), deeper.raw(name))
    # Regenerating gives byte-identical files.
    out = synth_checkpoint("llama", seed=7, shards=1, progress=False)
    assert (out / "model.safetensors").read_bytes() == a


def test_tied_embeddings_and_mtp(synth_checkpoint):
    tied = synth_checkpoint("qwen2", tie_embeddings=True)
    files = SafetensorsFolder(str(tied))
    assert "lm_head.weight" not in files
    model = ref.load(str(tied))
    assert model.lm_head is model.embed
    assert json.loads((tied / "config.json").read_text())["tie_word_embeddings"] is True
    check_logits(model.forward(PROMPT), 128)

    mtp = synth_checkpoint("deepseek_v3", mtp=True)
    config = json.loads((mtp / "config.json").read_text())
    assert config["num_nextn_predict_layers"] == 1
    files = SafetensorsFolder(str(mtp))
    n = config["num_hidden_layers"]
    for suffix in ("embed_tokens.weight", "enorm.weight", "hnorm.weight", "eh_proj.weight",
                   "shared_head.norm.weight", "shared_head.head.weight",
                   "self_attn.kv_b_proj.weight", "mlp.gate.e_score_correction_bias"):
        assert f"model.layers.{n}.{suffix}" in files, suffix
    assert files.info(f"model.layers.{n}.eh_proj.weight").shape == (32, 64)
    # The MTP layer is ignored by the reference: same logits as without it.
    np.testing.assert_array_equal(ref.load(str(mtp)).forward(PROMPT),
                                  ref.load(str(synth_checkpoint("deepseek_v3"))).forward(PROMPT))


def test_sliding_window_limits_what_the_last_token_sees(synth_checkpoint):
    one_layer = {"num_hidden_layers": 1, "sliding_window": 4}
    model = ref.load(str(synth_checkpoint("mistral", overrides=one_layer)))
    full = ref.load(str(synth_checkpoint("mistral", overrides={"num_hidden_layers": 1,
                                                               "sliding_window": None})))
    ids = list(PROMPT[:10])
    changed_far = [7] + ids[1:]  # position 0: outside the last query's window (5 < p <= 9)
    changed_near = ids[:6] + [7] + ids[7:]  # position 6: inside it
    last = model.forward(ids)[-1]
    np.testing.assert_array_equal(model.forward(changed_far)[-1], last)
    assert not np.allclose(model.forward(changed_near)[-1], last)
    assert not np.allclose(full.forward(changed_far)[-1], full.forward(ids)[-1])
    # Within the window the two agree exactly.
    np.testing.assert_allclose(model.forward(ids[:4]), full.forward(ids[:4]), rtol=1e-13)


def test_llama_rope_scaling_via_set(synth_checkpoint):
    base = ref.load(str(synth_checkpoint("llama"))).forward(PROMPT)
    for scaling in ({"rope_type": "linear", "factor": 2.0},
                    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16}):
        logits = ref.load(str(synth_checkpoint("llama", overrides={"rope_scaling": scaling})))
        logits = logits.forward(PROMPT)
        check_logits(logits, 128)
        np.testing.assert_array_equal(logits[0], base[0])  # position 0 is never rotated
        assert not np.allclose(logits, base)


def test_config_validation_errors():
    with pytest.raises(synth.SynthError, match="unknown arch"):
        synth.make_config("gpt2")
    with pytest.raises(synth.SynthError, match="multiple of num_key_value_heads"):
        synth.make_config("llama", overrides={"num_key_value_heads": 3})
    with pytest.raises(synth.SynthError, match="positive integer"):
        synth.make_config("llama", overrides={"hidden_size": -1})
    with pytest.raises(synth.SynthError, match="n_group"):
        synth.make_config("deepseek_v3", overrides={"n_group": 3})
    with pytest.raises(synth.SynthError, match="--mtp"):
        synth.make_config("llama", mtp=True)
    with pytest.raises(synth.SynthError, match="key=value"):
        synth.parse_set(["oops"])
    assert synth.parse_set(["a=1", "b=x", "c.d=[1, 2]", "e=null"]) == \
        {"a": 1, "b": "x", "c.d": [1, 2], "e": None}
    config = synth.make_config("deepseek_v3", overrides={"rope_scaling.factor": 8.0})
    assert config["rope_scaling"]["factor"] == 8.0 and config["rope_scaling"]["beta_fast"] == 32
    config = synth.make_config("llama", "500m")
    params = sum(int(np.prod(t.shape)) for t in synth.plan_tensors(config))
    assert 450e6 < params < 550e6
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["intermediate_size"], config["vocab_size"]) == \
        (1536, 16, 12, 4, 4096, 32000)


def test_command_line(tmp_path, python_env):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "xfmr.synth", *args], env=python_env,
                              capture_output=True, text=True, timeout=60)

    out = tmp_path / "ck"
    r = run("--arch", "mistral", "--out", str(out), "--dtype", "bf16", "--seed", "3",
            "--set", "num_hidden_layers=1", "--set", "sliding_window=8", "--tie-embeddings",
            "--progress")
    assert r.returncode == 0, r.stderr
    assert "synth:" in r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["sliding_window"] == 8
    assert config["tie_word_embeddings"] is True and config["torch_dtype"] == "bfloat16"
    ref.load(str(out))

    r = run("--arch", "bogus", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run("--arch", "llama", "--out", str(tmp_path / "x"), "--set", "num_key_value_heads=3")
    assert r.returncode == 2 and "num_key_value_heads" in r.stderr
    r = run("--arch", "llama", "--out", str(tmp_path / "x"), "--mtp")
    assert r.returncode == 2 and "deepseek_v3" in r.stderr
    r = run("--arch", "llama", "--out", str(tmp_path / "x"), "--block-size", "0")
    assert r.returncode == 2
    r = run("--arch", "llama", "--out", str(tmp_path / "x"), "--shards", "0")
    assert r.returncode == 2 and "shards" in r.stderr

    r = subprocess.run([sys.executable, "-m", "xfmr", "synth", "--arch", "deepseek_v3",
                        "--dtype", "fp8", "--mtp", "--shards", "2", "--quiet",
                        "--out", str(tmp_path / "ds")], env=python_env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert (tmp_path / "ds" / "model.safetensors.index.json").exists()


def test_bytes_do_not_depend_on_the_worker_count(tmp_path):
    for workers in (1, 3):
        synth.generate(str(tmp_path / f"w{workers}"), "deepseek_v3", dtype="fp8",
                       workers=workers, progress=False)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w3" / name).read_bytes()


def test_sparse_checkpoint_has_the_real_headers_and_zeros(tmp_path):
    synth.generate(str(tmp_path / "real"), "mixtral", dtype="bf16", progress=False)
    synth.generate(str(tmp_path / "sparse"), "mixtral", dtype="bf16", sparse=True, shards=2)
    real = SafetensorsFolder(str(tmp_path / "real"))
    sparse = SafetensorsFolder(str(tmp_path / "sparse"))
    assert sorted(real.keys()) == sorted(sparse.keys())
    for name in real.keys():
        assert real.info(name).dtype == sparse.info(name).dtype
        assert real.info(name).shape == sparse.info(name).shape
        assert not np.any(sparse.raw(name))
