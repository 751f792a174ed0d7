"""pytest setup for the pure-Python package: import path and shared fixtures."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

#: Real checkpoints shared between the repositories live beside the repo, not in it.
SHARED_MODELS = REPO.parent / "shared" / "models"


@pytest.fixture(scope="session")
def stories260k_dir() -> Path:
    path = SHARED_MODELS / "stories260K"
    if not (path / "config.json").exists():
        pytest.skip(f"stories260K checkpoint not found at {path} (shared models absent)")
    return path


@pytest.fixture(scope="session")
def synth_checkpoint(tmp_path_factory):
    """synth_checkpoint(arch, **kwargs) -> folder; each distinct request is generated once."""
    from xfmr import synth

    made = {}

    def make(arch: str, **kwargs) -> Path:
        key = (arch, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"synth_{arch}")
            synth.generate(str(out), arch, **kwargs)
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def python_env() -> dict:
    """Environment for subprocesses that import xfmr from the source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "python") + os.pathsep + env.get("PYTHONPATH", "")
    return env
