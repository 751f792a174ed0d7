"""xfmr against llama.cpp on the CPU, in one run, on the same synthetic checkpoint.

The 500M synthetic Llama (hidden 1536, 16 layers, 12 heads, 4 KV heads, ffn 4096, vocab
32000, bf16) is converted to GGUF with llama.cpp's own gguf-py (BF16, then Q8_0 with
llama-quantize, and Q4_0) and measured with llama-bench; xfmr compiles the same checkpoint
(bf16, bf16 --precise, FP8, int8 W8A8, int4 W4A8) and measures with xfmr-bench. Both tools prefill random ids in a fresh
context (ppN) and decode N tokens after one (tgN); their runs alternate, rounds times, and
every sample counts.

Usage: XFMR_LLAMA_CPP=DIR /usr/bin/python3 bench/llama_cpp.py [--threads 2] [--reps 3]
           [--rounds 2] [--prompts 512] [--decode 128] [--json OUT]
           [--only "int4,Q4_0"]
DIR is a llama.cpp source tree built outside this repository (never committed), with
build/bin/llama-bench and build/bin/llama-quantize (docs/performance.md says how). Without
XFMR_LLAMA_CPP the llama.cpp rows are skipped, and the script says so. Needs
`scripts/setup.sh --bench` (gguf-py imports sentencepiece and yaml).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, MODELS, REPO, checkpoint, log, run  # noqa: E402

sys.path.insert(0, str(REPO / "python"))


def to_gguf(folder: Path, out: Path, gguf_py: Path) -> None:
    """Writes the Llama checkpoint `folder` as a BF16 GGUF file, as llama.cpp's
    convert_hf_to_gguf.py lays it out (tensor names, q/k rows permuted for its rotary
    pairing), with a placeholder vocabulary: llama-bench feeds token ids, never text."""
    sys.path.insert(0, str(gguf_py))
    import gguf  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from xfmr.safetensors import SafetensorsFolder  # noqa: PLC0415

    config = json.loads((folder / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    vocab = config["vocab_size"]
    files = SafetensorsFolder(str(folder))

    def bf16(name, permute_heads=None):
        w = np.asarray(files.get(name, np.float32))
        if permute_heads:  # convert_hf_to_gguf.py's LlamaModel.permute
            w = (w.reshape(permute_heads, 2, w.shape[0] // permute_heads // 2, *w.shape[1:])
                 .swapaxes(1, 2).reshape(w.shape))
        # Values are bf16 already: the upper halves of their f32 patterns.
        return (np.ascontiguousarray(w).view(np.uint32) >> 16).astype(np.uint16)

    def f32(name):
        return np.asarray(files.get(name, np.float32), np.float32)

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("xfmr synthetic llama 500m")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    writer.add_tokenizer_model("llama")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"t{i}" for i in range(len(tokens), vocab)]
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * vocab)
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (vocab - 259)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    BF16 = gguf.GGMLQuantizationType.BF16
    writer.add_tensor("token_embd.weight", bf16("model.embed_tokens.weight"), raw_dtype=BF16)
    writer.add_tensor("output_norm.weight", f32("model.norm.weight"))
    writer.add_tensor("output.weight", bf16("lm_head.weight"), raw_dtype=BF16)
    for i in range(layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", f32(p + "input_layernorm.weight"))
        writer.add_tensor(f"blk.{i}.attn_q.weight",
                          bf16(p + "self_attn.q_proj.weight", heads), raw_dtype=BF16)
        writer.add_tensor(f"blk.{i}.attn_k.weight",
                          bf16(p + "self_attn.k_proj.weight", kv_heads), raw_dtype=BF16)
        writer.add_tensor(f"blk.{i}.attn_v.weight", bf16(p + "self_attn.v_proj.weight"),
                          raw_dtype=BF16)
        writer.add_tensor(f"blk.{i}.attn_output.weight", bf16(p + "self_attn.o_proj.weight"),
                          raw_dtype=BF16)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", f32(p + "post_attention_layernorm.weight"))
        for ours, theirs in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"),
                             ("down_proj", "ffn_down")):
            writer.add_tensor(f"blk.{i}.{theirs}.weight", bf16(p + f"mlp.{ours}.weight"),
                              raw_dtype=BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def cpu_description() -> str:
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "?")
    flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    wanted = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16",
              "amx_int8"]
    return f"{model}, {os.cpu_count()} cores; " + ", ".join(f for f in wanted if f in flags)


def samples(rows, test):
    return next(r["samples_ts"] for r in rows if r["test"] == test)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per tool call")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--prompts", default="512", help="prompt lengths, comma separated")
    parser.add_argument("--decode", type=int, default=128)
    parser.add_argument("--json", default=str(REPO / "bench" / "llama_cpp.json"))
    parser.add_argument("--only", default="",
                        help="comma-separated substrings: run only the engines whose label "
                             "or weights contain one (llama.cpp BF16 always runs: the "
                             "ratios' reference)")
    args = parser.parse_args()
    wanted = [w for w in args.only.split(",") if w]

    def selected(label, weights):
        return not wanted or (label, weights) == ("llama.cpp", "BF16") or any(
            w in label or w in weights for w in wanted)
    prompts = [int(p) for p in args.prompts.split(",")]
    tests = [f"pp{p}" for p in prompts] + [f"tg{args.decode}"]

    folder = checkpoint("llama-500m-bf16", "llama", "500m", "bf16")
    context = max(prompts) + args.decode + 16
    engines = []  # (label, weights, command that prints llama-bench-style JSON)
    for label, flags in [("xfmr", []), ("xfmr --precise", ["--precise"]),
                         ("xfmr --quantize fp8", ["--quantize", "fp8"]),
                         ("xfmr --quantize int8", ["--quantize", "int8"]),
                         ("xfmr --quantize int4", ["--quantize", "int4"])]:
        weights = ("FP8 E4M3 128x128" if "fp8" in label
                   else "int8 W8A8" if "int8" in label
                   else "int4 g32 (int8 head)" if "int4" in label else "bf16")
        if not selected(label, weights):
            continue
        artifact = MODELS / f"llama-500m-{label.replace(' ', '').replace('-', '')}.xfmr"
        log(f"compiling {label}")
        run([BIN / "xfmr-compile", folder, "-o", artifact, "--context", context, *flags])
        engines.append((label, weights, [BIN / "xfmr-bench", artifact, "-p", args.prompts,
                                         "-n", args.decode, "-r", args.reps,
                                         "-t", args.threads, "-o", "json"]))
    llama = os.environ.get("XFMR_LLAMA_CPP")
    if llama:
        llama = Path(llama)
        bench = llama / "build" / "bin" / "llama-bench"
        bf16_gguf = MODELS / "llama-500m-bf16.gguf"
        q8_gguf = MODELS / "llama-500m-q8_0.gguf"
        if not bf16_gguf.exists():
            log("converting to GGUF (BF16) with llama.cpp's gguf-py")
            to_gguf(folder, bf16_gguf, llama / "gguf-py")
        q4_gguf = MODELS / "llama-500m-q4_0.gguf"
        for gguf, kind in ((q8_gguf, "Q8_0"), (q4_gguf, "Q4_0")):
            if not gguf.exists() and selected("llama.cpp", kind):
                log(f"quantizing to {kind} with llama-quantize")
                run([llama / "build" / "bin" / "llama-quantize", bf16_gguf, gguf, kind])
        for name, model in [("BF16", bf16_gguf), ("Q8_0", q8_gguf), ("Q4_0", q4_gguf)]:
            if not selected("llama.cpp", name):
                continue
            engines.append(("llama.cpp", name, [bench, "-m", model, "-p", args.prompts,
                                               "-n", args.decode, "-r", args.reps,
                                               "-t", args.threads, "-o", "json"]))
    else:
        log("XFMR_LLAMA_CPP is not set: llama.cpp skipped")

    results = {(label, weights): {t: [] for t in tests} for label, weights, _ in engines}
    for round_ in range(args.rounds):
        for label, weights, command in engines:
            log(f"round {round_ + 1}/{args.rounds}: {label} {weights}")
            rows = json.loads(run(command).stdout)
            for row in rows:
                row["test"] = row.get("test") or (f"pp{row['n_prompt']}" if row["n_prompt"]
                                                  else f"tg{row['n_gen']}")
            for t in tests:
                results[(label, weights)][t] += samples(rows, t)

    def mean(key, t):
        return statistics.mean(results[key][t])

    peers = [("llama.cpp", w) for w in ("BF16", "Q8_0", "Q4_0")
             if ("llama.cpp", w) in results]
    header = "| engine | weights | " + " | ".join(tests) + " |"
    ratios = [f"{t} vs llama.cpp {w}" for t in tests for _, w in peers]
    lines = [f"CPU: {cpu_description()}; {args.threads} threads; "
             f"{args.rounds} rounds x {args.reps} repetitions (tokens/s, mean ± sd)", "",
             header[:-1] + "".join(f"| {r} " for r in ratios) + "|",
             "| --- | --- |" + " ---: |" * (len(tests) + len(ratios))]
    for key in results:
        cells = []
        for t in tests:
            values = results[key][t]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {sd:.1f}")
        for t in tests:
            for peer in peers:
                cells.append(f"{mean(key, t) / mean(peer, t):.2f}x")
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    Path(args.json).write_text(json.dumps(
        {"cpu": cpu_description(), "threads": args.threads,
         "results": [{"engine": k[0], "weights": k[1], "samples": v}
                     for k, v in results.items()]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
