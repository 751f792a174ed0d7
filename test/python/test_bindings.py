"""The native Python API (xfmr._xfmr through xfmr.compile, xfmr.ir, xfmr.Artifact, xfmr.Session):
the same ids as the command-line tools, IR round trips and pipelines, exception types,
threads, streaming, NumPy logits, Ctrl-C, and packaging (build tree, pip install).

Skipped when the extension is not built in $XFMR_BUILD_DIR/python/xfmr or <repo>/build/python/xfmr.
"""

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import xfmr
from conftest import BUILD_DIR, REPO
from test_reference_stories260k import STORIES260K_GREEDY_63

_NATIVE_DIR = BUILD_DIR / "python" / "xfmr"
if not list(_NATIVE_DIR.glob("_xfmr*.so")):
    pytest.skip(f"the extension xfmr._xfmr is not built in {_NATIVE_DIR} "
                "(run scripts/build.sh, or set XFMR_BUILD_DIR)", allow_module_level=True)
# Built but not importable is a failure, not a skip.
from xfmr import _xfmr  # noqa: E402,F401

SWIGLU_IR = """func.func @mlp(%g: tensor<4x8xf32>, %u: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %s = xfmr.silu %g : tensor<4x8xf32>
  %m = xfmr.mul %s, %u : tensor<4x8xf32>
  return %m : tensor<4x8xf32>
}
"""

SAMPLED = dict(temperature=0.8, top_k=0, top_p=0.9, seed=7)


def tool(name):
    path = BUILD_DIR / "bin" / name
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/build.sh)")
    return str(path)


def cli_run(artifact, prompt, n, *flags):
    """xfmr-run's ids and its stderr."""
    done = subprocess.run([tool("xfmr-run"), str(artifact), "--prompt-ids",
                           " ".join(map(str, prompt)), "-n", str(n), *flags],
                          check=True, capture_output=True, text=True)
    return [int(word) for word in done.stdout.split()], done.stderr


@pytest.fixture(scope="module")
def stories(stories260k_dir, tmp_path_factory):
    """stories260K compiled through the Python API."""
    output = tmp_path_factory.mktemp("stories") / "model.xfmr"
    return xfmr.compile(stories260k_dir, output)


@pytest.fixture(scope="module")
def tiny(synth_checkpoint, tmp_path_factory):
    """A tiny synthetic Llama: checkpoint folder and its compiled artifact."""
    checkpoint = synth_checkpoint("llama")
    artifact = xfmr.compile(checkpoint, tmp_path_factory.mktemp("tiny") / "model.xfmr",
                            context=64)
    return checkpoint, artifact


# --- compile and generate: the same ids as the command-line tools -------------------------

def test_stories260k_generate_matches_cli_and_pinned(stories):
    session = xfmr.Session(stories, threads=2)
    ids = session.generate([1], 63)
    assert ids == STORIES260K_GREEDY_63
    assert cli_run(stories.path, [1], 63)[0] == ids
    session.reset()
    sampled = session.generate([1, 461], 40, **SAMPLED)
    cli_sampled, _ = cli_run(stories.path, [1, 461], 40, "--temperature", "0.8",
                             "--top-p", "0.9", "--seed", "7")
    assert sampled == cli_sampled
    assert sampled != ids[:40]


def test_cli_compiled_artifact_runs_the_same(stories260k_dir, stories, tmp_path):
    path = tmp_path / "cli.xfmr"
    subprocess.run([tool("xfmr-compile"), str(stories260k_dir), "-o", str(path)],
                   check=True, capture_output=True)
    assert xfmr.Session(path).generate([1], 63) == STORIES260K_GREEDY_63
    assert xfmr.Artifact(path).manifest["weights"] == stories.manifest["weights"]


def test_artifact_properties(stories):
    manifest = stories.manifest
    assert stories.vocab_size == manifest["model"]["vocab_size"] == 512
    assert stories.context_length == manifest["model"]["context_length"]
    assert stories.architecture == "LlamaForCausalLM"
    assert stories.num_layers == 5 and stories.hidden_size == 64
    assert stories.parameter_count == manifest["weights"]["parameter_count"]
    assert stories.kv_cache_bytes == manifest["kv_cache"]["bytes"]
    # By default the code is for this machine's CPU.
    assert stories.target["cpu"] == manifest["target"]["cpu"] not in ("", "native")
    assert manifest["compile_options"]["cpu"] == "native"
    assert manifest["compile_options"]["opt_level"] == 3
    assert "LlamaForCausalLM" in repr(stories)


