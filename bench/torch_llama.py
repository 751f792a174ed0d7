"""PyTorch eager Llama (Debian's python3-torch), the peer xfmr is compared to in
bench/run.py: same checkpoint, same thread count, KV cache, greedy decoding.

Usage: torch_llama.py CHECKPOINT --dtype bf16 --threads 2 --prompt 512 --decode 64
Prints one JSON object with prefill and decode tokens/s.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from xfmr.safetensors import open_checkpoint  # noqa: E402
from torch_common import peer_parser, rms_norm, time_generation, torch_dtype  # noqa: E402


class Llama:
    def __init__(self, folder, dtype):
        cfg = json.loads((Path(folder) / "config.json").read_text())
        self.cfg = cfg
        self.dtype = dtype
        store = open_checkpoint(str(folder))
        self.w = {name: torch.from_numpy(np.ascontiguousarray(store.get(name))).to(dtype)
                  for name in store.keys()}
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, self.head_dim, 2).double() / self.head_dim))
        self.inv_freq = inv
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def rms(self, x, weight):
        return rms_norm(x, weight, self.eps)

    def rope(self, x, positions):
        angles = positions[:, None].double() * self.inv_freq[None, :]
        cos = torch.cat([angles.cos(), angles.cos()], -1).to(x.dtype)[:, None, :]
        sin = torch.cat([angles.sin(), angles.sin()], -1).to(x.dtype)[:, None, :]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def forward(self, ids, cache, start):
        n = len(ids)
        positions = torch.arange(start, start + n)
        h = self.w["model.embed_tokens.weight"][torch.tensor(ids)]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            x = self.rms(h, self.w[p + "input_layernorm.weight"])
            q = (x @ self.w[p + "self_attn.q_proj.weight"].T).view(n, self.heads, self.head_dim)
            k = (x @ self.w[p + "self_attn.k_proj.weight"].T).view(n, self.kv_heads, self.head_dim)
            v = (x @ self.w[p + "self_attn.v_proj.weight"].T).view(n, self.kv_heads, self.head_dim)
            q, k = self.rope(q, positions), self.rope(k, positions)
            keys, values = cache[i]
            keys[start:start + n], values[start:start + n] = k, v
            kk = keys[:start + n].repeat_interleave(self.heads // self.kv_heads, 1)
            vv = values[:start + n].repeat_interleave(self.heads // self.kv_heads, 1)
            scores = torch.einsum("thd,shd->hts", q, kk) / math.sqrt(self.head_dim)
            mask = torch.arange(start + n)[None, :] > positions[:, None]
            scores = scores.masked_fill(mask[None], float("-inf")).float().softmax(-1).to(self.dtype)
            o = torch.einsum("hts,shd->thd", scores, vv).reshape(n, -1)
            h = h + o @ self.w[p + "self_attn.o_proj.weight"].T
            y = self.rms(h, self.w[p + "post_attention_layernorm.weight"])
            g = y @ self.w[p + "mlp.gate_proj.weight"].T
            u = y @ self.w[p + "mlp.up_proj.weight"].T
            h = h + (torch.nn.functional.silu(g) * u) @ self.w[p + "mlp.down_proj.weight"].T
        return (self.rms(h, self.w["model.norm.weight"]) @ self.lm_head.T).float()

    def new_cache(self, capacity):
        shape = (capacity, self.kv_heads, self.head_dim)
        return [(torch.zeros(shape, dtype=self.dtype), torch.zeros(shape, dtype=self.dtype))
                for _ in range(self.layers)]


def main():
    args = peer_parser(decode=64).parse_args()
    model = Llama(args.checkpoint, torch_dtype(args))
    time_generation(model, args)

if __name__ == "__main__":
    main()
