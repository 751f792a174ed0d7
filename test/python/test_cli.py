"""Command-line hygiene, tried as a new user would: one error form (`<tool>: error: ...`),
one meaning per exit code (2 for a bad command line, 1 for a failure), one --version string
shared with the Python package and the manifest, a short grouped --help, every option
validated before any work, and the Python API rejecting the same values.

Skipped when the tools are not built.
"""

import json
import os
import subprocess
import warnings
from pathlib import Path

import pytest

from conftest import BUILD_DIR, REPO

TOOLS = ["xfmr-compile", "xfmr-import", "xfmr-opt", "xfmr-run", "xfmr-pack", "xfmr-bench"]


def tool(name):
    path = BUILD_DIR / "bin" / name
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/build.sh)")
    return str(path)


def run(*args, **kwargs):
    return subprocess.run([tool(args[0]), *map(str, args[1:])], capture_output=True,
                          text=True, **kwargs)


@pytest.fixture(scope="module")
def llama(synth_checkpoint):
    return synth_checkpoint("llama")


@pytest.fixture(scope="module")
def native():
    xfmr = pytest.importorskip("xfmr")
    if not xfmr.native_available():
        pytest.skip("the extension xfmr._xfmr is not built")
    return xfmr


def test_every_tool_prints_the_same_version(native, llama, tmp_path):
    versions = {name: run(name, "--version") for name in TOOLS}
    for name, done in versions.items():
        assert done.returncode == 0, (name, done.stderr)
    lines = {done.stdout.strip() for done in versions.values()}
    assert len(lines) == 1, lines
    line = lines.pop()
    assert line == native.version()
    assert line.startswith(f"xfmr {native.__version__} (") and line.endswith(")")
    out = tmp_path / "model.xfmr"
    assert run("xfmr-compile", llama, "-o", out).returncode == 0
    assert native.Artifact(out).compiler == line


def test_compile_help_shows_xfmrs_options_grouped():
    done = run("xfmr-compile", "--help")
    assert done.returncode == 0
    text = done.stdout
    assert len(text.splitlines()) < 60, len(text.splitlines())
    for group in ("Input and output:", "Target:", "Quantization", "KV cache:",
                  "Mixture of experts:", "Debugging:"):
        assert group in text
    for option in ("--kv-cache", "--quantize", "--cpu", "--moe", "--dump-ir-after", "-o"):
        assert option in text
    for internal in ("--amdgpu", "--arm-", "--polly", "--x86-"):
        assert internal not in text


