#!/usr/bin/env python3
"""Seeds, replays and runs xfmr's fuzz targets.

    run_fuzzers.py --bin BUILD/bin --work DIR --replay        # every build (ctest fuzz-replay)
    run_fuzzers.py --bin BUILD/bin --work DIR --fuzz SECONDS   # sanitizer build, in .ci/run
    (--jobs N runs N targets side by side)

--replay runs every seed and every regression input once through each target (a libFuzzer
binary with -runs=0, or a ReplayMain build). --fuzz then runs each libFuzzer target for
SECONDS, starting from the seeds, the regressions and what earlier runs in DIR found; a
crash fails the run and leaves the input in DIR/crashes/: copy it into
test/fuzz/regressions/<target>/ with the fix that makes it pass.

Seeds are generated (not committed): valid inputs of each kind from the project's own
generator and compiler, and the bad inputs that were found by hand (docs/reliability.md),
which the fuzzers' own small inputs never reached: JSON nested 60,000 deep, manifests that
lie about sizes or name libc's system() as an entry point, a thread count of 100000, ...
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "test" / "Import" / "Inputs"))

TARGETS = ["fuzz-safetensors", "fuzz-config", "fuzz-artifact", "fuzz-json",
           "fuzz-tokenizer", "fuzz-chat-template", "fuzz-run-options", "fuzz-compile-options", "fuzz-ir",
           "fuzz-serve-request"]

DEEP_JSON = '{"a": ' + "[" * 60000 + "]" * 60000 + "}"


def write(folder: Path, name: str, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def argv(*args: str) -> bytes:
    return b"\0".join(a.encode() for a in args)


def manifest_of(artifact: bytes):
    offset, size = struct.unpack_from("<QQ", artifact, 16)
    return offset, size, json.loads(artifact[offset:offset + size])


def with_manifest(artifact: bytes, edit) -> bytes:
    """The artifact with an edited manifest, sections laid out again (the checksum trailer
    is kept as it was: the artifact fuzzer reaches the manifest without it)."""
    (magic, version, reserved, m_off, m_size, w_off, w_size, c_off, c_size,
     file_size) = struct.unpack_from("<8sII7Q", artifact, 0)
    manifest = json.loads(artifact[m_off:m_off + m_size])
    edit(manifest)
    text = json.dumps(manifest).encode()
    align = lambda x: (x + 4095) // 4096 * 4096  # noqa: E731
    new_w_off = align(4096 + len(text))
    new_c_off = align(new_w_off + w_size)
    trailer = artifact[file_size - 40:file_size]
    header = struct.pack("<8sII7Q", magic, version, reserved, 4096, len(text), new_w_off,
                         w_size, new_c_off, c_size, new_c_off + c_size + 40)
    out = bytearray(new_c_off + c_size + 40)
    out[:len(header)] = header
    out[4096:4096 + len(text)] = text
    out[new_w_off:new_w_off + w_size] = artifact[w_off:w_off + w_size]
    out[new_c_off:new_c_off + c_size] = artifact[c_off:c_off + c_size]
    out[new_c_off + c_size:] = trailer
    return bytes(out)


def make_seeds(bin_dir: Path, seeds: Path) -> None:
    from xfmr import synth
    import make_bad_checkpoints

    scratch = Path(tempfile.mkdtemp(prefix="xfmr-fuzz-seeds-"))
    try:
        # Checkpoints: one valid per architecture, and the broken-checkpoint corpus.
        configs, weights = seeds / "fuzz-config", seeds / "fuzz-safetensors"
        for arch in ("llama", "mistral", "qwen2", "mixtral", "deepseek_v3"):
            folder = scratch / arch
            synth.generate(str(folder), arch, progress=False)
            write(configs, arch + ".json", (folder / "config.json").read_bytes())
            write(weights, arch + ".safetensors", (folder / "model.safetensors").read_bytes())
        bad = scratch / "bad"
        make_bad_checkpoints.main(str(bad))
        for case in sorted(bad.iterdir()):
            config, tensors = case / "config.json", case / "model.safetensors"
            if config.is_file():
                write(configs, "bad-" + case.name + ".json", config.read_bytes())
            if tensors.is_file():
                write(weights, "bad-" + case.name + ".safetensors", tensors.read_bytes())
        write(configs, "deep-nesting.json", DEEP_JSON)
        write(configs, "huge-context.json", json.dumps(dict(
            json.loads((scratch / "llama" / "config.json").read_text()),
            max_position_embeddings=4611686018427387904)))

        # Artifacts: a real one, and manifests that lie (found by hand).
        artifacts, texts = seeds / "fuzz-artifact", seeds / "fuzz-json"
        compiled = scratch / "llama.xfmr"
        subprocess.run([str(bin_dir / "xfmr-compile"), str(scratch / "llama"), "--context",
                        "64", "-o", str(compiled)], check=True, capture_output=True)
        good = compiled.read_bytes()
        write(artifacts, "llama.xfmr", good)
        lies = {
            "entry-system": lambda m: m["entry_points"].__setitem__("decode", "system"),
            "cache-4096": lambda m: m["kv_cache"].__setitem__("bytes", 4096),
            "vocab-16": lambda m: m["model"].__setitem__("vocab_size", 16),
            "vocab-100000": lambda m: m["model"].__setitem__("vocab_size", 100000),
            "context-100000": lambda m: m["model"].__setitem__("context_length", 100000),
            "cpu-diamondrapids": lambda m: m["target"].update(
                cpu="diamondrapids", features="+amx-tile,+avx10.2,+avx512fp16"),
            "format-1": lambda m: m.__setitem__("format_version", 1),
        }
        for name, edit in lies.items():
            write(artifacts, name + ".xfmr", with_manifest(good, edit))
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0x40
        write(artifacts, "flipped-byte.xfmr", bytes(flipped))
        write(artifacts, "truncated.xfmr", good[:5000])
        write(texts, "manifest.json", json.dumps(manifest_of(good)[2]))
        write(texts, "config.json", (scratch / "deepseek_v3" / "config.json").read_bytes())
        write(texts, "deep-nesting.json", DEEP_JSON)
        write(texts, "escapes.json", '{"a\\u00e9\\n": [1e308, -0.0, true, null, "\\ud83d\\ude00"]}')

        # Tokenizer files, a NUL, and a text: a small byte-level BPE tokenizer.json with
        # every supported component, and broken variants.
        tokenizers = seeds / "fuzz-tokenizer"
        byte_chars = [chr(b) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255 else None
                      for b in range(256)]
        extra = iter(range(256, 512))
        byte_chars = [c or chr(next(extra)) for c in byte_chars]
        vocab = {c: i for i, c in enumerate(byte_chars)}
        vocab.update({"\u0120t": 256, "he": 257, "\u0120the": 258})
        small = {
            "added_tokens": [{"id": 259, "content": "<|end|>", "special": True,
                              "lstrip": True, "rstrip": False, "single_word": False,
                              "normalized": False},
                             {"id": 260, "content": "caf\u00e9", "special": False,
                              "lstrip": False, "rstrip": True, "single_word": True,
                              "normalized": True}],
            "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"},
                 "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<|end|>", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "special_tokens": {"<|end|>": {"id": "<|end|>", "ids": [259]}}},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab,
                      "merges": ["\u0120 t", ["h", "e"], "\u0120t he"]},
        }
        text = "the 12345 <|end|> caf\u00e9 \U0001F600 \xff".encode("utf-8", "surrogateescape")
        write(tokenizers, "bpe", json.dumps(small).encode() + b"\0" + text)
        for name, edit in {
            "bad-regex": lambda t: t["pre_tokenizer"]["pretokenizers"][0]["pattern"]
                                   .__setitem__("Regex", "(["),
            "merge-outside": lambda t: t["model"]["merges"].append("zz qq"),
            "template-unknown": lambda t: t["post_processor"].__setitem__("special_tokens", {}),
            "negative-id": lambda t: t["added_tokens"][0].__setitem__("id", -5),
        }.items():
            broken = json.loads(json.dumps(small))
            edit(broken)
            write(tokenizers, name, json.dumps(broken).encode() + b"\0" + text)
        write(tokenizers, "not-sentencepiece", b"\x0a\x05hello\0text")

        # Chat templates, a NUL, and the messages (JSON): the shapes of real templates
        # (Llama-3, DeepSeek-V3, Qwen3 use these constructs), and ones that must fail
        # cleanly: deep nesting, long operator chains, runaway loops, self-holding
        # namespaces.
        templates = seeds / "fuzz-chat-template"
        conversation = json.dumps([
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \u00e9"},
            {"role": "assistant", "content": "<think>\nr\n</think>\n\nHello",
             "tool_calls": [{"type": "function", "function": {"name": "f",
                                                              "arguments": {"a": 1.5}}}]},
            {"role": "tool", "content": "42"}]).encode()
        for name, source in {
            "llama3-like": "{% set loop_messages = messages %}{% for message in loop_messages %}"
                           "{% set content = '<|start_header_id|>' + message['role'] + "
                           "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
                           "{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
                           "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
                           "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
            "namespace-and-methods":
                "{%- set ns = namespace(last=messages|length - 1, sys='') %}\n"
                "{%- for m in messages[::-1] if m.role != 'tool' %}\n"
                "  {%- if m.content is string and '</think>' in m.content %}"
                "{{ m.content.split('</think>')[-1].lstrip('\\n') }}{% endif %}\n"
                "  {%- if m.tool_calls %}{% for c in m.tool_calls %}{{ c.function.arguments|tojson"
                "(indent=2) }}{% endfor %}{% endif %}\n"
                "  {%- set ns.sys = ns.sys ~ m.role[0]|upper %}{% if loop.last %}{% break %}"
                "{% endif %}\n{%- endfor %}{{ ns.sys }}{# done #}{% raw %}{{ x }}{% endraw %}",
            "filters": "{{ messages|selectattr('role', 'eq', 'user')|map(attribute='content')"
                       "|join(', ') }}{{ range(3)|list|sum }}{{ 'a b'.split()|reverse|first }}"
                       "{{ {'b': 1, 'a': 2}|dictsort }}{{ 2.567|round(2) }}{{ -7 // 2 }}",
            "raise": "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation "
                     "roles must alternate') }}{% endif %}",
            "deep-parens": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
            "long-chain": "{{ 1" + " + 1" * 5000 + " }}",
            "deep-ifs": "{% if true %}" * 3000 + "x" + "{% endif %}" * 3000,
            "runaway-loop": "{% for i in range(1000000) %}{% for j in range(1000000) %}"
                            "{% endfor %}{% endfor %}",
            "self-namespace": "{% set ns = namespace(a=1) %}{% set ns.me = [ns] %}{{ ns }}",
            "nested-lists": "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}"
                            "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|length }}",
            "huge-string": "{{ 'x' * 1000000000 }}{{ ('ab' * 100000) * 100000 }}",
            "unterminated": "{% for m in messages %}{{ m.content",
            "macros": "{% macro show(v, depth=0) %}{% if v is mapping %}{% for k, x in "
                      "v.items() %}{{ k }}={{ show(x, depth + 1) }}{% endfor %}{% else %}"
                      "{{ v }}{% endif %}{% endmacro %}{% for m in messages %}"
                      "{{ show(m) }}{% endfor %}",
            "macro-recursion": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
        }.items():
            write(templates, name, source.encode() + b"\0" + conversation)
        write(templates, "bad-messages", b"{{ messages[0].content }}\0[1, [2]]")

        # Command lines (arguments separated by NUL bytes).
        runs = seeds / "fuzz-run-options"
        write(runs, "basic", argv("model.xfmr", "--prompt-ids", "1 2 3", "-n", "8"))
        write(runs, "sampled", argv("m.xfmr", "--prompt-ids=1,2", "-n", "4", "--temperature",
                                    "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "7",
                                    "--stats", "--dump-logits", "x.npy", "--no-verify"))
        write(runs, "threads-100000", argv("m.xfmr", "--prompt-ids", "1", "-n", "1",
                                           "--threads", "100000"))
        write(runs, "empty-id-field", argv("m.xfmr", "--prompt-ids", "1,,2", "-n", "1"))
        write(runs, "huge-id", argv("m.xfmr", "--prompt-ids", "99999999999", "-n", "1"))
        write(runs, "text", argv("m.xfmr", "--prompt", "Hello", "--tokenizer", "t.json",
                                 "--stop", "\n", "--stop=User:", "--output", "ids",
                                 "--ignore-eos", "-n", "8"))
        write(runs, "chat", argv("m.xfmr", "--chat", "--system", "Be brief.", "--prompt", "Hi",
                                 "--chat-template", "t.jinja", "--stop", "User:", "-n", "16"))
        write(runs, "chat-conflict", argv("m.xfmr", "--chat", "--prompt-ids", "1", "-n", "1"))
        # xfmr-serve: 'c' completions and 'h' chat bodies, 'o' command lines.
        serves = seeds / "fuzz-serve-request"
        for name, body in {
            "ids": {"model": "model", "prompt": [1, 2, 3], "max_tokens": 4,
                    "temperature": 0},
            "text-stream": {"prompt": "Hello", "stream": True, "stop": ["\n", "x"],
                            "stream_options": {"include_usage": True}, "seed": 3},
            "sampling": {"prompt": [[5, 6]], "top_p": 0.5, "top_k": -1, "temperature": 0.7,
                         "n": 1, "ignore_eos": True},
            "bad-fields": {"prompt": [1], "max_tokens": -1, "logprobs": 2, "n": 3,
                           "presence_penalty": 0.5, "top_k": 1e30},
            "huge-ids": {"prompt": [2 ** 40, -5, 1.5]},
        }.items():
            write(serves, name, b"c" + json.dumps(body).encode())
        for name, body in {
            "chat": {"messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                     "tools": [{"type": "function", "function": {"name": "f"}}],
                     "chat_template_kwargs": {"enable_thinking": False}, "stream": True},
            "chat-bad": {"messages": [{"content": 3}, 5], "max_completion_tokens": 0},
        }.items():
            write(serves, name, b"h" + json.dumps(body).encode())
        write(serves, "options", b"o" + argv("m.xfmr", "--host", "0.0.0.0", "--port", "0",
                                             "--max-sequences", "16", "--max-queue", "0",
                                             "-t", "2", "--model-name", "m", "--no-verify",
                                             "--api-key", "k"))
        write(serves, "options-bad", b"o" + argv("--port", "99999", "a", "b"))
        compiles = seeds / "fuzz-compile-options"
        # Fields: model, output, target, cpu, context, quantize, quantize options,
        # kv-cache, mla-cache, mla-absorb, moe, kv-window, kv-sinks, -O, weights.
        write(compiles, "defaults", argv("m", "o.xfmr", "cpu", "x86-64-v2", "0", "", "", "",
                                         "", "", "", "0", "0", "3", ""))
        write(compiles, "fp8-latent", argv("m", "o.xfmr", "cpu", "znver4", "4096", "fp8",
                                           "granularity=channel", "fp8", "latent",
                                           "compile-time", "sparse", "512", "4", "2", ""))
        write(compiles, "found-by-hand", argv("m", "o", "cpu", "diamondrapids",
                                              "4611686018427387904", "", "", "int4", "", "",
                                              "foo", "-1", "4", "9", "w"))
        write(compiles, "bad-cpu", argv("m", "o", "gfx942", "nope"))

        # IR: the dialect tests, split like -split-input-file, and a deep nesting.
        ir = seeds / "fuzz-ir"
        for path in sorted((REPO / "test" / "Dialect" / "Xfmr").glob("*.mlir")):
            for i, chunk in enumerate(path.read_text().split("// -----")):
                write(ir, f"{path.stem}-{i}.mlir", chunk)
        write(ir, "deep-nesting.mlir",
              "func.func @f() attributes {a = " + "[" * 60000 + "]" * 60000 + "} { return }")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def inputs(target: str, work: Path):
    folders = [work / "seeds" / target, HERE / "regressions" / target]
    return [str(f) for f in folders if f.is_dir() and any(f.iterdir())]


def run_target(target: str, args) -> bool:
    """Replays and/or fuzzes one target; prints what it did, once it is done (targets run
    side by side with --jobs). False when it failed or crashed."""
    binary = args.bin / target
    if not binary.exists():
        print(f"{target}: not built, skipped", flush=True)
        return True
    lines, ok = [], True
    if args.replay:
        done = subprocess.run([str(binary), "-runs=0", *inputs(target, args.work)],
                              capture_output=True, text=True)
        count = sum(1 for f in inputs(target, args.work) for p in Path(f).rglob("*")
                    if p.is_file())
        lines.append(f"{target}: replayed {count} inputs: "
                     f"{'ok' if done.returncode == 0 else 'FAILED'}")
        if done.returncode != 0:
            lines.append(done.stderr[-4000:])
            ok = False
    if args.fuzz > 0:
        corpus = args.work / "corpus" / target
        corpus.mkdir(parents=True, exist_ok=True)
        crashes = args.work / "crashes"
        crashes.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(binary), f"-max_total_time={args.fuzz}", "-timeout=20",
             "-rss_limit_mb=4096", "-print_final_stats=1",
             f"-artifact_prefix={crashes}/{target}-", str(corpus),
             *inputs(target, args.work)],
            capture_output=True, text=True)
        stats = [line for line in done.stderr.splitlines()
                 if line.startswith("stat::number_of_executed_units")]
        runs = stats[-1].split(":")[-1].strip() if stats else "?"
        lines.append(f"{target}: fuzzed {args.fuzz} s, {runs} runs: "
                     f"{'ok' if done.returncode == 0 else 'CRASH'}")
        if done.returncode != 0:
            lines.append(done.stderr[-6000:])
            ok = False
    print("\n".join(lines), flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, type=Path, help="folder of the built targets")
    parser.add_argument("--work", required=True, type=Path, help="seeds, corpora, crashes")
    parser.add_argument("--replay", action="store_true", help="run every input once")
    parser.add_argument("--fuzz", type=int, default=0, metavar="SECONDS",
                        help="fuzz each target this long (libFuzzer builds)")
    parser.add_argument("--targets", nargs="*", default=TARGETS)
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="targets run side by side (default 1)")
    args = parser.parse_args()

    # See scripts/sanitize.sh: LLVM's allocator annotations are only half
    # compiled in when xfmr is instrumented and libMLIR.so is not.
    os.environ.setdefault("ASAN_OPTIONS", "allow_user_poisoning=0:detect_leaks=1")
    seeds = args.work / "seeds"
    if seeds.exists():
        shutil.rmtree(seeds)
    make_seeds(args.bin, seeds)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda target: run_target(target, args), args.targets))
    failed = [target for target, ok in zip(args.targets, results) if not ok]
    if failed:
        print(f"failed: {', '.join(failed)}; inputs in {args.work / 'crashes'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
