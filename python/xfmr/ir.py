"""xfmr IR from Python: the `xfmr-opt` and `xfmr-import` workflow.

Modules cross the boundary as text (Debian's MLIR has no Python bindings, and the compiler's
API takes and returns strings), so a `Module` is its verified, canonically printed text.

    module = xfmr.ir.import_checkpoint("stories260K")          # or xfmr.ir.parse(text)
    optimized = module.run("xfmr-graph-opt")                   # a named pipeline
    lowered = module.run("builtin.module(xfmr-fuse-swiglu,canonicalize)")
    print(optimized)
    xfmr.ir.list_passes()                                      # [(flag, description), ...]

Parse, verification and pass failures raise `xfmr.CompileError` with MLIR's diagnostics
(locations included); a malformed pipeline string raises `xfmr.InvalidArgumentError`.
Compiler calls release the GIL and run one at a time.
"""

from __future__ import annotations

from typing import List, Tuple, Union

from . import _args
from ._native import native

__all__ = ["Module", "parse", "parse_file", "run_pipeline", "list_passes", "import_checkpoint"]


class Module:
    """A verified xfmr IR module (an MLIR `builtin.module`), held as its printed text.

    `Module(text)` is `parse(text)`. `str(module)` and `module.text` give the text;
    modules compare equal when their texts are equal.
    """

    __slots__ = ("_text",)

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"IR text must be a str, got {type(text).__name__}")
        self._text = native().round_trip(text)

    @classmethod
    def _trusted(cls, text: str) -> "Module":
        """Wraps text the compiler just printed from a module it built or verified."""
        module = cls.__new__(cls)
        module._text = text
        return module

    @property
    def text(self) -> str:
        """The module as MLIR prints it (custom assembly form)."""
        return self._text

    def run(self, pipeline: str) -> "Module":
        """A new module: this one after `pipeline` (see `run_pipeline`)."""
        return Module._trusted(run_pipeline(self._text, pipeline))

    def save(self, path: _args.PathLike) -> None:
        """Writes the text to `path` (e.g. for xfmr-opt or xfmr-compile)."""
        with open(_args.path(path, "path"), "w", encoding="utf-8") as file:
            file.write(self._text)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        lines = self._text.count("\n")
        return f"<xfmr.ir.Module: {lines} lines>"

    def __eq__(self, other) -> bool:
        return isinstance(other, Module) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


def parse(text: str) -> Module:
    """Parses and verifies xfmr IR text (any dialect xfmr-opt knows); raises
    `xfmr.CompileError` with the diagnostics when it does not parse or verify."""
    return Module(text)


def parse_file(path: _args.PathLike) -> Module:
    """`parse` of a file's contents (FileNotFoundError when it is missing)."""
    with open(_args.existing(path, "IR file", kind="file"), encoding="utf-8") as file:
        return Module(file.read())


def run_pipeline(ir: Union[str, Module], pipeline: str) -> str:
    """Parses `ir` (text or a Module), runs `pipeline` and returns the printed result.

    `pipeline` is a pass pipeline string as xfmr-opt's --pass-pipeline takes it
    ("builtin.module(xfmr-fuse-swiglu,canonicalize)", or without the builtin.module(...)
    wrapper) or a named pipeline such as "xfmr-graph-opt"; see `list_passes()`.
    """
    text = ir.text if isinstance(ir, Module) else ir
    if not isinstance(text, str):
        raise TypeError(f"IR must be a str or xfmr.ir.Module, got {type(ir).__name__}")
    if not isinstance(pipeline, str):
        raise TypeError(f"pipeline must be a str, got {type(pipeline).__name__}")
    return native().run_pipeline(text, pipeline)


def list_passes() -> List[Tuple[str, str]]:
    """The xfmr passes and named pipelines: [(flag, one-line description)]. Upstream MLIR
    passes (canonicalize, cse, ...) are accepted in pipelines too."""
    return [tuple(entry) for entry in native().list_passes()]


def import_checkpoint(dir: _args.PathLike, context: int = 0) -> Module:
    """The xfmr IR of a Hugging Face checkpoint folder (what `xfmr-import` prints).

    `context` is the KV-cache capacity in tokens (0: max_position_embeddings). Raises
    FileNotFoundError for a missing folder and `xfmr.CompileError` for a checkpoint the
    importer rejects (unsupported architecture, missing tensors, ...).
    """
    folder = _args.existing(dir, "checkpoint folder", kind="dir")
    context = _args.integer(context, "context", 0, 2**63 - 1)
    return Module._trusted(native().import_checkpoint(folder, context))
