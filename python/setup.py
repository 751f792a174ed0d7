"""Installs the `xfmr` package together with the native extension CMake built.

The extension (`xfmr._xfmr`, target xfmr-python) is built by the project's CMake, not here:

    scripts/build.sh                       # or XFMR_BUILD_DIR=build-x scripts/build.sh
    /usr/bin/python3 -m pip install --no-build-isolation --no-deps ./python

The build folder is $XFMR_BUILD_DIR (absolute, or relative to the current folder or the
repository) or <repository>/build. Setuptools' own intermediate files go to
<build>/python/setuptools, so the source tree stays clean. Everything is offline.
"""

import glob
import os
import sysconfig

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def build_dir() -> str:
    """The CMake build folder holding python/xfmr/_xfmr*.so."""
    configured = os.environ.get("XFMR_BUILD_DIR")
    if configured:
        candidates = [configured] if os.path.isabs(configured) else [
            os.path.abspath(configured), os.path.join(REPO, configured)]
    else:
        candidates = [os.path.join(REPO, "build")]
    for candidate in candidates:
        if os.path.isdir(os.path.join(candidate, "python", "xfmr")):
            return candidate
    raise SystemExit(
        "error: the xfmr native extension is not built: no python/xfmr folder in "
        f"{' or '.join(candidates)}. Build it first with `scripts/build.sh` (CMake target "
        "xfmr-python), or point XFMR_BUILD_DIR at the build folder.")


def extension() -> str:
    """The built extension for this interpreter (e.g. _xfmr.cpython-311-x86_64-linux-gnu.so)."""
    folder = os.path.join(build_dir(), "python", "xfmr")
    wanted = os.path.join(folder, "_xfmr" + sysconfig.get_config_var("EXT_SUFFIX"))
    if os.path.isfile(wanted):
        return wanted
    others = sorted(glob.glob(os.path.join(folder, "_xfmr*.so")))
    found = f" (found {', '.join(map(os.path.basename, others))}, built for another " \
            "Python)" if others else ""
    raise SystemExit(
        f"error: the xfmr native extension {wanted} is not built{found}. Run "
        "`scripts/build.sh xfmr-python` with this interpreter as Python3_EXECUTABLE "
        "(default /usr/bin/python3), or set XFMR_BUILD_DIR.")


class BuildPyWithExtension(build_py):
    """The pure-Python files, plus the extension copied from the CMake build."""

    def run(self):
        super().run()
        source = extension()
        self.copy_file(source, os.path.join(self.build_lib, "xfmr", os.path.basename(source)))


class BinaryDistribution(Distribution):
    """Platform wheels: the package carries a compiled extension."""

    def has_ext_modules(self):
        return True


def scratch_options(build: str) -> dict:
    """Setuptools' intermediate folders inside the CMake build, not the source tree."""
    scratch = os.path.join(build, "python", "setuptools")
    os.makedirs(scratch, exist_ok=True)
    return {"build": {"build_base": scratch}, "egg_info": {"egg_base": scratch}}


os.chdir(HERE)
extension()  # fail early, before anything is written, when it is not built
setup(cmdclass={"build_py": BuildPyWithExtension}, distclass=BinaryDistribution,
      options=scratch_options(build_dir()))
