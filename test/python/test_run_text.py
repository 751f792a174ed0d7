"""xfmr-run with text (issue 17): text prompts encoded by the tokenizer, text streamed as it
is generated, the end-of-sequence token and stop strings. A tiny synthetic Llama whose
vocabulary matches GPT-2's tokenizer (../shared/tokenizers; skipped when absent) runs the
model; GPT-2's tokenizer and the ids output are the oracles."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, tool

GPT2 = REPO.parent / "shared" / "tokenizers" / "gpt2" / "tokenizer.json"
LLAMA2 = REPO.parent / "shared" / "tokenizers" / "llama2" / "tokenizer.model"
PROMPT = "Once upon a time, in a land far away"


@pytest.fixture(scope="module")
def gpt2_model(tmp_path_factory):
    if not GPT2.exists():
        pytest.skip(f"{GPT2} not found (shared tokenizers absent)")
    from xfmr import synth  # noqa: PLC0415
    folder = tmp_path_factory.mktemp("gpt2_vocab")
    synth.generate(str(folder / "ckpt"), "llama", preset="tiny",
                   overrides={"vocab_size": 50257})
    compile_with_eos(folder, eos=2)
    return folder


def compile_with_eos(folder: Path, eos: int) -> Path:
    config = folder / "ckpt" / "config.json"
    values = json.loads(config.read_text())
    values["eos_token_id"] = eos
    config.write_text(json.dumps(values))
    artifact = folder / f"eos{eos}.xfmr"
    if not artifact.exists():
        subprocess.run([tool("xfmr-compile"), str(folder / "ckpt"), "-o", str(artifact)],
                       check=True, capture_output=True)
    return artifact


def run(*args, stdin=None, check=True):
    argv = [a if isinstance(a, bytes) else str(a) for a in args]
    out = subprocess.run([tool("xfmr-run"), *argv], input=stdin, capture_output=True)
    if check:
        assert out.returncode == 0, out.stderr.decode()
    return out


def tokenize(*args, stdin: bytes) -> bytes:
    return subprocess.run([tool("xfmr-tokenize"), str(GPT2), *args], input=stdin,
                          capture_output=True, check=True).stdout


def test_text_prompt_and_streamed_text_match_the_ids(gpt2_model):
    artifact = gpt2_model / "eos2.xfmr"
    prompt_ids = tokenize("--add-special", stdin=PROMPT.encode()).decode().split()
    ids = run(artifact, "--prompt-ids", " ".join(prompt_ids), "-n", 24).stdout.split()
    assert len(ids) == 24
    # The same prompt as text, ids out: the same tokens.
    assert run(artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24, "--output", "ids",
               "--ignore-eos").stdout.split() == ids
    # Text out: exactly the decode of those ids, byte for byte, nothing else.
    text = run(artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24,
               "--ignore-eos").stdout
    assert text == tokenize("--decode", stdin=b" ".join(ids))
    # --prompt-file and stdin give the same.
    prompt_file = gpt2_model / "prompt.txt"
    prompt_file.write_text(PROMPT)
    assert run(artifact, "--prompt-file", prompt_file, "--tokenizer", GPT2, "-n", 24,
               "--ignore-eos").stdout == text
    assert run(artifact, "--tokenizer", GPT2, "-n", 24, "--ignore-eos",
               stdin=PROMPT.encode()).stdout == text
    # Text for a --prompt-ids prompt.
    assert run(artifact, "--prompt-ids", " ".join(prompt_ids), "-n", 24, "--output", "text",
               "--tokenizer", GPT2, "--ignore-eos").stdout == text


def test_end_of_sequence_and_stop_strings_stop_generation(gpt2_model):
    artifact = gpt2_model / "eos2.xfmr"
    ids = run(artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24, "--output", "ids",
              "--ignore-eos").stdout.split()
    # A model whose end-of-sequence token is the 6th generated one (first seen there).
    k = next(i for i in range(5, len(ids)) if ids[i] not in ids[:i])
    eos_artifact = compile_with_eos(gpt2_model, int(ids[k]))
    text = run(eos_artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24).stdout
    assert text == tokenize("--decode", stdin=b" ".join(ids[:k]))
    assert run(eos_artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24,
               "--output", "ids").stdout.split() == ids[:k]
    # --ignore-eos keeps going; --prompt-ids with ids out keeps its exact count.
    assert run(eos_artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24,
               "--ignore-eos", "--output", "ids").stdout.split() == ids
    # Stop strings: the text before the first one, nothing after; a stop string that
    # spans tokens works, and one that never appears changes nothing.
    full = tokenize("--decode", stdin=b" ".join(ids))
    start = len(tokenize("--decode", stdin=b" ".join(ids[:3]))) - 2
    stop = full[start:start + 5]
    out = run(artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24, "--ignore-eos",
              "--stop", "never appears", "--stop", stop).stdout
    assert out == full[:full.find(stop)]
    ids_out = run(artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24,
                  "--ignore-eos", "--stop", stop, "--output", "ids").stdout.split()
    assert len(ids_out) < len(ids) and ids_out == ids[:len(ids_out)]
    # Without -n a text generation runs to the end of the context at most.
    out = run(artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "--output", "ids",
              "--ignore-eos").stdout.split()
    assert len(out) == 256 - len(tokenize("--add-special", stdin=PROMPT.encode()).split()) + 1


def test_sentencepiece_prompt_gets_bos(tmp_path):
    if not LLAMA2.exists():
        pytest.skip(f"{LLAMA2} not found (shared tokenizers absent)")
    from xfmr import synth  # noqa: PLC0415
    synth.generate(str(tmp_path / "ckpt"), "llama", preset="tiny",
                   overrides={"vocab_size": 32000})
    artifact = tmp_path / "m.xfmr"
    subprocess.run([tool("xfmr-compile"), str(tmp_path / "ckpt"), "-o", str(artifact)],
                   check=True, capture_output=True)
    ids = run(artifact, "--prompt", "Hello world", "--tokenizer", LLAMA2, "-n", 8,
              "--output", "ids", "--ignore-eos").stdout.split()
    assert ids == run(artifact, "--prompt-ids", "1 15043 3186", "-n", 8).stdout.split()


def test_text_errors(gpt2_model, tmp_path):
    artifact = gpt2_model / "eos2.xfmr"
    out = run(artifact, "--prompt", PROMPT, "-n", 4, check=False)
    assert out.returncode == 1 and b"--tokenizer" in out.stderr and out.stdout == b""
    out = run(artifact, "--prompt-ids", "1 2", "-n", 4, "--stop", "x", check=False)
    assert out.returncode == 1 and b"--stop needs a tokenizer" in out.stderr
    out = run(artifact, "--prompt", "", "--tokenizer", GPT2, check=False)
    assert out.returncode == 1 and b"prompt is empty" in out.stderr
    out = run(artifact, "--prompt-file", tmp_path / "missing.txt", "--tokenizer", GPT2,
              check=False)
    assert out.returncode == 1 and b"missing.txt" in out.stderr
    out = run(artifact, "--prompt", "x", "--tokenizer", tmp_path / "missing.json",
              check=False)
    assert out.returncode == 1 and b"missing.json" in out.stderr
    # A tokenizer with more tokens than the model's vocabulary.
    if LLAMA2.exists():
        from xfmr import synth  # noqa: PLC0415
        synth.generate(str(tmp_path / "small"), "llama", preset="tiny")
        small = tmp_path / "small.xfmr"
        subprocess.run([tool("xfmr-compile"), str(tmp_path / "small"), "-o", str(small)],
                       check=True, capture_output=True)
        out = run(small, "--prompt", "x", "--tokenizer", LLAMA2, check=False)
        assert out.returncode == 1 and b"more than the model's vocabulary" in out.stderr


def test_python_text_generation(gpt2_model):
    """Session.stream_text / generate_text give what xfmr-run prints, chunk for chunk."""
    import xfmr  # noqa: PLC0415
    artifact = gpt2_model / "eos2.xfmr"
    tokenizer = xfmr.Tokenizer(GPT2)
    expected = run(artifact, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24,
                   "--ignore-eos").stdout.decode("utf-8", "replace")
    session = xfmr.Session(str(artifact))
    chunks = list(session.stream_text(PROMPT, tokenizer, 24, ignore_eos=True))
    assert "".join(chunks) == expected and len(chunks) > 1
    session.reset()
    assert session.generate_text(PROMPT, GPT2, 24, ignore_eos=True) == expected
    session.reset()
    stop = expected[12:16]
    assert session.generate_text(PROMPT, tokenizer, 24, stop=[stop], ignore_eos=True) == \
        expected[:expected.find(stop)]
    session.reset()
    with pytest.raises(xfmr.InvalidArgumentError, match="empty"):
        session.generate_text("", tokenizer)
    with pytest.raises(xfmr.InvalidArgumentError, match="stop string"):
        session.generate_text(PROMPT, tokenizer, stop=[""])


def test_artifact_carries_its_tokenizer(gpt2_model, tmp_path):
    """xfmr-compile copies the checkpoint folder's tokenizer.json, tokenizer_config.json and
    generation_config.json into the artifact: text needs no --tokenizer, generation ends at
    any of generation_config's end-of-sequence ids, and xfmr-pack keeps it all."""
    import shutil  # noqa: PLC0415
    import xfmr  # noqa: PLC0415
    folder = tmp_path / "ckpt"
    shutil.copytree(gpt2_model / "ckpt", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, eos_token_id=2)))
    shutil.copy(GPT2, folder / "tokenizer.json")
    shutil.copy(GPT2.with_name("tokenizer_config.json"), folder / "tokenizer_config.json")
    base = gpt2_model / "eos2.xfmr"
    ids = run(base, "--prompt", PROMPT, "--tokenizer", GPT2, "-n", 24, "--output", "ids",
              "--ignore-eos").stdout.split()
    k = next(i for i in range(4, len(ids)) if ids[i] not in ids[:i])
    (folder / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [50256, int(ids[k])], "do_sample": False}))
    artifact = tmp_path / "m.xfmr"
    compiled = subprocess.run([tool("xfmr-compile"), str(folder), "-o", str(artifact)],
                              capture_output=True, text=True, check=True)
    assert "tokenizer tokenizer.json (50257 tokens)" in compiled.stderr
    text = run(artifact, "--prompt", PROMPT, "-n", 24).stdout
    assert text == tokenize("--decode", stdin=b" ".join(ids[:k]))
    assert run(artifact, "--prompt", PROMPT, "-n", 24, "--ignore-eos",
               "--output", "ids").stdout.split() == ids
    assert tokenize_file(artifact, b"Hello world") == b"15496 995\n"
    loaded = xfmr.Artifact(artifact)
    assert loaded.tokenizer.encode("Hello world") == [15496, 995]
    assert sorted(loaded.end_of_sequence_ids) == sorted([2, 50256, int(ids[k])])
    assert loaded.manifest["tokenizer"]["config"]["model_max_length"] == 1024
    assert xfmr.Session(loaded).generate_text(PROMPT, max_new_tokens=24) == text.decode()
    # Weights-stripped, then packed: the tokenizer travels in the manifest.
    stripped, packed = tmp_path / "stripped.xfmr", tmp_path / "packed.xfmr"
    subprocess.run([tool("xfmr-compile"), str(folder), "-o", str(stripped),
                    "--strip-weights"], capture_output=True, check=True)
    subprocess.run([tool("xfmr-pack"), str(stripped), str(folder), "-o", str(packed)],
                   capture_output=True, check=True)
    assert run(packed, "--prompt", PROMPT, "-n", 24).stdout == text
    # A SentencePiece model given with --tokenizer (stored as base64).
    if LLAMA2.exists():
        sp = tmp_path / "sp.xfmr"
        subprocess.run([tool("xfmr-compile"), str(folder), "-o", str(sp), "--tokenizer",
                        str(LLAMA2)], capture_output=True, check=True)
        assert xfmr.Artifact(sp).tokenizer.encode("Hello world", True) == [1, 15043, 3186]
        assert len(run(sp, "--prompt", "Hello world", "-n", 4, "--output", "ids",
                       "--ignore-eos").stdout.split()) == 4
    # Without a tokenizer: a clear error, and --tokenizer still works.
    out = run(base, "--prompt", PROMPT, "-n", 4, check=False)
    assert out.returncode == 1 and b"carries none" in out.stderr
    with pytest.raises(xfmr.InvalidArgumentError, match="carries no tokenizer"):
        xfmr.Session(str(base)).generate_text(PROMPT)
    assert xfmr.Artifact(base).tokenizer is None
    # Compile-time errors name the tokenizer; nothing is written.
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    for tokenizer, message in [(tmp_path / "missing.json", "does not exist"),
                               (bad, "invalid JSON"), (tmp_path, "holds no tokenizer")]:
        out = subprocess.run([tool("xfmr-compile"), str(folder), "-o",
                              str(tmp_path / "x.xfmr"), "--tokenizer", str(tokenizer)],
                             capture_output=True, text=True)
        assert out.returncode == 1 and message in out.stderr, out.stderr
        assert not (tmp_path / "x.xfmr").exists()
    small = tmp_path / "small"
    from xfmr import synth  # noqa: PLC0415
    synth.generate(str(small), "llama", preset="tiny")
    out = subprocess.run([tool("xfmr-compile"), str(small), "-o", str(tmp_path / "x.xfmr"),
                          "--tokenizer", str(GPT2)], capture_output=True, text=True)
    assert out.returncode == 1 and "more than the model's vocabulary" in out.stderr
    with pytest.raises(xfmr.CompileError, match="does not exist"):
        xfmr.compile(folder, tmp_path / "y.xfmr", tokenizer=tmp_path / "missing.json")


