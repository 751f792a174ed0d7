"""What the PyTorch peers share: RMSNorm as Hugging Face computes it, and the timing (a
warm-up, a timed prefill of a fixed prompt, then timed greedy decode steps through the
model's KV cache)."""
import argparse
import json
import time

import torch


def peer_parser(decode):
    """The command line both peers take (CHECKPOINT --dtype --threads --prompt --decode)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--decode", type=int, default=decode)
    return parser


def torch_dtype(args):
    """Sets the thread count and returns the dtype the arguments ask for."""
    torch.set_num_threads(args.threads)
    return torch.bfloat16 if args.dtype == "bf16" else torch.float32


def rms_norm(x, weight, eps):
    """In f32, then back to x's dtype, times the weight."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return x32.to(x.dtype) * weight


def time_generation(model, args):
    """Prints one JSON object with the peer, threads, prefill and decode tokens/s. `model`
    has cfg, forward(ids, cache, start) -> logits and new_cache(capacity)."""
    prompt = [(7 * i + 3) % model.cfg["vocab_size"] for i in range(args.prompt)]
    with torch.inference_mode():
        model.forward(prompt[:8], model.new_cache(16), 0)  # warm-up
        cache = model.new_cache(args.prompt + args.decode)
        begin = time.perf_counter()
        logits = model.forward(prompt, cache, 0)
        prefill = time.perf_counter() - begin
        token, begin = int(logits[-1].argmax()), time.perf_counter()
        for step in range(args.decode):
            token = int(model.forward([token], cache, args.prompt + step)[0].argmax())
        decode = time.perf_counter() - begin
    print(json.dumps({"peer": f"pytorch {torch.__version__} eager {args.dtype}",
                      "threads": args.threads,
                      "prefill_tokens_per_s": args.prompt / prefill,
                      "decode_tokens_per_s": args.decode / decode}))
