"""The reference implementation on a real trained checkpoint: stories260K (Llama layout)."""

import hashlib

import numpy as np

import xfmr.reference as ref

# Greedy continuation of the prompt [1] (BOS), 63 tokens, on shared/models/stories260K as it is
# stored (model.safetensors with the sha256 below). Obtained from
# xfmr.reference.load(...).generate_greedy([1], 63) and confirmed, once, by an independent
# from-scratch PyTorch implementation of the Hugging Face Llama equations (own safetensors
# parsing, float64, no KV cache: the full prefix recomputed at every step): the same 63 ids,
# logits equal to 1e-13. The smallest top-1/top-2 logit gap along the way is 0.0029 (step 37),
# ample for float32 but not for bfloat16 arithmetic.
#
# Note: these weights do not produce the upstream llama2.c golden text ("Once upon a time,
# there was a little girl named Lily...", which starts with id 403). The shared file was
# converted from a stories260K.bin whose linear weights are laid out differently from
# upstream's; run on upstream's weights (dequantized from a Q8_0 export), the same reference
# code does produce the golden text. If the shared checkpoint is regenerated, re-pin this list.
STORIES260K_SHA256 = "0b3e2fba5ff3d15b9665b2dbe683dc91d75c8758f84c69d3c4dc4539f1dc861c"
STORIES260K_GREEDY_63 = [
    461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452,
    288, 13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 293, 430, 417,
    363, 416, 315, 342, 418, 424, 400, 442, 402, 303, 266, 299, 374, 466, 396, 303, 271, 362,
    390, 469, 306, 469, 423, 314, 347, 305, 356,
]


def test_loads_as_tied_gqa_llama(stories260k_dir):
    model = ref.load(str(stories260k_dir))
    assert model.arch == "llama" and model.num_layers == 5 and model.vocab_size == 512
    assert model.lm_head is model.embed  # no lm_head.weight: tied embeddings
    attn = model.layers[0].attn
    assert (attn.heads, attn.kv_heads, attn.head_dim) == (8, 4, 8)


def test_greedy_63_tokens_from_bos(stories260k_dir):
    model = ref.load(str(stories260k_dir))
    ids, rows = model.generate_greedy([1], 63)
    digest = hashlib.sha256((stories260k_dir / "model.safetensors").read_bytes()).hexdigest()
    assert ids == STORIES260K_GREEDY_63, (
        "greedy ids changed" + ("" if digest == STORIES260K_SHA256 else
                                f" (the checkpoint changed too: sha256 {digest}; re-pin)"))
    assert rows.shape == (63, 512) and rows.dtype == np.float64
    assert list(np.argmax(rows, axis=1)) == ids
    # Row 0 is the logits at the last prompt position.
    np.testing.assert_array_equal(rows[0], model.forward([1])[-1])


def test_prefill_then_decode_equals_one_token_at_a_time(stories260k_dir):
    model = ref.load(str(stories260k_dir))
    prompt = [1] + STORIES260K_GREEDY_63[:40]
    cache = model.new_cache()
    prefill = model.forward(prompt, cache)
    assert prefill.shape == (len(prompt), 512) and cache.length == len(prompt)
    step_cache = model.new_cache()
    steps = np.concatenate([model.forward([t], step_cache) for t in prompt])
    np.testing.assert_allclose(prefill, steps, rtol=0, atol=1e-10)
    # Decoding continues identically from either cache, positions picking up at the length.
    for token in STORIES260K_GREEDY_63[40:50]:
        a, b = model.forward([token], cache), model.forward([token], step_cache)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    assert cache.length == step_cache.length == len(prompt) + 10
    # A chunked prefill (two pieces) agrees as well.
    chunked = model.new_cache()
    both = np.concatenate([model.forward(prompt[:17], chunked),
                           model.forward(prompt[17:], chunked)])
    np.testing.assert_allclose(both, prefill, rtol=0, atol=1e-10)


def test_generate_continues_a_long_prompt(stories260k_dir):
    model = ref.load(str(stories260k_dir))
    ids, rows = model.generate_greedy([1] + STORIES260K_GREEDY_63[:30], 33)
    assert ids == STORIES260K_GREEDY_63[30:]
    assert rows.shape == (33, 512)
