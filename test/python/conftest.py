"""pytest setup for the pure-Python package: import path and shared fixtures."""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

#: Real checkpoints shared between the repositories live beside the repo, not in it.
SHARED_MODELS = REPO.parent / "shared" / "models"

#: The CMake build whose tools and native extension the tests use: $XFMR_BUILD_DIR
#: (relative to the current folder or the repository) or <repo>/build.
BUILD_DIR = Path(os.environ.get("XFMR_BUILD_DIR") or REPO / "build")
if not BUILD_DIR.is_absolute() and not BUILD_DIR.exists():
    BUILD_DIR = REPO / BUILD_DIR
BUILD_DIR = BUILD_DIR.absolute()

# The extension xfmr._xfmr is built into <build>/python/xfmr; the package's other
# modules still come from the source tree.
import xfmr  # noqa: E402

if (BUILD_DIR / "python" / "xfmr").is_dir():
    xfmr.__path__.append(str(BUILD_DIR / "python" / "xfmr"))


def tool(name: str) -> str:
    """Path of the built tool `name`; skips the test when it is not built."""
    path = BUILD_DIR / "bin" / name
    if not path.exists():
        pytest.skip(f"{path} is not built (run scripts/build.sh)")
    return str(path)


def npm_install(folder: Path, packages: list, purpose: str) -> Path:
    """node_modules under `folder` holding `packages` (npm specs), installed on first use
    into the build folder (never committed). The test files run as separate, concurrent
    ctest tests, so one lock file serialises the installs. Skips the test when node/npm or
    the registry is missing."""
    modules = folder / "node_modules"
    wanted = [modules / spec.rsplit("@", 1)[0] for spec in packages]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(path.exists() for path in wanted):
            return modules
        if not shutil.which("npm") or not shutil.which("node"):
            pytest.skip(f"node and npm are needed for {purpose}")
        out = subprocess.run(["npm", "install", "--prefix", str(folder), "--no-audit",
                              "--no-fund", "--silent", *packages],
                             capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            pytest.skip(f"npm install failed (no registry?): {out.stderr[-500:]}")
    return modules


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


@pytest.fixture(scope="session")
def build_dir() -> Path:
    """The CMake build folder (tools in bin/, the extension in python/xfmr/)."""
    return BUILD_DIR


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that reaches the native extension in a build without it (the sanitizer build:
    an ASan module cannot load into an uninstrumented python3) is skipped, not failed; the
    tests that only run the command-line tools still run there."""
    outcome = yield
    report = outcome.get_result()
    error = call.excinfo
    if (error is not None and error.errisinstance(ImportError)
            and getattr(error.value, "name", None) == "xfmr._xfmr" and report.failed):
        report.outcome = "skipped"
        report.longrepr = (str(item.fspath), item.location[1] or 0,
                           "Skipped: the native extension xfmr._xfmr is not built in "
                           f"{BUILD_DIR}")
