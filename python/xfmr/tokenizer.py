"""Text <-> token ids with the runtime's C++ tokenizers (runtime/include/xfmr/runtime/Tokenizer.h).

    tokenizer = xfmr.Tokenizer("tokenizer.json")    # or a SentencePiece tokenizer.model
    tokenizer = xfmr.Artifact("model.xfmr").tokenizer   # the one an artifact carries
    ids = tokenizer.encode("Hello world")           # [15496, 995] with GPT-2's
    text = tokenizer.decode(ids)                    # "Hello world"

Supported: Hugging Face tokenizer.json files with a byte-level BPE model (GPT-2, Llama-3,
DeepSeek-V3, Qwen2/3) and SentencePiece models; anything else raises `xfmr.Error` naming the
component (docs/cli.md, xfmr-tokenize).
"""

from __future__ import annotations

import os
from typing import Iterable, List, Union

from ._native import native

__all__ = ["Tokenizer"]


class Tokenizer:
    """A tokenizer file loaded by the C++ runtime; thread-safe, releases the GIL."""

    def __init__(self, path: Union[str, os.PathLike]):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        self._native = native().Tokenizer.load(path)
        self.path = path

    @classmethod
    def _of(cls, loaded, path: str) -> "Tokenizer":
        """Wraps a native tokenizer (one an artifact carries)."""
        tokenizer = cls.__new__(cls)
        tokenizer._native = loaded
        tokenizer.path = path
        return tokenizer

    def encode(self, text: Union[str, bytes], add_special_tokens: bool = False) -> List[int]:
        """The ids of `text` (str, encoded as UTF-8, or bytes). `add_special_tokens` adds what
        the tokenizer adds around one sequence (BOS for Llama-3 and SentencePiece models)."""
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogateescape")
        elif not isinstance(text, (bytes, bytearray)):
            raise TypeError(f"text must be str or bytes, not {type(text).__name__}")
        return self._native.encode(bytes(text), bool(add_special_tokens))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The exact bytes of `ids`, special tokens included."""
        return self._native.decode([int(i) for i in ids])

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; bytes that are not valid UTF-8 (a character split between
        tokens) become U+FFFD, as Hugging Face's decode does."""
        return self.decode_bytes(ids).decode("utf-8", "replace")

    @property
    def vocab_size(self) -> int:
        """One past the largest id."""
        return self._native.vocab_size

    @property
    def kind(self) -> str:
        """"tokenizer.json (BPE)" or "SentencePiece"."""
        return self._native.kind

    def __repr__(self) -> str:
        return f"xfmr.Tokenizer({self.path!r}, {self.kind}, vocab_size={self.vocab_size})"
