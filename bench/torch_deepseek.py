"""PyTorch eager DeepSeek-V3 (Debian's python3-torch), the peer of bench/moe.py: same
checkpoint, same thread count, expanded MLA KV cache, greedy decoding. The MoE layer is
Hugging Face's `DeepseekV3MoE.moe_infer`: route, sort the (token, expert) pairs by expert,
run each expert that received tokens on its rows, scatter back with the routing weights.

Usage: torch_deepseek.py CHECKPOINT --dtype bf16 --threads 2 --prompt 512 --decode 32
       torch_deepseek.py CHECKPOINT --dtype f32 --check   (logits vs xfmr.reference)
Prints one JSON object with prefill and decode tokens/s.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from xfmr.reference import rope as reference_rope  # noqa: E402
from xfmr.safetensors import open_checkpoint  # noqa: E402
from torch_common import peer_parser, rms_norm, time_generation, torch_dtype  # noqa: E402


class DeepseekV3:
    def __init__(self, folder, dtype):
        cfg = json.loads((Path(folder) / "config.json").read_text())
        self.cfg, self.dtype = cfg, dtype
        store = open_checkpoint(str(folder))
        # The router and its bias stay f32, as in the reference implementation.
        self.w = {name: torch.from_numpy(np.ascontiguousarray(store.get(name))).to(
                      torch.float32 if ".gate." in name and ".mlp." in name else dtype)
                  for name in store.keys()}
        self.heads = cfg["num_attention_heads"]
        self.nope, self.rope_dim = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"]
        self.v_dim, self.kv_rank = cfg["v_head_dim"], cfg["kv_lora_rank"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.scale = (self.nope + self.rope_dim) ** -0.5
        scaling = cfg.get("rope_scaling")
        theta = float(cfg.get("rope_theta", 10000.0))
        self.cos_sin_scale = 1.0
        if reference_rope.rope_type(scaling) == "yarn":
            inv, self.cos_sin_scale = reference_rope.yarn_inv_freq(self.rope_dim, theta, scaling)
            if scaling.get("mscale_all_dim"):
                m = reference_rope.yarn_get_mscale(float(scaling["factor"]),
                                                   float(scaling["mscale_all_dim"]))
                self.scale *= m * m
        else:
            inv = reference_rope.default_inv_freq(self.rope_dim, theta)
        self.inv_freq = torch.from_numpy(inv)
        self.experts = cfg.get("n_routed_experts") or 0
        self.top_k = cfg.get("num_experts_per_tok", 1)
        self.groups, self.top_groups = cfg.get("n_group") or 1, cfg.get("topk_group") or 1
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def rms(self, x, weight):
        return rms_norm(x, weight, self.eps)

    def rotate(self, x, positions):
        """Interleaved pairs (x[2i], x[2i+1]) turn by position * inv_freq[i]."""
        angles = positions[:, None].double() * self.inv_freq[None, :]
        cos = (angles.cos() * self.cos_sin_scale).to(x.dtype)[:, None, :]
        sin = (angles.sin() * self.cos_sin_scale).to(x.dtype)[:, None, :]
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)

    def mlp(self, x, p):
        g = x @ self.w[p + "gate_proj.weight"].T
        u = x @ self.w[p + "up_proj.weight"].T
        return (torch.nn.functional.silu(g) * u) @ self.w[p + "down_proj.weight"].T

    def route(self, x, p):
        scores = (x.float() @ self.w[p + "gate.weight"].T).sigmoid()
        biased = scores + self.w[p + "gate.e_score_correction_bias"]
        n = x.shape[0]
        grouped = biased.view(n, self.groups, -1)
        group_scores = grouped.topk(2, dim=-1).values.sum(-1)
        kept = group_scores.topk(self.top_groups, dim=-1, sorted=False).indices
        mask = torch.zeros_like(group_scores).scatter_(1, kept, 1.0)
        mask = mask[:, :, None].expand_as(grouped).reshape(n, -1)
        biased = biased.masked_fill(mask == 0, float("-inf"))
        idx = biased.topk(self.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, idx)
        if self.cfg.get("norm_topk_prob", True):
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return idx, weights * float(self.cfg.get("routed_scaling_factor", 1.0))

    def moe(self, x, p):
        idx, weights = self.route(x, p)
        flat = idx.view(-1)
        order = flat.argsort()
        counts = torch.bincount(flat, minlength=self.experts).tolist()
        rows = x[order // self.top_k]
        outputs, begin = [], 0
        for e, count in enumerate(counts):
            if count:
                outputs.append(self.mlp(rows[begin:begin + count], f"{p}experts.{e}."))
            begin += count
        done = torch.cat(outputs)
        mixed = torch.empty_like(done)
        mixed[order] = done
        mixed = (mixed.view(*idx.shape, -1).float() * weights[..., None]).sum(1).to(self.dtype)
        return mixed + self.mlp(x, p + "shared_experts.")

    def attention(self, x, p, cache, start, positions):
        n, h = x.shape[0], self.heads
        q = self.rms(x @ self.w[p + "q_a_proj.weight"].T, self.w[p + "q_a_layernorm.weight"])
        q = (q @ self.w[p + "q_b_proj.weight"].T).view(n, h, -1)
        q = torch.cat([q[..., :self.nope], self.rotate(q[..., self.nope:], positions)], -1)
        kv_a = x @ self.w[p + "kv_a_proj_with_mqa.weight"].T
        c_kv = self.rms(kv_a[:, :self.kv_rank], self.w[p + "kv_a_layernorm.weight"])
        k_pe = self.rotate(kv_a[:, None, self.kv_rank:], positions)
        kv = (c_kv @ self.w[p + "kv_b_proj.weight"].T).view(n, h, -1)
        k = torch.cat([kv[..., :self.nope], k_pe.expand(n, h, self.rope_dim)], -1)
        keys, values = cache
        keys[start:start + n], values[start:start + n] = k, kv[..., self.nope:]
        scores = torch.einsum("thd,shd->hts", q, keys[:start + n]) * self.scale
        mask = torch.arange(start + n)[None, :] > positions[:, None]
        scores = scores.masked_fill(mask[None], float("-inf")).float().softmax(-1).to(self.dtype)
        o = torch.einsum("hts,shd->thd", scores, values[:start + n]).reshape(n, -1)
        return o @ self.w[p + "o_proj.weight"].T

    def forward(self, ids, cache, start):
        positions = torch.arange(start, start + len(ids))
        h = self.w["model.embed_tokens.weight"][torch.tensor(ids)]
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = h + self.attention(self.rms(h, self.w[p + "input_layernorm.weight"]),
                                   p + "self_attn.", cache[i], start, positions)
            y = self.rms(h, self.w[p + "post_attention_layernorm.weight"])
            moe = i >= self.cfg.get("first_k_dense_replace", 0) and self.experts
            h = h + (self.moe(y, p + "mlp.") if moe else self.mlp(y, p + "mlp."))
        return (self.rms(h, self.w["model.norm.weight"]) @ self.lm_head.T).float()

    def new_cache(self, capacity):
        k = (capacity, self.heads, self.nope + self.rope_dim)
        v = (capacity, self.heads, self.v_dim)
        return [(torch.zeros(k, dtype=self.dtype), torch.zeros(v, dtype=self.dtype))
                for _ in range(self.cfg["num_hidden_layers"])]


def check(model, folder):
    """The peer computes the model: its f32 logits match the float64 reference."""
    from xfmr import reference

    ids = list(range(3, 19))
    expected = reference.load(str(folder))
    want = expected.forward(ids, expected.new_cache())
    got = model.forward(ids, model.new_cache(len(ids)), 0).double().numpy()
    error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    print(json.dumps({"max_relative_error": error}))
    return 0 if error < 1e-4 else 1


def main():
    parser = peer_parser(decode=32)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    model = DeepseekV3(args.checkpoint, torch_dtype(args))
    if args.check:
        with torch.inference_mode():
            sys.exit(check(model, args.checkpoint))
    time_generation(model, args)

if __name__ == "__main__":
    main()
