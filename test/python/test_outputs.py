"""Every file xfmr writes (xfmr-compile, xfmr-import, xfmr-run --dump-logits, Artifact.save)
goes through runtime::OutputFile: a unique temporary file created exclusively beside the
output and renamed over it; devices and FIFOs written in place; links, directories and
missing folders refused before any work; temporary files removed on errors and signals.

Skipped when the tools are not built.
"""

import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BUILD_DIR


def tool(name):
    path = BUILD_DIR / "bin" / name
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/build.sh)")
    return str(path)


@pytest.fixture(scope="module")
def tiny(synth_checkpoint):
    return synth_checkpoint("llama")


@pytest.fixture(scope="module")
def tiny_artifact(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "tiny.xfmr"
    subprocess.run([tool("xfmr-compile"), str(tiny), "--context", "64", "-o", str(out)],
                   check=True, capture_output=True)
    return out


def compile_to(model, output, *flags, **kwargs):
    return subprocess.run([tool("xfmr-compile"), str(model), "--context", "64", "-o",
                           str(output), *flags], capture_output=True, text=True, **kwargs)


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".tmp-" in p.name)


def children(pid):
    """The process ids of `pid`'s children (Linux's /proc)."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def test_dev_null_stays_a_device(tiny):
    done = compile_to(tiny, "/dev/null")
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    done = subprocess.run([tool("xfmr-import"), str(tiny), "-o", "/dev/null"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_is_written_in_place(tiny, tiny_artifact, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    done = compile_to(tiny, fifo)
    reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received and received[0] == tiny_artifact.read_bytes()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["victim", "missing"])
def test_symlink_output_is_refused(tiny, tmp_path, target):
    victim = tmp_path / target
    if target == "victim":
        victim.write_text("precious")
    link = tmp_path / "model.xfmr"
    link.symlink_to(victim)
    done = compile_to(tiny, link)
    assert done.returncode == 1
    assert "xfmr-compile: error: cannot write" in done.stderr
    assert "symbolic link" in done.stderr
    # Refused before any work, and nothing changed.
    assert "reading checkpoint" not in done.stderr
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert (victim.read_text() == "precious") if target == "victim" else not victim.exists()
    assert leftovers(tmp_path) == []


def test_planted_temporary_symlink_is_not_followed(tiny, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "model.xfmr"
    (tmp_path / "model.xfmr.tmp").symlink_to(victim)
    done = compile_to(tiny, out)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious"
    assert out.is_file() and not out.is_symlink()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["directory", "missing-folder", "file-as-folder"])
def test_unwritable_output_fails_before_the_work(tiny, tmp_path, case):
    if case == "directory":
        output, message = tmp_path, "it is a directory"
    elif case == "missing-folder":
        output, message = tmp_path / "no" / "such" / "model.xfmr", "does not exist"
    else:
        (tmp_path / "file").write_text("x")
        output, message = tmp_path / "file" / "model.xfmr", "is not a directory"
    done = compile_to(tiny, output)
    assert done.returncode == 1
    assert message in done.stderr
    assert "reading checkpoint" not in done.stderr
    done = subprocess.run([tool("xfmr-import"), str(tiny), "-o", str(output)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and message in done.stderr


def test_replaced_file_keeps_its_permissions(tiny, tmp_path):
    out = tmp_path / "model.xfmr"
    out.write_text("old")
    os.chmod(out, 0o640)
    done = compile_to(tiny, out)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    assert out.read_bytes()[:7] == b"XFMRART"


def test_concurrent_compiles_to_one_output_leave_one_whole_artifact(synth_checkpoint, tmp_path):
    first, second = synth_checkpoint("llama"), synth_checkpoint("qwen2")
    singles = {}
    for name, model in (("llama", first), ("qwen2", second)):
        single = tmp_path / f"{name}.xfmr"
        assert compile_to(model, single).returncode == 0
        singles[name] = single.read_bytes()
    out = tmp_path / "shared.xfmr"
    for _ in range(3):
        runs = [subprocess.Popen([tool("xfmr-compile"), str(model), "--context", "64", "-o",
                                  str(out)], stderr=subprocess.DEVNULL)
                for model in (first, second)]
        assert [run.wait() for run in runs] == [0, 0]
        assert out.read_bytes() in singles.values()
        assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def slow_to_pack(synth_checkpoint):
    """A checkpoint whose FP8 packing takes about a second (39 MB of weights)."""
    return synth_checkpoint("llama", preset="small", overrides=dict(
        hidden_size=512, intermediate_size=2048, num_hidden_layers=8))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("stage", ["packing", "linking"])
def test_signals_remove_temporary_files(slow_to_pack, tmp_path, signum, stage):
    out = tmp_path / "out" / "model.xfmr"
    out.parent.mkdir()
    out.write_bytes(b"the previous artifact")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    # Linking: the compile has a child process (ld.lld), which reads and
    # writes memory files, nothing in TMPDIR. Packing: the artifact's
    # temporary file appears beside the output.
    # The signal's default disposition, whatever this test inherited (a shell runs
    # background jobs with SIGINT ignored, and the child would inherit that).
    process = subprocess.Popen([tool("xfmr-compile"), str(slow_to_pack), "--context", "64",
                                "--quantize", "fp8", "-o", str(out)],
                               stderr=subprocess.DEVNULL, env=env,
                               preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if stage == "linking" and children(process.pid):
            break
        if stage == "packing" and leftovers(out.parent):
            break
        time.sleep(0.002)
    else:
        process.kill()
        pytest.skip(f"the compile finished before its {stage} stage was seen")
    process.send_signal(signum)
    assert process.wait(timeout=60) == -signum
    assert out.read_bytes() == b"the previous artifact"
    assert leftovers(out.parent) == []
    assert list(scratch.iterdir()) == []


def test_dump_logits_outputs(tiny_artifact, tmp_path):
    run = [tool("xfmr-run"), str(tiny_artifact), "--prompt-ids", "1 2", "-n", "3"]
    done = subprocess.run(run + ["--dump-logits", "/dev/null"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    link = tmp_path / "logits.npy"
    link.symlink_to(tmp_path / "victim.npy")
    done = subprocess.run(run + ["--dump-logits", str(link)], capture_output=True, text=True)
    assert done.returncode == 1 and "symbolic link" in done.stderr
    # Checked before generating: no ids printed.
    assert done.stdout == ""
    missing = tmp_path / "missing" / "logits.npy"
    done = subprocess.run(run + ["--dump-logits", str(missing)], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "does not exist" in done.stderr and done.stdout == ""
    good = tmp_path / "good.npy"
    done = subprocess.run(run + ["--dump-logits", str(good)], capture_output=True, text=True)
    assert done.returncode == 0
    assert np.load(good).shape[0] == 3
    assert leftovers(tmp_path) == []


def test_artifact_save_uses_the_same_rules(tiny_artifact, tmp_path):
    xfmr = pytest.importorskip("xfmr")
    if not xfmr.native_available():
        pytest.skip("the extension xfmr._xfmr is not built")
    artifact = xfmr.Artifact(tiny_artifact)
    copy = tmp_path / "copy.xfmr"
    assert artifact.save(copy) == str(copy)
    assert copy.read_bytes() == tiny_artifact.read_bytes()
    link = tmp_path / "link.xfmr"
    link.symlink_to(tmp_path / "victim")
    with pytest.raises(xfmr.Error, match="symbolic link"):
        artifact.save(link)
    assert not (tmp_path / "victim").exists()
    artifact.save("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == []
