"""Lazy access to the native extension `xfmr._xfmr`.

`import xfmr` never loads the extension (the reference implementation, the checkpoint
generator and the safetensors codec are pure Python); the compiler and runtime functions
call `native()` when they first need it.
"""

import importlib
import os

_module = None

_HOW_TO_BUILD = (
    "the native extension xfmr._xfmr is not available ({reason}). It is built by the "
    "project's CMake (target xfmr-python, part of scripts/build.sh) into <build>/python/xfmr: "
    "use that package with PYTHONPATH=<build>/python, or install it with "
    "`XFMR_BUILD_DIR=<build> /usr/bin/python3 -m pip install --no-build-isolation --no-deps "
    "./python`. The extension is built for Debian's /usr/bin/python3 (3.11)."
)


def native():
    """The extension module; ImportError with build instructions when it is missing."""
    global _module
    if _module is None:
        try:
            _module = importlib.import_module("xfmr._xfmr")
        except ImportError as error:
            package_dir = os.path.dirname(os.path.abspath(__file__))
            reason = f"{error}; looked in {package_dir}"
            raise ImportError(_HOW_TO_BUILD.format(reason=reason), name="xfmr._xfmr") from error
    return _module


def available() -> bool:
    """Whether the native extension can be imported."""
    try:
        native()
    except ImportError:
        return False
    return True
