"""Serving throughput and latency: xfmr-serve against llama-server, in one run, on the same
synthetic checkpoint (the 500M bf16 Llama of bench/llama_cpp.py).

For 1, 4 and 16 concurrent clients, each client streams one completion (a prompt of
`--prompt` random token ids, `--tokens` generated tokens, greedy, end-of-sequence ignored)
through /v1/completions; the clients start together. Reported per level: aggregate
generated tokens per second (all tokens / wall time), time to first token and inter-token
latency (p50 and p99 over every client and token), measured by the clients. xfmr-serve runs
twice: with its paged KV cache (the default) and with whole caches (--no-paged-cache).
`--shared-prefix N` puts the same N random tokens before every client's prompt (a system
prompt): the levels run one after the other, so later ones can find it cached.

Usage: [XFMR_LLAMA_CPP=DIR] /usr/bin/python3 bench/serve.py [--threads 2] [--tokens 32]
       [--shared-prefix N]
DIR is a llama.cpp tree built outside this repository with build/bin/llama-server (and
the GGUF of bench/llama_cpp.py, which this script makes if needed). Without it, only xfmr
is measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp import cpu_description, to_gguf  # noqa: E402
from run import BIN, MODELS, checkpoint, log, run  # noqa: E402


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def stream_one(host, port, prompt, tokens, extra):
    """(submit time, first-token time, token times) of one streamed completion."""
    connection = http.client.HTTPConnection(host, port, timeout=600)
    body = dict(prompt=prompt, max_tokens=tokens, temperature=0, stream=True,
                ignore_eos=True, **extra)
    start = time.perf_counter()
    connection.request("POST", "/v1/completions", body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    times = []
    buffer = b""
    while True:
        chunk = response.read1(65536) if hasattr(response, "read1") else response.read(1)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if event.strip() == b"data: [DONE]":
                continue
            if event.startswith(b"data: "):
                data = json.loads(event[6:])
                if data.get("choices") and (data["choices"][0].get("text") or
                                            data["choices"][0].get("token_ids")):
                    times.append(time.perf_counter())
    connection.close()
    return start, times


def level(host, port, clients, prompt_len, tokens, vocab, extra, shared=0):
    rng = random.Random(clients)
    prefix = [random.Random(-1).randrange(3, vocab) for _ in range(shared)]
    prompts = [prefix + [rng.randrange(3, vocab) for _ in range(prompt_len)]
               for _ in range(clients)]
    results = [None] * clients
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, stream_one(host, port, prompts[i], tokens, extra))) for i in range(clients)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall
    ttft = [times[0] - start for start, times in results if times]
    itl = [b - a for _, times in results for a, b in zip(times, times[1:])]
    generated = sum(len(times) for _, times in results)
    return dict(clients=clients, tokens=generated, seconds=wall,
                tokens_per_second=generated / wall,
                ttft_p50=percentile(ttft, 0.5), ttft_p99=percentile(ttft, 0.99),
                itl_p50=percentile(itl, 0.5), itl_p99=percentile(itl, 0.99))


def start_server(command, pattern, port=None):
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    deadline = time.time() + 600
    for line in process.stderr:
        match = re.search(pattern, line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, port or int(match.group(1))
        if time.time() > deadline:
            break
    process.kill()
    raise RuntimeError(f"{command[0]} did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--shared-prefix", type=int, default=0)
    parser.add_argument("--json", default=str(Path(__file__).with_name("serve.json")))
    args = parser.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    folder = checkpoint("llama-500m-bf16", "llama", "500m", "bf16")
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    context = 1024
    artifact = MODELS / "llama-500m-serve.xfmr"
    log("compiling xfmr")
    run([BIN / "xfmr-compile", folder, "-o", artifact, "--context", context])
    # One server at a time: a server that is still loading (llama-server listens before
    # its model is loaded) or idling must not share the machine with the one measured.
    xfmr = [str(BIN / "xfmr-serve"), str(artifact), "--port", "0", "-t", str(args.threads),
            "--max-sequences", str(max(levels)), "--max-queue", "0"]
    ready = r"serving .* on http://[\d.]+:(\d+)"
    engines = [("xfmr-serve", xfmr, ready, None, {}),
               ("xfmr-serve (whole caches)", xfmr + ["--no-paged-cache"], ready, None, {})]
    llama = os.environ.get("XFMR_LLAMA_CPP")
    server = Path(llama) / "build" / "bin" / "llama-server" if llama else None
    if server and server.exists():
        gguf = MODELS / "llama-500m-bf16.gguf"
        if not gguf.exists():
            log("converting to GGUF (BF16) with llama.cpp's gguf-py")
            to_gguf(folder, gguf, Path(llama) / "gguf-py")
        llama_port = 18000 + os.getpid() % 1000
        engines.append(("llama-server", [
            str(server), "-m", str(gguf), "--port", str(llama_port), "-t", str(args.threads),
            "-np", str(max(levels)), "-cb", "-c", str(context * max(levels))],
            r"(main loop|all slots are idle)", llama_port, {"n_predict": args.tokens}))
    else:
        log("XFMR_LLAMA_CPP/build/bin/llama-server not found: llama-server skipped")
    results = {}
    for name, command, ready, fixed_port, extra in engines:
        process, port = start_server(command, ready, fixed_port)
        try:
            # One request first: what a server does once (page faults, thread pools) is
            # not part of the levels.
            level("127.0.0.1", port, 1, args.prompt, 4, vocab, extra)
            for clients in levels:
                log(f"{name}: {clients} concurrent client(s)")
                results[(name, clients)] = level("127.0.0.1", port, clients, args.prompt,
                                                 args.tokens, vocab, extra,
                                                 args.shared_prefix)
        finally:
            process.terminate()
            process.wait(timeout=120)
    lines = [f"CPU: {cpu_description()}; {args.threads} threads; prompt "
             f"{args.shared_prefix} shared + {args.prompt} own tokens, "
             f"{args.tokens} generated per client", "",
             "| server | clients | tokens/s (aggregate) | vs 1 client | TTFT p50 | TTFT p99 "
             "| ITL p50 | ITL p99 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (name, clients), r in results.items():
        one = results[(name, levels[0])]["tokens_per_second"]
        lines.append(f"| {name} | {clients} | {r['tokens_per_second']:.1f} "
                     f"| {r['tokens_per_second'] / one:.2f}x "
                     f"| {1000 * r['ttft_p50']:.0f} ms | {1000 * r['ttft_p99']:.0f} ms "
                     f"| {1000 * r['itl_p50']:.0f} ms | {1000 * r['itl_p99']:.0f} ms |")
    print("\n".join(lines))
    Path(args.json).write_text(json.dumps(
        {"cpu": cpu_description(), "threads": args.threads,
         "shared_prefix": args.shared_prefix, "prompt": args.prompt, "tokens": args.tokens,
         "results": [dict(server=k[0], **v) for k, v in results.items()]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