def test_stats_keys_match_cli(stories):
    _, stderr = cli_run(stories.path, [1], 4, "--stats")
    cli_keys = set(json.loads(stderr.strip().splitlines()[-1]))
    session = xfmr.Session(stories, threads=1)
    session.generate([1, 2, 3], 5)
    stats = session.stats
    assert set(stats) == cli_keys
    assert stats["prefill_tokens"] == 3 and stats["decode_tokens"] == 4
    assert stats["threads"] == 1 == session.threads
    assert stats["weights_bytes"] == stories.weights_bytes


def test_compile_progress_and_temporary_output(tiny):
    checkpoint, _ = tiny
    lines = []
    artifact = xfmr.compile(checkpoint, progress=lines.append, context=32)
    assert any("importing" in line for line in lines) and "wrote" in lines[-1]
    folder = Path(artifact.path).parent
    assert folder.is_dir() and artifact.context_length == 32
    assert artifact.manifest["compile_options"]["context"] == 32
    del artifact
    gc.collect()
    assert not folder.exists()


def test_compile_precise(synth_checkpoint, tmp_path):
    """precise=True keeps f32 activations in the linears, like --precise: recorded in the
    manifest; the bf16 weights stay in panels either way; logits differ by the rounding."""
    checkpoint = synth_checkpoint("llama", dtype="bf16")
    default = xfmr.compile(checkpoint, tmp_path / "default.xfmr", context=32)
    precise = xfmr.compile(checkpoint, tmp_path / "precise.xfmr", context=32, precise=True)
    assert default.manifest["compile_options"]["precise"] is False
    assert precise.manifest["compile_options"]["precise"] is True
    for artifact in (default, precise):
        assert any(t.get("panel") == 64 for t in artifact.manifest["weights"]["tensors"])
    ids = [3, 4, 5, 6]
    rows = [xfmr.Session(a).prefill(ids) for a in (default, precise)]
    assert 0 < np.max(np.abs(rows[0] - rows[1])) < 0.05 * np.max(np.abs(rows[1]))
    with pytest.raises(TypeError, match="precise must be a bool"):
        xfmr.compile(checkpoint, tmp_path / "x.xfmr", precise="yes")


def test_compile_progress_exception_propagates(tiny, tmp_path):
    def fail(line):
        raise KeyError("stop")

    with pytest.raises(KeyError):
        xfmr.compile(tiny[0], tmp_path / "m.xfmr", progress=fail)


def test_compile_mlir_with_weights(tiny, tmp_path):
    checkpoint, artifact = tiny
    module = xfmr.ir.import_checkpoint(checkpoint, context=64)
    module.save(tmp_path / "model.mlir")
    compiled = xfmr.compile(tmp_path / "model.mlir", tmp_path / "m.xfmr", weights=checkpoint)
    prompt = [3, 5, 7]
    assert (xfmr.Session(compiled).generate(prompt, 8)
            == xfmr.Session(artifact).generate(prompt, 8))


# --- runtime: NumPy logits, streaming, threads ---------------------------------------------

