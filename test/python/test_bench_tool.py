"""xfmr-bench: llama-bench-style prefill (ppN) and decode (tgN) rows, mean +- sd over
repetitions, as a markdown table or JSON; bad command lines exit 2, requests past the
context exit 1."""

import json
import subprocess

import pytest

from conftest import tool


@pytest.fixture(scope="module")
def artifact(synth_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "llama.xfmr"
    subprocess.run([tool("xfmr-compile"), str(synth_checkpoint("llama")), "-o", str(out),
                    "--context", "64"], check=True, capture_output=True)
    return out


def bench(*args):
    return subprocess.run([tool("xfmr-bench"), *map(str, args)], capture_output=True, text=True)


def test_json_rows(artifact):
    done = bench(artifact, "-p", "8,32", "-n", "4", "-r", "3", "-t", "1,2", "-o", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["threads"], r["test"]) for r in rows] == [
        (1, "pp8"), (1, "pp32"), (1, "tg4"), (2, "pp8"), (2, "pp32"), (2, "tg4")]
    for row in rows:
        assert len(row["samples_ts"]) == 3 and all(s > 0 for s in row["samples_ts"])
        assert min(row["samples_ts"]) <= row["avg_ts"] <= max(row["samples_ts"])
        assert row["model"] == "LlamaForCausalLM" and row["params"] > 0
        assert row["device"].startswith("cpu ")
    assert rows[0]["n_prompt"] == 8 and rows[2]["n_gen"] == 4


def test_markdown_table(artifact):
    done = bench(artifact, "-p", "16", "-n", "0", "-r", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "| model | params | weights | device | threads | test | t/s |"
    assert len(lines) == 3 and "| pp16 |" in lines[2] and " ± " in lines[2]


@pytest.mark.parametrize("args, message", [
    ([], "no artifact given"),
    (["a", "b"], "more than one artifact given"),
    (["a", "-p", "x"], "-p: expected integers >= 0"),
    (["a", "-r", "0"], "-r: expected integers >= 1"),
    (["a", "-o", "csv"], "-o must be md or json"),
    (["a", "--bogus"], "unknown option '--bogus'"),
])
def test_usage_errors(args, message):
    done = bench(*args)
    assert done.returncode == 2 and message in done.stderr


def test_requests_past_the_context(artifact, tmp_path):
    done = bench(artifact, "-p", "65")
    assert done.returncode == 1
    assert "pp65 needs 65 positions, the artifact's context is 64" in done.stderr
    done = bench(tmp_path / "missing.xfmr")
    assert done.returncode == 1 and "cannot open" in done.stderr
