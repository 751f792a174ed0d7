"""The runtime's GPU backends where no GPU is: CUDA and HIP artifacts fail cleanly when
their driver is missing or is the CUDA toolkit's stub (the API's own error name and the
call that failed, the artifact's path, exit 1, nothing half-run); Vulkan reports the
device it ran on in --stats. Running on real NVIDIA hardware is scripts/gpu-check.sh."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("XFMR_BUILD_DIR", REPO / "build")) / "bin"
STUBS = [Path("/usr/local/cuda/lib64/stubs/libcuda.so"),
         Path("/usr/local/cuda/lib/stubs/libcuda.so")]


def tool(name):
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/build.sh)")
    return str(path)


@pytest.fixture(scope="module")
def artifacts(synth_checkpoint, tmp_path_factory):
    checkpoint = synth_checkpoint("llama")
    out = tmp_path_factory.mktemp("gpu_artifacts")
    made = {}
    for target in ("cuda:sm_90", "rocm:gfx942", "vulkan"):
        path = out / f"{target.split(':')[0]}.xfmr"
        subprocess.run([tool("xfmr-compile"), str(checkpoint), "-o", str(path), "--target",
                        target, "--context", "64"], check=True, capture_output=True)
        made[target.split(":")[0]] = path
    return made


def run(artifact, env=None, *extra):
    return subprocess.run([tool("xfmr-run"), str(artifact), "--prompt-ids", "1 2 3", "-n", "4",
                           *extra], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cuda_without_a_driver(artifacts):
    result = run(artifacts["cuda"], {"XFMR_CUDA_LIBRARY": "/nonexistent/libcuda.so.1"})
    assert result.returncode == 1 and result.stdout == ""
    assert f"{artifacts['cuda']}: cannot open a cuda device: /nonexistent/libcuda.so.1 " \
           "cannot be loaded (no NVIDIA driver on this machine?)" in result.stderr


def test_cuda_stub_library_names_the_call_and_error(artifacts):
    stub = next((path for path in STUBS if path.exists()), None)
    if stub is None:
        pytest.skip("the CUDA toolkit's stub libcuda.so is not installed")
    result = run(artifacts["cuda"], {"XFMR_CUDA_LIBRARY": str(stub)})
    assert result.returncode == 1 and result.stdout == ""
    assert "cuInit failed: CUDA_ERROR_STUB_LIBRARY (34)" in result.stderr


def test_rocm_without_a_runtime(artifacts):
    result = run(artifacts["rocm"], {"XFMR_HIP_LIBRARY": "/nonexistent/libamdhip64.so"})
    assert result.returncode == 1 and result.stdout == ""
    assert f"{artifacts['rocm']}: cannot open a rocm device:" in result.stderr
    assert "cannot be loaded" in result.stderr


def test_vulkan_without_a_driver(artifacts):
    result = run(artifacts["vulkan"], {"VK_ICD_FILENAMES": "/nonexistent.json"})
    assert result.returncode == 1 and result.stdout == ""
    assert f"{artifacts['vulkan']}: cannot open a vulkan device:" in result.stderr


def test_vulkan_stats_name_the_device(artifacts):
    result = run(artifacts["vulkan"], None, "--stats")
    if result.returncode != 0 and "vulkan device" in result.stderr:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stderr.strip().splitlines()[-1])
    assert stats["device"]  # e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
    assert stats["device_memory_bytes"] >= stats["weights_bytes"] + stats["kv_cache_bytes"]
    assert stats["weights_upload_seconds"] >= 0


def test_cpu_stats_device_is_cpu(synth_checkpoint, tmp_path):
    artifact = tmp_path / "cpu.xfmr"
    subprocess.run([tool("xfmr-compile"), str(synth_checkpoint("llama")), "-o", str(artifact),
                    "--context", "64"], check=True, capture_output=True)
    stats = json.loads(run(artifact, None, "--stats").stderr.strip().splitlines()[-1])
    assert stats["device"] == "cpu" and stats["device_memory_bytes"] == 0