def test_prefill_returns_float32_rows(tiny):
    _, artifact = tiny
    session = xfmr.Session(artifact)
    prompt = np.array([5, 9, 2, 7], dtype=np.int64)
    logits = session.prefill(prompt)
    assert isinstance(logits, np.ndarray)
    assert logits.dtype == np.float32 and logits.shape == (4, artifact.vocab_size)
    assert logits.flags["C_CONTIGUOUS"] and logits.flags["WRITEABLE"]
    assert session.position == 4
    row = session.decode(3)
    assert row.shape == (artifact.vocab_size,) and row.dtype == np.float32
    # Token by token gives the same rows.
    stepwise = xfmr.Session(artifact)
    rows = np.array([stepwise.decode(int(t)) for t in prompt])
    np.testing.assert_allclose(rows, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
    # Arrays own their memory: they outlive the session.
    del session, stepwise
    gc.collect()
    assert np.isfinite(logits).all()


def test_stream_yields_the_generate_ids(stories):
    session = xfmr.Session(stories)
    for options in ({}, SAMPLED):
        session.reset()
        expected = session.generate([1, 2], 30, **options)
        end = session.position
        session.reset()
        stream = session.stream([1, 2], 30, **options)
        assert session.position == 0  # nothing runs before the first next()
        assert list(stream) == expected
        assert session.position == end == 2 + 30 - 1
    session.reset()
    first = []
    for token in session.stream([1], 20):
        first.append(token)
        if len(first) == 5:
            break
    assert first == STORIES260K_GREEDY_63[:5] and session.position == 5
    session.reset()
    assert list(session.stream([1], 0)) == [] and session.position == 1


def test_two_sessions_on_two_threads(stories):
    requests = [([1], 60, {}), ([1, 100, 200], 60, SAMPLED)]
    sequential = [xfmr.Session(stories, threads=1).generate(p, n, **o) for p, n, o in requests]
    sessions = [xfmr.Session(stories, threads=1) for _ in requests]
    results = [None, None]
    barrier = threading.Barrier(len(requests))

    def work(i):
        prompt, n, options = requests[i]
        barrier.wait()
        for _ in range(3):
            sessions[i].reset()
            results[i] = sessions[i].generate(prompt, n, **options)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == sequential


def test_one_session_shared_by_threads_serializes(stories):
    session = xfmr.Session(stories, threads=1)
    results = []

    def work():
        for _ in range(5):
            results.append(session.decode(1).shape)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 10 and session.position == 10


def test_ctrl_c_stops_generate(stories):
    session = xfmr.Session(stories, threads=1)
    full = stories.context_length - 1
    main = threading.main_thread().ident

    def generate_with_sigint_after(delay):
        """Whether KeyboardInterrupt came; SIGINT goes to the main thread after `delay`."""
        session.reset()
        timer = threading.Timer(delay, signal.pthread_kill, (main, signal.SIGINT))
        try:
            timer.start()
            session.generate([1], full)
            time.sleep(5)  # the signal came after generate returned: it ends the sleep
        except KeyboardInterrupt:
            return True
        finally:
            timer.join()
        return False

    stopped_inside = False
    for delay in (0.005, 0.01, 0.002, 0.02, 0.001, 0.03):
        assert generate_with_sigint_after(delay)
        if 1 <= session.position < full:
            stopped_inside = True
            break
    assert stopped_inside, "SIGINT never arrived while generating"
    # The session still works.
    session.reset()
    assert session.generate([1], 10) == STORIES260K_GREEDY_63[:10]


# --- IR ------------------------------------------------------------------------------------

def test_ir_round_trip():
    module = xfmr.ir.parse(SWIGLU_IR)
    text = str(module)
    assert text == module.text and "xfmr.silu" in text and "xfmr.mul" in text
    again = xfmr.ir.parse(text)
    assert again == module and again.text == text
    assert "lines" in repr(module)


def test_pipelines_fuse_swiglu():
    module = xfmr.ir.parse(SWIGLU_IR)
    for pipeline in ("xfmr-graph-opt", "builtin.module(xfmr-fuse-swiglu)", "xfmr-fuse-swiglu"):
        fused = module.run(pipeline)
        assert "xfmr.swiglu %arg0, %arg1" in fused.text, pipeline
        assert "xfmr.silu" not in fused.text and "xfmr.mul" not in fused.text
    assert isinstance(xfmr.ir.run_pipeline(SWIGLU_IR, "xfmr-graph-opt"), str)
    assert xfmr.ir.run_pipeline(module, "xfmr-graph-opt") == module.run("xfmr-graph-opt").text


def test_list_passes():
    """Every xfmr pass and pipeline the registry knows (what `xfmr-opt --help` lists), no
    more and no fewer, with its description."""
    import re
    passes = dict(xfmr.ir.list_passes())
    help_text = subprocess.run([tool("xfmr-opt"), "--help"], check=True, capture_output=True,
                               text=True).stdout
    registered = set(re.findall(r"^\s+--(xfmr-[a-z0-9-]+)\s", help_text, re.MULTILINE))
    assert set(passes) == registered
    assert len(passes) == len(xfmr.ir.list_passes())
    for flag in ("xfmr-quantize-fp8", "xfmr-compress-kv-cache", "xfmr-absorb-mla",
                 "xfmr-graph-opt", "xfmr-cpu", "xfmr-lower-to-kernels"):
        assert flag in passes
    assert "swiglu" in passes["xfmr-fuse-swiglu"].lower()
    assert all(description for description in passes.values())


def test_import_checkpoint(tiny, tmp_path):
    checkpoint, _ = tiny
    module = xfmr.ir.import_checkpoint(checkpoint, context=48)
    assert 'xfmr.entry = "prefill"' in module.text and "capacity = 48" in module.text
    assert xfmr.ir.parse(module.text) == module
    assert "xfmr.swiglu" in module.run("xfmr-graph-opt").text
    module.save(tmp_path / "m.mlir")
    assert xfmr.ir.parse_file(tmp_path / "m.mlir") == module


# --- errors --------------------------------------------------------------------------------

def test_missing_paths_raise_file_not_found(tmp_path):
    missing = tmp_path / "missing"
    for call in (lambda: xfmr.Artifact(missing), lambda: xfmr.Session(missing),
                 lambda: xfmr.compile(missing), lambda: xfmr.ir.import_checkpoint(missing),
                 lambda: xfmr.ir.parse_file(missing)):
        with pytest.raises(FileNotFoundError):
            call()


def test_bad_options_raise_value_error(tiny, tmp_path):
    checkpoint, artifact = tiny
    out = tmp_path / "m.xfmr"
    with pytest.raises(ValueError, match="unknown CPU 'no-such-cpu'") as caught:
        xfmr.compile(checkpoint, out, cpu="no-such-cpu")
    assert isinstance(caught.value, xfmr.InvalidArgumentError)
    assert isinstance(caught.value, xfmr.Error)
    with pytest.raises(ValueError, match="target 'gpu' is not supported"):
        xfmr.compile(checkpoint, out, target="gpu")
    with pytest.raises(ValueError, match="opt_level"):
        xfmr.compile(checkpoint, out, opt_level=7)
    with pytest.raises(ValueError, match="context"):
        xfmr.compile(checkpoint, out, context=-1)
    with pytest.raises(ValueError, match="quantize must be None, 'fp8', 'int8' or 'int4'"):
        xfmr.compile(checkpoint, out, quantize="int3")
    with pytest.raises(ValueError, match="unknown quantize option 'bits'"):
        xfmr.compile(checkpoint, out, quantize="fp8", quantize_options={"bits": 8})
    with pytest.raises(ValueError, match="kv_cache must be None"):
        xfmr.compile(checkpoint, out, kv_cache="int4")
    with pytest.raises(ValueError, match="moe must be None, 'sparse'"):
        xfmr.compile(checkpoint, out, moe="fast")
    with pytest.raises(ValueError, match="mla_absorb must be None, 'runtime'"):
        xfmr.compile(checkpoint, out, mla_absorb="never")
    assert not out.exists()
    with pytest.raises(ValueError, match="device 'cuda'"):
        xfmr.Session(artifact, device="cuda")
    with pytest.raises(ValueError, match=r"thread count must be in \[0, 1024\]"):
        xfmr.Session(artifact, threads=-1)
    session = xfmr.Session(artifact)
    for options, message in ((dict(temperature=-1.0), "temperature must be"),
                             (dict(top_p=0.0), "top-p must be in"),
                             (dict(top_k=-2), "top-k must be >= 0"),
                             (dict(seed=-1), "seed")):
        with pytest.raises(ValueError, match=message):
            session.generate([1], 4, **options)
        with pytest.raises(ValueError, match=message):
            session.stream([1], 4, **options)
    with pytest.raises(ValueError, match="must be >= 0"):
        session.generate([1], -1)
    with pytest.raises(TypeError):
        session.generate([1], 4, temperature="hot")
    assert session.position == 0


def test_bad_token_ids_raise_value_error(tiny):
    _, artifact = tiny
    vocab = artifact.vocab_size
    session = xfmr.Session(artifact)
    session.prefill([1, 2])
    for call, message in (
            (lambda: session.decode(vocab), f"token id {vocab} at index 0 is out of range"),
            (lambda: session.decode(-1), "token id -1 at index 0 is out of range"),
            (lambda: session.decode(2**40), "is out of range"),
            (lambda: session.prefill([1, vocab + 5]), f"token id {vocab + 5} at index 1"),
            (lambda: session.prefill([]), "no token ids given"),
            (lambda: session.generate([1], artifact.context_length), "context overflow"),
            (lambda: next(session.stream([vocab], 3)), "out of range"),
    ):
        with pytest.raises(ValueError, match=message) as caught:
            call()
        assert isinstance(caught.value, xfmr.InvalidArgumentError)
    # Rejected before any compute: the session did not move.
    assert session.position == 2
    with pytest.raises(TypeError):
        session.prefill(["a"])
    with pytest.raises(TypeError):
        session.prefill(np.array([1.5, 2.0]))


def test_bad_ir_and_pipelines():
    module = xfmr.ir.parse(SWIGLU_IR)
    with pytest.raises(ValueError, match="invalid pass pipeline 'no-such-pass'") as caught:
        module.run("no-such-pass")
    assert isinstance(caught.value, xfmr.InvalidArgumentError)
    with pytest.raises(ValueError, match="unbalanced pass pipeline"):
        xfmr.ir.run_pipeline(SWIGLU_IR, "builtin.module(xfmr-graph-opt")
    with pytest.raises(xfmr.CompileError, match="custom op 'garbage' is unknown"):
        xfmr.ir.parse("garbage")
    invalid = """func.func @e(%t: tensor<32x8xf32>, %ids: tensor<?xi32>) {
  %0 = xfmr.embedding %t[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x16xf32>
  return
}"""
    with pytest.raises(xfmr.CompileError, match="result hidden size 16 differs") as caught:
        xfmr.ir.parse(invalid)
    assert not isinstance(caught.value, ValueError)
    assert "2:" in str(caught.value)  # the location of the op


def test_runtime_and_compile_failures_raise_xfmr_errors(tmp_path):
    not_an_artifact = tmp_path / "junk.xfmr"
    not_an_artifact.write_bytes(b"not an artifact" * 100)
    with pytest.raises(xfmr.Error) as caught:
        xfmr.Artifact(not_an_artifact)
    assert not isinstance(caught.value, ValueError) and "junk.xfmr" in str(caught.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(xfmr.CompileError, match="config.json"):
        xfmr.compile(empty, tmp_path / "m.xfmr")
    with pytest.raises(xfmr.CompileError):
        xfmr.ir.import_checkpoint(empty)


def test_docstrings():
    for function in (xfmr.compile, xfmr.Session, xfmr.Session.generate, xfmr.Session.stream,
                     xfmr.Session.prefill, xfmr.Artifact, xfmr.ir.parse, xfmr.ir.run_pipeline,
                     xfmr.ir.list_passes, xfmr.ir.import_checkpoint):
        assert function.__doc__ and len(function.__doc__) > 40, function


# --- packaging -----------------------------------------------------------------------------

def test_build_tree_package(tmp_path):
    code = ("import xfmr, xfmr.synth, xfmr.reference; "
            "assert xfmr.native_available(); "
            "print(xfmr.__file__); print(len(xfmr.ir.list_passes()))")
    env = dict(os.environ, PYTHONPATH=str(BUILD_DIR / "python"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith(str(BUILD_DIR / "python" / "xfmr"))


def test_without_extension_imports_and_explains(tmp_path):
    code = ("import sys; sys.modules['xfmr._xfmr'] = None\n"
            "import xfmr\n"
            "assert not xfmr.native_available()\n"
            "try:\n    xfmr.ir.list_passes()\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    assert "xfmr-python" in done.stdout and "pip install" in done.stdout


def test_pip_install_offline(tmp_path):
    target = tmp_path / "site"
    env = dict(os.environ, XFMR_BUILD_DIR=str(BUILD_DIR), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                    "--no-deps", "--target", str(target), str(REPO / "python")],
                   env=env, capture_output=True, text=True, check=True)
    assert list((target / "xfmr").glob("_xfmr*.so"))
    assert not (REPO / "python" / "build").exists()
    code = "import xfmr; print(xfmr.__file__); print(xfmr.ir.list_passes()[0][0])"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(target)),
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith(str(target)) and "xfmr-" in done.stdout


def test_compile_fp8_matches_the_cli(tiny, tmp_path):
    """quantize="fp8" runs the same pass as xfmr-compile --quantize fp8."""
    checkpoint, _ = tiny
    artifact = xfmr.compile(checkpoint, tmp_path / "fp8.xfmr", quantize="fp8",
                            quantize_options={"granularity": "channel", "activations": False})
    assert artifact.manifest["compile_options"]["quantize"] == "fp8"
    assert "granularity=channel" in artifact.manifest["compile_options"]["quantize_options"]
    dtypes = {t["dtype"] for t in artifact.manifest["weights"]["tensors"]}
    assert "f8e4m3fn" in dtypes
    ids = xfmr.Session(artifact).generate([1, 2, 3], 5)
    assert len(ids) == 5


def test_compile_int8_kv_cache(tiny, tmp_path):
    checkpoint, artifact = tiny
    compressed = xfmr.compile(checkpoint, tmp_path / "int8.xfmr", context=64, kv_cache="int8")
    assert compressed.manifest["compile_options"]["kv_cache"] == "int8"
    assert (compressed.manifest["kv_cache"]["bytes_per_token"]
            < artifact.manifest["kv_cache"]["bytes_per_token"])
    assert len(xfmr.Session(compressed).generate([1, 2, 3], 4)) == 4