def tokenize_file(file, text: bytes) -> bytes:
    return subprocess.run([tool("xfmr-tokenize"), str(file)], input=text,
                          capture_output=True, check=True).stdout


def test_synth_places_a_tokenizer(tmp_path):
    """xfmr.synth sizes the vocabulary to a tokenizer and places it in the checkpoint, so a
    synthetic model compiles into an artifact that takes text."""
    if not GPT2.exists():
        pytest.skip(f"{GPT2} not found (shared tokenizers absent)")
    from xfmr import synth  # noqa: PLC0415
    config = synth.generate(str(tmp_path / "ckpt"), "llama", tokenizer=str(GPT2))
    assert (config["vocab_size"], config["eos_token_id"]) == (50257, 50256)
    assert (tmp_path / "ckpt" / "tokenizer.json").read_bytes() == GPT2.read_bytes()
    assert (tmp_path / "ckpt" / "tokenizer_config.json").exists()
    artifact = tmp_path / "m.xfmr"
    subprocess.run([tool("xfmr-compile"), str(tmp_path / "ckpt"), "-o", str(artifact)],
                   check=True, capture_output=True)
    ids = run(artifact, "--prompt", "Hello", "-n", 6, "--output", "ids").stdout.split()
    assert 1 <= len(ids) <= 6 and "50256" not in ids
    if LLAMA2.exists():
        pytest.importorskip("sentencepiece")
        config = synth.generate(str(tmp_path / "sp"), "llama", tokenizer=str(LLAMA2))
        assert (config["vocab_size"], config["bos_token_id"]) == (32000, 1)
        assert (tmp_path / "sp" / "tokenizer.model").exists()
    with pytest.raises(synth.SynthError, match="contradicts"):
        synth.generate(str(tmp_path / "x"), "llama", tokenizer=str(GPT2),
                       overrides={"vocab_size": 100})
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": {}}')
    with pytest.raises(synth.SynthError, match="not a tokenizer.json"):
        synth.generate(str(tmp_path / "y"), "llama", tokenizer=str(broken))