@pytest.mark.parametrize("name, args", [
    ("xfmr-compile", ["--no-such-flag"]),
    ("xfmr-import", ["--no-such-flag"]),
    ("xfmr-opt", ["--no-such-flag"]),
    ("xfmr-run", ["--no-such-flag"]),
    ("xfmr-pack", ["--no-such-flag"]),
    ("xfmr-bench", ["--no-such-flag"]),
    ("xfmr-compile", []),
    ("xfmr-import", []),
    ("xfmr-run", []),
    ("xfmr-pack", []),
    ("xfmr-bench", []),
])
def test_bad_command_lines_exit_2_in_one_form(name, args):
    done = run(name, *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{name}: error: "), done.stderr
    assert f"(see {name} --help)" in done.stderr
    assert done.stdout == ""


def test_failures_exit_1_in_one_form(tmp_path):
    missing = tmp_path / "missing"
    for name, args in (("xfmr-compile", [missing, "-o", tmp_path / "x.xfmr"]),
                       ("xfmr-import", [missing]),
                       ("xfmr-opt", [missing]),
                       ("xfmr-run", [missing, "--prompt-ids", "1", "-n", "1"]),
                       ("xfmr-pack", [missing, missing, "-o", tmp_path / "x.xfmr"]),
                       ("xfmr-bench", [missing])):
        done = run(name, *args)
        assert done.returncode == 1, (name, done.stderr)
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert errors and all(line.startswith(f"{name}: error: ") for line in errors), \
            done.stderr


@pytest.mark.parametrize("flags, message", [
    (["-O9"], "the optimization level must be 0, 1, 2 or 3, got 9"),
    (["--dump-ir-after=nope"], "--dump-ir-after: 'nope' is not a pass of this compilation"),
    (["--kv-cache", "int4"], "unknown KV-cache type 'int4'"),
    (["--moe", "foo"], "unknown MoE evaluation 'foo'"),
    (["--cpu", "no-such-cpu"], "unknown CPU 'no-such-cpu'"),
    (["--context", "4611686018427387904"], "the context length must be in [0, 2147483647]"),
    (["--context", "-1"], "the context length must be in [0, 2147483647]"),
    (["--kv-sinks", "4"], "sinks need a window"),
    (["--quantize-block", "0x128"], "--quantize-block: expected N or RxC"),
    (["--quantize-granularity", "row", "--quantize", "fp8"], "--quantize-granularity"),
    (["--quantize-activations", "maybe", "--quantize", "fp8"], "--quantize-activations"),
    (["--quantize-keep", "lm_head"], "--quantize-* options need --quantize fp8"),
    (["--mla-absorb", "compile-time"], "needs --mla-cache latent"),
    (["--target", "gpu"], "target 'gpu' is not supported yet"),
])
def test_every_option_is_checked_before_any_work(llama, tmp_path, flags, message):
    out = tmp_path / "model.xfmr"
    done = run("xfmr-compile", llama, "-o", out, *flags)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("xfmr-compile: error: ") and message in done.stderr
    # Nothing was read or written, and LLVM's own messages do not repeat ours.
    assert "reading checkpoint" not in done.stderr
    assert "is not a recognized processor" not in done.stderr
    assert done.stderr.count("error:") == 1
    assert not out.exists()


def test_options_the_model_cannot_use(llama, tmp_path):
    out = tmp_path / "model.xfmr"
    # MLA caches on a model without MLA: an error, not a silent no-op.
    done = run("xfmr-compile", llama, "-o", out, "--mla-cache", "latent")
    assert done.returncode == 2
    assert "--mla-cache latent: the model has no multi-head latent attention" in done.stderr
    assert not out.exists()
    # MoE forms on a dense model: a warning; the artifact is written.
    done = run("xfmr-compile", llama, "-o", out, "--moe", "dense")
    assert done.returncode == 0
    assert "xfmr-compile: warning: --moe dense: the model has no Mixture-of-Experts" in \
        done.stderr
    # A context past the model's trained positions: a warning.
    done = run("xfmr-compile", llama, "-o", out, "--context", "100000")
    assert done.returncode == 0
    assert "warning: --context 100000 exceeds the model's max_position_embeddings" in \
        done.stderr


def test_output_is_required(llama, tmp_path):
    done = run("xfmr-compile", llama, cwd=tmp_path)
    assert done.returncode == 2
    assert "no output file given: -o FILE is required" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_cpu_records_its_features_and_the_host_is_checked(llama, tmp_path):
    out = tmp_path / "model.xfmr"
    # A CPU with AMX and AVX10.2: this host (any CI machine today) lacks some of it.
    assert run("xfmr-compile", llama, "-o", out, "--cpu", "diamondrapids").returncode == 0
    manifest = _manifest(out)
    features = manifest["target"]["features"].split(",")
    assert "+amx-tile" in features and "+avx10.2" in features
    done = run("xfmr-run", out, "--prompt-ids", "1", "-n", "1")
    assert done.returncode == 1
    assert "the code was compiled for cpu 'diamondrapids', which needs" in done.stderr
    assert "this host's CPU (or OS) does not support" in done.stderr
    assert "Illegal instruction" not in done.stderr
    # Named levels record their features too.
    assert run("xfmr-compile", llama, "-o", out, "--cpu", "x86-64-v3").returncode == 0
    assert "+avx2" in _manifest(out)["target"]["features"].split(",")
    assert run("xfmr-run", out, "--prompt-ids", "1", "-n", "1").returncode in (0, 1)


def test_cpu_variants_best_first(native, llama, tmp_path):
    """A --cpu list builds a variant per CPU; the runtime runs the first this machine
    supports (diamondrapids' AVX10.2 and AMX: no CI machine has them)."""
    out = tmp_path / "variants.xfmr"
    done = run("xfmr-compile", llama, "-o", out, "--cpu", "diamondrapids, x86-64-v2")
    assert done.returncode == 0, done.stderr
    assert "cpu diamondrapids" in done.stderr and "cpu x86-64-v2" in done.stderr
    manifest = _manifest(out)
    assert [t["cpu"] for t in manifest["targets"]] == ["diamondrapids", "x86-64-v2"]
    assert manifest["compile_options"]["cpu"] == "diamondrapids, x86-64-v2"
    assert native.Artifact(str(out)).target["cpu"] == "x86-64-v2"
    single = tmp_path / "v2.xfmr"
    assert run("xfmr-compile", llama, "-o", single, "--cpu", "x86-64-v2").returncode == 0
    args = ["--prompt-ids", "1 2 3", "-n", "6"]
    assert run("xfmr-run", out, *args).stdout == run("xfmr-run", single, *args).stdout
    # The default, native, resolves to a name; a list naming it again builds it once.
    done = run("xfmr-compile", llama, "-o", out, "--cpu", "native,native")
    assert done.returncode == 0 and done.stderr.count("generating code") == 1
    # Empty entries are usage errors.
    done = run("xfmr-compile", llama, "-o", out, "--cpu", "x86-64-v3,,x86-64-v2")
    assert done.returncode == 2 and "--cpu 'x86-64-v3,,x86-64-v2' has an empty entry" in \
        done.stderr


def _manifest(path):
    data = Path(path).read_bytes()
    offset, size = (int.from_bytes(data[16 + 8 * i:24 + 8 * i], "little") for i in range(2))
    return json.loads(data[offset:offset + size])


def test_python_rejects_the_same_values(native, llama, tmp_path):
    xfmr = native
    out = tmp_path / "model.xfmr"
    cases = [
        (dict(opt_level=9), "opt_level"),
        (dict(dump_ir_after="nope"), "'nope' is not a pass of this compilation"),
        (dict(kv_cache="int4"), "kv_cache must be None"),
        (dict(moe="foo"), "moe must be None"),
        (dict(cpu="no-such-cpu"), "unknown CPU 'no-such-cpu'"),
        (dict(context=2**62), "context"),
        (dict(mla_cache="latent"), "the model has no multi-head latent attention"),
        (dict(quantize="fp8", quantize_options=dict(granularity="row")), "granularity"),
    ]
    for options, message in cases:
        with pytest.raises(xfmr.InvalidArgumentError, match=message):
            xfmr.compile(llama, out, **options)
        assert not out.exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xfmr.compile(llama, out, moe="dense")
    assert any(issubclass(w.category, xfmr.CompileWarning) and "--moe dense" in str(w.message)
               for w in caught)
    artifact = xfmr.Artifact(out)
    for threads in (-1, 1025, 100000):
        with pytest.raises(xfmr.InvalidArgumentError, match=r"thread count must be in \[0, 1024\]"):
            xfmr.Session(artifact, threads=threads)


def test_stats_are_per_generation(native, llama, tmp_path):
    out = tmp_path / "model.xfmr"
    artifact = native.compile(llama, out)
    session = native.Session(artifact, threads=1)
    session.generate([1, 2, 3], 4)
    first = session.stats
    assert (first["prefill_tokens"], first["decode_tokens"], first["generations"]) == (3, 3, 1)
    session.reset()
    cleared = session.stats
    assert cleared["prefill_tokens"] == cleared["decode_tokens"] == 0
    assert cleared["decode_tokens_per_s"] == 0 and cleared["generations"] == 2
    session.generate([1], 2)
    second = session.stats
    assert (second["prefill_tokens"], second["decode_tokens"]) == (1, 1)
    assert second["verify_seconds"] >= 0


def test_deeply_nested_inputs_are_errors_not_crashes(native, llama, tmp_path):
    # Each of these overflowed the stack in llvm::json::parse or MLIR's parser (and killed
    # the Python interpreter): run in a child process to survive a regression.
    deep_config = tmp_path / "deep"
    deep_config.mkdir()
    for name in os.listdir(llama):
        os.symlink(Path(llama) / name, deep_config / name)
    (deep_config / "config.json").unlink()
    (deep_config / "config.json").write_text('{"a": ' + "[" * 60000 + "]" * 60000 + "}")
    deep_ir = tmp_path / "deep.mlir"
    deep_ir.write_text("func.func @f() attributes {a = " + "[" * 60000 + "]" * 60000 +
                       "} { return }")
    script = f"""
import sys
sys.path.insert(0, {str(REPO / "python")!r})
import xfmr
xfmr.__path__.append({str(BUILD_DIR / "python" / "xfmr")!r})
for call in (lambda: xfmr.compile({str(deep_config)!r}, {str(tmp_path / "a.xfmr")!r}),
             lambda: xfmr.ir.parse(open({str(deep_ir)!r}).read())):
    try:
        call()
        print("no error")
    except xfmr.Error as error:
        print(type(error).__name__, str(error)[:200])
"""
    done = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "nests arrays or objects deeper than 256 levels" in lines[0]
    assert "brackets nest deeper than 1024 levels" in lines[1]


def test_profile_code_dir_keeps_the_model_code(llama, tmp_path):
    """XFMR_PROFILE_CODE_DIR: the CPU model code is loaded from a named file that stays
    (perf report reads the kernels' symbols from it); a bad folder is an error."""
    out = tmp_path / "model.xfmr"
    assert run("xfmr-compile", llama, "-o", out).returncode == 0
    keep = tmp_path / "code"
    keep.mkdir()
    env = dict(os.environ, XFMR_PROFILE_CODE_DIR=str(keep))
    done = run("xfmr-run", out, "--prompt-ids", "1 2", "-n", "2", env=env)
    assert done.returncode == 0, done.stderr
    [code] = list(keep.iterdir())
    assert code.name.startswith("xfmr-code-") and code.read_bytes()[:4] == b"\x7fELF"
    assert b"xfmr_linear_" in code.read_bytes()
    env["XFMR_PROFILE_CODE_DIR"] = str(tmp_path / "missing")
    done = run("xfmr-run", out, "--prompt-ids", "1", "-n", "1", env=env)
    assert done.returncode == 1 and "XFMR_PROFILE_CODE_DIR: cannot create" in done.stderr
