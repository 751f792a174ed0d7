"""xfmr: an MLIR-based ahead-of-time compiler for transformer language models.

The compiler, the IR and the runtime (native extension `xfmr._xfmr`, loaded on first use):

    import xfmr
    artifact = xfmr.compile("stories260K", "model.xfmr")       # -> xfmr.Artifact
    session = xfmr.Session(artifact, threads=2)
    ids = session.generate([1], 32, temperature=0.8, top_p=0.9, seed=7)
    logits = session.prefill([1, 2, 3])                        # float32 [3, vocab]
    module = xfmr.ir.import_checkpoint("stories260K").run("xfmr-graph-opt")
    ids = xfmr.Tokenizer("tokenizer.json").encode("Hello world")

Errors: `xfmr.Error` (a RuntimeError) and its subclasses `xfmr.CompileError` and
`xfmr.InvalidArgumentError` (also a ValueError) carry the C++ message; missing files raise
FileNotFoundError.

Pure-Python parts that need only NumPy (no extension): a safetensors reader/writer
(`xfmr.safetensors`), a float64 NumPy reference implementation of the supported
architectures (`xfmr.reference`) and a synthetic checkpoint generator (`xfmr.synth`).
`import xfmr` works without the extension; using a native function without it raises
ImportError saying how to build it.
"""

__version__ = "0.1.0"

from . import ir
from .compiler import compile, pack
from .errors import CompileError, CompileWarning, Error, InvalidArgumentError
from .runtime import Artifact, KVBlockPool, Session
from .tokenizer import ChatTemplate, Tokenizer

__all__ = ["Artifact", "ChatTemplate", "CompileError", "CompileWarning", "Error", "InvalidArgumentError",
           "KVBlockPool", "Session", "Tokenizer", "compile", "ir", "native_available", "pack", "version"]


def version() -> str:
    """The full version string, as `xfmr-compile --version` prints it and artifacts record it
    (manifest "compiler"): "xfmr <__version__> (<git commit>)". Needs the native extension."""
    from ._native import native

    return native().version_string


def native_available() -> bool:
    """Whether the native extension (compiler and runtime) can be loaded."""
    from ._native import available

    return available()
