"""Embedding the runtime (issue 18): `cmake --install --component runtime` installs the
runtime library, its headers and a CMake package; an out-of-tree C program
(examples/embed/generate.c) finds it with find_package(xfmr), links it without MLIR or
LLVM, and generates through the C API (xfmr.h) exactly the ids xfmr-run generates."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD_DIR, REPO, tool


@pytest.fixture(scope="module")
def embed(tmp_path_factory):
    if not shutil.which("cmake") or not shutil.which("cc"):
        pytest.skip("cmake and a C compiler are needed")
    work = tmp_path_factory.mktemp("embed")
    prefix = work / "prefix"
    subprocess.run(["cmake", "--install", str(BUILD_DIR), "--component", "runtime",
                    "--prefix", str(prefix)], check=True, capture_output=True)
    build = work / "build"
    configure = subprocess.run(
        ["cmake", "-S", str(REPO / "examples" / "embed"), "-B", str(build), "-G", "Ninja",
         f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"],
        capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    built = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    from xfmr import synth  # noqa: PLC0415
    synth.generate(str(work / "ckpt"), "llama", preset="tiny")
    artifact = work / "model.xfmr"
    subprocess.run([tool("xfmr-compile"), str(work / "ckpt"), "-o", str(artifact)],
                   check=True, capture_output=True)
    return {"prefix": prefix, "generate": build / "generate", "artifact": artifact}


def test_installed_files(embed):
    prefix = embed["prefix"]
    assert (prefix / "include" / "xfmr" / "xfmr.h").exists()
    assert (prefix / "include" / "xfmr" / "runtime" / "Session.h").exists()
    assert list(prefix.glob("lib*/libXfmrRuntime.a"))
    assert list(prefix.glob("lib*/cmake/xfmr/xfmrConfig.cmake"))
    # Only the runtime: no compiler library, no tool.
    assert not list(prefix.rglob("*MLIR*")) and not (prefix / "bin").exists()


def test_c_program_links_no_mlir_or_llvm(embed):
    libraries = subprocess.run(["ldd", str(embed["generate"])], capture_output=True,
                               text=True, check=True).stdout
    assert "MLIR" not in libraries and "LLVM" not in libraries, libraries


@pytest.mark.parametrize("sampling", [[], ["--temperature", "0.8", "--seed", "7"]])
def test_c_api_generates_what_xfmr_run_generates(embed, sampling):
    prompt = ["1", "5", "9", "2"]
    ours = subprocess.run([str(embed["generate"]), str(embed["artifact"]), "12", *prompt,
                           *sampling], capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    expected = subprocess.run([tool("xfmr-run"), str(embed["artifact"]), "--prompt-ids",
                               " ".join(prompt), "-n", "12", *sampling],
                              capture_output=True, text=True, check=True)
    assert ours.stdout.split() == expected.stdout.split()
    assert len(ours.stdout.split()) == 12


def test_c_api_errors(embed, tmp_path):
    missing = subprocess.run([str(embed["generate"]), str(tmp_path / "nope.xfmr"), "4", "1"],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "nope.xfmr" in missing.stderr
    bad_id = subprocess.run([str(embed["generate"]), str(embed["artifact"]), "4", "99999999"],
                            capture_output=True, text=True)
    assert bad_id.returncode == 1
    assert "token id 99999999 at index 0 is out of range" in bad_id.stderr
    bad_sampling = subprocess.run([str(embed["generate"]), str(embed["artifact"]), "4", "1",
                                   "--temperature", "-1"], capture_output=True, text=True)
    assert bad_sampling.returncode == 1 and "temperature" in bad_sampling.stderr


def test_c_api_batched_sequences(embed):
    """--parallel runs three sequences through xfmr_sequences_step, one batched call per
    token: each prints the ids one sequence alone generates."""
    prompt = ["1", "5", "9", "2"]
    alone = subprocess.run([str(embed["generate"]), str(embed["artifact"]), "10", *prompt],
                           capture_output=True, text=True, check=True).stdout.split()
    batched = subprocess.run([str(embed["generate"]), str(embed["artifact"]), "10", *prompt,
                              "--parallel", "3"], capture_output=True, text=True)
    assert batched.returncode == 0, batched.stderr
    lines = batched.stdout.splitlines()
    assert len(lines) == 3 and all(line.split() == alone for line in lines)


def test_c_api_paged_sequences(embed):
    """--paged: three sequences with KV caches from one block pool; the second and third
    map the blocks the first filled with the prompt (whole blocks, short of its last
    token) and still print the ids one sequence alone generates."""
    prompt = [str(3 + i % 50) for i in range(40)]
    alone = subprocess.run([str(embed["generate"]), str(embed["artifact"]), "8", *prompt],
                           capture_output=True, text=True, check=True).stdout.split()
    paged = subprocess.run([str(embed["generate"]), str(embed["artifact"]), "8", *prompt,
                            "--parallel", "3", "--paged"], capture_output=True, text=True)
    assert paged.returncode == 0, paged.stderr
    lines = paged.stdout.splitlines()
    assert len(lines) == 3 and all(line.split() == alone for line in lines)
    reused = [int(n) for n in re.findall(r"reused (\d+) prompt tokens", paged.stderr)]
    assert len(reused) == 2 and reused[0] == reused[1] and 0 < reused[0] < 40
